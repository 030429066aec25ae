//! DBFS API 2.0 (`files.py`: `DbfsAPI`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct PathRef {
    pub path: String,
}

#[derive(Debug, Serialize)]
pub struct FileInfo {
    pub path: String,
    pub is_dir: bool,
    pub file_size: u64,
    pub modification_time: i64,
}

#[derive(Debug, Serialize)]
pub struct ListStatusResponse {
    pub files: Vec<FileInfo>,
}

#[derive(Debug, Deserialize)]
pub struct Put {
    pub path: String,
    /// base64
    pub contents: Option<String>,
    #[serde(default, deserialize_with = "crate::lenient::opt_bool")]
    pub overwrite: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct Read {
    pub path: String,
    pub offset: Option<u64>,
    pub length: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct ReadResponse {
    pub bytes_read: u64,
    /// base64
    pub data: String,
}

#[derive(Debug, Deserialize)]
pub struct Delete {
    pub path: String,
    #[serde(default, deserialize_with = "crate::lenient::opt_bool")]
    pub recursive: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct Move {
    pub source_path: String,
    pub destination_path: String,
}

#[derive(Debug, Deserialize)]
pub struct Create {
    pub path: String,
    #[serde(default, deserialize_with = "crate::lenient::opt_bool")]
    pub overwrite: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct CreateResponse {
    pub handle: i64,
}

#[derive(Debug, Deserialize)]
pub struct AddBlock {
    pub handle: i64,
    /// base64, at most 1 MB decoded
    pub data: String,
}

#[derive(Debug, Deserialize)]
pub struct Close {
    pub handle: i64,
}

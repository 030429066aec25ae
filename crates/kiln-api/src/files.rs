//! Files API 2.0 (`w.files`): `/api/2.0/fs/files{path}` and
//! `/api/2.0/fs/directories{path}` on `/Volumes/…` paths. File bodies are raw
//! bytes; only directory listings are JSON.

use serde::{Deserialize, Serialize};

/// Query of PUT /fs/files{path}.
#[derive(Debug, Deserialize)]
pub struct Upload {
    pub overwrite: Option<bool>,
    pub action: Option<String>,
}

/// Query of GET /fs/directories{path}.
#[derive(Debug, Deserialize)]
pub struct ListDirectory {
    pub page_size: Option<usize>,
    pub page_token: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DirectoryEntry {
    pub path: String,
    pub name: String,
    pub is_directory: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_size: Option<u64>,
    pub last_modified: i64,
}

#[derive(Debug, Serialize)]
pub struct ListDirectoryResponse {
    pub contents: Vec<DirectoryEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

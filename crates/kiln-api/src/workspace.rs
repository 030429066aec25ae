//! Workspace API 2.0 (`workspace.py`: `WorkspaceAPI`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct PathRef {
    pub path: String,
}

#[derive(Debug, Serialize)]
pub struct ObjectInfo {
    pub path: String,
    pub object_type: String,
    pub object_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    pub created_at: i64,
    pub modified_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    pub resource_id: String,
}

#[derive(Debug, Serialize)]
pub struct ListResponse {
    pub objects: Vec<ObjectInfo>,
}

#[derive(Debug, Deserialize)]
pub struct Import {
    pub path: String,
    pub format: Option<String>,
    pub language: Option<String>,
    /// base64
    pub content: Option<String>,
    #[serde(default, deserialize_with = "crate::lenient::opt_bool")]
    pub overwrite: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct Export {
    pub path: String,
    pub format: Option<String>,
    #[serde(default, deserialize_with = "crate::lenient::opt_bool")]
    pub direct_download: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct ExportResponse {
    /// base64
    pub content: String,
    pub file_type: String,
}

#[derive(Debug, Deserialize)]
pub struct Delete {
    pub path: String,
    #[serde(default, deserialize_with = "crate::lenient::opt_bool")]
    pub recursive: Option<bool>,
}

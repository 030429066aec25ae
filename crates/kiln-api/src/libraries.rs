//! Libraries API 2.0 (`compute.py`: `LibrariesAPI`) and the deprecated REST API
//! 1.2 `libraries/list` and `libraries/upload`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// POST libraries/install and libraries/uninstall.
#[derive(Debug, Deserialize)]
pub struct InstallLibraries {
    pub cluster_id: String,
    pub libraries: Vec<Value>,
}

/// GET libraries/cluster-status
#[derive(Debug, Deserialize)]
pub struct ClusterStatus {
    pub cluster_id: String,
}

#[derive(Debug, Serialize)]
pub struct LibraryFullStatus {
    pub library: Value,
    pub status: String,
    pub messages: Vec<String>,
    pub is_library_for_all_clusters: bool,
}

#[derive(Debug, Serialize)]
pub struct ClusterLibraryStatuses {
    pub cluster_id: String,
    pub library_statuses: Vec<LibraryFullStatus>,
}

#[derive(Debug, Serialize)]
pub struct ListAllClusterLibraryStatusesResponse {
    pub statuses: Vec<ClusterLibraryStatuses>,
}

/// One library as REST API 1.2 lists it.
#[derive(Debug, Serialize)]
pub struct LibraryV12 {
    pub name: String,
    /// `LibraryLoaded`, `LibraryPending` or `LibraryError`.
    pub status: String,
}

#[derive(Debug, Deserialize)]
pub struct ListLibrariesV12 {
    #[serde(rename = "clusterId", alias = "clusterid")]
    pub cluster_id: String,
}

#[derive(Debug, Deserialize)]
pub struct UploadLibraryV12 {
    #[serde(rename = "clusterId", alias = "clusterid")]
    pub cluster_id: String,
    pub name: Option<String>,
    pub language: String,
    pub uri: String,
}

#[derive(Debug, Serialize)]
pub struct UploadLibraryV12Response {
    pub language: String,
    pub uri: String,
}

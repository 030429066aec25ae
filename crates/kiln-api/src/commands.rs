//! Command Execution API 1.2 (`compute.py`: `CommandExecutionAPI`). Fields are
//! camelCase; statuses are mixed case (`Running`, `Finished`, …). The lower-case
//! aliases accept the spellings of the REST API 1.2 curl examples.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// POST /api/1.2/contexts/create
#[derive(Debug, Deserialize)]
pub struct CreateContext {
    #[serde(rename = "clusterId", alias = "clusterid", alias = "cluster_id")]
    pub cluster_id: String,
    pub language: Option<String>,
}

/// `{"id": ...}`, the answer of contexts/create, contexts/destroy,
/// commands/execute and commands/cancel.
#[derive(Debug, Serialize)]
pub struct Created {
    pub id: String,
}

/// GET /api/1.2/contexts/status and POST /api/1.2/contexts/destroy
#[derive(Debug, Deserialize)]
pub struct ContextRef {
    #[serde(rename = "clusterId", alias = "clusterid", alias = "cluster_id")]
    pub cluster_id: String,
    #[serde(rename = "contextId", alias = "contextid", alias = "context_id")]
    pub context_id: String,
}

#[derive(Debug, Serialize)]
pub struct ContextStatusResponse {
    pub id: String,
    pub status: String,
}

/// POST /api/1.2/commands/execute (JSON, form or multipart)
#[derive(Debug, Deserialize)]
pub struct ExecuteCommand {
    #[serde(rename = "clusterId", alias = "clusterid", alias = "cluster_id")]
    pub cluster_id: String,
    #[serde(rename = "contextId", alias = "contextid", alias = "context_id")]
    pub context_id: String,
    pub language: Option<String>,
    /// The source to run; or `commandFile`, a file part holding it.
    pub command: Option<String>,
    #[serde(rename = "commandFile", alias = "commandfile", alias = "command_file")]
    pub command_file: Option<String>,
    /// e.g. `{"displayRowLimit": 100}`; form posts may send it as a JSON string.
    pub options: Option<Value>,
}

/// GET /api/1.2/commands/status and POST /api/1.2/commands/cancel
#[derive(Debug, Deserialize)]
pub struct CommandRef {
    #[serde(rename = "clusterId", alias = "clusterid", alias = "cluster_id")]
    pub cluster_id: String,
    #[serde(rename = "contextId", alias = "contextid", alias = "context_id")]
    pub context_id: String,
    #[serde(rename = "commandId", alias = "commandid", alias = "command_id")]
    pub command_id: String,
}

#[derive(Debug, Serialize)]
pub struct CommandStatusResponse {
    pub id: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<Value>,
}

//! REST API 1.2 clusters: list, status, restart (camelCase fields).

use serde::{Deserialize, Serialize};

/// One cluster as REST API 1.2 describes it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterInfoV12 {
    pub id: String,
    pub name: String,
    /// `Pending`, `Running`, `Reconfiguring`, `Restarting`, `Terminating`, `Terminated`, `Error`, `Unknown`.
    pub status: String,
    pub driver_ip: String,
    pub jdbc_port: u16,
    pub num_workers: u32,
}

/// clusterId, from the query or a form/JSON body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterIdV12 {
    pub cluster_id: String,
}

#[derive(Debug, Serialize)]
pub struct IdResponse {
    pub id: String,
}

//! Waiting for a cluster to run, by watching the cluster service's changes
//! (never by polling): what pipelines and jobs do after creating or starting
//! the cluster they run on.

use std::time::Duration;

use kiln_core::{Error, ErrorCode, Result};

use crate::clusters::Clusters;
use crate::lifecycle::ClusterState;

/// The cluster's engine port once it is RUNNING; an error when it ends
/// TERMINATED or ERROR first, or is not running within `timeout`.
pub async fn wait_running(clusters: &Clusters, cluster_id: &str, timeout: Duration) -> Result<u16> {
    let mut changes = clusters.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let c = clusters.get(cluster_id)?;
        match (c.state, c.engine_port) {
            (ClusterState::Running, Some(port)) => return Ok(port),
            (ClusterState::Terminated | ClusterState::Error, _) => {
                return Err(Error::new(
                    ErrorCode::InvalidState,
                    format!("cluster {cluster_id} failed to start: {}", c.state_message),
                ))
            }
            _ => {}
        }
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                return Err(Error::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the cluster service stopped",
                ))
            }
            Err(_) => {
                return Err(Error::new(
                    ErrorCode::InvalidState,
                    format!(
                        "cluster {cluster_id} did not start within {} s",
                        timeout.as_secs()
                    ),
                ))
            }
        }
    }
}

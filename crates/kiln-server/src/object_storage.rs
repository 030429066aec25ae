//! The object-store data root at start: the store opened and checked, the
//! uploads a killed process left aborted, and what engines, pipeline workers
//! and worker pods get to reach it (Kiln's key, or leases on credentials
//! scoped to the root with `[storage] engine_role_arn`).

use std::sync::Arc;

use kiln_compute::isolation::{Isolation, ObjectStoreAccess};
use kiln_core::Result;
use kiln_storage::{EngineCredentials, ObjectRoot};

use crate::Config;

/// `[storage] root`, opened and checked; `None` on local disk.
pub async fn open_root(config: &Config) -> Result<Option<Arc<ObjectRoot>>> {
    let root = ObjectRoot::open(&config.storage)?;
    if let Some(root) = &root {
        root.check().await?;
        // Multipart uploads an earlier (killed) process left are aborted.
        root.keep_upload_journal(config.data_dir.join("object-store-uploads"))?;
        let aborted = root.abort_left_uploads().await?;
        if aborted > 0 {
            tracing::info!(aborted, "multipart uploads left by an earlier run aborted");
        }
    }
    Ok(root)
}

/// Gives user code's processes their way to the root, and returns the
/// credentials broker when engines get scoped credentials. `http`: Kiln's
/// plain-HTTP address on loopback (where the credentials endpoint is).
pub fn engine_access(
    root: &Arc<ObjectRoot>,
    isolation: &Isolation,
    http: std::net::SocketAddr,
) -> Result<Option<Arc<EngineCredentials>>> {
    let credentials = EngineCredentials::open(root, &format!("http://{http}"))?;
    if credentials.is_some() {
        tracing::info!("engines get credentials scoped to the object-store root");
    }
    isolation.use_object_store(ObjectStoreAccess {
        dbfs_url: root.url("dbfs"),
        engine_env: root.engine_env(),
        credentials: credentials.clone(),
    });
    Ok(credentials)
}

/// Each new worker pod's variables: its cluster's session of the scoped
/// engine credentials (pods cannot reach Kiln's loopback endpoint).
pub fn pod_credentials(
    root: Arc<ObjectRoot>,
    credentials: Arc<EngineCredentials>,
) -> kiln_kubernetes::PodCredentials {
    Arc::new(move |cluster_id: String| {
        let (root, credentials) = (root.clone(), credentials.clone());
        Box::pin(async move {
            let session = credentials.for_pod(&cluster_id).await?;
            Ok(kiln_storage::engine_credentials::pod_env(&root, &session))
        })
    })
}

/// Files left in the local DBFS tree are not used while the root is set.
pub fn warn_of_local_dbfs(dir: &std::path::Path) {
    let user_files = std::fs::read_dir(dir)
        .map(|entries| {
            entries.flatten().any(|e| {
                let name = e.file_name();
                !matches!(
                    name.to_str(),
                    Some("FileStore" | "tmp" | "user" | "databricks-datasets")
                ) || e.path().read_dir().is_ok_and(|mut d| d.next().is_some())
                    && name.to_str() != Some("databricks-datasets")
            })
        })
        .unwrap_or(false);
    if user_files {
        tracing::warn!(
            path = %dir.display(),
            "DBFS on local disk holds files that are not used while [storage] root is set: copy them to the object store (dbfs/ below the root)"
        );
    }
}

//! The state every handler sees.

use std::sync::Arc;

use kiln_catalog::Catalog;
use kiln_compute::clusters::Clusters;
use kiln_compute::contexts::Contexts;
use kiln_compute::libraries::Libraries;

use crate::config::Config;
use crate::ratelimit::RateLimiter;
use kiln_compute::host::HostInfo;
use kiln_identity::Identity;

#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Shared>,
}

pub struct Shared {
    pub config: Config,
    pub identity: Arc<Identity>,
    pub u2m: kiln_identity::oauth_u2m::U2m,
    pub uploads: crate::uploads::Uploads,
    /// Signed-in browser sessions of the web UI.
    pub ui_sessions: kiln_identity::sessions::Sessions,
    pub clusters: Arc<Clusters>,
    pub contexts: Arc<Contexts>,
    pub catalog: Arc<Catalog>,
    /// The object-store data root (`[storage] root`), when there is one:
    /// MANAGED volumes live there.
    pub storage: Option<Arc<kiln_storage::ObjectRoot>>,
    /// Leases on credentials scoped to that root (`[storage] engine_role_arn`).
    pub engine_credentials: Option<Arc<kiln_storage::EngineCredentials>>,
    pub libraries: Arc<Libraries>,
    pub secrets: kiln_workspace::secrets::Secrets,
    pub dbfs: kiln_workspace::dbfs::Dbfs,
    pub workspace: Arc<kiln_workspace::workspace::Workspace>,
    pub permissions: kiln_workspace::permissions::Permissions,
    pub groups: kiln_workspace::groups::Groups,
    pub lakebase: Arc<kiln_lakebase::Lakebase>,
    pub pipelines: Arc<kiln_pipelines::Pipelines>,
    pub jobs: Arc<kiln_jobs::Jobs>,
    pub warehouses: Arc<kiln_sql::Warehouses>,
    pub statements: Arc<kiln_sql::Statements>,
    pub sql_protocol: Arc<kiln_sql::protocol::SqlProtocol>,
    pub limiter: RateLimiter,
    /// Numeric workspace id (host metadata, `X-Databricks-Org-Id`).
    pub workspace_id: String,
    pub account_id: String,
    /// The one metastore's id (a UUID created once).
    pub metastore_id: String,
    /// Serialised clusters/list responses.
    pub list_cache: ResponseCache,
    /// The machine engines run on (node type, cluster cores and memory).
    pub host: HostInfo,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.inner
    }
}

/// The versions a cached response was computed from (clusters, permissions).
pub type CacheVersion = (u64, u64);

type CacheEntries = std::collections::HashMap<String, (CacheVersion, axum::body::Bytes)>;

/// Responses keyed by query string, valid for one version of the data.
#[derive(Default)]
pub struct ResponseCache {
    entries: std::sync::Mutex<CacheEntries>,
}

impl ResponseCache {
    const MAX_ENTRIES: usize = 256;

    pub fn get(&self, key: &str, version: CacheVersion) -> Option<axum::body::Bytes> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(v, _)| *v == version)
            .map(|(_, body)| body.clone())
    }

    pub fn put(&self, key: String, version: CacheVersion, body: axum::body::Bytes) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= Self::MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(key, (version, body));
        }
    }
}

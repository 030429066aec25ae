//! The state every handler sees.

use std::sync::Arc;

use kiln_compute::catalog::Catalog;
use kiln_compute::clusters::Clusters;
use kiln_compute::contexts::Contexts;
use kiln_compute::libraries::Libraries;

use crate::config::Config;
use crate::identity::Identity;
use crate::ratelimit::RateLimiter;
use crate::routes::HostInfo;

#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<Shared>,
}

pub struct Shared {
    pub config: Config,
    pub identity: Identity,
    pub clusters: Arc<Clusters>,
    pub contexts: Arc<Contexts>,
    pub catalog: Arc<Catalog>,
    pub libraries: Arc<Libraries>,
    pub limiter: RateLimiter,
    /// Numeric workspace id (host metadata, `X-Databricks-Org-Id`).
    pub workspace_id: String,
    /// The machine engines run on (node type, cluster cores and memory).
    pub host: HostInfo,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.inner
    }
}

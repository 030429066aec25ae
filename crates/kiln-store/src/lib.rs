//! Kiln's durable store.
//!
//! What is durable: identities (users and service principals), hashed tokens and
//! service-principal secrets, clusters (spec, lifecycle state, engine pid) and
//! each cluster's event history, and the Unity Catalog (catalogs, schemas,
//! tables and their Delta commit logs). Every write goes through [`Store::commit`], one
//! SQLite transaction with `synchronous=FULL`, so a caller that got `Ok` may
//! acknowledge the request: a kill -9 after that loses nothing.
//!
//! Engine processes, ports and caches are not durable: they are observed state,
//! rebuilt by the reconciler on start.

mod records;
mod sqlite;

pub use records::*;
pub use sqlite::SqliteStore;

use kiln_core::Result;

/// One durable write; a batch of them commits atomically.
#[derive(Debug, Clone)]
pub enum Write {
    PutPrincipal(PrincipalRecord),
    DeletePrincipal(String),
    PutToken(TokenRecord),
    DeleteToken(String),
    PutSpSecret(SpSecretRecord),
    DeleteSpSecret(String),
    PutCluster(Box<ClusterRecord>),
    /// Removes the cluster and its event history.
    DeleteCluster(String),
    AppendClusterEvent(ClusterEventRecord),
    PutMeta(String, String),
    /// A Unity Catalog object (`kind`: catalog, schema, table, staging, commits).
    PutUc {
        kind: &'static str,
        key: String,
        record: serde_json::Value,
    },
    DeleteUc {
        kind: &'static str,
        key: String,
    },
    /// A library of a cluster, keyed by its canonical description.
    PutLibrary {
        cluster_id: String,
        key: String,
        record: serde_json::Value,
    },
    DeleteLibrary {
        cluster_id: String,
        key: String,
    },
    /// A workspace-side object (secret scope, secret, ACL, …).
    PutObject {
        kind: &'static str,
        key: String,
        record: serde_json::Value,
    },
    DeleteObject {
        kind: &'static str,
        key: String,
    },
    /// One event of a pipeline's event log.
    AppendPipelineEvent {
        pipeline_id: String,
        seq: i64,
        record: serde_json::Value,
    },
    /// Removes a pipeline's whole event log.
    DeletePipelineEvents(String),
}

/// Which events of one cluster to read.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub cluster_id: String,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub event_types: Vec<String>,
    pub descending: bool,
    pub offset: u64,
    pub limit: u64,
}

/// The store trait. SQLite is the embedded default.
pub trait Store: Send + Sync + 'static {
    /// Applies every write in one durable transaction.
    fn commit(&self, writes: Vec<Write>) -> Result<()>;
    fn meta(&self, key: &str) -> Result<Option<String>>;
    fn principals(&self) -> Result<Vec<PrincipalRecord>>;
    fn tokens(&self) -> Result<Vec<TokenRecord>>;
    fn sp_secrets(&self) -> Result<Vec<SpSecretRecord>>;
    fn clusters(&self) -> Result<Vec<ClusterRecord>>;
    /// Unity Catalog objects of one kind, oldest first.
    fn uc_objects(&self, kind: &str) -> Result<Vec<serde_json::Value>>;
    /// Workspace-side objects of one kind, oldest first.
    fn objects(&self, kind: &str) -> Result<Vec<serde_json::Value>>;
    /// A pipeline's events, in sequence order.
    fn pipeline_events(&self, pipeline_id: &str) -> Result<Vec<serde_json::Value>>;
    /// Every cluster library record, oldest first.
    fn libraries(&self) -> Result<Vec<serde_json::Value>>;
    /// Events matching the query, and the total number matching before paging.
    fn cluster_events(&self, query: &EventQuery) -> Result<(Vec<ClusterEventRecord>, u64)>;
}

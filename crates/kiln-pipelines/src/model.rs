//! Durable records of pipelines, updates and flow checkpoints (domain types;
//! the wire shapes live in kiln-api and the server's conversions).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::lifecycle::UpdateState;
pub use crate::spec::{string_map, PipelineSpec};

pub const KIND_PIPELINE: &str = "pipeline";
pub const KIND_UPDATE: &str = "pipeline_update";
pub const KIND_FLOW: &str = "pipeline_flow";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PipelineRecord {
    pub pipeline_id: String,
    /// The PipelineSpec as the user gave it, with `id` set.
    pub spec: PipelineSpec,
    pub creator: String,
    pub run_as: String,
    pub created_at: i64,
    pub last_modified: i64,
    /// The cluster of the latest update (kept while it runs, and after it in development mode).
    #[serde(default)]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub unhealthy: bool,
}

impl PipelineRecord {
    pub fn name(&self) -> &str {
        self.spec.name()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UpdateRecord {
    pub pipeline_id: String,
    pub update_id: String,
    pub state: UpdateState,
    pub cause: String,
    pub creation_time: i64,
    pub full_refresh: bool,
    #[serde(default)]
    pub full_refresh_selection: Vec<String>,
    #[serde(default)]
    pub refresh_selection: Vec<String>,
    pub validate_only: bool,
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// The pipeline spec the update runs with.
    pub config: PipelineSpec,
    pub requested_by: String,
}

/// A streaming flow's durable progress, or a materialized view's last inputs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct FlowCheckpoint {
    pub pipeline_id: String,
    pub flow: String,
    /// Files already consumed, per source key: path → (size, mtime ms).
    #[serde(default)]
    pub seen: BTreeMap<String, BTreeMap<String, (u64, i64)>>,
    /// Last consumed Delta version, per source key.
    #[serde(default)]
    pub versions: BTreeMap<String, i64>,
    /// The schema inferred from a file source's first batch (Spark JSON).
    #[serde(default)]
    pub schemas: BTreeMap<String, String>,
    pub next_batch: u64,
    /// A batch planned and possibly written but not yet recorded as committed.
    #[serde(default)]
    pub pending: Option<Batch>,
    /// Inputs of a materialized view's last refresh (to skip unchanged ones).
    #[serde(default)]
    pub fingerprint: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Batch {
    pub id: u64,
    pub user_metadata: String,
    /// Selected files per source key.
    #[serde(default)]
    pub files: BTreeMap<String, Vec<(String, u64, i64)>>,
    /// Version ranges `(from, to)` per source key.
    #[serde(default)]
    pub versions: BTreeMap<String, (i64, i64)>,
}

pub fn update_key(pipeline_id: &str, update_id: &str) -> String {
    format!("{pipeline_id}/{update_id}")
}

pub fn flow_key(pipeline_id: &str, flow: &str) -> String {
    format!("{pipeline_id}/{flow}")
}

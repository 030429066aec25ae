//! Clusters API (REST 2.0 and 2.1): `compute.py` in the SDK.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

// ---- shared shapes ----------------------------------------------------------

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct AutoScale {
    /// Minimum number of workers.
    pub min_workers: u32,
    /// Maximum number of workers.
    pub max_workers: u32,
}

/// `State` of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Pending,
    Running,
    Restarting,
    Resizing,
    Terminating,
    Terminated,
    Error,
    #[default]
    Unknown,
}

/// `ClusterSource`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClusterSource {
    Api,
    Job,
    Models,
    Pipeline,
    PipelineMaintenance,
    Sql,
    Ui,
}

/// The user-settable attributes of a cluster (`ClusterSpec`). Attributes Kiln
/// does not interpret (cloud attributes, init scripts, …) are kept in `other`
/// and echoed back.
#[derive(Debug, Clone, Deserialize)]
pub struct ClusterSpec {
    /// Runtime version key, e.g. `16.4.x-scala2.12`.
    pub spark_version: String,
    pub cluster_name: Option<String>,
    pub num_workers: Option<u32>,
    pub autoscale: Option<AutoScale>,
    pub node_type_id: Option<String>,
    pub driver_node_type_id: Option<String>,
    pub autotermination_minutes: Option<u32>,
    pub spark_conf: Option<BTreeMap<String, String>>,
    pub spark_env_vars: Option<BTreeMap<String, String>>,
    pub custom_tags: Option<BTreeMap<String, String>>,
    pub cluster_source: Option<ClusterSource>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

// ---- create / edit -----------------------------------------------------------

/// POST clusters/create.
pub type CreateCluster = ClusterSpec;

#[derive(Debug, Serialize)]
pub struct CreateClusterResponse {
    pub cluster_id: String,
}

/// POST clusters/edit: `cluster_id` plus a full `ClusterSpec`.
#[derive(Debug, Deserialize)]
pub struct EditCluster {
    pub cluster_id: String,
    #[serde(flatten)]
    pub spec: ClusterSpec,
}

/// POST clusters/update: `update_mask` names the attributes of `cluster` to change.
#[derive(Debug, Deserialize)]
pub struct UpdateCluster {
    pub cluster_id: String,
    pub update_mask: String,
    #[serde(default)]
    pub cluster: Map<String, Value>,
}

/// Bodies that only name a cluster: start, restart, delete, permanent-delete, pin, unpin.
#[derive(Debug, Deserialize)]
pub struct ClusterIdRequest {
    pub cluster_id: String,
}

#[derive(Debug, Deserialize)]
pub struct ResizeCluster {
    pub cluster_id: String,
    pub num_workers: Option<u32>,
    pub autoscale: Option<AutoScale>,
}

#[derive(Debug, Deserialize)]
pub struct ChangeClusterOwner {
    pub cluster_id: String,
    pub owner_username: String,
}

// ---- get / list --------------------------------------------------------------

#[derive(Debug, Serialize, Default)]
pub struct TerminationReason {
    pub code: String,
    #[serde(rename = "type")]
    pub reason_type: String,
    pub parameters: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Default)]
pub struct SparkNode {
    pub node_id: String,
    pub instance_id: String,
    pub host_private_ip: String,
    pub private_ip: String,
    pub public_dns: String,
    pub start_timestamp: i64,
}

/// `ClusterDetails`, as clusters/get and clusters/list return it.
#[derive(Debug, Serialize, Default)]
pub struct ClusterDetails {
    pub cluster_id: String,
    pub cluster_name: String,
    pub spark_version: String,
    pub node_type_id: String,
    pub driver_node_type_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_workers: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<AutoScale>,
    pub autotermination_minutes: u32,
    pub spark_conf: BTreeMap<String, String>,
    pub spark_env_vars: BTreeMap<String, String>,
    pub custom_tags: BTreeMap<String, String>,
    pub default_tags: BTreeMap<String, String>,
    pub cluster_source: String,
    pub creator_user_name: String,
    pub single_user_name: Option<String>,
    pub state: State,
    pub state_message: String,
    pub start_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminated_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_restarted_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_reason: Option<TerminationReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<SparkNode>,
    pub executors: Vec<SparkNode>,
    pub spark_context_id: i64,
    pub cluster_cores: f64,
    pub cluster_memory_mb: u64,
    pub is_pinned: bool,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Query of GET clusters/list (2.1); nested objects arrive dot-flattened.
#[derive(Debug, Default, Deserialize)]
pub struct ListClusters {
    pub page_size: Option<u32>,
    pub page_token: Option<String>,
    #[serde(rename = "filter_by.cluster_states", default)]
    pub filter_cluster_states: Vec<State>,
    #[serde(rename = "filter_by.cluster_sources", default)]
    pub filter_cluster_sources: Vec<ClusterSource>,
    #[serde(
        rename = "filter_by.is_pinned",
        default,
        deserialize_with = "crate::lenient::opt_bool"
    )]
    pub filter_is_pinned: Option<bool>,
    #[serde(rename = "filter_by.policy_id")]
    pub filter_policy_id: Option<String>,
    #[serde(rename = "sort_by.field")]
    pub sort_field: Option<ListClustersSortByField>,
    #[serde(rename = "sort_by.direction")]
    pub sort_direction: Option<SortDirection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ListClustersSortByField {
    ClusterName,
    Default,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SortDirection {
    Asc,
    Desc,
}

#[derive(Debug, Serialize)]
pub struct ListClustersResponse {
    pub clusters: Vec<ClusterDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_page_token: Option<String>,
}

/// Query of GET clusters/get.
#[derive(Debug, Deserialize)]
pub struct GetCluster {
    pub cluster_id: String,
}

// ---- events ------------------------------------------------------------------

/// POST clusters/events (`GetEvents`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetEvents {
    pub cluster_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<EventType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<SortDirection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_token: Option<String>,
}

/// Cluster `EventType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    AddNodesFailed,
    AutomaticClusterUpdate,
    AutoscalingBackoff,
    AutoscalingFailed,
    AutoscalingStatsReport,
    ClusterMigrated,
    Creating,
    DbfsDown,
    DecommissionEnded,
    DecommissionStarted,
    DeferredPolicyEnforcementFailed,
    DeferredPolicyEnforcementScheduled,
    DidNotExpandDisk,
    DriverHealthy,
    DriverNotResponding,
    DriverUnavailable,
    Edited,
    ExpandedDisk,
    FailedToExpandDisk,
    InitScriptsFinished,
    InitScriptsStarted,
    MetastoreDown,
    NodesLost,
    NodeBlacklisted,
    NodeExcludedDecommissioned,
    Pinned,
    Resizing,
    Restarting,
    Running,
    SparkException,
    Starting,
    Terminating,
    Terminated,
    UcVolumeMisconfigured,
    Unpinned,
    UpsizeCompleted,
}

#[derive(Debug, Serialize)]
pub struct ClusterEvent {
    pub cluster_id: String,
    pub timestamp: i64,
    #[serde(rename = "type")]
    pub event_type: String,
    pub details: Value,
}

#[derive(Debug, Serialize)]
pub struct GetEventsResponse {
    pub events: Vec<ClusterEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page: Option<GetEvents>,
    pub total_count: u64,
}

// ---- catalogue ---------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct SparkVersion {
    pub key: String,
    pub name: String,
}

#[derive(Debug, Serialize)]
pub struct GetSparkVersionsResponse {
    pub versions: Vec<SparkVersion>,
}

#[derive(Debug, Serialize)]
pub struct NodeType {
    pub node_type_id: String,
    pub memory_mb: u64,
    pub num_cores: f64,
    pub description: String,
    pub instance_type_id: String,
    pub category: String,
    pub is_deprecated: bool,
    pub num_gpus: u32,
    pub is_hidden: bool,
    pub support_port_forwarding: bool,
    pub photon_driver_capable: bool,
    pub photon_worker_capable: bool,
    pub display_order: u32,
    pub node_instance_type: NodeInstanceType,
}

/// The instance behind a node type (`select_node_type(local_disk=True)` reads it).
#[derive(Debug, Serialize)]
pub struct NodeInstanceType {
    pub instance_type_id: String,
    pub local_disks: u32,
    pub local_disk_size_gb: u64,
    pub local_nvme_disks: u32,
    pub local_nvme_disk_size_gb: u64,
}

#[derive(Debug, Serialize)]
pub struct ListNodeTypesResponse {
    pub node_types: Vec<NodeType>,
}

#[derive(Debug, Serialize)]
pub struct ListAvailableZonesResponse {
    pub default_zone: String,
    pub zones: Vec<String>,
}

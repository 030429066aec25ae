//! Domain records as the store keeps them. They never go on the wire: the HTTP
//! edge converts them into `kiln-api` types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A user or a service principal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrincipalRecord {
    pub id: String,
    /// User name (an email-like string) or, for a service principal, its application id.
    pub user_name: String,
    pub display_name: String,
    pub kind: PrincipalKind,
    pub active: bool,
    pub admin: bool,
    /// Argon2 PHC string, for Basic auth with a password.
    pub password_hash: Option<String>,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrincipalKind {
    User,
    ServicePrincipal,
}

/// A personal access token or an OAuth access token, stored hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub token_id: String,
    pub principal_id: String,
    /// SHA-256 of the token value, hex.
    pub token_hash: String,
    pub comment: Option<String>,
    pub created_ms: i64,
    /// `-1` for tokens that never expire.
    pub expiry_ms: i64,
    pub kind: TokenKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenKind {
    Personal,
    OAuth,
}

/// A service principal's OAuth client secret, stored hashed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpSecretRecord {
    pub id: String,
    pub principal_id: String,
    pub secret_hash: String,
    pub created_ms: i64,
}

/// A cluster: the user's configuration, its lifecycle state and what the
/// reconciler needs to find its engine again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub cluster_id: String,
    pub config: ClusterConfig,
    pub creator: String,
    pub owner: String,
    pub state: ClusterState,
    pub state_message: String,
    pub start_time: i64,
    pub terminated_time: Option<i64>,
    pub last_restarted_time: Option<i64>,
    pub last_activity_time: i64,
    pub termination_reason: Option<TerminationReason>,
    pub pinned: bool,
    pub spark_context_id: i64,
    /// Bumped by every user-requested transition, so a reconciler step that
    /// started before it does not commit a stale result.
    pub generation: u64,
    /// The engine process the reconciler last started (observed; used on Kiln
    /// restart to make sure no orphan survives).
    pub engine_pid: Option<u32>,
    pub engine_port: Option<u16>,
}

/// What the user asked for. Attributes Kiln does not interpret are kept verbatim.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ClusterConfig {
    pub cluster_name: String,
    pub spark_version: String,
    pub node_type_id: String,
    pub driver_node_type_id: String,
    pub num_workers: u32,
    pub autoscale: Option<(u32, u32)>,
    pub autotermination_minutes: u32,
    pub spark_conf: BTreeMap<String, String>,
    pub spark_env_vars: BTreeMap<String, String>,
    pub custom_tags: BTreeMap<String, String>,
    pub cluster_source: String,
    /// Other ClusterSpec attributes, echoed back as given.
    pub other: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TerminationReason {
    pub code: String,
    pub reason_type: String,
    pub parameters: BTreeMap<String, String>,
}

/// One entry of a cluster's event history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterEventRecord {
    pub cluster_id: String,
    pub timestamp: i64,
    pub event_type: String,
    /// EventDetails attributes (JSON object).
    pub details: Value,
}

/// Cluster `State` as Databricks spells it.
/// Stored as its Databricks name; its transitions are `kiln_compute::lifecycle`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClusterState {
    Pending,
    Running,
    Restarting,
    Resizing,
    Terminating,
    Terminated,
    Error,
    Unknown,
}

impl ClusterState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Restarting => "RESTARTING",
            Self::Resizing => "RESIZING",
            Self::Terminating => "TERMINATING",
            Self::Terminated => "TERMINATED",
            Self::Error => "ERROR",
            Self::Unknown => "UNKNOWN",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PENDING" => Self::Pending,
            "RUNNING" => Self::Running,
            "RESTARTING" => Self::Restarting,
            "RESIZING" => Self::Resizing,
            "TERMINATING" => Self::Terminating,
            "TERMINATED" => Self::Terminated,
            "ERROR" => Self::Error,
            "UNKNOWN" => Self::Unknown,
            _ => return None,
        })
    }

    /// The status word of REST API 1.2 (`clusters/list`, `clusters/status`).
    pub fn status_v12(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Restarting => "Restarting",
            Self::Resizing => "Reconfiguring",
            Self::Terminating => "Terminating",
            Self::Terminated => "Terminated",
            Self::Error => "Error",
            Self::Unknown => "Unknown",
        }
    }

    /// Whether an engine should be up in this state (the desired state).
    pub fn wants_engine(self) -> bool {
        matches!(
            self,
            Self::Pending | Self::Running | Self::Restarting | Self::Resizing
        )
    }
}

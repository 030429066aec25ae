//! Lakebase resources as Kiln records them (never on the wire), resource-id
//! rules, durations and timestamps.

use std::collections::BTreeMap;

use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::lifecycle::{BranchState, EndpointState};

/// Resource ids, as the Lakebase documentation gives them: 1–63 characters of
/// lowercase letters, digits and hyphens, not starting or ending with a hyphen
/// (`my-app`, `customer-123`, `123-app`).
pub fn check_id(kind: &str, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "Invalid {kind} id '{id}': use 1-63 lowercase letters, digits and hyphens, not starting or ending with a hyphen"
        )))
    }
}

/// Parses a protobuf JSON duration (`"3600s"`, `"1.5s"`) into whole seconds.
pub fn parse_duration(field: &str, value: &str) -> Result<u64> {
    let bad = || {
        Error::invalid(format!(
            "Invalid duration for {field}: '{value}' (expected e.g. \"3600s\")"
        ))
    };
    let number = value.strip_suffix('s').ok_or_else(bad)?;
    let secs: f64 = number.parse().map_err(|_| bad())?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    Ok(secs.round() as u64)
}

pub fn duration(secs: u64) -> String {
    format!("{secs}s")
}

/// Parses an RFC 3339 timestamp into epoch milliseconds.
pub fn parse_timestamp(field: &str, value: &str) -> Result<i64> {
    kiln_core::time::parse_rfc3339(value).ok_or_else(|| {
        Error::invalid(format!(
            "Invalid timestamp for {field}: '{value}' (expected RFC 3339)"
        ))
    })
}

/// Compute settings shared by endpoints and project defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeSettings {
    pub min_cu: f64,
    pub max_cu: f64,
    /// `None`: no suspension.
    pub suspend_secs: Option<u64>,
    pub pg_settings: BTreeMap<String, String>,
}

impl Default for ComputeSettings {
    fn default() -> Self {
        Self {
            min_cu: 1.0,
            max_cu: 1.0,
            suspend_secs: Some(300),
            pg_settings: BTreeMap::new(),
        }
    }
}

impl ComputeSettings {
    /// Checks the limits the API documents; `min_suspend` is the shortest
    /// suspend timeout accepted (60 s unless configured lower for tests).
    pub fn validate(&self, min_suspend: u64) -> Result<()> {
        if !(0.5..=64.0).contains(&self.min_cu) || !(0.5..=64.0).contains(&self.max_cu) {
            return Err(Error::invalid(
                "autoscaling limits must be between 0.5 and 64 CU",
            ));
        }
        if self.min_cu > self.max_cu {
            return Err(Error::invalid(
                "autoscaling_limit_min_cu must not exceed autoscaling_limit_max_cu",
            ));
        }
        if self.max_cu - self.min_cu > 16.0 {
            return Err(Error::invalid(
                "autoscaling_limit_max_cu - autoscaling_limit_min_cu must not exceed 16",
            ));
        }
        if let Some(s) = self.suspend_secs {
            if s < min_suspend || s > 604_800 {
                return Err(Error::invalid(format!(
                    "suspend_timeout_duration must be between {min_suspend}s and 604800s"
                )));
            }
        }
        for (key, value) in &self.pg_settings {
            if !user_setting(key) {
                return Err(Error::invalid(format!(
                    "Invalid value for field settings.pg_settings: '{key}' is not a setting users may change (session, planner, resource and logging settings such as work_mem, statement_timeout, search_path, timezone are; file locations, commands, connection, TLS and preload settings are Kiln's)"
                )));
            }
            if value.chars().any(|c| c.is_control()) {
                return Err(Error::invalid(format!(
                    "Invalid value for field settings.pg_settings.{key}: control characters are not allowed"
                )));
            }
        }
        Ok(())
    }
}

/// Postgres settings a Lakebase user may set (names are case-insensitive).
const USER_SETTINGS: &[&str] = &[
    "application_name",
    "bytea_output",
    "client_encoding",
    "client_min_messages",
    "cpu_index_tuple_cost",
    "cpu_operator_cost",
    "cpu_tuple_cost",
    "datestyle",
    "deadlock_timeout",
    "default_statistics_target",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "effective_cache_size",
    "effective_io_concurrency",
    "extra_float_digits",
    "from_collapse_limit",
    "geqo",
    "geqo_threshold",
    "idle_in_transaction_session_timeout",
    "idle_session_timeout",
    "intervalstyle",
    "jit",
    "jit_above_cost",
    "join_collapse_limit",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "lock_timeout",
    "log_lock_waits",
    "log_min_duration_statement",
    "log_statement",
    "maintenance_work_mem",
    "max_parallel_maintenance_workers",
    "max_parallel_workers_per_gather",
    "parallel_setup_cost",
    "parallel_tuple_cost",
    "plan_cache_mode",
    "random_page_cost",
    "row_security",
    "search_path",
    "seq_page_cost",
    "standard_conforming_strings",
    "statement_timeout",
    "synchronous_commit",
    "temp_buffers",
    "timezone",
    "track_io_timing",
    "vacuum_cost_delay",
    "vacuum_cost_limit",
    "work_mem",
    "xmloption",
];

/// Whether users may set `key`: the list above and the planner's `enable_*` switches.
pub fn user_setting(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    USER_SETTINGS.contains(&key.as_str())
        || (key.starts_with("enable_")
            && key.len() > 7
            && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectRecord {
    pub project_id: String,
    pub uid: String,
    pub display_name: String,
    pub pg_version: u32,
    pub history_retention_secs: u64,
    pub defaults: ComputeSettings,
    pub enable_pg_native_login: bool,
    pub custom_tags: Vec<(String, String)>,
    pub budget_policy_id: Option<String>,
    pub default_branch: String,
    /// The creating identity (its Postgres role).
    pub owner: String,
    pub create_ms: i64,
    pub update_ms: i64,
}

impl ProjectRecord {
    pub fn name(&self) -> String {
        format!("projects/{}", self.project_id)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BranchRecord {
    pub project_id: String,
    pub branch_id: String,
    pub uid: String,
    pub source_branch: Option<String>,
    pub source_lsn: Option<String>,
    pub source_time_ms: Option<i64>,
    /// `projects/{p}/snapshots/{s}` for a branch restored from a snapshot.
    #[serde(default)]
    pub source_snapshot: Option<String>,
    pub is_protected: bool,
    pub expire_ms: Option<i64>,
    pub state: BranchState,
    pub default: bool,
    /// When the branch's base backup was taken (its PITR floor).
    pub base_ms: i64,
    pub create_ms: i64,
    pub update_ms: i64,
    pub state_change_ms: i64,
}

impl BranchRecord {
    pub fn name(&self) -> String {
        format!("projects/{}/branches/{}", self.project_id, self.branch_id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointType {
    ReadWrite,
    ReadOnly,
}

impl EndpointType {
    /// Accepts `ENDPOINT_TYPE_READ_WRITE` and the older `READ_WRITE` spellings.
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "ENDPOINT_TYPE_READ_WRITE" | "READ_WRITE" => Ok(Self::ReadWrite),
            "ENDPOINT_TYPE_READ_ONLY" | "READ_ONLY" => Ok(Self::ReadOnly),
            other => Err(Error::invalid(format!(
                "Invalid endpoint_type '{other}': use ENDPOINT_TYPE_READ_WRITE or ENDPOINT_TYPE_READ_ONLY"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWrite => "ENDPOINT_TYPE_READ_WRITE",
            Self::ReadOnly => "ENDPOINT_TYPE_READ_ONLY",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub project_id: String,
    pub branch_id: String,
    pub endpoint_id: String,
    /// `ep-…`: the first label of the endpoint's host name.
    pub uid: String,
    pub endpoint_type: EndpointType,
    pub settings: ComputeSettings,
    pub disabled: bool,
    /// The recorded (observed) state; restored on restart.
    pub state: EndpointState,
    pub last_active_ms: i64,
    pub create_ms: i64,
    pub update_ms: i64,
}

impl EndpointRecord {
    pub fn name(&self) -> String {
        format!(
            "projects/{}/branches/{}/endpoints/{}",
            self.project_id, self.branch_id, self.endpoint_id
        )
    }

    pub fn branch_name(&self) -> String {
        format!("projects/{}/branches/{}", self.project_id, self.branch_id)
    }
}

/// A long-running operation (see `operations`): pending until its work ends,
/// then succeeded with a response or failed with an error. Stored in the shape
/// it always had (`done`, `response`, `error`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "StoredOperation", into = "StoredOperation")]
pub struct OperationRecord {
    pub name: String,
    pub metadata_type: String,
    /// Who asked for it (operations are readable by their requester and admins).
    pub requested_by: String,
    pub create_ms: i64,
    pub state: OperationState,
}

/// Where an operation stands; it moves only through [`OperationLifecycle`].
#[derive(Debug, Clone, PartialEq)]
pub enum OperationState {
    Pending,
    Succeeded(serde_json::Value),
    Failed(OperationError),
}

/// What ends an operation.
#[derive(Debug, Clone)]
pub enum OperationEvent {
    /// Its work ended with this response.
    Succeed(serde_json::Value),
    /// Its work failed, or Kiln stopped before it ended.
    Fail(OperationError),
}

/// The operation lifecycle's table: a pending operation ends once.
pub struct OperationLifecycle;

impl kiln_core::lifecycle::Lifecycle for OperationLifecycle {
    type State = OperationState;
    type Event = OperationEvent;

    fn next(from: OperationState, event: OperationEvent) -> Option<OperationState> {
        match (from, event) {
            (OperationState::Pending, OperationEvent::Succeed(r)) => {
                Some(OperationState::Succeeded(r))
            }
            (OperationState::Pending, OperationEvent::Fail(e)) => Some(OperationState::Failed(e)),
            _ => None,
        }
    }

    fn name(state: &OperationState) -> &'static str {
        match state {
            OperationState::Pending => "PENDING",
            OperationState::Succeeded(_) => "SUCCEEDED",
            OperationState::Failed(_) => "FAILED",
        }
    }
}

impl OperationRecord {
    pub fn done(&self) -> bool {
        !matches!(self.state, OperationState::Pending)
    }
}

#[derive(Serialize, Deserialize)]
struct StoredOperation {
    name: String,
    metadata_type: String,
    response: serde_json::Value,
    requested_by: String,
    create_ms: i64,
    /// Records from before operations could be pending were all done.
    #[serde(default = "done_by_default")]
    done: bool,
    #[serde(default)]
    error: Option<OperationError>,
}

fn done_by_default() -> bool {
    true
}

impl From<StoredOperation> for OperationRecord {
    fn from(s: StoredOperation) -> Self {
        let state = match (s.done, s.error) {
            (false, _) => OperationState::Pending,
            (true, Some(e)) => OperationState::Failed(e),
            (true, None) => OperationState::Succeeded(s.response),
        };
        Self {
            name: s.name,
            metadata_type: s.metadata_type,
            requested_by: s.requested_by,
            create_ms: s.create_ms,
            state,
        }
    }
}

impl From<OperationRecord> for StoredOperation {
    fn from(r: OperationRecord) -> Self {
        let (done, response, error) = match r.state {
            OperationState::Pending => (false, serde_json::Value::Null, None),
            OperationState::Succeeded(v) => (true, v, None),
            OperationState::Failed(e) => (true, serde_json::Value::Null, Some(e)),
        };
        Self {
            name: r.name,
            metadata_type: r.metadata_type,
            response,
            requested_by: r.requested_by,
            create_ms: r.create_ms,
            done,
            error,
        }
    }
}

/// Why an operation failed, in Databricks `error_code` terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationError {
    pub error_code: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_user_settings_are_accepted() {
        for ok in [
            "work_mem",
            "statement_timeout",
            "search_path",
            "TimeZone",
            "enable_seqscan",
        ] {
            assert!(user_setting(ok), "{ok}");
        }
        for bad in [
            "archive_command",
            "restore_command",
            "listen_addresses",
            "ssl",
            "ssl_key_file",
            "shared_preload_libraries",
            "unix_socket_directories",
            "hba_file",
            "data_directory",
            "log_directory",
            "primary_conninfo",
            "port",
            "enable_",
            "session_preload_libraries",
        ] {
            assert!(!user_setting(bad), "{bad}");
        }
    }

    #[test]
    fn ids_durations_and_timestamps() {
        assert!(check_id("project", "my-app").is_ok());
        assert!(check_id("project", "a").is_ok());
        assert!(check_id("project", "123-app").is_ok());
        assert!(check_id("project", "customer-123").is_ok());
        assert!(check_id("project", &"a".repeat(63)).is_ok());
        for bad in ["", "-a", "a-", "-", "My-app", "a_b", "a.b", &"a".repeat(64)] {
            assert!(check_id("project", bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("ttl", "3600s").ok(), Some(3600));
        assert_eq!(parse_duration("ttl", "1.5s").ok(), Some(2));
        assert!(parse_duration("ttl", "3600").is_err());
        assert_eq!(
            parse_timestamp("t", "1970-01-01T00:00:01.5Z").ok(),
            Some(1500)
        );
        assert_eq!(
            parse_timestamp("t", "2026-11-21T13:28:14.123Z").ok(),
            Some(1_795_267_694_123)
        );
        assert_eq!(
            parse_timestamp("t", "2026-11-21T14:28:14.123+01:00").ok(),
            Some(1_795_267_694_123)
        );
        assert!(parse_timestamp("t", "yesterday").is_err());
        assert_eq!(
            kiln_core::time::rfc3339(1_795_267_694_123),
            "2026-11-21T13:28:14.123Z"
        );
    }

    #[test]
    fn compute_settings_limits() {
        let mut s = ComputeSettings::default();
        assert!(s.validate(60).is_ok());
        s.suspend_secs = Some(10);
        assert!(s.validate(60).is_err());
        assert!(s.validate(1).is_ok());
        s.min_cu = 4.0;
        assert!(s.validate(1).is_err());
    }
}

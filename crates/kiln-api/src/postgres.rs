//! Lakebase Postgres API (`/api/2.0/postgres/…`, SDK `w.postgres`): projects,
//! branches, endpoints, operations and database credentials. Durations are
//! protobuf JSON strings (`"3600s"`), timestamps RFC 3339.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a branch's Data API is served: `<prefix><project>/<branch>/<database>`
/// (its requests authenticate themselves, with Lakebase credentials).
pub const DATA_API_PREFIX: &str = "/lakebase/data-api/";

macro_rules! opt {
    ($(#[$m:meta])* pub struct $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct $name {
            $(#[serde(default, skip_serializing_if = "Option::is_none")] pub $field: Option<$ty>,)*
        }
    };
}

opt!(
    pub struct CustomTag {
        key: String,
        value: String,
    }
);

opt!(
    /// `ProjectDefaultEndpointSettings`.
    pub struct DefaultEndpointSettings {
        autoscaling_limit_min_cu: f64,
        autoscaling_limit_max_cu: f64,
        suspend_timeout_duration: String,
        no_suspension: bool,
        pg_settings: BTreeMap<String, String>,
    }
);

opt!(
    pub struct ProjectSpec {
        display_name: String,
        pg_version: u32,
        history_retention_duration: String,
        default_endpoint_settings: DefaultEndpointSettings,
        default_branch: String,
        enable_pg_native_login: bool,
        custom_tags: Vec<CustomTag>,
        budget_policy_id: String,
    }
);

opt!(
    pub struct ProjectStatus {
        display_name: String,
        pg_version: u32,
        history_retention_duration: String,
        default_endpoint_settings: DefaultEndpointSettings,
        default_branch: String,
        enable_pg_native_login: bool,
        custom_tags: Vec<CustomTag>,
        budget_policy_id: String,
        owner: String,
        project_id: String,
        branch_logical_size_limit_bytes: u64,
        synthetic_storage_size_bytes: u64,
        compute_last_active_time: String,
    }
);

opt!(
    pub struct InitialBranchSpec {
        is_protected: bool,
    }
);

opt!(
    pub struct InitialEndpointSpec {
        autoscaling_limit_min_cu: f64,
        autoscaling_limit_max_cu: f64,
        suspend_timeout_duration: String,
        no_suspension: bool,
    }
);

opt!(
    /// `Project` (the create/update body and every answer).
    pub struct Project {
        name: String,
        project_id: String,
        uid: String,
        create_time: String,
        update_time: String,
        spec: ProjectSpec,
        status: ProjectStatus,
        initial_branch_spec: InitialBranchSpec,
        initial_endpoint_spec: InitialEndpointSpec,
        delete_time: String,
        purge_time: String,
    }
);

opt!(
    pub struct BranchSpec {
        source_branch: String,
        source_branch_lsn: String,
        source_branch_time: String,
        is_protected: bool,
        ttl: String,
        expire_time: String,
        no_expiry: bool,
        source_snapshot: String,
    }
);

opt!(
    pub struct BranchStatus {
        branch_id: String,
        current_state: String,
        default: bool,
        is_protected: bool,
        logical_size_bytes: u64,
        source_branch: String,
        source_branch_lsn: String,
        source_branch_time: String,
        expire_time: String,
        state_change_time: String,
        delete_time: String,
        purge_time: String,
        source_snapshot: String,
    }
);

opt!(
    pub struct Branch {
        name: String,
        branch_id: String,
        parent: String,
        uid: String,
        create_time: String,
        update_time: String,
        spec: BranchSpec,
        status: BranchStatus,
    }
);

opt!(
    pub struct EndpointSettings {
        pg_settings: BTreeMap<String, String>,
    }
);

opt!(
    pub struct EndpointSpec {
        endpoint_type: String,
        autoscaling_limit_min_cu: f64,
        autoscaling_limit_max_cu: f64,
        suspend_timeout_duration: String,
        no_suspension: bool,
        disabled: bool,
        settings: EndpointSettings,
    }
);

opt!(
    pub struct EndpointHosts {
        host: String,
        read_only_host: String,
    }
);

opt!(
    /// `EndpointStatus`; `current_cu` is Kiln's: the compute units the running
    /// endpoint has now (autoscaling).
    pub struct EndpointStatus {
        endpoint_id: String,
        endpoint_type: String,
        current_state: String,
        autoscaling_limit_min_cu: f64,
        autoscaling_limit_max_cu: f64,
        suspend_timeout_duration: String,
        disabled: bool,
        settings: EndpointSettings,
        hosts: EndpointHosts,
        host: String,
        last_active_time: String,
        current_cu: f64,
    }
);

opt!(
    pub struct Endpoint {
        name: String,
        endpoint_id: String,
        parent: String,
        uid: String,
        create_time: String,
        update_time: String,
        spec: EndpointSpec,
        status: EndpointStatus,
    }
);

/// `Operation`: every create/update/delete answers one.
#[derive(Debug, Clone, Serialize)]
pub struct Operation {
    pub name: String,
    pub done: bool,
    pub metadata: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<OperationError>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OperationError {
    pub error_code: String,
    pub message: String,
}

/// Query of create calls (`?project_id=`, `?branch_id=`, `?endpoint_id=`).
#[derive(Debug, Default, Deserialize)]
pub struct CreateQuery {
    pub project_id: Option<String>,
    pub branch_id: Option<String>,
    pub endpoint_id: Option<String>,
    pub replace_existing: Option<String>,
}

/// Query of update calls.
#[derive(Debug, Default, Deserialize)]
pub struct UpdateQuery {
    pub update_mask: Option<String>,
}

/// Query of list calls.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub page_size: Option<usize>,
    pub page_token: Option<String>,
    pub show_deleted: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ListProjectsResponse {
    pub projects: Vec<Project>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ListBranchesResponse {
    pub branches: Vec<Branch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ListEndpointsResponse {
    pub endpoints: Vec<Endpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// POST /api/2.0/postgres/credentials.
#[derive(Debug, Deserialize)]
pub struct GenerateDatabaseCredential {
    pub endpoint: Option<String>,
    pub ttl: Option<String>,
    pub expire_time: Option<String>,
    #[serde(default)]
    pub claims: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct DatabaseCredential {
    pub token: String,
    pub expire_time: String,
}

// ---- roles and databases (on a branch) ----------------------------------------

opt!(
    /// `RoleAttributes`.
    pub struct RoleAttributes {
        bypassrls: bool,
        createdb: bool,
        createrole: bool,
    }
);

opt!(
    /// `RoleRoleSpec` (and `RoleRoleStatus`, which adds `role_id`).
    pub struct RoleSpec {
        postgres_role: String,
        identity_type: String,
        auth_method: String,
        attributes: RoleAttributes,
        membership_roles: Vec<String>,
        role_id: String,
    }
);

opt!(
    pub struct Role {
        name: String,
        parent: String,
        role_id: String,
        create_time: String,
        update_time: String,
        spec: RoleSpec,
        status: RoleSpec,
    }
);

opt!(
    /// `DatabaseDatabaseSpec` (and the status, which adds `database_id`).
    pub struct DatabaseSpec {
        postgres_database: String,
        role: String,
        database_id: String,
    }
);

opt!(
    pub struct Database {
        name: String,
        parent: String,
        database_id: String,
        create_time: String,
        update_time: String,
        spec: DatabaseSpec,
        status: DatabaseSpec,
    }
);

opt!(
    /// `DataApiDataApiSpec` (and the status, which adds `url` and `available_schemas`).
    pub struct DataApiSpec {
        db_aggregates_enabled: bool,
        db_extra_search_path: Vec<String>,
        db_max_rows: u64,
        db_schemas: Vec<String>,
        jwt_cache_max_lifetime: String,
        jwt_role_claim_key: String,
        openapi_mode: String,
        server_cors_allowed_origins: Vec<String>,
        server_timing_enabled: bool,
        available_schemas: Vec<String>,
        url: String,
    }
);

opt!(
    /// `DataApi`: the Data API (PostgREST) configuration of a database.
    pub struct DataApi {
        name: String,
        parent: String,
        create_time: String,
        update_time: String,
        spec: DataApiSpec,
        status: DataApiSpec,
    }
);

/// Query of `create_role` / `create_database`.
#[derive(Debug, Default, Deserialize)]
pub struct CreateObjectQuery {
    pub role_id: Option<String>,
    pub database_id: Option<String>,
    pub replace_existing: Option<String>,
}

/// Query of `delete_project` / `delete_branch`.
#[derive(Debug, Default, Deserialize)]
pub struct DeleteQuery {
    pub purge: Option<String>,
}

/// Query of `delete_role`.
#[derive(Debug, Default, Deserialize)]
pub struct DeleteRoleQuery {
    pub reassign_owned_to: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ListRolesResponse {
    pub roles: Vec<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ListDatabasesResponse {
    pub databases: Vec<Database>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// POST `{role}/password`.
#[derive(Debug, Serialize)]
pub struct RevealRolePasswordResponse {
    pub password: String,
}

// ---- snapshots (of a project's branches) ----------------------------------------

opt!(
    /// `SnapshotSpec` (and `SnapshotStatus`, which adds sizes).
    pub struct SnapshotSpec {
        source_branch: String,
        source_branch_lsn: String,
        source_branch_time: String,
        ttl: String,
        expire_time: String,
        no_expiry: bool,
        full_size_bytes: u64,
    }
);

opt!(
    pub struct Snapshot {
        name: String,
        snapshot_id: String,
        uid: String,
        create_time: String,
        spec: SnapshotSpec,
        status: SnapshotSpec,
    }
);

/// Query of `create_snapshot`.
#[derive(Debug, Default, Deserialize)]
pub struct CreateSnapshotQuery {
    pub snapshot_id: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ListSnapshotsResponse {
    pub snapshots: Vec<Snapshot>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// `SnapshotSchedule`: `schedule` replaces the whole list on update.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SnapshotSchedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub schedule: Vec<ScheduleCadence>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScheduleCadence {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_schedule: Option<CadenceAt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly_schedule: Option<CadenceAt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_schedule: Option<CadenceAt>,
}

/// `DailySchedule`, `WeeklySchedule` (`day_of_week`), `MonthlySchedule` (`day`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CadenceAt {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_of_week: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day: Option<u32>,
}

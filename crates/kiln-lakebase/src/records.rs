//! The durable records of Lakebase's objects besides projects, branches,
//! endpoints and operations ([`crate::model`]): Postgres roles and databases,
//! snapshot schedules, Data API settings, snapshots and deleted resources; the
//! store kinds they are kept under, and loading them when Kiln starts. What
//! Lakebase does with them lives in the module named after each.

use std::collections::BTreeMap;
use std::sync::RwLock;

use kiln_core::{Error, Result};
use kiln_store::{Store, Write};
use serde::{Deserialize, Serialize};

use crate::model::{BranchRecord, EndpointRecord, ProjectRecord};

pub const ROLE: &str = "pg_role";
pub const DATABASE: &str = "pg_database";

/// Snapshot schedules of branches.
pub const SCHEDULE: &str = "pg_snapshot_schedule";

pub const DATA_API: &str = "pg_data_api";
pub const OPENAPI_DISABLED: &str = "OPEN_API_MODE_DISABLED";
pub const OPENAPI_IGNORE_PRIVILEGES: &str = "OPEN_API_MODE_IGNORE_PRIVILEGES";

/// The PostgREST configuration of one database (`DataApiDataApiSpec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataApiSpec {
    pub db_schemas: Vec<String>,
    pub db_extra_search_path: Vec<String>,
    pub db_max_rows: Option<u64>,
    pub db_aggregates_enabled: bool,
    pub jwt_cache_max_lifetime_secs: u64,
    pub jwt_role_claim_key: String,
    pub openapi_mode: String,
    pub server_cors_allowed_origins: Vec<String>,
    pub server_timing_enabled: bool,
}

impl Default for DataApiSpec {
    fn default() -> Self {
        Self {
            db_schemas: vec!["public".into()],
            db_extra_search_path: vec!["public".into()],
            db_max_rows: None,
            db_aggregates_enabled: true,
            jwt_cache_max_lifetime_secs: 0,
            jwt_role_claim_key: ".sub".into(),
            openapi_mode: OPENAPI_IGNORE_PRIVILEGES.into(),
            server_cors_allowed_origins: Vec::new(),
            server_timing_enabled: false,
        }
    }
}

/// `RoleAttributes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoleAttributes {
    pub bypassrls: bool,
    pub createdb: bool,
    pub createrole: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleRecord {
    pub project_id: String,
    pub branch_id: String,
    pub role_id: String,
    pub postgres_role: String,
    /// `USER`, `SERVICE_PRINCIPAL`, `GROUP`; none for a plain Postgres role.
    pub identity_type: Option<String>,
    /// `LAKEBASE_OAUTH_V1`, `PG_PASSWORD_SCRAM_SHA_256` or `NO_LOGIN`.
    pub auth_method: String,
    pub attributes: RoleAttributes,
    pub membership_roles: Vec<String>,
    /// The generated password of a password role, sealed with the workspace key.
    pub password_sealed: Option<String>,
    pub create_ms: i64,
    pub update_ms: i64,
}

impl RoleRecord {
    pub fn branch_name(&self) -> String {
        format!("projects/{}/branches/{}", self.project_id, self.branch_id)
    }
    pub fn name(&self) -> String {
        format!("{}/roles/{}", self.branch_name(), self.role_id)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseRecord {
    pub project_id: String,
    pub branch_id: String,
    pub database_id: String,
    pub postgres_database: String,
    /// The owner's role id on the same branch.
    pub role_id: String,
    pub create_ms: i64,
    pub update_ms: i64,
}

impl DatabaseRecord {
    pub fn branch_name(&self) -> String {
        format!("projects/{}/branches/{}", self.project_id, self.branch_id)
    }
    pub fn name(&self) -> String {
        format!("{}/databases/{}", self.branch_name(), self.database_id)
    }
}

/// The records, by resource name.
#[derive(Default)]
pub(crate) struct Objects {
    pub roles: RwLock<BTreeMap<String, RoleRecord>>,
    pub databases: RwLock<BTreeMap<String, DatabaseRecord>>,
    pub schedules: RwLock<BTreeMap<String, ScheduleRecord>>,
    pub data_apis: RwLock<BTreeMap<String, DataApiRecord>>,
}

impl Objects {
    pub fn load(store: &dyn Store) -> Result<Self> {
        let objects = Self::default();
        {
            let mut roles = write(&objects.roles)?;
            for v in store.objects(ROLE)? {
                let r: RoleRecord = serde_json::from_value(v)
                    .map_err(|e| Error::internal("read Lakebase roles", e))?;
                roles.insert(r.name(), r);
            }
            let mut dbs = write(&objects.databases)?;
            for v in store.objects(DATABASE)? {
                let d: DatabaseRecord = serde_json::from_value(v)
                    .map_err(|e| Error::internal("read Lakebase databases", e))?;
                dbs.insert(d.name(), d);
            }
            let mut schedules = write(&objects.schedules)?;
            for v in store.objects(SCHEDULE)? {
                let s: ScheduleRecord = serde_json::from_value(v)
                    .map_err(|e| Error::internal("read Lakebase snapshot schedules", e))?;
                schedules.insert(s.name(), s);
            }
            let mut apis = write(&objects.data_apis)?;
            for v in store.objects(DATA_API)? {
                let a: DataApiRecord = serde_json::from_value(v)
                    .map_err(|e| Error::internal("read Lakebase Data API settings", e))?;
                apis.insert(a.name(), a);
            }
        }
        Ok(objects)
    }
}

pub(crate) fn read<T>(lock: &RwLock<T>) -> Result<std::sync::RwLockReadGuard<'_, T>> {
    lock.read()
        .map_err(|_| Error::internal("read Lakebase objects", "poisoned lock"))
}

pub(crate) fn write<T>(lock: &RwLock<T>) -> Result<std::sync::RwLockWriteGuard<'_, T>> {
    lock.write()
        .map_err(|_| Error::internal("update Lakebase objects", "poisoned lock"))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Cadence {
    Daily {
        hour: u32,
    },
    /// `day_of_week`: 0 = Monday … 6 = Sunday.
    Weekly {
        day_of_week: u32,
        hour: u32,
    },
    /// `day` 1–31, clamped to the month's last day.
    Monthly {
        day: u32,
        hour: u32,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleEntry {
    pub cadence: Cadence,
    pub retention_secs: u64,
    /// The last period (its due instant) a snapshot was taken for.
    #[serde(default)]
    pub last_due_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleRecord {
    pub project_id: String,
    pub branch_id: String,
    pub entries: Vec<ScheduleEntry>,
}

impl ScheduleRecord {
    pub fn name(&self) -> String {
        format!(
            "projects/{}/branches/{}/snapshot-schedule",
            self.project_id, self.branch_id
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataApiRecord {
    pub project_id: String,
    pub branch_id: String,
    pub database_id: String,
    pub spec: DataApiSpec,
    /// Schemas of the database when the configuration was last written.
    pub available_schemas: Vec<String>,
    pub create_ms: i64,
    pub update_ms: i64,
}

pub const TRASH: &str = "pg_trash";

/// A soft-deleted project (with all its branches) or branch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrashEntry {
    /// `projects/{p}` or `projects/{p}/branches/{b}`.
    pub name: String,
    pub delete_ms: i64,
    pub purge_ms: i64,
    pub project: Option<ProjectRecord>,
    pub branches: Vec<BranchRecord>,
    pub endpoints: Vec<EndpointRecord>,
    pub roles: Vec<RoleRecord>,
    pub databases: Vec<DatabaseRecord>,
}

pub(crate) fn load_trash(store: &dyn Store) -> Result<BTreeMap<String, TrashEntry>> {
    store
        .objects(TRASH)?
        .into_iter()
        .map(|v| {
            serde_json::from_value::<TrashEntry>(v)
                .map(|t| (t.name.clone(), t))
                .map_err(|e| Error::internal("read deleted Lakebase resources", e))
        })
        .collect()
}

pub const SNAPSHOT: &str = "pg_snapshot";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub project_id: String,
    pub snapshot_id: String,
    /// Where its data lives (a branch-layout directory).
    pub uid: String,
    pub source_branch: String,
    pub source_lsn: Option<String>,
    pub source_time_ms: Option<i64>,
    pub expire_ms: Option<i64>,
    pub create_ms: i64,
}

impl SnapshotRecord {
    pub fn name(&self) -> String {
        format!(
            "projects/{}/snapshots/{}",
            self.project_id, self.snapshot_id
        )
    }
}

pub(crate) fn load_snapshots(store: &dyn Store) -> Result<BTreeMap<String, SnapshotRecord>> {
    store
        .objects(SNAPSHOT)?
        .into_iter()
        .map(|v| {
            serde_json::from_value::<SnapshotRecord>(v)
                .map(|s| (s.name(), s))
                .map_err(|e| Error::internal("read Lakebase snapshots", e))
        })
        .collect()
}

/// A store write that puts `value` under `kind` and `key`.
pub(crate) fn put<T: Serialize>(kind: &'static str, key: String, value: &T) -> Result<Write> {
    Ok(Write::PutObject {
        kind,
        key,
        record: serde_json::to_value(value)
            .map_err(|e| Error::internal("write Lakebase records", e))?,
    })
}

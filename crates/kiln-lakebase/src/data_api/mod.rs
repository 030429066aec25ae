//! The Data API (`w.postgres.*_data_api`): a PostgREST-compatible HTTP API
//! over one database of a branch. Its configuration is a record per
//! database; a request is parsed ([`query`]), written as SQL ([`sql`]) and
//! run ([`exec`]) on the branch's primary *as the caller's own Postgres role*
//! — a connection that logs in as that role, so GRANTs and row-level
//! security apply and nothing the request runs can become another role.

pub mod exec;
pub mod query;
mod rpc;
mod select;
pub mod sql;

use kiln_core::time::now_ms;
use kiln_core::{Error, ErrorCode, Result};
use kiln_store::Write;

pub(crate) use crate::records::DATA_API;
use crate::records::{put, read};
pub use crate::records::{DataApiRecord, DataApiSpec, OPENAPI_DISABLED, OPENAPI_IGNORE_PRIVILEGES};
use crate::service::Lakebase;

/// Fields a create or update sets (the rest keep their value).
#[derive(Debug, Clone, Default)]
pub struct DataApiPatch {
    pub db_schemas: Option<Vec<String>>,
    pub db_extra_search_path: Option<Vec<String>>,
    pub db_max_rows: Option<u64>,
    pub db_aggregates_enabled: Option<bool>,
    pub jwt_cache_max_lifetime_secs: Option<u64>,
    pub jwt_role_claim_key: Option<String>,
    pub openapi_mode: Option<String>,
    pub server_cors_allowed_origins: Option<Vec<String>>,
    pub server_timing_enabled: Option<bool>,
}

impl DataApiPatch {
    fn apply(self, mut spec: DataApiSpec) -> Result<DataApiSpec> {
        macro_rules! set {
            ($($f:ident),*) => { $(if let Some(v) = self.$f { spec.$f = v; })* };
        }
        set!(
            db_schemas,
            db_extra_search_path,
            db_aggregates_enabled,
            jwt_cache_max_lifetime_secs,
            jwt_role_claim_key,
            openapi_mode,
            server_cors_allowed_origins,
            server_timing_enabled
        );
        if let Some(rows) = self.db_max_rows {
            spec.db_max_rows = Some(rows);
        }
        check(&spec)?;
        Ok(spec)
    }
}

fn check(spec: &DataApiSpec) -> Result<()> {
    if spec.db_schemas.is_empty() || spec.db_schemas.len() > 100 {
        return Err(Error::invalid("spec.db_schemas: 1 to 100 schema names"));
    }
    for s in spec.db_schemas.iter().chain(&spec.db_extra_search_path) {
        let ok = (1..=63).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        if !ok {
            return Err(Error::invalid(format!(
                "Invalid schema name '{s}': 1-63 characters, [a-zA-Z_][a-zA-Z0-9_$]*"
            )));
        }
    }
    if spec.db_max_rows == Some(0) {
        return Err(Error::invalid(
            "spec.db_max_rows must be a positive integer",
        ));
    }
    if ![OPENAPI_DISABLED, OPENAPI_IGNORE_PRIVILEGES].contains(&spec.openapi_mode.as_str()) {
        return Err(Error::invalid(format!(
            "Invalid spec.openapi_mode '{}': {OPENAPI_DISABLED} or {OPENAPI_IGNORE_PRIVILEGES}",
            spec.openapi_mode
        )));
    }
    for origin in &spec.server_cors_allowed_origins {
        let ok = origin == "*"
            || ((origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.contains(char::is_whitespace));
        if !ok {
            return Err(Error::invalid(format!(
                "Invalid CORS origin '{origin}': an origin URL or *"
            )));
        }
    }
    Ok(())
}

impl DataApiRecord {
    pub fn database_name(&self) -> String {
        format!(
            "projects/{}/branches/{}/databases/{}",
            self.project_id, self.branch_id, self.database_id
        )
    }
    pub fn name(&self) -> String {
        format!("{}/data-api", self.database_name())
    }
}

/// What kind of failure a Data API error is. The HTTP edge renders each as
/// the status PostgREST gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    BadRequest,
    Unauthenticated,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    NotAcceptable,
    Conflict,
    TooLarge,
    RangeNotSatisfiable,
    TooManyRequests,
    Internal,
    Unavailable,
}

/// What a successful Data API request came to; the edge renders it as
/// 200, 201 (a row was inserted) or 204 (no body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Created,
    NoContent,
}

/// A PostgREST-shaped error: its kind and `{code, message, details, hint}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestError {
    pub kind: Failure,
    pub code: String,
    pub message: String,
    pub details: Option<String>,
    pub hint: Option<String>,
}

impl RestError {
    pub fn new(kind: Failure, code: &str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code: code.into(),
            message: message.into(),
            details: None,
            hint: None,
        }
    }

    pub fn body(&self) -> String {
        serde_json::json!({
            "code": self.code,
            "message": self.message,
            "details": self.details,
            "hint": self.hint,
        })
        .to_string()
    }
}

fn not_enabled(name: &str) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!("The Data API is not enabled for {name}"),
    )
}

impl Lakebase {
    /// The Data API configuration of a database (NOT_FOUND when not enabled).
    pub fn data_api(
        &self,
        project_id: &str,
        branch_id: &str,
        database_id: &str,
    ) -> Result<DataApiRecord> {
        let database = self.database(project_id, branch_id, database_id)?;
        read(&self.objects.data_apis)?
            .get(&format!("{}/data-api", database.name()))
            .cloned()
            .ok_or_else(|| not_enabled(&database.name()))
    }

    /// Enables the Data API on a database (`create_data_api`).
    pub async fn create_data_api(
        &self,
        project_id: &str,
        branch_id: &str,
        database_id: &str,
        patch: DataApiPatch,
    ) -> Result<DataApiRecord> {
        let _lock = self.lock_project(project_id).await;
        let database = self.database(project_id, branch_id, database_id)?;
        if self.data_api(project_id, branch_id, database_id).is_ok() {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("The Data API is already enabled for {}", database.name()),
            ));
        }
        let spec = patch.apply(DataApiSpec::default())?;
        crate::operations::accepted();
        let now = now_ms();
        let record = DataApiRecord {
            project_id: project_id.into(),
            branch_id: branch_id.into(),
            database_id: database_id.into(),
            available_schemas: self
                .schemas(project_id, branch_id, &database.postgres_database)
                .await?,
            spec,
            create_ms: now,
            update_ms: now,
        };
        self.save_data_api(&record)?;
        Ok(record)
    }

    pub async fn update_data_api(
        &self,
        project_id: &str,
        branch_id: &str,
        database_id: &str,
        patch: DataApiPatch,
    ) -> Result<DataApiRecord> {
        let _lock = self.lock_project(project_id).await;
        let mut record = self.data_api(project_id, branch_id, database_id)?;
        let database = self.database(project_id, branch_id, database_id)?;
        record.spec = patch.apply(record.spec)?;
        crate::operations::accepted();
        record.available_schemas = self
            .schemas(project_id, branch_id, &database.postgres_database)
            .await?;
        record.update_ms = now_ms();
        self.save_data_api(&record)?;
        Ok(record)
    }

    pub async fn delete_data_api(
        &self,
        project_id: &str,
        branch_id: &str,
        database_id: &str,
    ) -> Result<()> {
        let _lock = self.lock_project(project_id).await;
        let record = self.data_api(project_id, branch_id, database_id)?;
        crate::operations::accepted();
        let writes = vec![Write::DeleteObject {
            kind: DATA_API,
            key: record.name(),
        }];
        self.store.commit(writes.clone())?;
        self.apply_objects(&writes)
    }

    fn save_data_api(&self, record: &DataApiRecord) -> Result<()> {
        let writes = vec![put(DATA_API, record.name(), record)?];
        self.store.commit(writes.clone())?;
        self.apply_objects(&writes)
    }

    /// The user schemas of a database (the branch's primary is woken).
    async fn schemas(
        &self,
        project_id: &str,
        branch_id: &str,
        database: &str,
    ) -> Result<Vec<String>> {
        let (socket, _busy) = self.wake_primary(project_id, branch_id).await?;
        let client = crate::pg::connect(&socket, database).await?;
        let rows = client
            .query(
                "SELECT nspname::text FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' \
                 AND nspname <> 'information_schema' ORDER BY 1",
                &[],
            )
            .await
            .map_err(|e| Error::internal("list schemas", crate::pg::sql_error(&e)))?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_checked() {
        let ok = DataApiPatch {
            db_schemas: Some(vec!["public".into(), "api_v1".into()]),
            db_max_rows: Some(100),
            server_cors_allowed_origins: Some(vec!["https://app.example.com".into()]),
            ..Default::default()
        };
        let spec = ok.apply(DataApiSpec::default());
        assert_eq!(spec.map(|s| s.db_max_rows).ok(), Some(Some(100)));
        for bad in [
            DataApiPatch {
                db_schemas: Some(vec!["1bad".into()]),
                ..Default::default()
            },
            DataApiPatch {
                db_schemas: Some(vec![]),
                ..Default::default()
            },
            DataApiPatch {
                db_max_rows: Some(0),
                ..Default::default()
            },
            DataApiPatch {
                openapi_mode: Some("FOLLOW".into()),
                ..Default::default()
            },
            DataApiPatch {
                server_cors_allowed_origins: Some(vec!["javascript:x".into()]),
                ..Default::default()
            },
        ] {
            assert!(bad.apply(DataApiSpec::default()).is_err());
        }
    }
}

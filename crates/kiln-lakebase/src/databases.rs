//! Databases on a branch (`w.postgres.*_database`): real `CREATE DATABASE`,
//! `ALTER DATABASE … RENAME / OWNER`, `DROP DATABASE` in the branch's cluster.

use kiln_core::time::now_ms;
use kiln_core::{Error, ErrorCode, Result};
use kiln_store::Write;

use crate::model::check_id;
use crate::objects::{check_pg_name, DatabaseRecord, RoleRecord, DATABASE};
use crate::pg::{self, ident};
use crate::projects::DEFAULT_DATABASE;
use crate::records::{put, read};
use crate::service::Lakebase;

/// The database every project starts with, as the API lists it.
pub const DEFAULT_DATABASE_ID: &str = "databricks-postgres";

impl Lakebase {
    /// The databases of a branch: `databricks_postgres` (made with the
    /// project) and those created through the API.
    pub fn databases(&self, project_id: &str, branch_id: &str) -> Result<Vec<DatabaseRecord>> {
        let branch = self.branch(project_id, branch_id)?;
        let project = self.project(project_id)?;
        let mut out = vec![DatabaseRecord {
            project_id: project_id.into(),
            branch_id: branch_id.into(),
            database_id: DEFAULT_DATABASE_ID.into(),
            postgres_database: DEFAULT_DATABASE.into(),
            role_id: crate::roles::owner_role_id(&project.owner),
            create_ms: project.create_ms,
            update_ms: project.create_ms,
        }];
        out.extend(
            read(&self.objects.databases)?
                .values()
                .filter(|d| d.branch_name() == branch.name())
                .cloned(),
        );
        Ok(out)
    }

    pub fn database(
        &self,
        project_id: &str,
        branch_id: &str,
        database_id: &str,
    ) -> Result<DatabaseRecord> {
        self.databases(project_id, branch_id)?
            .into_iter()
            .find(|d| d.database_id == database_id)
            .ok_or_else(|| not_found(project_id, branch_id, database_id))
    }

    /// Creates `postgres_database` owned by `role` (a role id or resource name on the branch).
    pub async fn create_database(
        &self,
        project_id: &str,
        branch_id: &str,
        database_id: Option<String>,
        postgres_database: &str,
        role: &str,
    ) -> Result<DatabaseRecord> {
        check_pg_name("postgres_database", postgres_database)?;
        let database_id = database_id.filter(|d| !d.is_empty()).unwrap_or_else(|| {
            let id = crate::roles::owner_role_id(postgres_database);
            if id.len() >= 4 {
                id
            } else {
                format!("db-{id}")
            }
        });
        check_id("database", &database_id)?;
        let _lock = self.lock_project(project_id).await;
        let owner = self.owner_of(project_id, branch_id, role)?;
        if self
            .databases(project_id, branch_id)?
            .iter()
            .any(|d| d.database_id == database_id || d.postgres_database == postgres_database)
        {
            return Err(Error::new(ErrorCode::AlreadyExists, format!("Database {database_id} ({postgres_database}) already exists on branch {branch_id}")));
        }
        crate::operations::accepted();
        let sql = format!(
            "CREATE DATABASE {} OWNER {};",
            ident(postgres_database),
            ident(&owner.postgres_role)
        );
        self.run_ddl(project_id, branch_id, "postgres", &sql)
            .await?;
        let now = now_ms();
        let record = DatabaseRecord {
            project_id: project_id.into(),
            branch_id: branch_id.into(),
            database_id,
            postgres_database: postgres_database.into(),
            role_id: owner.role_id,
            create_ms: now,
            update_ms: now,
        };
        self.save_database(&record)?;
        Ok(record)
    }

    /// Renames the database and/or gives it another owner.
    pub async fn update_database(
        &self,
        project_id: &str,
        branch_id: &str,
        database_id: &str,
        rename: Option<&str>,
        role: Option<&str>,
    ) -> Result<DatabaseRecord> {
        let _lock = self.lock_project(project_id).await;
        let mut record = self.managed_database(project_id, branch_id, database_id)?;
        let mut steps = Vec::new();
        if let Some(role) = role {
            let owner = self.owner_of(project_id, branch_id, role)?;
            steps.push(format!(
                "ALTER DATABASE {} OWNER TO {};",
                ident(&record.postgres_database),
                ident(&owner.postgres_role)
            ));
            record.role_id = owner.role_id;
        }
        if let Some(new_name) = rename.filter(|n| *n != record.postgres_database) {
            check_pg_name("postgres_database", new_name)?;
            // A database with sessions cannot be renamed: end them first.
            steps.push(format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = {}; ALTER DATABASE {} RENAME TO {};",
                pg::literal(&record.postgres_database), ident(&record.postgres_database), ident(new_name)
            ));
            record.postgres_database = new_name.into();
        }
        crate::operations::accepted();
        for sql in steps {
            self.run_ddl(project_id, branch_id, "postgres", &sql)
                .await?;
        }
        record.update_ms = now_ms();
        self.save_database(&record)?;
        Ok(record)
    }

    pub async fn delete_database(
        &self,
        project_id: &str,
        branch_id: &str,
        database_id: &str,
    ) -> Result<()> {
        let _lock = self.lock_project(project_id).await;
        let record = self.managed_database(project_id, branch_id, database_id)?;
        crate::operations::accepted();
        let sql = format!(
            "DROP DATABASE {} WITH (FORCE);",
            ident(&record.postgres_database)
        );
        self.run_ddl(project_id, branch_id, "postgres", &sql)
            .await?;
        let writes = vec![
            Write::DeleteObject {
                kind: DATABASE,
                key: record.name(),
            },
            Write::DeleteObject {
                kind: crate::data_api::DATA_API,
                key: format!("{}/data-api", record.name()),
            },
        ];
        self.store.commit(writes.clone())?;
        self.apply_objects(&writes)
    }

    /// Every database of the branch's cluster that accepts connections.
    pub(crate) async fn database_names(
        &self,
        project_id: &str,
        branch_id: &str,
    ) -> Result<Vec<String>> {
        let branch = self.branch(project_id, branch_id)?;
        let primary = self.primary_of(&branch.name()).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidState,
                "the branch has no read-write endpoint",
            )
        })?;
        let (socket, _busy) = self.wake(&primary.uid).await?;
        let client = pg::connect(&socket, "postgres").await?;
        let rows = client
            .query("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1", &[])
            .await
            .map_err(|e| Error::internal("list databases", pg::sql_error(&e)))?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }

    /// Database records owned by `from`, given to role `to_role_id` (a role's objects were reassigned).
    pub(crate) fn reassign_database_records(
        &self,
        from: &RoleRecord,
        to_role_id: &str,
    ) -> Result<Vec<Write>> {
        read(&self.objects.databases)?
            .values()
            .filter(|d| d.branch_name() == from.branch_name() && d.role_id == from.role_id)
            .map(|d| {
                put(
                    DATABASE,
                    d.name(),
                    &DatabaseRecord {
                        role_id: to_role_id.into(),
                        update_ms: now_ms(),
                        ..d.clone()
                    },
                )
            })
            .collect()
    }

    fn owner_of(&self, project_id: &str, branch_id: &str, role: &str) -> Result<RoleRecord> {
        if role.is_empty() {
            return Err(Error::invalid(
                "spec.role is required: the owner's role (projects/…/branches/…/roles/…)",
            ));
        }
        let role_id = role.rsplit('/').next().unwrap_or(role);
        self.role(project_id, branch_id, role_id).map_err(|_| {
            Error::invalid(format!(
                "spec.role {role} is not a role of branch {branch_id}"
            ))
        })
    }

    fn managed_database(
        &self,
        project_id: &str,
        branch_id: &str,
        database_id: &str,
    ) -> Result<DatabaseRecord> {
        let branch = self.branch(project_id, branch_id)?;
        if database_id == DEFAULT_DATABASE_ID {
            return Err(Error::new(
                ErrorCode::InvalidState,
                format!(
                    "{DEFAULT_DATABASE} is the project's default database; it cannot be changed"
                ),
            ));
        }
        read(&self.objects.databases)?
            .get(&format!("{}/databases/{database_id}", branch.name()))
            .cloned()
            .ok_or_else(|| not_found(project_id, branch_id, database_id))
    }

    fn save_database(&self, record: &DatabaseRecord) -> Result<()> {
        let writes = vec![put(DATABASE, record.name(), record)?];
        self.store.commit(writes.clone())?;
        self.apply_objects(&writes)
    }
}

fn not_found(project_id: &str, branch_id: &str, database_id: &str) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!(
            "Database projects/{project_id}/branches/{branch_id}/databases/{database_id} not found"
        ),
    )
}

//! Postgres objects Kiln manages on a branch — roles and databases: their
//! records (a branch's copy is made with the branch, as Postgres copies the
//! objects themselves), and running their DDL on the branch's primary.

use kiln_core::{Error, ErrorCode, Result};
use kiln_store::Write;

use crate::pg;
pub(crate) use crate::records::{put, read, write, DATABASE, ROLE};
pub use crate::records::{DatabaseRecord, RoleAttributes, RoleRecord};
use crate::service::Lakebase;

impl Lakebase {
    /// Writes that give a new branch the source branch's role and database
    /// records (its data directory already holds the objects).
    pub(crate) fn copy_objects(
        &self,
        source: &str,
        project_id: &str,
        branch_id: &str,
    ) -> Result<Vec<Write>> {
        let mut writes = Vec::new();
        for r in read(&self.objects.roles)?
            .values()
            .filter(|r| r.branch_name() == source)
        {
            let copy = RoleRecord {
                project_id: project_id.into(),
                branch_id: branch_id.into(),
                ..r.clone()
            };
            writes.push(put(ROLE, copy.name(), &copy)?);
        }
        for d in read(&self.objects.databases)?
            .values()
            .filter(|d| d.branch_name() == source)
        {
            let copy = DatabaseRecord {
                project_id: project_id.into(),
                branch_id: branch_id.into(),
                ..d.clone()
            };
            writes.push(put(DATABASE, copy.name(), &copy)?);
        }
        Ok(writes)
    }

    /// Applies writes of role and database records to the in-memory copy.
    pub(crate) fn apply_objects(&self, writes: &[Write]) -> Result<()> {
        let mut roles = write(&self.objects.roles)?;
        let mut dbs = write(&self.objects.databases)?;
        for w in writes {
            match w {
                Write::PutObject { kind, key, record } if *kind == ROLE => {
                    if let Ok(r) = serde_json::from_value(record.clone()) {
                        roles.insert(key.clone(), r);
                    }
                }
                Write::PutObject { kind, key, record } if *kind == DATABASE => {
                    if let Ok(d) = serde_json::from_value(record.clone()) {
                        dbs.insert(key.clone(), d);
                    }
                }
                Write::DeleteObject { kind, key } if *kind == ROLE => {
                    roles.remove(key);
                }
                Write::DeleteObject { kind, key } if *kind == DATABASE => {
                    dbs.remove(key);
                }
                Write::PutObject { kind, key, record } if *kind == crate::records::DATA_API => {
                    if let (Ok(a), Ok(mut apis)) = (
                        serde_json::from_value(record.clone()),
                        self.objects.data_apis.write(),
                    ) {
                        apis.insert(key.clone(), a);
                    }
                }
                Write::DeleteObject { kind, key } if *kind == crate::records::DATA_API => {
                    if let Ok(mut apis) = self.objects.data_apis.write() {
                        apis.remove(key);
                    }
                }
                Write::DeleteObject { kind, key } if *kind == crate::records::SCHEDULE => {
                    if let Ok(mut schedules) = self.objects.schedules.write() {
                        schedules.remove(key);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes removing the role and database records of every branch whose
    /// name `matches` (a deleted branch or project).
    pub(crate) fn drop_objects(&self, matches: impl Fn(&str) -> bool) -> Result<Vec<Write>> {
        let mut writes: Vec<Write> = read(&self.objects.roles)?
            .values()
            .filter(|r| matches(&r.branch_name()))
            .map(|r| Write::DeleteObject {
                kind: ROLE,
                key: r.name(),
            })
            .collect();
        writes.extend(
            read(&self.objects.databases)?
                .values()
                .filter(|d| matches(&d.branch_name()))
                .map(|d| Write::DeleteObject {
                    kind: DATABASE,
                    key: d.name(),
                }),
        );
        writes.extend(
            read(&self.objects.schedules)?
                .iter()
                .filter(|(name, _)| matches(name.trim_end_matches("/snapshot-schedule")))
                .map(|(name, _)| Write::DeleteObject {
                    kind: crate::records::SCHEDULE,
                    key: name.clone(),
                }),
        );
        writes.extend(
            read(&self.objects.data_apis)?
                .values()
                .filter(|a| {
                    matches(&format!(
                        "projects/{}/branches/{}",
                        a.project_id, a.branch_id
                    ))
                })
                .map(|a| Write::DeleteObject {
                    kind: crate::records::DATA_API,
                    key: a.name(),
                }),
        );
        Ok(writes)
    }

    /// Runs DDL on a branch's primary (woken if suspended), in `database`.
    /// Postgres' answers become Databricks errors (a duplicate object is
    /// ALREADY_EXISTS, objects depending on a role FAILED_PRECONDITION, …).
    pub(crate) async fn run_ddl(
        &self,
        project_id: &str,
        branch_id: &str,
        database: &str,
        sql: &str,
    ) -> Result<()> {
        let (socket, _busy) = self.wake_primary(project_id, branch_id).await?;
        let client = pg::connect(&socket, database).await?;
        client.batch_execute(sql).await.map_err(|e| ddl_error(&e))
    }

    /// Wakes a branch's read-write endpoint: its socket directory and the
    /// guard that keeps it running.
    pub(crate) async fn wake_primary(
        &self,
        project_id: &str,
        branch_id: &str,
    ) -> Result<(std::path::PathBuf, crate::service::Busy)> {
        let branch = self.branch(project_id, branch_id)?;
        let primary = self.primary_of(&branch.name()).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidState,
                format!(
                    "Branch {} has no read-write endpoint to run on",
                    branch.name()
                ),
            )
        })?;
        self.wake(&primary.uid).await
    }
}

fn ddl_error(e: &tokio_postgres::Error) -> Error {
    let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
    let kind = match code.as_str() {
        "42710" | "42P04" => ErrorCode::AlreadyExists,
        "42704" | "3D000" => ErrorCode::NotFound,
        "2BP01" | "55006" => ErrorCode::InvalidState,
        "42939" | "42602" | "42601" | "22023" | "42501" => ErrorCode::InvalidParameterValue,
        _ => return Error::internal("run DDL on the branch", pg::sql_error(e)),
    };
    Error::new(kind, pg::sql_error(e))
}

/// A Postgres identifier a user may name: 1–63 bytes, no NUL, not reserved.
pub(crate) fn check_pg_name(kind: &str, name: &str) -> Result<()> {
    let reserved =
        name.starts_with("pg_") || name.starts_with("kiln_") || name == "databricks_superuser";
    if name.is_empty() || name.len() > 63 || name.contains('\0') || reserved {
        return Err(Error::invalid(format!(
            "Invalid {kind} '{name}': 1-63 bytes, not starting with pg_, not a role Lakebase reserves"
        )));
    }
    Ok(())
}

//! Coordinated Delta commits: the catalog orders the versions engines write,
//! so two engines appending to one table cannot both claim the same version.

use kiln_core::{time::now_ms, Error, ErrorCode, Result};
use serde_json::Value;

use super::{put, uc_error, Catalog, CommitLog, TableInfo};

impl Catalog {
    fn table_by_id(&self, table_id: &str) -> Result<TableInfo> {
        self.read()?
            .tables
            .values()
            .find(|t| t.table_id == table_id)
            .cloned()
            .ok_or_else(|| {
                uc_error(
                    ErrorCode::TableDoesNotExist,
                    format!("Table with id {table_id} does not exist."),
                )
            })
    }

    /// Unbackfilled commits in `[start, end]` and the table's latest version
    /// (also of a table's data before a REPLACE: a read may still be on it).
    pub fn get_commits(
        &self,
        table_id: &str,
        start: i64,
        end: Option<i64>,
    ) -> Result<(Vec<Value>, i64)> {
        let replaced = self
            .read()?
            .tables
            .values()
            .any(|t| t.replaced.iter().any(|r| r.table_id == table_id));
        if !replaced {
            self.table_by_id(table_id)?;
        }
        let state = self.read()?;
        let log = state.commits.get(table_id).cloned().unwrap_or_default();
        let version_of = |c: &Value| c["version"].as_i64().unwrap_or(-1);
        let commits = log
            .commits
            .into_iter()
            .filter(|c| version_of(c) >= start && end.is_none_or(|e| version_of(c) <= e))
            .collect();
        Ok((commits, log.latest_version.unwrap_or(0)))
    }

    /// Registers commit `version` (it must follow the latest) and forgets commits
    /// the engine has backfilled into `_delta_log`.
    pub fn commit_version(
        &self,
        table_id: &str,
        commit: Option<Value>,
        backfilled: Option<i64>,
        columns: Option<Vec<Value>>,
    ) -> Result<()> {
        // Read under the writer lock: a REPLACE may swap the table meanwhile.
        let _guard = self.lock_writer()?;
        let mut table = self.table_by_id(table_id)?;
        let mut log = self
            .read()?
            .commits
            .get(table_id)
            .cloned()
            .unwrap_or_else(|| CommitLog {
                table_id: table_id.into(),
                ..CommitLog::default()
            });
        if let Some(commit) = commit {
            let version = commit["version"]
                .as_i64()
                .ok_or_else(|| Error::invalid("commit_info.version is required"))?;
            let expected = log.latest_version.unwrap_or(0) + 1;
            if version != expected {
                return Err(Error::new(ErrorCode::ResourceConflict, format!("Commit version {version} conflicts: the next version of table {table_id} is {expected}.")));
            }
            log.commits.push(commit);
            log.latest_version = Some(version);
        }
        if let Some(done) = backfilled {
            log.commits
                .retain(|c| c["version"].as_i64().unwrap_or(-1) > done);
        }
        let mut writes = vec![put("commits", table_id, &log)?];
        if let Some(columns) = columns {
            table.columns = columns;
            table.updated_at = now_ms();
            writes.push(put("table", &table.full_name(), &table)?);
        }
        let id = table_id.to_string();
        self.commit(writes, move |s| {
            s.commits.insert(id, log);
            s.tables.insert(table.full_name(), table);
        })
    }
}

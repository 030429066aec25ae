//! What every Delta table utility starts from: the request it came in
//! ([`Call`]), the table its statement names, and that table's Delta log.

use serde_json::Value;
use tonic::Status;

use super::ddl::quote_name;
use super::engine::EngineSession;
use super::errors::analysis_error;
use super::intent::{resolve, Scope};
use super::sessions::SessionConf;
use kiln_catalog::delta::log::{Commit, DeltaLog, Snapshot};
use kiln_catalog::delta::DeltaError;
use kiln_catalog::{Catalog, TableInfo};

/// Everything a utility needs from the request it came in.
pub struct Call<'a> {
    pub catalog: &'a Catalog,
    pub session: &'a EngineSession,
    pub scope: &'a Scope,
    pub conf: SessionConf,
}

pub fn status(e: DeltaError) -> Status {
    analysis_error(e.class, e.sql_state, &e.message)
}

/// A table by the name the statement gives it.
pub fn table(call: &Call, parts: &[String]) -> Result<TableInfo, Status> {
    let Some(name) = resolve(parts, call.scope) else {
        return Err(analysis_error(
            "INVALID_IDENTIFIER",
            "42602",
            "A table name has at most three parts.",
        ));
    };
    call.catalog.get_table(&name.join(".")).map_err(|_| {
        analysis_error(
            "TABLE_OR_VIEW_NOT_FOUND",
            "42P01",
            &format!(
                "[TABLE_OR_VIEW_NOT_FOUND] The table or view {} cannot be found.",
                quote_name(&name)
            ),
        )
    })
}

/// A Delta table's log, its commits and its latest snapshot.
pub fn load(call: &Call, table: &TableInfo) -> Result<(DeltaLog, Vec<Commit>, Snapshot), Status> {
    if table.table_type == "VIEW" {
        return Err(status(DeltaError::new(
            "DELTA_TABLE_ONLY_OPERATION",
            "0AKDD",
            format!("{} is a view, not a Delta table.", table.full_name()),
        )));
    }
    let log = DeltaLog::of(call.catalog, table).map_err(status)?;
    let commits = log.commits(call.catalog, None).map_err(status)?;
    let snapshot = Snapshot::replay(&commits);
    Ok((log, commits, snapshot))
}

/// A JSON value as Delta's string maps show it.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

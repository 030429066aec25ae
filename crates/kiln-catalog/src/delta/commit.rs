//! Writing a commit to a catalog-managed table, the way its engines do: the
//! actions go to a staged file, the catalog ratifies the version (a version
//! another writer took first is a conflict: Delta's optimistic concurrency),
//! then the commit is backfilled into `_delta_log` and the catalog told so.
//! Locally, files Kiln writes take the owner and mode of the table's own
//! directory, so the engine (which may run as another user) goes on writing
//! beside them; on an object store the put-if-absent is a conditional put.

use kiln_core::time::now_ms;
use serde_json::{json, Map, Value};

use super::log::{version_file, Commit, DeltaLog, LOG_DIR, STAGED_DIR};
use super::{DeltaError, DeltaResult};
use crate::Catalog;

/// What goes into one new version.
#[derive(Debug, Clone, Default)]
pub struct NewCommit {
    pub operation: String,
    /// `operationParameters` (values as Delta writes them: strings).
    pub parameters: Map<String, Value>,
    /// `operationMetrics` (values as strings, as Delta writes them).
    pub metrics: Map<String, Value>,
    /// The actions besides `commitInfo`.
    pub actions: Vec<Value>,
    pub blind_append: bool,
    pub user_name: Option<String>,
    /// The table's columns for the catalog, when the commit changes them.
    pub columns: Option<Vec<Value>>,
}

/// How many times a commit is retried after losing its version to another writer.
const MAX_ATTEMPTS: usize = 20;

/// Commits `new` on top of `read` (the commits it was computed from). When
/// another writer took the version, `check` sees the commits made since and
/// refuses the commit if they conflict with it; otherwise it is retried on
/// top of them. Returns the version committed.
pub fn commit(
    catalog: &Catalog,
    log: &DeltaLog,
    read: &[Commit],
    new: &NewCommit,
    mut check: impl FnMut(&[Commit]) -> DeltaResult<()>,
) -> DeltaResult<i64> {
    let read_version = read.last().map_or(-1, |c| c.version);
    let mut last = read.last().cloned();
    for _ in 0..MAX_ATTEMPTS {
        let version = last.as_ref().map_or(0, |c| c.version + 1);
        let previous = last.as_ref().map_or(0, Commit::timestamp);
        match try_commit(catalog, log, version, previous, read_version, new)? {
            true => return Ok(version),
            false => {
                let all = log.commits(catalog, None)?;
                let since: Vec<Commit> = all
                    .iter()
                    .filter(|c| c.version >= version)
                    .cloned()
                    .collect();
                check(&since)?;
                last = all.last().cloned();
            }
        }
    }
    Err(DeltaError::new(
        "DELTA_CONCURRENT_TRANSACTION",
        "2D521",
        format!(
            "{} could not commit: other writers kept taking the next version.",
            new.operation
        ),
    ))
}

/// One attempt at `version`; `false` when another writer has it.
fn try_commit(
    catalog: &Catalog,
    log: &DeltaLog,
    version: i64,
    previous_timestamp: i64,
    read_version: i64,
    new: &NewCommit,
) -> DeltaResult<bool> {
    let now = now_ms();
    let timestamp = now.max(previous_timestamp + 1);
    let mut info = json!({
        "timestamp": now,
        "inCommitTimestamp": timestamp,
        "operation": new.operation,
        "operationParameters": new.parameters,
        "isolationLevel": "Serializable",
        "isBlindAppend": new.blind_append,
        "operationMetrics": new.metrics,
        "engineInfo": format!("Kiln/{}", env!("CARGO_PKG_VERSION")),
        "txnId": kiln_core::ids::uuid4(),
    });
    if read_version >= 0 {
        info["readVersion"] = json!(read_version);
    }
    if let Some(user) = &new.user_name {
        info["userName"] = json!(user);
    }
    let mut text = serde_json::to_string(&json!({ "commitInfo": info }))
        .map_err(|e| DeltaError::internal(e.to_string()))?;
    text.push('\n');
    for action in &new.actions {
        text.push_str(&action.to_string());
        text.push('\n');
    }
    let files = &log.files;
    if version == 0 {
        // A table's first version is written straight to the log.
        return files.write_new(&format!("{LOG_DIR}/{}", version_file(0)), text.as_bytes());
    }
    files.make_dir(STAGED_DIR)?;
    let name = format!("{version:020}.{}.json", kiln_core::ids::uuid4());
    let staged = format!("{STAGED_DIR}/{name}");
    if !files.write_new(&staged, text.as_bytes())? {
        return Ok(false);
    }
    let ratified = catalog.commit_version(
        &log.table_id,
        Some(json!({
            "version": version,
            "timestamp": timestamp,
            "file_name": name,
            "file_size": text.len(),
            "file_modification_timestamp": now,
        })),
        None,
        new.columns.clone(),
    );
    match ratified {
        Ok(()) => {}
        Err(e) if e.code == kiln_core::ErrorCode::ResourceConflict => {
            let _ = files.delete(&staged);
            return Ok(false);
        }
        Err(e) => {
            let _ = files.delete(&staged);
            return Err(e.into());
        }
    }
    // The version is the table's now; the backfill makes it a plain log file.
    files.write_new(
        &format!("{LOG_DIR}/{}", version_file(version)),
        text.as_bytes(),
    )?;
    catalog.commit_version(&log.table_id, None, Some(version), None)?;
    Ok(true)
}

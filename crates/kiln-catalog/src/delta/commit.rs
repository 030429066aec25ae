//! Writing a commit to a catalog-managed table, the way its engines do: the
//! actions go to a staged file, the catalog ratifies the version (a version
//! another writer took first is a conflict: Delta's optimistic concurrency),
//! then the commit is backfilled into `_delta_log` and the catalog told so.
//! Files Kiln writes take the owner and mode of the table's own directory,
//! so the engine (which may run as another user) goes on writing beside them.

use std::io::Write as _;
use std::path::Path;

use kiln_core::time::now_ms;
use serde_json::{json, Map, Value};

use super::log::{version_file, Commit, DeltaLog};
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
    if version == 0 {
        // A table's first version is written straight to the log.
        return write_new(&log.root, &log.log_dir().join(version_file(0)), &text);
    }
    let staged_dir = log.staged_dir();
    make_dir(&log.root, &staged_dir)?;
    let name = format!("{version:020}.{}.json", kiln_core::ids::uuid4());
    let staged = staged_dir.join(&name);
    if !write_new(&log.root, &staged, &text)? {
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
            let _ = std::fs::remove_file(&staged);
            return Ok(false);
        }
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e.into());
        }
    }
    // The version is the table's now; the backfill makes it a plain log file.
    write_new(&log.root, &log.log_dir().join(version_file(version)), &text)?;
    catalog.commit_version(&log.table_id, None, Some(version), None)?;
    Ok(true)
}

/// Writes a file that must not exist yet (`false` if it does), durably.
fn write_new(root: &Path, path: &Path, text: &str) -> DeltaResult<bool> {
    let tmp = path.with_extension(format!("tmp-{}", kiln_core::ids::uuid4()));
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    adopt(root, &tmp);
    // A hard link fails if the name is taken: put-if-absent on a local disk.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Creates a directory under the table, owned as the table's directory is.
pub fn make_dir(root: &Path, dir: &Path) -> DeltaResult<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    adopt(root, dir);
    Ok(())
}

/// Gives `path` the owner, group and (for directories) mode of the table's
/// root directory, so an engine running as the table's writer can use it.
pub fn adopt(root: &Path, path: &Path) {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let Ok(meta) = std::fs::metadata(root) else {
        return;
    };
    let _ = std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()));
    let mode = if path.is_dir() {
        meta.mode() & 0o7777
    } else {
        meta.mode() & 0o666
    };
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

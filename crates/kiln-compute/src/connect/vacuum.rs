//! `VACUUM t [RETAIN n HOURS] [DRY RUN]`: deletes the files under a table's
//! directory that no version within the retention period needs — neither a
//! live file of the current version nor a file removed less than the
//! retention ago — and that are themselves older than the retention (a file
//! a writer has not committed yet is new, so it is kept). The default
//! retention is the table's `delta.deletedFileRetentionDuration` (7 days);
//! less than it needs `spark.databricks.delta.retentionDurationCheck.enabled
//! = false`, as on Databricks. A real run records `VACUUM START` and
//! `VACUUM END` in the table's history.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use kiln_core::time::now_ms;
use serde_json::json;
use tonic::Status;

use super::rows::{query, Lit};
use super::utility_call::{load, status, table, Call};
use kiln_catalog::delta::commit::{commit, NewCommit};
use kiln_catalog::delta::log::Snapshot;
use kiln_catalog::delta::{data_file, interval_ms, DeltaError};

const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 3_600_000;
/// Paths a dry run lists at most.
const DRY_RUN_LIMIT: usize = 1000;

pub fn vacuum(
    call: &Call,
    t: &[String],
    retain_hours: Option<f64>,
    dry_run: bool,
) -> Result<String, Status> {
    let info = table(call, t)?;
    let (log, commits, s) = load(call, &info)?;
    let default = s
        .configuration()
        .get("delta.deletedFileRetentionDuration")
        .and_then(|v| interval_ms(v))
        .unwrap_or(DEFAULT_RETENTION_MS);
    let retention = retain_hours.map_or(default, |h| (h * 3_600_000.0) as i64);
    if retention < 0 {
        return Err(status(DeltaError::new(
            "DELTA_VACUUM_RETENTION_NEGATIVE",
            "22003",
            "Retention for VACUUM can't be less than 0 hours.",
        )));
    }
    if call.conf.retention_check && retention < default {
        return Err(status(DeltaError::new(
            "DELTA_VACUUM_RETENTION_PERIOD_TOO_SHORT",
            "22023",
            format!("requirement failed: Are you sure you would like to vacuum files with such a low retention period? If you have writers that are currently writing to this table, there is a risk that you may corrupt the state of your Delta table.\n\nIf you are certain that there are no operations being performed on this table, such as insert/upsert/delete/optimize, then you may turn off this check by setting:\nspark.databricks.delta.retentionDurationCheck.enabled = false\n\nIf you are not sure, please use a value not less than \"{} hours\".", default / 3_600_000),
        )));
    }
    let cutoff = now_ms() - retention;
    let doomed = unreferenced(&log.root, &s, cutoff)?;
    let location = info.storage_location.clone().unwrap_or_default();
    if dry_run {
        let rows: Vec<Vec<Lit>> = doomed
            .iter()
            .take(DRY_RUN_LIMIT)
            .map(|(p, _)| vec![Lit::Str(format!("file:{}", p.display()))])
            .collect();
        return Ok(query(&[("path", "STRING")], &rows));
    }
    let size: u64 = doomed.iter().map(|(_, n)| n).sum();
    let mut start = NewCommit {
        operation: "VACUUM START".into(),
        ..NewCommit::default()
    };
    start.parameters.insert(
        "retentionCheckEnabled".into(),
        json!(call.conf.retention_check.to_string()),
    );
    start
        .parameters
        .insert("defaultRetentionMillis".into(), json!(default.to_string()));
    if retain_hours.is_some() {
        start.parameters.insert(
            "specifiedRetentionMillis".into(),
            json!(retention.to_string()),
        );
    }
    start
        .metrics
        .insert("numFilesToDelete".into(), json!(doomed.len().to_string()));
    start
        .metrics
        .insert("sizeOfDataToDelete".into(), json!(size.to_string()));
    commit(call.catalog, &log, &commits, &start, |_| Ok(())).map_err(status)?;
    let mut deleted = 0usize;
    let mut dirs: HashSet<PathBuf> = HashSet::new();
    for (path, _) in &doomed {
        if std::fs::remove_file(path).is_ok() {
            deleted += 1;
        }
        if let Some(parent) = path.parent() {
            dirs.insert(parent.to_path_buf());
        }
    }
    // Partition directories left empty go too (the table's root stays).
    let mut vacuumed = 0usize;
    for dir in dirs {
        if dir != log.root && std::fs::remove_dir(&dir).is_ok() {
            vacuumed += 1;
        }
    }
    let mut end = NewCommit {
        operation: "VACUUM END".into(),
        ..NewCommit::default()
    };
    end.parameters.insert("status".into(), json!("COMPLETED"));
    end.metrics
        .insert("numDeletedFiles".into(), json!(deleted.to_string()));
    end.metrics
        .insert("numVacuumedDirectories".into(), json!(vacuumed.to_string()));
    let after = log.commits(call.catalog, None).map_err(status)?;
    commit(call.catalog, &log, &after, &end, |_| Ok(())).map_err(status)?;
    Ok(query(&[("path", "STRING")], &[vec![Lit::Str(location)]]))
}

/// Files under `root` (with their sizes) no version within the retention
/// needs and older than `cutoff`, sorted.
fn unreferenced(root: &Path, s: &Snapshot, cutoff: i64) -> Result<Vec<(PathBuf, u64)>, Status> {
    let mut keep: HashSet<PathBuf> = s.files.keys().map(|p| data_file(root, p)).collect();
    for (path, remove) in &s.tombstones {
        if remove["deletionTimestamp"].as_i64().unwrap_or(i64::MAX) > cutoff {
            keep.insert(data_file(root, path));
        }
    }
    let mut out = Vec::new();
    walk(root, &mut |path, meta| {
        let modified = meta
            .modified()
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(i64::MAX, |d| d.as_millis() as i64);
        if !keep.contains(path) && modified < cutoff {
            out.push((path.to_path_buf(), meta.len()));
        }
    })
    .map_err(|e| Status::internal(format!("VACUUM: {e}")))?;
    out.sort();
    Ok(out)
}

/// Hidden names (`_…`, `.…`) are not data, except partition directories (`_p=x`).
fn hidden(name: &str) -> bool {
    (name.starts_with('_') || name.starts_with('.')) && !name.contains('=')
}

fn walk(dir: &Path, visit: &mut dyn FnMut(&Path, &std::fs::Metadata)) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if hidden(&name) {
            continue;
        }
        let meta = entry.metadata()?;
        if meta.is_dir() {
            walk(&entry.path(), visit)?;
        } else if meta.is_file() {
            visit(&entry.path(), &meta);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_names_are_skipped_but_partitions_are_not() {
        assert!(hidden("_delta_log"));
        assert!(hidden(".part-1.crc"));
        assert!(hidden("_kiln_optimize_x"));
        assert!(!hidden("_p=1"));
        assert!(!hidden("part-0.parquet"));
    }
}

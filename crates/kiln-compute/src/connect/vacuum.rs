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

use kiln_core::time::now_ms;
use serde_json::json;
use tonic::Status;

use super::rows::{query, Lit};
use super::utility_call::{load, status, table, Call};
use kiln_catalog::delta::commit::{commit, NewCommit};
use kiln_catalog::delta::files::{TableFile, TableFiles};
use kiln_catalog::delta::log::Snapshot;
use kiln_catalog::delta::{interval_ms, DeltaError};

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
    let doomed = unreferenced(&log.files, &s, cutoff)?;
    let location = info.storage_location.clone().unwrap_or_default();
    if dry_run {
        let rows: Vec<Vec<Lit>> = doomed
            .iter()
            .take(DRY_RUN_LIMIT)
            .map(|f| vec![Lit::Str(log.files.shown(&f.path))])
            .collect();
        return Ok(query(&[("path", "STRING")], &rows));
    }
    let size: u64 = doomed.iter().map(|f| f.size).sum();
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
    for file in &doomed {
        if log.files.delete(&file.path).unwrap_or(false) {
            deleted += 1;
        }
    }
    // Partition directories left empty go too (the table's root stays).
    let paths: Vec<String> = doomed.into_iter().map(|f| f.path).collect();
    let vacuumed = log.files.remove_empty_dirs(&paths);
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

/// Files of the table no version within the retention needs and older
/// than `cutoff`, sorted.
fn unreferenced(files: &TableFiles, s: &Snapshot, cutoff: i64) -> Result<Vec<TableFile>, Status> {
    let mut keep: HashSet<String> = s.files.keys().filter_map(|p| files.relative(p)).collect();
    for (path, remove) in &s.tombstones {
        if remove["deletionTimestamp"].as_i64().unwrap_or(i64::MAX) > cutoff {
            keep.extend(files.relative(path));
        }
    }
    let mut out: Vec<TableFile> = files
        .walk(&hidden)
        .map_err(|e| Status::internal(format!("VACUUM: {e}")))?
        .into_iter()
        .filter(|f| !keep.contains(&f.path) && f.modified_ms < cutoff)
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Hidden names (`_…`, `.…`) are not data, except partition directories (`_p=x`).
fn hidden(name: &str) -> bool {
    (name.starts_with('_') || name.starts_with('.')) && !name.contains('=')
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

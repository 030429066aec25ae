//! `OPTIMIZE t [WHERE partition predicate] [ZORDER BY (cols)]`: small files
//! of each partition are compacted into files of up to 1 GiB. The engine
//! reads each bin's files and writes them as one Parquet file (sorted by the
//! Z-order columns when given); Kiln then commits the swap as one Delta
//! version (`remove` and `add` with `dataChange: false`, stats merged from
//! the inputs). A concurrent append is rebased over; a concurrent delete of
//! an input file fails the OPTIMIZE cleanly (its new files are removed).

use std::collections::{BTreeMap, HashSet};

use kiln_core::time::now_ms;
use serde_json::{json, Map, Value};
use tonic::Status;

use super::ddl::{literal, quote};
use super::rows::{query, Lit};
use super::utility_call::{load, status, table, Call};
use kiln_catalog::delta::commit::{commit, NewCommit};
use kiln_catalog::delta::files::TableFiles;
use kiln_catalog::delta::log::Snapshot;
use kiln_catalog::delta::{schema, DeltaError};

/// Files at least this big are left alone (Databricks' default target).
const MAX_FILE_SIZE: i64 = 1 << 30;

const RESULT_TYPE: &str = "STRUCT<numFilesAdded: BIGINT, numFilesRemoved: BIGINT, \
filesAdded: STRUCT<min: BIGINT, max: BIGINT, avg: DOUBLE, totalFiles: BIGINT, totalSize: BIGINT>, \
filesRemoved: STRUCT<min: BIGINT, max: BIGINT, avg: DOUBLE, totalFiles: BIGINT, totalSize: BIGINT>, \
partitionsOptimized: BIGINT, numBatches: BIGINT, totalConsideredFiles: BIGINT, totalFilesSkipped: BIGINT>";

fn error(class: &'static str, message: String) -> Status {
    status(DeltaError::new(class, "42000", message))
}

pub async fn optimize(
    call: &Call<'_>,
    t: &[String],
    predicate: Option<String>,
    zorder: Vec<String>,
) -> Result<String, Status> {
    let info = table(call, t)?;
    let (log, commits, s) = load(call, &info)?;
    let partitions = s.partition_columns();
    let fields = schema::fields(&s.schema());
    let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    for z in &zorder {
        if partitions.iter().any(|p| same(p, z)) {
            return Err(error(
                "DELTA_ZORDERING_ON_PARTITION_COLUMN",
                format!(
                    "{z} is a partition column. Z-Ordering can only be performed on data columns"
                ),
            ));
        }
        if !fields
            .iter()
            .any(|f| f["name"].as_str().is_some_and(|n| same(n, z)))
        {
            return Err(error(
                "DELTA_ZORDERING_COLUMN_DOES_NOT_EXIST",
                format!("Z-Ordering column {z} does not exist in data schema."),
            ));
        }
    }
    // The files of each partition, oldest first.
    let mut groups: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
    for (path, add) in &s.files {
        groups
            .entry(add["partitionValues"].to_string())
            .or_default()
            .push((path.clone(), add.clone()));
    }
    for files in groups.values_mut() {
        files.sort_by_key(|(_, a)| a["modificationTime"].as_i64().unwrap_or(0));
    }
    if let Some(predicate) = &predicate {
        let keep = matching_partitions(call, &log.files, &s, &groups, predicate).await?;
        groups.retain(|k, _| keep.contains(k));
    }
    let considered: usize = groups.values().map(Vec::len).sum();
    let mut bins: Vec<Vec<(String, Value)>> = Vec::new();
    for files in groups.values() {
        let candidates: Vec<&(String, Value)> = files
            .iter()
            .filter(|(_, a)| !zorder.is_empty() || a["size"].as_i64().unwrap_or(0) < MAX_FILE_SIZE)
            .collect();
        if candidates.is_empty() || (zorder.is_empty() && candidates.len() < 2) {
            continue;
        }
        let mut bin: Vec<(String, Value)> = Vec::new();
        let mut size = 0;
        for (path, add) in candidates {
            let file_size = add["size"].as_i64().unwrap_or(0);
            if !bin.is_empty() && size + file_size > MAX_FILE_SIZE {
                bins.push(std::mem::take(&mut bin));
                size = 0;
            }
            size += file_size;
            bin.push((path.clone(), add.clone()));
        }
        if bin.len() > 1 || !zorder.is_empty() {
            bins.push(bin);
        }
    }
    let data_fields: Vec<Value> = fields
        .into_iter()
        .filter(|f| {
            !partitions
                .iter()
                .any(|p| f["name"].as_str().is_some_and(|n| same(n, p)))
        })
        .collect();
    let mut added: Vec<Value> = Vec::new();
    let mut removed: Vec<Value> = Vec::new();
    let now = now_ms();
    for bin in &bins {
        match compact(call, &log.files, bin, &data_fields, &zorder).await {
            Ok(adds) => added.extend(adds),
            Err(e) => {
                discard(&log.files, &added);
                return Err(e);
            }
        }
        for (path, add) in bin {
            removed.push(json!({"remove": {
                "path": path, "deletionTimestamp": now, "dataChange": false,
                "extendedFileMetadata": true, "partitionValues": add["partitionValues"],
                "size": add["size"],
            }}));
        }
    }
    let sizes = |actions: &[Value], key: &str| -> Vec<i64> {
        actions
            .iter()
            .map(|a| a[key]["size"].as_i64().unwrap_or(0))
            .collect()
    };
    let added_sizes = sizes(&added, "add");
    let removed_sizes = sizes(&removed, "remove");
    if !bins.is_empty() {
        let inputs: HashSet<String> = bins.iter().flatten().map(|(p, _)| p.clone()).collect();
        let mut metrics = Map::new();
        for (k, v) in [
            ("numRemovedFiles", removed_sizes.len() as i64),
            ("numRemovedBytes", removed_sizes.iter().sum()),
            ("numAddedFiles", added_sizes.len() as i64),
            ("numAddedBytes", added_sizes.iter().sum()),
            (
                "minFileSize",
                added_sizes.iter().copied().min().unwrap_or(0),
            ),
            (
                "maxFileSize",
                added_sizes.iter().copied().max().unwrap_or(0),
            ),
            ("numBatches", 1),
            ("numDeletionVectorsRemoved", 0),
        ] {
            metrics.insert(k.into(), json!(v.to_string()));
        }
        let mut parameters = Map::new();
        let predicates: Vec<&String> = predicate.iter().collect();
        parameters.insert("predicate".into(), json!(json!(predicates).to_string()));
        parameters.insert("zOrderBy".into(), json!(json!(zorder).to_string()));
        parameters.insert("auto".into(), json!("false"));
        let new = NewCommit {
            operation: "OPTIMIZE".into(),
            parameters,
            metrics,
            actions: removed.iter().chain(added.iter()).cloned().collect(),
            ..NewCommit::default()
        };
        let committed = commit(call.catalog, &log, &commits, &new, |since| {
            for c in since {
                for a in &c.actions {
                    if a.get("metaData").is_some() {
                        return Err(DeltaError::new("DELTA_METADATA_CHANGED", "2D521", "The metadata of the Delta table has been changed by a concurrent update. Please try the operation again."));
                    }
                    if let Some(path) = a["remove"]["path"].as_str() {
                        if inputs.contains(path) {
                            return Err(DeltaError::new("DELTA_CONCURRENT_DELETE_READ", "2D521", format!("ConcurrentDeleteReadException: This transaction attempted to read one or more files that were deleted (for example {path}) by a concurrent update. Please try the operation again.")));
                        }
                    }
                }
            }
            Ok(())
        });
        if let Err(e) = committed {
            discard(&log.files, &added);
            return Err(status(e));
        }
    }
    let summary = |sizes: &[i64]| {
        let total: i64 = sizes.iter().sum();
        Lit::Struct(vec![
            (
                "min".into(),
                sizes.iter().copied().min().map_or(Lit::Null, Lit::Long),
            ),
            (
                "max".into(),
                sizes.iter().copied().max().map_or(Lit::Null, Lit::Long),
            ),
            (
                "avg".into(),
                Lit::Double(if sizes.is_empty() {
                    0.0
                } else {
                    total as f64 / sizes.len() as f64
                }),
            ),
            ("totalFiles".into(), Lit::Long(sizes.len() as i64)),
            ("totalSize".into(), Lit::Long(total)),
        ])
    };
    let partitions_optimized: HashSet<String> = bins
        .iter()
        .filter_map(|b| b.first().map(|(_, a)| a["partitionValues"].to_string()))
        .collect();
    let metrics = Lit::Struct(vec![
        ("numFilesAdded".into(), Lit::Long(added_sizes.len() as i64)),
        (
            "numFilesRemoved".into(),
            Lit::Long(removed_sizes.len() as i64),
        ),
        ("filesAdded".into(), summary(&added_sizes)),
        ("filesRemoved".into(), summary(&removed_sizes)),
        (
            "partitionsOptimized".into(),
            Lit::Long(partitions_optimized.len() as i64),
        ),
        ("numBatches".into(), Lit::Long(i64::from(!bins.is_empty()))),
        ("totalConsideredFiles".into(), Lit::Long(considered as i64)),
        (
            "totalFilesSkipped".into(),
            Lit::Long((considered - removed_sizes.len()) as i64),
        ),
    ]);
    let location = info.storage_location.clone().unwrap_or_default();
    Ok(query(
        &[("path", "STRING"), ("metrics", RESULT_TYPE)],
        &[vec![Lit::Str(location), metrics]],
    ))
}

/// The partitions (their `partitionValues` JSON) the predicate selects, as
/// the engine evaluates it over the partition values.
async fn matching_partitions(
    call: &Call<'_>,
    files: &TableFiles,
    s: &Snapshot,
    groups: &BTreeMap<String, Vec<(String, Value)>>,
    predicate: &str,
) -> Result<HashSet<String>, Status> {
    let partitions = s.partition_columns();
    let refuse = || {
        error(
            "DELTA_NON_PARTITION_COLUMN_REFERENCE",
            format!("Predicate references non-partition column. Only the partition columns may be referenced: [{}]", partitions.join(", ")),
        )
    };
    if partitions.is_empty() {
        return Err(refuse());
    }
    if groups.is_empty() {
        return Ok(HashSet::new());
    }
    let types: Vec<String> = partitions
        .iter()
        .map(|p| {
            schema::fields(&s.schema())
                .iter()
                .find(|f| f["name"].as_str() == Some(p.as_str()))
                .map_or_else(|| "STRING".into(), |f| schema::type_ddl(&f["type"]))
        })
        .collect();
    let keys: Vec<&String> = groups.keys().collect();
    let rows: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let values: Value = serde_json::from_str(key).unwrap_or(Value::Null);
            let cells: Vec<String> = partitions
                .iter()
                .zip(&types)
                .map(|(p, ty)| match values[p].as_str() {
                    Some(v) => format!("CAST({} AS {ty})", literal(v)),
                    None => format!("CAST(NULL AS {ty})"),
                })
                .collect();
            format!("({i}, {})", cells.join(", "))
        })
        .collect();
    let names: Vec<String> = partitions.iter().map(|p| quote(p)).collect();
    let sql = format!(
        "SELECT `__kiln_k` FROM VALUES {} AS `kiln_partitions`(`__kiln_k`, {}) WHERE {predicate}",
        rows.join(", "),
        names.join(", ")
    );
    let scratch = format!("_kiln_rows_{}", kiln_core::ids::uuid4());
    let found = call
        .session
        .rows(&sql, files, &scratch)
        .await
        .map_err(|e| {
            if e.message().contains("cannot resolve")
                || e.message().contains("missing from the schema")
            {
                refuse()
            } else {
                e
            }
        })?;
    Ok(found
        .iter()
        .filter_map(|r| r["__kiln_k"].as_u64())
        .filter_map(|i| keys.get(i as usize).map(|k| (*k).clone()))
        .collect())
}

/// Has the engine write one bin's rows as one file; returns its `add` actions.
async fn compact(
    call: &Call<'_>,
    files: &TableFiles,
    bin: &[(String, Value)],
    data_fields: &[Value],
    zorder: &[String],
) -> Result<Vec<Value>, Status> {
    let stats: Vec<Option<Value>> = bin
        .iter()
        .map(|(_, a)| {
            a["stats"]
                .as_str()
                .and_then(|s| serde_json::from_str(s).ok())
        })
        .collect();
    let branches: Vec<String> = bin
        .iter()
        .zip(&stats)
        .enumerate()
        .map(|(k, ((path, _), stat))| {
            let columns: Vec<String> = data_fields
                .iter()
                .map(|f| {
                    let name = f["name"].as_str().unwrap_or_default();
                    let present = stat
                        .as_ref()
                        .and_then(|s| s["nullCount"].as_object())
                        .is_none_or(|counts| counts.contains_key(name));
                    if present {
                        quote(name)
                    } else {
                        format!(
                            "CAST(NULL AS {}) AS {}",
                            schema::type_ddl(&f["type"]),
                            quote(name)
                        )
                    }
                })
                .collect();
            let file = files
                .relative(path)
                .map_or_else(|| path.clone(), |rel| files.url(&rel));
            format!(
                "SELECT {}, {k} AS `__kiln_seq` FROM parquet.{}",
                columns.join(", "),
                quote(&file)
            )
        })
        .collect();
    let rows: Option<i64> = stats
        .iter()
        .map(|s| s.as_ref().and_then(|s| s["numRecords"].as_i64()))
        .sum();
    // A sorted, limited result is one partition, which the engine writes as
    // one file: by the Z-order columns, else in the files' commit order.
    let order: Vec<String> = if zorder.is_empty() {
        vec!["`__kiln_seq`".into()]
    } else {
        zorder.iter().map(|c| quote(c)).collect()
    };
    let names: Vec<String> = data_fields
        .iter()
        .map(|f| quote(f["name"].as_str().unwrap_or_default()))
        .collect();
    let sql = format!(
        "SELECT {} FROM (SELECT * FROM (\n{}\n) ORDER BY {} LIMIT {})",
        names.join(", "),
        branches.join("\nUNION ALL\n"),
        order.join(", "),
        rows.unwrap_or(1 << 62).max(1)
    );
    let staging = format!("_kiln_optimize_{}", kiln_core::ids::uuid4());
    let target = literal(&files.url(&staging));
    let written = call
        .session
        .sql(&format!(
            "INSERT OVERWRITE DIRECTORY {target} USING parquet {sql}"
        ))
        .await;
    let moved = written.and_then(|()| place(files, &staging, bin, &stats, rows));
    let _ = files.delete_tree(&staging);
    moved
}

/// Moves the engine's output beside the bin's files; returns their `add` actions.
fn place(
    files: &TableFiles,
    staging: &str,
    bin: &[(String, Value)],
    stats: &[Option<Value>],
    rows: Option<i64>,
) -> Result<Vec<Value>, Status> {
    let io = |e: DeltaError| Status::internal(format!("OPTIMIZE: {e}"));
    let mut outputs: Vec<String> = files
        .list(staging)
        .map_err(io)?
        .into_iter()
        .map(|f| f.path)
        .filter(|p| p.ends_with(".parquet") && !p.starts_with(['.', '_']))
        .collect();
    outputs.sort();
    let first = bin.first().map(|(p, _)| p.as_str()).unwrap_or("");
    let dir = first
        .rsplit_once('/')
        .map(|(d, _)| format!("{d}/"))
        .unwrap_or_default();
    let merged = if outputs.len() == 1 {
        merge_stats(stats, rows)
    } else {
        None
    };
    let mut adds = Vec::new();
    for output in outputs {
        let name = format!("part-00000-{}-c000.zstd.parquet", kiln_core::ids::uuid4());
        let relative = format!("{dir}{name}");
        // The log's paths are percent-encoded; the file's name is not.
        let destination = files.relative(&relative).ok_or_else(|| {
            Status::internal(format!("OPTIMIZE: {relative} is outside the table"))
        })?;
        let placed = files
            .rename(&format!("{staging}/{output}"), &destination)
            .map_err(io)?;
        let mut add = json!({
            "path": relative,
            "partitionValues": bin.first().map(|(_, a)| a["partitionValues"].clone()).unwrap_or(json!({})),
            "size": placed.size,
            "modificationTime": placed.modified_ms,
            "dataChange": false,
        });
        if let Some(stats) = &merged {
            add["stats"] = json!(stats.to_string());
        }
        adds.push(json!({ "add": add }));
    }
    Ok(adds)
}

/// The stats of a file holding exactly the rows of files with `stats`.
fn merge_stats(stats: &[Option<Value>], rows: Option<i64>) -> Option<Value> {
    let all: Vec<&Value> = stats.iter().map(Option::as_ref).collect::<Option<_>>()?;
    let mut min = Map::new();
    let mut max = Map::new();
    let mut nulls = Map::new();
    let columns: Vec<String> = all.first()?["nullCount"]
        .as_object()?
        .keys()
        .cloned()
        .collect();
    for column in columns {
        let mut count = 0;
        let mut lo: Option<Value> = None;
        let mut hi: Option<Value> = None;
        let mut bounded = true;
        for s in &all {
            count += s["nullCount"][&column].as_i64()?;
            let records = s["numRecords"].as_i64().unwrap_or(0);
            let nulls_here = s["nullCount"][&column].as_i64().unwrap_or(0);
            if records == nulls_here {
                continue; // all nulls: no bound from this file
            }
            match (&s["minValues"][&column], &s["maxValues"][&column]) {
                (a, b) if scalar(a) && scalar(b) => {
                    lo = Some(match lo {
                        Some(l) if less(&l, a) => l,
                        _ => a.clone(),
                    });
                    hi = Some(match hi {
                        Some(h) if less(b, &h) => h,
                        _ => b.clone(),
                    });
                }
                _ => bounded = false,
            }
        }
        nulls.insert(column.clone(), json!(count));
        if bounded {
            if let (Some(l), Some(h)) = (lo, hi) {
                min.insert(column.clone(), l);
                max.insert(column, h);
            }
        }
    }
    Some(json!({"numRecords": rows?, "minValues": min, "maxValues": max, "nullCount": nulls}))
}

fn scalar(v: &Value) -> bool {
    v.is_number() || v.is_string()
}

fn less(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() < y.as_f64(),
        (Value::String(x), Value::String(y)) => x < y,
        _ => false,
    }
}

fn discard(files: &TableFiles, added: &[Value]) {
    for a in added {
        if let Some(rel) = a["add"]["path"].as_str().and_then(|p| files.relative(p)) {
            let _ = files.delete(&rel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_stats_bound_every_input() {
        let a = json!({"numRecords": 2, "minValues": {"x": 3, "s": "b"}, "maxValues": {"x": 9, "s": "d"}, "nullCount": {"x": 0, "s": 1}});
        let b = json!({"numRecords": 3, "minValues": {"x": 1, "s": "c"}, "maxValues": {"x": 5, "s": "z"}, "nullCount": {"x": 1, "s": 0}});
        let merged = merge_stats(&[Some(a.clone()), Some(b)], Some(5)).unwrap_or_default();
        assert_eq!(merged["numRecords"], 5);
        assert_eq!(merged["minValues"], json!({"x": 1, "s": "b"}));
        assert_eq!(merged["maxValues"], json!({"x": 9, "s": "z"}));
        assert_eq!(merged["nullCount"], json!({"x": 1, "s": 1}));
        assert_eq!(merge_stats(&[Some(a), None], Some(5)), None);
    }
}

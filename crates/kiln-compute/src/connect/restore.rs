//! `RESTORE TABLE t TO VERSION|TIMESTAMP AS OF …` and
//! `CREATE [OR REPLACE] TABLE t [SHALLOW|DEEP] CLONE s [VERSION|TIMESTAMP AS OF …]`.
//! Both set a table's files (and schema) to those of a version: RESTORE from
//! the table's own history, CLONE from another table's — a deep clone copies
//! the files, a shallow clone shares the source's files (hard links).
//! Each is one Delta commit.

use std::collections::BTreeMap;

use kiln_core::time::now_ms;
use serde_json::{json, Map, Value};
use tonic::Status;

use super::ddl::quote_name;
use super::intent::resolve;
use super::rows::{query, Lit};
use super::utility_call::{load, status, table, Call};
use super::utility_sql::TimeTravel;
use kiln_catalog::delta::commit::{commit, NewCommit};
use kiln_catalog::delta::log::{version_at, Commit, Snapshot};
use kiln_catalog::delta::{schema, timestamp_ms, DeltaError};

fn version_of(commits: &[Commit], to: &TimeTravel, what: &str) -> Result<i64, Status> {
    let latest = commits.last().map_or(0, |c| c.version);
    match to {
        TimeTravel::Version(v) if (0..=latest).contains(v) => Ok(*v),
        TimeTravel::Version(v) => Err(status(DeltaError::new(
            "DELTA_CANNOT_RESTORE_TABLE_VERSION",
            "22003",
            format!("Cannot {what} table to version {v}. Available versions: [0, {latest}]."),
        ))),
        TimeTravel::Timestamp(text) => {
            let ms = timestamp_ms(text).ok_or_else(|| {
                status(DeltaError::new(
                    "DELTA_TIMESTAMP_INVALID",
                    "42816",
                    format!(
                        "The provided timestamp ({text}) cannot be converted to a valid timestamp."
                    ),
                ))
            })?;
            version_at(commits, ms).map_err(status)
        }
    }
}

fn remove_action(path: &str, add: &Value, now: i64) -> Value {
    json!({"remove": {
        "path": path, "deletionTimestamp": now, "dataChange": true,
        "extendedFileMetadata": true, "partitionValues": add["partitionValues"], "size": add["size"],
    }})
}

fn sum_sizes<'a>(adds: impl Iterator<Item = &'a Value>) -> i64 {
    adds.map(|a| a["size"].as_i64().unwrap_or(0)).sum()
}

/// Another writer changed the table's data or metadata meanwhile.
fn refuse_concurrent(since: &[Commit]) -> Result<(), DeltaError> {
    let changed = since.iter().any(|c| {
        c.actions.iter().any(|a| {
            a.get("add").is_some() || a.get("remove").is_some() || a.get("metaData").is_some()
        })
    });
    if changed {
        Err(DeltaError::new(
            "DELTA_CONCURRENT_TRANSACTION",
            "2D521",
            "The table was changed by a concurrent update. Please try the operation again.",
        ))
    } else {
        Ok(())
    }
}

pub async fn restore(call: &Call<'_>, t: &[String], to: TimeTravel) -> Result<String, Status> {
    let info = table(call, t)?;
    let (log, commits, current) = load(call, &info)?;
    let version = version_of(&commits, &to, "restore")?;
    let target = Snapshot::replay(&commits[..=version as usize]);
    let now = now_ms();
    let mut actions = Vec::new();
    let restored: Vec<(&String, &Value)> = target
        .files
        .iter()
        .filter(|(p, _)| !current.files.contains_key(*p))
        .collect();
    for (path, _) in &restored {
        // A file outside the table (a shallow clone's source) is not checked.
        let there = match log.files.relative(path) {
            Some(rel) => log.files.exists(&rel).map_err(status)?,
            None => true,
        };
        if !there {
            return Err(status(DeltaError::new(
                "DELTA_FILE_NOT_FOUND_DETAILED",
                "42K03",
                format!("File {path} referenced in version {version} cannot be found: it was deleted by VACUUM, so the table cannot be restored to that version."),
            )));
        }
    }
    let removed: Vec<(&String, &Value)> = current
        .files
        .iter()
        .filter(|(p, _)| !target.files.contains_key(*p))
        .collect();
    for (path, add) in &removed {
        actions.push(remove_action(path, add, now));
    }
    for (_, add) in &restored {
        let mut add = (*add).clone();
        add["dataChange"] = json!(true);
        actions.push(json!({ "add": add }));
    }
    let mut columns = None;
    if target.metadata != current.metadata {
        actions.push(json!({ "metaData": target.metadata }));
        if target.schema() != current.schema() {
            columns = Some(schema::catalog_columns(&target.schema()));
        }
    }
    let (restored_size, removed_size) = (
        sum_sizes(restored.iter().map(|(_, a)| *a)),
        sum_sizes(removed.iter().map(|(_, a)| *a)),
    );
    let figures = [
        ("tableSizeAfterRestore", target.size_in_bytes()),
        ("numOfFilesAfterRestore", target.files.len() as i64),
        ("numRemovedFiles", removed.len() as i64),
        ("numRestoredFiles", restored.len() as i64),
        ("removedFilesSize", removed_size),
        ("restoredFilesSize", restored_size),
    ];
    let mut new = NewCommit {
        operation: "RESTORE".into(),
        actions,
        columns,
        ..NewCommit::default()
    };
    new.parameters
        .insert("version".into(), json!(version.to_string()));
    if let TimeTravel::Timestamp(ts) = &to {
        new.parameters
            .insert("timestamp".into(), json!(ts.trim_matches('\'')));
    }
    for (k, v) in figures {
        new.metrics.insert(k.into(), json!(v.to_string()));
    }
    commit(call.catalog, &log, &commits, &new, refuse_concurrent).map_err(status)?;
    let names = [
        "table_size_after_restore",
        "num_of_files_after_restore",
        "num_removed_files",
        "num_restored_files",
        "removed_files_size",
        "restored_files_size",
    ];
    let columns: Vec<(&str, &str)> = names.iter().map(|n| (*n, "BIGINT")).collect();
    Ok(query(
        &columns,
        &[figures.iter().map(|(_, v)| Lit::Long(*v)).collect()],
    ))
}

pub struct CloneSpec {
    pub target: Vec<String>,
    pub source: Vec<String>,
    pub shallow: bool,
    pub replace: bool,
    pub if_not_exists: bool,
    pub at: Option<TimeTravel>,
    pub properties: Vec<(String, String)>,
}

const CLONE_RESULT: [&str; 6] = [
    "source_table_size",
    "source_num_of_files",
    "num_removed_files",
    "num_copied_files",
    "removed_files_size",
    "copied_files_size",
];

pub async fn clone(call: &Call<'_>, spec: CloneSpec) -> Result<String, Status> {
    let source_info = table(call, &spec.source)?;
    let (source_log, source_commits, _) = load(call, &source_info)?;
    let version = match &spec.at {
        Some(at) => version_of(&source_commits, at, "clone")?,
        None => source_commits.last().map_or(0, |c| c.version),
    };
    let source = Snapshot::replay(&source_commits[..=version as usize]);
    let Some(name) = resolve(&spec.target, call.scope) else {
        return Err(Status::invalid_argument(
            "a table name has at most three parts",
        ));
    };
    let columns: Vec<(&str, &str)> = CLONE_RESULT.iter().map(|n| (*n, "BIGINT")).collect();
    let exists = call.catalog.get_table(&name.join(".")).is_ok();
    if exists && !spec.replace {
        if spec.if_not_exists {
            return Ok(query(&columns, &[]));
        }
        return Err(status(DeltaError::new(
            "TABLE_OR_VIEW_ALREADY_EXISTS",
            "42P07",
            format!(
                "Cannot create table or view {} because it already exists.",
                quote_name(&name)
            ),
        )));
    }
    let fields = schema::fields(&source.schema());
    if !exists {
        let cols: Vec<String> = fields.iter().map(schema::column_ddl).collect();
        let partitions = source.partition_columns();
        let partitioned = if partitions.is_empty() {
            String::new()
        } else {
            let names: Vec<String> = partitions.iter().map(|p| super::ddl::quote(p)).collect();
            format!(" PARTITIONED BY ({})", names.join(", "))
        };
        call.session
            .sql(&format!(
                "CREATE TABLE {} ({}) USING delta{partitioned}",
                quote_name(&name),
                cols.join(", ")
            ))
            .await?;
    }
    let target_info = call
        .catalog
        .get_table(&name.join("."))
        .map_err(|e| status(e.into()))?;
    let (target_log, target_commits, target) = load(call, &target_info)?;
    let now = now_ms();
    let mut actions: Vec<Value> = target
        .files
        .iter()
        .map(|(p, a)| remove_action(p, a, now))
        .collect();
    let mut copied: Vec<String> = Vec::new();
    let undo = |copied: &[String]| {
        for f in copied {
            let _ = target_log.files.delete(f);
        }
    };
    for (path, add) in &source.files {
        let mut add = add.clone();
        add["dataChange"] = json!(true);
        // A shallow clone shares the source's bytes where it can (a hard
        // link: no data is copied, and a VACUUM of the source cannot break
        // the clone); a deep clone, or an object store, copies them.
        let Some(rel) = source_log.files.relative(path) else {
            undo(&copied);
            return Err(Status::internal(format!(
                "CLONE: {path} is outside the source table"
            )));
        };
        if let Err(e) = target_log
            .files
            .copy_from(&source_log.files, &rel, &rel, spec.shallow)
        {
            undo(&copied);
            return Err(Status::internal(format!(
                "CLONE could not copy {path}: {e}"
            )));
        }
        copied.push(rel);
        actions.push(json!({ "add": add }));
    }
    let mut metadata = target.metadata.clone();
    metadata["schemaString"] = source.metadata["schemaString"].clone();
    metadata["partitionColumns"] = source.metadata["partitionColumns"].clone();
    metadata["description"] = source.metadata["description"].clone();
    let mut configuration: BTreeMap<String, String> = target.configuration();
    for (k, v) in source.configuration() {
        if !k.starts_with("io.unitycatalog.") && !k.starts_with("delta.feature.") {
            configuration.insert(k, v);
        }
    }
    for (k, v) in &spec.properties {
        configuration.insert(k.clone(), v.clone());
    }
    metadata["configuration"] = json!(configuration);
    actions.push(json!({ "metaData": metadata }));
    let removed_size = sum_sizes(target.files.values());
    let figures = [
        source.size_in_bytes(),
        source.files.len() as i64,
        target.files.len() as i64,
        if spec.shallow {
            0
        } else {
            source.files.len() as i64
        },
        removed_size,
        if spec.shallow {
            0
        } else {
            source.size_in_bytes()
        },
    ];
    let mut new = NewCommit {
        operation: "CLONE".into(),
        actions,
        columns: Some(schema::catalog_columns(&source.schema())),
        ..NewCommit::default()
    };
    new.parameters
        .insert("source".into(), json!(source_info.full_name()));
    new.parameters
        .insert("sourceVersion".into(), json!(version.to_string()));
    new.parameters
        .insert("isShallow".into(), json!(spec.shallow.to_string()));
    let mut metrics = Map::new();
    for (k, v) in [
        "sourceTableSize",
        "sourceNumOfFiles",
        "numRemovedFiles",
        "numCopiedFiles",
        "removedFilesSize",
        "copiedFilesSize",
    ]
    .iter()
    .zip(figures)
    {
        metrics.insert((*k).into(), json!(v.to_string()));
    }
    new.metrics = metrics;
    if let Err(e) = commit(
        call.catalog,
        &target_log,
        &target_commits,
        &new,
        refuse_concurrent,
    ) {
        undo(&copied);
        if !exists {
            let _ = call.catalog.delete_table(&name.join("."));
        }
        return Err(status(e));
    }
    Ok(query(
        &columns,
        &[figures.iter().map(|v| Lit::Long(*v)).collect()],
    ))
}

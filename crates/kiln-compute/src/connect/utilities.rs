//! Carrying out the Delta table utilities ([`utility_sql::Utility`]) against
//! the catalog and the tables' Delta logs. Each answers with a query whose
//! rows are the statement's result (see [`rows`]); the client's own request
//! then runs it, so the client sees an ordinary result.
//!
//! This file: the dispatch (each utility starts from [`utility_call`]), `DESCRIBE HISTORY|DETAIL`, `SHOW TBLPROPERTIES`,
//! `SHOW CREATE TABLE`. Table changes are in [`table_changes`], `OPTIMIZE`
//! in [`optimize`], `VACUUM` in [`vacuum`], `RESTORE` and `CLONE` in [`restore`].

use std::collections::BTreeMap;

use serde_json::Value;
use tonic::Status;

use super::ddl::{literal, quote_name};
use super::rows::{query, Column, Lit};
use super::utility_call::{load, table, text_of, Call};
use super::utility_sql::Utility;
use super::{optimize, restore, table_changes, vacuum};
use kiln_catalog::delta::log::Snapshot;
use kiln_catalog::delta::schema;

/// Carries out `utility`; returns the query that answers it.
pub async fn run(call: &Call<'_>, utility: Utility) -> Result<String, Status> {
    match utility {
        Utility::History { table: t, limit } => history(call, &t, limit),
        Utility::Detail { table: t } => detail(call, &t),
        Utility::ShowProperties { table: t, key } => show_properties(call, &t, key),
        Utility::ShowCreate { table: t } => show_create(call, &t),
        Utility::SetProperties {
            table: t,
            properties,
        } => table_changes::set_properties(call, &t, properties),
        Utility::UnsetProperties {
            table: t,
            keys,
            if_exists,
        } => table_changes::unset_properties(call, &t, keys, if_exists),
        Utility::AddColumns { table: t, columns } => {
            table_changes::add_columns(call, &t, columns).await
        }
        Utility::Comment { table: t, comment } => table_changes::comment(call, &t, comment),
        Utility::Optimize {
            table: t,
            predicate,
            zorder,
        } => optimize::optimize(call, &t, predicate, zorder).await,
        Utility::Vacuum {
            table: t,
            retain_hours,
            dry_run,
        } => vacuum::vacuum(call, &t, retain_hours, dry_run),
        Utility::Restore { table: t, to } => restore::restore(call, &t, to).await,
        Utility::Clone {
            target,
            source,
            shallow,
            replace,
            if_not_exists,
            at,
            properties,
        } => {
            restore::clone(
                call,
                restore::CloneSpec {
                    target,
                    source,
                    shallow,
                    replace,
                    if_not_exists,
                    at,
                    properties,
                },
            )
            .await
        }
    }
}

fn string_map(v: &Value) -> Lit {
    Lit::StrMap(
        v.as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), text_of(v))).collect())
            .unwrap_or_default(),
    )
}

const HISTORY: &[Column] = &[
    ("version", "BIGINT"),
    ("timestamp", "TIMESTAMP"),
    ("userId", "STRING"),
    ("userName", "STRING"),
    ("operation", "STRING"),
    ("operationParameters", "MAP<STRING, STRING>"),
    ("job", "STRUCT<jobId: STRING, jobName: STRING, jobRunId: STRING, runId: STRING, jobOwnerId: STRING, triggerType: STRING>"),
    ("notebook", "STRUCT<notebookId: STRING>"),
    ("clusterId", "STRING"),
    ("readVersion", "BIGINT"),
    ("isolationLevel", "STRING"),
    ("isBlindAppend", "BOOLEAN"),
    ("operationMetrics", "MAP<STRING, STRING>"),
    ("userMetadata", "STRING"),
    ("engineInfo", "STRING"),
];

/// `DESCRIBE HISTORY`: the table's commits, newest first, from its log.
fn history(call: &Call, t: &[String], limit: Option<usize>) -> Result<String, Status> {
    let table = table(call, t)?;
    let (_, commits, _) = load(call, &table)?;
    let rows: Vec<Vec<Lit>> = commits
        .iter()
        .rev()
        .take(limit.unwrap_or(usize::MAX))
        .map(|c| {
            let info = c.info().cloned().unwrap_or(Value::Null);
            let s = |k: &str| Lit::opt_str(info[k].as_str());
            vec![
                Lit::Long(c.version),
                Lit::Timestamp(c.timestamp()),
                s("userId"),
                s("userName"),
                Lit::Str(c.operation().to_string()),
                string_map(&info["operationParameters"]),
                Lit::Null,
                Lit::Null,
                s("clusterId"),
                info["readVersion"].as_i64().map_or(Lit::Null, Lit::Long),
                s("isolationLevel"),
                info["isBlindAppend"].as_bool().map_or(Lit::Null, Lit::Bool),
                string_map(&info["operationMetrics"]),
                s("userMetadata"),
                s("engineInfo"),
            ]
        })
        .collect();
    Ok(query(HISTORY, &rows))
}

const DETAIL: &[Column] = &[
    ("format", "STRING"),
    ("id", "STRING"),
    ("name", "STRING"),
    ("description", "STRING"),
    ("location", "STRING"),
    ("createdAt", "TIMESTAMP"),
    ("lastModified", "TIMESTAMP"),
    ("partitionColumns", "ARRAY<STRING>"),
    ("clusteringColumns", "ARRAY<STRING>"),
    ("numFiles", "BIGINT"),
    ("sizeInBytes", "BIGINT"),
    ("properties", "MAP<STRING, STRING>"),
    ("minReaderVersion", "INT"),
    ("minWriterVersion", "INT"),
    ("tableFeatures", "ARRAY<STRING>"),
];

/// `DESCRIBE DETAIL`: the table's current snapshot.
fn detail(call: &Call, t: &[String]) -> Result<String, Status> {
    let table = table(call, t)?;
    let (_, _, s) = load(call, &table)?;
    let description = s.metadata["description"]
        .as_str()
        .map(String::from)
        .or(table.comment.clone());
    let row = vec![
        Lit::Str("delta".into()),
        Lit::opt_str(s.metadata["id"].as_str()),
        Lit::Str(table.full_name()),
        Lit::opt_str(description.as_deref()),
        Lit::opt_str(table.storage_location.as_deref()),
        Lit::Timestamp(s.created_at),
        Lit::Timestamp(s.last_modified),
        Lit::StrArray(s.partition_columns()),
        Lit::StrArray(vec![]),
        Lit::Long(s.files.len() as i64),
        Lit::Long(s.size_in_bytes()),
        Lit::StrMap(s.configuration().into_iter().collect()),
        Lit::Int(s.protocol["minReaderVersion"].as_i64().unwrap_or(1)),
        Lit::Int(s.protocol["minWriterVersion"].as_i64().unwrap_or(2)),
        Lit::StrArray(s.features()),
    ];
    Ok(query(DETAIL, &[row]))
}

/// The properties `SHOW TBLPROPERTIES` lists: the table's configuration and
/// its protocol (versions and features), as Databricks lists them.
fn all_properties(s: &Snapshot) -> BTreeMap<String, String> {
    let mut all = s.configuration();
    for key in ["minReaderVersion", "minWriterVersion"] {
        if let Some(v) = s.protocol[key].as_i64() {
            all.insert(format!("delta.{key}"), v.to_string());
        }
    }
    for feature in s.features() {
        all.insert(format!("delta.feature.{feature}"), "supported".into());
    }
    all
}

fn show_properties(call: &Call, t: &[String], key: Option<String>) -> Result<String, Status> {
    let table = table(call, t)?;
    let all = if table.table_type == "VIEW" {
        table.properties.clone()
    } else {
        let (_, _, s) = load(call, &table)?;
        all_properties(&s)
    };
    let rows: Vec<Vec<Lit>> = match key {
        Some(k) => {
            let value = all.get(&k).cloned().unwrap_or_else(|| {
                format!("Table {} does not have property: {k}", table.full_name())
            });
            vec![vec![Lit::Str(k), Lit::Str(value)]]
        }
        None => all
            .into_iter()
            .map(|(k, v)| vec![Lit::Str(k), Lit::Str(v)])
            .collect(),
    };
    Ok(query(&[("key", "STRING"), ("value", "STRING")], &rows))
}

/// Properties `SHOW CREATE TABLE` leaves out: the catalog's own, and the
/// table features (implied by the table's creation in Kiln).
fn internal_property(key: &str) -> bool {
    key.starts_with("io.unitycatalog.") || key.starts_with("delta.feature.")
}

fn show_create(call: &Call, t: &[String]) -> Result<String, Status> {
    let table = table(call, t)?;
    let name = quote_name(&[
        table.catalog_name.clone(),
        table.schema_name.clone(),
        table.name.clone(),
    ]);
    let statement = if table.table_type == "VIEW" {
        format!(
            "CREATE VIEW {name} AS {}",
            table.view_definition.clone().unwrap_or_default()
        )
    } else {
        let (_, _, s) = load(call, &table)?;
        let columns: Vec<String> = schema::fields(&s.schema())
            .iter()
            .map(|f| format!("  {}", schema::column_ddl(f)))
            .collect();
        let mut out = format!(
            "CREATE TABLE {name} (\n{})\nUSING delta\n",
            columns.join(",\n")
        );
        let partitions = s.partition_columns();
        if !partitions.is_empty() {
            out.push_str(&format!(
                "PARTITIONED BY ({})\n",
                quote_name(&partitions).replace("`.`", "`, `")
            ));
        }
        if let Some(comment) = s.metadata["description"]
            .as_str()
            .or(table.comment.as_deref())
        {
            out.push_str(&format!("COMMENT {}\n", literal(comment)));
        }
        let properties: Vec<String> = s
            .configuration()
            .into_iter()
            .filter(|(k, _)| !internal_property(k))
            .map(|(k, v)| format!("  {} = {}", literal(&k), literal(&v)))
            .collect();
        if !properties.is_empty() {
            out.push_str(&format!("TBLPROPERTIES (\n{})\n", properties.join(",\n")));
        }
        out
    };
    Ok(query(
        &[("createtab_stmt", "STRING")],
        &[vec![Lit::Str(statement)]],
    ))
}

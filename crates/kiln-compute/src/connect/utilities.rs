//! Carrying out the Delta table utilities ([`utility_sql::Utility`]) against
//! the catalog and the tables' Delta logs. Each answers with a query whose
//! rows are the statement's result (see [`rows`]); the client's own request
//! then runs it, so the client sees an ordinary result.
//!
//! This file: the dispatch, `DESCRIBE HISTORY|DETAIL`, `SHOW TBLPROPERTIES`,
//! `SHOW CREATE TABLE`. Table changes are in [`table_changes`], `OPTIMIZE`
//! in [`optimize`], `VACUUM` in [`vacuum`], `RESTORE` and `CLONE` in [`restore`].

use std::collections::BTreeMap;

use serde_json::Value;
use tonic::Status;

use super::ddl::{literal, quote_name};
use super::engine::EngineSession;
use super::errors::analysis_error;
use super::intent::{resolve, Scope};
use super::rows::{query, Column, Lit};
use super::utility_sql::Utility;
use super::{optimize, restore, table_changes, vacuum};
use kiln_catalog::delta::log::{Commit, DeltaLog, Snapshot};
use kiln_catalog::delta::{schema, DeltaError};
use kiln_catalog::{Catalog, TableInfo};

/// What a session has set that the utilities read.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConf {
    /// `spark.databricks.delta.retentionDurationCheck.enabled` (default true).
    pub retention_check: bool,
}

impl Default for SessionConf {
    fn default() -> Self {
        Self {
            retention_check: true,
        }
    }
}

pub const RETENTION_CHECK: &str = "spark.databricks.delta.retentionDurationCheck.enabled";

impl SessionConf {
    /// Follows one setting (`None`: unset).
    pub fn set(&mut self, key: &str, value: Option<&str>) {
        if key.trim().eq_ignore_ascii_case(RETENTION_CHECK) {
            self.retention_check = value.is_none_or(|v| !v.trim().eq_ignore_ascii_case("false"));
        }
    }
}

/// Settings of a `ConfigRequest`: key and value (`None`: unset).
pub type Settings = Vec<(String, Option<String>)>;

/// The session and the settings of a `ConfigRequest`.
pub fn config_settings(message: &[u8]) -> Option<(String, Settings)> {
    use super::walk::{bytes_field, fields};
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).ok();
    let top = fields(message)?;
    let session = text(bytes_field(message, &top, 1)?)?;
    let operation = bytes_field(message, &top, 3)?;
    let op_fields = fields(operation)?;
    let mut out = Vec::new();
    if let Some(set) = bytes_field(operation, &op_fields, 1) {
        for pair in fields(set)?.iter().filter(|f| f.number == 1) {
            let bytes = &set[pair.value.0..pair.value.1];
            let pf = fields(bytes)?;
            let key = text(bytes_field(bytes, &pf, 1)?)?;
            let value = bytes_field(bytes, &pf, 2).and_then(text);
            out.push((key, value));
        }
    }
    if let Some(unset) = bytes_field(operation, &op_fields, 6) {
        for key in fields(unset)?.iter().filter(|f| f.number == 1) {
            out.push((text(&unset[key.value.0..key.value.1])?, None));
        }
    }
    Some((session, out))
}

/// A setting Kiln itself follows (the engine does not know it).
pub fn kiln_setting(key: &str) -> bool {
    key.eq_ignore_ascii_case(RETENTION_CHECK)
}

/// What `SET key = value` answers, as Spark's `SET` does.
pub fn setting_answer(key: &str, value: &str) -> String {
    query(
        &[("key", "STRING"), ("value", "STRING")],
        &[vec![Lit::Str(key.into()), Lit::Str(value.into())]],
    )
}

/// `SET key = value` (`None` for other statements).
pub fn parse_set(sql: &str) -> Option<(String, String)> {
    let trimmed = sql.trim().trim_end_matches(';').trim();
    let head = trimmed.get(..4)?;
    if !head.eq_ignore_ascii_case("SET ") {
        return None;
    }
    let (key, value) = trimmed[4..].split_once('=')?;
    let unquote = |s: &str| {
        s.trim()
            .trim_matches('`')
            .trim_matches('\'')
            .trim_matches('"')
            .to_string()
    };
    Some((unquote(key), unquote(value)))
}

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
    let log = DeltaLog::of(table).map_err(status)?;
    let commits = log.commits(call.catalog, None).map_err(status)?;
    let snapshot = Snapshot::replay(&commits);
    Ok((log, commits, snapshot))
}

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

/// A JSON value as Delta's string maps show it.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn field(out: &mut Vec<u8>, number: u8, payload: &[u8]) {
        super::super::walk::put_bytes(out, u32::from(number), payload);
    }

    #[test]
    fn settings_are_read_from_set_statements_and_config_requests() {
        assert_eq!(
            parse_set("SET spark.databricks.delta.retentionDurationCheck.enabled = false;"),
            Some((RETENTION_CHECK.into(), "false".into()))
        );
        assert_eq!(parse_set("SELECT 1"), None);
        let mut conf = SessionConf::default();
        assert!(conf.retention_check);
        conf.set(RETENTION_CHECK, Some("FALSE"));
        assert!(!conf.retention_check);
        conf.set(RETENTION_CHECK, None);
        assert!(conf.retention_check);
        // ConfigRequest { session_id: "s", operation: { set: { pairs: [{key, value}] } } }
        let mut pair = Vec::new();
        field(&mut pair, 1, RETENTION_CHECK.as_bytes());
        field(&mut pair, 2, b"false");
        let mut set = Vec::new();
        field(&mut set, 1, &pair);
        let mut operation = Vec::new();
        field(&mut operation, 1, &set);
        let mut request = Vec::new();
        field(&mut request, 1, b"s");
        field(&mut request, 3, &operation);
        assert_eq!(
            config_settings(&request),
            Some((
                "s".into(),
                vec![(RETENTION_CHECK.into(), Some("false".into()))]
            ))
        );
    }
}

//! Changes to a table's metadata Kiln commits itself (the engine refuses them
//! for catalog-managed tables): `ALTER TABLE … SET|UNSET TBLPROPERTIES`,
//! `ALTER TABLE … ADD COLUMNS` and `COMMENT ON TABLE`. Each is one Delta
//! commit with a new `metaData` action; the catalog's copy (properties,
//! comment, columns) follows in the same step.

use serde_json::{json, Map, Value};
use tonic::Status;

use super::ddl::{self, quote};
use super::rows::query;
use super::utility_call::{load, status, table, Call};
use super::utility_sql::ColumnDef;
use super::wire::{Kind, Relation};
use kiln_catalog::delta::commit::{commit, NewCommit};
use kiln_catalog::delta::log::{Commit, DeltaLog};
use kiln_catalog::delta::{schema, DeltaError};
use kiln_catalog::{SecurableUpdate, TableInfo};

/// Table properties Kiln's engines honour or that only describe the table.
/// Others under `delta.` would claim a feature the engine does not write
/// (change data feed, deletion vectors, column mapping, …) and are refused.
const DELTA_PROPERTIES: &[(&str, Check)] = &[
    ("delta.appendOnly", Check::Bool),
    ("delta.checkpointInterval", Check::Int),
    ("delta.deletedFileRetentionDuration", Check::Interval),
    ("delta.logRetentionDuration", Check::Interval),
    ("delta.setTransactionRetentionDuration", Check::Interval),
    ("delta.dataSkippingNumIndexedCols", Check::Int),
    ("delta.dataSkippingStatsColumns", Check::Any),
    ("delta.autoOptimize.optimizeWrite", Check::Bool),
    ("delta.autoOptimize.autoCompact", Check::Any),
    ("delta.targetFileSize", Check::Any),
    ("delta.tuneFileSizesForRewrites", Check::Bool),
    ("delta.isolationLevel", Check::Any),
    ("delta.parquet.compression.codec", Check::Any),
    ("delta.enableChangeDataFeed", Check::False),
    ("delta.enableDeletionVectors", Check::False),
    ("delta.enableRowTracking", Check::False),
    ("delta.columnMapping.mode", Check::Any),
];

#[derive(Clone, Copy)]
enum Check {
    Any,
    Bool,
    Int,
    Interval,
    /// The feature is not written by Kiln's engine: only `false` is taken.
    False,
}

fn validate(key: &str, value: &str) -> Result<(), DeltaError> {
    let lower = key.to_ascii_lowercase();
    if !lower.starts_with("delta.") {
        return Ok(());
    }
    let Some((_, check)) = DELTA_PROPERTIES
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
    else {
        return Err(DeltaError::new(
            "DELTA_UNKNOWN_CONFIGURATION",
            "F0000",
            format!("Unknown configuration was specified: {key}"),
        ));
    };
    let bad = || {
        DeltaError::new(
            "DELTA_INVALID_TABLE_PROPERTY_VALUE",
            "42616",
            format!("{value} is not a valid value for {key}"),
        )
    };
    let v = value.trim().to_ascii_lowercase();
    match check {
        Check::Any => Ok(()),
        Check::Bool => matches!(v.as_str(), "true" | "false")
            .then_some(())
            .ok_or_else(bad),
        Check::Int => v.parse::<i64>().map(|_| ()).map_err(|_| bad()),
        Check::Interval => kiln_catalog::delta::interval_ms(&v)
            .map(|_| ())
            .ok_or_else(bad),
        Check::False if v == "false" => Ok(()),
        Check::False => Err(DeltaError::new(
            "DELTA_UNSUPPORTED_FEATURES_FOR_WRITE",
            "0AKDC",
            format!("{key} = {value}: this workspace's engine does not write that table feature."),
        )),
    }
    .and_then(|()| {
        if lower == "delta.columnmapping.mode" && v != "none" {
            Err(DeltaError::new(
                "DELTA_UNSUPPORTED_FEATURES_FOR_WRITE",
                "0AKDC",
                "Column mapping is not written by this workspace's engine.",
            ))
        } else {
            Ok(())
        }
    })
}

/// Commits `metadata` as the table's new `metaData` action.
fn commit_metadata(
    call: &Call,
    log: &DeltaLog,
    commits: &[Commit],
    metadata: Value,
    operation: &str,
    parameters: Map<String, Value>,
    columns: Option<Vec<Value>>,
) -> Result<i64, Status> {
    let new = NewCommit {
        operation: operation.into(),
        parameters,
        actions: vec![json!({ "metaData": metadata })],
        columns,
        ..NewCommit::default()
    };
    commit(call.catalog, log, commits, &new, |since| {
        let changed = since.iter().any(|c| {
            c.actions
                .iter()
                .any(|a| a.get("metaData").is_some() || a.get("protocol").is_some())
        });
        if changed {
            Err(DeltaError::new(
                "DELTA_METADATA_CHANGED",
                "2D521",
                "The metadata of the Delta table has been changed by a concurrent update. Please try the operation again.",
            ))
        } else {
            Ok(())
        }
    })
    .map_err(status)
}

fn nothing() -> String {
    query(&[("result", "STRING")], &[])
}

pub fn set_properties(
    call: &Call,
    t: &[String],
    properties: Vec<(String, String)>,
) -> Result<String, Status> {
    let info = table(call, t)?;
    for (k, v) in &properties {
        validate(k, v).map_err(status)?;
    }
    let (log, commits, s) = load(call, &info)?;
    let mut metadata = s.metadata.clone();
    let mut shown = Map::new();
    for (k, v) in &properties {
        if k.eq_ignore_ascii_case("comment") {
            metadata["description"] = json!(v);
        } else {
            metadata["configuration"][k] = json!(v);
        }
        shown.insert(k.clone(), json!(v));
    }
    let mut parameters = Map::new();
    parameters.insert("properties".into(), json!(Value::Object(shown).to_string()));
    commit_metadata(
        call,
        &log,
        &commits,
        metadata,
        "SET TBLPROPERTIES",
        parameters,
        None,
    )?;
    let mut catalog_props = info.properties.clone();
    for (k, v) in properties
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("comment"))
    {
        catalog_props.insert(k.clone(), v.clone());
    }
    let comment = properties
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("comment"))
        .map(|(_, v)| v.clone());
    update_catalog(call, &info, Some(catalog_props), comment)?;
    Ok(nothing())
}

pub fn unset_properties(
    call: &Call,
    t: &[String],
    keys: Vec<String>,
    if_exists: bool,
) -> Result<String, Status> {
    let info = table(call, t)?;
    let (log, commits, s) = load(call, &info)?;
    let mut metadata = s.metadata.clone();
    let configuration = s.configuration();
    for key in &keys {
        if !configuration.contains_key(key) && !if_exists {
            return Err(status(DeltaError::new(
                "UNSET_NONEXISTENT_PROPERTIES",
                "42K0J",
                format!(
                    "Attempted to unset non-existent properties [{}] in table {}.",
                    quote(key),
                    info.full_name()
                ),
            )));
        }
        if let Some(map) = metadata["configuration"].as_object_mut() {
            map.remove(key);
        }
    }
    let mut parameters = Map::new();
    parameters.insert("properties".into(), json!(json!(keys).to_string()));
    parameters.insert("ifExists".into(), json!(if_exists.to_string()));
    commit_metadata(
        call,
        &log,
        &commits,
        metadata,
        "UNSET TBLPROPERTIES",
        parameters,
        None,
    )?;
    let mut catalog_props = info.properties.clone();
    for key in &keys {
        catalog_props.remove(key);
    }
    update_catalog(call, &info, Some(catalog_props), None)?;
    Ok(nothing())
}

pub fn comment(call: &Call, t: &[String], comment: Option<String>) -> Result<String, Status> {
    let info = table(call, t)?;
    if info.table_type == "VIEW" {
        update_catalog(call, &info, None, Some(comment.unwrap_or_default()))?;
        return Ok(nothing());
    }
    let (log, commits, s) = load(call, &info)?;
    let mut metadata = s.metadata.clone();
    metadata["description"] = comment.as_ref().map_or(Value::Null, |c| json!(c));
    let mut parameters = Map::new();
    parameters.insert(
        "properties".into(),
        json!(json!({ "comment": comment }).to_string()),
    );
    commit_metadata(
        call,
        &log,
        &commits,
        metadata,
        "SET TBLPROPERTIES",
        parameters,
        None,
    )?;
    update_catalog(call, &info, None, Some(comment.unwrap_or_default()))?;
    Ok(nothing())
}

fn update_catalog(
    call: &Call,
    info: &TableInfo,
    properties: Option<std::collections::BTreeMap<String, String>>,
    comment: Option<String>,
) -> Result<(), Status> {
    call.catalog
        .update_table(
            &info.full_name(),
            SecurableUpdate {
                comment,
                properties,
                ..SecurableUpdate::default()
            },
        )
        .map(|_| ())
        .map_err(|e| status(e.into()))
}

/// `ALTER TABLE … ADD COLUMNS`: each type is analyzed by the engine (so it is
/// exactly what the engine will read), then appended to the schema.
pub async fn add_columns(
    call: &Call<'_>,
    t: &[String],
    columns: Vec<ColumnDef>,
) -> Result<String, Status> {
    let info = table(call, t)?;
    let (log, commits, s) = load(call, &info)?;
    let mut schema_value = s.schema();
    let mut fields = schema::fields(&schema_value);
    let mut added = Vec::new();
    for column in &columns {
        let exists = fields.iter().any(|f| {
            f["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(&column.name))
        });
        if exists {
            return Err(status(DeltaError::new(
                "FIELD_ALREADY_EXISTS",
                "42710",
                format!(
                    "Cannot add column, because {} already exists in {}.",
                    quote(&column.name),
                    info.full_name()
                ),
            )));
        }
        let probe = Relation::sql(&format!("SELECT CAST(NULL AS {}) AS `c`", column.type_sql));
        let analyzed = call
            .session
            .schema(prost::Message::encode_to_vec(&probe))
            .await?;
        let data_type = match analyzed.kind {
            Some(Kind::Struct(st)) => st.fields.into_iter().next().and_then(|f| f.data_type),
            _ => None,
        }
        .ok_or_else(|| Status::internal("the engine analyzed the column type as nothing"))?;
        let mut metadata = json!({});
        if let Some(c) = &column.comment {
            metadata["comment"] = json!(c);
        }
        let field = json!({
            "name": column.name,
            "type": ddl::type_json(&data_type),
            "nullable": true,
            "metadata": metadata,
        });
        added.push(json!({ "column": field.clone() }));
        fields.push(field);
    }
    schema_value["fields"] = json!(fields);
    let mut metadata = s.metadata.clone();
    metadata["schemaString"] = json!(schema_value.to_string());
    let mut parameters = Map::new();
    parameters.insert("columns".into(), json!(json!(added).to_string()));
    let catalog_columns = schema::catalog_columns(&schema_value);
    commit_metadata(
        call,
        &log,
        &commits,
        metadata,
        "ADD COLUMNS",
        parameters,
        Some(catalog_columns),
    )?;
    Ok(nothing())
}

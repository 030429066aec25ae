//! One task's settings (`Task`): its key, its one task type and that type's
//! required fields, `run_if`, retries and timeouts, its compute, its
//! dependencies (sorted), and a for-each task's nested task. Also the helpers
//! and vocabulary the job-level checks (the `settings` module) share.

use std::collections::BTreeSet;

use kiln_core::{Error, Result};
use serde_json::{json, Map, Value};

/// Every task type of the API.
pub const TASK_TYPES: &[&str] = &[
    "notebook_task",
    "spark_python_task",
    "python_wheel_task",
    "pipeline_task",
    "run_job_task",
    "condition_task",
    "for_each_task",
    "sql_task",
    "dbt_task",
    "spark_jar_task",
    "spark_submit_task",
    "clean_rooms_notebook_task",
    "dashboard_task",
    "power_bi_task",
    "gen_ai_compute_task",
];

/// The task types Kiln runs.
pub const SUPPORTED: &[&str] = &[
    "for_each_task",
    "python_wheel_task",
    "notebook_task",
    "spark_python_task",
    "pipeline_task",
    "run_job_task",
    "condition_task",
    "sql_task",
    "dbt_task",
];

/// Task types that run user code on a cluster.
pub const NEEDS_COMPUTE: &[&str] = &[
    "notebook_task",
    "spark_python_task",
    "python_wheel_task",
    "dbt_task",
];

const RUN_IF: &[&str] = &[
    "ALL_SUCCESS",
    "ALL_DONE",
    "NONE_FAILED",
    "AT_LEAST_ONE_SUCCESS",
    "ALL_FAILED",
    "AT_LEAST_ONE_FAILED",
];

const CONDITION_OPS: &[&str] = &[
    "EQUAL_TO",
    "NOT_EQUAL",
    "GREATER_THAN",
    "GREATER_THAN_OR_EQUAL",
    "LESS_THAN",
    "LESS_THAN_OR_EQUAL",
];

/// What settings may refer to that lives elsewhere.
pub trait Lookups {
    fn cluster_exists(&self, cluster_id: &str) -> bool;
    fn pipeline_exists(&self, pipeline_id: &str) -> bool;
    fn job_exists(&self, job_id: i64) -> bool;
    /// A Unity Catalog volume, `catalog.schema.volume`.
    fn volume_exists(&self, full_name: &str) -> bool;
    /// A Unity Catalog table, `catalog.schema.table`.
    fn table_exists(&self, full_name: &str) -> bool;
    /// A notification destination's id.
    fn destination_exists(&self, id: &str) -> bool;
    /// A SQL warehouse's id (not deleted).
    fn warehouse_exists(&self, id: &str) -> bool;
}

pub(crate) fn invalid(field: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!("Invalid value for field {field}: {why}"))
}

pub(crate) fn object_or_default(map: &mut Map<String, Value>, key: &str) -> Result<()> {
    match map.get(key) {
        None | Some(Value::Null) => {
            map.insert(key.into(), json!({}));
            Ok(())
        }
        Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(invalid(key, "expected an object")),
    }
}

/// `webhook_notifications`: each event a list of at most 3 `{id}` of
/// existing notification destinations.
pub(crate) fn webhooks(s: &Map<String, Value>, lookups: &dyn Lookups) -> Result<()> {
    let Some(Value::Object(hooks)) = s.get("webhook_notifications") else {
        return Ok(());
    };
    for (event, list) in hooks {
        let field = format!("webhook_notifications.{event}");
        if !matches!(
            event.as_str(),
            "on_start"
                | "on_success"
                | "on_failure"
                | "on_duration_warning_threshold_exceeded"
                | "on_streaming_backlog_exceeded"
        ) {
            return Err(invalid(&field, "not a job event"));
        }
        let list = list
            .as_array()
            .ok_or_else(|| invalid(&field, "expected a list"))?;
        if list.len() > 3 {
            return Err(invalid(&field, "at most 3 destinations"));
        }
        for d in list {
            let id = d.get("id").and_then(Value::as_str).unwrap_or_default();
            if !lookups.destination_exists(id) {
                return Err(invalid(
                    &format!("{field}.id"),
                    format!("notification destination {id:?} does not exist"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks a `sql_task`'s settings.
fn check_sql_task(spec: &Value, key: &str, lookups: &dyn Lookups) -> Result<()> {
    let warehouse = spec
        .get("warehouse_id")
        .and_then(Value::as_str)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| {
            invalid(
                "tasks.sql_task.warehouse_id",
                format!("task {key}: required"),
            )
        })?;
    if !lookups.warehouse_exists(warehouse) {
        return Err(invalid(
            "tasks.sql_task.warehouse_id",
            format!("task {key}: warehouse {warehouse} does not exist"),
        ));
    }
    let kinds: Vec<&str> = ["file", "query", "alert", "dashboard"]
        .into_iter()
        .filter(|k| spec.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    match kinds.as_slice() {
        ["file"] => {}
        ["query"] => {
            return Err(invalid(
                "tasks.sql_task.query",
                format!("task {key}: saved queries (the Queries API) are not served by Kiln; put the SQL in a file"),
            ))
        }
        [other] => {
            return Err(invalid(
                &format!("tasks.sql_task.{other}"),
                format!("task {key}: SQL {other}s are not served by Kiln"),
            ))
        }
        _ => {
            return Err(invalid(
                "tasks.sql_task",
                format!("task {key}: exactly one of file, query, alert or dashboard"),
            ))
        }
    }
    if spec["file"]
        .get("path")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(invalid(
            "tasks.sql_task.file.path",
            format!("task {key}: required"),
        ));
    }
    if spec["file"].get("source").and_then(Value::as_str) == Some("GIT") {
        return Err(invalid(
            "tasks.sql_task.file.source",
            "GIT sources are not supported by Kiln",
        ));
    }
    Ok(())
}

pub(crate) fn int_field(
    map: &mut Map<String, Value>,
    field: &str,
    default: i64,
    range: (i64, i64),
) -> Result<i64> {
    let value = match map.get(field) {
        None | Some(Value::Null) => default,
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| invalid(field, "expected an integer"))?,
    };
    if value < range.0 || value > range.1 {
        return Err(invalid(
            field,
            format!("must be between {} and {}", range.0, range.1),
        ));
    }
    map.insert(field.into(), json!(value));
    Ok(value)
}

pub(crate) fn normalize_task(
    task: Value,
    index: usize,
    job_clusters: &BTreeSet<String>,
    lookups: &dyn Lookups,
) -> Result<Map<String, Value>> {
    let Value::Object(mut t) = task else {
        return Err(invalid("tasks", format!("task {index} is not an object")));
    };
    let key = t
        .get("task_key")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let key_ok = !key.is_empty()
        && key.len() <= 100
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !key_ok {
        return Err(invalid(
            "tasks.task_key",
            format!("'{key}': 1 to 100 letters, digits, '_' or '-'"),
        ));
    }
    let types: Vec<&str> = TASK_TYPES
        .iter()
        .copied()
        .filter(|k| t.get(*k).is_some_and(|v| !v.is_null()))
        .collect();
    let kind = match types.as_slice() {
        [one] => *one,
        [] => {
            return Err(invalid(
                "tasks",
                format!("task {key} has no task type (e.g. notebook_task)"),
            ))
        }
        _ => {
            return Err(invalid(
                "tasks",
                format!(
                    "task {key} has more than one task type: {}",
                    types.join(", ")
                ),
            ))
        }
    };
    if !SUPPORTED.contains(&kind) {
        let why = match kind {
            "spark_jar_task" | "spark_submit_task" => {
                "needs a JVM Spark driver; Kiln's engines run Spark Connect"
            }
            _ => "is not supported by Kiln yet",
        };
        return Err(invalid(
            &format!("tasks.{kind}"),
            format!("task {key}: {kind} {why}"),
        ));
    }
    if !t[kind].is_object() {
        return Err(invalid(&format!("tasks.{kind}"), "expected an object"));
    }
    match t.get("run_if") {
        None | Some(Value::Null) => {
            t.insert("run_if".into(), json!("ALL_SUCCESS"));
        }
        Some(Value::String(r)) if RUN_IF.contains(&r.as_str()) => {}
        Some(other) => {
            return Err(invalid(
                "tasks.run_if",
                format!("{other} (use one of {})", RUN_IF.join(", ")),
            ))
        }
    }
    int_field(&mut t, "timeout_seconds", 0, (0, i64::MAX))?;
    int_field(&mut t, "max_retries", 0, (-1, 1000))?;
    int_field(&mut t, "min_retry_interval_millis", 0, (0, i64::MAX))?;
    if !t
        .get("retry_on_timeout")
        .is_none_or(|v| v.is_boolean() || v.is_null())
    {
        return Err(invalid("tasks.retry_on_timeout", "expected a boolean"));
    }
    object_or_default(&mut t, "email_notifications")?;
    webhooks(&t, lookups)?;
    depends_on(&mut t, &key)?;
    let computes: Vec<&str> = [
        "existing_cluster_id",
        "job_cluster_key",
        "new_cluster",
        "environment_key",
    ]
    .into_iter()
    .filter(|k| t.get(*k).is_some_and(|v| !v.is_null()))
    .collect();
    if computes.len() > 1 {
        return Err(invalid(
            "tasks",
            format!(
                "task {key} names more than one compute: {}",
                computes.join(", ")
            ),
        ));
    }
    if let Some(id) = t.get("existing_cluster_id").and_then(Value::as_str) {
        if !lookups.cluster_exists(id) {
            return Err(invalid(
                "tasks.existing_cluster_id",
                format!("cluster {id} does not exist"),
            ));
        }
    }
    if let Some(k) = t.get("job_cluster_key").and_then(Value::as_str) {
        if !job_clusters.contains(k) {
            return Err(invalid(
                "tasks.job_cluster_key",
                format!("no job cluster {k}"),
            ));
        }
    }
    if let Some(spec) = t.get("new_cluster").filter(|v| !v.is_null()) {
        kiln_compute::cluster_spec::config_from_json(spec, &key, "JOB", 0)?;
    }
    if !computes.is_empty() && !NEEDS_COMPUTE.contains(&kind) {
        // (a for-each task's compute is its nested task's)
        return Err(invalid(
            "tasks",
            format!("task {key}: {kind} takes no cluster"),
        ));
    }
    if let Some(libraries) = t.get("libraries").filter(|v| !v.is_null()) {
        let list = libraries
            .as_array()
            .ok_or_else(|| invalid("tasks.libraries", "expected a list"))?;
        if !NEEDS_COMPUTE.contains(&kind) {
            return Err(invalid(
                "tasks.libraries",
                format!("task {key}: {kind} takes no libraries"),
            ));
        }
        for library in list {
            kiln_compute::libraries::LibrarySource::parse(library)?;
        }
    }
    check_task_type(&t, kind, &key, lookups)?;
    if kind == "for_each_task" {
        let nested = for_each(&t, &key, job_clusters, lookups)?;
        if let Some(spec) = t.get_mut("for_each_task") {
            spec["task"] = Value::Object(nested);
        }
    }
    Ok(t)
}

/// A for-each task's nested task, checked like a task (no nested for-each).
fn for_each(
    t: &Map<String, Value>,
    key: &str,
    job_clusters: &BTreeSet<String>,
    lookups: &dyn Lookups,
) -> Result<Map<String, Value>> {
    let spec = &t["for_each_task"];
    match &spec["inputs"] {
        Value::String(s) if !s.trim().is_empty() => {}
        Value::Array(_) => {}
        _ => {
            return Err(invalid(
                "tasks.for_each_task.inputs",
                format!("required: a JSON array or a reference (task {key})"),
            ))
        }
    }
    if let Some(c) = spec.get("concurrency").filter(|c| !c.is_null()) {
        if !c.as_u64().is_some_and(|c| (1..=100).contains(&c)) {
            return Err(invalid("tasks.for_each_task.concurrency", "1 to 100"));
        }
    }
    let nested = spec.get("task").cloned().unwrap_or(Value::Null);
    if nested.get("for_each_task").is_some_and(|v| !v.is_null()) {
        return Err(invalid(
            "tasks.for_each_task.task",
            "a for-each task cannot nest another",
        ));
    }
    if !nested.is_object() {
        return Err(invalid(
            "tasks.for_each_task.task",
            format!("required (task {key})"),
        ));
    }
    let mut nested = normalize_task(nested, 0, job_clusters, lookups)?;
    nested.remove("depends_on");
    Ok(nested)
}

fn depends_on(t: &mut Map<String, Value>, key: &str) -> Result<()> {
    let mut deps = match t.remove("depends_on") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(deps)) => deps,
        Some(_) => return Err(invalid("tasks.depends_on", "expected a list")),
    };
    for d in &deps {
        if d.get("task_key")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(invalid(
                "tasks.depends_on.task_key",
                format!("required (task {key})"),
            ));
        }
    }
    deps.sort_by(|a, b| a["task_key"].as_str().cmp(&b["task_key"].as_str()));
    deps.dedup_by(|a, b| a["task_key"] == b["task_key"]);
    if !deps.is_empty() {
        t.insert("depends_on".into(), Value::Array(deps));
    }
    Ok(())
}

fn str_field<'a>(v: &'a Value, field: &str, path: &str, key: &str) -> Result<&'a str> {
    v.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(path, format!("required (task {key})")))
}

fn check_task_type(
    t: &Map<String, Value>,
    kind: &str,
    key: &str,
    lookups: &dyn Lookups,
) -> Result<()> {
    let spec = &t[kind];
    match kind {
        "sql_task" => check_sql_task(spec, key, lookups)?,
        "dbt_task" => {
            crate::dbt_settings::check_dbt_task(spec, key, |id| lookups.warehouse_exists(id))?
        }
        "notebook_task" => {
            str_field(
                spec,
                "notebook_path",
                "tasks.notebook_task.notebook_path",
                key,
            )?;
            if spec.get("source").and_then(Value::as_str) == Some("GIT") {
                return Err(invalid(
                    "tasks.notebook_task.source",
                    "GIT sources are not supported by Kiln",
                ));
            }
        }
        "python_wheel_task" => {
            str_field(
                spec,
                "package_name",
                "tasks.python_wheel_task.package_name",
                key,
            )?;
            str_field(
                spec,
                "entry_point",
                "tasks.python_wheel_task.entry_point",
                key,
            )?;
        }
        "spark_python_task" => {
            str_field(
                spec,
                "python_file",
                "tasks.spark_python_task.python_file",
                key,
            )?;
            if spec
                .get("parameters")
                .is_some_and(|p| !p.is_array() && !p.is_null())
            {
                return Err(invalid(
                    "tasks.spark_python_task.parameters",
                    "expected a list",
                ));
            }
        }
        "pipeline_task" => {
            let id = str_field(spec, "pipeline_id", "tasks.pipeline_task.pipeline_id", key)?;
            if !lookups.pipeline_exists(id) {
                return Err(invalid(
                    "tasks.pipeline_task.pipeline_id",
                    format!("pipeline {id} does not exist"),
                ));
            }
        }
        "run_job_task" => {
            let id = spec
                .get("job_id")
                .and_then(|v| {
                    v.as_i64()
                        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                })
                .ok_or_else(|| {
                    invalid(
                        "tasks.run_job_task.job_id",
                        format!("required (task {key})"),
                    )
                })?;
            if !lookups.job_exists(id) {
                return Err(invalid(
                    "tasks.run_job_task.job_id",
                    format!("job {id} does not exist"),
                ));
            }
        }
        "condition_task" => {
            let op = str_field(spec, "op", "tasks.condition_task.op", key)?;
            if !CONDITION_OPS.contains(&op) {
                return Err(invalid(
                    "tasks.condition_task.op",
                    format!("{op} (use one of {})", CONDITION_OPS.join(", ")),
                ));
            }
            for side in ["left", "right"] {
                if !spec.get(side).is_some_and(Value::is_string) {
                    return Err(invalid(
                        &format!("tasks.condition_task.{side}"),
                        "required (a string)",
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

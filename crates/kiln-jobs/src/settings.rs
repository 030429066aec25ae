//! Job settings (`JobSettings`) as the API accepts them: checked field by
//! field (an error names the field and nothing is created or changed), and
//! echoed with the defaults Databricks fills in (`run_if` ALL_SUCCESS,
//! `timeout_seconds` 0, empty notification objects, `depends_on` sorted).

use std::collections::{BTreeMap, BTreeSet};

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
    "notebook_task",
    "spark_python_task",
    "pipeline_task",
    "run_job_task",
    "condition_task",
];

/// Task types that run user code on a cluster.
pub const NEEDS_COMPUTE: &[&str] = &["notebook_task", "spark_python_task"];

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
}

fn invalid(field: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!("Invalid value for field {field}: {why}"))
}

fn object_or_default(map: &mut Map<String, Value>, key: &str) -> Result<()> {
    match map.get(key) {
        None | Some(Value::Null) => {
            map.insert(key.into(), json!({}));
            Ok(())
        }
        Some(Value::Object(_)) => Ok(()),
        Some(_) => Err(invalid(key, "expected an object")),
    }
}

fn int_field(
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

/// The checked settings of a job (or of a one-time run), defaults filled in.
pub fn normalize(settings: Value, lookups: &dyn Lookups) -> Result<Map<String, Value>> {
    let Value::Object(mut s) = settings else {
        return Err(Error::invalid("Job settings must be a JSON object"));
    };
    match s.get("name") {
        None | Some(Value::Null) => {
            s.insert("name".into(), json!("Untitled"));
        }
        Some(Value::String(_)) => {}
        Some(_) => return Err(invalid("name", "expected a string")),
    }
    int_field(&mut s, "max_concurrent_runs", 1, (0, 1000))?;
    int_field(&mut s, "timeout_seconds", 0, (0, i64::MAX))?;
    object_or_default(&mut s, "email_notifications")?;
    object_or_default(&mut s, "webhook_notifications")?;
    s.entry("format").or_insert(json!("MULTI_TASK"));
    if let Some(git) = s.get("git_source").filter(|g| !g.is_null()) {
        if git.get("git_provider").and_then(Value::as_str).is_none() {
            return Err(invalid("git_source.git_provider", "required"));
        }
        return Err(invalid(
            "git_source",
            "Git sources are not supported by Kiln",
        ));
    }
    let job_clusters = job_clusters(&mut s)?;
    parameters(&s)?;
    if let Some(schedule) = s.get("schedule").filter(|v| !v.is_null()) {
        crate::cron::check_schedule(schedule)?;
    }
    let tasks = match s.remove("tasks") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tasks)) => tasks,
        Some(_) => return Err(invalid("tasks", "expected a list")),
    };
    let mut seen = BTreeSet::new();
    let mut checked = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let task = normalize_task(task, i, &job_clusters, lookups)?;
        let key = task["task_key"].as_str().unwrap_or_default().to_string();
        if !seen.insert(key.clone()) {
            return Err(invalid(
                "tasks.task_key",
                format!("duplicate task key {key}"),
            ));
        }
        checked.push(task);
    }
    check_dependencies(&checked)?;
    s.insert(
        "tasks".into(),
        Value::Array(checked.into_iter().map(Value::Object).collect()),
    );
    Ok(s)
}

fn job_clusters(s: &mut Map<String, Value>) -> Result<BTreeSet<String>> {
    let mut keys = BTreeSet::new();
    let Some(list) = s.get("job_clusters").filter(|v| !v.is_null()) else {
        return Ok(keys);
    };
    let list = list
        .as_array()
        .ok_or_else(|| invalid("job_clusters", "expected a list"))?;
    for c in list {
        let key = c
            .get("job_cluster_key")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| invalid("job_clusters.job_cluster_key", "required"))?;
        if !c.get("new_cluster").is_some_and(Value::is_object) {
            return Err(invalid("job_clusters.new_cluster", "required (an object)"));
        }
        kiln_compute::cluster_spec::config_from_json(&c["new_cluster"], key, "JOB", 0)?;
        if !keys.insert(key.to_string()) {
            return Err(invalid(
                "job_clusters.job_cluster_key",
                format!("duplicate key {key}"),
            ));
        }
    }
    Ok(keys)
}

fn parameters(s: &Map<String, Value>) -> Result<()> {
    let Some(list) = s.get("parameters").filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let list = list
        .as_array()
        .ok_or_else(|| invalid("parameters", "expected a list"))?;
    let mut names = BTreeSet::new();
    for p in list {
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| invalid("parameters.name", "required"))?;
        if p.get("default").is_none() {
            return Err(invalid(
                "parameters.default",
                format!("required for {name}"),
            ));
        }
        if !names.insert(name) {
            return Err(invalid(
                "parameters.name",
                format!("duplicate parameter {name}"),
            ));
        }
    }
    Ok(())
}

fn normalize_task(
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
            "sql_task" | "dbt_task" => "needs SQL warehouses, which Kiln does not serve yet",
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

/// Every dependency names a task of the job, and they form no cycle.
fn check_dependencies(tasks: &[Map<String, Value>]) -> Result<()> {
    let deps: BTreeMap<&str, Vec<&str>> = tasks
        .iter()
        .map(|t| {
            let key = t["task_key"].as_str().unwrap_or_default();
            let on = t
                .get("depends_on")
                .and_then(Value::as_array)
                .map(|d| d.iter().filter_map(|d| d["task_key"].as_str()).collect())
                .unwrap_or_default();
            (key, on)
        })
        .collect();
    for (task, on) in &deps {
        for d in on {
            if !deps.contains_key(d) {
                return Err(invalid(
                    "tasks.depends_on",
                    format!("task {task} depends on unknown task {d}"),
                ));
            }
            if d == task {
                return Err(invalid(
                    "tasks.depends_on",
                    format!("task {task} depends on itself"),
                ));
            }
        }
    }
    // Kahn: whatever cannot be ordered is on a cycle.
    let mut remaining: BTreeMap<&str, usize> = deps.iter().map(|(k, v)| (*k, v.len())).collect();
    let mut ready: Vec<&str> = remaining
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| *k)
        .collect();
    while let Some(done) = ready.pop() {
        remaining.remove(done);
        for (task, on) in &deps {
            if on.contains(&done) {
                if let Some(n) = remaining.get_mut(task) {
                    *n -= 1;
                    if *n == 0 {
                        ready.push(task);
                    }
                }
            }
        }
    }
    if let Some(task) = remaining.keys().next() {
        return Err(invalid(
            "tasks.depends_on",
            format!("the tasks form a cycle (through {task})"),
        ));
    }
    Ok(())
}

/// The one-task settings of the single-task `runs/submit` shape (Airflow's
/// `DatabricksSubmitRunOperator`): a top-level task type with its compute.
pub fn single_task_settings(body: &Map<String, Value>) -> Option<Map<String, Value>> {
    let kind = TASK_TYPES
        .iter()
        .find(|k| body.get(**k).is_some_and(|v| !v.is_null()))?;
    let mut task = Map::new();
    task.insert(
        "task_key".into(),
        json!(body
            .get("task_key")
            .and_then(Value::as_str)
            .unwrap_or("task")),
    );
    for k in [
        *kind,
        "existing_cluster_id",
        "new_cluster",
        "libraries",
        "timeout_seconds",
        "environment_key",
    ] {
        if let Some(v) = body.get(k).filter(|v| !v.is_null()) {
            task.insert(k.into(), v.clone());
        }
    }
    let mut settings = Map::new();
    for k in [
        "run_name",
        "timeout_seconds",
        "environments",
        "email_notifications",
        "webhook_notifications",
    ] {
        if let Some(v) = body.get(k).filter(|v| !v.is_null()) {
            settings.insert(k.into(), v.clone());
        }
    }
    settings.insert("tasks".into(), json!([task]));
    Some(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Everything;
    impl Lookups for Everything {
        fn cluster_exists(&self, id: &str) -> bool {
            id == "c1"
        }
        fn pipeline_exists(&self, id: &str) -> bool {
            id == "p1"
        }
        fn job_exists(&self, id: i64) -> bool {
            id == 7
        }
    }

    fn check(settings: Value) -> Result<Map<String, Value>> {
        normalize(settings, &Everything)
    }

    #[test]
    fn defaults_are_filled_and_dependencies_sorted() -> Result<()> {
        let s = check(json!({"name": "n", "tasks": [
            {"task_key": "a", "notebook_task": {"notebook_path": "/n"}, "existing_cluster_id": "c1"},
            {"task_key": "c", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}},
            {"task_key": "b", "depends_on": [{"task_key": "c"}, {"task_key": "a"}],
             "notebook_task": {"notebook_path": "/n"}, "existing_cluster_id": "c1"}]}))?;
        assert_eq!(s["max_concurrent_runs"], 1);
        assert_eq!(s["email_notifications"], json!({}));
        let b = &s["tasks"][2];
        assert_eq!(b["run_if"], "ALL_SUCCESS");
        assert_eq!(b["timeout_seconds"], 0);
        assert_eq!(
            b["depends_on"],
            json!([{"task_key": "a"}, {"task_key": "c"}])
        );
        Ok(())
    }

    #[test]
    fn bad_settings_name_their_field() {
        let cases = [
            (json!({"tasks": [{"task_key": "a"}]}), "no task type"),
            (
                json!({"tasks": [{"task_key": "a", "notebook_task": {"notebook_path": "/n"}, "condition_task": {}}]}),
                "more than one",
            ),
            (
                json!({"tasks": [{"task_key": "a", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}},
                              {"task_key": "a", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}}]}),
                "duplicate",
            ),
            (
                json!({"tasks": [{"task_key": "a", "depends_on": [{"task_key": "b"}], "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}},
                              {"task_key": "b", "depends_on": [{"task_key": "a"}], "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}}]}),
                "cycle",
            ),
            (
                json!({"tasks": [{"task_key": "a", "depends_on": [{"task_key": "x"}], "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}}]}),
                "unknown task x",
            ),
            (
                json!({"tasks": [{"task_key": "a", "notebook_task": {"notebook_path": "/n"}, "existing_cluster_id": "nope"}]}),
                "does not exist",
            ),
            (
                json!({"tasks": [{"task_key": "a", "pipeline_task": {"pipeline_id": "nope"}}]}),
                "pipeline nope",
            ),
            (
                json!({"tasks": [{"task_key": "a", "sql_task": {}}]}),
                "SQL warehouses",
            ),
            (json!({"max_concurrent_runs": 1001}), "max_concurrent_runs"),
            (
                json!({"tasks": [{"task_key": "a b", "condition_task": {}}]}),
                "task_key",
            ),
            (
                json!({"tasks": [{"task_key": "a", "condition_task": {"op": "LIKE", "left": "1", "right": "1"}}]}),
                "op",
            ),
        ];
        for (settings, expect) in cases {
            let err = check(settings.clone()).err();
            assert!(
                err.as_ref().is_some_and(|e| e.message.contains(expect)
                    && e.code == kiln_core::ErrorCode::InvalidParameterValue),
                "{settings}: {err:?}"
            );
        }
    }

    #[test]
    fn the_single_task_submit_shape_becomes_one_task() {
        let body = json!({"run_name": "r", "existing_cluster_id": "c1",
            "spark_python_task": {"python_file": "dbfs:/x.py"}, "timeout_seconds": 60});
        let s = single_task_settings(body.as_object().unwrap_or(&Map::new())).unwrap_or_default();
        assert_eq!(
            s["tasks"][0]["spark_python_task"]["python_file"],
            "dbfs:/x.py"
        );
        assert_eq!(s["tasks"][0]["existing_cluster_id"], "c1");
        assert_eq!(s["run_name"], "r");
    }
}

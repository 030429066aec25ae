//! Job settings (`JobSettings`) as the API accepts them: checked field by
//! field (an error names the field and nothing is created or changed), and
//! echoed with the defaults Databricks fills in (`run_if` ALL_SUCCESS,
//! `timeout_seconds` 0, empty notification objects, `depends_on` sorted).

use std::collections::{BTreeMap, BTreeSet};

use kiln_core::{Error, Result};
use serde_json::{json, Map, Value};

use crate::task_settings::{int_field, invalid, normalize_task, object_or_default};
pub use crate::task_settings::{Lookups, NEEDS_COMPUTE, SUPPORTED, TASK_TYPES};

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
    crate::task_settings::webhooks(&s, lookups)?;
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
    let environments = crate::environments::check(&s)?;
    parameters(&s)?;
    if let Some(schedule) = s.get("schedule").filter(|v| !v.is_null()) {
        crate::cron::check_schedule(schedule)?;
    }
    if let Some(trigger) = s.get_mut("trigger").filter(|v| !v.is_null()) {
        crate::trigger_settings::check(trigger, lookups)?;
    }
    if let Some(continuous) = s.get("continuous").filter(|v| !v.is_null()) {
        let others: Vec<&str> = ["schedule", "trigger"]
            .into_iter()
            .filter(|k| s.get(*k).is_some_and(|v| !v.is_null()))
            .collect();
        if !others.is_empty() {
            return Err(invalid(
                "continuous",
                format!("a continuous job has no {}", others.join(" or ")),
            ));
        }
        match continuous.get("pause_status") {
            None | Some(Value::Null) => {}
            Some(Value::String(p)) if p == "PAUSED" || p == "UNPAUSED" => {}
            Some(other) => {
                return Err(invalid(
                    "continuous.pause_status",
                    format!("{other}: PAUSED or UNPAUSED"),
                ))
            }
        }
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
    crate::environments::check_keys(&checked, &environments)?;
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
#[path = "settings_tests.rs"]
mod tests;

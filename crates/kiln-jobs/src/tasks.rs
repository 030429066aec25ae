//! A task's work by its type: conditions here; notebooks and Python files in
//! [`crate::code_task`]; pipeline updates and runs of other jobs in
//! [`crate::chained`].

use std::sync::Arc;

use kiln_core::Result;
use serde_json::{Map, Value};

use crate::model::{RunRecord, TaskOutput};
use crate::outcome::{Attempt, Outcome};
use crate::service::Jobs;

/// Runs a task of resolved settings (a task, or one iteration of a for-each
/// task) for the run's task `key`.
pub(crate) async fn run_spec(
    jobs: &Arc<Jobs>,
    run: &RunRecord,
    key: &str,
    resolved: &Map<String, Value>,
    attempt: &Attempt,
) -> Result<Outcome> {
    let kind = crate::settings::TASK_TYPES
        .iter()
        .find(|k| resolved.get(**k).is_some_and(|v| !v.is_null()))
        .copied()
        .unwrap_or_default();
    let spec = resolved.get(kind).cloned().unwrap_or(Value::Null);
    match kind {
        "condition_task" => Ok(condition(&spec)),
        "notebook_task" | "spark_python_task" | "python_wheel_task" | "dbt_task" => {
            crate::code_task::code_task(jobs, run, key, kind, resolved, &spec, attempt).await
        }
        "pipeline_task" => crate::chained::pipeline_task(jobs, run, &spec, attempt).await,
        "run_job_task" => crate::chained::run_job_task(jobs, run, &spec, attempt).await,
        "sql_task" => crate::sql_task::run(jobs, run, &spec, attempt).await,
        other => Ok(Outcome::failed(
            format!("{other} is not supported by Kiln"),
            TaskOutput::default(),
        )),
    }
}

// ---- conditions -------------------------------------------------------------

fn condition(spec: &Value) -> Outcome {
    let left = spec["left"].as_str().unwrap_or_default().trim();
    let right = spec["right"].as_str().unwrap_or_default().trim();
    let order = match (left.parse::<f64>(), right.parse::<f64>()) {
        (Ok(a), Ok(b)) => a.partial_cmp(&b),
        _ => Some(left.cmp(right)),
    };
    use std::cmp::Ordering::*;
    let holds = match (spec["op"].as_str().unwrap_or_default(), order) {
        ("EQUAL_TO", Some(o)) => o == Equal,
        ("NOT_EQUAL", Some(o)) => o != Equal,
        ("GREATER_THAN", Some(o)) => o == Greater,
        ("GREATER_THAN_OR_EQUAL", Some(o)) => o != Less,
        ("LESS_THAN", Some(o)) => o == Less,
        ("LESS_THAN_OR_EQUAL", Some(o)) => o != Greater,
        _ => false,
    };
    Outcome::success(TaskOutput {
        outcome: Some(holds.to_string()),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_compare_numbers_and_strings() {
        let check = |op: &str, l: &str, r: &str| {
            condition(&json!({"op": op, "left": l, "right": r}))
                .output
                .outcome
        };
        assert_eq!(check("EQUAL_TO", "1", "1.0"), Some("true".into()));
        assert_eq!(check("GREATER_THAN", "10", "9"), Some("true".into()));
        assert_eq!(check("LESS_THAN", "abc", "abd"), Some("true".into()));
        assert_eq!(check("NOT_EQUAL", "a", "a"), Some("false".into()));
    }
}

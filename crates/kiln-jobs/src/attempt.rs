//! One task attempt from start to outcome: the task's dynamic value
//! references resolved, then its work ([`crate::tasks::run_spec`]), or a
//! for-each task's iterations.

use std::sync::Arc;

use kiln_core::{Error, Result};
use serde_json::Value;

use crate::model::{RunRecord, TaskOutput};
use crate::outcome::{Attempt, Outcome};
use crate::refs::Scope;
use crate::service::Jobs;
use crate::tasks::run_spec;

/// Runs one attempt of task `key`; never fails (a failure is the outcome).
pub async fn execute(jobs: &Arc<Jobs>, run_id: i64, key: &str, attempt: Attempt) -> Outcome {
    match execute_attempt(jobs, run_id, key, &attempt).await {
        Ok(outcome) => outcome,
        Err(_) if attempt.token.is_cancelled() => Outcome::cancelled(),
        Err(e) => Outcome::failed(e.message, TaskOutput::default()),
    }
}

pub(crate) fn scope<'a>(run: &'a RunRecord, key: &'a str, job_name: &'a str) -> Scope<'a> {
    let task_run_id = run.task(key).map(|t| t.run_id).unwrap_or(run.run_id);
    Scope {
        job_id: run.job_id,
        run_id: run.run_id,
        job_name,
        start_time_ms: run.start_time,
        trigger: &run.trigger,
        parameters: &run.job_parameters,
        task_key: key,
        task_run_id,
        input: None,
        tasks: run
            .tasks
            .iter()
            .filter(|t| t.state.life_cycle_state.is_terminal())
            .map(|t| {
                let result = t
                    .state
                    .result_state
                    .map(|r| r.as_str())
                    .unwrap_or("")
                    .to_string();
                (t.task_key.clone(), (result, t.output.task_values.clone()))
            })
            .collect(),
    }
}

async fn execute_attempt(
    jobs: &Arc<Jobs>,
    run_id: i64,
    key: &str,
    attempt: &Attempt,
) -> Result<Outcome> {
    let run = jobs.run(run_id)?;
    let task = run
        .task(key)
        .ok_or_else(|| Error::internal("run a task", "the task is gone"))?;
    let job_name = run.run_name.clone();
    let mut scope = scope(&run, key, &job_name);
    if task.task.contains_key("for_each_task") {
        return crate::for_each::run(jobs, &run, key, &task.task, &mut scope, attempt).await;
    }
    let resolved = match scope.resolve_json(&Value::Object(task.task.clone())) {
        Ok(Value::Object(spec)) => spec,
        Ok(_) => return Err(Error::internal("resolve a task", "not an object")),
        Err(message) => return Ok(Outcome::failed(message, TaskOutput::default())),
    };
    run_spec(jobs, &run, key, &resolved, attempt).await
}

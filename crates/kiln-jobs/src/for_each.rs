//! `for_each_task`: its nested task once per input (`inputs`, a JSON array or
//! a reference to one), at most `concurrency` at a time, `{{input}}` naming
//! the iteration's input. Each iteration is a task run of its own (its run id,
//! state and output, listed as `iterations`); the task succeeds when every
//! iteration does.

use std::sync::Arc;

use kiln_core::lifecycle::Lifecycle;
use kiln_core::time::now_ms;
use kiln_core::Result;
use serde_json::{Map, Value};
use tokio::task::JoinSet;

use crate::lifecycle::{RunEvent, RunLifecycle, RunResultState};
use crate::model::{RunRecord, TaskOutput, TaskRun};
use crate::outcome::{Attempt, Outcome};
use crate::refs::Scope;
use crate::service::Jobs;
use crate::tasks::run_spec;

/// The most iterations of one for-each task.
const MAX_ITERATIONS: usize = 5000;

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn record(
    jobs: &Jobs,
    run_id: i64,
    key: &str,
    index: usize,
    change: impl FnOnce(&mut TaskRun) -> Result<()>,
) -> Result<()> {
    jobs.change_run(run_id, |r| {
        if let Some(it) = r.task_mut(key).and_then(|t| t.iterations.get_mut(index)) {
            change(it)?;
        }
        Ok(())
    })?;
    Ok(())
}

pub(crate) async fn run(
    jobs: &Arc<Jobs>,
    run: &RunRecord,
    key: &str,
    task: &Map<String, Value>,
    scope: &mut Scope<'_>,
    attempt: &Attempt,
) -> Result<Outcome> {
    let spec = &task["for_each_task"];
    let inputs = match &spec["inputs"] {
        Value::String(s) => match scope.resolve(s) {
            Ok(resolved) => resolved,
            Err(message) => return Ok(Outcome::failed(message, TaskOutput::default())),
        },
        other => other.to_string(),
    };
    let Ok(inputs) = serde_json::from_str::<Vec<Value>>(&inputs) else {
        return Ok(Outcome::failed(
            format!("for_each_task.inputs is not a JSON array: {inputs}"),
            TaskOutput::default(),
        ));
    };
    if inputs.len() > MAX_ITERATIONS {
        return Ok(Outcome::failed(
            format!(
                "for_each_task.inputs has {} items; at most {MAX_ITERATIONS}",
                inputs.len()
            ),
            TaskOutput::default(),
        ));
    }
    let nested = spec["task"].as_object().cloned().unwrap_or_default();
    let concurrency = spec["concurrency"].as_u64().unwrap_or(1).clamp(1, 100) as usize;
    let iterations: Vec<TaskRun> = inputs
        .iter()
        .map(|_| TaskRun::pending(jobs.new_id(), key, nested.clone()))
        .collect();
    jobs.change_run(run.run_id, |r| {
        if let Some(t) = r.task_mut(key) {
            t.iterations = iterations;
        }
        Ok(())
    })?;
    let mut running: JoinSet<(usize, Outcome)> = JoinSet::new();
    let (mut next, mut failed) = (0, 0usize);
    loop {
        while running.len() < concurrency && next < inputs.len() && !attempt.token.is_cancelled() {
            let index = next;
            next += 1;
            scope.input = Some(text(&inputs[index]));
            let resolved = match scope.resolve_json(&Value::Object(nested.clone())) {
                Ok(Value::Object(m)) => m,
                Ok(_) => Map::new(),
                Err(message) => {
                    let outcome = Outcome::failed(message, TaskOutput::default());
                    finish(jobs, run.run_id, key, index, &outcome)?;
                    failed += 1;
                    continue;
                }
            };
            record(jobs, run.run_id, key, index, |it| {
                it.state.life_cycle_state = RunLifecycle::transition(
                    "An iteration",
                    it.state.life_cycle_state,
                    RunEvent::Start,
                )?;
                it.start_time = now_ms();
                it.task = resolved.clone();
                Ok(())
            })?;
            let (jobs, run, key, token) = (
                jobs.clone(),
                run.clone(),
                key.to_string(),
                attempt.token.clone(),
            );
            running.spawn(async move {
                let attempt = Attempt { token };
                let outcome = match run_spec(&jobs, &run, &key, &resolved, &attempt).await {
                    Ok(o) => o,
                    Err(e) => Outcome::failed(e.message, TaskOutput::default()),
                };
                (index, outcome)
            });
        }
        match running.join_next().await {
            None => break,
            Some(Ok((index, outcome))) => {
                if !outcome.result.succeeded() {
                    failed += 1;
                }
                finish(jobs, run.run_id, key, index, &outcome)?;
            }
            Some(Err(_)) => failed += 1,
        }
    }
    if attempt.token.is_cancelled() {
        return Ok(Outcome {
            result: RunResultState::Canceled,
            message: "Task cancelled.".into(),
            output: TaskOutput::default(),
        });
    }
    Ok(if failed == 0 {
        Outcome::success(TaskOutput::default())
    } else {
        Outcome::failed(
            format!("{failed} of {} iterations failed", inputs.len()),
            TaskOutput::default(),
        )
    })
}

fn finish(jobs: &Jobs, run_id: i64, key: &str, index: usize, outcome: &Outcome) -> Result<()> {
    record(jobs, run_id, key, index, |it| {
        it.state.life_cycle_state =
            RunLifecycle::transition("An iteration", it.state.life_cycle_state, RunEvent::End)?;
        it.state.result_state = Some(outcome.result);
        it.state.state_message = outcome.message.clone();
        it.output = outcome.output.clone();
        it.end_time = now_ms();
        if it.start_time == 0 {
            it.start_time = it.end_time;
        }
        it.execution_duration = it.end_time - it.start_time;
        Ok(())
    })
}

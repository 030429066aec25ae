//! One run, driven from start to end: its tasks in dependency order (each as
//! soon as its upstream tasks are done and its `run_if` holds; independent
//! tasks at once), retries and timeouts, cancel, the run's result from its
//! leaf tasks, and its job clusters terminated at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kiln_core::lifecycle::Lifecycle;
use kiln_core::time::now_ms;
use kiln_core::Result;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::lifecycle::{RunEvent, RunLifeCycleState, RunLifecycle, RunResultState};
use crate::model::{RunRecord, TaskOutput, TaskRun};
use crate::outcome::{Attempt, Outcome};
use crate::service::Jobs;
use crate::webhooks::Event;

fn step(what: &str, from: RunLifeCycleState, event: RunEvent) -> Result<RunLifeCycleState> {
    RunLifecycle::transition(what, from, event)
}

/// What decides whether a task runs, given its upstream tasks.
enum Gate {
    Run,
    /// Not run: EXCLUDED, UPSTREAM_FAILED or UPSTREAM_CANCELED.
    Skip(RunResultState, String),
}

fn gate(task: &TaskRun, run: &RunRecord) -> Gate {
    let deps = task.depends_on();
    if deps.is_empty() {
        return Gate::Run;
    }
    let mut results = Vec::new();
    for (key, outcome) in &deps {
        let Some(up) = run.task(key) else { continue };
        let result = up.state.result_state.unwrap_or(RunResultState::Failed);
        // a condition's branch: taken only when its outcome matches
        if let Some(wanted) = outcome {
            if up.output.outcome.as_deref() != Some(wanted.as_str())
                || result == RunResultState::Excluded
            {
                return Gate::Skip(
                    RunResultState::Excluded,
                    format!("Excluded: {key}'s outcome is not {wanted}."),
                );
            }
        }
        results.push((key.clone(), result));
    }
    let ok = |r: &RunResultState| r.succeeded() || *r == RunResultState::Excluded;
    let failed = |r: &RunResultState| {
        !ok(r) && *r != RunResultState::Canceled && *r != RunResultState::UpstreamCanceled
    };
    let holds = match task.run_if() {
        "ALL_DONE" => true,
        "NONE_FAILED" => !results.iter().any(|(_, r)| failed(r)),
        "AT_LEAST_ONE_SUCCESS" => results.iter().any(|(_, r)| r.succeeded()),
        "ALL_FAILED" => results.iter().all(|(_, r)| failed(r)),
        "AT_LEAST_ONE_FAILED" => results.iter().any(|(_, r)| failed(r)),
        _ => results.iter().all(|(_, r)| ok(r)),
    };
    if holds {
        return Gate::Run;
    }
    if task.run_if() == "ALL_SUCCESS"
        && results.iter().all(|(_, r)| {
            r.succeeded()
                || *r == RunResultState::Excluded
                || *r == RunResultState::Canceled
                || *r == RunResultState::UpstreamCanceled
        })
        && results.iter().any(|(_, r)| {
            matches!(
                r,
                RunResultState::Canceled | RunResultState::UpstreamCanceled
            )
        })
    {
        return Gate::Skip(
            RunResultState::UpstreamCanceled,
            "Upstream task was cancelled.".into(),
        );
    }
    if results.iter().all(|(_, r)| *r == RunResultState::Excluded) {
        return Gate::Skip(
            RunResultState::Excluded,
            "Excluded: its upstream tasks were excluded.".into(),
        );
    }
    Gate::Skip(
        RunResultState::UpstreamFailed,
        format!("Upstream task failed (run_if {}).", task.run_if()),
    )
}

/// Drives run `run_id` until it ends.
pub async fn run(jobs: Arc<Jobs>, run_id: i64, cancel: CancellationToken) {
    let outcome = drive(&jobs, run_id, &cancel).await;
    if let Err(e) = outcome {
        tracing::error!(run_id, error = %e.message, "a job run failed inside Kiln");
        let _ = jobs.change_run(run_id, |r| {
            for t in r
                .tasks
                .iter_mut()
                .filter(|t| !t.state.life_cycle_state.is_terminal())
            {
                t.state.life_cycle_state =
                    step("A task run", t.state.life_cycle_state, RunEvent::Crash)?;
            }
            if !r.is_done() {
                r.state.life_cycle_state =
                    step("A run", r.state.life_cycle_state, RunEvent::Crash)?;
                r.state.state_message = format!("Kiln could not run this job: {}", e.message);
                r.end_time = now_ms();
            }
            Ok(())
        });
        if let Ok(run) = jobs.run(run_id) {
            crate::webhooks::notify(&jobs, &run, Event::Failure);
        }
    }
    crate::code_task::release_clusters(&jobs, run_id).await;
}

async fn drive(jobs: &Arc<Jobs>, run_id: i64, cancel: &CancellationToken) -> Result<()> {
    let started = now_ms();
    let run = jobs.change_run(run_id, |r| {
        r.state.life_cycle_state = step("A run", r.state.life_cycle_state, RunEvent::Start)?;
        if r.start_time == 0 {
            r.start_time = started;
        }
        for t in r.tasks.iter_mut().filter(|t| !t.depends_on().is_empty()) {
            if t.state.life_cycle_state == RunLifeCycleState::Pending {
                t.state.life_cycle_state =
                    step("A task run", t.state.life_cycle_state, RunEvent::Block)?;
            }
        }
        Ok(())
    })?;
    crate::webhooks::notify(jobs, &run, Event::Start);
    let timeout = run
        .settings
        .get("timeout_seconds")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let job_timeout = CancellationToken::new();
    let mut timer = JoinSet::new();
    if let Some(secs) = duration_warning(&run.settings) {
        let jobs = jobs.clone();
        timer.spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            if let Ok(run) = jobs.run(run_id) {
                if !run.is_done() {
                    crate::webhooks::notify(&jobs, &run, Event::DurationWarning);
                }
            }
        });
    }
    if timeout > 0 {
        let t = job_timeout.clone();
        timer.spawn(async move {
            tokio::time::sleep(Duration::from_secs(timeout)).await;
            t.cancel();
        });
    }
    let mut running: JoinSet<(String, Result<()>)> = JoinSet::new();
    let mut started_keys: BTreeSet<String> = run
        .tasks
        .iter()
        .filter(|t| t.state.life_cycle_state.is_terminal())
        .map(|t| t.task_key.clone())
        .collect();
    let stop = CancellationToken::new();
    loop {
        let run = jobs.run(run_id)?;
        // start every task whose upstream tasks are done
        for task in &run.tasks {
            if stop.is_cancelled() {
                break; // a cancelled or timed-out run starts nothing more
            }
            if started_keys.contains(&task.task_key) {
                continue;
            }
            let deps_done = task.depends_on().iter().all(|(k, _)| {
                run.task(k)
                    .is_none_or(|t| t.state.life_cycle_state.is_terminal())
            });
            if !deps_done {
                continue;
            }
            started_keys.insert(task.task_key.clone());
            match gate(task, &run) {
                Gate::Skip(result, message) => {
                    finish_task(
                        jobs,
                        run_id,
                        &task.task_key,
                        result,
                        message,
                        TaskOutput::default(),
                    )?;
                }
                Gate::Run => {
                    let (jobs, key, token) = (jobs.clone(), task.task_key.clone(), stop.clone());
                    running.spawn(async move {
                        let result = run_task(&jobs, run_id, &key, &token).await;
                        (key, result)
                    });
                }
            }
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next() => {
                if let Some(Ok((key, Err(e)))) = joined {
                    finish_task(jobs, run_id, &key, RunResultState::Failed, e.message, TaskOutput::default())?;
                }
            }
            _ = cancel.cancelled(), if !stop.is_cancelled() => {
                jobs.change_run(run_id, |r| {
                    r.state.life_cycle_state = step("A run", r.state.life_cycle_state, RunEvent::Cancel)?;
                    r.state.user_cancelled_or_timedout = true;
                    Ok(())
                })?;
                stop.cancel();
            }
            _ = job_timeout.cancelled(), if !stop.is_cancelled() => {
                jobs.change_run(run_id, |r| {
                    r.state.state_message = format!("Timed out after {timeout} seconds.");
                    r.state.user_cancelled_or_timedout = true;
                    Ok(())
                })?;
                stop.cancel();
            }
        }
    }
    timer.abort_all();
    let timed_out = job_timeout.is_cancelled();
    let cancelled = cancel.is_cancelled();
    let ended = jobs.change_run(run_id, |r| {
        // tasks never reached (the run stopped first) end cancelled
        for t in r
            .tasks
            .iter_mut()
            .filter(|t| !t.state.life_cycle_state.is_terminal())
        {
            t.state.life_cycle_state = step("A task run", t.state.life_cycle_state, RunEvent::End)?;
            t.state.result_state = Some(RunResultState::UpstreamCanceled);
        }
        let result = if timed_out {
            RunResultState::Timedout
        } else if cancelled {
            RunResultState::Canceled
        } else {
            result_of(r)
        };
        r.state.life_cycle_state = step("A run", r.state.life_cycle_state, RunEvent::End)?;
        r.state.result_state = Some(result);
        if r.state.state_message.is_empty() {
            r.state.state_message = match result {
                RunResultState::Success | RunResultState::SuccessWithFailures => String::new(),
                RunResultState::Canceled => "Run cancelled.".into(),
                _ => "Workload failed, see run output for details".into(),
            };
        }
        r.end_time = now_ms();
        r.execution_duration = r.end_time - r.start_time;
        let (end, life, message) = (
            r.end_time,
            r.state.life_cycle_state,
            r.state.state_message.clone(),
        );
        if let Some(last) = r
            .repair_history
            .last_mut()
            .filter(|e| e["type"] == "REPAIR")
        {
            last["end_time"] = serde_json::json!(end);
            last["state"] = serde_json::json!({
                "life_cycle_state": life.as_str(),
                "result_state": result.as_str(),
                "state_message": message,
            });
        }
        Ok(())
    })?;
    if let Some(event) = Event::of_end(&ended) {
        crate::webhooks::notify(jobs, &ended, event);
    }
    Ok(())
}

/// `health.rules`' RUN_DURATION_SECONDS GREATER_THAN threshold, if any.
fn duration_warning(settings: &serde_json::Map<String, Value>) -> Option<u64> {
    settings
        .get("health")?
        .get("rules")?
        .as_array()?
        .iter()
        .filter(|r| r["metric"] == "RUN_DURATION_SECONDS" && r["op"] == "GREATER_THAN")
        .filter_map(|r| r["value"].as_u64())
        .min()
}

/// A run's result from its leaf tasks (those no other task depends on).
fn result_of(run: &RunRecord) -> RunResultState {
    let upstream: BTreeSet<String> = run
        .tasks
        .iter()
        .flat_map(|t| t.depends_on().into_iter().map(|(k, _)| k))
        .collect();
    let results: BTreeMap<&str, RunResultState> = run
        .tasks
        .iter()
        .map(|t| {
            (
                t.task_key.as_str(),
                t.state.result_state.unwrap_or(RunResultState::Failed),
            )
        })
        .collect();
    if results.is_empty() {
        return RunResultState::Success;
    }
    let good = |r: &RunResultState| r.succeeded() || *r == RunResultState::Excluded;
    let leaves_ok = results
        .iter()
        .filter(|(k, _)| !upstream.contains(**k))
        .all(|(_, r)| good(r));
    let all_ok = results.values().all(good);
    match (leaves_ok, all_ok) {
        (true, true) => RunResultState::Success,
        (true, false) => RunResultState::SuccessWithFailures,
        _ => RunResultState::Failed,
    }
}

fn finish_task(
    jobs: &Jobs,
    run_id: i64,
    key: &str,
    result: RunResultState,
    message: String,
    output: TaskOutput,
) -> Result<()> {
    jobs.change_run(run_id, |r| {
        if let Some(t) = r.task_mut(key) {
            if t.state.life_cycle_state == RunLifeCycleState::Blocked {
                t.state.life_cycle_state =
                    step("A task run", t.state.life_cycle_state, RunEvent::Unblock)?;
            }
            t.state.life_cycle_state = step("A task run", t.state.life_cycle_state, RunEvent::End)?;
            t.state.result_state = Some(result);
            t.state.state_message = message;
            t.output = output;
            if t.end_time == 0 {
                t.end_time = now_ms();
            }
            if t.start_time == 0 {
                t.start_time = t.end_time;
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// One task with its retries and timeout.
async fn run_task(
    jobs: &Arc<Jobs>,
    run_id: i64,
    key: &str,
    stop: &CancellationToken,
) -> Result<()> {
    let mut attempt = 0u32;
    loop {
        let run = jobs.run(run_id)?;
        let Some(task) = run.task(key).cloned() else {
            return Ok(());
        };
        let max_retries = task
            .task
            .get("max_retries")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let retry_on_timeout = task
            .task
            .get("retry_on_timeout")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let interval = task
            .task
            .get("min_retry_interval_millis")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let timeout = task
            .task
            .get("timeout_seconds")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        jobs.change_run(run_id, |r| {
            if let Some(t) = r.task_mut(key) {
                if t.state.life_cycle_state == RunLifeCycleState::Blocked {
                    t.state.life_cycle_state =
                        step("A task run", t.state.life_cycle_state, RunEvent::Unblock)?;
                }
                t.state.life_cycle_state =
                    step("A task run", t.state.life_cycle_state, RunEvent::Start)?;
                t.attempt_number = attempt;
                t.start_time = now_ms();
                t.end_time = 0;
            }
            Ok(())
        })?;
        if attempt == 0 {
            if let Ok(run) = jobs.run(run_id) {
                crate::webhooks::notify_task(jobs, &run, key, Event::Start);
            }
        }
        let attempt_token = stop.child_token();
        let work = crate::attempt::execute(
            jobs,
            run_id,
            key,
            Attempt {
                token: attempt_token.clone(),
            },
        );
        let outcome = if timeout > 0 {
            match tokio::time::timeout(Duration::from_secs(timeout), work).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    attempt_token.cancel();
                    Outcome::timed_out(timeout)
                }
            }
        } else {
            work.await
        };
        let cancelled = stop.is_cancelled();
        let retry = !cancelled
            && match outcome.result {
                RunResultState::Failed => max_retries < 0 || i64::from(attempt) < max_retries,
                RunResultState::Timedout => {
                    retry_on_timeout && (max_retries < 0 || i64::from(attempt) < max_retries)
                }
                _ => false,
            };
        if retry {
            jobs.change_run(run_id, |r| {
                if let Some(t) = r.task_mut(key) {
                    t.state.life_cycle_state =
                        step("A task run", t.state.life_cycle_state, RunEvent::RetryLater)?;
                    t.state.state_message = format!(
                        "Attempt {} failed; retrying: {}",
                        attempt + 1,
                        outcome.message
                    );
                    t.output = outcome.output.clone();
                }
                Ok(())
            })?;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(interval)) => {}
                _ = stop.cancelled() => {}
            }
            if !stop.is_cancelled() {
                attempt += 1;
                continue;
            }
        }
        let result = if cancelled && outcome.result != RunResultState::Success {
            RunResultState::Canceled
        } else {
            outcome.result
        };
        jobs.change_run(run_id, |r| {
            if let Some(t) = r.task_mut(key) {
                if cancelled && t.state.life_cycle_state == RunLifeCycleState::Running {
                    t.state.life_cycle_state =
                        step("A task run", t.state.life_cycle_state, RunEvent::Cancel)?;
                }
                t.state.life_cycle_state =
                    step("A task run", t.state.life_cycle_state, RunEvent::End)?;
                t.state.result_state = Some(result);
                t.state.state_message = outcome.message.clone();
                t.output = outcome.output.clone();
                t.end_time = now_ms();
                t.execution_duration = t.end_time - t.start_time - t.setup_duration;
            }
            Ok(())
        })?;
        let event = match result {
            RunResultState::Success | RunResultState::SuccessWithFailures => Some(Event::Success),
            RunResultState::Failed | RunResultState::Timedout => Some(Event::Failure),
            _ => None,
        };
        if let (Some(event), Ok(run)) = (event, jobs.run(run_id)) {
            crate::webhooks::notify_task(jobs, &run, key, event);
        }
        return Ok(());
    }
}

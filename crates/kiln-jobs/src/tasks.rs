//! Running one task attempt on real engines: notebooks and Python files in an
//! execution context of the task's cluster (as the run's `run_as`, through
//! the same kernels and trust boundary as commands), pipeline updates,
//! runs of other jobs, and conditions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_compute::contexts::Language;
use kiln_core::time::now_ms;
use kiln_core::{Error, Result};
use kiln_pipelines::lifecycle::UpdateState;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::lifecycle::RunResultState;
use crate::model::{RunRecord, TaskOutput};
use crate::refs::Scope;
use crate::runs::RunNow;
use crate::service::Jobs;

/// How long a task waits for its cluster to run.
const CLUSTER_START: Duration = Duration::from_secs(600);
/// How long a cancelled command gets to stop.
const CANCEL_GRACE: Duration = Duration::from_secs(30);
/// The most output kept of a task (`logs`).
const MAX_LOGS: usize = 5 * 1024 * 1024;

pub struct Attempt {
    /// Cancelled when the run is cancelled or the attempt times out.
    pub token: CancellationToken,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: RunResultState,
    pub message: String,
    pub output: TaskOutput,
}

impl Outcome {
    pub(crate) fn success(output: TaskOutput) -> Self {
        Self {
            result: RunResultState::Success,
            message: String::new(),
            output,
        }
    }

    pub(crate) fn failed(message: impl Into<String>, output: TaskOutput) -> Self {
        let message = message.into();
        let mut output = output;
        if output.error.is_none() {
            output.error = Some(message.clone());
        }
        Self {
            result: RunResultState::Failed,
            message,
            output,
        }
    }

    fn cancelled() -> Self {
        Self {
            result: RunResultState::Canceled,
            message: "Task cancelled.".into(),
            output: TaskOutput::default(),
        }
    }

    pub fn timed_out(seconds: u64) -> Self {
        let message = format!("Task timed out after {seconds} seconds.");
        Self {
            result: RunResultState::Timedout,
            message: message.clone(),
            output: TaskOutput {
                error: Some(message),
                ..Default::default()
            },
        }
    }
}

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
        "notebook_task" | "spark_python_task" => {
            code_task(jobs, run, key, kind, resolved, &spec, attempt).await
        }
        "pipeline_task" => pipeline_task(jobs, run, &spec, attempt).await,
        "run_job_task" => run_job_task(jobs, run, &spec, attempt).await,
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

// ---- compute ----------------------------------------------------------------

/// The cluster a code task runs on, running: its existing cluster (started
/// when terminated), or the run's job cluster for it (created once per run).
async fn cluster_for(
    jobs: &Arc<Jobs>,
    run: &RunRecord,
    key: &str,
    task: &Map<String, Value>,
    token: &CancellationToken,
) -> Result<String> {
    let cluster_id = if let Some(id) = task.get("existing_cluster_id").and_then(Value::as_str) {
        let c = jobs.clusters.get(id)?;
        if matches!(c.state.as_str(), "TERMINATED" | "ERROR") {
            jobs.clusters.start(&run.run_as, id).await?;
        }
        id.to_string()
    } else {
        let (slot, spec) = if let Some(k) = task.get("job_cluster_key").and_then(Value::as_str) {
            let spec = run
                .settings
                .get("job_clusters")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["job_cluster_key"] == json!(k)))
                .map(|c| c["new_cluster"].clone())
                .unwrap_or(Value::Null);
            (k.to_string(), spec)
        } else if let Some(spec) = task.get("new_cluster").filter(|v| v.is_object()) {
            (format!("__task_{key}"), spec.clone())
        } else {
            // no compute named: the run's own cluster (Databricks' serverless)
            ("__serverless".to_string(), json!({}))
        };
        job_cluster(jobs, run, &slot, &spec).await?
    };
    tokio::select! {
        port = kiln_compute::cluster_wait::wait_running(&jobs.clusters, &cluster_id, CLUSTER_START) => { port?; }
        _ = token.cancelled() => return Err(Error::invalid_state("cancelled")),
    }
    Ok(cluster_id)
}

async fn job_cluster(
    jobs: &Arc<Jobs>,
    run: &RunRecord,
    slot: &str,
    spec: &Value,
) -> Result<String> {
    let _guard = jobs.cluster_lock.lock().await;
    if let Some(id) = jobs.run(run.run_id)?.job_clusters.get(slot) {
        return Ok(id.clone());
    }
    let name = match run.job_id {
        Some(job) => format!(
            "job-{job}-run-{}-{}",
            run.run_id,
            slot.trim_start_matches("__")
        ),
        None => format!("run-{}-{}", run.run_id, slot.trim_start_matches("__")),
    };
    let config = kiln_compute::cluster_spec::config_from_json(spec, &name, "JOB", 0)?;
    let record = jobs.clusters.create(&run.run_as, config).await?;
    let id = record.cluster_id.clone();
    jobs.change_run(run.run_id, |r| {
        r.job_clusters.insert(slot.to_string(), id.clone());
        Ok(())
    })?;
    Ok(id)
}

/// Terminates the job clusters a run created (when it ends).
pub async fn release_clusters(jobs: &Arc<Jobs>, run_id: i64) {
    let Ok(run) = jobs.run(run_id) else { return };
    for id in run.job_clusters.values() {
        if let Err(e) = jobs.clusters.terminate(&run.run_as, id).await {
            tracing::warn!(run_id, cluster_id = %id, error = %e.message, "terminate a job cluster");
        }
    }
}

// ---- notebooks and Python files ---------------------------------------------

fn strings(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The values earlier tasks set, for `dbutils.jobs.taskValues.get`.
fn upstream_values(run: &RunRecord) -> Value {
    Value::Object(
        run.tasks
            .iter()
            .filter(|t| !t.output.task_values.is_empty())
            .map(|t| {
                (
                    t.task_key.clone(),
                    Value::Object(t.output.task_values.clone()),
                )
            })
            .collect(),
    )
}

/// A Python string (or list) literal: JSON's is one.
fn py(value: &Value) -> String {
    value.to_string()
}

async fn code_task(
    jobs: &Arc<Jobs>,
    run: &RunRecord,
    key: &str,
    kind: &str,
    task: &Map<String, Value>,
    spec: &Value,
    attempt: &Attempt,
) -> Result<Outcome> {
    let (code, options) = match kind {
        "notebook_task" => {
            let path = spec["notebook_path"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut widgets = strings(spec.get("base_parameters"));
            widgets.extend(strings(run.overriding_parameters.get("notebook_params")));
            widgets.extend(run.job_parameters.clone());
            let options = json!({"notebookPath": path, "widgets": widgets, "taskValues": upstream_values(run)});
            (format!("%run {path}"), options)
        }
        _ => {
            let file = spec["python_file"].as_str().unwrap_or_default().to_string();
            let mut argv = vec![Value::String(file.clone())];
            let params = run
                .overriding_parameters
                .get("python_params")
                .or_else(|| spec.get("parameters"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            argv.extend(params.into_iter().map(|p| match p {
                Value::String(s) => Value::String(s),
                other => Value::String(other.to_string()),
            }));
            let code = python_file_code(jobs, &file, &Value::Array(argv))?;
            let options =
                json!({"widgets": run.job_parameters, "taskValues": upstream_values(run)});
            (code, options)
        }
    };
    let setup_started = now_ms();
    let cluster_id = cluster_for(jobs, run, key, task, &attempt.token).await?;
    let caller = jobs.identity.acting_as(&run.run_as)?;
    let credential = jobs.identity.issue_context_credential(&caller)?;
    let context = match jobs.contexts.create_context(
        &caller.user_name,
        credential.clone(),
        &cluster_id,
        Language::Python,
    ) {
        Ok(c) => c,
        Err(e) => {
            jobs.identity.revoke_context_credential(&credential);
            return Err(e);
        }
    };
    jobs.identity
        .bind_context_credential(&credential, &context.id);
    let context_id = context.id.clone();
    jobs.change_run(run.run_id, |r| {
        if let Some(t) = r.task_mut(key) {
            t.cluster_id = Some(cluster_id.clone());
            t.spark_context_id = Some(context_id.clone());
            t.setup_duration = now_ms() - setup_started;
        }
        Ok(())
    })?;
    let outcome = run_command(
        jobs,
        &cluster_id,
        &context_id,
        code,
        options,
        &attempt.token,
    )
    .await;
    let _ = jobs.contexts.destroy_context(&cluster_id, &context_id);
    jobs.identity.revoke_context_credential(&credential);
    outcome
}

/// The command that runs a Python file as `__main__` with `argv`: a
/// workspace file's source is read by Kiln; a DBFS or volume file is read by
/// the kernel itself (as the run's identity, inside its sandbox).
fn python_file_code(jobs: &Jobs, file: &str, argv: &Value) -> Result<String> {
    let dbfs = file.strip_prefix("/dbfs/").map(|p| format!("dbfs:/{p}"));
    let in_dbfs = file.starts_with("dbfs:") || file.starts_with("/Volumes/") || dbfs.is_some();
    let source = if in_dbfs {
        Value::Null
    } else {
        let path = file.strip_prefix("/Workspace").unwrap_or(file);
        let object = jobs
            .workspace
            .get(path)
            .map_err(|_| Error::invalid(format!("The Python file {file} does not exist")))?;
        Value::String(String::from_utf8_lossy(&object.bytes()).to_string())
    };
    let location = Value::String(dbfs.unwrap_or_else(|| file.to_string()));
    Ok(format!(
        "import sys as _kiln_sys\n\
         _kiln_sys.argv = {argv}\n\
         _kiln_source = {source}\n\
         if _kiln_source is None:\n\
         \x20   with open(dbutils.fs._local({location}), encoding='utf-8') as _kiln_f:\n\
         \x20       _kiln_source = _kiln_f.read()\n\
         import linecache as _kiln_linecache\n\
         _kiln_linecache.cache[{file}] = (len(_kiln_source), None, _kiln_source.splitlines(True), {file})\n\
         _kiln_globals = {{k: v for k, v in globals().items() if k in ('spark', 'dbutils', 'display', 'displayHTML', 'sc')}}\n\
         _kiln_globals.update(__name__='__main__', __file__={file})\n\
         exec(compile(_kiln_source, {file}, 'exec'), _kiln_globals)\n",
        argv = py(argv),
        source = if source.is_null() { "None".to_string() } else { py(&source) },
        location = py(&location),
        file = py(&Value::String(file.to_string())),
    ))
}

async fn run_command(
    jobs: &Arc<Jobs>,
    cluster_id: &str,
    context_id: &str,
    code: String,
    options: Value,
    token: &CancellationToken,
) -> Result<Outcome> {
    let command = jobs.contexts.execute(
        cluster_id,
        context_id,
        Some(Language::Python),
        code,
        options,
    )?;
    let view = tokio::select! {
        view = jobs.contexts.wait_command(cluster_id, context_id, &command) => view?,
        _ = token.cancelled() => {
            let _ = jobs.contexts.cancel(cluster_id, context_id, &command);
            let _ = tokio::time::timeout(CANCEL_GRACE, jobs.contexts.wait_command(cluster_id, context_id, &command)).await;
            return Ok(Outcome::cancelled());
        }
    };
    Ok(outcome_of(
        view.state.as_str(),
        view.results.unwrap_or(Value::Null),
    ))
}

/// A task's outcome from its command's results.
fn outcome_of(state: &str, results: Value) -> Outcome {
    let task_values = results
        .get("taskValues")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut output = TaskOutput {
        task_values,
        ..Default::default()
    };
    if let Some(v) = results.get("notebookExitValue") {
        output.notebook_result = Some(
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string()),
        );
    } else if results["resultType"] == "text" {
        let mut logs = results["data"].as_str().unwrap_or_default().to_string();
        if logs.len() > MAX_LOGS {
            let mut cut = MAX_LOGS;
            while !logs.is_char_boundary(cut) {
                cut -= 1;
            }
            logs.truncate(cut);
            output.logs_truncated = true;
        }
        output.logs = Some(logs);
    }
    match state {
        "Cancelled" => Outcome::cancelled(),
        "Finished" if results["resultType"] != "error" => Outcome::success(output),
        _ => {
            let trace = results["cause"]
                .as_str()
                .or_else(|| results["summary"].as_str())
                .unwrap_or("The task failed")
                .to_string();
            let last = trace
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("The task failed")
                .trim()
                .to_string();
            output.error = Some(last.clone());
            output.error_trace = Some(trace);
            Outcome::failed(last, output)
        }
    }
}

// ---- pipelines and other jobs -----------------------------------------------

async fn pipeline_task(
    jobs: &Arc<Jobs>,
    run: &RunRecord,
    spec: &Value,
    attempt: &Attempt,
) -> Result<Outcome> {
    let pipeline_id = spec["pipeline_id"].as_str().unwrap_or_default().to_string();
    let mut changes = jobs.pipelines.subscribe();
    let update = jobs
        .pipelines
        .start_update(
            &run.run_as,
            &pipeline_id,
            kiln_pipelines::StartRequest {
                cause: "JOB_TASK".into(),
                full_refresh: spec["full_refresh"].as_bool().unwrap_or(false),
                ..Default::default()
            },
        )
        .await?;
    loop {
        let u = jobs.pipelines.update(&pipeline_id, &update.update_id)?;
        match u.state {
            UpdateState::Completed => return Ok(Outcome::success(TaskOutput::default())),
            UpdateState::Canceled => return Ok(Outcome::cancelled()),
            UpdateState::Failed => {
                return Ok(Outcome::failed(
                    format!(
                        "Pipeline update {} failed; see the pipeline's event log.",
                        u.update_id
                    ),
                    TaskOutput::default(),
                ))
            }
            _ => {}
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() {
                return Err(Error::internal("wait for a pipeline update", "the pipelines service stopped"));
            },
            _ = attempt.token.cancelled() => {
                let _ = jobs.pipelines.stop(&pipeline_id);
                return Ok(Outcome::cancelled());
            }
        }
    }
}

async fn run_job_task(
    jobs: &Arc<Jobs>,
    run: &RunRecord,
    spec: &Value,
    attempt: &Attempt,
) -> Result<Outcome> {
    let job_id = spec["job_id"]
        .as_i64()
        .or_else(|| spec["job_id"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_default();
    let child = jobs
        .run_now(
            &run.run_as,
            job_id,
            RunNow {
                job_parameters: strings(spec.get("job_parameters")),
                trigger: "RUN_JOB_TASK".into(),
                parent_run_id: Some(run.run_id),
                ..Default::default()
            },
        )
        .await?;
    let ended = tokio::select! {
        ended = jobs.wait_run(child.run_id) => ended?,
        _ = attempt.token.cancelled() => {
            let _ = jobs.cancel(child.run_id);
            return Ok(Outcome::cancelled());
        }
    };
    Ok(match ended.state.result_state {
        Some(r) if r.succeeded() => Outcome::success(TaskOutput::default()),
        Some(RunResultState::Canceled) => Outcome::cancelled(),
        other => Outcome::failed(
            format!(
                "Run {} of job {job_id} ended {}",
                child.run_id,
                other.map(|r| r.as_str()).unwrap_or("without a result")
            ),
            TaskOutput::default(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn command_results_become_task_outputs() {
        let ok = outcome_of(
            "Finished",
            json!({"resultType": "text", "data": "", "notebookExitValue": "done", "taskValues": {"n": 3}}),
        );
        assert_eq!(ok.result, RunResultState::Success);
        assert_eq!(ok.output.notebook_result.as_deref(), Some("done"));
        assert_eq!(ok.output.task_values["n"], 3);
        let failed = outcome_of(
            "Error",
            json!({"resultType": "error", "cause": "Traceback (most recent call last):\n  File x\nValueError: bad\n"}),
        );
        assert_eq!(failed.result, RunResultState::Failed);
        assert_eq!(failed.output.error.as_deref(), Some("ValueError: bad"));
        assert!(failed
            .output
            .error_trace
            .as_deref()
            .is_some_and(|t| t.starts_with("Traceback")));
        assert_eq!(
            outcome_of("Cancelled", json!({})).result,
            RunResultState::Canceled
        );
    }
}

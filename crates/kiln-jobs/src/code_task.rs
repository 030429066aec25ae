//! Notebook and Python file tasks: a command in an execution context of the
//! task's cluster — its existing cluster, or a JOB cluster made for the run —
//! as the run's `run_as`, through the same kernels and trust boundary as
//! commands.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_compute::contexts::Language;
use kiln_core::time::now_ms;
use kiln_core::{Error, Result};
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::model::RunRecord;
use crate::outcome::{outcome_of, Attempt, Outcome};
use crate::service::Jobs;

/// How long a task waits for its cluster to run.
const CLUSTER_START: Duration = Duration::from_secs(600);
/// How long a task waits for its libraries to install.
const LIBRARIES_INSTALL: Duration = Duration::from_secs(900);
/// How long a cancelled command gets to stop.
const CANCEL_GRACE: Duration = Duration::from_secs(30);

// ---- compute ----------------------------------------------------------------

/// The cluster a code task runs on, running: its existing cluster (started
/// when terminated), its environment's pooled engine, or the run's job
/// cluster for it (created once per run); and the libraries its environment
/// needs there.
async fn cluster_for(
    jobs: &Arc<Jobs>,
    run: &RunRecord,
    key: &str,
    task: &Map<String, Value>,
    token: &CancellationToken,
) -> Result<(String, Vec<Value>)> {
    let mut libraries = Vec::new();
    let cluster_id = if let Some(id) = task.get("existing_cluster_id").and_then(Value::as_str) {
        let c = jobs.clusters.get(id)?;
        if matches!(c.state.as_str(), "TERMINATED" | "ERROR") {
            jobs.clusters.start(&run.run_as, id).await?;
        }
        id.to_string()
    } else if let Some(env) = task.get("environment_key").and_then(Value::as_str) {
        let (id, needed) = environment_engine(jobs, run, env).await?;
        libraries = needed;
        id
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
    Ok((cluster_id, libraries))
}

/// The engine for `key` of `run` (created or started as needed) and the
/// libraries the task must have installed on it.
async fn environment_engine(
    jobs: &Arc<Jobs>,
    run: &RunRecord,
    key: &str,
) -> Result<(String, Vec<Value>)> {
    let spec = run
        .settings
        .get("environments")
        .and_then(Value::as_array)
        .and_then(|envs| envs.iter().find(|e| e["environment_key"] == json!(key)))
        .map(|e| e.get("spec").cloned().unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    let libraries = crate::environments::dependencies(&spec)?;
    let fingerprint = kiln_identity::sha256_hex(&format!("{}\n{}", run.run_as, spec));
    let hash = &fingerprint[..16];
    let _guard = jobs.cluster_lock.lock().await;
    let pooled = jobs.clusters.list()?.into_iter().find(|c| {
        c.creator == run.run_as
            && c.config
                .custom_tags
                .get(crate::environments::TAG)
                .map(String::as_str)
                == Some(hash)
    });
    let cluster_id = match pooled {
        Some(c) => {
            if matches!(c.state.as_str(), "TERMINATED" | "ERROR") {
                jobs.clusters.start(&run.run_as, &c.cluster_id).await?;
            }
            c.cluster_id
        }
        None => {
            let name = format!("serverless-env-{hash}");
            let mut config = kiln_compute::cluster_spec::config_from_json(
                &json!({}),
                &name,
                "JOB",
                crate::environments::IDLE_MINUTES,
            )?;
            config
                .custom_tags
                .insert(crate::environments::TAG.into(), hash.into());
            jobs.clusters.create(&run.run_as, config).await?.cluster_id
        }
    };
    Ok((cluster_id, libraries))
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
    crate::contexts_pool::end_run(jobs, run_id);
    let Ok(run) = jobs.run(run_id) else { return };
    for id in run.job_clusters.values() {
        if let Err(e) = jobs.clusters.terminate(&run.run_as, id).await {
            tracing::warn!(run_id, cluster_id = %id, error = %e.message, "terminate a job cluster");
        }
    }
}

// ---- notebooks and Python files ---------------------------------------------

pub(crate) fn strings(v: Option<&Value>) -> BTreeMap<String, String> {
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

pub(crate) async fn code_task(
    jobs: &Arc<Jobs>,
    run: &RunRecord,
    key: &str,
    kind: &str,
    task: &Map<String, Value>,
    spec: &Value,
    attempt: &Attempt,
) -> Result<Outcome> {
    let (code, options) = match kind {
        "python_wheel_task" => (
            wheel_code(run, spec),
            json!({"widgets": run.job_parameters, "taskValues": upstream_values(run)}),
        ),
        "dbt_task" => (
            crate::dbt_task::code(jobs, run, spec)?,
            json!({"taskValues": upstream_values(run)}),
        ),
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
            argv.extend(positional(run, spec));
            let code = python_file_code(jobs, &file, &Value::Array(argv))?;
            let options =
                json!({"widgets": run.job_parameters, "taskValues": upstream_values(run)});
            (code, options)
        }
    };
    let setup_started = now_ms();
    let (cluster_id, mut libraries) = cluster_for(jobs, run, key, task, &attempt.token).await?;
    if let Some(more) = task.get("libraries").and_then(Value::as_array) {
        libraries.extend(more.iter().cloned());
    }
    if kind == "dbt_task" {
        crate::dbt_task::ensure_dbt(&mut libraries);
    }
    if !libraries.is_empty() {
        tokio::select! {
            installed = jobs.libraries.install_and_wait(&cluster_id, &libraries, LIBRARIES_INSTALL) => installed?,
            _ = attempt.token.cancelled() => return Err(Error::invalid_state("cancelled")),
        }
    }
    let held = crate::contexts_pool::acquire(jobs, run.run_id, &run.run_as, &cluster_id)?;
    let context_id = held.context_id.clone();
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
    // a context whose command was interrupted is not handed to the next task
    let reusable = !attempt.token.is_cancelled()
        && outcome
            .as_ref()
            .is_ok_and(|o| o.result != crate::lifecycle::RunResultState::Canceled);
    crate::contexts_pool::release(jobs, run.run_id, &cluster_id, held, reusable).await;
    outcome
}

/// A Python task's positional arguments as text: run-now's `python_params`,
/// else the task's `parameters`.
fn positional(run: &RunRecord, spec: &Value) -> Vec<Value> {
    run.overriding_parameters
        .get("python_params")
        .or_else(|| spec.get("parameters"))
        .and_then(Value::as_array)
        .map(|params| {
            params
                .iter()
                .map(|p| {
                    Value::String(
                        p.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| p.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The command that calls a wheel's entry point: the package's own entry
/// point of that name (its metadata), else a console script of that name,
/// else the package's function of that name; `parameters` (or
/// `named_parameters` as `--key=value`) as `sys.argv`.
fn wheel_code(run: &RunRecord, spec: &Value) -> String {
    let package = spec["package_name"].as_str().unwrap_or_default();
    let entry = spec["entry_point"].as_str().unwrap_or_default();
    let mut argv = vec![Value::String(package.to_string())];
    if let Some(named) = run
        .overriding_parameters
        .get("python_named_params")
        .or_else(|| spec.get("named_parameters"))
        .and_then(Value::as_object)
    {
        argv.extend(named.iter().map(|(k, v)| {
            Value::String(format!(
                "--{k}={}",
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            ))
        }));
    } else {
        argv.extend(positional(run, spec));
    }
    let (pkg, ep) = (py(&json!(package)), py(&json!(entry)));
    format!(
        "import sys as _kiln_sys, importlib as _kiln_importlib\n\
         from importlib import metadata as _kiln_metadata\n\
         _kiln_importlib.invalidate_caches()\n\
         _kiln_sys.argv = {argv}\n\
         try:\n\
         \x20   _kiln_eps = [e for e in _kiln_metadata.distribution({pkg}).entry_points if e.name == {ep}]\n\
         except _kiln_metadata.PackageNotFoundError:\n\
         \x20   _kiln_eps = []\n\
         _kiln_eps = _kiln_eps or [e for e in _kiln_metadata.entry_points(group='console_scripts') if e.name == {ep}]\n\
         _kiln_fn = _kiln_eps[0].load() if _kiln_eps else getattr(_kiln_importlib.import_module({pkg}.replace('-', '_')), {ep})\n\
         _kiln_fn()\n",
        argv = py(&Value::Array(argv)),
    )
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

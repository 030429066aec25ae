//! Runs of jobs: `run-now` and one-time runs (`runs/submit`), queueing and
//! skipping at `max_concurrent_runs`, the task that drives each run, cancel
//! and delete.

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_core::lifecycle::Lifecycle;
use kiln_core::time::now_ms;
use kiln_core::{Error, Result};
use serde_json::{json, Map, Value};

use crate::lifecycle::{RunEvent, RunLifeCycleState, RunLifecycle, RunResultState};
pub use crate::model::RunNow;
use crate::model::*;
use crate::service::{poisoned, Jobs};
use crate::settings;
use kiln_store::Write;

impl Jobs {
    /// `run-now`: a run of the job with its settings as they are now.
    pub async fn run_now(
        self: &Arc<Self>,
        actor: &str,
        job_id: i64,
        req: RunNow,
    ) -> Result<RunRecord> {
        let job = self.get(job_id)?;
        if let Some(token) = &req.idempotency_token {
            if let Some(run) = self.find_run(false, |r| {
                r.job_id == Some(job_id) && r.idempotency_token.as_deref() == Some(token)
            }) {
                return Ok(run);
            }
        }
        let mut parameters: BTreeMap<String, String> = job
            .settings
            .get("parameters")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| {
                        let name = p["name"].as_str()?;
                        let default = match &p["default"] {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        Some((name.to_string(), default))
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (k, v) in &req.job_parameters {
            if !parameters.contains_key(k) && !req.job_parameters.is_empty() {
                return Err(Error::invalid(format!(
                    "Invalid value for field job_parameters: the job has no parameter {k}"
                )));
            }
            parameters.insert(k.clone(), v.clone());
        }
        let mut settings = job.settings.clone();
        if !req.only.is_empty() {
            let tasks: Vec<Value> = settings
                .get("tasks")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for key in &req.only {
                if !tasks.iter().any(|t| t["task_key"] == json!(key)) {
                    return Err(Error::invalid(format!(
                        "Invalid value for field only: the job has no task {key}"
                    )));
                }
            }
            let kept: Vec<Value> = tasks
                .into_iter()
                .filter(|t| req.only.iter().any(|k| t["task_key"] == json!(k)))
                .map(|mut t| {
                    // dependencies outside the subset are dropped
                    if let Some(deps) = t.get_mut("depends_on").and_then(Value::as_array_mut) {
                        deps.retain(|d| req.only.iter().any(|k| d["task_key"] == json!(k)));
                    }
                    t
                })
                .collect();
            settings.insert("tasks".into(), Value::Array(kept));
        }
        let mut overriding = Map::new();
        if !req.job_parameters.is_empty() {
            overriding.insert("job_parameters".into(), json!(req.job_parameters));
        }
        if !req.notebook_params.is_empty() {
            overriding.insert("notebook_params".into(), json!(req.notebook_params));
        }
        if !req.python_params.is_empty() {
            overriding.insert("python_params".into(), json!(req.python_params));
        }
        if !req.python_named_params.is_empty() {
            overriding.insert("python_named_params".into(), json!(req.python_named_params));
        }
        if !req.dbt_commands.is_empty() {
            overriding.insert("dbt_commands".into(), json!(req.dbt_commands));
        }
        if !req.sql_params.is_empty() {
            overriding.insert("sql_params".into(), json!(req.sql_params));
        }
        let number = self.count_runs(|r| r.job_id == Some(job_id)) as i64 + 1;
        let run = self.new_run(NewRun {
            job_id: Some(job_id),
            number_in_job: number,
            run_name: job.name().to_string(),
            actor: actor.into(),
            run_as: job.run_as.clone(),
            run_type: if req.parent_run_id.is_some() {
                "WORKFLOW_RUN"
            } else {
                "JOB_RUN"
            }
            .into(),
            trigger: if req.trigger.is_empty() {
                "ONE_TIME".into()
            } else {
                req.trigger.clone()
            },
            settings,
            parameters,
            overriding,
            idempotency_token: req.idempotency_token.clone(),
            parent_run_id: req.parent_run_id,
        })?;
        self.launch(run)
    }

    /// `runs/submit`: a one-time run of `settings` (already in the tasks shape).
    pub async fn submit(
        self: &Arc<Self>,
        actor: &str,
        settings: Value,
        idempotency_token: Option<String>,
    ) -> Result<RunRecord> {
        if let Some(token) = &idempotency_token {
            if let Some(run) = self.find_run(false, |r| {
                r.job_id.is_none() && r.idempotency_token.as_deref() == Some(token)
            }) {
                return Ok(run);
            }
        }
        let mut settings = settings::normalize(settings, self.as_ref())?;
        let run_name = settings
            .remove("run_name")
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "Untitled".into());
        settings.insert("max_concurrent_runs".into(), json!(1000));
        let run = self.new_run(NewRun {
            job_id: None,
            number_in_job: 0,
            run_name,
            actor: actor.into(),
            run_as: actor.into(),
            run_type: "SUBMIT_RUN".into(),
            trigger: "ONE_TIME".into(),
            settings,
            parameters: BTreeMap::new(),
            overriding: Map::new(),
            idempotency_token,
            parent_run_id: None,
        })?;
        self.launch(run)
    }

    fn new_run(&self, n: NewRun) -> Result<RunRecord> {
        let tasks = n
            .settings
            .get("tasks")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| match t {
                Value::Object(task) => Some(task),
                _ => None,
            })
            .map(|task| {
                let key = task["task_key"].as_str().unwrap_or_default().to_string();
                TaskRun::pending(self.new_id(), &key, task)
            })
            .collect();
        Ok(RunRecord {
            run_id: self.new_id(),
            job_id: n.job_id,
            number_in_job: n.number_in_job,
            run_name: n.run_name,
            creator_user_name: n.actor,
            run_as: n.run_as,
            state: RunState::new(RunLifeCycleState::Pending),
            run_type: n.run_type,
            trigger: n.trigger,
            start_time: now_ms(),
            end_time: 0,
            setup_duration: 0,
            execution_duration: 0,
            job_parameters: n.parameters,
            overriding_parameters: n.overriding,
            settings: n.settings,
            tasks,
            job_clusters: BTreeMap::new(),
            idempotency_token: n.idempotency_token,
            parent_run_id: n.parent_run_id,
            repair_history: Vec::new(),
        })
    }

    /// Saves a new run and starts driving it — or queues it, or skips it,
    /// when the job already runs `max_concurrent_runs` runs.
    fn launch(self: &Arc<Self>, mut run: RunRecord) -> Result<RunRecord> {
        let max = run
            .settings
            .get("max_concurrent_runs")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let live = match run.job_id {
            Some(job_id) => self.count_runs(|r| r.job_id == Some(job_id) && !r.is_done()) as i64,
            None => 0,
        };
        if live >= max {
            let queue = run
                .settings
                .get("queue")
                .and_then(|q| q.get("enabled"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if queue && max > 0 {
                run.state = RunState::new(RunLifeCycleState::Queued);
                run.state.state_message =
                    "Queued: the job is at its maximum of concurrent runs.".into();
                self.save_run(&run)?;
                return Ok(run);
            }
            run.state.life_cycle_state =
                RunLifecycle::transition("A run", run.state.life_cycle_state, RunEvent::Skip)?;
            run.state.result_state = Some(RunResultState::MaximumConcurrentRunsReached);
            run.state.state_message =
                format!("Skipped: the job already has the maximum of {max} concurrent run(s).");
            run.end_time = run.start_time;
            self.save_run(&run)?;
            return Ok(run);
        }
        self.save_run(&run)?;
        self.drive(run.run_id)?;
        Ok(run)
    }

    /// Starts the task that drives a saved run.
    pub(crate) fn drive(self: &Arc<Self>, run_id: i64) -> Result<()> {
        let token = self.shutdown.child_token();
        self.active
            .lock()
            .map_err(poisoned)?
            .insert(run_id, token.clone());
        let me = self.clone();
        self.tasks.spawn(async move {
            crate::runner::run(me.clone(), run_id, token).await;
            if let Ok(mut active) = me.active.lock() {
                active.remove(&run_id);
            }
            me.dequeue(run_id);
        });
        Ok(())
    }

    /// A run ended: the oldest queued run of its job may start.
    fn dequeue(self: &Arc<Self>, ended: i64) {
        let Ok(run) = self.run(ended) else { return };
        let Some(job_id) = run.job_id else { return };
        let next = self.find_run(true, |r| {
            r.job_id == Some(job_id) && r.state.life_cycle_state == RunLifeCycleState::Queued
        });
        if let Some(next) = next {
            let started = self.change_run(next.run_id, |r| {
                r.state.life_cycle_state =
                    RunLifecycle::transition("A run", r.state.life_cycle_state, RunEvent::Dequeue)?;
                r.state.state_message.clear();
                r.start_time = now_ms();
                Ok(())
            });
            if started.is_ok() {
                let _ = self.drive(next.run_id);
            }
        }
    }

    /// `runs/cancel`: a queued run ends at once; a running one is interrupted.
    pub fn cancel(&self, run_id: i64) -> Result<()> {
        let run = self.run(run_id)?;
        if run.is_done() {
            return Ok(());
        }
        if run.state.life_cycle_state == RunLifeCycleState::Queued {
            self.change_run(run_id, |r| {
                r.state.life_cycle_state =
                    RunLifecycle::transition("A run", r.state.life_cycle_state, RunEvent::End)?;
                r.state.result_state = Some(RunResultState::Canceled);
                r.state.user_cancelled_or_timedout = true;
                r.state.state_message = "Run cancelled.".into();
                r.end_time = now_ms();
                Ok(())
            })?;
            return Ok(());
        }
        if let Some(token) = self.active.lock().map_err(poisoned)?.get(&run_id) {
            token.cancel();
        }
        Ok(())
    }

    pub fn cancel_all(&self, job_id: i64) -> Result<()> {
        for run in self
            .runs()
            .into_iter()
            .filter(|r| r.job_id == Some(job_id) && !r.is_done())
        {
            self.cancel(run.run_id)?;
        }
        Ok(())
    }

    /// `runs/delete`: only a run that has ended.
    pub fn delete_run(&self, run_id: i64) -> Result<()> {
        let run = self.run(run_id)?;
        if !run.is_done() {
            return Err(Error::invalid_state(format!(
                "Run {run_id} is still active; cancel it first."
            )));
        }
        self.store.commit(vec![Write::DeleteObject {
            kind: KIND_RUN,
            key: run_id.to_string(),
        }])?;
        self.runs.write().map_err(poisoned)?.remove(&run_id);
        Ok(())
    }

    /// Ends every queued run of a job (`runs/cancel-all` with `all_queued_runs`).
    pub fn cancel_queued(&self, job_id: i64) -> Result<()> {
        for run in self.runs().into_iter().filter(|r| {
            r.job_id == Some(job_id) && r.state.life_cycle_state == RunLifeCycleState::Queued
        }) {
            self.cancel(run.run_id)?;
        }
        Ok(())
    }
}

struct NewRun {
    job_id: Option<i64>,
    number_in_job: i64,
    run_name: String,
    actor: String,
    run_as: String,
    run_type: String,
    trigger: String,
    settings: Map<String, Value>,
    parameters: BTreeMap<String, String>,
    overriding: Map<String, Value>,
    idempotency_token: Option<String>,
    parent_run_id: Option<i64>,
}

//! `runs/repair`: an ended run runs again, only for the tasks asked for (and
//! those that depend on them, when asked), with new task run ids; the other
//! tasks keep their results and count as done. Each repair is recorded in
//! the run's `repair_history` (after an `ORIGINAL` entry for the first run).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kiln_core::lifecycle::Lifecycle;
use kiln_core::time::now_ms;
use kiln_core::{Error, Result};
use serde_json::{json, Value};

use crate::lifecycle::{RunEvent, RunLifecycle};
use crate::model::{RunRecord, RunState, TaskOutput};
use crate::service::Jobs;

/// What a repair asks for.
#[derive(Debug, Clone, Default)]
pub struct Repair {
    pub rerun_tasks: Vec<String>,
    pub rerun_all_failed_tasks: bool,
    pub rerun_dependent_tasks: bool,
    pub latest_repair_id: Option<i64>,
    pub job_parameters: BTreeMap<String, String>,
    pub notebook_params: BTreeMap<String, String>,
    pub python_params: Vec<String>,
}

fn history_entry(kind: &str, id: Option<i64>, run: &RunRecord, task_run_ids: Vec<i64>) -> Value {
    let mut entry = json!({
        "type": kind,
        "start_time": run.start_time,
        "end_time": run.end_time,
        "state": {
            "life_cycle_state": run.state.life_cycle_state.as_str(),
            "result_state": run.state.result_state.map(|r| r.as_str()),
            "state_message": run.state.state_message,
        },
        "task_run_ids": task_run_ids,
    });
    if let Some(id) = id {
        entry["id"] = json!(id);
    }
    entry
}

/// The tasks to run again: those named, the failed ones when asked, and
/// (when asked) every task downstream of them.
fn selection(run: &RunRecord, req: &Repair) -> Result<BTreeSet<String>> {
    let mut keys: BTreeSet<String> = BTreeSet::new();
    for key in &req.rerun_tasks {
        if run.task(key).is_none() {
            return Err(Error::invalid(format!(
                "Invalid value for field rerun_tasks: the run has no task {key}"
            )));
        }
        keys.insert(key.clone());
    }
    if req.rerun_all_failed_tasks {
        keys.extend(
            run.tasks
                .iter()
                .filter(|t| {
                    !t.state.result_state.is_some_and(|r| {
                        r.succeeded() || r == crate::lifecycle::RunResultState::Excluded
                    })
                })
                .map(|t| t.task_key.clone()),
        );
    }
    if req.rerun_dependent_tasks {
        loop {
            let more: Vec<String> = run
                .tasks
                .iter()
                .filter(|t| !keys.contains(&t.task_key))
                .filter(|t| t.depends_on().iter().any(|(d, _)| keys.contains(d)))
                .map(|t| t.task_key.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            keys.extend(more);
        }
    }
    if keys.is_empty() {
        return Err(Error::invalid(
            "Invalid value for field rerun_tasks: name the tasks to run again (or rerun_all_failed_tasks)",
        ));
    }
    Ok(keys)
}

impl Jobs {
    /// Repairs run `run_id`; returns the repair's id.
    pub fn repair(self: &Arc<Self>, run_id: i64, req: Repair) -> Result<i64> {
        let run = self.run(run_id)?;
        if !run.is_done() {
            return Err(Error::invalid_state(format!(
                "Run {run_id} is still active; it can be repaired once it has ended."
            )));
        }
        let latest = run
            .repair_history
            .iter()
            .filter_map(|e| e.get("id").and_then(Value::as_i64))
            .next_back();
        if latest.is_some() && req.latest_repair_id != latest {
            return Err(Error::invalid(format!(
                "Invalid value for field latest_repair_id: the run's latest repair is {}",
                latest.unwrap_or_default()
            )));
        }
        let keys = selection(&run, &req)?;
        let repair_id = self.new_id();
        let new_ids: BTreeMap<String, i64> =
            keys.iter().map(|k| (k.clone(), self.new_id())).collect();
        self.change_run(run_id, |r| {
            if r.repair_history.is_empty() {
                let ids = r.tasks.iter().map(|t| t.run_id).collect();
                let original = history_entry("ORIGINAL", None, r, ids);
                r.repair_history.push(original);
            }
            for t in r.tasks.iter_mut().filter(|t| keys.contains(&t.task_key)) {
                t.state = RunState {
                    life_cycle_state: RunLifecycle::transition(
                        "A task run",
                        t.state.life_cycle_state,
                        RunEvent::Repair,
                    )?,
                    ..RunState::new(t.state.life_cycle_state)
                };
                t.run_id = new_ids.get(&t.task_key).copied().unwrap_or(t.run_id);
                t.attempt_number = 0;
                t.start_time = 0;
                t.end_time = 0;
                t.setup_duration = 0;
                t.execution_duration = 0;
                t.cluster_id = None;
                t.spark_context_id = None;
                t.output = TaskOutput::default();
            }
            r.state = RunState::new(RunLifecycle::transition(
                "A run",
                r.state.life_cycle_state,
                RunEvent::Repair,
            )?);
            r.end_time = 0;
            r.job_parameters.extend(req.job_parameters.clone());
            if !req.notebook_params.is_empty() {
                r.overriding_parameters
                    .insert("notebook_params".into(), json!(req.notebook_params));
            }
            if !req.python_params.is_empty() {
                r.overriding_parameters
                    .insert("python_params".into(), json!(req.python_params));
            }
            let ids = new_ids.values().copied().collect();
            let mut entry = history_entry("REPAIR", Some(repair_id), r, ids);
            entry["start_time"] = json!(now_ms());
            r.repair_history.push(entry);
            Ok(())
        })?;
        self.drive(run_id)?;
        Ok(repair_id)
    }
}

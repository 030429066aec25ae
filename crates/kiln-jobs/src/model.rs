//! Durable records of jobs and runs (domain types; the wire shapes are built
//! by the server from them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::lifecycle::{RunLifeCycleState, RunResultState};

pub const KIND_JOB: &str = "job";
pub const KIND_RUN: &str = "job_run";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: i64,
    pub creator_user_name: String,
    /// Who the job's runs act as.
    pub run_as: String,
    pub created_time: i64,
    /// The job's settings as given, with Databricks' defaults filled in.
    pub settings: Map<String, Value>,
    /// When its schedule or trigger was last set (instants before are not owed).
    #[serde(default)]
    pub schedule_since_ms: i64,
    /// The last scheduled instant a run was started for (recorded first).
    #[serde(default)]
    pub schedule_fired_ms: i64,
    /// What a data trigger has already seen (see `triggers`).
    #[serde(default)]
    pub trigger_marks: BTreeMap<String, i64>,
}

impl JobRecord {
    pub fn name(&self) -> &str {
        self.settings
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("Untitled")
    }
}

/// Where a run or a task run stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    pub life_cycle_state: RunLifeCycleState,
    #[serde(default)]
    pub result_state: Option<RunResultState>,
    #[serde(default)]
    pub state_message: String,
    #[serde(default)]
    pub user_cancelled_or_timedout: bool,
}

impl RunState {
    pub fn new(life_cycle_state: RunLifeCycleState) -> Self {
        Self {
            life_cycle_state,
            result_state: None,
            state_message: String::new(),
            user_cancelled_or_timedout: false,
        }
    }
}

/// What a task produced.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TaskOutput {
    /// `dbutils.notebook.exit`'s value.
    #[serde(default)]
    pub notebook_result: Option<String>,
    /// What the task printed (Python file tasks).
    #[serde(default)]
    pub logs: Option<String>,
    #[serde(default)]
    pub logs_truncated: bool,
    /// The last line of the error, and its whole traceback.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_trace: Option<String>,
    /// A condition task's outcome (`"true"`/`"false"`).
    #[serde(default)]
    pub outcome: Option<String>,
    /// `dbutils.jobs.taskValues` the task set.
    #[serde(default)]
    pub task_values: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskRun {
    pub run_id: i64,
    pub task_key: String,
    /// The task's settings (with references resolved when it ran).
    pub task: Map<String, Value>,
    pub state: RunState,
    #[serde(default)]
    pub attempt_number: u32,
    #[serde(default)]
    pub start_time: i64,
    #[serde(default)]
    pub end_time: i64,
    #[serde(default)]
    pub setup_duration: i64,
    #[serde(default)]
    pub execution_duration: i64,
    #[serde(default)]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub spark_context_id: Option<String>,
    #[serde(default)]
    pub output: TaskOutput,
    /// A for-each task's iterations (each with its own run id).
    #[serde(default)]
    pub iterations: Vec<TaskRun>,
}

impl TaskRun {
    /// A task run not started yet.
    pub fn pending(run_id: i64, task_key: &str, task: Map<String, Value>) -> Self {
        Self {
            run_id,
            task_key: task_key.to_string(),
            task,
            state: RunState::new(RunLifeCycleState::Pending),
            attempt_number: 0,
            start_time: 0,
            end_time: 0,
            setup_duration: 0,
            execution_duration: 0,
            cluster_id: None,
            spark_context_id: None,
            output: TaskOutput::default(),
            iterations: Vec::new(),
        }
    }

    pub fn depends_on(&self) -> Vec<(String, Option<String>)> {
        self.task
            .get("depends_on")
            .and_then(Value::as_array)
            .map(|deps| {
                deps.iter()
                    .filter_map(|d| {
                        let key = d.get("task_key")?.as_str()?.to_string();
                        let outcome = d.get("outcome").and_then(Value::as_str).map(str::to_string);
                        Some((key, outcome))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn run_if(&self) -> &str {
        self.task
            .get("run_if")
            .and_then(Value::as_str)
            .unwrap_or("ALL_SUCCESS")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub run_id: i64,
    /// None for a one-time run (`runs/submit`).
    #[serde(default)]
    pub job_id: Option<i64>,
    #[serde(default)]
    pub number_in_job: i64,
    pub run_name: String,
    pub creator_user_name: String,
    pub run_as: String,
    pub state: RunState,
    /// JOB_RUN, SUBMIT_RUN or WORKFLOW_RUN.
    pub run_type: String,
    /// PERIODIC, ONE_TIME, RETRY, RUN_JOB_TASK, …
    pub trigger: String,
    #[serde(default)]
    pub start_time: i64,
    #[serde(default)]
    pub end_time: i64,
    #[serde(default)]
    pub setup_duration: i64,
    #[serde(default)]
    pub execution_duration: i64,
    /// The run's parameters, by name (job parameters, or notebook params).
    #[serde(default)]
    pub job_parameters: BTreeMap<String, String>,
    /// What run-now overrode, echoed as `overriding_parameters`.
    #[serde(default)]
    pub overriding_parameters: Map<String, Value>,
    /// The settings the run executes (tasks, job clusters, timeout…).
    pub settings: Map<String, Value>,
    pub tasks: Vec<TaskRun>,
    /// Job clusters created for this run (terminated when it ends).
    #[serde(default)]
    pub job_clusters: BTreeMap<String, String>,
    #[serde(default)]
    pub idempotency_token: Option<String>,
    /// The run that started this one (a run-job task's parent).
    #[serde(default)]
    pub parent_run_id: Option<i64>,
    /// Repairs: each adds an entry with the task keys it re-ran.
    #[serde(default)]
    pub repair_history: Vec<Value>,
}

impl RunRecord {
    pub fn task(&self, key: &str) -> Option<&TaskRun> {
        self.tasks.iter().find(|t| t.task_key == key)
    }

    pub fn task_mut(&mut self, key: &str) -> Option<&mut TaskRun> {
        self.tasks.iter_mut().find(|t| t.task_key == key)
    }

    pub fn is_done(&self) -> bool {
        self.state.life_cycle_state.is_terminal()
    }
}

/// What `run-now` asks for besides the job.
#[derive(Debug, Clone, Default)]
pub struct RunNow {
    pub job_parameters: BTreeMap<String, String>,
    /// Legacy `notebook_params` (read by widgets like job parameters).
    pub notebook_params: BTreeMap<String, String>,
    pub python_params: Vec<String>,
    pub python_named_params: BTreeMap<String, String>,
    /// `dbt_commands`: replace a dbt task's commands.
    pub dbt_commands: Vec<String>,
    /// `sql_params`: a SQL task's parameters, over its own.
    pub sql_params: BTreeMap<String, String>,
    pub idempotency_token: Option<String>,
    /// Run only these tasks (`only`).
    pub only: Vec<String>,
    pub trigger: String,
    pub parent_run_id: Option<i64>,
}

//! Jobs domain records → the shapes the Jobs API answers (`Job`, `Run`,
//! `RunTask`, `RunOutput`), as the SDK, Airflow and Terraform read them.

use kiln_jobs::lifecycle::{RunLifeCycleState, RunResultState};
use kiln_jobs::model::{JobRecord, RunRecord, RunState, TaskRun};
use serde_json::{json, Map, Value};

/// A job; without its tasks and job clusters unless `expand_tasks`.
pub fn job(record: &JobRecord, expand_tasks: bool) -> Value {
    let mut settings = record.settings.clone();
    if !expand_tasks {
        settings.remove("tasks");
        settings.remove("job_clusters");
    }
    json!({
        "job_id": record.job_id,
        "creator_user_name": record.creator_user_name,
        "run_as_user_name": record.run_as,
        "created_time": record.created_time,
        "settings": settings,
        "has_more": false,
    })
}

/// Items of one list on a page of 2.2's `jobs/get` and `runs/get`.
pub const PAGE_SIZE: usize = 100;

/// 2.2's paging of a job's or a run's lists: when any of `fields` of `obj`
/// holds more than a page, page `token` (0 when `None`) of each (every
/// field present, empty once exhausted, as the SDK extends each), and the
/// token of the next page if any list goes on.
pub fn paginate(
    obj: &mut Map<String, Value>,
    fields: &[&str],
    token: Option<&str>,
) -> kiln_core::Result<Option<String>> {
    let page = match token.filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| kiln_core::Error::invalid("Invalid page_token"))?,
    };
    let longest = fields
        .iter()
        .filter_map(|f| obj.get(*f).and_then(Value::as_array).map(Vec::len))
        .max()
        .unwrap_or(0);
    if longest <= PAGE_SIZE && page == 0 {
        return Ok(None);
    }
    for f in fields {
        let items = match obj.remove(*f) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        let slice: Vec<Value> = items
            .into_iter()
            .skip(page * PAGE_SIZE)
            .take(PAGE_SIZE)
            .collect();
        obj.insert((*f).into(), Value::Array(slice));
    }
    Ok(((page + 1) * PAGE_SIZE < longest).then(|| (page + 1).to_string()))
}

fn state(s: &RunState) -> Value {
    let mut v = json!({
        "life_cycle_state": s.life_cycle_state.as_str(),
        "state_message": s.state_message,
        "user_cancelled_or_timedout": s.user_cancelled_or_timedout,
    });
    if let Some(r) = s.result_state {
        v["result_state"] = json!(r.as_str());
    }
    if s.life_cycle_state == RunLifeCycleState::Queued {
        v["queue_reason"] = json!(s.state_message);
    }
    v
}

/// 2.2's `status`: the V2 life cycle and, once ended, why.
fn status(s: &RunState) -> Value {
    use RunLifeCycleState as L;
    let v2 = match s.life_cycle_state {
        L::Queued => "QUEUED",
        L::Pending => "PENDING",
        L::Blocked => "BLOCKED",
        L::Running => "RUNNING",
        L::WaitingForRetry => "WAITING",
        L::Terminating => "TERMINATING",
        L::Terminated | L::Skipped | L::InternalError => "TERMINATED",
    };
    let mut v = json!({"state": v2});
    if s.life_cycle_state.is_terminal() {
        use RunResultState as R;
        let (code, kind) = match (s.life_cycle_state, s.result_state) {
            (L::InternalError, _) => ("INTERNAL_ERROR", "INTERNAL_ERROR"),
            (_, Some(R::Success)) => ("SUCCESS", "SUCCESS"),
            (_, Some(R::SuccessWithFailures)) => ("SUCCESS_WITH_FAILURES", "SUCCESS"),
            (_, Some(R::Canceled | R::UpstreamCanceled)) => ("CANCELED", "SUCCESS"),
            (_, Some(R::Excluded)) => ("SKIPPED", "SUCCESS"),
            (_, Some(R::MaximumConcurrentRunsReached)) => {
                ("MAX_CONCURRENT_RUNS_EXCEEDED", "CLIENT_ERROR")
            }
            (_, Some(R::Timedout)) => ("TIMEOUT", "CLIENT_ERROR"),
            (_, Some(R::UpstreamFailed)) => ("SKIPPED", "CLIENT_ERROR"),
            _ => ("RUN_EXECUTION_ERROR", "CLIENT_ERROR"),
        };
        v["termination_details"] = json!({"code": code, "type": kind, "message": s.state_message});
    }
    v
}

fn duration(start: i64, end: i64) -> i64 {
    if start > 0 && end >= start {
        end - start
    } else {
        0
    }
}

pub fn task(t: &TaskRun, base: &str, run: &RunRecord) -> Value {
    let mut v = Value::Object(t.task.clone());
    v["run_id"] = json!(t.run_id);
    v["task_key"] = json!(t.task_key);
    v["state"] = state(&t.state);
    v["status"] = status(&t.state);
    v["attempt_number"] = json!(t.attempt_number);
    v["start_time"] = json!(t.start_time);
    v["end_time"] = json!(t.end_time);
    v["setup_duration"] = json!(t.setup_duration);
    v["execution_duration"] = json!(t.execution_duration);
    v["cleanup_duration"] = json!(0);
    v["run_duration"] = json!(duration(t.start_time, t.end_time));
    v["run_page_url"] = json!(format!("{base}/ui/#/jobs/runs/{}", run.run_id));
    if let Some(cluster_id) = &t.cluster_id {
        let mut instance = json!({"cluster_id": cluster_id});
        if let Some(ctx) = &t.spark_context_id {
            instance["spark_context_id"] = json!(ctx);
        }
        v["cluster_instance"] = instance;
    }
    if !t.iterations.is_empty() {
        v["iterations"] = Value::Array(t.iterations.iter().map(|i| task(i, base, run)).collect());
    }
    if let Some(outcome) = &t.output.outcome {
        if let Some(cond) = v.get_mut("condition_task") {
            cond["outcome"] = json!(outcome);
        }
    }
    v
}

pub fn run(r: &RunRecord, base: &str, expand_tasks: bool) -> Value {
    let parameters: Vec<Value> = r
        .job_parameters
        .iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    let job_clusters = r
        .settings
        .get("job_clusters")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    let mut v = json!({
        "run_id": r.run_id,
        "number_in_job": r.number_in_job,
        "original_attempt_run_id": r.run_id,
        "run_name": r.run_name,
        "creator_user_name": r.creator_user_name,
        "run_as": r.run_as,
        "state": state(&r.state),
        "status": status(&r.state),
        "start_time": r.start_time,
        "end_time": r.end_time,
        "setup_duration": r.setup_duration,
        "execution_duration": r.execution_duration,
        "cleanup_duration": 0,
        "run_duration": duration(r.start_time, r.end_time),
        "trigger": r.trigger,
        "run_type": r.run_type,
        "format": "MULTI_TASK",
        "attempt_number": 0,
        "run_page_url": format!("{base}/ui/#/jobs/runs/{}", r.run_id),
        "job_parameters": parameters,
        "job_clusters": job_clusters,
        "repair_history": r.repair_history,
        "has_more": false,
    });
    if let Some(job_id) = r.job_id {
        v["job_id"] = json!(job_id);
    }
    if !r.overriding_parameters.is_empty() {
        v["overriding_parameters"] = Value::Object(r.overriding_parameters.clone());
    }
    if let Some(token) = &r.idempotency_token {
        v["idempotency_token"] = json!(token);
    }
    if let Some(parent) = r.parent_run_id {
        v["parent_run_id"] = json!(parent);
    }
    if expand_tasks {
        v["tasks"] = Value::Array(r.tasks.iter().map(|t| task(t, base, r)).collect());
    }
    // a one-task run shows its cluster at the top, as Databricks does
    if let [only] = r.tasks.as_slice() {
        if let Some(cluster_id) = &only.cluster_id {
            v["cluster_instance"] =
                json!({"cluster_id": cluster_id, "spark_context_id": only.spark_context_id});
        }
    }
    v
}

/// `runs/get-output` of one task run.
pub fn output(r: &RunRecord, t: &TaskRun, base: &str) -> Value {
    let mut metadata = task(t, base, r);
    metadata["job_id"] = json!(r.job_id);
    metadata["number_in_job"] = json!(r.number_in_job);
    metadata["creator_user_name"] = json!(r.creator_user_name);
    metadata["run_name"] = json!(r.run_name);
    let mut v = Map::new();
    v.insert("metadata".into(), metadata);
    let o = &t.output;
    if t.task.contains_key("notebook_task") {
        let mut nb = json!({"truncated": false});
        if let Some(result) = &o.notebook_result {
            nb["result"] = json!(result);
        }
        v.insert("notebook_output".into(), nb);
    }
    if let Some(logs) = &o.logs {
        v.insert("logs".into(), json!(logs));
        v.insert("logs_truncated".into(), json!(o.logs_truncated));
    }
    if let Some(error) = &o.error {
        v.insert("error".into(), json!(error));
    }
    if let Some(trace) = &o.error_trace {
        v.insert("error_trace".into(), json!(trace));
    }
    Value::Object(v)
}

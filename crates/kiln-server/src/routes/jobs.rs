//! Jobs API 2.2 (the same operations under 2.0 and 2.1 for older clients):
//! jobs, run-now, one-time runs, run outputs, cancel. Every call checks the
//! caller's level on the job (CAN_VIEW < CAN_MANAGE_RUN < CAN_MANAGE <
//! IS_OWNER; the creator owns a job); lists are filtered per caller; a
//! one-time run is visible to its submitter and admins.

use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::routing::{get, post};
use axum::{Extension, Json};
use kiln_api::jobs::*;
use kiln_core::{Error, Result};
use kiln_jobs::model::{JobRecord, RunRecord};
use kiln_jobs::RunNow as RunNowRequest;
use serde_json::{json, Value};

use super::jobs_convert as convert;
use super::{ep, offset_page, todo_ep, Endpoint};
use crate::access::{principal, require_cluster};
use crate::error::ApiResult;
use crate::extract::{Params, Scheme};
use crate::state::AppState;
use kiln_identity::Caller;

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    let mut all = Vec::new();
    for version in ["2.2", "2.1", "2.0"] {
        let p = format!("/api/{version}/jobs");
        all.extend([
            ep(M::POST, format!("{p}/create"), "jobs/create", post(create)),
            ep(M::GET, format!("{p}/get"), "jobs/get", get(get_job)),
            ep(M::GET, format!("{p}/list"), "jobs/list", get(list)),
            ep(M::POST, format!("{p}/reset"), "jobs/reset", post(reset)),
            ep(M::POST, format!("{p}/update"), "jobs/update", post(update)),
            ep(
                M::POST,
                format!("{p}/delete"),
                "jobs/delete",
                post(delete_job),
            ),
            ep(
                M::POST,
                format!("{p}/run-now"),
                "jobs/run-now",
                post(run_now),
            ),
            ep(
                M::POST,
                format!("{p}/runs/submit"),
                "jobs/runs/submit",
                post(submit),
            ),
            ep(
                M::GET,
                format!("{p}/runs/get"),
                "jobs/runs/get",
                get(get_run),
            ),
            ep(
                M::GET,
                format!("{p}/runs/get-output"),
                "jobs/runs/get-output",
                get(get_output),
            ),
            ep(
                M::GET,
                format!("{p}/runs/list"),
                "jobs/runs/list",
                get(list_runs),
            ),
            ep(
                M::POST,
                format!("{p}/runs/cancel"),
                "jobs/runs/cancel",
                post(cancel),
            ),
            ep(
                M::POST,
                format!("{p}/runs/cancel-all"),
                "jobs/runs/cancel-all",
                post(cancel_all),
            ),
            ep(
                M::POST,
                format!("{p}/runs/delete"),
                "jobs/runs/delete",
                post(delete_run),
            ),
            todo_ep(M::GET, format!("{p}/runs/export"), "jobs/runs/export"),
            ep(
                M::POST,
                format!("{p}/runs/repair"),
                "jobs/runs/repair",
                post(repair),
            ),
        ]);
    }
    all
}

fn base(headers: &HeaderMap, uri: &Uri, scheme: Option<Extension<Scheme>>) -> String {
    super::identity::base_url(headers, uri, scheme)
}

/// Fails unless the caller holds `level` on the job.
pub fn require_job(
    state: &AppState,
    caller: &Caller,
    job_id: i64,
    level: &str,
) -> Result<JobRecord> {
    let job = state.jobs.get(job_id)?;
    let id = job_id.to_string();
    state.permissions.require(
        &principal(state, caller),
        "jobs",
        &[("jobs", &id)],
        Some(&job.creator_user_name),
        level,
        &format!("job {job_id}"),
    )?;
    Ok(job)
}

fn can_view(state: &AppState, caller: &Caller, job: &JobRecord) -> bool {
    caller.admin
        || state
            .permissions
            .effective(
                &principal(state, caller),
                "jobs",
                &[("jobs", &job.job_id.to_string())],
                Some(&job.creator_user_name),
            )
            .ok()
            .flatten()
            .is_some()
}

/// Fails unless the caller may act on the run at `level` (a job's run: the
/// job's level; a one-time run: its submitter or an admin).
fn require_run(state: &AppState, caller: &Caller, run: &RunRecord, level: &str) -> Result<()> {
    match run.job_id {
        Some(job_id) if state.jobs.get(job_id).is_ok() => {
            require_job(state, caller, job_id, level).map(|_| ())
        }
        _ if caller.admin || run.creator_user_name == caller.user_name => Ok(()),
        _ => Err(Error::permission_denied(format!(
            "You do not have permission to access run {}.",
            run.run_id
        ))),
    }
}

/// What the tasks of new settings reach must be the caller's to use: its
/// clusters (CAN_ATTACH_TO), pipelines (CAN_RUN) and jobs (CAN_MANAGE_RUN).
fn require_references(state: &AppState, caller: &Caller, settings: &Value) -> Result<()> {
    for task in settings["tasks"].as_array().into_iter().flatten() {
        if let Some(id) = task["existing_cluster_id"].as_str() {
            require_cluster(state, caller, id, "CAN_ATTACH_TO")?;
        }
        // (a missing warehouse is the settings' 400, naming the field)
        if let Some(id) = task["sql_task"]["warehouse_id"].as_str() {
            if state.warehouses.get(id).is_ok() {
                super::sql_warehouses::require_warehouse(state, caller, id, "CAN_USE")?;
            }
        }
        if let Some(id) = task["pipeline_task"]["pipeline_id"].as_str() {
            super::pipelines::require_pipeline(state, caller, id, "CAN_RUN")?;
        }
        let job = &task["run_job_task"]["job_id"];
        if let Some(id) = job
            .as_i64()
            .or_else(|| job.as_str().and_then(|s| s.parse().ok()))
        {
            require_job(state, caller, id, "CAN_MANAGE_RUN")?;
        }
    }
    // a file-arrival trigger reads its volume's listing: READ_VOLUME on it
    if let Some(volume) = settings
        .as_object()
        .and_then(kiln_jobs::trigger_settings::watched_volume)
    {
        if let Ok(volume) = state.catalog.get_volume(&volume) {
            super::uc_volumes::require_privilege(
                state,
                caller,
                &volume,
                kiln_catalog::READ_VOLUME,
            )?;
        }
    }
    Ok(())
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(mut body): Params<Value>,
) -> ApiResult<Json<Value>> {
    if let Some(obj) = body.as_object_mut() {
        obj.remove("access_control_list");
    }
    require_references(&state, &caller, &body)?;
    if let Some(run_as) = body["run_as"]["user_name"]
        .as_str()
        .or(body["run_as"]["service_principal_name"].as_str())
    {
        if run_as != caller.user_name && !caller.admin {
            return Err(Error::permission_denied(
                "Only admins may set run_as to another principal.",
            )
            .into());
        }
    }
    let job = state.jobs.create(&caller.user_name, body).await?;
    Ok(Json(json!({"job_id": job.job_id})))
}

/// The lists 2.2 pages (at 100 items) in a job's settings, and in a run.
const JOB_LISTS: &[&str] = &["tasks", "job_clusters", "parameters", "environments"];
const RUN_LISTS: &[&str] = &["tasks", "job_clusters", "job_parameters", "repair_history"];

/// 2.2 answers a job's or a run's long lists a page at a time (`has_more`,
/// `next_page_token`); the 2.0 and 2.1 paths answer them whole.
fn paged(mut v: Value, in_settings: bool, uri: &Uri, token: Option<&str>) -> Result<Value> {
    if !uri.path().starts_with("/api/2.2/") {
        return Ok(v);
    }
    let (target, fields) = if in_settings {
        (v.get_mut("settings"), JOB_LISTS)
    } else {
        (Some(&mut v), RUN_LISTS)
    };
    let Some(Value::Object(obj)) = target else {
        return Ok(v);
    };
    let next = convert::paginate(obj, fields, token)?;
    v["has_more"] = json!(next.is_some());
    if let Some(next) = next {
        v["next_page_token"] = json!(next);
    }
    Ok(v)
}

async fn get_job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Params(req): Params<JobRef>,
) -> ApiResult<Json<Value>> {
    let job = require_job(&state, &caller, req.job_id, "CAN_VIEW")?;
    let v = paged(
        convert::job(&job, true),
        true,
        &uri,
        req.page_token.as_deref(),
    )?;
    Ok(Json(v))
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    uri: Uri,
    Params(req): Params<ListJobs>,
) -> ApiResult<Json<Value>> {
    let limit = req.limit.unwrap_or(20);
    if !(0..=100).contains(&limit) {
        return Err(Error::invalid("Invalid value for field limit: 0 to 100").into());
    }
    let jobs: Vec<JobRecord> = state
        .jobs
        .list()
        .into_iter()
        .filter(|j| req.name.as_deref().is_none_or(|n| j.name() == n))
        .filter(|j| can_view(&state, &caller, j))
        .skip(req.offset.unwrap_or(0).max(0) as usize)
        .collect();
    let size = if limit == 0 { 20 } else { limit as usize };
    let (page, next) = offset_page(jobs, req.page_token.as_deref(), size)?;
    let expand = req.expand_tasks.unwrap_or(false);
    let mut v = json!({
        "jobs": page
            .iter()
            .map(|j| paged(convert::job(j, expand), true, &uri, None))
            .collect::<Result<Vec<_>>>()?,
        "has_more": next.is_some(),
    });
    if let Some(next) = next {
        v["next_page_token"] = json!(next);
    }
    Ok(Json(v))
}

async fn reset(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<ResetJob>,
) -> ApiResult<Json<Value>> {
    require_job(&state, &caller, req.job_id, "CAN_MANAGE")?;
    require_references(&state, &caller, &req.new_settings)?;
    state.jobs.reset(req.job_id, req.new_settings).await?;
    Ok(Json(json!({})))
}

async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<UpdateJob>,
) -> ApiResult<Json<Value>> {
    require_job(&state, &caller, req.job_id, "CAN_MANAGE")?;
    let new_settings = req.new_settings.unwrap_or_default();
    require_references(&state, &caller, &Value::Object(new_settings.clone()))?;
    state
        .jobs
        .update(req.job_id, new_settings, &req.fields_to_remove)
        .await?;
    Ok(Json(json!({})))
}

async fn delete_job(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<JobRef>,
) -> ApiResult<Json<Value>> {
    require_job(&state, &caller, req.job_id, "CAN_MANAGE")?;
    state.jobs.delete(req.job_id).await?;
    state.permissions.forget("jobs", &req.job_id.to_string())?;
    Ok(Json(json!({})))
}

async fn run_now(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<RunNow>,
) -> ApiResult<Json<Value>> {
    let job_id = req
        .job_id
        .ok_or_else(|| Error::invalid("Missing required field: job_id"))?;
    require_job(&state, &caller, job_id, "CAN_MANAGE_RUN")?;
    crate::access::require_code_execution(&state, &caller)?;
    for (field, given) in [
        (
            "jar_params",
            req.jar_params.as_ref().is_some_and(|v| !v.is_empty()),
        ),
        (
            "spark_submit_params",
            req.spark_submit_params
                .as_ref()
                .is_some_and(|v| !v.is_empty()),
        ),
    ] {
        if given {
            return Err(Error::invalid(format!(
                "Invalid value for field {field}: Kiln runs no JAR or spark-submit tasks"
            ))
            .into());
        }
    }
    let dbt_commands = match req.dbt_commands.as_ref().filter(|c| !c.is_empty()) {
        Some(list) => kiln_jobs::dbt_settings::check_commands(
            &serde_json::Value::Array(list.clone()),
            "dbt_commands",
        )?,
        None => Vec::new(),
    };
    let request = RunNowRequest {
        job_parameters: text_map(req.job_parameters.as_ref()),
        notebook_params: text_map(req.notebook_params.as_ref()),
        python_params: req
            .python_params
            .unwrap_or_default()
            .into_iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
        python_named_params: text_map(req.python_named_params.as_ref()),
        dbt_commands,
        sql_params: text_map(req.sql_params.as_ref()),
        idempotency_token: req.idempotency_token,
        only: req.only,
        trigger: "ONE_TIME".into(),
        parent_run_id: None,
    };
    let run = state
        .jobs
        .run_now(&caller.user_name, job_id, request)
        .await?;
    Ok(Json(
        json!({"run_id": run.run_id, "number_in_job": run.number_in_job}),
    ))
}

async fn submit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(body): Params<Value>,
) -> ApiResult<Json<Value>> {
    crate::access::require_code_execution(&state, &caller)?;
    let Value::Object(mut body) = body else {
        return Err(Error::invalid("The request body must be a JSON object").into());
    };
    let token = body
        .remove("idempotency_token")
        .and_then(|t| t.as_str().map(str::to_string));
    body.remove("access_control_list");
    let settings = if body.get("tasks").is_some_and(|t| !t.is_null()) {
        Value::Object(body)
    } else {
        match kiln_jobs::settings::single_task_settings(&body) {
            Some(s) => Value::Object(s),
            None => return Err(Error::invalid("Invalid value for field tasks: a run needs tasks (or one task type at the top level)").into()),
        }
    };
    require_references(&state, &caller, &settings)?;
    let run = state
        .jobs
        .submit(&caller.user_name, settings, token)
        .await?;
    Ok(Json(json!({"run_id": run.run_id})))
}

async fn get_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    scheme: Option<Extension<Scheme>>,
    headers: HeaderMap,
    uri: Uri,
    Params(req): Params<RunRef>,
) -> ApiResult<Json<Value>> {
    let run = state.jobs.run(req.run_id)?;
    require_run(&state, &caller, &run, "CAN_VIEW")?;
    let v = convert::run(&run, &base(&headers, &uri, scheme), true);
    Ok(Json(paged(v, false, &uri, req.page_token.as_deref())?))
}

async fn get_output(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    scheme: Option<Extension<Scheme>>,
    headers: HeaderMap,
    uri: Uri,
    Params(req): Params<RunRef>,
) -> ApiResult<Json<Value>> {
    let (run, task) = state.jobs.task_run(req.run_id)?;
    require_run(&state, &caller, &run, "CAN_VIEW")?;
    Ok(Json(convert::output(
        &run,
        &task,
        &base(&headers, &uri, scheme),
    )))
}

async fn list_runs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    scheme: Option<Extension<Scheme>>,
    headers: HeaderMap,
    uri: Uri,
    Params(req): Params<ListRuns>,
) -> ApiResult<Json<Value>> {
    if req.active_only == Some(true) && req.completed_only == Some(true) {
        return Err(Error::invalid("active_only and completed_only cannot both be true").into());
    }
    let limit = req.limit.unwrap_or(25);
    if !(0..=1000).contains(&limit) {
        return Err(Error::invalid("Invalid value for field limit: 0 to 1000").into());
    }
    if let Some(job_id) = req.job_id {
        require_job(&state, &caller, job_id, "CAN_VIEW")?;
    }
    let size = if limit == 0 { 25 } else { limit as usize };
    let start = match req.page_token.as_deref() {
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| Error::invalid("Invalid page_token"))?,
        None => req.offset.unwrap_or(0).max(0) as usize,
    };
    let (page, more) = state.jobs.runs_page(
        |r| {
            req.job_id.is_none_or(|j| r.job_id == Some(j))
                && (req.active_only != Some(true) || !r.is_done())
                && (req.completed_only != Some(true) || r.is_done())
                && req.run_type.as_deref().is_none_or(|t| r.run_type == t)
                && req.start_time_from.is_none_or(|t| r.start_time >= t)
                && req.start_time_to.is_none_or(|t| r.start_time <= t)
                && (req.job_id.is_some() || require_run(&state, &caller, r, "CAN_VIEW").is_ok())
        },
        start,
        size,
    );
    let next = more.then(|| (start + page.len()).to_string());
    let base = base(&headers, &uri, scheme);
    let expand = req.expand_tasks.unwrap_or(false);
    let mut v = json!({
        "runs": page
            .iter()
            .map(|r| paged(convert::run(r, &base, expand), false, &uri, None))
            .collect::<Result<Vec<_>>>()?,
        "has_more": next.is_some(),
    });
    if let Some(next) = next {
        v["next_page_token"] = json!(next);
    }
    Ok(Json(v))
}

async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<RunRef>,
) -> ApiResult<Json<Value>> {
    let run = state.jobs.run(req.run_id)?;
    require_run(&state, &caller, &run, "CAN_MANAGE_RUN")?;
    state.jobs.cancel(req.run_id)?;
    Ok(Json(json!({})))
}

async fn cancel_all(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<CancelAllRuns>,
) -> ApiResult<Json<Value>> {
    match req.job_id {
        Some(job_id) => {
            require_job(&state, &caller, job_id, "CAN_MANAGE_RUN")?;
            state.jobs.cancel_all(job_id)?;
        }
        None if req.all_queued_runs == Some(true) => {
            for job in state.jobs.list() {
                if require_job(&state, &caller, job.job_id, "CAN_MANAGE_RUN").is_ok() {
                    state.jobs.cancel_queued(job.job_id)?;
                }
            }
        }
        None => return Err(Error::invalid("Missing required field: job_id").into()),
    }
    Ok(Json(json!({})))
}

async fn delete_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<RunRef>,
) -> ApiResult<Json<Value>> {
    let run = state.jobs.run(req.run_id)?;
    require_run(&state, &caller, &run, "CAN_MANAGE")?;
    state.jobs.delete_run(req.run_id)?;
    Ok(Json(json!({})))
}

async fn repair(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<RepairRun>,
) -> ApiResult<Json<Value>> {
    let run = state.jobs.run(req.run_id)?;
    require_run(&state, &caller, &run, "CAN_MANAGE_RUN")?;
    crate::access::require_code_execution(&state, &caller)?;
    let repair = kiln_jobs::Repair {
        rerun_tasks: req.rerun_tasks,
        rerun_all_failed_tasks: req.rerun_all_failed_tasks.unwrap_or(false),
        rerun_dependent_tasks: req.rerun_dependent_tasks.unwrap_or(false),
        latest_repair_id: req.latest_repair_id,
        job_parameters: text_map(req.job_parameters.as_ref()),
        notebook_params: text_map(req.notebook_params.as_ref()),
        python_params: req
            .python_params
            .unwrap_or_default()
            .into_iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
    };
    let repair_id = state.jobs.repair(req.run_id, repair)?;
    Ok(Json(json!({"repair_id": repair_id})))
}

//! Pipelines API 2.0 (Delta Live Tables): pipelines, updates, stop, the event
//! log; every call checks the caller's level on the pipeline (CAN_VIEW <
//! CAN_RUN < CAN_MANAGE < IS_OWNER) and lists are filtered per caller.

use axum::extract::{Path, State};
use axum::http::Method;
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json};
use kiln_api::pipelines::*;
use kiln_core::{time::rfc3339, Error, Result};
use kiln_pipelines::events::{self, Cursor};
use kiln_pipelines::lifecycle::pipeline_state;
use kiln_pipelines::model::{PipelineRecord, UpdateRecord};
use kiln_pipelines::PipelineSpec;
use kiln_pipelines::StartRequest;
use serde_json::{json, Value};

use super::pipelines_spec::spec_of;
use super::{ep, todo_ep, Endpoint};
use crate::access::principal;
use crate::error::ApiResult;
use crate::extract::Params;
use crate::state::AppState;
use kiln_identity::Caller;

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    let p = "/api/2.0/pipelines";
    vec![
        ep(M::POST, p, "pipelines/create", post(create)),
        ep(M::GET, p, "pipelines/list", get(list)),
        ep(
            M::GET,
            format!("{p}/{{pipeline_id}}"),
            "pipelines/get",
            get(get_pipeline),
        ),
        ep(
            M::PUT,
            format!("{p}/{{pipeline_id}}"),
            "pipelines/update",
            put(edit),
        ),
        ep(
            M::DELETE,
            format!("{p}/{{pipeline_id}}"),
            "pipelines/delete",
            delete(delete_pipeline),
        ),
        ep(
            M::POST,
            format!("{p}/{{pipeline_id}}/updates"),
            "pipelines/start-update",
            post(start_update),
        ),
        ep(
            M::GET,
            format!("{p}/{{pipeline_id}}/updates"),
            "pipelines/list-updates",
            get(list_updates),
        ),
        ep(
            M::GET,
            format!("{p}/{{pipeline_id}}/updates/{{update_id}}"),
            "pipelines/get-update",
            get(get_update),
        ),
        ep(
            M::POST,
            format!("{p}/{{pipeline_id}}/stop"),
            "pipelines/stop",
            post(stop),
        ),
        ep(
            M::GET,
            format!("{p}/{{pipeline_id}}/events"),
            "pipelines/list-pipeline-events",
            get(list_events),
        ),
        todo_ep(
            M::POST,
            format!("{p}/{{pipeline_id}}/clone"),
            "pipelines/clone",
        ),
        todo_ep(
            M::POST,
            format!("{p}/{{pipeline_id}}/environment/apply"),
            "pipelines/apply-environment",
        ),
    ]
}

/// Fails unless the caller holds `level` on the pipeline.
pub fn require_pipeline(
    state: &AppState,
    caller: &Caller,
    pipeline_id: &str,
    level: &str,
) -> Result<PipelineRecord> {
    let record = state.pipelines.get(pipeline_id)?;
    state.permissions.require(
        &principal(state, caller),
        "pipelines",
        &[("pipelines", pipeline_id)],
        Some(&record.run_as),
        level,
        &format!("pipeline {pipeline_id}"),
    )?;
    Ok(record)
}

fn can_view(state: &AppState, caller: &Caller, record: &PipelineRecord) -> bool {
    caller.admin
        || state
            .permissions
            .effective(
                &principal(state, caller),
                "pipelines",
                &[("pipelines", &record.pipeline_id)],
                Some(&record.run_as),
            )
            .ok()
            .flatten()
            .is_some()
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(body): Params<Value>,
) -> ApiResult<Json<Value>> {
    let (spec, flags) = spec_of(body)?;
    let mut spec = PipelineSpec::from_json(spec)?;
    if let Some(true) = flags.allow_duplicate_names {
        spec.allow_duplicate_names = Some(true);
    }
    if spec.id.is_some() {
        return Err(
            Error::invalid("Invalid value for field id: the id is assigned by the system").into(),
        );
    }
    require_libraries(&state, &caller, &spec)?;
    let dry_run = flags.dry_run.unwrap_or(false);
    let record = state
        .pipelines
        .create(&caller.user_name, spec, dry_run)
        .await?;
    if dry_run {
        return Ok(Json(json!({"effective_settings": record.spec.to_json()})));
    }
    Ok(Json(json!({"pipeline_id": record.pipeline_id})))
}

/// The caller must be able to read every notebook and file the pipeline runs
/// (a missing one is reported by the service, naming the field).
fn require_libraries(state: &AppState, caller: &Caller, spec: &PipelineSpec) -> Result<()> {
    for lib in spec.libraries() {
        let path = kiln_pipelines::libraries::library_path(lib)?;
        if let Ok(object) = state.workspace.get(&path) {
            crate::access::require_object(state, caller, &object, "CAN_READ")?;
        }
    }
    Ok(())
}

fn latest_updates(state: &AppState, pipeline_id: &str) -> Vec<Value> {
    state
        .pipelines
        .updates(pipeline_id)
        .iter()
        .take(5)
        .map(|u| json!({"update_id": u.update_id, "state": u.state.as_str(), "creation_time": rfc3339(u.creation_time)}))
        .collect()
}

fn status(state: &AppState, record: &PipelineRecord) -> Value {
    let updates = state.pipelines.updates(&record.pipeline_id);
    let latest = updates.first().map(|u| u.state);
    let mut v = json!({
        "pipeline_id": record.pipeline_id,
        "name": record.name(),
        "state": pipeline_state(latest),
        "health": if record.unhealthy { "UNHEALTHY" } else { "HEALTHY" },
        "creator_user_name": record.creator,
        "run_as_user_name": record.run_as,
        "latest_updates": latest_updates(state, &record.pipeline_id),
    });
    if let Some(c) = &record.cluster_id {
        v["cluster_id"] = json!(c);
    }
    v
}

async fn get_pipeline(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(pipeline_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let record = require_pipeline(&state, &caller, &pipeline_id, "CAN_VIEW")?;
    let mut v = status(&state, &record);
    v["spec"] = record.spec.to_json();
    v["last_modified"] = json!(record.last_modified);
    v["effective_publishing_mode"] = json!("DEFAULT_PUBLISHING_MODE");
    if let Some(u) = state.pipelines.updates(&pipeline_id).first() {
        if u.state == kiln_pipelines::lifecycle::UpdateState::Failed {
            v["cause"] = json!("The latest update failed; see its events.");
        }
    }
    Ok(Json(v))
}

async fn edit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(pipeline_id): Path<String>,
    Params(body): Params<Value>,
) -> ApiResult<Json<Value>> {
    require_pipeline(&state, &caller, &pipeline_id, "CAN_MANAGE")?;
    let (spec, flags) = spec_of(body)?;
    let mut spec = PipelineSpec::from_json(spec)?;
    require_libraries(&state, &caller, &spec)?;
    if let Some(true) = flags.allow_duplicate_names {
        spec.allow_duplicate_names = Some(true);
    }
    state
        .pipelines
        .edit(
            &caller.user_name,
            &pipeline_id,
            spec,
            flags.expected_last_modified,
        )
        .await?;
    Ok(Json(json!({})))
}

async fn delete_pipeline(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(pipeline_id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_pipeline(&state, &caller, &pipeline_id, "CAN_MANAGE")?;
    state.pipelines.delete(&pipeline_id).await?;
    state
        .permissions
        .set("pipelines", &pipeline_id, Vec::new(), true)?;
    Ok(Json(json!({})))
}

fn page_size(max_results: Option<i64>, default: i64, max: i64) -> Result<usize> {
    let n = max_results.unwrap_or(default);
    if n < 1 || n > max {
        return Err(Error::invalid(format!(
            "Invalid value for field max_results: it must be between 1 and {max}, got {n}"
        )));
    }
    Ok(n as usize)
}

fn like(pattern: &str, value: &str) -> bool {
    fn go(p: &[char], v: &[char]) -> bool {
        match p.first() {
            None => v.is_empty(),
            Some('%') => (0..=v.len()).any(|i| go(&p[1..], &v[i..])),
            Some('_') => !v.is_empty() && go(&p[1..], &v[1..]),
            Some(c) => v.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && go(&p[1..], &v[1..]),
        }
    }
    go(
        &pattern.chars().collect::<Vec<_>>(),
        &value.chars().collect::<Vec<_>>(),
    )
}

/// `notebook='<path>'` or `name LIKE '<pattern>'`.
type RecordFilter = Box<dyn Fn(&PipelineRecord) -> bool>;

fn pipeline_filter(filter: &str) -> Result<RecordFilter> {
    let f = filter.trim();
    let quoted = |s: &str| -> Option<String> {
        let s = s.trim();
        (s.len() >= 2 && s.starts_with('\'') && s.ends_with('\''))
            .then(|| s[1..s.len() - 1].to_string())
    };
    if let Some((field, value)) = f.split_once('=') {
        if field.trim().eq_ignore_ascii_case("notebook") {
            let path =
                quoted(value).ok_or_else(|| Error::invalid("Invalid filter: notebook='<path>'"))?;
            return Ok(Box::new(move |r: &PipelineRecord| {
                r.spec
                    .libraries()
                    .iter()
                    .any(|l| l["notebook"]["path"].as_str() == Some(path.as_str()))
            }));
        }
    }
    let lower = f.to_ascii_lowercase();
    if lower.starts_with("name") {
        if let Some(at) = lower.find(" like ") {
            let pattern = quoted(&f[at + 6..])
                .ok_or_else(|| Error::invalid("Invalid filter: name LIKE '<pattern>'"))?;
            return Ok(Box::new(move |r: &PipelineRecord| like(&pattern, r.name())));
        }
    }
    Err(Error::invalid(format!(
        "Invalid filter '{filter}': use notebook='<path>' or name LIKE '<pattern>'"
    )))
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<ListPipelines>,
) -> ApiResult<Json<Value>> {
    let size = page_size(req.max_results, 25, 100)?;
    let (filter, order, offset) = match &req.page_token {
        Some(token) if !token.is_empty() => {
            let t: Value = serde_json::from_slice(&base64_decode(token)?)
                .map_err(|_| Error::invalid("Invalid page_token"))?;
            (
                t["filter"].as_str().map(str::to_string),
                t["order"].as_str().unwrap_or("id asc").to_string(),
                t["offset"].as_u64().unwrap_or(0) as usize,
            )
        }
        _ => (
            req.filter.clone(),
            req.order_by
                .first()
                .cloned()
                .unwrap_or_else(|| "id asc".into()),
            0,
        ),
    };
    let order_lc = order.trim().to_ascii_lowercase();
    let (field, desc) = match order_lc.split_whitespace().collect::<Vec<_>>().as_slice() {
        [f] => (f.to_string(), false),
        [f, "asc"] => (f.to_string(), false),
        [f, "desc"] => (f.to_string(), true),
        _ => {
            return Err(Error::invalid(format!("Invalid value for field order_by: {order}")).into())
        }
    };
    if field != "id" && field != "name" {
        return Err(Error::invalid("Invalid value for field order_by: order by id or name").into());
    }
    let keep = match &filter {
        Some(f) if !f.trim().is_empty() => pipeline_filter(f)?,
        _ => Box::new(|_: &PipelineRecord| true),
    };
    let mut records: Vec<PipelineRecord> = state
        .pipelines
        .list()?
        .into_iter()
        .filter(|r| keep(r) && can_view(&state, &caller, r))
        .collect();
    records.sort_by(|a, b| {
        let o = if field == "name" {
            a.name()
                .cmp(b.name())
                .then(a.pipeline_id.cmp(&b.pipeline_id))
        } else {
            a.pipeline_id.cmp(&b.pipeline_id)
        };
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    let page: Vec<Value> = records
        .iter()
        .skip(offset)
        .take(size)
        .map(|r| status(&state, r))
        .collect();
    let mut out = json!({"statuses": page});
    if offset + size < records.len() {
        out["next_page_token"] = json!(base64_encode(
            &json!({"filter": filter, "order": order, "offset": offset + size})
        ));
    }
    if offset > 0 {
        out["prev_page_token"] = json!(base64_encode(
            &json!({"filter": filter, "order": order, "offset": offset.saturating_sub(size)})
        ));
    }
    Ok(Json(out))
}

fn base64_encode(v: &Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn base64_decode(s: &str) -> Result<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim())
        .map_err(|_| Error::invalid("Invalid page_token"))
}

async fn start_update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(pipeline_id): Path<String>,
    Params(req): Params<StartUpdate>,
) -> ApiResult<Json<Value>> {
    require_pipeline(&state, &caller, &pipeline_id, "CAN_RUN")?;
    crate::access::require_code_execution(&state, &caller)?;
    let update = state
        .pipelines
        .start_update(
            &caller.user_name,
            &pipeline_id,
            StartRequest {
                cause: req.cause.unwrap_or_default(),
                full_refresh: req.full_refresh.unwrap_or(false),
                full_refresh_selection: req.full_refresh_selection,
                refresh_selection: req.refresh_selection,
                validate_only: req.validate_only.unwrap_or(false),
            },
        )
        .await?;
    Ok(Json(json!({"update_id": update.update_id})))
}

fn update_info(u: &UpdateRecord, full: bool) -> Value {
    let mut v = json!({
        "pipeline_id": u.pipeline_id,
        "update_id": u.update_id,
        "state": u.state.as_str(),
        "cause": u.cause,
        "creation_time": u.creation_time,
        "full_refresh": u.full_refresh,
        "validate_only": u.validate_only,
    });
    if !u.full_refresh_selection.is_empty() {
        v["full_refresh_selection"] = json!(u.full_refresh_selection);
    }
    if !u.refresh_selection.is_empty() {
        v["refresh_selection"] = json!(u.refresh_selection);
    }
    if let Some(c) = &u.cluster_id {
        v["cluster_id"] = json!(c);
    }
    if full {
        v["config"] = u.config.to_json();
        v["mode"] = json!(if u.config.continuous() {
            "CONTINUOUS"
        } else {
            "DEFAULT"
        });
    }
    v
}

async fn get_update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((pipeline_id, update_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    require_pipeline(&state, &caller, &pipeline_id, "CAN_VIEW")?;
    let u = state.pipelines.update(&pipeline_id, &update_id)?;
    Ok(Json(json!({"update": update_info(&u, true)})))
}

async fn list_updates(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(pipeline_id): Path<String>,
    Params(req): Params<ListUpdates>,
) -> ApiResult<Json<Value>> {
    require_pipeline(&state, &caller, &pipeline_id, "CAN_VIEW")?;
    let size = page_size(req.max_results, 25, 100)?;
    let all = state.pipelines.updates(&pipeline_id);
    let mut start = match &req.page_token {
        Some(t) if !t.is_empty() => t
            .parse::<usize>()
            .map_err(|_| Error::invalid("Invalid page_token"))?,
        _ => 0,
    };
    if let Some(until) = &req.until_update_id {
        start = all
            .iter()
            .position(|u| &u.update_id == until)
            .unwrap_or(start);
    }
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(size)
        .map(|u| update_info(u, false))
        .collect();
    let mut out = json!({"updates": page});
    if start + size < all.len() {
        out["next_page_token"] = json!((start + size).to_string());
    }
    if start > 0 {
        out["prev_page_token"] = json!(start.saturating_sub(size).to_string());
    }
    Ok(Json(out))
}

async fn stop(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(pipeline_id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_pipeline(&state, &caller, &pipeline_id, "CAN_RUN")?;
    state.pipelines.stop(&pipeline_id)?;
    Ok(Json(json!({})))
}

async fn list_events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(pipeline_id): Path<String>,
    Params(req): Params<ListPipelineEvents>,
) -> ApiResult<Json<Value>> {
    require_pipeline(&state, &caller, &pipeline_id, "CAN_VIEW")?;
    let size = page_size(req.max_results, 25, 100)?;
    let cursor = match &req.page_token {
        Some(token) if !token.is_empty() => {
            if req.filter.is_some() || !req.order_by.is_empty() {
                return Err(Error::invalid("page_token cannot be combined with filter or order_by; only max_results may change between pages").into());
            }
            events::decode_token(token)?
        }
        _ => {
            let ascending = match req.order_by.first().map(|o| o.trim().to_ascii_lowercase()) {
                None => false,
                Some(o) if o == "timestamp asc" => true,
                Some(o) if o == "timestamp desc" || o == "timestamp" => false,
                Some(o) => return Err(Error::invalid(format!("Invalid value for field order_by: '{o}': use 'timestamp asc' or 'timestamp desc'")).into()),
            };
            Cursor {
                filter: events::parse_filter(req.filter.as_deref().unwrap_or(""))?,
                ascending,
                after_seq: if ascending { i64::MIN } else { i64::MAX },
                backward: false,
            }
        }
    };
    let all = state.pipelines.events(&pipeline_id)?;
    let page = events::page(&all, &cursor, size);
    let mut out = json!({"events": page.events.iter().map(|e| e.to_json()).collect::<Vec<_>>()});
    if let Some(next) = page.next {
        out["next_page_token"] = json!(events::encode_token(&next));
    }
    if let Some(prev) = page.prev {
        out["prev_page_token"] = json!(events::encode_token(&prev));
    }
    Ok(Json(out))
}

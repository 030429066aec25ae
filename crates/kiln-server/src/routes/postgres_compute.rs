//! Lakebase endpoints (computes and read replicas) and database credentials;
//! the route table and shared helpers are in `postgres.rs`.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::{Extension, Json};
use kiln_api::postgres as wire;
use kiln_core::{time::now_ms, Error, ErrorCode};
use kiln_lakebase::endpoints::NewEndpoint;
use kiln_lakebase::model::{parse_duration, parse_timestamp, EndpointType};

use super::postgres_common::{body, empty, long_running, page, query, typed, visible};
use super::postgres_convert as convert;
use crate::error::ApiResult;
use crate::extract::from_json;
use crate::state::AppState;
use kiln_identity::Caller;

// ---- endpoints -----------------------------------------------------------------

pub(super) async fn create_endpoint(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    bytes: Bytes,
) -> ApiResult<Json<wire::Operation>> {
    let p = visible(&state, &caller, &project)?;
    let q: wire::CreateQuery = query(&raw)?;
    let endpoint_id = q
        .endpoint_id
        .ok_or_else(|| Error::invalid("endpoint_id is required"))?;
    let request: wire::Endpoint = body(&bytes)?;
    let spec = request.spec.clone().unwrap_or_default();
    let endpoint_type = EndpointType::parse(
        spec.endpoint_type
            .as_deref()
            .ok_or_else(|| Error::invalid("spec.endpoint_type is required"))?,
    )?;
    let new = NewEndpoint {
        endpoint_type,
        settings: convert::endpoint_settings(&p.defaults, &spec)?,
        disabled: spec.disabled.unwrap_or(false),
    };
    let lakebase = state.lakebase.clone();
    let name = format!("projects/{project}/branches/{branch}/endpoints/{endpoint_id}");
    long_running(&state, &caller, name, "Endpoint", async move {
        let record = lakebase
            .create_endpoint(&project, &branch, &endpoint_id, new)
            .await?;
        Ok(typed("Endpoint", convert::endpoint(&lakebase, &record)))
    })
    .await
}

pub(super) async fn list_endpoints(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<wire::ListEndpointsResponse>> {
    visible(&state, &caller, &project)?;
    let q: wire::ListQuery = query(&raw)?;
    let all = state
        .lakebase
        .endpoints(&project, &branch)?
        .iter()
        .map(|e| (e.endpoint_id.clone(), convert::endpoint(&state.lakebase, e)))
        .collect();
    let (endpoints, next_page_token) = page(all, &q);
    Ok(Json(wire::ListEndpointsResponse {
        endpoints,
        next_page_token,
    }))
}

pub(super) async fn get_endpoint(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch, endpoint)): Path<(String, String, String)>,
) -> ApiResult<Json<wire::Endpoint>> {
    visible(&state, &caller, &project)?;
    let record = state.lakebase.endpoint(&project, &branch, &endpoint)?;
    Ok(Json(convert::endpoint(&state.lakebase, &record)))
}

pub(super) async fn update_endpoint(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch, endpoint)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
    bytes: Bytes,
) -> ApiResult<Json<wire::Operation>> {
    visible(&state, &caller, &project)?;
    let current = state.lakebase.endpoint(&project, &branch, &endpoint)?;
    let q: wire::UpdateQuery = query(&raw)?;
    let paths = convert::mask(q.update_mask.as_deref())?;
    let patch = convert::endpoint_patch(&current, &body(&bytes)?, &paths)?;
    let lakebase = state.lakebase.clone();
    long_running(&state, &caller, current.name(), "Endpoint", async move {
        let record = lakebase
            .update_endpoint(&project, &branch, &endpoint, patch)
            .await?;
        Ok(typed("Endpoint", convert::endpoint(&lakebase, &record)))
    })
    .await
}

pub(super) async fn delete_endpoint(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch, endpoint)): Path<(String, String, String)>,
) -> ApiResult<Json<wire::Operation>> {
    visible(&state, &caller, &project)?;
    let record = state.lakebase.endpoint(&project, &branch, &endpoint)?;
    let lakebase = state.lakebase.clone();
    long_running(&state, &caller, record.name(), "Endpoint", async move {
        lakebase
            .delete_endpoint(&project, &branch, &endpoint)
            .await?;
        Ok(empty())
    })
    .await
}

// ---- credentials ---------------------------------------------------------------

/// A token for `endpoint`, valid for `ttl` or until `expire_time` (5–60 min;
/// one hour by default).
pub(super) async fn generate_credential(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    bytes: Bytes,
) -> ApiResult<Json<wire::DatabaseCredential>> {
    let req: wire::GenerateDatabaseCredential = from_json(&bytes)?;
    let name = req
        .endpoint
        .ok_or_else(|| Error::invalid("endpoint is required"))?;
    let parts: Vec<&str> = name.split('/').collect();
    let [_, project, _, branch, _, endpoint] = parts.as_slice() else {
        return Err(Error::invalid(format!(
            "endpoint must be projects/{{project}}/branches/{{branch}}/endpoints/{{endpoint}}, not '{name}'"
        ))
        .into());
    };
    // The project's owner and admins, and anyone with an identity role on the branch.
    if let Err(err) = visible(&state, &caller, project) {
        if !state
            .lakebase
            .has_identity_role(project, branch, &caller.user_name)
        {
            return Err(err.into());
        }
    }
    state.lakebase.endpoint(project, branch, endpoint)?;
    let now = now_ms();
    let expire_ms = match (req.ttl.as_deref(), req.expire_time.as_deref()) {
        (Some(_), Some(_)) => return Err(Error::invalid("Set either ttl or expire_time").into()),
        (Some(ttl), None) => now + parse_duration("ttl", ttl)? as i64 * 1000,
        (None, Some(t)) => parse_timestamp("expire_time", t)?,
        (None, None) => now + 3_600_000,
    };
    let min = state.lakebase.config.min_credential_secs as i64 * 1000;
    if expire_ms - now < min || expire_ms - now > 3_600_000 {
        return Err(Error::new(
            ErrorCode::InvalidParameterValue,
            format!("The credential must live between {}s and 3600s", min / 1000),
        )
        .into());
    }
    let token = state
        .lakebase
        .credentials
        .issue(&caller.user_name, &name, expire_ms)?;
    Ok(Json(wire::DatabaseCredential {
        token,
        expire_time: kiln_core::time::rfc3339(expire_ms),
    }))
}

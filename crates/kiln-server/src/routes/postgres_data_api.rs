//! The Lakebase Data API: its configuration (`w.postgres.*_data_api`) and
//! the PostgREST-compatible HTTP API it enables, served at
//! `/lakebase/data-api/{project}/{branch}/{database}/…` (`status.url`).
//! That path authenticates by itself: a Lakebase credential for an endpoint
//! of the branch, or a workspace token; the request then runs as the
//! caller's Postgres role.

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, MethodRouter};
use axum::{Extension, Json, Router};
use kiln_api::postgres as wire;
use kiln_core::time::rfc3339;
use kiln_core::{Error, Result};
use kiln_lakebase::data_api::exec::{Method as RestMethod, Resolution, RestRequest};
use kiln_lakebase::data_api::{DataApiPatch, DataApiRecord, Failure, RestError};
use kiln_lakebase::model::parse_duration;

use super::postgres::{body, empty, get_op, long_running, query, typed, visible};
use super::{ep, Endpoint};
use crate::error::ApiResult;
use crate::listen::Scheme;
use crate::state::AppState;
use kiln_identity::Caller;

pub use kiln_api::postgres::DATA_API_PREFIX as PREFIX;

pub fn endpoints() -> Vec<Endpoint> {
    use axum::http::Method as M;
    let api =
        "/api/2.0/postgres/projects/{project}/branches/{branch}/databases/{database}/data-api";
    vec![
        ep(
            M::POST,
            api,
            "postgres/create_data_api",
            axum::routing::post(create),
        ),
        ep(M::GET, api, "postgres/get_data_api", get(get_config)),
        ep(
            M::PATCH,
            api,
            "postgres/update_data_api",
            axum::routing::patch(update),
        ),
        ep(
            M::DELETE,
            api,
            "postgres/delete_data_api",
            axum::routing::delete(delete),
        ),
        ep(
            M::GET,
            format!("{api}/operations/{{op}}"),
            "postgres/get_operation (data-api)",
            get(operation),
        ),
    ]
}

/// The Data API itself (all methods, outside the upstream route table).
pub fn router() -> Router<AppState> {
    let serve: MethodRouter<AppState> = any(serve_path);
    Router::new()
        .route(
            "/lakebase/data-api/{project}/{branch}/{database}",
            any(serve_root),
        )
        .route(
            "/lakebase/data-api/{project}/{branch}/{database}/",
            any(serve_root),
        )
        .route(
            "/lakebase/data-api/{project}/{branch}/{database}/{*path}",
            serve,
        )
}

type Database = Path<(String, String, String)>;

fn resource(project: &str, branch: &str, database: &str) -> String {
    format!("projects/{project}/branches/{branch}/databases/{database}/data-api")
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch, database)): Database,
    headers: HeaderMap,
    uri: axum::http::Uri,
    scheme: Option<Extension<Scheme>>,
    bytes: Bytes,
) -> ApiResult<Json<wire::Operation>> {
    visible(&state, &caller, &project)?;
    let api: wire::DataApi = body(&bytes)?;
    let patch = patch_of(api.spec.unwrap_or_default(), None)?;
    state.lakebase.database(&project, &branch, &database)?;
    let (lakebase, base) = (
        state.lakebase.clone(),
        super::identity::base_url(&headers, &uri, scheme),
    );
    let name = resource(&project, &branch, &database);
    long_running(&state, &caller, name, "DataApi", async move {
        let record = lakebase
            .create_data_api(&project, &branch, &database, patch)
            .await?;
        Ok(typed("DataApi", to_wire(&record, &base)))
    })
    .await
}

async fn get_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch, database)): Database,
    headers: HeaderMap,
    uri: axum::http::Uri,
    scheme: Option<Extension<Scheme>>,
) -> ApiResult<Json<wire::DataApi>> {
    visible(&state, &caller, &project)?;
    let record = state.lakebase.data_api(&project, &branch, &database)?;
    let base = super::identity::base_url(&headers, &uri, scheme);
    Ok(Json(to_wire(&record, &base)))
}

#[allow(clippy::too_many_arguments)]
async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch, database)): Database,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    uri: axum::http::Uri,
    scheme: Option<Extension<Scheme>>,
    bytes: Bytes,
) -> ApiResult<Json<wire::Operation>> {
    visible(&state, &caller, &project)?;
    state.lakebase.data_api(&project, &branch, &database)?;
    let q: wire::UpdateQuery = query(&raw)?;
    let paths = super::postgres_convert::mask(q.update_mask.as_deref())?;
    let api: wire::DataApi = body(&bytes)?;
    let patch = patch_of(api.spec.unwrap_or_default(), Some(&paths))?;
    let (lakebase, base) = (
        state.lakebase.clone(),
        super::identity::base_url(&headers, &uri, scheme),
    );
    let name = resource(&project, &branch, &database);
    long_running(&state, &caller, name, "DataApi", async move {
        let record = lakebase
            .update_data_api(&project, &branch, &database, patch)
            .await?;
        Ok(typed("DataApi", to_wire(&record, &base)))
    })
    .await
}

async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch, database)): Database,
) -> ApiResult<Json<wire::Operation>> {
    visible(&state, &caller, &project)?;
    state.lakebase.data_api(&project, &branch, &database)?;
    let lakebase = state.lakebase.clone();
    let name = resource(&project, &branch, &database);
    long_running(&state, &caller, name, "DataApi", async move {
        lakebase
            .delete_data_api(&project, &branch, &database)
            .await?;
        Ok(empty())
    })
    .await
}

async fn operation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch, database, op)): Path<(String, String, String, String)>,
) -> ApiResult<Json<wire::Operation>> {
    get_op(
        &state,
        &caller,
        format!("{}/operations/{op}", resource(&project, &branch, &database)),
    )
}

/// The fields a create sets, or an update's masked fields (`spec.x` or `x`).
fn patch_of(spec: wire::DataApiSpec, mask: Option<&[String]>) -> Result<DataApiPatch> {
    let wanted = |field: &str| {
        mask.is_none_or(|paths| {
            paths
                .iter()
                .any(|p| p == "spec" || p == field || p.strip_prefix("spec.") == Some(field))
        })
    };
    if let Some(paths) = mask {
        const KNOWN: &[&str] = &[
            "db_aggregates_enabled",
            "db_extra_search_path",
            "db_max_rows",
            "db_schemas",
            "jwt_cache_max_lifetime",
            "jwt_role_claim_key",
            "openapi_mode",
            "server_cors_allowed_origins",
            "server_timing_enabled",
        ];
        if let Some(p) = paths.iter().find(|p| {
            let f = p.strip_prefix("spec.").unwrap_or(p);
            *p != "spec" && !KNOWN.contains(&f)
        }) {
            return Err(Error::invalid(format!("Field '{p}' cannot be updated")));
        }
    }
    let jwt = match spec
        .jwt_cache_max_lifetime
        .filter(|_| wanted("jwt_cache_max_lifetime"))
    {
        Some(d) => Some(parse_duration("jwt_cache_max_lifetime", &d)?),
        None => None,
    };
    Ok(DataApiPatch {
        db_schemas: spec.db_schemas.filter(|_| wanted("db_schemas")),
        db_extra_search_path: spec
            .db_extra_search_path
            .filter(|_| wanted("db_extra_search_path")),
        db_max_rows: spec.db_max_rows.filter(|_| wanted("db_max_rows")),
        db_aggregates_enabled: spec
            .db_aggregates_enabled
            .filter(|_| wanted("db_aggregates_enabled")),
        jwt_cache_max_lifetime_secs: jwt,
        jwt_role_claim_key: spec
            .jwt_role_claim_key
            .filter(|_| wanted("jwt_role_claim_key")),
        openapi_mode: spec.openapi_mode.filter(|_| wanted("openapi_mode")),
        server_cors_allowed_origins: spec
            .server_cors_allowed_origins
            .filter(|_| wanted("server_cors_allowed_origins")),
        server_timing_enabled: spec
            .server_timing_enabled
            .filter(|_| wanted("server_timing_enabled")),
    })
}

fn to_wire(r: &DataApiRecord, base: &str) -> wire::DataApi {
    let s = &r.spec;
    let spec = wire::DataApiSpec {
        db_aggregates_enabled: Some(s.db_aggregates_enabled),
        db_extra_search_path: Some(s.db_extra_search_path.clone()),
        db_max_rows: s.db_max_rows,
        db_schemas: Some(s.db_schemas.clone()),
        jwt_cache_max_lifetime: Some(format!("{}s", s.jwt_cache_max_lifetime_secs)),
        jwt_role_claim_key: Some(s.jwt_role_claim_key.clone()),
        openapi_mode: Some(s.openapi_mode.clone()),
        server_cors_allowed_origins: Some(s.server_cors_allowed_origins.clone()),
        server_timing_enabled: Some(s.server_timing_enabled),
        ..Default::default()
    };
    let status = wire::DataApiSpec {
        available_schemas: Some(r.available_schemas.clone()),
        url: Some(format!(
            "{base}{PREFIX}{}/{}/{}",
            r.project_id, r.branch_id, r.database_id
        )),
        ..spec.clone()
    };
    wire::DataApi {
        name: Some(r.name()),
        parent: Some(r.database_name()),
        create_time: Some(rfc3339(r.create_ms)),
        update_time: Some(rfc3339(r.update_ms)),
        spec: Some(spec),
        status: Some(status),
    }
}

// ---- the PostgREST-compatible API ------------------------------------------------

async fn serve_root(
    State(state): State<AppState>,
    Path((project, branch, database)): Database,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    bytes: Bytes,
) -> Response {
    let target = (project, branch, database, String::new());
    super::data_api_http::serve(&state, target, method, &headers, raw, bytes).await
}

async fn serve_path(
    State(state): State<AppState>,
    Path(target): Path<(String, String, String, String)>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    bytes: Bytes,
) -> Response {
    super::data_api_http::serve(&state, target, method, &headers, raw, bytes).await
}

/// The HTTP status PostgREST answers for a kind of failure.
pub(super) fn failure_status(kind: Failure) -> StatusCode {
    match kind {
        Failure::BadRequest => StatusCode::BAD_REQUEST,
        Failure::Unauthenticated => StatusCode::UNAUTHORIZED,
        Failure::Forbidden => StatusCode::FORBIDDEN,
        Failure::NotFound => StatusCode::NOT_FOUND,
        Failure::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Failure::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
        Failure::Conflict => StatusCode::CONFLICT,
        Failure::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Failure::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        Failure::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        Failure::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Failure::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

pub(super) fn rest_error(err: &RestError) -> Response {
    let status = failure_status(err.kind);
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        Body::from(err.body()),
    )
        .into_response()
}

/// Decodes what PostgREST reads from the request's headers.
pub(super) fn rest_request(
    method: RestMethod,
    path: String,
    headers: &HeaderMap,
    raw: Option<String>,
    bytes: &Bytes,
) -> std::result::Result<RestRequest, RestError> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let prefer: Vec<String> = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_ascii_lowercase())
        .collect();
    let has = |p: &str| prefer.iter().any(|x| x == p);
    let profile = match method {
        RestMethod::Get | RestMethod::Head => text("accept-profile"),
        _ => text("content-profile"),
    };
    let body = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(serde_json::from_slice(bytes).map_err(|e| {
            RestError::new(
                Failure::BadRequest,
                "PGRST102",
                format!("Empty or invalid json: {e}"),
            )
        })?)
    };
    Ok(RestRequest {
        method,
        path,
        profile: (!profile.is_empty()).then(|| profile.to_string()),
        pairs: form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        body,
        represent: has("return=representation"),
        count: prefer.iter().any(|p| p.starts_with("count=")),
        resolution: if has("resolution=merge-duplicates") {
            Some(Resolution::Merge)
        } else if has("resolution=ignore-duplicates") {
            Some(Resolution::Ignore)
        } else {
            None
        },
        missing_default: has("missing=default"),
        singular: text("accept").contains("application/vnd.pgrst.object"),
        range: range(text("range"))?,
    })
}

/// `Range: 0-9` (items); a last item before the first is unsatisfiable (416).
fn range(value: &str) -> std::result::Result<Option<(u64, Option<u64>)>, RestError> {
    let Some((first, last)) = value.trim().trim_start_matches("items=").split_once('-') else {
        return Ok(None);
    };
    let Ok(first) = first.trim().parse::<u64>() else {
        return Ok(None);
    };
    let last = last.trim().parse::<u64>().ok();
    if last.is_some_and(|l| l < first) {
        return Err(RestError::new(
            Failure::RangeNotSatisfiable,
            "PGRST103",
            "Requested range not satisfiable",
        ));
    }
    Ok(Some((first, last)))
}

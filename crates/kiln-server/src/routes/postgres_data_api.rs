//! The Lakebase Data API: its configuration (`w.postgres.*_data_api`) and
//! the PostgREST-compatible HTTP API it enables, served at
//! `/lakebase/data-api/{project}/{branch}/{database}/…` (`status.url`).
//! That path authenticates by itself: a Lakebase credential for an endpoint
//! of the branch, or a workspace token; the request then runs as the
//! caller's Postgres role.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::routing::{any, get, MethodRouter};
use axum::{Extension, Json, Router};
use kiln_api::postgres as wire;
use kiln_core::time::rfc3339;
use kiln_core::{Error, Result};
use kiln_lakebase::data_api::{DataApiPatch, DataApiRecord};
use kiln_lakebase::model::parse_duration;

use super::postgres_common::{body, empty, get_op, long_running, query, typed, visible};
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

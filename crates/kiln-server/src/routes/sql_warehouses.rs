//! SQL warehouses (`/api/2.0/sql/warehouses`), the workspace warehouse
//! config and the legacy data sources list. Every call checks the caller's
//! level on the warehouse (CAN_USE < CAN_MONITOR < CAN_MANAGE < IS_OWNER;
//! the creator owns it); lists are filtered per caller.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::routing::{delete, get, post, put};
use axum::{Extension, Json};
use kiln_api::sql::*;
use kiln_core::{Error, Result};
use kiln_identity::Caller;
use kiln_sql::warehouse::WarehouseRecord;
use serde_json::{json, Map, Value};

use super::{ep, todo_ep, Endpoint};
use crate::access::principal;
use crate::error::ApiResult;
use crate::extract::Params;
use crate::state::AppState;

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    let p = "/api/2.0/sql/warehouses";
    vec![
        ep(M::POST, p, "warehouses/create", post(create)),
        ep(M::GET, p, "warehouses/list", get(list)),
        ep(M::GET, format!("{p}/{{id}}"), "warehouses/get", get(read)),
        ep(
            M::DELETE,
            format!("{p}/{{id}}"),
            "warehouses/delete",
            delete(remove),
        ),
        ep(
            M::POST,
            format!("{p}/{{id}}/edit"),
            "warehouses/edit",
            post(edit),
        ),
        ep(
            M::POST,
            format!("{p}/{{id}}/start"),
            "warehouses/start",
            post(start),
        ),
        ep(
            M::POST,
            format!("{p}/{{id}}/stop"),
            "warehouses/stop",
            post(stop),
        ),
        ep(
            M::GET,
            "/api/2.0/sql/config/warehouses",
            "warehouses/get-workspace-warehouse-config",
            get(get_config),
        ),
        ep(
            M::PUT,
            "/api/2.0/sql/config/warehouses",
            "warehouses/set-workspace-warehouse-config",
            put(set_config),
        ),
        ep(
            M::GET,
            "/api/2.0/preview/sql/data_sources",
            "data-sources/list",
            get(data_sources),
        ),
        todo_ep(
            M::POST,
            "/api/warehouses/v1/default-warehouse-overrides",
            "warehouses/create-default-warehouse-override",
        ),
        todo_ep(
            M::GET,
            "/api/warehouses/v1/default-warehouse-overrides",
            "warehouses/list-default-warehouse-overrides",
        ),
    ]
}

/// Fails unless the caller holds `level` on the warehouse.
pub fn require_warehouse(
    state: &AppState,
    caller: &Caller,
    id: &str,
    level: &str,
) -> Result<WarehouseRecord> {
    let w = state.warehouses.get(id)?;
    if w.state == kiln_sql::lifecycle::WarehouseState::Deleted {
        return Err(kiln_sql::warehouses::not_found(id));
    }
    state.permissions.require(
        &principal(state, caller),
        "warehouses",
        &[("warehouses", id)],
        Some(&w.creator_name),
        level,
        &format!("warehouse {id}"),
    )?;
    Ok(w)
}

/// The creator of a warehouse that exists (not deleted).
pub fn require_existing(state: &AppState, id: &str) -> Result<String> {
    let w = state.warehouses.get(id)?;
    if w.state == kiln_sql::lifecycle::WarehouseState::Deleted {
        return Err(kiln_sql::warehouses::not_found(id));
    }
    Ok(w.creator_name)
}

fn can_use(state: &AppState, caller: &Caller, w: &WarehouseRecord) -> bool {
    require_warehouse(state, caller, &w.id, "CAN_USE").is_ok()
}

/// Where clients connect: the HTTPS port when Kiln serves one.
fn connection(state: &AppState, headers: &HeaderMap, uri: &Uri, id: &str) -> (String, OdbcParams) {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("127.0.0.1");
    let hostname = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h.to_string(),
        _ => host.to_string(),
    };
    let https = state.config.server.https_port;
    let (port, protocol) = if https != 0 {
        (https, "https")
    } else {
        (state.config.port, "http")
    };
    let path = format!("/sql/1.0/warehouses/{id}");
    let ssl = u8::from(protocol == "https");
    let jdbc = format!(
        "jdbc:databricks://{hostname}:{port}/default;transportMode=http;ssl={ssl};AuthMech=3;httpPath={path};"
    );
    (
        jdbc,
        OdbcParams {
            hostname,
            path,
            port,
            protocol: protocol.into(),
        },
    )
}

fn render(state: &AppState, headers: &HeaderMap, uri: &Uri, w: &WarehouseRecord) -> Warehouse {
    let (jdbc_url, odbc_params) = connection(state, headers, uri, &w.id);
    let running = state.warehouses.running_engines(w).len();
    let health = match (&w.failure, w.state) {
        (Some(why), _) => EndpointHealth {
            status: "FAILED".into(),
            summary: Some("The warehouse's engines did not start.".into()),
            message: Some(why.clone()),
        },
        (None, kiln_sql::lifecycle::WarehouseState::Running) => EndpointHealth {
            status: "HEALTHY".into(),
            summary: None,
            message: None,
        },
        _ => EndpointHealth {
            status: "STATUS_UNSPECIFIED".into(),
            summary: None,
            message: None,
        },
    };
    Warehouse {
        id: w.id.clone(),
        settings: w.settings.clone(),
        state: w.state.as_str().into(),
        health,
        num_clusters: running as i64,
        num_active_sessions: state
            .sql_protocol
            .sessions_on(&kiln_sql::protocol::Target::Warehouse(w.id.clone()))
            as i64,
        creator_name: w.creator_name.clone(),
        jdbc_url,
        odbc_params,
    }
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(body): Params<Value>,
) -> ApiResult<Json<CreateWarehouseResponse>> {
    crate::access::require_code_execution(&state, &caller)?;
    let w = state.warehouses.create(&caller.user_name, body).await?;
    Ok(Json(CreateWarehouseResponse { id: w.id }))
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult<Json<ListWarehousesResponse>> {
    let warehouses = state
        .warehouses
        .list()
        .iter()
        .filter(|w| can_use(&state, &caller, w))
        .map(|w| render(&state, &headers, &uri, w))
        .collect();
    Ok(Json(ListWarehousesResponse { warehouses }))
}

async fn read(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> ApiResult<Json<Warehouse>> {
    let w = state.warehouses.get(&id)?;
    if w.state != kiln_sql::lifecycle::WarehouseState::Deleted {
        require_warehouse(&state, &caller, &id, "CAN_USE")?;
    } else if !caller.admin && w.creator_name != caller.user_name {
        return Err(kiln_sql::warehouses::not_found(&id).into());
    }
    Ok(Json(render(&state, &headers, &uri, &w)))
}

async fn edit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Params(body): Params<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    require_warehouse(&state, &caller, &id, "CAN_MANAGE")?;
    state.warehouses.edit(&id, body).await?;
    Ok(Json(json!({})))
}

async fn start(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_warehouse(&state, &caller, &id, "CAN_USE")?;
    state.warehouses.start(&id).await?;
    Ok(Json(json!({})))
}

async fn stop(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_warehouse(&state, &caller, &id, "CAN_MANAGE")?;
    state.warehouses.stop(&id).await?;
    Ok(Json(json!({})))
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_warehouse(&state, &caller, &id, "CAN_MANAGE")?;
    state.warehouses.delete(&id).await?;
    state.permissions.forget("warehouses", &id)?;
    Ok(Json(json!({})))
}

async fn get_config(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(state.warehouses.config()?))
}

async fn set_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(body): Params<Value>,
) -> ApiResult<Json<Value>> {
    if !caller.admin {
        return Err(Error::permission_denied(
            "Only workspace admins may set the warehouse config.",
        )
        .into());
    }
    state.warehouses.set_config(body)?;
    Ok(Json(json!({})))
}

async fn data_sources(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Vec<DataSource>>> {
    Ok(Json(
        state
            .warehouses
            .list()
            .iter()
            .filter(|w| can_use(&state, &caller, w))
            .map(|w| DataSource {
                id: w.id.clone(),
                name: w.name().into(),
                warehouse_id: w.id.clone(),
                endpoint_id: w.id.clone(),
                type_: "databricks_internal".into(),
                syntax: "sql".into(),
                paused: i64::from(w.state != kiln_sql::lifecycle::WarehouseState::Running),
                view_only: false,
            })
            .collect(),
    ))
}

//! The Databricks SQL protocol's HTTP endpoints: Thrift TCLIService messages
//! POSTed to a warehouse (`/sql/1.0/warehouses/<id>`, and the older
//! `/sql/1.0/endpoints/<id>`) or to an all-purpose cluster
//! (`/sql/protocolv1/o/<org>/<cluster>`), authenticated like REST. The caller
//! needs CAN_USE on the warehouse (CAN_ATTACH_TO on the cluster).

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, Method, Response};
use axum::routing::post;
use axum::Extension;
use kiln_core::Error;
use kiln_identity::Caller;
use kiln_sql::protocol::{Caller as SqlCaller, Target};

use super::{ep, Endpoint};
use crate::error::ApiResult;
use crate::state::AppState;

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    vec![
        ep(
            M::POST,
            "/sql/1.0/warehouses/{id}",
            "sql-protocol/warehouse",
            post(warehouse),
        ),
        ep(
            M::POST,
            "/sql/1.0/endpoints/{id}",
            "sql-protocol/endpoint",
            post(warehouse),
        ),
        ep(
            M::POST,
            "/sql/protocolv1/o/{org}/{cluster}",
            "sql-protocol/cluster",
            post(cluster),
        ),
        ep(
            M::GET,
            "/api/2.0/connector-service/feature-flags/{driver}/{version}",
            "connector-service/feature-flags",
            axum::routing::get(feature_flags),
        ),
    ]
}

/// The SQL drivers ask which of their optional features the workspace turns
/// on (telemetry among them): none on Kiln.
async fn feature_flags() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"flags": [], "ttl_seconds": 3600}))
}

async fn answer(state: AppState, caller: SqlCaller, body: Bytes) -> ApiResult<Response<Body>> {
    let protocol = state.sql_protocol.clone();
    let out = tokio::task::spawn_blocking(move || protocol.process(caller, &body))
        .await
        .map_err(|e| Error::internal("the SQL protocol", e))??;
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-thrift")
        .body(Body::from(out))
        .map_err(|e| Error::internal("the SQL protocol", e).into())
}

async fn warehouse(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response<Body>> {
    crate::access::require_code_execution(&state, &caller)?;
    super::sql_warehouses::require_warehouse(&state, &caller, &id, "CAN_USE")?;
    let who = SqlCaller {
        user: caller.user_name.clone(),
        target: Target::Warehouse(id),
    };
    answer(state, who, body).await
}

async fn cluster(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((_org, cluster)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response<Body>> {
    crate::access::require_code_execution(&state, &caller)?;
    crate::access::require_cluster(&state, &caller, &cluster, "CAN_ATTACH_TO")?;
    let who = SqlCaller {
        user: caller.user_name.clone(),
        target: Target::Cluster(cluster),
    };
    answer(state, who, body).await
}

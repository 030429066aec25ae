//! REST API 1.2 clusters: list, status, restart (camelCase, `clusterId`).

use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};
use axum::{Extension, Json};
use kiln_api::clusters_v12 as wire;
use kiln_compute::lifecycle::ClusterState;
use kiln_store::ClusterRecord;

use super::{ep, Endpoint};
use crate::access::{can_see_cluster, require_cluster};
use crate::error::ApiResult;
use crate::extract::Params;
use crate::state::AppState;
use kiln_identity::Caller;

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        ep(
            Method::GET,
            "/api/1.2/clusters/list",
            "clusters/list (1.2)",
            get(list_clusters),
        ),
        ep(
            Method::GET,
            "/api/1.2/clusters/status",
            "clusters/status (1.2)",
            get(cluster_status),
        ),
        ep(
            Method::POST,
            "/api/1.2/clusters/restart",
            "clusters/restart (1.2)",
            post(restart_cluster),
        ),
    ]
}

fn info(record: &ClusterRecord) -> wire::ClusterInfoV12 {
    let state = record.state;
    wire::ClusterInfoV12 {
        id: record.cluster_id.clone(),
        name: record.config.cluster_name.clone(),
        status: state.status_v12().into(),
        driver_ip: if state == ClusterState::Running {
            "127.0.0.1".into()
        } else {
            String::new()
        },
        jdbc_port: 0,
        num_workers: record.config.num_workers,
    }
}

async fn list_clusters(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Vec<wire::ClusterInfoV12>>> {
    let all = state.clusters.list()?;
    let visible = all
        .iter()
        .filter(|r| can_see_cluster(&state, &caller, &r.cluster_id, &r.owner));
    Ok(Json(visible.map(info).collect()))
}

async fn cluster_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::ClusterIdV12>,
) -> ApiResult<Json<wire::ClusterInfoV12>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_ATTACH_TO")?;
    Ok(Json(info(&state.clusters.get(&req.cluster_id)?)))
}

async fn restart_cluster(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::ClusterIdV12>,
) -> ApiResult<Json<wire::IdResponse>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_RESTART")?;
    state
        .clusters
        .restart(&caller.user_name, &req.cluster_id)
        .await?;
    Ok(Json(wire::IdResponse { id: req.cluster_id }))
}

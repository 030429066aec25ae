//! Clusters API handlers, served on `/api/2.0/clusters` (legacy clients) and
//! `/api/2.1/clusters` (the SDK) with the same semantics.

use axum::body::Bytes;
use axum::extract::{FromRequest, State};
use axum::http::header;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use kiln_api::clusters as wire;
use kiln_api::Empty;
use kiln_compute::clusters::SPARK_VERSIONS;
use kiln_core::{Error, Result};
use kiln_store::{ClusterRecord, EventQuery};

use super::clusters_convert::{config_from_spec, details, event, spec_json, NODE_TYPE_ID};
use super::{ep, Endpoint};
use crate::access::{can_see_cluster, require_cluster};
use crate::error::ApiResult;
use crate::extract::{declares_no_body, from_json, Params};
use crate::state::AppState;
use kiln_identity::Caller;

const DEFAULT_EVENTS_LIMIT: u64 = 50;
const MAX_EVENTS_LIMIT: u64 = 500;

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    let mut v = Vec::new();
    for p in ["/api/2.0/clusters", "/api/2.1/clusters"] {
        v.push(ep(
            M::POST,
            format!("{p}/create"),
            "clusters/create",
            post(create_cluster),
        ));
        v.push(ep(
            M::POST,
            format!("{p}/edit"),
            "clusters/edit",
            post(edit_cluster),
        ));
        v.push(ep(
            M::POST,
            format!("{p}/update"),
            "clusters/update",
            post(update_cluster),
        ));
        v.push(ep(
            M::GET,
            format!("{p}/get"),
            "clusters/get",
            get(get_cluster),
        ));
        v.push(ep(
            M::GET,
            format!("{p}/list"),
            "clusters/list",
            get(list_clusters),
        ));
        v.push(ep(
            M::POST,
            format!("{p}/start"),
            "clusters/start",
            post(start_cluster),
        ));
        v.push(ep(
            M::POST,
            format!("{p}/restart"),
            "clusters/restart",
            post(restart_cluster),
        ));
        v.push(ep(
            M::POST,
            format!("{p}/delete"),
            "clusters/delete",
            post(delete_cluster),
        ));
        v.push(ep(
            M::POST,
            format!("{p}/permanent-delete"),
            "clusters/permanent-delete",
            post(permanent_delete_cluster),
        ));
        v.push(ep(
            M::POST,
            format!("{p}/resize"),
            "clusters/resize",
            post(resize_cluster),
        ));
        v.push(ep(
            M::POST,
            format!("{p}/events"),
            "clusters/events",
            post(get_events),
        ));
        v.push(ep(
            M::POST,
            format!("{p}/pin"),
            "clusters/pin",
            post(pin_cluster),
        ));
        v.push(ep(
            M::POST,
            format!("{p}/unpin"),
            "clusters/unpin",
            post(unpin_cluster),
        ));
        v.push(ep(
            M::POST,
            format!("{p}/change-owner"),
            "clusters/change-owner",
            post(change_owner),
        ));
        v.push(ep(
            M::GET,
            format!("{p}/list-node-types"),
            "clusters/list-node-types",
            get(list_node_types),
        ));
        v.push(ep(
            M::GET,
            format!("{p}/spark-versions"),
            "clusters/spark-versions",
            get(spark_versions),
        ));
        v.push(ep(
            M::GET,
            format!("{p}/list-zones"),
            "clusters/list-zones",
            get(list_zones),
        ));
    }
    v
}

async fn create_cluster(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(spec): Params<wire::CreateCluster>,
) -> ApiResult<Json<wire::CreateClusterResponse>> {
    let record = state
        .clusters
        .create(&caller.user_name, config_from_spec(spec)?)
        .await?;
    Ok(Json(wire::CreateClusterResponse {
        cluster_id: record.cluster_id,
    }))
}

async fn edit_cluster(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::EditCluster>,
) -> ApiResult<Json<Empty>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_MANAGE")?;
    let config = config_from_spec(req.spec)?;
    state
        .clusters
        .edit(&caller.user_name, &req.cluster_id, config)
        .await?;
    Ok(Json(Empty {}))
}

async fn update_cluster(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::UpdateCluster>,
) -> ApiResult<Json<Empty>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_MANAGE")?;
    let record = state.clusters.get(&req.cluster_id)?;
    let mut spec = spec_json(&record.config);
    let fields: Vec<&str> = req
        .update_mask
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    if fields.is_empty() {
        return Err(Error::invalid("update_mask must name at least one field").into());
    }
    for field in fields {
        if field == "cluster_id" {
            return Err(Error::invalid("cluster_id cannot be updated").into());
        }
        match req.cluster.get(field) {
            Some(value) => spec.insert(field.into(), value.clone()),
            None => spec.remove(field),
        };
    }
    let body = serde_json::to_vec(&spec).map_err(|e| Error::internal("update cluster", e))?;
    let config = config_from_spec(from_json(&body)?)?;
    state
        .clusters
        .edit(&caller.user_name, &req.cluster_id, config)
        .await?;
    Ok(Json(Empty {}))
}

async fn get_cluster(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::GetCluster>,
) -> ApiResult<Json<wire::ClusterDetails>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_ATTACH_TO")?;
    let record = state.clusters.get(&req.cluster_id)?;
    Ok(Json(details(&record, state.host)))
}

/// clusters/list, the hottest read: answered from a cache keyed on the query
/// string and the cluster change counter (a body-less request only).
async fn list_clusters(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    request: axum::extract::Request,
) -> ApiResult<Response> {
    // Admins see every cluster; others only those they may attach to.
    let viewer = if caller.admin {
        String::new()
    } else {
        caller.principal_id.clone()
    };
    let query = format!("{viewer}\u{0}{}", request.uri().query().unwrap_or_default());
    let version = (state.clusters.version(), state.permissions.version());
    let bodyless = declares_no_body(&request);
    if bodyless {
        if let Some(body) = state.list_cache.get(&query, version) {
            return Ok(json_bytes(body));
        }
    }
    // The parameters are read on a miss only (a hit's query was valid).
    let Params(req) = Params::<wire::ListClusters>::from_request(request, &state).await?;
    let body = serde_json::to_vec(&list_response(&state, &caller, &req)?)
        .map_err(|e| Error::internal("list clusters", e))?;
    let body = Bytes::from(body);
    if bodyless {
        state.list_cache.put(query, version, body.clone());
    }
    Ok(json_bytes(body))
}

fn json_bytes(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn list_response(
    state: &AppState,
    caller: &Caller,
    req: &wire::ListClusters,
) -> Result<wire::ListClustersResponse> {
    let mut records: Vec<ClusterRecord> = state
        .clusters
        .list()?
        .into_iter()
        .filter(|r| {
            matches_filter(r, req) && can_see_cluster(state, caller, &r.cluster_id, &r.owner)
        })
        .collect();
    sort_clusters(&mut records, req);
    let offset = match req.page_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => token
            .parse::<usize>()
            .map_err(|_| Error::invalid(format!("Invalid page_token: {token}")))?,
        None => 0,
    };
    let size = req
        .page_size
        .filter(|s| *s > 0)
        .map(|s| s as usize)
        .unwrap_or(usize::MAX);
    let total = records.len();
    let end = offset.saturating_add(size).min(total);
    let page = records.get(offset.min(total)..end).unwrap_or_default();
    Ok(wire::ListClustersResponse {
        clusters: page.iter().map(|r| details(r, state.host)).collect(),
        next_page_token: (end < total).then(|| end.to_string()),
        prev_page_token: (offset > 0 && size != usize::MAX)
            .then(|| offset.saturating_sub(size).to_string()),
    })
}

fn matches_filter(record: &ClusterRecord, req: &wire::ListClusters) -> bool {
    let state_ok = req.filter_cluster_states.is_empty()
        || req.filter_cluster_states.iter().any(|s| {
            serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(|v| v == record.state.as_str()))
                .unwrap_or(false)
        });
    let source_ok = req.filter_cluster_sources.is_empty()
        || req.filter_cluster_sources.iter().any(|s| {
            serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(|v| v == record.config.cluster_source))
                .unwrap_or(false)
        });
    let pinned_ok = req.filter_is_pinned.is_none_or(|p| p == record.pinned);
    let policy_ok = req.filter_policy_id.as_deref().is_none_or(|p| {
        record
            .config
            .other
            .get("policy_id")
            .and_then(|v| v.as_str())
            == Some(p)
    });
    state_ok && source_ok && pinned_ok && policy_ok
}

/// DEFAULT order: running first, then pinned, then by name; CLUSTER_NAME sorts by name.
fn sort_clusters(records: &mut [ClusterRecord], req: &wire::ListClusters) {
    let by_name = req.sort_field == Some(wire::ListClustersSortByField::ClusterName);
    records.sort_by(|a, b| {
        let name = a
            .config
            .cluster_name
            .cmp(&b.config.cluster_name)
            .then_with(|| a.cluster_id.cmp(&b.cluster_id));
        if by_name {
            return name;
        }
        let running = |r: &ClusterRecord| r.state != kiln_compute::lifecycle::ClusterState::Running;
        running(a)
            .cmp(&running(b))
            .then_with(|| b.pinned.cmp(&a.pinned))
            .then(name)
    });
    if req.sort_direction == Some(wire::SortDirection::Desc) {
        records.reverse();
    }
}

async fn start_cluster(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::ClusterIdRequest>,
) -> ApiResult<Json<Empty>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_RESTART")?;
    state
        .clusters
        .start(&caller.user_name, &req.cluster_id)
        .await?;
    Ok(Json(Empty {}))
}

async fn restart_cluster(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::ClusterIdRequest>,
) -> ApiResult<Json<Empty>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_RESTART")?;
    state
        .clusters
        .restart(&caller.user_name, &req.cluster_id)
        .await?;
    Ok(Json(Empty {}))
}

async fn delete_cluster(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::ClusterIdRequest>,
) -> ApiResult<Json<Empty>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_MANAGE")?;
    state
        .clusters
        .terminate(&caller.user_name, &req.cluster_id)
        .await?;
    Ok(Json(Empty {}))
}

async fn permanent_delete_cluster(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::ClusterIdRequest>,
) -> ApiResult<Json<Empty>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_MANAGE")?;
    state.clusters.permanent_delete(&req.cluster_id).await?;
    Ok(Json(Empty {}))
}

async fn resize_cluster(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::ResizeCluster>,
) -> ApiResult<Json<Empty>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_MANAGE")?;
    let autoscale = match req.autoscale {
        Some(a) if a.min_workers > a.max_workers || a.max_workers == 0 => {
            return Err(Error::invalid(
                "autoscale.max_workers must be positive and at least autoscale.min_workers",
            )
            .into())
        }
        other => other.map(|a| (a.min_workers, a.max_workers)),
    };
    let num_workers = match (req.num_workers, autoscale) {
        (None, None) => {
            return Err(Error::invalid("Either num_workers or autoscale must be provided.").into())
        }
        (n, _) => n.unwrap_or(0),
    };
    state
        .clusters
        .resize(&caller.user_name, &req.cluster_id, num_workers, autoscale)
        .await?;
    Ok(Json(Empty {}))
}

async fn pin_cluster(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::ClusterIdRequest>,
) -> ApiResult<Json<Empty>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_MANAGE")?;
    state
        .clusters
        .set_pinned(&caller.user_name, &req.cluster_id, true)
        .await?;
    Ok(Json(Empty {}))
}

async fn unpin_cluster(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::ClusterIdRequest>,
) -> ApiResult<Json<Empty>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_MANAGE")?;
    state
        .clusters
        .set_pinned(&caller.user_name, &req.cluster_id, false)
        .await?;
    Ok(Json(Empty {}))
}

async fn change_owner(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::ChangeClusterOwner>,
) -> ApiResult<Json<Empty>> {
    if !caller.admin {
        return Err(Error::permission_denied(
            "Only workspace admins can change a cluster's owner.",
        )
        .into());
    }
    if state.identity.by_name(&req.owner_username)?.is_none() {
        return Err(
            Error::not_found(format!("User {} does not exist.", req.owner_username)).into(),
        );
    }
    state
        .clusters
        .change_owner(&req.cluster_id, &req.owner_username)
        .await?;
    Ok(Json(Empty {}))
}

async fn get_events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::GetEvents>,
) -> ApiResult<Json<wire::GetEventsResponse>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_ATTACH_TO")?;
    let (query, limit) = event_query(&req)?;
    let (events, total) = state.clusters.events(&query)?;
    let next_offset = query.offset + events.len() as u64;
    let next_page = (next_offset < total).then(|| wire::GetEvents {
        offset: Some(next_offset),
        limit: Some(limit),
        page_size: None,
        page_token: None,
        ..req.clone()
    });
    Ok(Json(wire::GetEventsResponse {
        events: events.into_iter().map(event).collect(),
        next_page,
        total_count: total,
    }))
}

fn event_query(req: &wire::GetEvents) -> Result<(EventQuery, u64)> {
    let limit = req.page_size.or(req.limit).unwrap_or(DEFAULT_EVENTS_LIMIT);
    if limit == 0 || limit > MAX_EVENTS_LIMIT {
        return Err(Error::invalid(format!(
            "limit must be between 1 and {MAX_EVENTS_LIMIT}"
        )));
    }
    let offset = match req.page_token.as_deref().filter(|t| !t.is_empty()) {
        Some(t) => t
            .parse()
            .map_err(|_| Error::invalid(format!("Invalid page_token: {t}")))?,
        None => req.offset.unwrap_or(0),
    };
    let event_types = req
        .event_types
        .iter()
        .filter_map(|t| {
            serde_json::to_value(t)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
        })
        .collect();
    let query = EventQuery {
        cluster_id: req.cluster_id.clone(),
        start_time: req.start_time,
        end_time: req.end_time,
        event_types,
        descending: req.order != Some(wire::SortDirection::Asc),
        offset,
        limit,
    };
    Ok((query, limit))
}

async fn list_node_types(State(state): State<AppState>) -> Json<wire::ListNodeTypesResponse> {
    let local = node_type(
        NODE_TYPE_ID,
        state.host.memory_mb,
        state.host.cores,
        "The machine Kiln runs on (every cluster's engine runs here)".into(),
        state.host.disk_gb,
    );
    let mut node_types = vec![local];
    if let Some(k8s) = &state.clusters.settings().kubernetes {
        for n in k8s.node_types() {
            let description = n.description.clone().unwrap_or_else(|| {
                format!(
                    "Kubernetes worker pods of {} cores and {} MiB; the driver runs on Kiln's host",
                    n.num_cores, n.memory_mb
                )
            });
            let mut t = node_type(&n.node_type_id, n.memory_mb, n.num_cores, description, 0);
            t.display_order = node_types.len() as u32;
            t.node_instance_type.local_disks = 0;
            node_types.push(t);
        }
    }
    Json(wire::ListNodeTypesResponse { node_types })
}

fn node_type(
    id: &str,
    memory_mb: u64,
    num_cores: f64,
    description: String,
    disk_gb: u64,
) -> wire::NodeType {
    wire::NodeType {
        node_type_id: id.into(),
        memory_mb,
        num_cores,
        description,
        instance_type_id: id.into(),
        category: "General Purpose".into(),
        is_deprecated: false,
        num_gpus: 0,
        is_hidden: false,
        support_port_forwarding: false,
        photon_driver_capable: false,
        photon_worker_capable: false,
        display_order: 0,
        node_instance_type: wire::NodeInstanceType {
            instance_type_id: id.into(),
            local_disks: 1,
            local_disk_size_gb: disk_gb,
            local_nvme_disks: 0,
            local_nvme_disk_size_gb: 0,
        },
    }
}

async fn spark_versions() -> Json<wire::GetSparkVersionsResponse> {
    Json(wire::GetSparkVersionsResponse {
        versions: SPARK_VERSIONS
            .iter()
            .map(|(k, n)| wire::SparkVersion {
                key: (*k).into(),
                name: (*n).into(),
            })
            .collect(),
    })
}

async fn list_zones() -> Json<wire::ListAvailableZonesResponse> {
    Json(wire::ListAvailableZonesResponse {
        default_zone: "local".into(),
        zones: vec!["local".into()],
    })
}

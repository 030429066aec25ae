//! Lakebase snapshots (`w.postgres.create_snapshot`, `list_snapshots`,
//! `get_snapshot`, `delete_snapshot`); a branch restores one with
//! `spec.source_snapshot`.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::Method;
use axum::routing::{delete, get, post};
use axum::{Extension, Json};
use kiln_api::postgres as wire;
use kiln_core::time::{parse_rfc3339, rfc3339};
use kiln_core::{Error, Result};
use kiln_lakebase::model::parse_duration;
use kiln_lakebase::snapshots::{NewSnapshot, SnapshotRecord};
use kiln_lakebase::Lakebase;

use super::postgres::{body, empty, get_op, long_running, page, query, typed, visible};
use super::{ep, Endpoint};
use crate::error::ApiResult;
use crate::identity::Caller;
use crate::state::AppState;

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    let p = "/api/2.0/postgres/projects/{project}";
    let s = format!("{p}/snapshots/{{snapshot}}");
    vec![
        ep(
            M::POST,
            format!("{p}/snapshots"),
            "postgres/create_snapshot",
            post(create_snapshot),
        ),
        ep(
            M::GET,
            format!("{p}/snapshots"),
            "postgres/list_snapshots",
            get(list_snapshots),
        ),
        ep(
            M::GET,
            s.clone(),
            "postgres/get_snapshot",
            get(get_snapshot),
        ),
        ep(
            M::DELETE,
            s.clone(),
            "postgres/delete_snapshot",
            delete(delete_snapshot),
        ),
        ep(
            M::GET,
            format!("{s}/operations/{{op}}"),
            "postgres/get_operation (snapshot)",
            get(snapshot_operation),
        ),
    ]
}

async fn create_snapshot(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
    bytes: Bytes,
) -> ApiResult<Json<wire::Operation>> {
    visible(&state, &caller, &project)?;
    let q: wire::CreateSnapshotQuery = query(&raw)?;
    let snapshot_id = q
        .snapshot_id
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::invalid("snapshot_id is required"))?;
    let new = new_snapshot(body::<wire::Snapshot>(&bytes)?.spec.unwrap_or_default())?;
    let lakebase = state.lakebase.clone();
    let name = format!("projects/{project}/snapshots/{snapshot_id}");
    long_running(&state, &caller, name, "Snapshot", async move {
        let record = lakebase
            .create_snapshot(&project, &snapshot_id, new)
            .await?;
        Ok(typed("Snapshot", snapshot_wire(&lakebase, &record)))
    })
    .await
}

fn new_snapshot(spec: wire::SnapshotSpec) -> Result<NewSnapshot> {
    let now = kiln_core::time::now_ms();
    let expire_ms = match (&spec.ttl, &spec.expire_time, spec.no_expiry) {
        (Some(ttl), None, None | Some(false)) => {
            Some(now + parse_duration("ttl", ttl)? as i64 * 1000)
        }
        (None, Some(t), None | Some(false)) => Some(timestamp("expire_time", t)?),
        (None, None, _) => None,
        _ => {
            return Err(Error::invalid(
                "Set only one of ttl, expire_time and no_expiry",
            ))
        }
    };
    Ok(NewSnapshot {
        source_branch: spec.source_branch.unwrap_or_default(),
        source_lsn: spec.source_branch_lsn.filter(|l| !l.is_empty()),
        source_time_ms: spec
            .source_branch_time
            .as_deref()
            .map(|t| timestamp("source_branch_time", t))
            .transpose()?,
        expire_ms,
    })
}

fn timestamp(field: &str, value: &str) -> Result<i64> {
    parse_rfc3339(value).ok_or_else(|| {
        Error::invalid(format!(
            "Invalid timestamp for {field}: '{value}' (expected RFC 3339)"
        ))
    })
}

async fn list_snapshots(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<wire::ListSnapshotsResponse>> {
    visible(&state, &caller, &project)?;
    let q: wire::ListQuery = query(&raw)?;
    let all = state
        .lakebase
        .snapshots(&project)?
        .iter()
        .map(|s| (s.snapshot_id.clone(), snapshot_wire(&state.lakebase, s)))
        .collect();
    let (snapshots, next_page_token) = page(all, &q);
    Ok(Json(wire::ListSnapshotsResponse {
        snapshots,
        next_page_token,
    }))
}

async fn get_snapshot(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, snapshot)): Path<(String, String)>,
) -> ApiResult<Json<wire::Snapshot>> {
    visible(&state, &caller, &project)?;
    Ok(Json(snapshot_wire(
        &state.lakebase,
        &state.lakebase.snapshot(&project, &snapshot)?,
    )))
}

async fn delete_snapshot(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, snapshot)): Path<(String, String)>,
) -> ApiResult<Json<wire::Operation>> {
    visible(&state, &caller, &project)?;
    let record = state.lakebase.snapshot(&project, &snapshot)?;
    let lakebase = state.lakebase.clone();
    long_running(&state, &caller, record.name(), "Snapshot", async move {
        lakebase.delete_snapshot(&project, &snapshot).await?;
        Ok(empty())
    })
    .await
}

async fn snapshot_operation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, snapshot, op)): Path<(String, String, String)>,
) -> ApiResult<Json<wire::Operation>> {
    get_op(
        &state,
        &caller,
        format!("projects/{project}/snapshots/{snapshot}/operations/{op}"),
    )
}

fn snapshot_wire(lakebase: &Lakebase, s: &SnapshotRecord) -> wire::Snapshot {
    let spec = wire::SnapshotSpec {
        source_branch: Some(s.source_branch.clone()),
        source_branch_lsn: s.source_lsn.clone(),
        source_branch_time: s.source_time_ms.map(rfc3339),
        expire_time: s.expire_ms.map(rfc3339),
        no_expiry: s.expire_ms.is_none().then_some(true),
        ..Default::default()
    };
    wire::Snapshot {
        name: Some(s.name()),
        snapshot_id: Some(s.snapshot_id.clone()),
        uid: Some(s.uid.clone()),
        create_time: Some(rfc3339(s.create_ms)),
        status: Some(wire::SnapshotSpec {
            full_size_bytes: Some(lakebase.snapshot_size(s)),
            ..spec.clone()
        }),
        spec: Some(spec),
    }
}

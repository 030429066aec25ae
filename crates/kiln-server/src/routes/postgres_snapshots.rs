//! Lakebase snapshots (`w.postgres.create_snapshot`, `list_snapshots`,
//! `get_snapshot`, `delete_snapshot`); a branch restores one with
//! `spec.source_snapshot`.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::Method;
use axum::routing::{delete, get, post};
use axum::{Extension, Json};
use kiln_api::postgres as wire;
use kiln_core::time::rfc3339;
use kiln_core::{Error, Result};
use kiln_lakebase::model::{parse_duration, parse_timestamp};
use kiln_lakebase::schedules::{Cadence, ScheduleEntry, ScheduleRecord};
use kiln_lakebase::snapshots::{NewSnapshot, SnapshotRecord};
use kiln_lakebase::Lakebase;

use super::postgres_common::{body, empty, get_op, long_running, page, query, typed, visible};
use super::postgres_convert as convert;
use super::{ep, Endpoint};
use crate::error::ApiResult;
use crate::state::AppState;
use kiln_identity::Caller;

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
        ep(
            M::GET,
            format!("{p}/branches/{{branch}}/snapshot-schedule"),
            "postgres/get_snapshot_schedule",
            get(get_schedule),
        ),
        ep(
            M::PATCH,
            format!("{p}/branches/{{branch}}/snapshot-schedule"),
            "postgres/update_snapshot_schedule",
            axum::routing::patch(update_schedule),
        ),
        ep(
            M::GET,
            format!("{p}/branches/{{branch}}/snapshot-schedule/operations/{{op}}"),
            "postgres/get_operation (snapshot schedule)",
            get(schedule_operation),
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
    let expire_ms = convert::expiry_of(&spec.ttl, &spec.expire_time, spec.no_expiry)?.flatten();
    Ok(NewSnapshot {
        source_branch: spec.source_branch.unwrap_or_default(),
        source_lsn: spec.source_branch_lsn.filter(|l| !l.is_empty()),
        source_time_ms: spec
            .source_branch_time
            .as_deref()
            .map(|t| parse_timestamp("source_branch_time", t))
            .transpose()?,
        expire_ms,
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

const DAYS: [&str; 7] = [
    "MONDAY",
    "TUESDAY",
    "WEDNESDAY",
    "THURSDAY",
    "FRIDAY",
    "SATURDAY",
    "SUNDAY",
];

async fn get_schedule(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch)): Path<(String, String)>,
) -> ApiResult<Json<wire::SnapshotSchedule>> {
    visible(&state, &caller, &project)?;
    Ok(Json(schedule_wire(
        &state.lakebase.snapshot_schedule(&project, &branch)?,
    )))
}

async fn update_schedule(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    bytes: Bytes,
) -> ApiResult<Json<wire::Operation>> {
    visible(&state, &caller, &project)?;
    let q: wire::UpdateQuery = query(&raw)?;
    if q.update_mask.as_deref().map(str::trim) != Some("schedule") {
        return Err(
            Error::invalid("update_mask must be \"schedule\" (the only updatable path)").into(),
        );
    }
    let body: wire::SnapshotSchedule = body(&bytes)?;
    let entries = body
        .schedule
        .iter()
        .map(entry)
        .collect::<Result<Vec<_>>>()?;
    state.lakebase.branch(&project, &branch)?;
    let lakebase = state.lakebase.clone();
    let name = format!("projects/{project}/branches/{branch}/snapshot-schedule");
    long_running(&state, &caller, name, "SnapshotSchedule", async move {
        let record = lakebase
            .set_snapshot_schedule(&project, &branch, entries)
            .await?;
        Ok(typed("SnapshotSchedule", schedule_wire(&record)))
    })
    .await
}

async fn schedule_operation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((project, branch, op)): Path<(String, String, String)>,
) -> ApiResult<Json<wire::Operation>> {
    get_op(
        &state,
        &caller,
        format!("projects/{project}/branches/{branch}/snapshot-schedule/operations/{op}"),
    )
}

fn entry(c: &wire::ScheduleCadence) -> Result<ScheduleEntry> {
    let retention = c
        .retention
        .as_deref()
        .ok_or_else(|| Error::invalid("Each cadence needs a retention"))?;
    let hour = |at: &wire::CadenceAt| at.hour.unwrap_or(0);
    let cadence = match (&c.daily_schedule, &c.weekly_schedule, &c.monthly_schedule) {
        (Some(d), None, None) => Cadence::Daily { hour: hour(d) },
        (None, Some(w), None) => {
            let day = w.day_of_week.as_deref().unwrap_or_default();
            let index = DAYS
                .iter()
                .position(|d| *d == day)
                .ok_or_else(|| Error::invalid(format!("Invalid day_of_week '{day}'")))?;
            Cadence::Weekly {
                day_of_week: index as u32,
                hour: hour(w),
            }
        }
        (None, None, Some(m)) => Cadence::Monthly {
            day: m.day.unwrap_or(0),
            hour: hour(m),
        },
        _ => return Err(Error::invalid(
            "Each cadence sets exactly one of daily_schedule, weekly_schedule and monthly_schedule",
        )),
    };
    Ok(ScheduleEntry {
        cadence,
        retention_secs: parse_duration("retention", retention)?,
        last_due_ms: 0,
    })
}

fn schedule_wire(r: &ScheduleRecord) -> wire::SnapshotSchedule {
    let schedule = r
        .entries
        .iter()
        .map(|e| {
            let mut c = wire::ScheduleCadence {
                retention: Some(format!("{}s", e.retention_secs)),
                ..Default::default()
            };
            match e.cadence {
                Cadence::Daily { hour } => {
                    c.daily_schedule = Some(wire::CadenceAt {
                        hour: Some(hour),
                        ..Default::default()
                    })
                }
                Cadence::Weekly { day_of_week, hour } => {
                    c.weekly_schedule = Some(wire::CadenceAt {
                        hour: Some(hour),
                        day_of_week: DAYS.get(day_of_week as usize).map(|d| d.to_string()),
                        day: None,
                    })
                }
                Cadence::Monthly { day, hour } => {
                    c.monthly_schedule = Some(wire::CadenceAt {
                        hour: Some(hour),
                        day: Some(day),
                        day_of_week: None,
                    })
                }
            }
            c
        })
        .collect();
    wire::SnapshotSchedule {
        name: Some(r.name()),
        schedule,
    }
}

//! Notification destinations (`/api/2.0/notification-destinations`): where job
//! webhooks go. Anyone may list and read them (secret fields show only as
//! `<field>_set`); creating, changing and deleting them is for admins, as on
//! Databricks.

use axum::extract::{Path, State};
use axum::http::Method;
use axum::routing::{delete, get, patch, post};
use axum::{Extension, Json};
use kiln_api::notification_destinations::*;
use kiln_core::{Error, Result};
use kiln_identity::Caller;
use kiln_jobs::destinations::DestinationRecord;
use serde_json::{json, Value};

use super::{ep, offset_page, Endpoint};
use crate::error::ApiResult;
use crate::extract::Params;
use crate::state::AppState;

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    let p = "/api/2.0/notification-destinations";
    vec![
        ep(M::POST, p, "notification-destinations/create", post(create)),
        ep(M::GET, p, "notification-destinations/list", get(list)),
        ep(
            M::GET,
            format!("{p}/{{id}}"),
            "notification-destinations/get",
            get(read),
        ),
        ep(
            M::PATCH,
            format!("{p}/{{id}}"),
            "notification-destinations/update",
            patch(update),
        ),
        ep(
            M::DELETE,
            format!("{p}/{{id}}"),
            "notification-destinations/delete",
            delete(remove),
        ),
    ]
}

fn admins_only(caller: &Caller) -> Result<()> {
    if caller.admin {
        Ok(())
    } else {
        Err(Error::permission_denied(
            "Only workspace admins may manage notification destinations.",
        ))
    }
}

fn render(state: &AppState, d: &DestinationRecord) -> NotificationDestination {
    NotificationDestination {
        id: d.id.clone(),
        display_name: d.display_name.clone(),
        destination_type: d.destination_type().into(),
        config: state.jobs.destinations.shown_config(d),
    }
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<CreateNotificationDestinationRequest>,
) -> ApiResult<Json<NotificationDestination>> {
    admins_only(&caller)?;
    let d =
        state
            .jobs
            .destinations
            .create(&caller.user_name, req.display_name, req.config.as_ref())?;
    Ok(Json(render(&state, &d)))
}

async fn list(
    State(state): State<AppState>,
    Params(req): Params<ListNotificationDestinationsRequest>,
) -> ApiResult<Json<ListNotificationDestinationsResponse>> {
    let size = match req.page_size {
        None | Some(0) => 20,
        Some(n) if (1..=1000).contains(&n) => n as usize,
        Some(_) => {
            return Err(Error::invalid("Invalid value for field page_size: 1 to 1000").into())
        }
    };
    let all = state.jobs.destinations.list();
    let (page, next) = offset_page(all, req.page_token.as_deref(), size)?;
    Ok(Json(ListNotificationDestinationsResponse {
        results: page
            .iter()
            .map(|d| ListNotificationDestinationsResult {
                id: d.id.clone(),
                display_name: d.display_name.clone(),
                destination_type: d.destination_type().into(),
            })
            .collect(),
        next_page_token: next,
    }))
}

async fn read(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<NotificationDestination>> {
    let d = state.jobs.destinations.get(&id)?;
    Ok(Json(render(&state, &d)))
}

async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Params(req): Params<CreateNotificationDestinationRequest>,
) -> ApiResult<Json<NotificationDestination>> {
    admins_only(&caller)?;
    let d = state
        .jobs
        .destinations
        .update(&id, req.display_name, req.config.as_ref())?;
    Ok(Json(render(&state, &d)))
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    admins_only(&caller)?;
    state.jobs.destinations.delete(&id)?;
    Ok(Json(json!({})))
}

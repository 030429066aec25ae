//! SCIM 2.0: Me, Users and ServicePrincipals (workspace-level `preview` paths).

use axum::extract::{Path, State};
use axum::http::{HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json};
use kiln_api::scim as wire;
use kiln_api::Empty;
use kiln_core::{Error, Result};
use kiln_store::{PrincipalKind, PrincipalRecord};
use kiln_workspace::groups::{ADMINS, USERS};

use super::{ep, todo_ep, Endpoint};
use crate::error::ApiResult;
use crate::extract::Params;
use crate::state::AppState;
use kiln_identity::Caller;

const SCIM: &str = "/api/2.0/preview/scim/v2";

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    vec![
        ep(M::GET, format!("{SCIM}/Me"), "scim/Me", get(me)),
        ep(
            M::POST,
            format!("{SCIM}/Users"),
            "scim/Users create",
            post(create_user),
        ),
        ep(
            M::GET,
            format!("{SCIM}/Users"),
            "scim/Users list",
            get(list_users),
        ),
        ep(
            M::GET,
            format!("{SCIM}/Users/{{id}}"),
            "scim/Users get",
            get(get_user),
        ),
        ep(
            M::DELETE,
            format!("{SCIM}/Users/{{id}}"),
            "scim/Users delete",
            delete(delete_user),
        ),
        todo_ep(M::PUT, format!("{SCIM}/Users/{{id}}"), "scim/Users update"),
        todo_ep(M::PATCH, format!("{SCIM}/Users/{{id}}"), "scim/Users patch"),
        ep(
            M::POST,
            format!("{SCIM}/ServicePrincipals"),
            "scim/ServicePrincipals create",
            post(create_sp),
        ),
        ep(
            M::GET,
            format!("{SCIM}/ServicePrincipals"),
            "scim/ServicePrincipals list",
            get(list_sps),
        ),
        ep(
            M::GET,
            format!("{SCIM}/ServicePrincipals/{{id}}"),
            "scim/ServicePrincipals get",
            get(get_sp),
        ),
        ep(
            M::DELETE,
            format!("{SCIM}/ServicePrincipals/{{id}}"),
            "scim/ServicePrincipals delete",
            delete(delete_sp),
        ),
        todo_ep(
            M::PUT,
            format!("{SCIM}/ServicePrincipals/{{id}}"),
            "scim/ServicePrincipals update",
        ),
        todo_ep(
            M::PATCH,
            format!("{SCIM}/ServicePrincipals/{{id}}"),
            "scim/ServicePrincipals patch",
        ),
    ]
}

/// The groups a principal is a direct member of, as SCIM reports them.
fn groups(state: &AppState, record: &PrincipalRecord) -> Vec<wire::ComplexValue> {
    let mut names = Vec::new();
    if record.admin {
        names.push(ADMINS.to_string());
    }
    names.push(USERS.to_string());
    names.extend(state.groups.custom_groups_of(&record.id));
    names
        .into_iter()
        .map(|n| {
            let id = state
                .groups
                .by_name(&n)
                .ok()
                .flatten()
                .map(|g| g.id)
                .unwrap_or_else(|| n.clone());
            wire::ComplexValue {
                reference: Some(format!("Groups/{id}")),
                value: Some(id),
                display: Some(n),
                kind: Some("direct".into()),
                ..Default::default()
            }
        })
        .collect()
}

fn user(state: &AppState, record: &PrincipalRecord) -> wire::User {
    wire::User {
        id: record.id.clone(),
        user_name: record.user_name.clone(),
        display_name: record.display_name.clone(),
        active: record.active,
        emails: vec![wire::ComplexValue {
            value: Some(record.user_name.clone()),
            primary: Some(true),
            kind: Some("work".into()),
            ..Default::default()
        }],
        name: wire::Name {
            given_name: Some(record.display_name.clone()),
            family_name: None,
        },
        groups: groups(state, record),
        entitlements: Vec::new(),
        schemas: vec![wire::USER_SCHEMA.into()],
    }
}

fn service_principal(state: &AppState, record: &PrincipalRecord) -> wire::ServicePrincipal {
    wire::ServicePrincipal {
        id: record.id.clone(),
        application_id: record.user_name.clone(),
        display_name: record.display_name.clone(),
        active: record.active,
        groups: groups(state, record),
        entitlements: Vec::new(),
        schemas: vec![wire::SP_SCHEMA.into()],
    }
}

pub(super) fn require_admin(caller: &Caller) -> Result<()> {
    if caller.admin {
        Ok(())
    } else {
        Err(Error::permission_denied(
            "Only workspace admins can manage users and service principals.",
        ))
    }
}

/// Whether a create request puts the principal in `admins` (by name or id).
fn wants_admin(state: &AppState, groups: &[wire::ComplexValue]) -> bool {
    let admins_id = state.groups.by_name(ADMINS).ok().flatten().map(|g| g.id);
    groups.iter().any(|g| {
        g.display.as_deref() == Some(ADMINS)
            || g.value.as_deref() == Some(ADMINS)
            || (g.value.is_some() && g.value == admins_id)
    })
}

async fn me(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    let record = state.identity.principal(&caller.principal_id)?;
    let mut response = Json(user(&state, &record)).into_response();
    if let Ok(org) = HeaderValue::from_str(&state.workspace_id) {
        response.headers_mut().insert("x-databricks-org-id", org);
    }
    Ok(response)
}

async fn create_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::CreateUser>,
) -> ApiResult<Json<wire::User>> {
    require_admin(&caller)?;
    let display = req
        .display_name
        .clone()
        .unwrap_or_else(|| req.user_name.clone());
    let record = state.identity.create_principal(
        PrincipalKind::User,
        &req.user_name,
        &display,
        wants_admin(&state, &req.groups),
        req.password.as_deref(),
    )?;
    state.workspace.ensure_home(&record.user_name)?;
    Ok(Json(user(&state, &record)))
}

async fn get_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::User>> {
    let record = state
        .identity
        .principal(&id)
        .ok()
        .filter(|p| p.kind == PrincipalKind::User);
    let record = record.ok_or_else(|| Error::not_found(format!("User {id} does not exist.")))?;
    Ok(Json(user(&state, &record)))
}

async fn list_users(
    State(state): State<AppState>,
    Params(q): Params<wire::ListQuery>,
) -> ApiResult<Json<wire::ListResponse<wire::User>>> {
    let all = kiln_identity::scim::filter_principals(
        state.identity.principals(PrincipalKind::User)?,
        q.filter.as_deref(),
    )?;
    Ok(Json(page(
        all.iter().map(|r| user(&state, r)).collect(),
        &q,
    )))
}

async fn delete_user(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Empty>> {
    require_admin(&caller)?;
    state.identity.delete_principal(&id)?;
    Ok(Json(Empty {}))
}

async fn create_sp(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::CreateServicePrincipal>,
) -> ApiResult<Json<wire::ServicePrincipal>> {
    require_admin(&caller)?;
    let application_id = req.application_id.unwrap_or_else(kiln_core::ids::uuid4);
    let display = req.display_name.unwrap_or_else(|| application_id.clone());
    let record = state.identity.create_principal(
        PrincipalKind::ServicePrincipal,
        &application_id,
        &display,
        wants_admin(&state, &req.groups),
        None,
    )?;
    Ok(Json(service_principal(&state, &record)))
}

async fn get_sp(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::ServicePrincipal>> {
    let record = state
        .identity
        .principal(&id)
        .ok()
        .filter(|p| p.kind == PrincipalKind::ServicePrincipal);
    let record = record
        .ok_or_else(|| Error::not_found(format!("Service principal {id} does not exist.")))?;
    Ok(Json(service_principal(&state, &record)))
}

async fn list_sps(
    State(state): State<AppState>,
    Params(q): Params<wire::ListQuery>,
) -> ApiResult<Json<wire::ListResponse<wire::ServicePrincipal>>> {
    let all = kiln_identity::scim::filter_principals(
        state.identity.principals(PrincipalKind::ServicePrincipal)?,
        q.filter.as_deref(),
    )?;
    Ok(Json(page(
        all.iter().map(|r| service_principal(&state, r)).collect(),
        &q,
    )))
}

async fn delete_sp(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Empty>> {
    require_admin(&caller)?;
    state
        .identity
        .principal(&id)
        .ok()
        .filter(|p| p.kind == PrincipalKind::ServicePrincipal)
        .ok_or_else(|| Error::not_found(format!("Service principal {id} does not exist.")))?;
    state.identity.delete_principal(&id)?;
    Ok(Json(Empty {}))
}

/// SCIM paging: 1-based `startIndex`, `count` items.
pub(super) fn page<T>(all: Vec<T>, q: &wire::ListQuery) -> wire::ListResponse<T> {
    let total = all.len();
    let start = q.start_index.unwrap_or(1).max(1);
    let count = q.count.unwrap_or(10_000);
    let resources: Vec<T> = all.into_iter().skip(start - 1).take(count).collect();
    wire::ListResponse {
        total_results: total,
        items_per_page: resources.len(),
        start_index: start,
        resources,
        schemas: vec![wire::LIST_SCHEMA.into()],
    }
}

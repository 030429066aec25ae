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

use super::{ep, todo_ep, Endpoint};
use crate::error::ApiResult;
use crate::extract::Params;
use crate::identity::Caller;
use crate::state::AppState;

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
        todo_ep(M::GET, format!("{SCIM}/Groups"), "scim/Groups list"),
        todo_ep(M::POST, format!("{SCIM}/Groups"), "scim/Groups create"),
    ]
}

fn groups(record: &PrincipalRecord) -> Vec<wire::ComplexValue> {
    let mut names = vec!["users"];
    if record.admin {
        names.insert(0, "admins");
    }
    names
        .into_iter()
        .map(|n| wire::ComplexValue {
            value: Some(n.into()),
            display: Some(n.into()),
            primary: None,
            kind: Some("direct".into()),
        })
        .collect()
}

fn user(record: &PrincipalRecord) -> wire::User {
    wire::User {
        id: record.id.clone(),
        user_name: record.user_name.clone(),
        display_name: record.display_name.clone(),
        active: record.active,
        emails: vec![wire::ComplexValue {
            value: Some(record.user_name.clone()),
            display: None,
            primary: Some(true),
            kind: Some("work".into()),
        }],
        name: wire::Name {
            given_name: Some(record.display_name.clone()),
            family_name: None,
        },
        groups: groups(record),
        entitlements: Vec::new(),
        schemas: vec![wire::USER_SCHEMA.into()],
    }
}

fn service_principal(record: &PrincipalRecord) -> wire::ServicePrincipal {
    wire::ServicePrincipal {
        id: record.id.clone(),
        application_id: record.user_name.clone(),
        display_name: record.display_name.clone(),
        active: record.active,
        groups: groups(record),
        entitlements: Vec::new(),
        schemas: vec![wire::SP_SCHEMA.into()],
    }
}

fn require_admin(caller: &Caller) -> Result<()> {
    if caller.admin {
        Ok(())
    } else {
        Err(Error::permission_denied(
            "Only workspace admins can manage users and service principals.",
        ))
    }
}

fn wants_admin(groups: &[wire::ComplexValue]) -> bool {
    groups
        .iter()
        .any(|g| g.display.as_deref() == Some("admins") || g.value.as_deref() == Some("admins"))
}

async fn me(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Response> {
    let record = state.identity.principal(&caller.principal_id)?;
    let mut response = Json(user(&record)).into_response();
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
        wants_admin(&req.groups),
        req.password.as_deref(),
    )?;
    state.workspace.ensure_home(&record.user_name)?;
    Ok(Json(user(&record)))
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
    Ok(Json(user(&record)))
}

async fn list_users(
    State(state): State<AppState>,
    Params(q): Params<wire::ListQuery>,
) -> ApiResult<Json<wire::ListResponse<wire::User>>> {
    let all = filtered(
        state.identity.principals(PrincipalKind::User)?,
        q.filter.as_deref(),
    )?;
    Ok(Json(page(all.iter().map(user).collect(), &q)))
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
        wants_admin(&req.groups),
        None,
    )?;
    Ok(Json(service_principal(&record)))
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
    Ok(Json(service_principal(&record)))
}

async fn list_sps(
    State(state): State<AppState>,
    Params(q): Params<wire::ListQuery>,
) -> ApiResult<Json<wire::ListResponse<wire::ServicePrincipal>>> {
    let all = filtered(
        state.identity.principals(PrincipalKind::ServicePrincipal)?,
        q.filter.as_deref(),
    )?;
    Ok(Json(page(all.iter().map(service_principal).collect(), &q)))
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
fn page<T>(all: Vec<T>, q: &wire::ListQuery) -> wire::ListResponse<T> {
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

/// Simple SCIM filters: `<attribute> eq|ne|co|sw "<value>"`.
fn filtered(all: Vec<PrincipalRecord>, filter: Option<&str>) -> Result<Vec<PrincipalRecord>> {
    let Some(filter) = filter.map(str::trim).filter(|f| !f.is_empty()) else {
        return Ok(all);
    };
    let bad = || Error::invalid(format!("Unsupported filter: {filter}"));
    let mut parts = filter.splitn(3, ' ');
    let (attribute, op, value) = (
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
    );
    let value = value.trim().trim_matches('"').to_string();
    let field = |p: &PrincipalRecord| -> Option<String> {
        match attribute.to_ascii_lowercase().as_str() {
            "username" | "applicationid" => Some(p.user_name.clone()),
            "displayname" => Some(p.display_name.clone()),
            "id" => Some(p.id.clone()),
            _ => None,
        }
    };
    if field(&PrincipalRecord {
        id: String::new(),
        user_name: String::new(),
        display_name: String::new(),
        kind: PrincipalKind::User,
        active: true,
        admin: false,
        password_hash: None,
        created_ms: 0,
    })
    .is_none()
    {
        return Err(bad());
    }
    let keep = |p: &PrincipalRecord| {
        let f = field(p).unwrap_or_default();
        match op.to_ascii_lowercase().as_str() {
            "eq" => Some(f.eq_ignore_ascii_case(&value)),
            "ne" => Some(!f.eq_ignore_ascii_case(&value)),
            "co" => Some(f.to_lowercase().contains(&value.to_lowercase())),
            "sw" => Some(f.to_lowercase().starts_with(&value.to_lowercase())),
            _ => None,
        }
    };
    let mut out = Vec::new();
    for p in all {
        match keep(&p) {
            Some(true) => out.push(p),
            Some(false) => {}
            None => return Err(bad()),
        }
    }
    Ok(out)
}

//! SCIM 2.0 Groups (`/api/2.0/preview/scim/v2/Groups`): the built-in `admins`
//! and `users` groups and custom groups with user and service-principal
//! members. Adding a member to `admins` makes it a workspace admin.

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Extension, Json};
use kiln_api::scim as wire;
use kiln_core::{Error, Result};
use kiln_store::{PrincipalKind, PrincipalRecord};
use kiln_workspace::groups::{GroupRecord, ADMINS, USERS};
use serde_json::Value;

use super::scim::{page, require_admin};
use super::{ep, Endpoint};
use crate::error::ApiResult;
use crate::extract::Params;
use crate::state::AppState;
use kiln_identity::scim::filter_by;
use kiln_identity::Caller;

const GROUPS: &str = "/api/2.0/preview/scim/v2/Groups";

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    let one = format!("{GROUPS}/{{id}}");
    vec![
        ep(M::GET, GROUPS, "scim/Groups list", get(list_groups)),
        ep(M::POST, GROUPS, "scim/Groups create", post(create_group)),
        ep(M::GET, one.clone(), "scim/Groups get", get(get_group)),
        ep(M::PUT, one.clone(), "scim/Groups update", put(update_group)),
        ep(
            M::PATCH,
            one.clone(),
            "scim/Groups patch",
            patch(patch_group),
        ),
        ep(M::DELETE, one, "scim/Groups delete", delete(delete_group)),
    ]
}

/// The principals in a group (built-ins follow the principals' flags).
pub(super) fn members_of(state: &AppState, group: &GroupRecord) -> Result<Vec<PrincipalRecord>> {
    let mut all = state.identity.principals(PrincipalKind::User)?;
    all.extend(state.identity.principals(PrincipalKind::ServicePrincipal)?);
    Ok(all
        .into_iter()
        .filter(|p| match group.display_name.as_str() {
            _ if !group.builtin => group.members.contains(&p.id),
            ADMINS => p.admin,
            USERS => true,
            _ => false,
        })
        .collect())
}

fn member(p: &PrincipalRecord) -> wire::ComplexValue {
    let kind = match p.kind {
        PrincipalKind::User => "Users",
        PrincipalKind::ServicePrincipal => "ServicePrincipals",
    };
    wire::ComplexValue {
        value: Some(p.id.clone()),
        display: Some(p.display_name.clone()),
        reference: Some(format!("{kind}/{}", p.id)),
        ..Default::default()
    }
}

fn group(state: &AppState, record: &GroupRecord) -> Result<wire::Group> {
    Ok(wire::Group {
        id: record.id.clone(),
        display_name: record.display_name.clone(),
        members: members_of(state, record)?.iter().map(member).collect(),
        groups: Vec::new(),
        entitlements: Vec::new(),
        roles: Vec::new(),
        schemas: vec![wire::GROUP_SCHEMA.into()],
    })
}

/// Member ids named by `members` values; each must be a user or service principal.
fn member_ids(state: &AppState, members: &[wire::ComplexValue]) -> Result<Vec<String>> {
    members
        .iter()
        .map(|m| {
            let id = m
                .value
                .clone()
                .ok_or_else(|| Error::invalid("Each member needs a value (the principal id)"))?;
            if state.groups.get(&id).is_ok() {
                return Err(Error::invalid(format!(
                    "Member {id} is a group; Kiln does not support nested groups"
                )));
            }
            state
                .identity
                .principal(&id)
                .map_err(|_| Error::invalid(format!("Member {id} does not exist")))?;
            Ok(id)
        })
        .collect()
}

/// Applies a new member list; for `admins` that means admin flags.
pub(super) fn set_members(state: &AppState, record: &GroupRecord, ids: Vec<String>) -> Result<()> {
    match (record.builtin, record.display_name.as_str()) {
        (false, _) => {
            state.groups.replace(&record.id, None, Some(ids))?;
        }
        (true, ADMINS) => {
            let current: Vec<String> = members_of(state, record)?
                .into_iter()
                .map(|p| p.id)
                .collect();
            for id in ids.iter().filter(|id| !current.contains(id)) {
                state.identity.set_admin(id, true)?;
            }
            for id in current.iter().filter(|id| !ids.contains(id)) {
                state.identity.set_admin(id, false)?;
            }
        }
        (true, _) => {
            return Err(Error::invalid(format!(
                "Every principal is a member of {}; its members cannot change",
                record.display_name
            )))
        }
    }
    state.permissions.touch();
    Ok(())
}

async fn list_groups(
    State(state): State<AppState>,
    Params(q): Params<wire::ListQuery>,
) -> ApiResult<Json<wire::ListResponse<wire::Group>>> {
    let all = filter_by(
        state.groups.list()?,
        q.filter.as_deref(),
        |g, attr| match attr {
            "displayname" => Some(g.display_name.clone()),
            "id" => Some(g.id.clone()),
            _ => None,
        },
    )?;
    let groups = all
        .iter()
        .map(|g| group(&state, g))
        .collect::<Result<Vec<_>>>()?;
    Ok(Json(page(groups, &q)))
}

async fn create_group(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::CreateGroup>,
) -> ApiResult<Response> {
    require_admin(&caller)?;
    let name = req
        .display_name
        .ok_or_else(|| Error::invalid("displayName is required"))?;
    let ids = member_ids(&state, req.members.as_deref().unwrap_or_default())?;
    let record = state.groups.create(&name, ids)?;
    state.permissions.touch();
    Ok((StatusCode::CREATED, Json(group(&state, &record)?)).into_response())
}

async fn get_group(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::Group>> {
    Ok(Json(group(&state, &state.groups.get(&id)?)?))
}

async fn update_group(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Params(req): Params<wire::CreateGroup>,
) -> ApiResult<Json<wire::Group>> {
    require_admin(&caller)?;
    let record = state.groups.get(&id)?;
    let ids = member_ids(&state, req.members.as_deref().unwrap_or_default())?;
    let record = state
        .groups
        .replace(&record.id, req.display_name.as_deref(), None)?;
    set_members(&state, &record, ids)?;
    Ok(Json(group(&state, &state.groups.get(&id)?)?))
}

/// Member ids in a PATCH value: `[{"value": id}]` or `{"members": [...]}`.
fn patch_members(state: &AppState, value: Option<&Value>) -> Result<Vec<String>> {
    let list = match value {
        Some(Value::Object(o)) => o.get("members").cloned().unwrap_or(Value::Array(vec![])),
        Some(v) => v.clone(),
        None => Value::Array(vec![]),
    };
    let members: Vec<wire::ComplexValue> = serde_json::from_value(list)
        .map_err(|e| Error::invalid(format!("Invalid members in PATCH value: {e}")))?;
    member_ids(state, &members)
}

/// `members[value eq "123"]` → `123`.
fn filtered_member(path: &str) -> Option<String> {
    let inner = path.strip_prefix("members[")?.strip_suffix(']')?;
    let (attr, rest) = inner.trim().split_once(' ')?;
    let (op, value) = rest.trim().split_once(' ')?;
    (attr == "value" && op.eq_ignore_ascii_case("eq"))
        .then(|| value.trim().trim_matches('"').to_string())
}

async fn patch_group(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Params(req): Params<wire::PatchRequest>,
) -> ApiResult<Response> {
    require_admin(&caller)?;
    let record = state.groups.get(&id)?;
    let mut ids: Vec<String> = members_of(&state, &record)?
        .into_iter()
        .map(|p| p.id)
        .collect();
    let mut name = None;
    for op in &req.operations {
        let path = op.path.as_deref().unwrap_or("");
        match (op.op.to_ascii_lowercase().as_str(), path) {
            ("add", "members") | ("add", "") => {
                ids.extend(patch_members(&state, op.value.as_ref())?)
            }
            ("replace", "members") => ids = patch_members(&state, op.value.as_ref())?,
            ("replace", "displayName") => {
                name = op
                    .value
                    .as_ref()
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }
            ("remove", "members") => {
                let gone = patch_members(&state, op.value.as_ref())?;
                ids.retain(|i| !gone.contains(i));
            }
            ("remove", p) if filtered_member(p).is_some() => {
                let gone = filtered_member(p).unwrap_or_default();
                ids.retain(|i| *i != gone);
            }
            (o, p) => {
                return Err(Error::invalid(format!(
                    "Unsupported PATCH operation {o} on path '{p}'"
                ))
                .into())
            }
        }
    }
    ids.sort();
    ids.dedup();
    let record = state.groups.replace(&record.id, name.as_deref(), None)?;
    set_members(&state, &record, ids)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_group(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    require_admin(&caller)?;
    state.groups.delete(&id)?;
    state.permissions.touch();
    Ok(StatusCode::NO_CONTENT.into_response())
}

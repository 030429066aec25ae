//! Groups API 2.0 (`/api/2.0/groups/*`): the same groups as SCIM, by name, as
//! the legacy `databricks-cli` and `databricks-api` manage them. Members are
//! users and service principals (a group inside a group is refused, as in SCIM).

use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};
use axum::{Extension, Json};
use kiln_api::groups as wire;
use kiln_api::Empty;
use kiln_core::{Error, Result};
use kiln_workspace::groups::{GroupRecord, ADMINS, USERS};

use super::scim::require_admin;
use super::scim_groups::{members_of, set_members};
use super::{ep, Endpoint};
use crate::error::ApiResult;
use crate::extract::Params;
use crate::state::AppState;
use kiln_identity::Caller;

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    let path = |op: &str| format!("/api/2.0/groups/{op}");
    vec![
        ep(M::POST, path("create"), "groups/create", post(create)),
        ep(
            M::POST,
            path("add-member"),
            "groups/add-member",
            post(add_member),
        ),
        ep(
            M::POST,
            path("remove-member"),
            "groups/remove-member",
            post(remove_member),
        ),
        ep(M::GET, path("list"), "groups/list", get(list)),
        ep(
            M::GET,
            path("list-members"),
            "groups/list-members",
            get(list_members),
        ),
        ep(
            M::GET,
            path("list-parents"),
            "groups/list-parents",
            get(list_parents),
        ),
        ep(M::POST, path("delete"), "groups/delete", post(delete)),
    ]
}

fn group(state: &AppState, name: &str) -> Result<GroupRecord> {
    state
        .groups
        .by_name(name)?
        .ok_or_else(|| Error::not_found(format!("Group {name} does not exist.")))
}

/// The principal a membership names (users and service principals only).
fn member_id(state: &AppState, req: &wire::Membership) -> Result<String> {
    if req.group_name.is_some() {
        return Err(Error::invalid(
            "Nested groups are not supported: members are users and service principals",
        ));
    }
    let name = req
        .user_name
        .as_deref()
        .ok_or_else(|| Error::invalid("Missing required field: user_name"))?;
    state
        .identity
        .by_name(name)?
        .map(|p| p.id)
        .ok_or_else(|| Error::not_found(format!("User {name} does not exist.")))
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::GroupName>,
) -> ApiResult<Json<wire::CreateResponse>> {
    require_admin(&caller)?;
    let record = state.groups.create(&req.group_name, Vec::new())?;
    state.permissions.touch();
    Ok(Json(wire::CreateResponse {
        group_name: record.display_name,
    }))
}

async fn change_members(
    state: &AppState,
    caller: &Caller,
    req: &wire::Membership,
    add: bool,
) -> Result<()> {
    require_admin(caller)?;
    let record = group(state, &req.parent_name)?;
    let id = member_id(state, req)?;
    let mut ids: Vec<String> = members_of(state, &record)?
        .into_iter()
        .map(|p| p.id)
        .collect();
    ids.retain(|m| *m != id);
    if add {
        ids.push(id);
    }
    set_members(state, &record, ids)
}

async fn add_member(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::Membership>,
) -> ApiResult<Json<Empty>> {
    change_members(&state, &caller, &req, true).await?;
    Ok(Json(Empty {}))
}

async fn remove_member(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::Membership>,
) -> ApiResult<Json<Empty>> {
    change_members(&state, &caller, &req, false).await?;
    Ok(Json(Empty {}))
}

async fn list(State(state): State<AppState>) -> ApiResult<Json<wire::GroupNames>> {
    Ok(Json(wire::GroupNames {
        group_names: state
            .groups
            .list()?
            .into_iter()
            .map(|g| g.display_name)
            .collect(),
    }))
}

async fn list_members(
    State(state): State<AppState>,
    Params(req): Params<wire::GroupName>,
) -> ApiResult<Json<wire::Members>> {
    let record = group(&state, &req.group_name)?;
    let members = members_of(&state, &record)?
        .into_iter()
        .map(|p| wire::Member {
            user_name: Some(p.user_name),
            group_name: None,
        })
        .collect();
    Ok(Json(wire::Members { members }))
}

async fn list_parents(
    State(state): State<AppState>,
    Params(req): Params<wire::Principal>,
) -> ApiResult<Json<wire::GroupNames>> {
    if req.group_name.is_some() {
        // Groups are never members of groups here.
        return Ok(Json(wire::GroupNames {
            group_names: Vec::new(),
        }));
    }
    let name = req
        .user_name
        .ok_or_else(|| Error::invalid("Missing required field: user_name"))?;
    let principal = state
        .identity
        .by_name(&name)?
        .ok_or_else(|| Error::not_found(format!("User {name} does not exist.")))?;
    let mut names = vec![USERS.to_string()];
    if principal.admin {
        names.push(ADMINS.into());
    }
    names.extend(state.groups.custom_groups_of(&principal.id));
    Ok(Json(wire::GroupNames { group_names: names }))
}

async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::GroupName>,
) -> ApiResult<Json<Empty>> {
    require_admin(&caller)?;
    let record = group(&state, &req.group_name)?;
    state.groups.delete(&record.id)?;
    state.permissions.touch();
    Ok(Json(Empty {}))
}

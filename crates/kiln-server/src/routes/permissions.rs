//! Permissions API: `/api/2.0/permissions/{object_type}/{object_id}` and its
//! `permissionLevels`, for clusters (other object types answer 501 until their
//! objects exist in Kiln).

use axum::extract::{Path, State};
use axum::http::Method;
use axum::routing::get;
use axum::{Extension, Json};
use kiln_core::{Error, Result};
use kiln_workspace::permissions::{levels, AclEntry, Grantee};
use serde::Deserialize;
use serde_json::{json, Value};

use super::access::require_cluster;
use super::{ep, Endpoint};
use crate::error::ApiResult;
use crate::extract::Params;
use crate::identity::Caller;
use crate::state::AppState;

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    let object = "/api/2.0/permissions/{object_type}/{object_id}";
    vec![
        ep(
            M::GET,
            object,
            "permissions/get",
            get(get_permissions)
                .put(set_permissions)
                .patch(update_permissions),
        ),
        ep(
            M::GET,
            format!("{object}/permissionLevels"),
            "permissions/levels",
            get(permission_levels),
        ),
    ]
}

#[derive(Debug, Deserialize)]
struct AccessControlRequest {
    user_name: Option<String>,
    group_name: Option<String>,
    service_principal_name: Option<String>,
    permission_level: String,
}

#[derive(Debug, Deserialize)]
struct SetPermissions {
    #[serde(default)]
    access_control_list: Vec<AccessControlRequest>,
}

/// The object's owner, checking that it exists; only clusters are served.
fn owner_of(state: &AppState, object_type: &str, object_id: &str) -> Result<String> {
    levels(object_type)?;
    match object_type {
        "clusters" => Ok(state.clusters.get(object_id)?.owner),
        other => Err(Error::not_implemented(&format!("permissions for {other}"))),
    }
}

fn grantee(state: &AppState, request: &AccessControlRequest) -> Result<Grantee> {
    match (
        &request.user_name,
        &request.group_name,
        &request.service_principal_name,
    ) {
        (Some(user), None, None) => {
            state
                .identity
                .by_name(user)?
                .ok_or_else(|| Error::invalid(format!("User {user} does not exist")))?;
            Ok(Grantee::User(user.clone()))
        }
        (None, Some(group), None) if group == "users" || group == "admins" => {
            Ok(Grantee::Group(group.clone()))
        }
        (None, Some(group), None) => Err(Error::invalid(format!("Group {group} does not exist"))),
        (None, None, Some(sp)) => {
            state
                .identity
                .by_name(sp)?
                .ok_or_else(|| Error::invalid(format!("Service principal {sp} does not exist")))?;
            Ok(Grantee::ServicePrincipal(sp.clone()))
        }
        _ => Err(Error::invalid(
            "Each entry names exactly one of user_name, group_name, service_principal_name",
        )),
    }
}

fn response(state: &AppState, object_type: &str, object_id: &str, owner: &str) -> Value {
    let singular = object_type.trim_end_matches('s');
    let mut acl = vec![json!({
        "user_name": owner,
        "all_permissions": [{"permission_level": "CAN_MANAGE", "inherited": false}],
    })];
    for entry in state.permissions.entries(object_type, object_id) {
        let mut item =
            json!({"all_permissions": [{"permission_level": entry.level, "inherited": false}]});
        let field = match &entry.grantee {
            Grantee::User(_) => "user_name",
            Grantee::Group(_) => "group_name",
            Grantee::ServicePrincipal(_) => "service_principal_name",
        };
        item[field] = json!(entry.grantee.name());
        acl.push(item);
    }
    acl.push(json!({
        "group_name": "admins",
        "all_permissions": [{"permission_level": "CAN_MANAGE", "inherited": true, "inherited_from_object": [format!("/{object_type}/")]}],
    }));
    json!({"object_id": format!("/{object_type}/{object_id}"), "object_type": singular, "access_control_list": acl})
}

async fn get_permissions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((object_type, object_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let owner = owner_of(&state, &object_type, &object_id)?;
    require_cluster(&state, &caller, &object_id, "CAN_ATTACH_TO")?;
    Ok(Json(response(&state, &object_type, &object_id, &owner)))
}

async fn change(
    state: AppState,
    caller: Caller,
    object_type: String,
    object_id: String,
    req: SetPermissions,
    replace: bool,
) -> ApiResult<Json<Value>> {
    let owner = owner_of(&state, &object_type, &object_id)?;
    require_cluster(&state, &caller, &object_id, "CAN_MANAGE")?;
    let entries = req
        .access_control_list
        .iter()
        .map(|r| {
            Ok(AclEntry {
                grantee: grantee(&state, r)?,
                level: r.permission_level.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    state
        .permissions
        .set(&object_type, &object_id, entries, replace)?;
    Ok(Json(response(&state, &object_type, &object_id, &owner)))
}

async fn set_permissions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((object_type, object_id)): Path<(String, String)>,
    Params(req): Params<SetPermissions>,
) -> ApiResult<Json<Value>> {
    change(state, caller, object_type, object_id, req, true).await
}

async fn update_permissions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((object_type, object_id)): Path<(String, String)>,
    Params(req): Params<SetPermissions>,
) -> ApiResult<Json<Value>> {
    change(state, caller, object_type, object_id, req, false).await
}

async fn permission_levels(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((object_type, object_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    owner_of(&state, &object_type, &object_id)?;
    require_cluster(&state, &caller, &object_id, "CAN_ATTACH_TO")?;
    let levels: Vec<Value> = levels(&object_type)?
        .iter()
        .map(|l| json!({"permission_level": l, "description": format!("{l} on this {}", object_type.trim_end_matches('s'))}))
        .collect();
    Ok(Json(json!({"permission_levels": levels})))
}

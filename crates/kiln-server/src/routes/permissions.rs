//! Permissions API: `/api/2.0/permissions/{object_type}/{object_id}` and its
//! `permissionLevels`, for clusters and workspace objects (notebooks,
//! directories, files); other object types answer 501 until their objects
//! exist in Kiln.

use axum::extract::{Path, State};
use axum::http::Method;
use axum::routing::get;
use axum::{Extension, Json};
use kiln_core::{Error, Result};
use kiln_workspace::groups::ADMINS;
use kiln_workspace::object_access::{chain, home_owner};
use kiln_workspace::permissions::{levels, AclEntry, Grantee};
use kiln_workspace::workspace::ObjectRecord;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ep, Endpoint};
use crate::access::{require_cluster, require_object};
use crate::error::ApiResult;
use crate::extract::Params;
use crate::state::AppState;
use kiln_identity::Caller;

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

/// An object whose permissions are served: its chain of (type, id) from the
/// object to what it inherits from, and its owner (who holds CAN_MANAGE).
struct Target {
    object_type: String,
    object_id: String,
    chain: Vec<(String, String)>,
    owner: Option<String>,
    /// Where the owner's CAN_MANAGE comes from when it is inherited (a home folder).
    owner_from: Option<String>,
    object: Option<ObjectRecord>,
}

/// Finds the object (it must exist and be of the named type).
fn resolve(state: &AppState, object_type: &str, object_id: &str) -> Result<Target> {
    levels(object_type)?;
    match object_type {
        "clusters" => Ok(Target {
            object_type: object_type.into(),
            object_id: object_id.into(),
            chain: vec![(object_type.into(), object_id.into())],
            owner: Some(state.clusters.get(object_id)?.owner),
            owner_from: None,
            object: None,
        }),
        "notebooks" | "directories" | "files" => {
            let gone = || {
                Error::not_found(format!(
                    "{} {object_id} does not exist.",
                    singular(object_type)
                ))
            };
            let id: i64 = object_id.parse().map_err(|_| gone())?;
            let object = state.workspace.by_id(id).map_err(|_| gone())?;
            if kiln_workspace::object_access::object_type(object.object_type) != object_type {
                return Err(gone());
            }
            let owner = home_owner(&object.path).map(str::to_string);
            let home = owner.as_ref().map(|o| format!("/Users/{o}"));
            let owner_from = match home {
                Some(h) if h != object.path => state
                    .workspace
                    .get(&h)
                    .ok()
                    .map(|d| format!("/directories/{}", d.object_id)),
                _ => None,
            };
            Ok(Target {
                object_type: object_type.into(),
                object_id: object_id.into(),
                chain: chain(&state.workspace, &object)?,
                owner,
                owner_from,
                object: Some(object),
            })
        }
        "pipelines" => Ok(Target {
            object_type: object_type.into(),
            object_id: object_id.into(),
            chain: vec![(object_type.into(), object_id.into())],
            owner: Some(state.pipelines.get(object_id)?.run_as),
            owner_from: None,
            object: None,
        }),
        "jobs" => {
            let id: i64 = object_id
                .parse()
                .map_err(|_| Error::not_found(format!("Job {object_id} does not exist.")))?;
            Ok(Target {
                object_type: object_type.into(),
                object_id: object_id.into(),
                chain: vec![(object_type.into(), object_id.into())],
                owner: Some(state.jobs.get(id)?.creator_user_name),
                owner_from: None,
                object: None,
            })
        }
        "warehouses" => Ok(Target {
            object_type: object_type.into(),
            object_id: object_id.into(),
            chain: vec![(object_type.into(), object_id.into())],
            owner: Some(super::sql_warehouses::require_existing(state, object_id)?),
            owner_from: None,
            object: None,
        }),
        other => Err(Error::not_implemented(&format!("permissions for {other}"))),
    }
}

fn singular(object_type: &str) -> &str {
    match object_type {
        "directories" => "directory",
        other => other.strip_suffix('s').unwrap_or(other),
    }
}

/// Fails unless the caller holds `level` on the target.
fn require(state: &AppState, caller: &Caller, target: &Target, level: &str) -> Result<()> {
    match &target.object {
        Some(object) => require_object(state, caller, object, level),
        None if target.object_type == "pipelines" => {
            super::pipelines::require_pipeline(state, caller, &target.object_id, level).map(|_| ())
        }
        None if target.object_type == "warehouses" => {
            super::sql_warehouses::require_warehouse(state, caller, &target.object_id, level)
                .map(|_| ())
        }
        None if target.object_type == "jobs" => {
            let id: i64 = target.object_id.parse().unwrap_or_default();
            super::jobs::require_job(state, caller, id, level).map(|_| ())
        }
        None => require_cluster(state, caller, &target.object_id, level),
    }
}

fn lowest(object_type: &str) -> Result<&'static str> {
    Ok(levels(object_type)?[0])
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
        (None, Some(group), None) => {
            state
                .groups
                .by_name(group)?
                .ok_or_else(|| Error::invalid(format!("Group {group} does not exist")))?;
            Ok(Grantee::Group(group.clone()))
        }
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

fn principal_json(grantee: &Grantee) -> Value {
    let field = match grantee {
        Grantee::User(_) => "user_name",
        Grantee::Group(_) => "group_name",
        Grantee::ServicePrincipal(_) => "service_principal_name",
    };
    json!({ field: grantee.name(), "all_permissions": [] })
}

fn permission(level: &str, from: Option<&str>) -> Value {
    match from {
        None => json!({"permission_level": level, "inherited": false}),
        Some(from) => {
            json!({"permission_level": level, "inherited": true, "inherited_from_object": [from]})
        }
    }
}

/// The ACL as the API reports it: the owner, direct grants, grants inherited
/// from parent directories, and the admins group.
fn response(state: &AppState, target: &Target) -> Value {
    let mut acl: Vec<(Grantee, Value)> = Vec::new();
    let mut add = |grantee: Grantee, perm: Value| {
        if let Some((_, item)) = acl.iter_mut().find(|(g, _)| *g == grantee) {
            if let Some(all) = item["all_permissions"].as_array_mut() {
                all.push(perm);
            }
        } else {
            let mut item = principal_json(&grantee);
            item["all_permissions"] = json!([perm]);
            acl.push((grantee, item));
        }
    };
    if let Some(owner) = &target.owner {
        add(
            Grantee::User(owner.clone()),
            permission(
                if target.object_type == "pipelines" {
                    "IS_OWNER"
                } else {
                    "CAN_MANAGE"
                },
                target.owner_from.as_deref(),
            ),
        );
    }
    for (i, (kind, id)) in target.chain.iter().enumerate() {
        let from = format!("/{kind}/{id}");
        for entry in state.permissions.entries(kind, id) {
            add(
                entry.grantee,
                permission(&entry.level, (i > 0).then_some(from.as_str())),
            );
        }
    }
    let root = format!("/{}/", target.object_type);
    add(
        Grantee::Group(ADMINS.into()),
        permission("CAN_MANAGE", Some(&root)),
    );
    json!({
        "object_id": format!("/{}/{}", target.object_type, target.object_id),
        "object_type": singular(&target.object_type),
        "access_control_list": acl.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    })
}

async fn get_permissions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((object_type, object_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let target = resolve(&state, &object_type, &object_id)?;
    require(&state, &caller, &target, lowest(&object_type)?)?;
    Ok(Json(response(&state, &target)))
}

async fn change(
    state: AppState,
    caller: Caller,
    object_type: String,
    object_id: String,
    req: SetPermissions,
    replace: bool,
) -> ApiResult<Json<Value>> {
    let target = resolve(&state, &object_type, &object_id)?;
    require(&state, &caller, &target, "CAN_MANAGE")?;
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
    Ok(Json(response(&state, &target)))
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
    let target = resolve(&state, &object_type, &object_id)?;
    require(&state, &caller, &target, lowest(&object_type)?)?;
    let levels: Vec<Value> = levels(&object_type)?
        .iter()
        .map(|l| json!({"permission_level": l, "description": format!("{l} on this {}", singular(&object_type))}))
        .collect();
    Ok(Json(json!({"permission_levels": levels})))
}

//! Unity Catalog volumes (`/api/2.1/unity-catalog/volumes`) and their grants
//! (`/api/2.1/unity-catalog/permissions/volume/{full_name}`), and the check the
//! Files API makes before it touches a volume's files.

use axum::extract::{Path, State};
use axum::http::Method;
use axum::routing::{get, post};
use axum::{Extension, Json};
use kiln_api::unity_catalog as wire;
use kiln_api::Empty;
use kiln_catalog::{GrantChange, VolumeInfo, VolumeUpdate};
use kiln_core::{Error, ErrorCode, Result};

use super::{ep, Endpoint};
use crate::error::ApiResult;
use crate::extract::Params;
use crate::state::AppState;
use kiln_identity::Caller;

const UC: &str = "/api/2.1/unity-catalog";

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    let one = format!("{UC}/volumes/{{name}}");
    let grants = format!("{UC}/permissions/{{securable_type}}/{{full_name}}");
    vec![
        ep(M::GET, format!("{UC}/volumes"), "volumes/list", get(list)),
        ep(
            M::POST,
            format!("{UC}/volumes"),
            "volumes/create",
            post(create),
        ),
        ep(M::GET, one.clone(), "volumes/read", get(read)),
        ep(
            M::PATCH,
            one.clone(),
            "volumes/update",
            axum::routing::patch(update),
        ),
        ep(
            M::DELETE,
            one,
            "volumes/delete",
            axum::routing::delete(remove),
        ),
        ep(M::GET, grants.clone(), "grants/get", get(get_grants)),
        ep(
            M::PATCH,
            grants,
            "grants/update",
            axum::routing::patch(update_grants),
        ),
    ]
}

fn wire_volume(state: &AppState, v: &VolumeInfo) -> wire::VolumeInfo {
    wire::VolumeInfo {
        catalog_name: v.catalog_name.clone(),
        schema_name: v.schema_name.clone(),
        name: v.name.clone(),
        full_name: v.full_name(),
        volume_id: v.volume_id.clone(),
        volume_type: v.volume_type.clone(),
        storage_location: format!(
            "file://{}",
            v.storage_location
                .clone()
                .unwrap_or_else(|| state.catalog.volume_dir(v))
                .display()
        ),
        comment: v.comment.clone(),
        owner: v.owner.clone(),
        created_by: v.created_by.clone(),
        created_at: v.created_at,
        updated_at: v.updated_at,
    }
}

/// The names a caller's grants can be under: its user name and its groups.
pub(crate) fn grantees(state: &AppState, caller: &Caller) -> Vec<String> {
    let mut names = vec![
        caller.user_name.clone(),
        "account users".into(),
        "users".into(),
    ];
    names.extend(state.groups.custom_groups_of(&caller.principal_id));
    names
}

/// Owner and admins hold every privilege; others what was granted.
pub(crate) fn require_privilege(
    state: &AppState,
    caller: &Caller,
    volume: &VolumeInfo,
    privilege: &str,
) -> Result<()> {
    if caller.admin
        || volume.owner == caller.user_name
        || volume.granted(&grantees(state, caller), privilege)
    {
        return Ok(());
    }
    Err(Error::new(
        ErrorCode::PermissionDenied,
        format!(
            "User does not have {privilege} on Volume '{}'.",
            volume.full_name()
        ),
    ))
}

fn require_owner(caller: &Caller, volume: &VolumeInfo) -> Result<()> {
    if caller.admin || volume.owner == caller.user_name {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::PermissionDenied,
            format!(
                "Only the owner of Volume '{}' or an admin may change it.",
                volume.full_name()
            ),
        ))
    }
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::CreateVolume>,
) -> ApiResult<Json<wire::VolumeInfo>> {
    let info = kiln_core::blocking::run(|| {
        state.catalog.create_volume(
            &caller.user_name,
            &req.catalog_name,
            &req.schema_name,
            &req.name,
            &req.volume_type,
            req.comment.clone(),
            req.storage_location.as_deref(),
        )
    })?;
    Ok(Json(wire_volume(&state, &info)))
}

async fn list(
    State(state): State<AppState>,
    Params(req): Params<wire::ListVolumes>,
) -> ApiResult<Json<wire::ListVolumesResponse>> {
    let all = state.catalog.volumes(&req.catalog_name, &req.schema_name)?;
    let size = req.max_results.filter(|n| *n > 0).unwrap_or(10_000);
    let (page, next) = super::offset_page(all, req.page_token.as_deref(), size)?;
    Ok(Json(wire::ListVolumesResponse {
        volumes: page.iter().map(|v| wire_volume(&state, v)).collect(),
        next_page_token: next,
    }))
}

async fn read(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<wire::VolumeInfo>> {
    Ok(Json(wire_volume(&state, &state.catalog.get_volume(&name)?)))
}

async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Params(req): Params<wire::UpdateVolume>,
) -> ApiResult<Json<wire::VolumeInfo>> {
    require_owner(&caller, &state.catalog.get_volume(&name)?)?;
    let change = VolumeUpdate {
        new_name: req.new_name,
        comment: req.comment,
        owner: req.owner,
    };
    let info = kiln_core::blocking::run(|| state.catalog.update_volume(&name, change))?;
    Ok(Json(wire_volume(&state, &info)))
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> ApiResult<Json<Empty>> {
    let info = state.catalog.get_volume(&name)?;
    require_owner(&caller, &info)?;
    kiln_core::blocking::run(|| state.catalog.delete_volume(&name))?;
    // On object storage, whatever the mount did not remove goes too: a later
    // volume of the same name must not find these files.
    if let (Some(root), None) = (state.storage.as_deref(), &info.storage_location) {
        root.delete_tree(&format!("dbfs{}", info.path())).await?;
    }
    Ok(Json(Empty {}))
}

fn volume_securable(securable_type: &str) -> Result<()> {
    if securable_type.eq_ignore_ascii_case("volume") {
        Ok(())
    } else {
        Err(Error::not_implemented(&format!(
            "grants on {securable_type} (Kiln keeps grants on volumes only)"
        )))
    }
}

fn assignments(info: &VolumeInfo, principal: Option<&str>) -> wire::PermissionsList {
    wire::PermissionsList {
        privilege_assignments: info
            .grants
            .iter()
            .filter(|(p, _)| principal.is_none_or(|only| only == p.as_str()))
            .map(|(principal, privileges)| wire::PrivilegeAssignment {
                principal: principal.clone(),
                privileges: privileges.clone(),
            })
            .collect(),
    }
}

async fn get_grants(
    State(state): State<AppState>,
    Path((securable_type, full_name)): Path<(String, String)>,
    Params(req): Params<wire::GetPermissions>,
) -> ApiResult<Json<wire::PermissionsList>> {
    volume_securable(&securable_type)?;
    let info = state.catalog.get_volume(&full_name)?;
    Ok(Json(assignments(&info, req.principal.as_deref())))
}

async fn update_grants(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((securable_type, full_name)): Path<(String, String)>,
    Params(req): Params<wire::UpdatePermissions>,
) -> ApiResult<Json<wire::PermissionsList>> {
    volume_securable(&securable_type)?;
    let info = state.catalog.get_volume(&full_name)?;
    require_owner(&caller, &info)?;
    let changes: Vec<GrantChange> = req
        .changes
        .into_iter()
        .map(|c| GrantChange {
            principal: c.principal,
            add: c
                .add
                .iter()
                .map(|p| p.to_ascii_uppercase().replace(' ', "_"))
                .collect(),
            remove: c
                .remove
                .iter()
                .map(|p| p.to_ascii_uppercase().replace(' ', "_"))
                .collect(),
        })
        .collect();
    let info =
        kiln_core::blocking::run(|| state.catalog.update_volume_grants(&full_name, &changes))?;
    Ok(Json(assignments(&info, None)))
}

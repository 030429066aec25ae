//! Workspace API 2.0: notebooks, files and directories.

use axum::extract::State;
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use base64::Engine as _;
use kiln_api::workspace as wire;
use kiln_api::Empty;
use kiln_core::Result;
use kiln_workspace::object_access::{home_owner, object_type};
use kiln_workspace::permissions::{AclEntry, Grantee};
use kiln_workspace::workspace::{Format, Language, ObjectRecord, ObjectType};

use super::{ep, Endpoint};
use crate::access::{can_read_object, principal, require_object};
use crate::error::ApiResult;
use crate::extract::{base64_field, MultipartOr, Params};
use crate::state::AppState;
use kiln_identity::Caller;

const W: &str = "/api/2.0/workspace";

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    vec![
        ep(M::GET, format!("{W}/list"), "workspace/list", get(list)),
        ep(
            M::GET,
            format!("{W}/get-status"),
            "workspace/get-status",
            get(get_status),
        ),
        ep(
            M::POST,
            format!("{W}/mkdirs"),
            "workspace/mkdirs",
            post(mkdirs),
        ),
        ep(
            M::POST,
            format!("{W}/import"),
            "workspace/import",
            post(import),
        ),
        ep(
            M::GET,
            format!("{W}/export"),
            "workspace/export",
            get(export),
        ),
        ep(
            M::POST,
            format!("{W}/delete"),
            "workspace/delete",
            post(delete),
        ),
    ]
}

fn info(o: ObjectRecord) -> wire::ObjectInfo {
    let size = (o.object_type == ObjectType::File).then(|| o.bytes().len() as u64);
    wire::ObjectInfo {
        resource_id: o.object_id.to_string(),
        path: o.path,
        object_type: o.object_type.as_str().into(),
        object_id: o.object_id,
        language: o.language.map(|l| l.as_str().into()),
        created_at: o.created_at,
        modified_at: o.modified_at,
        size,
    }
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::PathRef>,
) -> ApiResult<Json<wire::ListResponse>> {
    state.workspace.ensure_home(&caller.user_name)?;
    let object = state.workspace.get(&req.path)?;
    require_object(&state, &caller, &object, "CAN_READ")?;
    let who = principal(&state, &caller);
    Ok(Json(wire::ListResponse {
        objects: state
            .workspace
            .list(&req.path)?
            .into_iter()
            .filter(|o| can_read_object(&state, &who, o))
            .map(info)
            .collect(),
    }))
}

async fn get_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::PathRef>,
) -> ApiResult<Json<wire::ObjectInfo>> {
    state.workspace.ensure_home(&caller.user_name)?;
    let object = state.workspace.get(&req.path)?;
    require_object(&state, &caller, &object, "CAN_READ")?;
    Ok(Json(info(object)))
}

/// Objects created outside the creator's home folder are granted CAN_MANAGE
/// to their creator (inside it, the home folder's owner already holds it).
fn grant_creator(state: &AppState, caller: &Caller, object: &ObjectRecord) -> Result<()> {
    if caller.admin || home_owner(&object.path) == Some(caller.user_name.as_str()) {
        return Ok(());
    }
    let grantee = if is_service_principal(state, caller) {
        Grantee::ServicePrincipal(caller.user_name.clone())
    } else {
        Grantee::User(caller.user_name.clone())
    };
    state.permissions.set(
        object_type(object.object_type),
        &object.object_id.to_string(),
        vec![AclEntry {
            grantee,
            level: "CAN_MANAGE".into(),
        }],
        false,
    )
}

fn is_service_principal(state: &AppState, caller: &Caller) -> bool {
    state
        .identity
        .principal(&caller.principal_id)
        .map(|p| p.kind == kiln_store::PrincipalKind::ServicePrincipal)
        .unwrap_or(false)
}

async fn mkdirs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::PathRef>,
) -> ApiResult<Json<Empty>> {
    state.workspace.ensure_home(&caller.user_name)?;
    let nearest = state.workspace.nearest_existing(&req.path)?;
    let needed = if nearest.path == kiln_workspace::workspace::normalize(&req.path)? {
        "CAN_READ"
    } else {
        "CAN_EDIT"
    };
    require_object(&state, &caller, &nearest, needed)?;
    let created = state.workspace.mkdirs(&req.path)?;
    if let Some(top) = created.first() {
        grant_creator(&state, &caller, top)?;
    }
    Ok(Json(Empty {}))
}

/// JSON with base64 `content`, or multipart with a raw `content` part (`w.workspace.upload`).
async fn import(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: MultipartOr<wire::Import>,
) -> ApiResult<Json<Empty>> {
    state.workspace.ensure_home(&caller.user_name)?;
    let (path, format, language, content, overwrite) = match body {
        MultipartOr::Params(req) => {
            let content = base64_field("content", req.content.as_deref().unwrap_or(""))?;
            (
                req.path,
                req.format,
                req.language,
                content,
                req.overwrite.unwrap_or(false),
            )
        }
        MultipartOr::Multipart(form) => (
            form.required("path")?,
            form.text("format"),
            form.text("language"),
            form.file("content").map(|b| b.to_vec()).unwrap_or_default(),
            form.flag("overwrite"),
        ),
    };
    let format = Format::parse(format.as_deref().unwrap_or("SOURCE"))?;
    let language = language
        .as_deref()
        .filter(|l| !l.is_empty())
        .map(Language::parse)
        .transpose()?;
    let existing = state.workspace.get(&path).ok();
    match &existing {
        Some(object) => require_object(&state, &caller, object, "CAN_EDIT")?,
        None => {
            let parent = state.workspace.nearest_existing(&path)?;
            require_object(&state, &caller, &parent, "CAN_EDIT")?;
        }
    }
    let object = state
        .workspace
        .import(&path, format, language, &content, overwrite)?;
    if existing.is_none() {
        grant_creator(&state, &caller, &object)?;
    }
    Ok(Json(Empty {}))
}

async fn export(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::Export>,
) -> ApiResult<Response> {
    let object = state.workspace.get(&req.path)?;
    require_object(&state, &caller, &object, "CAN_READ")?;
    let format = req.format.as_deref().map(Format::parse).transpose()?;
    let (content, file_type) = state.workspace.export(&req.path, format)?;
    if req.direct_download.unwrap_or(false) {
        return Ok((
            [(header::CONTENT_TYPE, "application/octet-stream")],
            content,
        )
            .into_response());
    }
    Ok(Json(wire::ExportResponse {
        content: base64::engine::general_purpose::STANDARD.encode(content),
        file_type,
    })
    .into_response())
}

/// Deleting needs CAN_EDIT on the object (grants only add, so it holds
/// CAN_EDIT on everything below); the ACLs of what is deleted go with it.
async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::Delete>,
) -> ApiResult<Json<Empty>> {
    let object = state.workspace.get(&req.path)?;
    require_object(&state, &caller, &object, "CAN_EDIT")?;
    let gone = state
        .workspace
        .delete(&req.path, req.recursive.unwrap_or(false))?;
    for o in gone {
        state
            .permissions
            .forget(object_type(o.object_type), &o.object_id.to_string())?;
    }
    Ok(Json(Empty {}))
}

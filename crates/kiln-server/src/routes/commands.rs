//! REST API 1.2 execution contexts and commands.

use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};
use axum::{Extension, Json};
use kiln_api::commands as wire;
use kiln_compute::contexts::Language;
use kiln_core::{Error, ErrorCode};
use serde_json::Value;

use super::{ep, Endpoint};
use crate::access::require_cluster;
use crate::error::ApiResult;
use crate::extract::{MultipartOr, Params};
use crate::state::AppState;
use kiln_identity::Caller;

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    vec![
        ep(
            M::POST,
            "/api/1.2/contexts/create",
            "contexts/create",
            post(create_context),
        ),
        ep(
            M::GET,
            "/api/1.2/contexts/status",
            "contexts/status",
            get(context_status),
        ),
        ep(
            M::POST,
            "/api/1.2/contexts/destroy",
            "contexts/destroy",
            post(destroy_context),
        ),
        ep(
            M::POST,
            "/api/1.2/commands/execute",
            "commands/execute",
            post(execute_command),
        ),
        ep(
            M::GET,
            "/api/1.2/commands/status",
            "commands/status",
            get(command_status),
        ),
        ep(
            M::POST,
            "/api/1.2/commands/cancel",
            "commands/cancel",
            post(cancel_command),
        ),
    ]
}

async fn create_context(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::CreateContext>,
) -> ApiResult<Json<wire::Created>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_ATTACH_TO")?;
    crate::access::require_code_execution(&state, &caller)?;
    let language = Language::parse(req.language.as_deref().unwrap_or("python"))?;
    let credential = state.identity.issue_context_credential(&caller)?;
    let context = state
        .contexts
        .create_context(
            &caller.user_name,
            credential.clone(),
            &req.cluster_id,
            language,
        )
        .inspect_err(|_| state.identity.revoke_context_credential(&credential))?;
    state
        .identity
        .bind_context_credential(&credential, &context.id);
    Ok(Json(wire::Created {
        id: context.id.clone(),
    }))
}

async fn context_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::ContextRef>,
) -> ApiResult<Json<wire::ContextStatusResponse>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_ATTACH_TO")?;
    let context = state.contexts.context(&req.cluster_id, &req.context_id)?;
    Ok(Json(wire::ContextStatusResponse {
        id: context.id.clone(),
        status: context.status().as_str().into(),
    }))
}

async fn destroy_context(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::ContextRef>,
) -> ApiResult<Json<wire::Created>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_ATTACH_TO")?;
    state
        .contexts
        .destroy_context(&req.cluster_id, &req.context_id)?;
    Ok(Json(wire::Created { id: req.context_id }))
}

fn options_of(options: Option<Value>) -> Result<Value, Error> {
    match options {
        None => Ok(Value::Object(Default::default())),
        Some(Value::String(text)) if text.trim().is_empty() => {
            Ok(Value::Object(Default::default()))
        }
        Some(Value::String(text)) => serde_json::from_str(&text)
            .map_err(|e| Error::invalid(format!("Invalid value for field options: {e}"))),
        Some(object @ Value::Object(_)) => Ok(object),
        Some(_) => Err(Error::invalid(
            "Invalid value for field options: expected an object",
        )),
    }
}

async fn execute_command(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: MultipartOr<wire::ExecuteCommand>,
) -> ApiResult<Json<wire::Created>> {
    // commandFile is the path of a file holding the command (seed 002), or
    // the command itself uploaded as a file part of a multipart form.
    let (req, uploaded) = match body {
        MultipartOr::Params(req) => (req, false),
        MultipartOr::Multipart(form) => {
            let uploaded = form.is_file("commandFile");
            let req: wire::ExecuteCommand = serde_json::from_value(form.text_fields())
                .map_err(|e| Error::invalid(format!("Invalid request: {e}")))?;
            (req, uploaded)
        }
    };
    require_cluster(&state, &caller, &req.cluster_id, "CAN_ATTACH_TO")?;
    let language = req.language.as_deref().map(Language::parse).transpose()?;
    let command = match (req.command, req.command_file) {
        (Some(command), None) => command,
        (None, Some(file)) if uploaded => file,
        (None, Some(path)) => command_file(&state, &caller, path.trim()).await?,
        (Some(_), Some(_)) => {
            return Err(Error::invalid("Specify either command or commandFile, not both").into())
        }
        (None, None) => return Err(Error::invalid("Missing required field: command").into()),
    };
    let options = options_of(req.options)?;
    if let Some(limit) = options.get("displayRowLimit") {
        if limit.as_u64().is_none_or(|n| n == 0) {
            return Err(Error::invalid(
                "Invalid value for field options.displayRowLimit: expected a positive integer",
            )
            .into());
        }
    }
    let id =
        state
            .contexts
            .execute(&req.cluster_id, &req.context_id, language, command, options)?;
    Ok(Json(wire::Created { id }))
}

async fn command_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::CommandRef>,
) -> ApiResult<Json<wire::CommandStatusResponse>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_ATTACH_TO")?;
    let view = state
        .contexts
        .command(&req.cluster_id, &req.context_id, &req.command_id)?;
    Ok(Json(wire::CommandStatusResponse {
        id: view.id,
        status: view.state.as_str().into(),
        results: view.results,
    }))
}

async fn cancel_command(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::CommandRef>,
) -> ApiResult<Json<wire::Created>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_ATTACH_TO")?;
    state
        .contexts
        .cancel(&req.cluster_id, &req.context_id, &req.command_id)?;
    Ok(Json(wire::Created { id: req.command_id }))
}

/// The source a `commandFile` path names: a workspace file or notebook
/// (`/Workspace/…` or a workspace path, CAN_READ), a volume file (`/Volumes/…`,
/// READ_VOLUME) or a DBFS file (`dbfs:/…`, `/dbfs/…` or a DBFS path).
async fn command_file(state: &AppState, caller: &Caller, path: &str) -> Result<String, Error> {
    let missing = || Error::invalid(format!("commandFile {path}: no such file"));
    if path.is_empty() {
        return Err(Error::invalid(
            "Invalid value for field commandFile: a path is required",
        ));
    }
    let bytes = if path.starts_with("/Volumes/") {
        let target = super::files::target_for(state, caller, path, kiln_catalog::READ_VOLUME)?;
        let local = target.local.clone();
        kiln_core::blocking::run(move || std::fs::read(&local)).map_err(|_| missing())?
    } else {
        let workspace_path = path
            .strip_prefix("/Workspace")
            .filter(|p| p.starts_with('/'));
        let object = match workspace_path {
            Some(p) => Some(state.workspace.get(p).map_err(|_| missing())?),
            None if !path.starts_with("dbfs:") && !path.starts_with("/dbfs/") => {
                state.workspace.get(path).ok()
            }
            None => None,
        };
        match object {
            Some(object) => {
                crate::access::require_object(state, caller, &object, "CAN_READ")?;
                state
                    .workspace
                    .export(&object.path, None)
                    .map_err(|_| missing())?
                    .0
            }
            None => {
                let dbfs_path = path
                    .strip_prefix("/dbfs")
                    .filter(|p| p.starts_with('/'))
                    .unwrap_or(path);
                state
                    .dbfs
                    .read(dbfs_path, 0, None)
                    .map_err(|e| match e.code {
                        ErrorCode::PermissionDenied => e,
                        _ => missing(),
                    })?
            }
        }
    };
    String::from_utf8(bytes)
        .map_err(|_| Error::invalid(format!("commandFile {path}: not UTF-8 text")))
}

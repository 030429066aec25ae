//! REST API 1.2 execution contexts and commands.

use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};
use axum::{Extension, Json};
use kiln_api::commands as wire;
use kiln_compute::contexts::Language;
use kiln_core::Error;
use serde_json::Value;

use super::access::require_cluster;
use super::{ep, Endpoint};
use crate::error::ApiResult;
use crate::extract::Params;
use crate::identity::Caller;
use crate::state::AppState;

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
    crate::routes::access::require_code_execution(&state, &caller)?;
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
    Params(req): Params<wire::ExecuteCommand>,
) -> ApiResult<Json<wire::Created>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_ATTACH_TO")?;
    let language = req.language.as_deref().map(Language::parse).transpose()?;
    let command = match (req.command, req.command_file) {
        (Some(command), None) | (None, Some(command)) => command,
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

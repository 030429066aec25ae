//! Token management (`w.token_management`): admins list and revoke every
//! personal access token and create on-behalf-of tokens for service principals.

use axum::extract::{Path, State};
use axum::http::Method;
use axum::routing::{delete, get, post};
use axum::{Extension, Json};
use kiln_api::tokens as wire;
use kiln_api::Empty;
use kiln_core::{Error, ErrorCode};
use kiln_store::{PrincipalKind, TokenKind, TokenRecord};

use super::{ep, todo_ep, Endpoint};
use crate::error::ApiResult;
use crate::extract::Params;
use crate::state::AppState;
use kiln_identity::Caller;

const BASE: &str = "/api/2.0/token-management";

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    let permissions = "/api/2.0/permissions/authorization/tokens";
    vec![
        ep(
            M::POST,
            format!("{BASE}/on-behalf-of/tokens"),
            "token-management/create-obo-token",
            post(create_obo_token),
        ),
        ep(
            M::GET,
            format!("{BASE}/tokens"),
            "token-management/list",
            get(list),
        ),
        ep(
            M::GET,
            format!("{BASE}/tokens/{{token_id}}"),
            "token-management/get",
            get(get_token),
        ),
        ep(
            M::DELETE,
            format!("{BASE}/tokens/{{token_id}}"),
            "token-management/delete",
            delete(delete_token),
        ),
        todo_ep(M::GET, permissions, "token-management/get-permissions"),
        todo_ep(
            M::GET,
            format!("{permissions}/permissionLevels"),
            "token-management/get-permission-levels",
        ),
    ]
}

fn require_admin(caller: &Caller) -> Result<(), Error> {
    if caller.admin {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::PermissionDenied,
            "Only workspace admins can manage the tokens of others.",
        ))
    }
}

fn info(state: &AppState, record: &TokenRecord) -> wire::TokenInfo {
    let owner = state.identity.principal(&record.principal_id).ok();
    let numeric = record.principal_id.parse::<i64>().ok();
    wire::TokenInfo {
        token_id: record.token_id.clone(),
        comment: record.comment.clone().unwrap_or_default(),
        creation_time: record.created_ms,
        expiry_time: record.expiry_ms,
        owner_id: numeric,
        created_by_id: numeric,
        created_by_username: owner.map(|p| p.user_name).unwrap_or_default(),
        workspace_id: state.workspace_id.parse().ok(),
    }
}

async fn create_obo_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::CreateOboTokenRequest>,
) -> ApiResult<Json<wire::CreateOboTokenResponse>> {
    require_admin(&caller)?;
    let principal = state
        .identity
        .by_name(&req.application_id)?
        .filter(|p| p.kind == PrincipalKind::ServicePrincipal)
        .ok_or_else(|| {
            Error::not_found(format!(
                "Service principal with application id {} does not exist.",
                req.application_id
            ))
        })?;
    if req
        .lifetime_seconds
        .is_some_and(|s| s > 10 * 365 * 24 * 3600)
    {
        return Err(Error::invalid("lifetime_seconds must be at most 10 years").into());
    }
    let (value, record) = state.identity.issue_token(
        &principal.id,
        TokenKind::Personal,
        req.lifetime_seconds,
        req.comment,
    )?;
    Ok(Json(wire::CreateOboTokenResponse {
        token_info: info(&state, &record),
        token_value: value,
    }))
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::ListTokenManagementRequest>,
) -> ApiResult<Json<wire::ListTokenManagementResponse>> {
    require_admin(&caller)?;
    let by_name = match &req.created_by_username {
        Some(name) => Some(state.identity.by_name(name)?.map(|p| p.id)),
        None => None,
    };
    let token_infos = state
        .identity
        .all_personal_tokens()?
        .iter()
        .filter(|t| {
            req.created_by_id
                .as_ref()
                .is_none_or(|id| &t.principal_id == id)
        })
        .filter(|t| {
            by_name
                .as_ref()
                .is_none_or(|id| id.as_ref() == Some(&t.principal_id))
        })
        .map(|t| info(&state, t))
        .collect();
    Ok(Json(wire::ListTokenManagementResponse { token_infos }))
}

async fn get_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(token_id): Path<String>,
) -> ApiResult<Json<wire::GetTokenResponse>> {
    require_admin(&caller)?;
    let record = state
        .identity
        .all_personal_tokens()?
        .into_iter()
        .find(|t| t.token_id == token_id)
        .ok_or_else(|| Error::not_found(format!("Token with ID {token_id} does not exist.")))?;
    Ok(Json(wire::GetTokenResponse {
        token_info: info(&state, &record),
    }))
}

async fn delete_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(token_id): Path<String>,
) -> ApiResult<Json<Empty>> {
    require_admin(&caller)?;
    state.identity.revoke_any_token(&token_id)?;
    Ok(Json(Empty {}))
}

//! Secrets API 2.0. Values are base64 on the wire and sealed at rest; every
//! call is checked against the scope's ACL.

use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};
use axum::{Extension, Json};
use base64::Engine as _;
use kiln_api::secrets as wire;
use kiln_api::Empty;
use kiln_core::Error;
use kiln_workspace::secrets::AclPermission;

use super::{ep, Endpoint};
use crate::error::ApiResult;
use crate::extract::{base64_field, Params};
use crate::state::AppState;
use kiln_identity::Caller;

const S: &str = "/api/2.0/secrets";

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    vec![
        ep(
            M::POST,
            format!("{S}/scopes/create"),
            "secrets/scopes/create",
            post(create_scope),
        ),
        ep(
            M::POST,
            format!("{S}/scopes/delete"),
            "secrets/scopes/delete",
            post(delete_scope),
        ),
        ep(
            M::GET,
            format!("{S}/scopes/list"),
            "secrets/scopes/list",
            get(list_scopes),
        ),
        ep(M::POST, format!("{S}/put"), "secrets/put", post(put_secret)),
        ep(
            M::POST,
            format!("{S}/delete"),
            "secrets/delete",
            post(delete_secret),
        ),
        ep(
            M::GET,
            format!("{S}/list"),
            "secrets/list",
            get(list_secrets),
        ),
        ep(M::GET, format!("{S}/get"), "secrets/get", get(get_secret)),
        ep(
            M::POST,
            format!("{S}/acls/put"),
            "secrets/acls/put",
            post(put_acl),
        ),
        ep(
            M::POST,
            format!("{S}/acls/delete"),
            "secrets/acls/delete",
            post(delete_acl),
        ),
        ep(
            M::GET,
            format!("{S}/acls/get"),
            "secrets/acls/get",
            get(get_acl),
        ),
        ep(
            M::GET,
            format!("{S}/acls/list"),
            "secrets/acls/list",
            get(list_acls),
        ),
    ]
}

pub use crate::access::principal;

async fn create_scope(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::CreateScope>,
) -> ApiResult<Json<Empty>> {
    if req
        .scope_backend_type
        .as_deref()
        .is_some_and(|t| t != "DATABRICKS")
    {
        return Err(Error::invalid("Only DATABRICKS-backed secret scopes are supported").into());
    }
    state.secrets.create_scope(
        &principal(&state, &caller),
        &req.scope,
        req.initial_manage_principal.as_deref(),
    )?;
    Ok(Json(Empty {}))
}

async fn delete_scope(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::ScopeRef>,
) -> ApiResult<Json<Empty>> {
    state
        .secrets
        .delete_scope(&principal(&state, &caller), &req.scope)?;
    Ok(Json(Empty {}))
}

async fn list_scopes(State(state): State<AppState>) -> ApiResult<Json<wire::ListScopesResponse>> {
    let scopes = state
        .secrets
        .scopes()?
        .into_iter()
        .map(|s| wire::SecretScope {
            name: s.name,
            backend_type: s.backend_type,
        })
        .collect();
    Ok(Json(wire::ListScopesResponse { scopes }))
}

async fn put_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::PutSecret>,
) -> ApiResult<Json<Empty>> {
    let value = match (req.string_value, req.bytes_value) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => base64_field("bytes_value", &b64)?,
        _ => {
            return Err(
                Error::invalid("Exactly one of string_value and bytes_value must be given").into(),
            )
        }
    };
    state
        .secrets
        .put_secret(&principal(&state, &caller), &req.scope, &req.key, &value)?;
    Ok(Json(Empty {}))
}

async fn delete_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::SecretRef>,
) -> ApiResult<Json<Empty>> {
    state
        .secrets
        .delete_secret(&principal(&state, &caller), &req.scope, &req.key)?;
    Ok(Json(Empty {}))
}

async fn list_secrets(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::ScopeRef>,
) -> ApiResult<Json<wire::ListSecretsResponse>> {
    let secrets = state
        .secrets
        .list_secrets(&principal(&state, &caller), &req.scope)?
        .into_iter()
        .map(|s| wire::SecretMetadata {
            key: s.key,
            last_updated_timestamp: s.last_updated_timestamp,
        })
        .collect();
    Ok(Json(wire::ListSecretsResponse { secrets }))
}

async fn get_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::SecretRef>,
) -> ApiResult<Json<wire::GetSecretResponse>> {
    let value = state
        .secrets
        .get_secret(&principal(&state, &caller), &req.scope, &req.key)?;
    Ok(Json(wire::GetSecretResponse {
        key: req.key,
        value: base64::engine::general_purpose::STANDARD.encode(value),
    }))
}

async fn put_acl(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::PutAcl>,
) -> ApiResult<Json<Empty>> {
    let permission = AclPermission::parse(&req.permission)?;
    let known = state.identity.by_name(&req.principal)?.is_some()
        || state.groups.by_name(&req.principal)?.is_some();
    if !known {
        return Err(kiln_core::Error::not_found(format!(
            "Principal {} does not exist.",
            req.principal
        ))
        .into());
    }
    state.secrets.put_acl(
        &principal(&state, &caller),
        &req.scope,
        &req.principal,
        permission,
    )?;
    Ok(Json(Empty {}))
}

async fn delete_acl(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::AclRef>,
) -> ApiResult<Json<Empty>> {
    state
        .secrets
        .delete_acl(&principal(&state, &caller), &req.scope, &req.principal)?;
    Ok(Json(Empty {}))
}

async fn get_acl(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::AclRef>,
) -> ApiResult<Json<wire::AclItem>> {
    let acl = state
        .secrets
        .acl(&principal(&state, &caller), &req.scope, &req.principal)?;
    Ok(Json(wire::AclItem {
        principal: acl.principal,
        permission: acl.permission.as_str().into(),
    }))
}

async fn list_acls(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::ScopeRef>,
) -> ApiResult<Json<wire::ListAclsResponse>> {
    let items = state
        .secrets
        .acls(&principal(&state, &caller), &req.scope)?
        .into_iter()
        .map(|a| wire::AclItem {
            principal: a.principal,
            permission: a.permission.as_str().into(),
        })
        .collect();
    Ok(Json(wire::ListAclsResponse { items }))
}

//! Token API 2.0, OAuth M2M (host metadata, discovery, token endpoint) and
//! service-principal secrets.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json};
use kiln_api::oauth as oauth_wire;
use kiln_api::tokens as wire;
use kiln_api::Empty;
use kiln_core::{time::rfc3339, Error};
use kiln_store::{SpSecretRecord, TokenKind, TokenRecord};

use super::oauth_u2m::oauth_error;
use super::{ep, Endpoint};
use crate::error::ApiResult;
use crate::extract::{from_query, Params};
use crate::listen::Scheme;
use crate::middleware::decode_basic;
use crate::state::AppState;
use kiln_identity::{Caller, OAUTH_TOKEN_SECONDS};

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    let secrets = "/api/2.0/accounts/servicePrincipals/{id}/credentials/secrets";
    vec![
        ep(
            M::POST,
            "/api/2.0/token/create",
            "token/create",
            post(create_token),
        ),
        ep(
            M::GET,
            "/api/2.0/token/list",
            "token/list",
            get(list_tokens),
        ),
        ep(
            M::POST,
            "/api/2.0/token/delete",
            "token/delete",
            post(revoke_token),
        ),
        ep(
            M::GET,
            "/.well-known/databricks-config",
            "host metadata",
            get(host_metadata),
        ),
        ep(
            M::GET,
            "/oidc/.well-known/oauth-authorization-server",
            "oidc discovery",
            get(oidc_discovery),
        ),
        ep(M::POST, "/oidc/v1/token", "oidc token", post(oauth_token)),
        ep(
            M::POST,
            secrets,
            "service-principal-secrets/create",
            post(create_sp_secret),
        ),
        ep(
            M::GET,
            secrets,
            "service-principal-secrets/list",
            get(list_sp_secrets),
        ),
        ep(
            M::DELETE,
            format!("{secrets}/{{secret_id}}"),
            "service-principal-secrets/delete",
            delete(delete_sp_secret),
        ),
    ]
}

fn token_info(record: &TokenRecord) -> wire::PublicTokenInfo {
    wire::PublicTokenInfo {
        token_id: record.token_id.clone(),
        creation_time: record.created_ms,
        expiry_time: record.expiry_ms,
        comment: record.comment.clone().unwrap_or_default(),
    }
}

async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::CreateToken>,
) -> ApiResult<Json<wire::CreateTokenResponse>> {
    if req
        .lifetime_seconds
        .is_some_and(|s| s > 10 * 365 * 24 * 3600)
    {
        return Err(Error::invalid("lifetime_seconds must be at most 10 years").into());
    }
    let (value, record) = state.identity.issue_token(
        &caller.principal_id,
        TokenKind::Personal,
        req.lifetime_seconds,
        req.comment,
    )?;
    Ok(Json(wire::CreateTokenResponse {
        token_value: value,
        token_info: token_info(&record),
    }))
}

async fn list_tokens(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<wire::ListTokensResponse>> {
    let tokens = state.identity.tokens_of(&caller.principal_id)?;
    Ok(Json(wire::ListTokensResponse {
        token_infos: tokens.iter().map(token_info).collect(),
    }))
}

async fn revoke_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::RevokeToken>,
) -> ApiResult<Json<Empty>> {
    state
        .identity
        .revoke_token(&caller.principal_id, &req.token_id)?;
    Ok(Json(Empty {}))
}

/// The workspace URL as the client reached it (scheme, host and port).
/// HTTP/2 clients send no `Host`: their `:authority` is in the URI.
pub(crate) fn base_url(
    headers: &HeaderMap,
    uri: &axum::http::Uri,
    scheme: Option<Extension<Scheme>>,
) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("127.0.0.1");
    let scheme = scheme.map(|Extension(s)| s).unwrap_or(Scheme::Http);
    format!("{}://{host}", scheme.as_str())
}

async fn host_metadata(
    State(state): State<AppState>,
    scheme: Option<Extension<Scheme>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Json<oauth_wire::HostMetadata> {
    Json(oauth_wire::HostMetadata {
        oidc_endpoint: format!("{}/oidc", base_url(&headers, &uri, scheme)),
        workspace_id: state.workspace_id.clone(),
        account_id: state.account_id.clone(),
        cloud: "AWS".into(),
    })
}

async fn oidc_discovery(
    scheme: Option<Extension<Scheme>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Json<oauth_wire::OidcDiscovery> {
    let base = base_url(&headers, &uri, scheme);
    Json(oauth_wire::OidcDiscovery {
        issuer: format!("{base}/oidc"),
        authorization_endpoint: format!("{base}/oidc/v1/authorize"),
        token_endpoint: format!("{base}/oidc/v1/token"),
        grant_types_supported: vec![
            "client_credentials".into(),
            "authorization_code".into(),
            "refresh_token".into(),
        ],
        response_types_supported: vec!["code".into()],
        code_challenge_methods_supported: vec!["S256".into()],
        token_endpoint_auth_methods_supported: vec![
            "client_secret_basic".into(),
            "client_secret_post".into(),
            "none".into(),
        ],
        scopes_supported: vec!["all-apis".into(), "offline_access".into()],
    })
}

/// RFC 6749 client-credentials grant; client auth by Basic header or form fields.
async fn oauth_token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form: oauth_wire::TokenRequest = match from_query(&String::from_utf8_lossy(&body)) {
        Ok(form) => form,
        Err(e) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &e.message),
    };
    match form.grant_type.as_deref() {
        Some("client_credentials") => {}
        Some("authorization_code") | Some("refresh_token") => {
            return super::oauth_u2m::token_grant(&state, form)
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be client_credentials, authorization_code or refresh_token",
            )
        }
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|v| decode_basic(v).ok());
    let (client_id, secret) = match (basic, form.client_id.clone(), form.client_secret.clone()) {
        (Some(pair), _, _) => pair,
        (None, Some(id), Some(secret)) => (id, secret),
        _ => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client credentials are required",
            )
        }
    };
    match state.identity.issue_oauth_token(&client_id, &secret) {
        Ok(token) => Json(oauth_wire::TokenResponse {
            access_token: token,
            token_type: "Bearer".into(),
            expires_in: OAUTH_TOKEN_SECONDS,
            scope: form.scope.unwrap_or_else(|| "all-apis".into()),
            refresh_token: None,
        })
        .into_response(),
        Err(_) => oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed",
        ),
    }
}

fn may_manage_sp(caller: &Caller, sp_id: &str) -> Result<(), Error> {
    if caller.admin || caller.principal_id == sp_id {
        return Ok(());
    }
    Err(Error::permission_denied(
        "Only workspace admins can manage service principal secrets.",
    ))
}

fn secret_info(record: &SpSecretRecord) -> oauth_wire::SecretInfo {
    oauth_wire::SecretInfo {
        id: record.id.clone(),
        secret_hash: record.secret_hash[..8].to_string(),
        status: "ACTIVE".into(),
        create_time: rfc3339(record.created_ms),
        update_time: rfc3339(record.created_ms),
    }
}

async fn create_sp_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<oauth_wire::CreateServicePrincipalSecretResponse>> {
    may_manage_sp(&caller, &id)?;
    let (value, record) = state.identity.create_sp_secret(&id)?;
    let info = secret_info(&record);
    Ok(Json(oauth_wire::CreateServicePrincipalSecretResponse {
        id: info.id,
        secret: value,
        secret_hash: info.secret_hash,
        status: info.status,
        create_time: info.create_time,
        update_time: info.update_time,
    }))
}

async fn list_sp_secrets(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<oauth_wire::ListServicePrincipalSecretsResponse>> {
    may_manage_sp(&caller, &id)?;
    let secrets = state.identity.sp_secrets_of(&id)?;
    Ok(Json(oauth_wire::ListServicePrincipalSecretsResponse {
        secrets: secrets.iter().map(secret_info).collect(),
    }))
}

async fn delete_sp_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, secret_id)): Path<(String, String)>,
) -> ApiResult<Json<Empty>> {
    may_manage_sp(&caller, &id)?;
    state.identity.delete_sp_secret(&id, &secret_id)?;
    Ok(Json(Empty {}))
}

//! Serving the Data API over HTTP: authentication (a Lakebase credential for
//! the branch or a workspace token; the identity must own the project or
//! hold an identity role on the branch), CORS as the configuration allows,
//! `Server-Timing`, and PostgREST's response headers.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_lakebase::credentials::TOKEN_PREFIX;
use kiln_lakebase::data_api::exec::Method as RestMethod;
use kiln_lakebase::data_api::{DataApiRecord, RestError};

use super::postgres_data_api::{rest_error, rest_request};
use crate::state::AppState;

/// `(project, branch, database, path)`.
pub(super) type Target = (String, String, String, String);

pub(super) async fn serve(
    state: &AppState,
    (project, branch, database, path): Target,
    method: Method,
    headers: &HeaderMap,
    raw: Option<String>,
    bytes: Bytes,
) -> Response {
    let started = Instant::now();
    let api = match state.lakebase.data_api(&project, &branch, &database) {
        Ok(api) => api,
        Err(e) => return rest_error(&RestError::new(404, "PGRST000", e.message)),
    };
    let origin = allowed_origin(&api, headers);
    if method == Method::OPTIONS {
        return preflight(origin);
    }
    let mut response = match answer(state, &api, method, headers, path, raw, bytes).await {
        Ok(r) => r,
        Err(e) => rest_error(&e),
    };
    let h = response.headers_mut();
    if let Some(origin) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Content-Range, Content-Location"),
        );
    }
    if api.spec.server_timing_enabled {
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        if let Ok(v) = HeaderValue::from_str(&format!("total;dur={ms:.1}")) {
            h.insert("server-timing", v);
        }
    }
    response
}

async fn answer(
    state: &AppState,
    api: &DataApiRecord,
    method: Method,
    headers: &HeaderMap,
    path: String,
    raw: Option<String>,
    bytes: Bytes,
) -> Result<Response, RestError> {
    let identity = authenticate(state, api, headers)?;
    let method = match method {
        Method::GET => RestMethod::Get,
        Method::HEAD => RestMethod::Head,
        Method::POST => RestMethod::Post,
        Method::PATCH => RestMethod::Patch,
        Method::DELETE => RestMethod::Delete,
        _ => {
            return Err(RestError::new(
                405,
                "PGRST117",
                format!("Unsupported HTTP method: {method}"),
            ));
        }
    };
    let req = rest_request(method, path, headers, raw, &bytes)?;
    let answer = state.lakebase.data_api_request(api, &identity, req).await?;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = match answer.body {
        Some(body) => (status, Body::from(body)).into_response(),
        None => status.into_response(),
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    if let Some(range) = answer
        .content_range
        .and_then(|r| HeaderValue::from_str(&r).ok())
    {
        h.insert(header::CONTENT_RANGE, range);
    }
    Ok(response)
}

/// The caller's identity: from a Lakebase credential issued for an endpoint
/// of this branch, or from a workspace token (scope and rate limit apply).
fn authenticate(
    state: &AppState,
    api: &DataApiRecord,
    headers: &HeaderMap,
) -> Result<String, RestError> {
    let refused = |m: &str| RestError::new(401, "PGRST301", m);
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let identity = match bearer {
        None if !headers.contains_key(header::AUTHORIZATION) => {
            return Err(RestError::new(
                401,
                "PGRST302",
                "Anonymous access is disabled",
            ));
        }
        Some(token) if token.starts_with(TOKEN_PREFIX) => {
            let credential = state.lakebase.credentials.check(token).map_err(refused)?;
            let branch = format!("projects/{}/branches/{}/", api.project_id, api.branch_id);
            if !credential.endpoint.starts_with(&branch) {
                return Err(refused("The credential was issued for another branch"));
            }
            state
                .limiter
                .check(&format!("lakebase:{}", credential.identity))
                .map_err(|e| RestError::new(429, "PGRST000", e.message))?;
            credential.identity
        }
        _ => {
            let caller =
                crate::middleware::credentials(state, headers).map_err(|e| refused(&e.message))?;
            crate::middleware::check_scope(state, &caller, super::postgres_data_api::PREFIX)
                .map_err(|e| RestError::new(403, "PGRST301", e.message))?;
            state
                .limiter
                .check(&caller.credential)
                .map_err(|e| RestError::new(429, "PGRST000", e.message))?;
            caller.user_name
        }
    };
    let owner = state
        .lakebase
        .project(&api.project_id)
        .is_ok_and(|p| p.owner == identity);
    if !owner
        && !state
            .lakebase
            .has_identity_role(&api.project_id, &api.branch_id, &identity)
    {
        return Err(RestError::new(
            403,
            "PGRST301",
            format!(
                "{identity} has no identity role on this branch (create_role with identity_type)"
            ),
        ));
    }
    Ok(identity)
}

/// The `Origin` to echo when the configuration allows it.
fn allowed_origin(api: &DataApiRecord, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    let allowed = &api.spec.server_cors_allowed_origins;
    if allowed.iter().any(|a| a == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    allowed.iter().any(|a| a == text).then(|| origin.clone())
}

/// A CORS preflight (no credentials needed; nothing runs).
fn preflight(origin: Option<HeaderValue>) -> Response {
    let Some(origin) = origin else {
        return StatusCode::FORBIDDEN.into_response();
    };
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PATCH, DELETE, OPTIONS, HEAD"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(
            "Authorization, Content-Type, Accept, Prefer, Range, Accept-Profile, Content-Profile",
        ),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}

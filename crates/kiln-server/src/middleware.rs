//! Cross-cutting request handling: request id and one log line per request,
//! authentication of every non-public route, and per-credential rate limits.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use kiln_core::{Error, ErrorCode};

use crate::error::{ApiError, RenderedError};
use crate::state::AppState;
use kiln_identity::{Caller, Scope};

/// Routes answered without credentials.
pub fn is_public(path: &str) -> bool {
    // Multipart upload parts carry a signature instead of credentials.
    path.starts_with(crate::uploads::PART_PREFIX)
        // The Data API authenticates its requests itself (Lakebase credentials too).
        || path.starts_with(kiln_api::postgres::DATA_API_PREFIX)
        || crate::ui::is_public(path)
        // A statement's external result links carry their own token.
        || path == crate::routes::sql_statements::RESULT_LINK
        // Engines' credential leases are their own tokens.
        || path == crate::routes::engine_credentials::ENDPOINT_PATH
        || matches!(
            path,
            "/health"
                | "/.well-known/databricks-config"
                | "/oidc/.well-known/oauth-authorization-server"
                | "/oidc/v1/token"
                | "/oidc/v1/authorize"
        )
}

/// Every request's way in (one layer, not two: each layer costs a service
/// clone and a boxed future per request): assigns a request id,
/// [`authenticate`]s, gives REST 1.2 errors that API's body, and logs method,
/// path (never the query), status, latency and caller once the response is
/// ready.
pub async fn trace(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .map(str::to_string)
        .unwrap_or_else(kiln_core::ids::uuid4);
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let (mut response, user) = authenticate(&state, request, next).await;
    if path.starts_with("/api/1.2/") {
        response = rest12_errors(response);
    }
    tracing::info!(
        request_id = %request_id,
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        user = %user,
        "request"
    );
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// REST API 1.2 errors have that API's body, `{"error": "<message>"}` (the
/// SDK reads the text as the message and the status as the kind). Credential
/// and rate-limit refusals keep the workspace's body, as Databricks' gateway
/// sends them before the request reaches the 1.2 service.
/// (Applied by [`trace`], which sees every response: one middleware fewer.)
fn rest12_errors(response: Response) -> Response {
    let status = response.status();
    if matches!(status.as_u16(), 401 | 429) {
        return response;
    }
    match response.extensions().get::<RenderedError>().cloned() {
        Some(RenderedError(message)) => {
            let (mut parts, _) = response.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            let body = serde_json::json!({ "error": rest12_wording(&message) }).to_string();
            Response::from_parts(parts, axum::body::Body::from(body))
        }
        None => response,
    }
}

/// REST 1.2 words a missing id as Databricks' Scala `require` does (clients
/// compare the text: the SDK's own integration test checks
/// `requirement failed: missing contextId`).
fn rest12_wording(message: &str) -> String {
    match message.strip_prefix("Missing required field: ") {
        Some(field @ ("clusterId" | "contextId" | "commandId")) => {
            format!("requirement failed: missing {field}")
        }
        _ => message.to_string(),
    }
}

/// Authenticates the caller (Bearer or Basic), applies its rate limit and
/// runs the request as the caller; the response and the caller's user name
/// (empty for a public route or a refusal).
async fn authenticate(state: &AppState, mut request: Request, next: Next) -> (Response, String) {
    if is_public(request.uri().path()) {
        return (next.run(request).await, String::new());
    }
    let (caller, browser) = match credentials_or_session(state, &request) {
        Ok(found) => found,
        Err(err) => return (ApiError(err).into_response(), String::new()),
    };
    let gzip = browser && crate::ui::compress::accepts_gzip(request.headers());
    if let Err(err) = check_scope(state, &caller, request.uri().path()) {
        return (ApiError(err).into_response(), caller.user_name);
    }
    // Kiln's own engines are not throttled: they call the catalog on every statement.
    if caller.credential != "system" {
        if let Err(err) = state.limiter.check(&caller.credential) {
            return (ApiError(err).into_response(), caller.user_name);
        }
    }
    let user = caller.user_name.clone();
    request.extensions_mut().insert(caller);
    let mut response = next.run(request).await;
    if gzip {
        response = crate::ui::compress::gzip_json(response).await;
    }
    (response, user)
}

/// A scoped credential reaches only its routes: the engines' credential the
/// Unity Catalog API, a context's credential nothing once its context ended.
pub(crate) fn check_scope(state: &AppState, caller: &Caller, path: &str) -> Result<(), Error> {
    match &caller.scope {
        Scope::Full => Ok(()),
        Scope::Catalog if path.starts_with("/api/2.1/unity-catalog/") => Ok(()),
        Scope::Catalog => Err(Error::new(
            ErrorCode::PermissionDenied,
            "This credential is limited to the Unity Catalog API.",
        )),
        Scope::Context(context_id) if state.contexts.is_live(context_id) => Ok(()),
        Scope::Context(_) => Err(Error::unauthenticated(
            "Invalid access token: its execution context has ended.",
        )),
    }
}

/// An `Authorization` header if there is one, else the web UI's session
/// cookie — which, for anything but a read, needs the session's CSRF token in
/// `X-Kiln-CSRF` (a page of another site cannot read it).
/// The caller, and whether it came from a browser session.
fn credentials_or_session(state: &AppState, request: &Request) -> Result<(Caller, bool), Error> {
    use kiln_identity::sessions;
    let headers = request.headers();
    let cookie = crate::ui::session_cookie(headers);
    let (Some(id), false) = (cookie, headers.contains_key(header::AUTHORIZATION)) else {
        return credentials(state, headers).map(|caller| (caller, false));
    };
    let session = state.ui_sessions.resolve(&state.identity, id)?;
    let safe = matches!(request.method().as_str(), "GET" | "HEAD" | "OPTIONS");
    let given = headers
        .get(sessions::CSRF_HEADER)
        .and_then(|v| v.to_str().ok());
    if !safe && !sessions::csrf_matches(&session.csrf, given) {
        return Err(Error::new(
            ErrorCode::PermissionDenied,
            "Missing or wrong CSRF token (X-Kiln-CSRF) for a signed-in browser session.",
        ));
    }
    Ok((session.caller, true))
}

pub(crate) fn credentials(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<Caller, Error> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Error::unauthenticated(
                "Missing credentials: send an Authorization header (Bearer token or Basic).",
            )
        })?;
    let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => state.identity.authenticate_token(value.trim()),
        "basic" => {
            let (user, secret) = decode_basic(value)?;
            state.identity.authenticate_basic(&user, &secret)
        }
        _ => Err(Error::unauthenticated(
            "Unsupported authorization scheme: use Bearer or Basic.",
        )),
    }
}

/// Decodes a Basic credential into (user, password).
pub fn decode_basic(value: &str) -> Result<(String, String), Error> {
    let bad = || Error::unauthenticated("Malformed Basic credentials.");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (user, secret) = text.split_once(':').ok_or_else(bad)?;
    Ok((user.to_string(), secret.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_basic() {
        // "admin:admin", as in the REST API 1.2 docs.
        assert_eq!(
            decode_basic("YWRtaW46YWRtaW4=").ok(),
            Some(("admin".into(), "admin".into()))
        );
        assert!(decode_basic("!!!").is_err());
    }

    #[test]
    fn only_discovery_and_health_are_public() {
        assert!(is_public("/health"));
        assert!(is_public("/oidc/v1/token"));
        assert!(!is_public("/api/2.1/clusters/list"));
        assert!(!is_public("/api/openapi.json"));
    }

    #[test]
    fn rest12_words_missing_ids_as_databricks() {
        assert_eq!(
            rest12_wording("Missing required field: contextId"),
            "requirement failed: missing contextId"
        );
        assert_eq!(
            rest12_wording("Missing required field: command"),
            "Missing required field: command"
        );
    }
}

//! The web UI: a single page served by the binary (`/ui/`), signed in with a
//! session cookie. Pages call Kiln's public REST APIs — the same routes, the
//! same permission checks as the SDK — authenticated by the cookie plus a
//! CSRF header; the only UI-specific routes are sign-in, sign-out and "who am I".

pub mod assets;
pub mod compress;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use kiln_core::Error;
use kiln_identity::{sessions, Caller};
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::extract::Scheme;
use crate::state::AppState;

/// The session cookie's value among a request's `Cookie` headers, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    sessions::cookie_value(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// Paths the UI answers without a session: the page itself and sign-in.
pub fn is_public(path: &str) -> bool {
    matches!(path, "/" | "/ui" | "/ui/" | "/ui/api/login") || path.starts_with("/ui/assets/")
}

/// What the page may load and do: only Kiln's own origin, no inline script;
/// `<style>` elements only with this response's nonce (the code editor's).
fn csp(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; img-src 'self' data: blob:; \
connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/assets/{version}/{*path}", get(asset))
        .route("/ui/api/login", post(login))
        .route("/ui/api/logout", post(logout))
        .route("/ui/api/session", get(session))
}

async fn index() -> Response {
    let Some(page) = assets::assets().get("index.html") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    let html = String::from_utf8_lossy(&page.raw).replace("{{NONCE}}", &nonce);
    let mut response = (StatusCode::OK, html).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(page.mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(value) = HeaderValue::from_str(&csp(&nonce)) {
        h.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

async fn asset(Path((version, path)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let all = assets::assets();
    match all.get(&path) {
        Some(file) if version == all.version && path != "index.html" => {
            assets::respond(file, &headers, "public, max-age=31536000, immutable")
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

#[derive(Deserialize)]
struct Login {
    #[serde(default)]
    user_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    token: String,
}

/// Signs in with a personal access token, or a user name and password.
async fn login(
    State(state): State<AppState>,
    scheme: Option<Extension<Scheme>>,
    body: Bytes,
) -> Response {
    match sign_in(&state, &body) {
        Ok((caller, token)) => start_session(&state, caller, token, scheme.map(|s| s.0)),
        Err(err) => ApiError(err).into_response(),
    }
}

fn sign_in(state: &AppState, body: &[u8]) -> Result<(Caller, Option<String>), Error> {
    let form: Login = serde_json::from_slice(body)
        .map_err(|e| Error::invalid(format!("Malformed sign-in request: {e}")))?;
    let key = if form.token.is_empty() {
        format!("ui-login:{}", form.user_name)
    } else {
        "ui-login-token".to_string()
    };
    state.limiter.check(&key)?;
    let token = form.token.trim();
    if !token.is_empty() {
        let caller = state.identity.authenticate_token(token)?;
        if caller.scope != kiln_identity::Scope::Full {
            return Err(Error::unauthenticated("This token cannot sign in."));
        }
        return Ok((caller, Some(token.to_string())));
    }
    if form.user_name.is_empty() || form.password.is_empty() {
        return Err(Error::invalid(
            "Give a personal access token, or a user name and password.",
        ));
    }
    Ok((
        state
            .identity
            .authenticate_basic(&form.user_name, &form.password)?,
        None,
    ))
}

fn start_session(
    state: &AppState,
    caller: Caller,
    token: Option<String>,
    scheme: Option<Scheme>,
) -> Response {
    let (id, csrf) = match state.ui_sessions.create(caller.clone(), token) {
        Ok(pair) => pair,
        Err(err) => return ApiError(err).into_response(),
    };
    let secure = if matches!(scheme, Some(Scheme::Https)) {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=43200{secure}",
        sessions::COOKIE
    );
    let mut response = Json(whoami(state, &caller, &csrf)).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        if let Err(err) = state.ui_sessions.remove(id) {
            return ApiError(err).into_response();
        }
    }
    let mut response = Json(json!({})).into_response();
    let cookie = format!(
        "{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        sessions::COOKIE
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Who the session is (the page's start), with its CSRF token.
async fn session(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    let csrf = session_cookie(&headers)
        .and_then(|id| state.ui_sessions.resolve(&state.identity, id).ok())
        .map(|s| s.csrf)
        .unwrap_or_default();
    let mut response = Json(whoami(&state, &caller, &csrf)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Who the session is, and what the pages need to know about this Kiln
/// (the Lakebase proxy's port, for ready-to-paste `psql` strings).
fn whoami(state: &AppState, caller: &Caller, csrf: &str) -> serde_json::Value {
    json!({
        "user_name": caller.user_name,
        "id": caller.principal_id,
        "admin": caller.admin,
        "csrf_token": csrf,
        "lakebase_port": state.config.lakebase.proxy_port,
    })
}

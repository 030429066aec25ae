//! `/oidc/v1/authorize`: the sign-in page of the OAuth U2M flow (user name and
//! password, or a personal access token), and the authorization-code and
//! refresh-token grants of `/oidc/v1/token`. See `kiln_identity::oauth_u2m`.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use kiln_api::oauth as wire;

use super::{ep, Endpoint};
use crate::extract::from_query;
use crate::state::AppState;
use kiln_identity::oauth_u2m::AuthorizeRequest;

pub fn endpoints() -> Vec<Endpoint> {
    vec![ep(
        Method::GET,
        "/oidc/v1/authorize",
        "oidc authorize",
        get(authorize_page).post(sign_in),
    )]
}

/// What the sign-in form posts: the authorization request again, and the
/// user's credentials.
#[derive(serde::Deserialize)]
struct SignIn {
    #[serde(flatten)]
    request: AuthorizeRequest,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    token: String,
}

async fn authorize_page(RawQuery(query): RawQuery) -> Response {
    let request: AuthorizeRequest = match from_query(query.as_deref().unwrap_or("")) {
        Ok(request) => request,
        Err(e) => return page(StatusCode::BAD_REQUEST, &error_body(&e.message)),
    };
    if let Err(e) = request.validate() {
        return page(StatusCode::BAD_REQUEST, &error_body(&e.message));
    }
    page(StatusCode::OK, &form(&request, None))
}

async fn sign_in(State(state): State<AppState>, body: Bytes) -> Response {
    let form_body: SignIn = match from_query(&String::from_utf8_lossy(&body)) {
        Ok(form) => form,
        Err(e) => return page(StatusCode::BAD_REQUEST, &error_body(&e.message)),
    };
    let request = form_body.request;
    if let Err(e) = request.validate() {
        return page(StatusCode::BAD_REQUEST, &error_body(&e.message));
    }
    let caller = if !form_body.token.trim().is_empty() {
        state.identity.authenticate_token(form_body.token.trim())
    } else {
        state
            .identity
            .authenticate_basic(&form_body.username, &form_body.password)
    };
    let caller = match caller {
        Ok(caller) if caller.scope == kiln_identity::Scope::Full => caller,
        _ => {
            return page(
                StatusCode::UNAUTHORIZED,
                &form(
                    &request,
                    Some("Sign-in failed: check the user name and password, or the token."),
                ),
            )
        }
    };
    let code = match state.u2m.grant(&caller.principal_id, request.clone()) {
        Ok(code) => code,
        Err(e) => return page(StatusCode::TOO_MANY_REQUESTS, &error_body(&e.message)),
    };
    let separator = if request.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    let location = format!(
        "{}{separator}{}",
        request.redirect_uri,
        form_urlencoded::Serializer::new(String::new())
            .append_pair("code", &code)
            .append_pair("state", &request.state)
            .finish()
    );
    tracing::info!(user = %caller.user_name, client_id = %request.client_id, "oauth sign-in");
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    no_store(&mut response);
    response
}

/// `/oidc/v1/token` with `authorization_code` or `refresh_token`.
pub(super) fn token_grant(state: &AppState, form: wire::TokenRequest) -> Response {
    let client_id = form.client_id.clone().unwrap_or_default();
    let outcome = match form.grant_type.as_deref() {
        Some("authorization_code") => state.u2m.exchange(
            &state.identity,
            form.code.as_deref().unwrap_or(""),
            form.code_verifier.as_deref().unwrap_or(""),
            form.redirect_uri.as_deref().unwrap_or(""),
            &client_id,
        ),
        _ => state.u2m.refresh(
            &state.identity,
            form.refresh_token.as_deref().unwrap_or(""),
            &client_id,
        ),
    };
    match outcome {
        Ok(tokens) => {
            let mut response = Json(wire::TokenResponse {
                access_token: tokens.access_token,
                token_type: "Bearer".into(),
                expires_in: tokens.expires_in,
                scope: tokens.scope,
                refresh_token: Some(tokens.refresh_token),
            })
            .into_response();
            no_store(&mut response);
            response
        }
        Err(e) => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &e.message),
    }
}

fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            c => c.to_string(),
        })
        .collect()
}

fn error_body(message: &str) -> String {
    format!(
        "<h1>Cannot sign in</h1><p role=\"alert\">{}</p>",
        escape(message)
    )
}

fn form(request: &AuthorizeRequest, failure: Option<&str>) -> String {
    let hidden: String = [
        ("response_type", &request.response_type),
        ("client_id", &request.client_id),
        ("redirect_uri", &request.redirect_uri),
        ("scope", &request.scope),
        ("state", &request.state),
        ("code_challenge", &request.code_challenge),
        ("code_challenge_method", &request.code_challenge_method),
    ]
    .iter()
    .map(|(name, value)| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        )
    })
    .collect();
    let alert = failure
        .map(|m| format!("<p role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    format!(
        r#"<h1>Sign in to Kiln</h1>
<p><b>{client}</b> asks to act as you in this workspace.</p>{alert}
<form method="post" action="/oidc/v1/authorize">{hidden}
<label>User name <input name="username" autocomplete="username"></label>
<label>Password <input name="password" type="password" autocomplete="current-password"></label>
<p>or</p>
<label>Personal access token <input name="token" type="password" autocomplete="off"></label>
<button type="submit">Sign in</button>
</form>"#,
        client = escape(&request.client_id),
    )
}

fn page(status: StatusCode, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width\"><title>Kiln sign-in</title>\
<style>body{{font-family:sans-serif;max-width:26rem;margin:3rem auto}}label{{display:block;margin:.6rem 0}}\
input{{width:100%;padding:.3rem}}button{{margin-top:.8rem;padding:.4rem 1rem}}[role=alert]{{color:#b00}}</style>\
</head><body>{body}</body></html>"
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    no_store(&mut response);
    response
}

/// An OAuth error response (RFC 6749 §5.2).
pub(super) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = kiln_api::oauth::OAuthError {
        error: error.into(),
        error_description: description.into(),
    };
    (status, Json(body)).into_response()
}

//! Serving the Data API over HTTP: authentication (a Lakebase credential for
//! the branch or a workspace token; the identity must own the project or
//! hold an identity role on the branch), CORS as the configuration allows,
//! `Server-Timing`, and PostgREST's response headers.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_lakebase::credentials::TOKEN_PREFIX;
use kiln_lakebase::data_api::exec::{Method as RestMethod, Resolution, RestRequest};
use kiln_lakebase::data_api::{DataApiRecord, Failure, Outcome, RestError};

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
    let api = state.lakebase.data_api(&project, &branch, &database);
    if method == Method::OPTIONS {
        // Unknown and not allowed look alike to a preflight (no credentials).
        return preflight(api.ok().and_then(|api| allowed_origin(&api, headers)));
    }
    // Who is asking comes first: nothing about the resource is told before.
    let who = match identify(state, headers) {
        Ok(who) => who,
        Err(e) => return rest_error(&e),
    };
    let api = match api {
        Ok(api) => api,
        Err(e) => return rest_error(&RestError::new(Failure::NotFound, "PGRST000", e.message)),
    };
    let origin = allowed_origin(&api, headers);
    let mut response = match answer(state, &api, who, method, headers, path, raw, bytes).await {
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

#[allow(clippy::too_many_arguments)]
async fn answer(
    state: &AppState,
    api: &DataApiRecord,
    who: Who,
    method: Method,
    headers: &HeaderMap,
    path: String,
    raw: Option<String>,
    bytes: Bytes,
) -> Result<Response, RestError> {
    let identity = admit(state, api, who)?;
    let method = match method {
        Method::GET => RestMethod::Get,
        Method::HEAD => RestMethod::Head,
        Method::POST => RestMethod::Post,
        Method::PATCH => RestMethod::Patch,
        Method::DELETE => RestMethod::Delete,
        _ => {
            return Err(RestError::new(
                Failure::MethodNotAllowed,
                "PGRST117",
                format!("Unsupported HTTP method: {method}"),
            ));
        }
    };
    let req = rest_request(method, path, headers, raw, &bytes)?;
    let answer = state.lakebase.data_api_request(api, &identity, req).await?;
    let status = match answer.outcome {
        Outcome::Ok => StatusCode::OK,
        Outcome::Created => StatusCode::CREATED,
        Outcome::NoContent => StatusCode::NO_CONTENT,
    };
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
/// An authenticated identity, and the endpoint its Lakebase credential was issued for.
pub(super) struct Who {
    identity: String,
    credential_endpoint: Option<String>,
}

fn identify(state: &AppState, headers: &HeaderMap) -> Result<Who, RestError> {
    let refused = |m: &str| RestError::new(Failure::Unauthenticated, "PGRST301", m);
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
                Failure::Unauthenticated,
                "PGRST302",
                "Anonymous access is disabled",
            ));
        }
        Some(token) if token.starts_with(TOKEN_PREFIX) => {
            let credential = state.lakebase.credentials.check(token).map_err(refused)?;
            state
                .limiter
                .check(&format!("lakebase:{}", credential.identity))
                .map_err(|e| RestError::new(Failure::TooManyRequests, "PGRST000", e.message))?;
            return Ok(Who {
                identity: credential.identity,
                credential_endpoint: Some(credential.endpoint),
            });
        }
        _ => {
            let caller =
                crate::middleware::credentials(state, headers).map_err(|e| refused(&e.message))?;
            crate::middleware::check_scope(state, &caller, kiln_api::postgres::DATA_API_PREFIX)
                .map_err(|e| RestError::new(Failure::Forbidden, "PGRST301", e.message))?;
            state
                .limiter
                .check(&caller.credential)
                .map_err(|e| RestError::new(Failure::TooManyRequests, "PGRST000", e.message))?;
            caller.user_name
        }
    };
    Ok(Who {
        identity,
        credential_endpoint: None,
    })
}

/// Whether the identity may use this Data API: a credential issued for an
/// endpoint of its branch, and the project's owner or an identity role there.
fn admit(state: &AppState, api: &DataApiRecord, who: Who) -> Result<String, RestError> {
    let Who {
        identity,
        credential_endpoint,
    } = who;
    let branch = format!("projects/{}/branches/{}/", api.project_id, api.branch_id);
    if credential_endpoint.is_some_and(|e| !e.starts_with(&branch)) {
        return Err(RestError::new(
            Failure::Unauthenticated,
            "PGRST301",
            "The credential was issued for another branch",
        ));
    }
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
            Failure::Forbidden,
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

/// The HTTP status PostgREST answers for a kind of failure.
pub(super) fn failure_status(kind: Failure) -> StatusCode {
    match kind {
        Failure::BadRequest => StatusCode::BAD_REQUEST,
        Failure::Unauthenticated => StatusCode::UNAUTHORIZED,
        Failure::Forbidden => StatusCode::FORBIDDEN,
        Failure::NotFound => StatusCode::NOT_FOUND,
        Failure::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Failure::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
        Failure::Conflict => StatusCode::CONFLICT,
        Failure::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Failure::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
        Failure::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        Failure::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Failure::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

pub(super) fn rest_error(err: &RestError) -> Response {
    let status = failure_status(err.kind);
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        Body::from(err.body()),
    )
        .into_response()
}

/// Decodes what PostgREST reads from the request's headers.
pub(super) fn rest_request(
    method: RestMethod,
    path: String,
    headers: &HeaderMap,
    raw: Option<String>,
    bytes: &Bytes,
) -> std::result::Result<RestRequest, RestError> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let prefer: Vec<String> = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_ascii_lowercase())
        .collect();
    let has = |p: &str| prefer.iter().any(|x| x == p);
    let profile = match method {
        RestMethod::Get | RestMethod::Head => text("accept-profile"),
        _ => text("content-profile"),
    };
    let body = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(serde_json::from_slice(bytes).map_err(|e| {
            RestError::new(
                Failure::BadRequest,
                "PGRST102",
                format!("Empty or invalid json: {e}"),
            )
        })?)
    };
    Ok(RestRequest {
        method,
        path,
        profile: (!profile.is_empty()).then(|| profile.to_string()),
        pairs: form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
        body,
        represent: has("return=representation"),
        count: prefer.iter().any(|p| p.starts_with("count=")),
        resolution: if has("resolution=merge-duplicates") {
            Some(Resolution::Merge)
        } else if has("resolution=ignore-duplicates") {
            Some(Resolution::Ignore)
        } else {
            None
        },
        missing_default: has("missing=default"),
        singular: text("accept").contains("application/vnd.pgrst.object"),
        range: range(text("range"))?,
    })
}

/// `Range: 0-9` (items); a last item before the first is unsatisfiable (416).
fn range(value: &str) -> std::result::Result<Option<(u64, Option<u64>)>, RestError> {
    let Some((first, last)) = value.trim().trim_start_matches("items=").split_once('-') else {
        return Ok(None);
    };
    let Ok(first) = first.trim().parse::<u64>() else {
        return Ok(None);
    };
    let last = last.trim().parse::<u64>().ok();
    if last.is_some_and(|l| l < first) {
        return Err(RestError::new(
            Failure::RangeNotSatisfiable,
            "PGRST103",
            "Requested range not satisfiable",
        ));
    }
    Ok(Some((first, last)))
}

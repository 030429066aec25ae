//! Kiln's credentials endpoint for engines and pipeline workers on this host
//! (`[storage] engine_role_arn`): the container-credentials protocol aws-config
//! and the AWS SDKs speak. The `Authorization` header is a process's lease
//! token (not a user credential); the answer is its session's temporary
//! credentials, scoped to the object-store root. Not a Databricks API: it is
//! outside the route table, and public to the user-credential check.

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::routing::get;
use axum::{Json, Router};
use kiln_core::Error;

use crate::error::ApiError;
use crate::state::AppState;

pub use kiln_storage::engine_credentials::ENDPOINT_PATH;

pub fn router() -> Router<AppState> {
    Router::new().route(ENDPOINT_PATH, get(credentials))
}

async fn credentials(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let broker = state
        .engine_credentials
        .as_ref()
        .ok_or_else(|| Error::not_found("No engine credentials are served here."))?;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v))
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::unauthenticated("A lease token is required."))?;
    let credentials = broker.for_token(token).await?;
    Ok(Json(kiln_storage::engine_credentials::container_answer(
        &credentials,
    )))
}

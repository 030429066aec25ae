//! Health, the OpenAPI document, 501 for known-but-unimplemented operations
//! and the Databricks-shaped 404 for everything else.

use axum::extract::State;
use axum::http::{Method, Uri};
use axum::routing::get;
use axum::Json;
use kiln_core::{Error, ErrorCode};
use serde_json::{json, Map, Value};

use super::{ep, Endpoint};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Upstream API families Kiln knows but does not serve yet: any path under
/// them answers 501 rather than 404.
const PLANNED_PREFIXES: &[&str] = &[
    "/api/2.0/jobs",
    "/api/2.1/jobs",
    "/api/2.2/jobs",
    "/api/2.0/sql",
    "/api/2.0/preview/sql",
    "/api/2.0/fs",
    "/api/2.0/pipelines",
    "/api/2.0/libraries",
    "/api/2.0/permissions",
    "/api/2.0/postgres",
    "/api/2.0/database",
    "/api/2.1/unity-catalog",
    "/api/2.0/unity-catalog",
    "/api/2.0/preview/scim/v2/Groups",
    "/api/2.0/instance-pools",
    "/api/2.0/policies",
    "/api/2.0/repos",
    "/api/2.0/global-init-scripts",
    "/api/2.0/token-management",
    "/api/2.0/serving-endpoints",
    "/api/2.0/mlflow",
    "/api/2.0/workspace-conf",
    "/api/2.0/ip-access-lists",
    "/api/2.0/git-credentials",
    "/api/2.0/instance-profiles",
    "/api/1.2/contexts",
    "/api/1.2/commands",
    "/api/1.2/libraries",
];

pub fn endpoints() -> Vec<Endpoint> {
    vec![
        ep(Method::GET, "/health", "health", get(health)),
        ep(Method::GET, "/api/openapi.json", "openapi", get(openapi)),
    ]
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn not_implemented(operation: &'static str) -> ApiError {
    ApiError(Error::not_implemented(operation))
}

pub async fn fallback(uri: Uri) -> ApiError {
    let path = uri.path();
    if PLANNED_PREFIXES
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
    {
        return ApiError(Error::not_implemented(path));
    }
    ApiError(Error::new(
        ErrorCode::EndpointNotFound,
        format!("No API found for '{path}'"),
    ))
}

async fn openapi(State(_state): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(openapi_document(&super::endpoints())))
}

/// An OpenAPI 3 document of the implemented endpoints.
pub fn openapi_document(endpoints: &[Endpoint]) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    for endpoint in endpoints.iter().filter(|e| e.handler.is_some()) {
        let item = paths
            .entry(endpoint.path.clone())
            .or_insert_with(|| json!({}));
        if let Some(item) = item.as_object_mut() {
            item.insert(
                endpoint.method.as_str().to_ascii_lowercase(),
                json!({
                    "operationId": format!("{} {}", endpoint.method, endpoint.path),
                    "summary": endpoint.operation,
                    "responses": {
                        "200": {"description": "success"},
                        "default": {"description": "Databricks error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
                    }
                }),
            );
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Kiln — Databricks-compatible workspace", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "schemas": {"Error": {"type": "object", "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}}, "required": ["error_code", "message"]}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, "basic": {"type": "http", "scheme": "basic"}}
        },
        "security": [{"bearer": []}, {"basic": []}]
    })
}

//! What the Lakebase Postgres handlers share: operations on the wire,
//! long-running requests, request bodies and queries, paging and visibility.

use axum::body::Bytes;
use axum::Json;
use kiln_api::postgres as wire;
use kiln_core::{Error, Result};
use kiln_lakebase::model::{OperationRecord, OperationState, ProjectRecord};
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::extract::{from_json, from_query};
use crate::state::AppState;
use kiln_identity::Caller;

pub(super) fn operation(op: OperationRecord) -> wire::Operation {
    let done = op.done();
    let (response, error) = match op.state {
        OperationState::Pending => (None, None),
        OperationState::Succeeded(response) => (Some(response), None),
        OperationState::Failed(e) => (
            None,
            Some(wire::OperationError {
                error_code: e.error_code,
                message: e.message,
            }),
        ),
    };
    wire::Operation {
        name: op.name,
        done,
        metadata: json!({"@type": op.metadata_type}),
        response,
        error,
    }
}

/// Runs the work of a create/update/delete as a long-running operation on
/// `resource` (see `kiln_lakebase::operations`): failures before the work is
/// accepted are the request's errors; the answer is the Operation, finished
/// or pending.
pub(super) async fn long_running<F>(
    state: &AppState,
    caller: &Caller,
    resource: String,
    kind: &str,
    work: F,
) -> ApiResult<Json<wire::Operation>>
where
    F: std::future::Future<Output = Result<Value>> + Send + 'static,
{
    let op = state
        .lakebase
        .run_operation(&resource, kind, &caller.user_name, work)
        .await?;
    Ok(Json(operation(op)))
}

pub(super) fn typed(kind: &str, value: impl serde::Serialize) -> Value {
    let mut v = serde_json::to_value(value).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "@type".into(),
            json!(format!("type.googleapis.com/databricks.postgres.v1.{kind}")),
        );
    }
    v
}

pub(super) fn empty() -> Value {
    json!({"@type": "type.googleapis.com/google.protobuf.Empty"})
}

/// The project, if the caller may use it (its creator or an admin).
pub(super) fn visible(
    state: &AppState,
    caller: &Caller,
    project_id: &str,
) -> Result<ProjectRecord> {
    let project = state.lakebase.project(project_id)?;
    if caller.admin || project.owner == caller.user_name {
        Ok(project)
    } else {
        Err(Error::permission_denied(format!(
            "User {} has no access to project {project_id}",
            caller.user_name
        )))
    }
}

pub(super) fn query<T: serde::de::DeserializeOwned + Default>(raw: &Option<String>) -> Result<T> {
    match raw.as_deref() {
        Some(q) if !q.is_empty() => from_query(q),
        _ => Ok(T::default()),
    }
}

pub(super) fn body<T: serde::de::DeserializeOwned + Default>(bytes: &Bytes) -> Result<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        from_json(bytes)
    }
}

/// `page_size`/`page_token` paging over names.
pub(super) fn page<T>(items: Vec<(String, T)>, q: &wire::ListQuery) -> (Vec<T>, Option<String>) {
    let size = q.page_size.filter(|s| *s > 0).unwrap_or(100).min(1000);
    let start = q.page_token.clone().unwrap_or_default();
    let mut rest: Vec<(String, T)> = items.into_iter().filter(|(n, _)| *n > start).collect();
    let more = rest.len() > size;
    rest.truncate(size);
    let next = more.then(|| rest.last().map(|(n, _)| n.clone())).flatten();
    (rest.into_iter().map(|(_, t)| t).collect(), next)
}

// ---- projects ------------------------------------------------------------------

pub(super) fn get_op(
    state: &AppState,
    caller: &Caller,
    name: String,
) -> ApiResult<Json<wire::Operation>> {
    let op = state.lakebase.operation(&name)?;
    if !caller.admin && op.requested_by != caller.user_name {
        return Err(Error::permission_denied(format!("No access to operation {name}")).into());
    }
    Ok(Json(operation(op)))
}

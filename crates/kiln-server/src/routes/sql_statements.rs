//! Statement Execution API 2.0 (`/api/2.0/sql/statements`) and query history
//! (`/api/2.0/sql/history/queries`). A statement needs CAN_USE on its
//! warehouse; only its submitter (or an admin) sees it. A failed statement
//! is HTTP 200 with `status.error`, as Databricks answers. External links
//! (`RESULT_LINK`) carry their own short-lived token and need no
//! Authorization header; the token rides in the query, which is never logged.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, Response, Uri};
use axum::routing::{get, post};
use axum::{Extension, Json};
use kiln_api::sql::*;
use kiln_core::Error;
use kiln_identity::Caller;
use kiln_sql::history::Filter;
use kiln_sql::lifecycle::StatementState;
use kiln_sql::params::StatementParameter;
use kiln_sql::results::Format;
use kiln_sql::statements::{Request, Statement, LINK_TTL_MS};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ep, Endpoint};
use crate::error::ApiResult;
use crate::extract::{Params, Scheme};
use crate::state::AppState;

/// Where external links point (public: the token is the credential).
pub const RESULT_LINK: &str = "/sql/1.0/statement-results";

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    let p = "/api/2.0/sql/statements";
    vec![
        ep(
            M::POST,
            p,
            "statement-execution/execute-statement",
            post(execute),
        ),
        ep(
            M::GET,
            format!("{p}/{{id}}"),
            "statement-execution/get-statement",
            get(read),
        ),
        ep(
            M::POST,
            format!("{p}/{{id}}/cancel"),
            "statement-execution/cancel-execution",
            post(cancel),
        ),
        ep(
            M::GET,
            format!("{p}/{{id}}/result/chunks/{{index}}"),
            "statement-execution/get-statement-result-chunk-n",
            get(chunk),
        ),
        ep(
            M::GET,
            "/api/2.0/sql/history/queries",
            "query-history/list",
            get(history),
        ),
        ep(
            M::GET,
            RESULT_LINK,
            "statement-execution/external-link",
            get(link),
        ),
    ]
}

struct Base(String);

fn base(headers: &HeaderMap, uri: &Uri, scheme: Option<Extension<Scheme>>) -> Base {
    Base(super::identity::base_url(headers, uri, scheme))
}

/// One chunk's `ResultData`.
fn chunk_data(
    state: &AppState,
    s: &Statement,
    index: usize,
    base: &Base,
) -> kiln_core::Result<ResultData> {
    let result = s
        .result
        .as_ref()
        .ok_or_else(|| Error::invalid_state("The statement has no result."))?;
    let c = result.chunks.get(index).ok_or_else(|| {
        Error::invalid(format!(
            "Chunk {index} does not exist (the result has {}).",
            result.chunks.len()
        ))
    })?;
    let next = (index + 1 < result.chunks.len()).then_some(index + 1);
    let next_link = next.map(|n| {
        format!(
            "/api/2.0/sql/statements/{}/result/chunks/{n}",
            s.statement_id
        )
    });
    let mut data = ResultData {
        chunk_index: index,
        row_offset: c.row_offset,
        row_count: c.row_count,
        byte_count: c.byte_count(),
        ..Default::default()
    };
    if s.inline {
        data.data_array = Some(c.rows.clone());
        data.next_chunk_index = next;
        data.next_chunk_internal_link = next_link;
    } else {
        let (token, expires) = state.statements.link(&s.statement_id, index)?;
        data.external_links = Some(vec![ExternalLink {
            chunk_index: index,
            row_offset: c.row_offset,
            row_count: c.row_count,
            byte_count: c.byte_count(),
            external_link: format!("{}{RESULT_LINK}?token={token}", base.0),
            expiration: kiln_core::time::rfc3339(expires),
            next_chunk_index: next,
            next_chunk_internal_link: next_link,
        }]);
    }
    Ok(data)
}

fn render(state: &AppState, s: &Statement, base: &Base) -> kiln_core::Result<StatementResponse> {
    let error = s.error.as_ref().map(|(code, message)| ServiceError {
        error_code: code.clone(),
        message: message.clone(),
    });
    let mut response = StatementResponse {
        statement_id: s.statement_id.clone(),
        status: StatementStatus {
            state: s.state.as_str().into(),
            error,
        },
        manifest: None,
        result: None,
    };
    if let (StatementState::Succeeded, Some(result)) = (s.state, &s.result) {
        response.manifest = Some(ResultManifest {
            format: s.format.as_str().into(),
            schema: ResultSchema {
                column_count: result.columns.len(),
                columns: result
                    .columns
                    .iter()
                    .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
                    .collect(),
            },
            total_chunk_count: result.chunks.len(),
            chunks: result
                .chunks
                .iter()
                .enumerate()
                .map(|(i, c)| BaseChunkInfo {
                    chunk_index: i,
                    row_offset: c.row_offset,
                    row_count: c.row_count,
                    byte_count: c.byte_count(),
                })
                .collect(),
            total_row_count: result.total_rows,
            total_byte_count: result.total_bytes(),
            truncated: result.truncated,
        });
        if !result.chunks.is_empty() {
            response.result = Some(chunk_data(state, s, 0, base)?);
        }
    }
    Ok(response)
}

async fn execute(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    scheme: Option<Extension<Scheme>>,
    headers: HeaderMap,
    uri: Uri,
    Params(req): Params<ExecuteStatementRequest>,
) -> ApiResult<Json<StatementResponse>> {
    let warehouse_id = req
        .warehouse_id
        .filter(|w| !w.is_empty())
        .ok_or_else(|| Error::invalid("warehouse_id is required."))?;
    crate::access::require_code_execution(&state, &caller)?;
    super::sql_warehouses::require_warehouse(&state, &caller, &warehouse_id, "CAN_USE")?;
    let request = Request {
        statement: req.statement.unwrap_or_default(),
        warehouse_id,
        catalog: req.catalog,
        schema: req.schema,
        parameters: req
            .parameters
            .into_iter()
            .map(|p| StatementParameter {
                name: p.name,
                value: p.value,
                type_: p.type_,
            })
            .collect(),
        row_limit: req.row_limit,
        byte_limit: req.byte_limit,
        disposition: req.disposition,
        format: req.format,
        wait_timeout: req.wait_timeout,
        on_wait_timeout: req.on_wait_timeout,
    };
    let s = state.statements.execute(&caller.user_name, request).await?;
    Ok(Json(render(&state, &s, &base(&headers, &uri, scheme))?))
}

async fn read(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    scheme: Option<Extension<Scheme>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
) -> ApiResult<Json<StatementResponse>> {
    let s = state.statements.get(&caller.user_name, &id, caller.admin)?;
    Ok(Json(render(&state, &s, &base(&headers, &uri, scheme))?))
}

async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state
        .statements
        .cancel(&caller.user_name, &id, caller.admin)?;
    Ok(Json(json!({})))
}

async fn chunk(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    scheme: Option<Extension<Scheme>>,
    headers: HeaderMap,
    uri: Uri,
    Path((id, index)): Path<(String, usize)>,
) -> ApiResult<Json<ResultData>> {
    let s = state.statements.get(&caller.user_name, &id, caller.admin)?;
    if s.state != StatementState::Succeeded {
        return Err(Error::invalid_state(format!(
            "Statement {id} is {}: it has no result.",
            s.state.as_str()
        ))
        .into());
    }
    Ok(Json(chunk_data(
        &state,
        &s,
        index,
        &base(&headers, &uri, scheme),
    )?))
}

#[derive(Deserialize)]
struct LinkQuery {
    token: String,
}

async fn link(
    State(state): State<AppState>,
    Query(q): Query<LinkQuery>,
) -> ApiResult<Response<Body>> {
    let (bytes, format) = state.statements.fetch_link(&q.token)?;
    let content_type = match format {
        Format::JsonArray => "application/json",
        Format::ArrowStream => "application/vnd.apache.arrow.stream",
        Format::Csv => "text/csv",
    };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(
            header::CACHE_CONTROL,
            format!("private, max-age={}", LINK_TTL_MS / 1000),
        )
        .body(Body::from(bytes))
        .map_err(|e| Error::internal("a result link", e).into())
}

async fn history(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<ListQueriesRequest>,
) -> ApiResult<Json<ListQueriesResponse>> {
    let f = req.filter_by.unwrap_or(Value::Null);
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| {
                x.as_str()
                    .map(String::from)
                    .or_else(|| x.as_i64().map(|n| n.to_string()))
            })
            .collect()
    };
    let mut filter = Filter {
        statuses: strings(&f["statuses"]),
        user_names: Vec::new(),
        warehouse_ids: strings(&f["warehouse_ids"]),
        start_time_from_ms: f["query_start_time_range"]["start_time_ms"].as_i64(),
        start_time_to_ms: f["query_start_time_range"]["end_time_ms"].as_i64(),
    };
    // a user sees their own queries; admins see everyone's
    if !caller.admin {
        filter.user_names = vec![caller.user_name.clone()];
    }
    let max = req.max_results.unwrap_or(100).clamp(1, 1000) as usize;
    let all = state.statements.history.list(&filter);
    let (page, next) = super::offset_page(all, req.page_token.as_deref(), max)?;
    let res = page
        .into_iter()
        .map(|q| QueryInfo {
            duration: q.query_end_time_ms.map(|e| e - q.query_start_time_ms),
            execution_end_time_ms: q.query_end_time_ms,
            executed_as_user_name: q.user_name.clone(),
            endpoint_id: q.warehouse_id.clone(),
            query_id: q.query_id,
            status: q.status,
            query_text: q.query_text,
            user_name: q.user_name,
            warehouse_id: q.warehouse_id,
            query_start_time_ms: q.query_start_time_ms,
            query_end_time_ms: q.query_end_time_ms,
            rows_produced: q.rows_produced,
            error_message: q.error_message,
            statement_type: q.statement_type,
        })
        .collect();
    Ok(Json(ListQueriesResponse {
        res,
        has_next_page: next.is_some(),
        next_page_token: next,
    }))
}

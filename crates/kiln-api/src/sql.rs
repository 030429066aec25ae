//! SQL (`sql.py`: `WarehousesAPI`, `StatementExecutionAPI`,
//! `QueryHistoryAPI`, `DataSourcesAPI`): `/api/2.0/sql/warehouses`,
//! `/api/2.0/sql/statements`, `/api/2.0/sql/history/queries`,
//! `/api/2.0/sql/config/warehouses`, `/api/2.0/preview/sql/data_sources`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `GetWarehouseResponse` / `EndpointInfo`: the settings as given (with
/// defaults), and what Kiln observes.
#[derive(Debug, Serialize)]
pub struct Warehouse {
    pub id: String,
    #[serde(flatten)]
    pub settings: Map<String, Value>,
    pub state: String,
    pub health: EndpointHealth,
    pub num_clusters: i64,
    pub num_active_sessions: i64,
    pub creator_name: String,
    pub jdbc_url: String,
    pub odbc_params: OdbcParams,
}

#[derive(Debug, Serialize)]
pub struct EndpointHealth {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct OdbcParams {
    pub hostname: String,
    pub path: String,
    pub port: u16,
    pub protocol: String,
}

#[derive(Debug, Serialize)]
pub struct CreateWarehouseResponse {
    pub id: String,
}

#[derive(Debug, Serialize)]
pub struct ListWarehousesResponse {
    pub warehouses: Vec<Warehouse>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListWarehousesRequest {
    pub run_as_user_id: Option<i64>,
}

/// `DataSource` (the legacy SQL API's view of a warehouse).
#[derive(Debug, Serialize)]
pub struct DataSource {
    pub id: String,
    pub name: String,
    pub warehouse_id: String,
    pub endpoint_id: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub syntax: String,
    pub paused: i64,
    pub view_only: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct StatementParameterListItem {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
}

/// `ExecuteStatementRequest`.
#[derive(Debug, Default, Deserialize)]
pub struct ExecuteStatementRequest {
    pub statement: Option<String>,
    pub warehouse_id: Option<String>,
    pub catalog: Option<String>,
    pub schema: Option<String>,
    #[serde(default)]
    pub parameters: Vec<StatementParameterListItem>,
    pub row_limit: Option<i64>,
    pub byte_limit: Option<i64>,
    pub disposition: Option<String>,
    pub format: Option<String>,
    pub wait_timeout: Option<String>,
    pub on_wait_timeout: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StatementResponse {
    pub statement_id: String,
    pub status: StatementStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ResultManifest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultData>,
}

#[derive(Debug, Serialize)]
pub struct StatementStatus {
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ServiceError>,
}

#[derive(Debug, Serialize)]
pub struct ServiceError {
    pub error_code: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct ResultManifest {
    pub format: String,
    pub schema: ResultSchema,
    pub total_chunk_count: usize,
    pub chunks: Vec<BaseChunkInfo>,
    pub total_row_count: usize,
    pub total_byte_count: usize,
    pub truncated: bool,
}

#[derive(Debug, Serialize)]
pub struct ResultSchema {
    pub column_count: usize,
    pub columns: Vec<Value>,
}

#[derive(Debug, Serialize)]
pub struct BaseChunkInfo {
    pub chunk_index: usize,
    pub row_offset: usize,
    pub row_count: usize,
    pub byte_count: usize,
}

/// `ResultData` (a chunk): inline rows or external links.
#[derive(Debug, Default, Serialize)]
pub struct ResultData {
    pub chunk_index: usize,
    pub row_offset: usize,
    pub row_count: usize,
    pub byte_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_array: Option<Vec<Vec<Option<String>>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_links: Option<Vec<ExternalLink>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_chunk_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_chunk_internal_link: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ExternalLink {
    pub chunk_index: usize,
    pub row_offset: usize,
    pub row_count: usize,
    pub byte_count: usize,
    pub external_link: String,
    pub expiration: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_chunk_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_chunk_internal_link: Option<String>,
}

/// `ListQueriesRequest` (`filter_by` as JSON, or flattened query fields).
#[derive(Debug, Default, Deserialize)]
pub struct ListQueriesRequest {
    pub filter_by: Option<Value>,
    pub max_results: Option<i64>,
    pub page_token: Option<String>,
    pub include_metrics: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct QueryInfo {
    pub query_id: String,
    pub status: String,
    pub query_text: String,
    pub user_name: String,
    pub executed_as_user_name: String,
    pub warehouse_id: String,
    pub endpoint_id: String,
    pub query_start_time_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_end_time_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_end_time_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_produced: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    pub statement_type: String,
}

#[derive(Debug, Serialize)]
pub struct ListQueriesResponse {
    pub res: Vec<QueryInfo>,
    pub has_next_page: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

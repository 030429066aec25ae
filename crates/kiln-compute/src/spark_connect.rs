//! A minimal Spark Connect client: enough to run one SQL query and count the
//! rows that come back (the engine's health check). Requests use the messages
//! of `connect::wire`; the response is declared here with the Arrow batch it
//! counts; unknown response fields are skipped by prost.

use std::time::Duration;

use kiln_core::{Error, Result};

use crate::connect::wire::{ExecutePlanRequest, Plan, Relation};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Endpoint;

#[derive(Clone, PartialEq, prost::Message)]
struct UserContext {
    #[prost(string, tag = "1")]
    user_id: String,
    #[prost(string, tag = "2")]
    user_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecutePlanResponse {
    #[prost(string, tag = "1")]
    pub session_id: String,
    #[prost(message, optional, tag = "2")]
    pub arrow_batch: Option<ArrowBatch>,
    #[prost(message, optional, tag = "14")]
    pub result_complete: Option<ResultComplete>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ArrowBatch {
    #[prost(int64, tag = "1")]
    pub row_count: i64,
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ResultComplete {}

const EXECUTE_PLAN: &str = "/spark.connect.SparkConnectService/ExecutePlan";

/// Runs `query` on the Spark Connect server at `127.0.0.1:port` in a fresh
/// session and returns the number of rows it produced.
pub async fn count_rows(port: u16, query: &str, timeout: Duration) -> Result<i64> {
    tokio::time::timeout(timeout, count_rows_inner(port, query))
        .await
        .map_err(|_| Error::internal("query the engine", "timed out"))?
}

async fn count_rows_inner(port: u16, query: &str) -> Result<i64> {
    let channel = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .map_err(|e| Error::internal("query the engine", e))?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| connect_error(&e))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| connect_error(&e))?;
    let user = UserContext {
        user_id: "kiln".into(),
        user_name: "kiln".into(),
    };
    let request = ExecutePlanRequest {
        session_id: kiln_core::ids::uuid4(),
        user_context: Some(prost::Message::encode_to_vec(&user)),
        plan: Some(Plan {
            root: Some(prost::Message::encode_to_vec(&Relation::sql(query))),
            ..Default::default()
        }),
        client_type: Some("kiln-health".into()),
        ..Default::default()
    };
    let codec = tonic_prost::ProstCodec::<ExecutePlanRequest, ExecutePlanResponse>::default();
    let path = PathAndQuery::from_static(EXECUTE_PLAN);
    let mut stream = grpc
        .server_streaming(tonic::Request::new(request), path, codec)
        .await
        .map_err(|status| engine_error(&status))?
        .into_inner();
    let mut rows = 0;
    while let Some(message) = stream
        .message()
        .await
        .map_err(|status| engine_error(&status))?
    {
        rows += message.arrow_batch.map(|b| b.row_count).unwrap_or(0);
        if message.result_complete.is_some() {
            break;
        }
    }
    Ok(rows)
}

fn connect_error(e: &dyn std::fmt::Display) -> Error {
    Error::new(
        kiln_core::ErrorCode::TemporarilyUnavailable,
        format!("engine not reachable: {e}"),
    )
}

fn engine_error(status: &tonic::Status) -> Error {
    Error::invalid(format!("engine error: {}", status.message()))
}

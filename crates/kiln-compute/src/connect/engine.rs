//! Calls Kiln makes to an engine inside a client's own Spark session (same
//! session id and user context), for the steps of a rewritten table write.
//! An engine failure comes back as the engine's own gRPC status, details
//! included, so the client sees the error it would have seen.

use std::time::Duration;

use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use kiln_catalog::delta::files::TableFiles;
use kiln_catalog::delta::DeltaError;

use super::wire::{
    AnalyzePlanRequest, AnalyzePlanResponse, AnalyzeSchema, DataType, ExecutePlanRequest,
    ExecutePlanResponse, Plan,
};

const EXECUTE_PLAN: &str = "/spark.connect.SparkConnectService/ExecutePlan";
const ANALYZE_PLAN: &str = "/spark.connect.SparkConnectService/AnalyzePlan";
const CLIENT_TYPE: &str = "kiln";

/// A client's session on one engine.
#[derive(Debug, Clone)]
pub struct EngineSession {
    pub port: u16,
    pub session_id: String,
    pub user_context: Option<Vec<u8>>,
}

impl EngineSession {
    async fn grpc(&self) -> Result<tonic::client::Grpc<Channel>, Status> {
        let channel = Endpoint::from_shared(format!("http://127.0.0.1:{}", self.port))
            .map_err(|e| Status::internal(e.to_string()))?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .map_err(|e| {
                Status::unavailable(format!("the cluster's engine did not answer: {e}"))
            })?;
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        grpc.ready().await.map_err(|e| {
            Status::unavailable(format!("the cluster's engine did not answer: {e}"))
        })?;
        Ok(grpc)
    }

    /// Runs one SQL statement to completion.
    pub async fn sql(&self, query: &str) -> Result<(), Status> {
        self.execute(Plan::sql(query)).await
    }

    /// The rows of `query` as JSON objects: the engine writes them as JSON
    /// lines into the directory `scratch` of a table (one that must not exist
    /// yet, where the engine may write), which is read and removed.
    pub async fn rows(
        &self,
        query: &str,
        files: &TableFiles,
        scratch: &str,
    ) -> Result<Vec<serde_json::Value>, Status> {
        let target = super::ddl::literal(&files.url(scratch));
        let ran = self
            .sql(&format!(
                "INSERT OVERWRITE DIRECTORY {target} USING json {query}"
            ))
            .await;
        let read = ran.and_then(|()| read_json_lines(files, scratch));
        let _ = files.delete_tree(scratch);
        read
    }

    /// Runs a plan to completion, discarding what it returns.
    pub async fn execute(&self, plan: Plan) -> Result<(), Status> {
        let request = ExecutePlanRequest {
            session_id: self.session_id.clone(),
            user_context: self.user_context.clone(),
            plan: Some(plan),
            client_type: Some(CLIENT_TYPE.into()),
            operation_id: Some(kiln_core::ids::uuid4()),
            ..Default::default()
        };
        let mut grpc = self.grpc().await?;
        let codec = tonic_prost::ProstCodec::<ExecutePlanRequest, ExecutePlanResponse>::default();
        let mut stream = grpc
            .server_streaming(
                tonic::Request::new(request),
                PathAndQuery::from_static(EXECUTE_PLAN),
                codec,
            )
            .await?
            .into_inner();
        while stream.message().await?.is_some() {}
        Ok(())
    }

    /// The schema of a relation (given encoded), as the engine analyzes it.
    pub async fn schema(&self, relation: Vec<u8>) -> Result<DataType, Status> {
        let request = AnalyzePlanRequest {
            session_id: self.session_id.clone(),
            user_context: self.user_context.clone(),
            client_type: Some(CLIENT_TYPE.into()),
            schema: Some(AnalyzeSchema {
                plan: Some(Plan {
                    root: Some(relation),
                    ..Default::default()
                }),
            }),
        };
        let mut grpc = self.grpc().await?;
        let codec = tonic_prost::ProstCodec::<AnalyzePlanRequest, AnalyzePlanResponse>::default();
        let response = grpc
            .unary(
                tonic::Request::new(request),
                PathAndQuery::from_static(ANALYZE_PLAN),
                codec,
            )
            .await?
            .into_inner();
        response
            .schema
            .and_then(|s| s.schema)
            .ok_or_else(|| Status::internal("the engine analyzed the data without a schema"))
    }
}

fn read_json_lines(files: &TableFiles, dir: &str) -> Result<Vec<serde_json::Value>, Status> {
    let unreadable =
        |e: DeltaError| Status::internal(format!("the engine's rows cannot be read: {e}"));
    let mut out = Vec::new();
    for file in files.list(dir).map_err(unreadable)? {
        let name = &file.path;
        if !name.ends_with(".json") || name.starts_with(['.', '_']) {
            continue;
        }
        let bytes = files.read(&format!("{dir}/{name}")).map_err(unreadable)?;
        for line in String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            out.push(
                serde_json::from_str(line)
                    .map_err(|e| Status::internal(format!("the engine's rows: {e}")))?,
            );
        }
    }
    Ok(out)
}

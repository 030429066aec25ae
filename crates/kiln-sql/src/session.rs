//! A Spark Connect session on one of a warehouse's (or a cluster's) engines,
//! reached through Kiln's loopback front, so a statement's table writes are
//! rewritten exactly as a client's are (REPLACE, `DESCRIBE HISTORY`, …).
//!
//! A statement runs as `spark.sql` does: the SQL command first (DDL and DML
//! run there), then the relation it answers, whose Arrow batches are the
//! result (kept as the engine's IPC bytes).

use std::collections::HashMap;
use std::time::Duration;

use kiln_compute::connect::wire::{
    DataType, ExecutePlanRequest, ExecutePlanResponse, Plan, Relation, SqlCommand,
};
use tokio::sync::OnceCell;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

const SERVICE: &str = "/spark.connect.SparkConnectService/";
const CLIENT_TYPE: &str = "kiln-sql";

/// Where an engine is.
#[derive(Debug, Clone)]
pub struct EngineTarget {
    /// Kiln's loopback front (`None`: the engine directly).
    pub front: Option<u16>,
    pub cluster_id: String,
    pub engine_port: u16,
}

/// A result as the engine sent it.
#[derive(Debug, Default, Clone)]
pub struct Collected {
    pub schema: Option<DataType>,
    /// Arrow IPC streams, in order.
    pub ipc: Vec<Vec<u8>>,
    pub rows: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct UserContext {
    #[prost(string, tag = "1")]
    user_id: String,
    #[prost(string, tag = "2")]
    user_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct InterruptRequest {
    #[prost(string, tag = "1")]
    session_id: String,
    #[prost(bytes = "vec", optional, tag = "2")]
    user_context: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    client_type: Option<String>,
    #[prost(int32, tag = "4")]
    interrupt_type: i32,
    #[prost(string, optional, tag = "6")]
    operation_id: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct InterruptResponse {
    #[prost(string, tag = "1")]
    session_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ReleaseSessionRequest {
    #[prost(string, tag = "1")]
    session_id: String,
    #[prost(bytes = "vec", optional, tag = "2")]
    user_context: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    client_type: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ReleaseSessionResponse {
    #[prost(string, tag = "1")]
    session_id: String,
}

/// `interrupt_type` OPERATION_ID.
const INTERRUPT_OPERATION: i32 = 3;

pub struct Session {
    pub target: EngineTarget,
    pub session_id: String,
    user_context: Vec<u8>,
    channel: OnceCell<Channel>,
}

impl Session {
    pub fn new(target: EngineTarget, user: &str) -> Self {
        let user_context = prost::Message::encode_to_vec(&UserContext {
            user_id: user.into(),
            user_name: user.into(),
        });
        Self {
            target,
            session_id: kiln_core::ids::uuid4(),
            user_context,
            channel: OnceCell::new(),
        }
    }

    async fn grpc(&self) -> Result<tonic::client::Grpc<Channel>, Status> {
        let port = self.target.front.unwrap_or(self.target.engine_port);
        let channel = self
            .channel
            .get_or_try_init(|| async {
                Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                    .map_err(|e| Status::internal(e.to_string()))?
                    .connect_timeout(Duration::from_secs(10))
                    .connect()
                    .await
                    .map_err(|e| Status::unavailable(format!("the engine did not answer: {e}")))
            })
            .await?
            .clone();
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("the engine did not answer: {e}")))?;
        Ok(grpc)
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if self.target.front.is_some() {
            let meta = request.metadata_mut();
            if let Ok(v) = self.target.cluster_id.parse() {
                meta.insert("x-databricks-cluster-id", v);
            }
            if let Ok(v) = self.target.engine_port.to_string().parse() {
                meta.insert("x-kiln-engine-port", v);
            }
        }
        request
    }

    async fn execute(
        &self,
        plan: Plan,
        operation_id: &str,
    ) -> Result<Vec<ExecutePlanResponse>, Status> {
        let request = ExecutePlanRequest {
            session_id: self.session_id.clone(),
            user_context: Some(self.user_context.clone()),
            plan: Some(plan),
            client_type: Some(CLIENT_TYPE.into()),
            operation_id: Some(operation_id.into()),
            ..Default::default()
        };
        let mut grpc = self.grpc().await?;
        let codec = tonic_prost::ProstCodec::<ExecutePlanRequest, ExecutePlanResponse>::default();
        let path = PathAndQuery::try_from(format!("{SERVICE}ExecutePlan"))
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut stream = grpc
            .server_streaming(self.request(request), path, codec)
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(message) = stream.message().await? {
            out.push(message);
        }
        Ok(out)
    }

    /// Runs `sql` (named parameters bound as encoded Spark Connect
    /// expressions) and collects its rows.
    pub async fn run(
        &self,
        sql: &str,
        named_arguments: HashMap<String, Vec<u8>>,
        operation_id: &str,
    ) -> Result<Collected, Status> {
        self.run_args(sql, named_arguments, Vec::new(), operation_id)
            .await
    }

    /// [`Session::run`] with positional (`?`) arguments too.
    pub async fn run_args(
        &self,
        sql: &str,
        named_arguments: HashMap<String, Vec<u8>>,
        pos_arguments: Vec<Vec<u8>>,
        operation_id: &str,
    ) -> Result<Collected, Status> {
        let plan = Plan {
            command: Some(kiln_compute::connect::wire::Command {
                sql_command: Some(SqlCommand {
                    input: Some(Relation {
                        sql: Some(kiln_compute::connect::wire::Sql {
                            query: sql.into(),
                            named_arguments,
                            pos_arguments,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let first = self.execute(plan, operation_id).await?;
        let relation = first
            .iter()
            .find_map(|r| r.sql_command_result.as_ref()?.relation.clone());
        let answers = match relation {
            Some(root) => {
                let plan = Plan {
                    root: Some(root),
                    ..Default::default()
                };
                self.execute(plan, &kiln_core::ids::uuid4()).await?
            }
            None => first,
        };
        let mut collected = Collected::default();
        for answer in answers {
            if collected.schema.is_none() {
                collected.schema = answer.schema;
            }
            if let Some(batch) = answer.arrow_batch {
                collected.rows += batch.row_count;
                collected.ipc.push(batch.data);
            }
        }
        Ok(collected)
    }

    /// Interrupts the operation `operation_id` (a cancelled statement).
    pub async fn interrupt(&self, operation_id: &str) -> Result<(), Status> {
        let request = InterruptRequest {
            session_id: self.session_id.clone(),
            user_context: Some(self.user_context.clone()),
            client_type: Some(CLIENT_TYPE.into()),
            interrupt_type: INTERRUPT_OPERATION,
            operation_id: Some(operation_id.into()),
        };
        let mut grpc = self.grpc().await?;
        let codec = tonic_prost::ProstCodec::<InterruptRequest, InterruptResponse>::default();
        let path = PathAndQuery::try_from(format!("{SERVICE}Interrupt"))
            .map_err(|e| Status::internal(e.to_string()))?;
        grpc.unary(self.request(request), path, codec).await?;
        Ok(())
    }

    /// Ends the session on the engine (best effort).
    pub async fn release(&self) {
        let request = ReleaseSessionRequest {
            session_id: self.session_id.clone(),
            user_context: Some(self.user_context.clone()),
            client_type: Some(CLIENT_TYPE.into()),
        };
        let Ok(mut grpc) = self.grpc().await else {
            return;
        };
        let codec =
            tonic_prost::ProstCodec::<ReleaseSessionRequest, ReleaseSessionResponse>::default();
        if let Ok(path) = PathAndQuery::try_from(format!("{SERVICE}ReleaseSession")) {
            let _ = grpc.unary(self.request(request), path, codec).await;
        }
    }
}

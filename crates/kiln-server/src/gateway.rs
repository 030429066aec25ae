//! The Spark Connect gateway: Databricks Connect and raw Spark Connect
//! clients speak gRPC (`/spark.connect.SparkConnectService/*`) to the
//! workspace's own ports, as they do to Databricks. Each call is
//! authenticated like a REST call (Bearer token), needs `CAN_ATTACH_TO` on the
//! cluster named by `x-databricks-cluster-id`, and is forwarded (without its
//! `authorization`) over HTTP/2 to that cluster's engine on loopback, its
//! response and trailers streamed back. A Spark session id belongs to the
//! user that first used it.
//!
//! Errors are gRPC statuses: a bad token is UNAUTHENTICATED, an unknown
//! cluster NOT_FOUND, a cluster that is not running FAILED_PRECONDITION with
//! `is in unexpected state Pending` (what Databricks Connect retries on; a
//! terminated cluster is started first when the caller may start it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kiln_compute::connect::first_message::{config_set, first_fields, FirstFields};
use kiln_compute::connect::TableWrites;
use kiln_core::{Error, ErrorCode};
use kiln_store::ClusterState;

use crate::grpc::{grpc_error, grpc_status, GrpcCode};
use crate::state::AppState;
use kiln_identity::Caller;

const SERVICE_PREFIX: &str = "/spark.connect.SparkConnectService/";
/// Bytes of the first message read to find its session id (field 1, first).
const PEEK_LIMIT: usize = 512;
/// Sessions remembered (oldest forgotten first beyond this).
const MAX_SESSIONS: usize = 100_000;

/// Whether a request is a Spark Connect call.
pub fn is_spark_connect<B>(request: &Request<B>) -> bool {
    request.uri().path().starts_with(SERVICE_PREFIX)
}

#[derive(Clone)]
pub struct Gateway {
    state: AppState,
    writes: TableWrites,
    client: Client<HttpConnector, Body>,
    /// Spark session id → (principal id, last use).
    sessions: Arc<Mutex<HashMap<String, (String, Instant)>>>,
}

impl Gateway {
    pub fn new(state: AppState) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        Self {
            writes: TableWrites::new(state.catalog.clone()),
            state,
            client,
            sessions: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let path = request.uri().path().to_string();
        let (response, user) = match self.forward(request).await {
            Ok((response, user)) => (response, user),
            Err((status, message, user)) => (grpc_error(status, &message), user),
        };
        tracing::info!(
            path = %path,
            grpc_status = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("streamed"),
            micros = started.elapsed().as_micros() as u64,
            user = %user,
            "spark connect"
        );
        response
    }

    async fn forward(
        &self,
        request: Request<Incoming>,
    ) -> Result<(Response<Body>, String), (GrpcCode, String, String)> {
        let caller = self
            .authenticate(request.headers(), request.uri().path())
            .map_err(|(s, m)| (s, m, String::new()))?;
        let user = caller.user_name.clone();
        let fail = |(status, message): (GrpcCode, String)| (status, message, user.clone());
        let port = self
            .engine_port(&caller, request.headers())
            .await
            .map_err(fail)?;
        let (parts, body) = request.into_parts();
        let limit = crate::relay::read_limit(parts.uri.path(), PEEK_LIMIT);
        let (prefix, rest) = crate::relay::read_first(body, limit).await.map_err(fail)?;
        if let Some(first) = first_fields(&prefix) {
            if self.bind_session(&first.session, &caller).map_err(fail)? {
                self.session_defaults(port, &first).await;
            }
        }
        let since_ms = kiln_core::time::now_ms();
        let cluster_id = parts
            .headers
            .get("x-databricks-cluster-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let response = crate::relay::forward(&self.client, &self.writes, parts, prefix, rest, port)
            .await
            .map_err(fail)?;
        let clusters = self.state.clusters.clone();
        let response = crate::lost_workers::explain(clusters, cluster_id, since_ms, response).await;
        Ok((response, user))
    }

    /// A call from a kernel or pipeline worker on the loopback front: it names
    /// its cluster (`x-databricks-cluster-id`) and the engine port it was
    /// started for (`x-kiln-engine-port`); no token (engines themselves take
    /// none, on loopback), and no start of a stopped cluster.
    pub async fn handle_front(&self, request: Request<Incoming>) -> Response<Body> {
        if !is_spark_connect(&request) {
            return grpc_error(GrpcCode::NotFound, "only Spark Connect is served here");
        }
        let outcome = async {
            let port = self.front_port(request.headers())?;
            let (parts, body) = request.into_parts();
            let limit = crate::relay::read_limit(parts.uri.path(), PEEK_LIMIT);
            let (prefix, rest) = crate::relay::read_first(body, limit).await?;
            crate::relay::forward(&self.client, &self.writes, parts, prefix, rest, port).await
        }
        .await;
        outcome.unwrap_or_else(|(status, message)| grpc_error(status, &message))
    }

    fn front_port(&self, headers: &HeaderMap) -> Result<u16, (GrpcCode, String)> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let cluster_id = header("x-databricks-cluster-id");
        let record = self
            .state
            .clusters
            .get(&cluster_id)
            .map_err(|e| (GrpcCode::NotFound, e.message))?;
        let asked = header("x-kiln-engine-port").parse::<u16>().ok();
        match (record.state, record.engine_port) {
            (ClusterState::Running | ClusterState::Resizing, Some(port))
                if asked.is_none_or(|a| a == port) =>
            {
                self.state.clusters.touch(&cluster_id);
                Ok(port)
            }
            _ => Err(not_running(&cluster_id, "Pending")),
        }
    }

    fn authenticate(&self, headers: &HeaderMap, path: &str) -> Result<Caller, (GrpcCode, String)> {
        let caller = crate::middleware::credentials(&self.state, headers)
            .map_err(|e| (GrpcCode::Unauthenticated, e.message))?;
        crate::middleware::check_scope(&self.state, &caller, path).map_err(|e| {
            let status = if e.code == ErrorCode::Unauthenticated {
                GrpcCode::Unauthenticated
            } else {
                GrpcCode::PermissionDenied
            };
            (status, e.message)
        })?;
        if caller.credential != "system" {
            self.state
                .limiter
                .check(&caller.credential)
                .map_err(|e| (GrpcCode::ResourceExhausted, e.message))?;
        }
        Ok(caller)
    }

    /// The engine port of the cluster the call names, once the caller may
    /// attach to it and it runs.
    async fn engine_port(
        &self,
        caller: &Caller,
        headers: &HeaderMap,
    ) -> Result<u16, (GrpcCode, String)> {
        let cluster_id = headers
            .get("x-databricks-cluster-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                (
                    GrpcCode::InvalidArgument,
                    "Missing x-databricks-cluster-id: name the cluster to connect to".to_string(),
                )
            })?
            .to_string();
        let state = &self.state;
        let record = state
            .clusters
            .get(&cluster_id)
            .map_err(|e| (GrpcCode::NotFound, e.message))?;
        crate::access::require_cluster(state, caller, &cluster_id, "CAN_ATTACH_TO")
            .map_err(status_of)?;
        match (record.state, record.engine_port) {
            (ClusterState::Running | ClusterState::Resizing, Some(port)) => {
                state.clusters.touch(&cluster_id);
                Ok(port)
            }
            (ClusterState::Terminated | ClusterState::Error, _) => {
                let may_start =
                    crate::access::require_cluster(state, caller, &cluster_id, "CAN_RESTART")
                        .is_ok();
                if !may_start {
                    return Err(not_running(&cluster_id, "Terminated"));
                }
                state
                    .clusters
                    .start(&caller.user_name, &cluster_id)
                    .await
                    .map_err(status_of)?;
                Err(not_running(&cluster_id, "Pending"))
            }
            (ClusterState::Terminating, _) => Err(not_running(&cluster_id, "Terminating")),
            _ => Err(not_running(&cluster_id, "Pending")),
        }
    }

    /// A new session gets Databricks' defaults before its first call: tables
    /// are Delta unless the client says otherwise (`saveAsTable` with no format).
    async fn session_defaults(&self, port: u16, first: &FirstFields) {
        let message = config_set(first, &[("spark.sql.sources.default", "delta")]);
        let request = Request::post(format!("http://127.0.0.1:{port}{SERVICE_PREFIX}Config"))
            .header(header::CONTENT_TYPE, "application/grpc")
            .header("te", "trailers")
            .body(Body::from(crate::relay::framed(&message)));
        let Ok(request) = request else { return };
        let outcome = match self.client.request(request).await {
            Ok(response) => {
                let headers = response.headers().clone();
                let trailers = response
                    .into_body()
                    .collect()
                    .await
                    .ok()
                    .and_then(|b| b.trailers().cloned());
                grpc_status(&headers).or_else(|| trailers.as_ref().and_then(grpc_status))
            }
            Err(_) => None,
        };
        if outcome != Some(0) {
            tracing::warn!(status = ?outcome, "could not set a new Spark session's defaults");
        }
    }

    /// Binds a session to the caller; true when the session is new.
    fn bind_session(&self, session: &str, caller: &Caller) -> Result<bool, (GrpcCode, String)> {
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| (GrpcCode::Internal, "session table poisoned".to_string()))?;
        let now = Instant::now();
        match sessions.get_mut(session) {
            Some((owner, used)) if *owner == caller.principal_id => {
                *used = now;
                Ok(false)
            }
            Some(_) => Err((
                GrpcCode::PermissionDenied,
                format!("Spark session {session} belongs to another user"),
            )),
            None => {
                if sessions.len() >= MAX_SESSIONS {
                    forget_oldest(&mut sessions);
                }
                sessions.insert(session.to_string(), (caller.principal_id.clone(), now));
                Ok(true)
            }
        }
    }
}

fn forget_oldest(sessions: &mut HashMap<String, (String, Instant)>) {
    let mut ages: Vec<Instant> = sessions.values().map(|(_, used)| *used).collect();
    ages.sort();
    if let Some(cutoff) = ages.get(ages.len() / 2).copied() {
        sessions.retain(|_, (_, used)| *used > cutoff);
    }
}

fn not_running(cluster_id: &str, state: &str) -> (GrpcCode, String) {
    (
        GrpcCode::FailedPrecondition,
        format!("INVALID_STATE: cluster {cluster_id} is in unexpected state {state}."),
    )
}

fn status_of(error: Error) -> (GrpcCode, String) {
    let status = match error.code {
        ErrorCode::ResourceDoesNotExist | ErrorCode::NotFound => GrpcCode::NotFound,
        ErrorCode::PermissionDenied => GrpcCode::PermissionDenied,
        ErrorCode::Unauthenticated => GrpcCode::Unauthenticated,
        ErrorCode::InvalidParameterValue => GrpcCode::InvalidArgument,
        ErrorCode::InvalidState => GrpcCode::FailedPrecondition,
        _ => GrpcCode::Internal,
    };
    (status, error.message)
}

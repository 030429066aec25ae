//! The Kubernetes API engines see: a loopback endpoint of Kiln with exactly
//! the pod calls Sail's `kubernetes-cluster` mode makes, each checked against
//! the caller's cluster (its bearer token) and carried out with Kiln's own
//! credentials. Answers are Kubernetes-shaped (`Status` on errors).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kiln_core::ids::same_token as same;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::pods::{manager_of, PodEntry, Track};
use crate::worker_pod::{worker_pod, PodPolicy, CLUSTER_LABEL, INSTANCE_LABEL, MANAGER_LABEL};
use crate::Kubernetes;

/// Spark sessions of one cluster that may hold workers at once (Sail starts
/// each session's own workers); more pods than that are refused.
pub const SESSIONS_WITH_WORKERS: u32 = 8;

fn status(code: StatusCode, reason: &str, message: impl Into<String>) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message.into(), "reason": reason, "code": code.as_u16(),
    });
    (code, Json(body)).into_response()
}

fn relay(reply: crate::api::Reply) -> Response {
    let code = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
    (code, Json(reply.body)).into_response()
}

impl Kubernetes {
    /// Serves the engines' endpoint on a loopback port until `cancel`.
    pub async fn serve_engine_api(
        self: &Arc<Self>,
        cancel: CancellationToken,
    ) -> kiln_core::Result<tokio::task::JoinHandle<()>> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| kiln_core::Error::internal("bind the engines' Kubernetes API", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| kiln_core::Error::internal("bind the engines' Kubernetes API", e))?
            .port();
        let _ = self.engine_api_port.set(port);
        let router = Router::new()
            .route(
                "/api/v1/namespaces/{ns}/pods",
                post(create_pod).delete(delete_pods),
            )
            .route("/api/v1/namespaces/{ns}/pods/{name}", get(get_pod))
            .fallback(|| async {
                status(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "engines may only create, read and delete their worker pods",
                )
            })
            .with_state(self.clone());
        Ok(tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(cancel.cancelled_owned())
                .await;
            if let Err(err) = served {
                tracing::warn!(%err, "the engines' Kubernetes API stopped");
            }
        }))
    }

    /// The cluster a request's token belongs to (and the token), if the
    /// namespace is ours.
    fn caller(
        &self,
        headers: &HeaderMap,
        namespace: &str,
    ) -> Result<(String, String), Box<Response>> {
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let cluster = self
            .lock()
            .iter()
            .find(|(_, c)| !token.is_empty() && same(&c.token, token))
            .map(|(id, _)| id.clone());
        let Some(cluster) = cluster else {
            return Err(Box::new(status(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "Unauthorized",
            )));
        };
        if namespace != self.api.namespace {
            return Err(Box::new(status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("engines may only use namespace {}", self.api.namespace),
            )));
        }
        Ok((cluster, token.to_string()))
    }
}

async fn create_pod(
    State(k8s): State<Arc<Kubernetes>>,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (cluster_id, token) = match k8s.caller(&headers, &ns) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let asked: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
    };
    let (node_type, access) = match k8s.lock().get(&cluster_id) {
        Some(c) if same(&c.token, &token) => (c.node_type.clone(), c.access.clone()),
        _ => return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized"),
    };
    let policy = PodPolicy {
        cluster_id: &cluster_id,
        instance: &k8s.instance,
        image: &k8s.config.image,
        image_pull_policy: &k8s.config.image_pull_policy,
        service_account: &k8s.config.worker_service_account,
        node_type: &node_type,
        worker_env: &k8s.config.worker_env,
        shared_volume_claim: k8s.config.shared_volume_claim.as_deref(),
        access: &access,
    };
    let mut pod = match worker_pod(&asked, &policy) {
        Ok(p) => p,
        Err(err) => {
            tracing::warn!(cluster_id, %err, "worker pod refused");
            return status(StatusCode::FORBIDDEN, "Forbidden", err.message);
        }
    };
    if let Some(credentials) = k8s.pod_credentials.get() {
        match credentials(cluster_id.clone()).await {
            Ok(env) => crate::worker_pod::set_env(&mut pod, &env),
            Err(err) => {
                tracing::warn!(cluster_id, %err, "no credentials for a worker pod");
                return status(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    err.message,
                );
            }
        }
    }
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let manager = manager_of(&pod);
    // Tracked before it exists, so a poll never sees a pod it does not know.
    {
        let mut clusters = k8s.lock();
        let Some(c) = clusters
            .get_mut(&cluster_id)
            .filter(|c| same(&c.token, &token))
        else {
            return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
        };
        if c.pods.contains_key(&name) {
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("pods \"{name}\" already exists"),
            );
        }
        if c.active() >= c.max_pods {
            let message = format!(
                "cluster {cluster_id} has {} worker pods, its most ({} per Spark session for up to {SESSIONS_WITH_WORKERS} sessions)",
                c.active(),
                c.max_workers
            );
            tracing::warn!(cluster_id, "{message}");
            return status(StatusCode::FORBIDDEN, "Forbidden", message);
        }
        c.pods.insert(
            name.clone(),
            PodEntry {
                manager,
                track: Track::Creating,
                pending_reported: false,
                live_seq: 0,
            },
        );
    }
    // Finished in a task of its own: a caller that hangs up (an engine being
    // stopped) must not leave the pod half-recorded.
    let created = tokio::spawn(finish_create(k8s.clone(), cluster_id, token, name, pod));
    match created.await {
        Ok(response) => response,
        Err(e) => status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        ),
    }
}

/// Creates the pod with Kiln's credentials and records the outcome under the
/// registration that asked, if it is still the cluster's. A pod created for a
/// registration released meanwhile is deleted at once; a create whose outcome
/// is unknown leaves the next poll to delete the pod if it exists.
async fn finish_create(
    k8s: Arc<Kubernetes>,
    cluster_id: String,
    token: String,
    name: String,
    pod: Value,
) -> Response {
    let result = k8s.api.create_pod(&pod).await;
    let mut orphan = false;
    {
        let mut clusters = k8s.lock();
        let current = clusters
            .get_mut(&cluster_id)
            .filter(|c| same(&c.token, &token));
        match (&result, current) {
            (Ok(reply), Some(c)) if reply.ok() => {
                if let Some(entry) = c.pods.get_mut(&name) {
                    if entry.track == Track::Creating {
                        entry.track = Track::Live;
                        entry.live_seq = k8s.seq.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            (Ok(reply), None) if reply.ok() => orphan = true,
            (Ok(_), Some(c)) => {
                c.pods.remove(&name);
            }
            (Err(_), Some(c)) => {
                c.pods.remove(&name);
                k8s.strays_left.store(true, Ordering::Relaxed);
            }
            (Err(_), None) => k8s.strays_left.store(true, Ordering::Relaxed),
            (Ok(_), None) => {}
        }
    }
    if orphan {
        tracing::info!(
            cluster_id,
            pod = name,
            "worker pod created after its engine stopped: deleting it"
        );
        match k8s.api.delete_pod(&name).await {
            Ok(reply) if reply.ok() || reply.status == 404 => {}
            _ => k8s.strays_left.store(true, Ordering::Relaxed),
        }
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "the engine's registration ended",
        );
    }
    match result {
        Ok(reply) => {
            tracing::info!(
                cluster_id,
                pod = name,
                status = reply.status,
                "worker pod create"
            );
            relay(reply)
        }
        Err(err) => status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            err.message,
        ),
    }
}

async fn get_pod(
    State(k8s): State<Arc<Kubernetes>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (cluster_id, _token) = match k8s.caller(&headers, &ns) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let known = k8s
        .lock()
        .get(&cluster_id)
        .is_some_and(|c| c.pods.contains_key(&name));
    if !known {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pods \"{name}\" not found"),
        );
    }
    match k8s.api.get_pod(&name).await {
        Ok(reply) => relay(reply),
        Err(err) => status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            err.message,
        ),
    }
}

async fn delete_pods(
    State(k8s): State<Arc<Kubernetes>>,
    Path(ns): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let (cluster_id, _token) = match k8s.caller(&headers, &ns) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let selector = query
        .iter()
        .find(|(k, _)| k == "labelSelector")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let manager = match selector.split_once('=') {
        Some((MANAGER_LABEL, m)) if crate::worker_pod::label_value_ok(m) && !m.is_empty() => {
            m.to_string()
        }
        _ => {
            return status(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("engines delete pods only by {MANAGER_LABEL}=<manager>"),
            )
        }
    };
    if let Some(c) = k8s.lock().get_mut(&cluster_id) {
        c.release_manager(&manager);
    }
    tracing::info!(cluster_id, manager, "worker pods deleted by their engine");
    let labels = [
        (MANAGER_LABEL, manager.as_str()),
        (CLUSTER_LABEL, cluster_id.as_str()),
        (INSTANCE_LABEL, k8s.instance.as_str()),
    ];
    match k8s.api.delete_pods(&labels).await {
        Ok(reply) => relay(reply),
        Err(err) => status(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            err.message,
        ),
    }
}

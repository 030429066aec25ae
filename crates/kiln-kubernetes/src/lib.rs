//! Clusters whose workers run on Kubernetes (issue 26).
//!
//! A cluster on a node type of `[kubernetes]` with workers runs its engine (a
//! Sail driver) on Kiln's host in Sail's `kubernetes-cluster` mode; Sail asks
//! for one worker pod per worker. The engine never holds Kiln's Kubernetes
//! credentials (user code runs in it): its kubeconfig names
//! [`engine_api`], a loopback endpoint of Kiln with a per-cluster token, which
//! builds each pod by Kiln's policy ([`worker_pod`]) and creates it with
//! Kiln's credentials ([`api`], [`access`]). Kiln tracks every cluster's pods
//! ([`pods`]): a pod lost under its engine becomes a `NODES_LOST` event, pods
//! are deleted when the cluster stops, and leftovers of an earlier Kiln
//! process are deleted at start.
//!
//! Invariants:
//! - every pod Kiln creates carries `kiln.dev/cluster-id` and `kiln.dev/instance`;
//! - a token only reaches its own cluster's pods; it is revoked when the
//!   engine stops.

pub mod access;
pub mod api;
pub mod config;
pub mod engine_api;
pub mod pods;
pub mod worker_pod;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use kiln_core::{Error, Result};

pub use config::{KubernetesConfig, NodeTypeConfig};
pub use pods::{Fault, LostPod};
pub use worker_pod::PodAccess;

use crate::api::Api;
use crate::pods::ClusterPods;
use crate::worker_pod::{CLUSTER_LABEL, INSTANCE_LABEL};

/// Kiln's Kubernetes side: configuration, API access and the pods of every
/// cluster that runs workers there.
pub struct Kubernetes {
    pub config: KubernetesConfig,
    api: Api,
    /// Names this Kiln's pods (`kiln.dev/instance`): the workspace id.
    instance: String,
    driver_host: String,
    clusters: Mutex<HashMap<String, ClusterPods>>,
    engine_api_port: OnceLock<u16>,
    /// One poll at a time, so a lost pod is reported once.
    polling: tokio::sync::Mutex<()>,
    /// A delete of some cluster's pods failed: the next poll looks for strays.
    pub(crate) strays_left: std::sync::atomic::AtomicBool,
    /// Orders polls and pods becoming live (see `poll`).
    pub(crate) seq: std::sync::atomic::AtomicU64,
    /// Credentials each new pod gets for its cluster (scoped engine
    /// credentials on the object-store root), when Kiln has them.
    pub(crate) pod_credentials: OnceLock<PodCredentials>,
}

/// A cluster id → the variables holding its pods' current credentials.
pub type PodCredentials = Arc<
    dyn Fn(
            String,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Vec<(String, String)>>> + Send>,
        > + Send
        + Sync,
>;

impl std::fmt::Debug for Kubernetes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubernetes")
            .field("api", &self.api)
            .field("instance", &self.instance)
            .finish()
    }
}

/// An engine's hold on Kubernetes: released when the engine stops (or, if
/// dropped without that, in the background).
pub struct Registration {
    k8s: Arc<Kubernetes>,
    cluster_id: String,
    token: Option<String>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registration({})", self.cluster_id)
    }
}

impl Registration {
    /// Revokes the engine's token and deletes its cluster's worker pods.
    pub async fn release(mut self) {
        if let Some(token) = self.token.take() {
            if let Err(err) = self.k8s.release(&self.cluster_id, &token).await {
                tracing::warn!(cluster_id = self.cluster_id, %err, "worker pods not deleted; Kiln deletes them at its next poll or start");
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            let (k8s, cluster_id) = (self.k8s.clone(), self.cluster_id.clone());
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let _ = k8s.release(&cluster_id, &token).await;
                });
            }
        }
    }
}

/// What an engine on Kubernetes is started with.
pub struct EngineAccess {
    /// The kubeconfig the engine gets (Kiln's loopback endpoint, its token).
    pub kubeconfig: String,
    /// Sail settings of `kubernetes-cluster` mode.
    pub env: BTreeMap<String, String>,
}

impl Kubernetes {
    pub fn new(config: KubernetesConfig, instance: &str) -> Result<Arc<Kubernetes>> {
        config.check().map_err(Error::invalid)?;
        let access = access::Access::load(config.kubeconfig.as_deref())?;
        let namespace = config
            .namespace
            .clone()
            .or_else(|| access.namespace.clone())
            .unwrap_or_else(|| "default".into());
        let driver_host = config
            .driver_host
            .clone()
            .or_else(|| std::env::var("POD_IP").ok())
            .ok_or_else(|| {
                Error::invalid("[kubernetes] driver_host is unset and so is POD_IP: worker pods need an address of Kiln's engines")
            })?;
        tracing::info!(api = ?access, namespace, driver_host, "kubernetes clusters enabled");
        Ok(Arc::new(Kubernetes {
            config,
            api: Api::new(access, namespace),
            instance: instance.to_string(),
            driver_host,
            clusters: Mutex::new(HashMap::new()),
            engine_api_port: OnceLock::new(),
            polling: tokio::sync::Mutex::new(()),
            strays_left: std::sync::atomic::AtomicBool::new(false),
            seq: std::sync::atomic::AtomicU64::new(1),
            pod_credentials: OnceLock::new(),
        }))
    }

    pub fn node_types(&self) -> &[NodeTypeConfig] {
        &self.config.node_types
    }

    /// Whether a cluster on `node_type_id` with `max_workers` runs its workers here.
    pub fn runs(&self, node_type_id: &str, max_workers: u32) -> bool {
        max_workers > 0 && self.config.node_type(node_type_id).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ClusterPods>> {
        self.clusters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a cluster's engine: a fresh token, and the settings it
    /// starts with. The [`Registration`] revokes it and deletes the pods.
    /// Its default parallelism is the cores of its most workers (the driver's
    /// own cores say nothing about the pods').
    pub fn engine_access(
        self: &Arc<Self>,
        cluster_id: &str,
        node_type_id: &str,
        max_workers: u32,
        access: PodAccess,
    ) -> Result<(EngineAccess, Registration)> {
        let port = *self
            .engine_api_port
            .get()
            .ok_or_else(|| Error::internal("kubernetes", "the engine API is not serving"))?;
        let node_type = self
            .config
            .node_type(node_type_id)
            .cloned()
            .ok_or_else(|| Error::invalid(format!("Unknown node type {node_type_id}")))?;
        let parallelism = ((node_type.num_cores * f64::from(max_workers)).ceil() as u64).max(1);
        let token = hex::encode(rand::random::<[u8; 32]>());
        self.lock().insert(
            cluster_id.to_string(),
            ClusterPods::new(token.clone(), max_workers, node_type, access),
        );
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: kiln\ncontexts:\n- name: kiln\n  context: {{cluster: kiln, user: engine}}\nclusters:\n- name: kiln\n  cluster: {{server: 'http://127.0.0.1:{port}'}}\nusers:\n- name: engine\n  user: {{token: '{token}'}}\n"
        );
        let timeout = self.config.worker_heartbeat_timeout_seconds;
        let env = BTreeMap::from(
            [
                ("SAIL_MODE", "kubernetes-cluster".to_string()),
                ("SAIL_KUBERNETES__NAMESPACE", self.api.namespace.clone()),
                ("SAIL_KUBERNETES__IMAGE", self.config.image.clone()),
                ("SAIL_CLUSTER__DRIVER_LISTEN_HOST", "0.0.0.0".into()),
                (
                    "SAIL_CLUSTER__DRIVER_EXTERNAL_HOST",
                    self.driver_host.clone(),
                ),
                (
                    "SAIL_CLUSTER__WORKER_HEARTBEAT_TIMEOUT_SECS",
                    timeout.to_string(),
                ),
                (
                    "SAIL_EXECUTION__DEFAULT_PARALLELISM",
                    parallelism.to_string(),
                ),
                (
                    "SAIL_CLUSTER__WORKER_HEARTBEAT_INTERVAL_SECS",
                    (timeout / 4).max(1).to_string(),
                ),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );
        let registration = Registration {
            k8s: self.clone(),
            cluster_id: cluster_id.to_string(),
            token: Some(token),
        };
        Ok((EngineAccess { kubeconfig, env }, registration))
    }

    /// The engine of `cluster_id` stopped: revokes its token (if still the
    /// current one) and deletes its pods.
    async fn release(&self, cluster_id: &str, token: &str) -> Result<()> {
        let known = {
            let mut clusters = self.lock();
            let current = clusters.get(cluster_id).is_some_and(|c| c.token == token);
            if current {
                clusters.remove(cluster_id);
            }
            current
        };
        if !known {
            return Ok(());
        }
        self.delete_cluster_pods(cluster_id).await
    }

    async fn delete_cluster_pods(&self, cluster_id: &str) -> Result<()> {
        let reply = self
            .api
            .delete_pods(&[
                (CLUSTER_LABEL, cluster_id),
                (INSTANCE_LABEL, &self.instance),
            ])
            .await
            .inspect_err(|_| self.strays_left.store(true, Ordering::Relaxed))?;
        if !reply.ok() {
            self.strays_left.store(true, Ordering::Relaxed);
            return Err(Error::internal(
                "delete worker pods",
                format!("HTTP {}: {}", reply.status, reply.body["message"]),
            ));
        }
        tracing::info!(cluster_id, "worker pods deleted");
        Ok(())
    }

    /// From now on each new pod gets `credentials` of its cluster.
    pub fn set_pod_credentials(&self, credentials: PodCredentials) {
        let _ = self.pod_credentials.set(credentials);
    }

    /// At start: pods an earlier Kiln process left (their engines died with
    /// it). Pods of engines started since are tracked, and kept.
    pub async fn delete_leftover_pods(&self) -> Result<usize> {
        let _one = self.polling.lock().await;
        let listed = self
            .api
            .list_pods(&[(INSTANCE_LABEL, &self.instance)])
            .await
            .inspect_err(|_| self.strays_left.store(true, Ordering::Relaxed))?;
        let leftovers = pods::untracked(&self.lock(), &listed);
        self.delete_named(&leftovers).await;
        Ok(leftovers.len())
    }

    async fn delete_named(&self, names: &[String]) {
        for name in names {
            match self.api.delete_pod(name).await {
                Ok(reply) if reply.ok() || reply.status == 404 => {
                    tracing::info!(pod = name, "leftover worker pod deleted")
                }
                Ok(reply) => {
                    self.strays_left.store(true, Ordering::Relaxed);
                    tracing::warn!(
                        pod = name,
                        status = reply.status,
                        "leftover worker pod not deleted"
                    )
                }
                Err(err) => {
                    self.strays_left.store(true, Ordering::Relaxed);
                    tracing::warn!(pod = name, %err, "leftover worker pod not deleted")
                }
            }
        }
    }

    /// Lists Kiln's pods: returns pods newly lost under their engines, and
    /// deletes pods no running engine asked for.
    pub async fn poll(&self) -> Result<Vec<LostPod>> {
        let _one = self.polling.lock().await;
        let had_strays = self.strays_left.swap(false, Ordering::Relaxed);
        if self.lock().is_empty() && !had_strays {
            return Ok(Vec::new());
        }
        // Pods that became live after this stamp may be missing from the listing.
        let stamp = self.seq.fetch_add(1, Ordering::SeqCst);
        let listed = self
            .api
            .list_pods(&[(INSTANCE_LABEL, &self.instance)])
            .await
            .inspect_err(|_| {
                if had_strays {
                    self.strays_left.store(true, Ordering::Relaxed)
                }
            })?;
        let (lost, leftovers) = {
            let mut clusters = self.lock();
            let lost = pods::observe(&mut clusters, &listed, kiln_core::time::now_ms(), stamp);
            (lost, pods::untracked(&clusters, &listed))
        };
        // Skips pods already being deleted (a real API lists them until they end).
        let leftovers: Vec<String> = leftovers
            .into_iter()
            .filter(|name| {
                !listed.iter().any(|p| {
                    p["metadata"]["name"] == name.as_str()
                        && p["metadata"]["deletionTimestamp"].is_string()
                })
            })
            .collect();
        self.delete_named(&leftovers).await;
        Ok(lost)
    }

    /// Pods of `cluster_id` lost at or after `since_ms`.
    pub fn lost_since(&self, cluster_id: &str, since_ms: i64) -> Vec<LostPod> {
        self.lock()
            .get(cluster_id)
            .map(|c| {
                c.lost
                    .iter()
                    .filter(|l| l.at_ms >= since_ms)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `cluster_id`'s engine runs its workers here.
    pub fn has_cluster(&self, cluster_id: &str) -> bool {
        self.lock().contains_key(cluster_id)
    }

    /// Worker pods `cluster_id` has now.
    pub fn live_pods(&self, cluster_id: &str) -> usize {
        self.lock()
            .get(cluster_id)
            .map(ClusterPods::live)
            .unwrap_or(0)
    }
}

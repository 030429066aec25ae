//! Clusters whose workers are Kubernetes pods: which clusters those are, the
//! watcher that turns a lost pod into a `NODES_LOST` event (and a pod no node
//! can take into `ADD_NODES_FAILED`), and the note a failed command gets when
//! its cluster lost a worker meanwhile.

use std::sync::Arc;
use std::time::Duration;

use kiln_kubernetes::{Fault, LostPod};
use kiln_store::ClusterConfig;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::clusters::{event, Clusters};
use crate::engine::KubernetesWorkers;

impl Clusters {
    /// `Some` when a cluster of `config` with up to `max_workers` runs its
    /// workers as pods (a `[kubernetes]` node type, workers asked for).
    pub(crate) fn kubernetes_workers(
        &self,
        config: &ClusterConfig,
        max_workers: u32,
    ) -> Option<KubernetesWorkers> {
        let k8s = self.settings.kubernetes.as_ref()?;
        k8s.runs(&config.node_type_id, max_workers)
            .then(|| KubernetesWorkers {
                k8s: k8s.clone(),
                node_type_id: config.node_type_id.clone(),
            })
    }

    /// Until `cancel`: lists Kiln's worker pods every `pod_poll_ms` and
    /// records a `NODES_LOST` event for each pod lost under its engine.
    /// First deletes the pods an earlier Kiln process left behind.
    pub async fn watch_worker_pods(self: Arc<Self>, cancel: CancellationToken) {
        let Some(k8s) = self.settings.kubernetes.clone() else {
            return;
        };
        match k8s.delete_leftover_pods().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pods = n, "worker pods of an earlier Kiln process deleted"),
            Err(err) => tracing::warn!(%err, "could not look for leftover worker pods"),
        }
        let every = Duration::from_millis(k8s.config.pod_poll_ms.max(100));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            match k8s.poll().await {
                Ok(lost) => self.record_lost(lost).await,
                Err(err) => tracing::debug!(%err, "worker pods not listed"),
            }
        }
    }

    async fn record_lost(&self, lost: Vec<LostPod>) {
        for pod in lost {
            tracing::warn!(
                cluster_id = pod.cluster_id,
                pod = pod.pod,
                detail = pod.detail,
                "worker pod lost"
            );
            let live = self
                .settings
                .kubernetes
                .as_ref()
                .map(|k| k.live_pods(&pod.cluster_id))
                .unwrap_or(0);
            let (kind, code) = match pod.fault {
                Fault::Lost => ("NODES_LOST", "COMMUNICATION_LOST"),
                Fault::Unschedulable => ("ADD_NODES_FAILED", "POD_SCHEDULING_FAILURE"),
            };
            let details = json!({
                "instance_id": pod.pod,
                "current_num_workers": live,
                "reason": {"code": code, "type": "CLOUD_FAILURE",
                           "parameters": {"pod": pod.pod, "detail": pod.detail}},
            });
            let recorded = self
                .mutate(&pod.cluster_id, None, |_, events| {
                    events.push(event(&pod.cluster_id, kind, details));
                    Ok(())
                })
                .await;
            if let Err(err) = recorded {
                tracing::debug!(%err, "NODES_LOST not recorded");
            }
        }
    }

    /// A command on `cluster_id` that began at `since_ms` failed: when a
    /// worker pod of the cluster was lost since, says so in its error.
    pub async fn explain_lost_workers(
        &self,
        cluster_id: &str,
        since_ms: i64,
        results: Value,
    ) -> Value {
        let Some(note) = self
            .lost_workers_note(cluster_id, since_ms, "command")
            .await
        else {
            return results;
        };
        let mut results = results;
        for key in ["cause", "summary"] {
            if let Some(text) = results[key].as_str() {
                results[key] = json!(format!("{text}{note}"));
            }
        }
        results
    }

    /// When `cluster_id` runs on pods and lost some since `since_ms`: the
    /// note a failed `what` (a command, a query) gets.
    pub async fn lost_workers_note(
        &self,
        cluster_id: &str,
        since_ms: i64,
        what: &str,
    ) -> Option<String> {
        let k8s = self.settings.kubernetes.clone()?;
        if !k8s.has_cluster(cluster_id) {
            return None;
        }
        if let Ok(lost) = k8s.poll().await {
            self.record_lost(lost).await;
        }
        let lost = k8s.lost_since(cluster_id, since_ms);
        if lost.is_empty() {
            return None;
        }
        let pods = lost
            .iter()
            .map(|l| format!("{} ({})", l.pod, l.detail))
            .collect::<Vec<_>>()
            .join(", ");
        Some(format!(
            "\n\nNODES_LOST: this cluster lost worker pod {pods} while the {what} ran. The engine gives a lost worker up within {} s and starts another for the next query: run the {what} again.",
            k8s.config.worker_heartbeat_timeout_seconds
        ))
    }

    /// Whether `cluster_id`'s workers are pods (its failures may be explained).
    pub fn on_pods(&self, cluster_id: &str) -> bool {
        self.settings
            .kubernetes
            .as_ref()
            .is_some_and(|k| k.has_cluster(cluster_id))
    }
}

//! Which worker pods each cluster has, and which of them were lost: a pod
//! that disappears or fails without its engine (or Kiln) having deleted it.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::config::NodeTypeConfig;
use crate::worker_pod::{CLUSTER_LABEL, MANAGER_LABEL};

/// A worker pod that went away under its engine, or that Kubernetes cannot place.
#[derive(Debug, Clone, PartialEq)]
pub struct LostPod {
    pub cluster_id: String,
    pub pod: String,
    pub detail: String,
    pub at_ms: i64,
    pub fault: Fault,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Deleted or failed without its engine's delete (`NODES_LOST`).
    Lost,
    /// Pending: no node can take it (`ADD_NODES_FAILED`); reported once.
    Unschedulable,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Track {
    /// Asked for; not yet created.
    Creating,
    /// Created and not yet deleted on purpose.
    Live,
    /// Its engine deleted it, or its worker exited normally.
    Released,
    /// Reported lost once.
    Lost,
}

#[derive(Debug)]
pub(crate) struct PodEntry {
    pub manager: String,
    pub track: Track,
    /// Its unschedulable state was reported.
    pub pending_reported: bool,
    /// When it became live, on the poll's clock (`Kubernetes::seq`).
    pub live_seq: u64,
}

/// One cluster whose engine may create worker pods (no `Debug`: it holds the token).
pub(crate) struct ClusterPods {
    pub token: String,
    /// The cluster's most workers, and the most pods it may have at once.
    pub max_workers: u32,
    pub max_pods: usize,
    pub node_type: NodeTypeConfig,
    pub access: crate::worker_pod::PodAccess,
    pub pods: BTreeMap<String, PodEntry>,
    pub lost: Vec<LostPod>,
}

impl ClusterPods {
    pub fn new(
        token: String,
        max_workers: u32,
        node_type: NodeTypeConfig,
        access: crate::worker_pod::PodAccess,
    ) -> Self {
        ClusterPods {
            token,
            max_workers,
            max_pods: (max_workers.max(1) * crate::engine_api::SESSIONS_WITH_WORKERS) as usize,
            node_type,
            access,
            pods: BTreeMap::new(),
            lost: Vec::new(),
        }
    }

    /// Pods an engine asked to delete (by its worker-manager label).
    pub fn release_manager(&mut self, manager: &str) {
        for entry in self.pods.values_mut() {
            if entry.manager == manager && matches!(entry.track, Track::Live | Track::Creating) {
                entry.track = Track::Released;
            }
        }
    }

    /// Pods created or being created.
    pub fn active(&self) -> usize {
        self.pods
            .values()
            .filter(|e| matches!(e.track, Track::Live | Track::Creating))
            .count()
    }

    pub fn live(&self) -> usize {
        self.pods
            .values()
            .filter(|e| e.track == Track::Live)
            .count()
    }
}

/// Why a listed pod is not running as it should, if it is not.
fn failure(pod: &Value) -> Option<String> {
    if pod["metadata"]["deletionTimestamp"].is_string() {
        return Some("the pod is being deleted".into());
    }
    if pod["status"]["phase"] != "Failed" {
        return None;
    }
    let status = &pod["status"];
    let terminated = &status["containerStatuses"][0]["state"]["terminated"];
    let mut why = String::from("the pod failed");
    for part in [&status["reason"], &terminated["reason"], &status["message"]] {
        if let Some(s) = part.as_str().filter(|s| !s.is_empty()) {
            why.push_str(": ");
            why.push_str(s);
        }
    }
    if let Some(code) = terminated["exitCode"].as_i64() {
        why.push_str(&format!(" (exit code {code})"));
    }
    Some(why)
}

/// Reasons a Pending container does not start that need someone to act.
const STUCK: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// Why a listed pod cannot be placed on a node or started, if it cannot.
fn unschedulable(pod: &Value) -> Option<String> {
    if pod["status"]["phase"] != "Pending" {
        return None;
    }
    let waiting = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| &c["state"]["waiting"])
        .find(|w| w["reason"].as_str().is_some_and(|r| STUCK.contains(&r)));
    if let Some(w) = waiting {
        return Some(format!(
            "the pod's container cannot start: {} {}",
            w["reason"].as_str().unwrap_or(""),
            w["message"].as_str().unwrap_or("")
        ));
    }
    let condition = pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")?;
    Some(format!(
        "the pod cannot be scheduled: {} {}",
        condition["reason"].as_str().unwrap_or(""),
        condition["message"].as_str().unwrap_or("")
    ))
}

/// Compares tracked pods with a listing of Kiln's pods: marks lost and
/// finished ones, and returns the newly lost and newly unschedulable.
pub(crate) fn observe(
    clusters: &mut HashMap<String, ClusterPods>,
    listed: &[Value],
    now_ms: i64,
    listed_at: u64,
) -> Vec<LostPod> {
    let mut by_name: HashMap<&str, &Value> = HashMap::new();
    for pod in listed {
        if let Some(name) = pod["metadata"]["name"].as_str() {
            by_name.insert(name, pod);
        }
    }
    let mut newly = Vec::new();
    for (cluster_id, cluster) in clusters.iter_mut() {
        for (name, entry) in cluster.pods.iter_mut() {
            if entry.track != Track::Live {
                continue;
            }
            if let Some(why) = by_name.get(name.as_str()).and_then(|p| unschedulable(p)) {
                if !entry.pending_reported {
                    entry.pending_reported = true;
                    newly.push(LostPod {
                        cluster_id: cluster_id.clone(),
                        pod: name.clone(),
                        detail: why,
                        at_ms: now_ms,
                        fault: Fault::Unschedulable,
                    });
                }
                continue;
            }
            let detail = match by_name.get(name.as_str()) {
                // Created after the listing began: not missing, only not listed yet.
                None if entry.live_seq > listed_at => None,
                None => Some("the pod was deleted".to_string()),
                Some(pod) if pod["metadata"]["labels"][CLUSTER_LABEL] != cluster_id.as_str() => {
                    Some("the pod was replaced".to_string())
                }
                Some(pod) if pod["status"]["phase"] == "Succeeded" => {
                    entry.track = Track::Released;
                    None
                }
                Some(pod) => failure(pod),
            };
            if let Some(detail) = detail {
                entry.track = Track::Lost;
                let lost = LostPod {
                    cluster_id: cluster_id.clone(),
                    pod: name.clone(),
                    detail,
                    at_ms: now_ms,
                    fault: Fault::Lost,
                };
                cluster.lost.push(lost.clone());
                newly.push(lost);
            }
        }
        cluster.pods.retain(|_, e| e.track != Track::Released);
        if cluster.lost.len() > 100 {
            cluster.lost.drain(..cluster.lost.len() - 100);
        }
    }
    newly
}

/// Listed pods no running engine of Kiln asked for: left by an earlier Kiln
/// process, or by a cluster whose pods were not all deleted.
pub(crate) fn untracked(clusters: &HashMap<String, ClusterPods>, listed: &[Value]) -> Vec<String> {
    listed
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str())
        .filter(|name| !clusters.values().any(|c| c.pods.contains_key(*name)))
        .map(str::to_string)
        .collect()
}

/// The worker manager a listed or created pod belongs to.
pub(crate) fn manager_of(pod: &Value) -> String {
    pod["metadata"]["labels"][MANAGER_LABEL]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, cluster: &str, phase: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {CLUSTER_LABEL: cluster, MANAGER_LABEL: "m1"}},
               "status": {"phase": phase}})
    }

    fn tracked(names: &[&str]) -> HashMap<String, ClusterPods> {
        let node = NodeTypeConfig {
            local_disk_mb: None,
            node_type_id: "n".into(),
            num_cores: 1.0,
            memory_mb: 1,
            description: None,
        };
        let mut c = ClusterPods::new("t".into(), 2, node, Default::default());
        for n in names {
            c.pods.insert(
                n.to_string(),
                PodEntry {
                    manager: "m1".into(),
                    track: Track::Live,
                    pending_reported: false,
                    live_seq: 1,
                },
            );
        }
        HashMap::from([("c1".to_string(), c)])
    }

    #[test]
    fn a_deleted_or_failed_pod_is_lost_once_and_a_finished_one_is_not() {
        let mut clusters = tracked(&["w1", "w2", "w3"]);
        let listed = vec![pod("w2", "c1", "Failed"), pod("w3", "c1", "Succeeded")];
        let lost = observe(&mut clusters, &listed, 7, 5);
        let names: Vec<&str> = lost.iter().map(|l| l.pod.as_str()).collect();
        assert_eq!(names, ["w1", "w2"]);
        assert_eq!(lost[0].detail, "the pod was deleted");
        assert!(lost[1].detail.starts_with("the pod failed"));
        assert!(observe(&mut clusters, &listed, 8, 5).is_empty());
        assert_eq!(clusters["c1"].lost.len(), 2);
        assert_eq!(clusters["c1"].live(), 0);
    }

    #[test]
    fn an_unschedulable_pod_is_reported_once_and_is_not_lost() {
        let mut clusters = tracked(&["w1"]);
        let mut pending = pod("w1", "c1", "Pending");
        pending["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient cpu."}]);
        let first = observe(&mut clusters, &[pending.clone()], 1, 5);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].fault, Fault::Unschedulable);
        assert!(first[0].detail.contains("Insufficient cpu"));
        assert!(observe(&mut clusters, &[pending], 2, 5).is_empty());
        assert!(clusters["c1"].lost.is_empty());
        assert!(observe(&mut clusters, &[pod("w1", "c1", "Running")], 3, 5).is_empty());
    }

    #[test]
    fn an_image_that_cannot_be_pulled_is_reported() {
        let mut clusters = tracked(&["w1"]);
        let mut pending = pod("w1", "c1", "Pending");
        pending["status"]["containerStatuses"] = json!([{"name": "worker", "state": {"waiting":
            {"reason": "ImagePullBackOff", "message": "Back-off pulling image kiln-engine:typo"}}}]);
        let reported = observe(&mut clusters, &[pending], 1, 5);
        assert_eq!(reported.len(), 1);
        assert!(
            reported[0].detail.contains("ImagePullBackOff"),
            "{}",
            reported[0].detail
        );
    }

    #[test]
    fn a_pod_live_since_the_listing_began_is_not_lost() {
        let mut clusters = tracked(&["w1"]);
        if let Some(e) = clusters.get_mut("c1").and_then(|c| c.pods.get_mut("w1")) {
            e.live_seq = 9;
        }
        assert!(observe(&mut clusters, &[], 1, 5).is_empty());
        assert_eq!(observe(&mut clusters, &[], 2, 10).len(), 1);
    }

    #[test]
    fn pods_an_engine_deleted_are_not_lost() {
        let mut clusters = tracked(&["w1", "w2"]);
        if let Some(c) = clusters.get_mut("c1") {
            c.release_manager("m1");
        }
        assert!(observe(&mut clusters, &[], 1, 5).is_empty());
    }

    #[test]
    fn pods_no_engine_asked_for_are_untracked() {
        let clusters = tracked(&["w1"]);
        let listed = vec![
            pod("w1", "c1", "Running"),
            pod("old", "c1", "Running"),
            pod("y", "c9", "Running"),
        ];
        assert_eq!(untracked(&clusters, &listed), ["old", "y"]);
    }
}

//! Which worker pods each cluster has, and which of them were lost: a pod
//! that disappears or fails without its engine (or Kiln) having deleted it.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::config::NodeTypeConfig;
use crate::worker_pod::{CLUSTER_LABEL, MANAGER_LABEL};

/// A worker pod that went away under its engine.
#[derive(Debug, Clone, PartialEq)]
pub struct LostPod {
    pub cluster_id: String,
    pub pod: String,
    pub detail: String,
    pub at_ms: i64,
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
}

/// One cluster whose engine may create worker pods.
#[derive(Debug)]
pub(crate) struct ClusterPods {
    pub token: String,
    pub node_type: NodeTypeConfig,
    pub access: crate::worker_pod::PodAccess,
    pub pods: BTreeMap<String, PodEntry>,
    pub lost: Vec<LostPod>,
}

impl ClusterPods {
    pub fn new(
        token: String,
        node_type: NodeTypeConfig,
        access: crate::worker_pod::PodAccess,
    ) -> Self {
        ClusterPods {
            token,
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

/// Compares tracked pods with a listing of Kiln's pods: marks lost and
/// finished ones, and returns the newly lost.
pub(crate) fn observe(
    clusters: &mut HashMap<String, ClusterPods>,
    listed: &[Value],
    now_ms: i64,
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
            let detail = match by_name.get(name.as_str()) {
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
            node_type_id: "n".into(),
            num_cores: 1.0,
            memory_mb: 1,
            description: None,
        };
        let mut c = ClusterPods::new("t".into(), node, Default::default());
        for n in names {
            c.pods.insert(
                n.to_string(),
                PodEntry {
                    manager: "m1".into(),
                    track: Track::Live,
                },
            );
        }
        HashMap::from([("c1".to_string(), c)])
    }

    #[test]
    fn a_deleted_or_failed_pod_is_lost_once_and_a_finished_one_is_not() {
        let mut clusters = tracked(&["w1", "w2", "w3"]);
        let listed = vec![pod("w2", "c1", "Failed"), pod("w3", "c1", "Succeeded")];
        let lost = observe(&mut clusters, &listed, 7);
        let names: Vec<&str> = lost.iter().map(|l| l.pod.as_str()).collect();
        assert_eq!(names, ["w1", "w2"]);
        assert_eq!(lost[0].detail, "the pod was deleted");
        assert!(lost[1].detail.starts_with("the pod failed"));
        assert!(observe(&mut clusters, &listed, 8).is_empty());
        assert_eq!(clusters["c1"].lost.len(), 2);
        assert_eq!(clusters["c1"].live(), 0);
    }

    #[test]
    fn pods_an_engine_deleted_are_not_lost() {
        let mut clusters = tracked(&["w1", "w2"]);
        if let Some(c) = clusters.get_mut("c1") {
            c.release_manager("m1");
        }
        assert!(observe(&mut clusters, &[], 1).is_empty());
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

//! The policy on worker pods an engine asks for. Kiln does not pass Sail's pod
//! on: it builds the pod itself, taking from the request only the name,
//! Sail's labels and Sail's worker settings, and adding the image, resources,
//! labels and hardening that Kiln's configuration decides. So whatever user
//! code in the engine sends, a pod runs `sail worker` on the engine image,
//! with no host paths, privileges or Kubernetes token, in its cluster's labels.

use std::collections::BTreeMap;

use kiln_core::{Error, Result};
use serde_json::{json, Map, Value};

use crate::config::NodeTypeConfig;

/// Labels Kiln puts on every worker pod.
pub const CLUSTER_LABEL: &str = "kiln.dev/cluster-id";
pub const INSTANCE_LABEL: &str = "kiln.dev/instance";
/// Sail's label naming a session's worker manager (its delete selector).
pub const MANAGER_LABEL: &str = "sail.lakesail.com/worker-manager";
const SAIL_LABELS: &[&str] = &[
    "app.kubernetes.io/name",
    "app.kubernetes.io/component",
    "app.kubernetes.io/instance",
    MANAGER_LABEL,
];
const NAME_PREFIX: &str = "sail-worker-";

/// Who a cluster's worker runs as and what of the shared tree it sees: the
/// same as its engine on Kiln's host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodAccess {
    /// `runAsUser`, `runAsGroup`, `supplementalGroups` (the cluster's OS identity).
    pub run_as: Option<(u32, u32, Vec<u32>)>,
    /// (mount path, path inside the shared claim), e.g. the warehouse.
    pub mounts: Vec<(String, String)>,
}

/// What Kiln decides about a worker pod of one cluster.
pub struct PodPolicy<'a> {
    pub cluster_id: &'a str,
    pub instance: &'a str,
    pub image: &'a str,
    pub image_pull_policy: &'a str,
    pub service_account: &'a str,
    pub node_type: &'a NodeTypeConfig,
    pub worker_env: &'a BTreeMap<String, String>,
    pub shared_volume_claim: Option<&'a str>,
    pub access: &'a PodAccess,
}

fn refused(why: impl Into<String>) -> Error {
    Error::permission_denied(format!("worker pod refused: {}", why.into()))
}

/// A label value Kubernetes accepts (and nothing more).
pub(crate) fn label_value_ok(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn pod_name_ok(name: &str) -> bool {
    name.starts_with(NAME_PREFIX)
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

/// Sail's worker settings, Sail's tracing context, and its log level.
fn env_name_ok(name: &str) -> bool {
    (name.starts_with("SAIL_")
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        || name == "RUST_LOG"
        || name == "TRACEPARENT"
}

/// Sets variables of a pod's container, replacing any of the same name.
pub(crate) fn set_env(pod: &mut Value, vars: &[(String, String)]) {
    let container = &mut pod["spec"]["containers"][0];
    let mut env: Vec<Value> = container["env"].as_array().cloned().unwrap_or_default();
    env.retain(|e| !vars.iter().any(|(n, _)| e["name"] == n.as_str()));
    env.extend(vars.iter().map(|(n, v)| json!({"name": n, "value": v})));
    container["env"] = Value::Array(env);
}

/// The pod Kiln creates for an engine's request `asked`.
pub fn worker_pod(asked: &Value, policy: &PodPolicy) -> Result<Value> {
    let name = asked["metadata"]["name"]
        .as_str()
        .ok_or_else(|| refused("metadata.name is missing"))?;
    if !pod_name_ok(name) {
        return Err(refused(format!("{name:?} is not a Sail worker pod name")));
    }
    let mut labels = Map::new();
    for key in SAIL_LABELS {
        if let Some(v) = asked["metadata"]["labels"][*key].as_str() {
            if !label_value_ok(v) {
                return Err(refused(format!("label {key}={v:?}")));
            }
            labels.insert((*key).into(), json!(v));
        }
    }
    if !labels.contains_key(MANAGER_LABEL) {
        return Err(refused(format!("the {MANAGER_LABEL} label is missing")));
    }
    labels.insert(CLUSTER_LABEL.into(), json!(policy.cluster_id));
    labels.insert(INSTANCE_LABEL.into(), json!(policy.instance));
    labels.insert("app.kubernetes.io/managed-by".into(), json!("kiln"));

    let containers = asked["spec"]["containers"]
        .as_array()
        .ok_or_else(|| refused("spec.containers is missing"))?;
    let [container] = containers.as_slice() else {
        return Err(refused("a worker pod has exactly one container"));
    };
    if container["name"] != "worker" {
        return Err(refused("the container must be named worker"));
    }
    let command: Vec<&str> = container["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(container["args"].as_array().into_iter().flatten())
        .map(|v| v.as_str().unwrap_or("\0"))
        .collect();
    if command != ["sail", "worker"] {
        return Err(refused(format!(
            "the command must be `sail worker`, not {command:?}"
        )));
    }
    let mut env = Vec::new();
    for entry in container["env"].as_array().into_iter().flatten() {
        let name = entry["name"].as_str().unwrap_or("");
        if !env_name_ok(name) {
            return Err(refused(format!("environment variable {name:?}")));
        }
        if let Some(value) = entry["value"].as_str() {
            env.push(json!({"name": name, "value": value}));
        } else if entry["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP" {
            env.push(
                json!({"name": name, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}),
            );
        } else if entry.get("value").is_none() && entry.get("valueFrom").is_none() {
            env.push(json!({"name": name, "value": ""}));
        } else {
            return Err(refused(format!(
                "environment variable {name} takes its value from elsewhere"
            )));
        }
    }
    for (name, value) in policy.worker_env {
        env.push(json!({"name": name, "value": value}));
    }
    env.push(json!({"name": "HOME", "value": "/tmp"}));
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    if let Some(claim) = policy
        .shared_volume_claim
        .filter(|_| !policy.access.mounts.is_empty())
    {
        volumes.push(json!({"name": "shared", "persistentVolumeClaim": {"claimName": claim}}));
        for (path, sub) in &policy.access.mounts {
            mounts.push(json!({"name": "shared", "mountPath": path, "subPath": sub}));
        }
    }
    let mut security = json!({
        "runAsNonRoot": policy.access.run_as.is_some(),
        "seccompProfile": {"type": "RuntimeDefault"},
    });
    if let Some((uid, gid, groups)) = &policy.access.run_as {
        security = json!({"runAsNonRoot": true, "runAsUser": uid, "runAsGroup": gid,
                          "supplementalGroups": groups, "seccompProfile": {"type": "RuntimeDefault"}});
    }
    let n = policy.node_type;
    let mut resources = json!({
        "cpu": format_cores(n.num_cores),
        "memory": format!("{}Mi", n.memory_mb),
    });
    if let Some(disk) = n.local_disk_mb {
        resources["ephemeral-storage"] = json!(format!("{disk}Mi"));
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "restartPolicy": "Never",
            "serviceAccountName": policy.service_account,
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "securityContext": security,
            "volumes": volumes,
            "containers": [{
                "name": "worker",
                "image": policy.image,
                "imagePullPolicy": policy.image_pull_policy,
                "command": ["sail", "worker"],
                "env": env,
                "volumeMounts": mounts,
                "resources": {"requests": resources, "limits": resources},
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "privileged": false,
                    "capabilities": {"drop": ["ALL"]},
                },
            }],
        },
    }))
}

/// Cores as a Kubernetes quantity: `2`, or `1500m`.
fn format_cores(cores: f64) -> String {
    if cores.fract() == 0.0 {
        format!("{}", cores as u64)
    } else {
        format!("{}m", (cores * 1000.0).round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sails_pod() -> Value {
        json!({
            "metadata": {"name": "sail-worker-abc123-1", "labels": {
                "app.kubernetes.io/name": "sail", "sail.lakesail.com/worker-manager": "abc123",
                "kiln.dev/cluster-id": "someone-else"}},
            "spec": {
                "restartPolicy": "Always",
                "serviceAccountName": "admin",
                "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
                "containers": [{"name": "worker", "image": "evil:1", "command": ["sail", "worker"],
                    "securityContext": {"privileged": true},
                    "volumeMounts": [{"name": "root", "mountPath": "/host"}],
                    "env": [{"name": "SAIL_CLUSTER__WORKER_ID", "value": "1"},
                            {"name": "SAIL_CLUSTER__WORKER_EXTERNAL_HOST",
                             "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}]}
        })
    }

    fn policy<'a>(
        node: &'a NodeTypeConfig,
        env: &'a BTreeMap<String, String>,
        access: &'a PodAccess,
    ) -> PodPolicy<'a> {
        PodPolicy {
            cluster_id: "0101-c1",
            instance: "ws1",
            image: "kiln-engine:1",
            image_pull_policy: "IfNotPresent",
            service_account: "default",
            node_type: node,
            worker_env: env,
            shared_volume_claim: Some("kiln-shared"),
            access,
        }
    }

    #[test]
    fn the_pod_is_built_by_kiln_not_passed_on() -> Result<()> {
        let node = NodeTypeConfig {
            local_disk_mb: Some(10240),
            node_type_id: "k8s-2c".into(),
            num_cores: 1.5,
            memory_mb: 2048,
            description: None,
        };
        let env = BTreeMap::from([("AWS_ENDPOINT".to_string(), "http://s3".to_string())]);
        let access = PodAccess {
            run_as: Some((7, 7, vec![7, 9])),
            mounts: vec![("/srv/shared/warehouse".into(), "warehouse".into())],
        };
        let pod = worker_pod(&sails_pod(), &policy(&node, &env, &access))?;
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["image"], "kiln-engine:1");
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
        assert_eq!(
            pod["spec"]["volumes"],
            json!([{"name": "shared", "persistentVolumeClaim": {"claimName": "kiln-shared"}}])
        );
        assert_eq!(
            c["volumeMounts"],
            json!([{"name": "shared", "mountPath": "/srv/shared/warehouse", "subPath": "warehouse"}])
        );
        assert_eq!(pod["spec"]["securityContext"]["runAsUser"], 7);
        assert_eq!(
            pod["spec"]["securityContext"]["supplementalGroups"],
            json!([7, 9])
        );
        assert_eq!(c["securityContext"]["privileged"], false);
        assert_eq!(c["resources"]["limits"]["cpu"], "1500m");
        assert_eq!(c["resources"]["limits"]["memory"], "2048Mi");
        assert_eq!(c["resources"]["limits"]["ephemeral-storage"], "10240Mi");
        assert_eq!(c["resources"]["requests"]["ephemeral-storage"], "10240Mi");
        assert_eq!(pod["metadata"]["labels"][CLUSTER_LABEL], "0101-c1");
        assert_eq!(pod["metadata"]["labels"][INSTANCE_LABEL], "ws1");
        assert_eq!(pod["metadata"]["labels"][MANAGER_LABEL], "abc123");
        let names: Vec<&str> = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "SAIL_CLUSTER__WORKER_ID",
                "SAIL_CLUSTER__WORKER_EXTERNAL_HOST",
                "AWS_ENDPOINT",
                "HOME"
            ]
        );
        Ok(())
    }

    #[test]
    fn other_commands_env_and_names_are_refused() {
        let node = NodeTypeConfig {
            local_disk_mb: None,
            node_type_id: "n".into(),
            num_cores: 1.0,
            memory_mb: 1,
            description: None,
        };
        let env = BTreeMap::new();
        let access = PodAccess::default();
        let p = policy(&node, &env, &access);
        let mut shell = sails_pod();
        shell["spec"]["containers"][0]["command"] = json!(["sh", "-c", "curl evil"]);
        assert!(worker_pod(&shell, &p).is_err());
        let mut preload = sails_pod();
        preload["spec"]["containers"][0]["env"] = json!([{"name": "LD_PRELOAD", "value": "/x"}]);
        assert!(worker_pod(&preload, &p).is_err());
        let mut secret = sails_pod();
        secret["spec"]["containers"][0]["env"] = json!([{"name": "SAIL_X", "valueFrom": {"secretKeyRef": {"name": "kiln", "key": "k"}}}]);
        assert!(worker_pod(&secret, &p).is_err());
        let mut renamed = sails_pod();
        renamed["metadata"]["name"] = json!("kiln-0");
        assert!(worker_pod(&renamed, &p).is_err());
        let mut two = sails_pod();
        two["spec"]["containers"] =
            json!([two["spec"]["containers"][0], two["spec"]["containers"][0]]);
        assert!(worker_pod(&two, &p).is_err());
        assert_eq!(format_cores(4.0), "4");
    }

    #[test]
    fn set_env_replaces_and_adds() {
        let mut pod = json!({"spec": {"containers": [{"env": [
            {"name": "AWS_REGION", "value": "us-east-1"},
            {"name": "AWS_ACCESS_KEY_ID", "value": "kiln"}]}]}});
        set_env(
            &mut pod,
            &[
                ("AWS_ACCESS_KEY_ID".into(), "ASIA1".into()),
                ("AWS_SESSION_TOKEN".into(), "t".into()),
            ],
        );
        let env = &pod["spec"]["containers"][0]["env"];
        assert_eq!(env.as_array().map(Vec::len), Some(3));
        assert_eq!(env[0]["name"], "AWS_REGION");
        assert_eq!(
            env[1],
            json!({"name": "AWS_ACCESS_KEY_ID", "value": "ASIA1"})
        );
        assert_eq!(env[2], json!({"name": "AWS_SESSION_TOKEN", "value": "t"}));
    }
}

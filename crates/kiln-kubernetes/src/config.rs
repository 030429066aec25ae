//! `[kubernetes]` in `kiln.toml`: where Kiln's Kubernetes API is, which
//! namespace and image worker pods get, and the node types clusters may use.

use std::path::PathBuf;

use serde::Deserialize;

/// Kubernetes settings. Absent: every cluster runs on this host.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
    /// A kubeconfig file (its current context). Unset: the in-cluster service
    /// account (`KUBERNETES_SERVICE_HOST`, `/var/run/secrets/kubernetes.io/serviceaccount`).
    pub kubeconfig: Option<PathBuf>,
    /// The namespace worker pods run in. Unset: the service account's
    /// namespace in a pod, else `default`.
    pub namespace: Option<String>,
    /// The engine image worker pods run (`deploy/docker/engine.Dockerfile`).
    pub image: String,
    pub image_pull_policy: String,
    /// The service account worker pods run as (its token is never mounted).
    pub worker_service_account: String,
    /// The address worker pods reach engines (Sail drivers) at: Kiln's pod IP.
    /// Unset: `$POD_IP` (the downward API in `deploy/kubernetes`).
    pub driver_host: Option<String>,
    /// Seconds without a heartbeat before an engine gives a worker up and
    /// replaces it (Sail's `worker_heartbeat_timeout_secs`).
    pub worker_heartbeat_timeout_seconds: u64,
    /// How often Kiln lists its worker pods to notice lost ones.
    pub pod_poll_ms: u64,
    /// Environment every worker pod gets besides Sail's own settings (e.g. an
    /// object store's endpoint). Names must not start with `SAIL_` or `KILN_`.
    pub worker_env: std::collections::BTreeMap<String, String>,
    /// Node types clusters may name in `node_type_id`; each is the requests
    /// and limits of one worker pod.
    pub node_types: Vec<NodeTypeConfig>,
    /// The PersistentVolumeClaim (ReadWriteMany) that holds Kiln's shared tree
    /// (`shared_dir`), mounted in Kiln's pod at `shared_dir`. Worker pods mount
    /// its `dbfs/` and `warehouse/` at the same paths, so tables, volumes and
    /// DBFS files workers write are where every engine reads them. Required
    /// with node types, unless Kiln's data is on object storage (`[storage]
    /// root`): a worker writing to a disk of its own loses the data.
    pub shared_volume_claim: Option<String>,
    /// Set by Kiln, not read from the file: DBFS, volumes and new managed
    /// tables are on the object-store root, which worker pods reach by URL.
    #[serde(skip)]
    pub data_on_object_store: bool,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            kubeconfig: None,
            namespace: None,
            image: "kiln-engine:latest".into(),
            image_pull_policy: "IfNotPresent".into(),
            worker_service_account: "default".into(),
            driver_host: None,
            worker_heartbeat_timeout_seconds: 15,
            pod_poll_ms: 1000,
            worker_env: Default::default(),
            node_types: Vec::new(),
            shared_volume_claim: None,
            data_on_object_store: false,
        }
    }
}

/// One node type: what a worker pod of it requests (and is limited to).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeTypeConfig {
    pub node_type_id: String,
    pub num_cores: f64,
    pub memory_mb: u64,
    /// Scratch disk per worker (`ephemeral-storage`: spills, shuffle
    /// files); unset: no limit of Kiln's (the namespace's default applies).
    #[serde(default)]
    pub local_disk_mb: Option<u64>,
    #[serde(default)]
    pub description: Option<String>,
}

/// Debug without `worker_env` values (they may hold object-store credentials).
impl std::fmt::Debug for KubernetesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesConfig")
            .field("kubeconfig", &self.kubeconfig)
            .field("namespace", &self.namespace)
            .field("image", &self.image)
            .field("driver_host", &self.driver_host)
            .field("worker_env", &self.worker_env.keys().collect::<Vec<_>>())
            .field("node_types", &self.node_types)
            .field("shared_volume_claim", &self.shared_volume_claim)
            .finish()
    }
}

impl KubernetesConfig {
    /// The node type named `id`, if this config defines it.
    pub fn node_type(&self, id: &str) -> Option<&NodeTypeConfig> {
        self.node_types.iter().find(|n| n.node_type_id == id)
    }

    /// Checks what Kiln cannot work with, before it starts.
    pub fn check(&self) -> Result<(), String> {
        if self.image.trim().is_empty() {
            return Err("[kubernetes] image must name the engine image".into());
        }
        for n in &self.node_types {
            if n.node_type_id.is_empty() || n.node_type_id == "kiln-local" {
                return Err(format!(
                    "[kubernetes] node type {:?} is not a usable id",
                    n.node_type_id
                ));
            }
            if n.num_cores.is_nan() || n.num_cores <= 0.0 || n.memory_mb == 0 {
                return Err(format!(
                    "[kubernetes] node type {} needs num_cores and memory_mb above 0",
                    n.node_type_id
                ));
            }
        }
        for name in self.worker_env.keys() {
            if name.starts_with("SAIL_") || name.starts_with("KILN_") || name.is_empty() {
                return Err(format!("[kubernetes] worker_env may not set {name}"));
            }
        }
        let claim = self.shared_volume_claim.as_deref().unwrap_or("");
        if !self.node_types.is_empty() && claim.is_empty() && !self.data_on_object_store {
            return Err("[kubernetes] shared_volume_claim is required with node_types unless [storage] root is set: worker pods must write tables where every engine reads them (a ReadWriteMany claim holding shared_dir, or the object store)".into());
        }
        if !claim.is_empty()
            && !claim
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        {
            return Err(format!(
                "[kubernetes] shared_volume_claim {claim:?} is not a claim name"
            ));
        }
        if self.worker_heartbeat_timeout_seconds < 2 {
            return Err("[kubernetes] worker_heartbeat_timeout_seconds must be 2 or more".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_types_parse_and_are_checked() -> Result<(), String> {
        let config: KubernetesConfig = toml_like(
            r#"{"image": "kiln-engine:1", "shared_volume_claim": "kiln-shared", "node_types": [{"node_type_id": "k8s-2c", "num_cores": 2, "memory_mb": 4096}]}"#,
        )?;
        config.check()?;
        assert_eq!(config.node_type("k8s-2c").map(|n| n.memory_mb), Some(4096));
        assert!(config.node_type("kiln-local").is_none());
        let bad: KubernetesConfig = toml_like(
            r#"{"node_types": [{"node_type_id": "kiln-local", "num_cores": 2, "memory_mb": 1}]}"#,
        )?;
        assert!(bad.check().is_err());
        let env: KubernetesConfig = toml_like(r#"{"worker_env": {"SAIL_MODE": "local"}}"#)?;
        assert!(env.check().is_err());
        let no_claim: KubernetesConfig = toml_like(
            r#"{"node_types": [{"node_type_id": "k8s-2c", "num_cores": 2, "memory_mb": 1}]}"#,
        )?;
        assert!(no_claim.check().is_err());
        let on_object_store = KubernetesConfig {
            data_on_object_store: true,
            ..no_claim
        };
        on_object_store.check()?;
        Ok(())
    }

    fn toml_like(json: &str) -> Result<KubernetesConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }
}

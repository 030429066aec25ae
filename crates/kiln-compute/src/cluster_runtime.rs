//! Which engine runtime a cluster runs on: the one of the Python minor its
//! Databricks runtime version runs (or that `PYSPARK_PYTHON` names), built
//! the first time a cluster needs it. When no interpreter of that minor is on
//! this host the cluster starts on the default runtime and says so (its
//! RUNNING event and Kiln's log), unless `spark.kiln.python.strict` is `true`
//! in its `spark_conf`: then it does not start.

use kiln_core::{Error, ErrorCode, Result};
use kiln_store::{ClusterConfig, ClusterRecord};

use crate::clusters::Clusters;
use crate::pythons::{self, show};
use crate::runtime::Runtime;
pub(crate) use crate::warm_pool::{strict, wanted_minor};

pub use crate::warm_pool::Chosen;

impl Clusters {
    /// The runtime a cluster's engine runs on (kernels, libraries and pipeline
    /// workers of the cluster use the same one).
    pub fn runtime_of(&self, cluster_id: &str) -> Runtime {
        self.runtimes
            .lock()
            .ok()
            .and_then(|m| m.get(cluster_id).cloned())
            .unwrap_or_else(|| self.runtime.clone())
    }

    pub(crate) fn remember_runtime(&self, cluster_id: &str, runtime: Runtime) {
        if let Ok(mut map) = self.runtimes.lock() {
            map.insert(cluster_id.to_string(), runtime);
        }
    }

    /// Picks (installing if needed) the runtime for a cluster about to start.
    pub(crate) async fn choose_runtime(&self, record: &ClusterRecord) -> Result<Chosen> {
        self.choose_runtime_for(&record.cluster_id, &record.config)
            .await
    }

    /// The runtime for an engine of `config` (for `cluster_id`).
    pub(crate) async fn choose_runtime_for(
        &self,
        cluster_id: &str,
        config: &ClusterConfig,
    ) -> Result<Chosen> {
        let wanted = wanted_minor(config);
        let default = self.runtime.clone();
        if default.minor() == Some(wanted) {
            return Ok(Chosen {
                runtime: default,
                note: None,
            });
        }
        let configured = self.settings.pythons.clone();
        let cache = default
            .root
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_else(crate::runtime::cache_dir);
        let found = tokio::task::spawn_blocking(move || -> Result<Runtime> {
            let python = pythons::find(wanted, &configured).ok_or_else(|| {
                Error::invalid(format!("no python{} was found on this host", show(wanted)))
            })?;
            let python = pythons::reachable_copy(&python, &cache, wanted)?;
            tracing::info!(python = %python.display(), "engine runtime for Python {}", show(wanted));
            Runtime::ensure_for(&cache, &python, wanted)
        })
        .await
        .map_err(|e| Error::internal("prepare the engine runtime", e))?;
        let runtime = match found {
            Ok(runtime) => {
                return Ok(Chosen {
                    runtime,
                    note: None,
                })
            }
            Err(e) => e,
        };
        let have = default.minor().map(show).unwrap_or_else(|| "?".into());
        let why = format!(
            "Databricks Runtime {} runs Python {}, but {}",
            config.spark_version,
            show(wanted),
            runtime.message
        );
        if strict(config) {
            return Err(Error::new(
                ErrorCode::InvalidState,
                format!("{why}; spark.kiln.python.strict is set, so the cluster does not start on Python {have}. Install python{} (or list it in [runtime] pythons).", show(wanted)),
            ));
        }
        let note = format!(
            "{why}: the cluster runs on Python {have} instead, and Python UDFs sent from Python {} will not run. Install python{} (or list it in [runtime] pythons), or set spark.kiln.python.strict to refuse.",
            show(wanted),
            show(wanted)
        );
        tracing::warn!(cluster_id, "{note}");
        Ok(Chosen {
            runtime: default,
            note: Some(note),
        })
    }
}

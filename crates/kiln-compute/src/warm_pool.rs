//! The warm engine pool's contents (see `warm_engines` for the keeper and
//! the claims): what a warm engine is, and when a cluster's engine is one.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kiln_store::ClusterConfig;
use tokio::sync::Notify;

use crate::engine::{Engine, EngineSpec};
use crate::pythons::{self, Minor};
use crate::runtime::Runtime;

/// Marks a directory reserved for a warm engine not yet claimed.
pub(crate) const MARKER: &str = ".kiln-warm";

/// A chosen runtime and, when it is a fallback, why.
#[derive(Clone)]
pub struct Chosen {
    pub runtime: Runtime,
    pub note: Option<String>,
}

/// An engine started for a reserved cluster id, and how it was started.
pub(crate) struct WarmEngine {
    pub(crate) cluster_id: String,
    pub(crate) engine: Engine,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) minor: Minor,
    pub(crate) chosen: Chosen,
    pub(crate) claimed_at: Option<Instant>,
}

impl WarmEngine {
    /// Whether the engine of a cluster with `config` would be started exactly like this one.
    pub(crate) fn fits(&mut self, spec: &EngineSpec, config: &ClusterConfig) -> bool {
        spec.cluster_id == self.cluster_id
            && spec.num_workers == 0
            && spec.max_workers == 0
            && spec.env == self.env
            && wanted_minor(config) == self.minor
            && (self.chosen.note.is_none() || !strict(config))
            && self.engine.exited().is_none()
    }

    /// The engine, now its cluster's own (the reservation mark goes), and its runtime.
    pub(crate) fn adopt(self, work_dir: &std::path::Path) -> (Engine, Chosen) {
        let _ = kiln_core::blocking::run(|| std::fs::remove_file(work_dir.join(MARKER)));
        (self.engine, self.chosen)
    }

    pub(crate) async fn stop(self, deadline: Duration) {
        self.engine.stop(deadline).await;
    }
}

/// The warm engines of one Kiln: ready ones, and those claimed by a create
/// whose launch step has not taken them yet.
#[derive(Default)]
pub(crate) struct WarmPool {
    pub(crate) ready: Mutex<Vec<WarmEngine>>,
    pub(crate) claimed: Mutex<HashMap<String, WarmEngine>>,
    /// The Databricks runtime version engines are warmed for (`None`: the newest cluster's).
    pub(crate) target: Mutex<Option<String>>,
    pub(crate) wake: Notify,
}

/// The Python minor a configuration's engine runs.
pub(crate) fn wanted_minor(config: &ClusterConfig) -> pythons::Minor {
    pythons::requested(&config.spark_env_vars)
        .unwrap_or_else(|| pythons::for_spark_version(&config.spark_version))
}

/// Whether a fallback runtime is refused (`spark.kiln.python.strict`).
pub(crate) fn strict(config: &ClusterConfig) -> bool {
    config
        .spark_conf
        .get("spark.kiln.python.strict")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

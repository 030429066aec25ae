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
    /// Whether the engine of a cluster with `config` would be started exactly
    /// like this one, and this one still runs.
    pub(crate) fn fits(&mut self, spec: &EngineSpec, config: &ClusterConfig) -> bool {
        let started = Started {
            cluster_id: &self.cluster_id,
            env: &self.env,
            minor: self.minor,
            fallback: self.chosen.note.is_some(),
        };
        let asked = Asked {
            cluster_id: &spec.cluster_id,
            workers: (spec.num_workers, spec.max_workers),
            env: &spec.env,
        };
        started.fits(&asked, config) && self.engine.exited().is_none()
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

/// How a warm engine was started.
struct Started<'a> {
    cluster_id: &'a str,
    env: &'a BTreeMap<String, String>,
    minor: Minor,
    /// It runs a fallback runtime (not the Python its runtime version runs).
    fallback: bool,
}

/// How a cluster's engine is to be started.
struct Asked<'a> {
    cluster_id: &'a str,
    workers: (u32, u32),
    env: &'a BTreeMap<String, String>,
}

impl Started<'_> {
    fn fits(&self, asked: &Asked, config: &ClusterConfig) -> bool {
        asked.cluster_id == self.cluster_id
            && asked.workers == (0, 0)
            && asked.env == self.env
            && wanted_minor(config) == self.minor
            && (!self.fallback || !strict(config))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_engine_started_exactly_as_asked_fits() {
        let env = BTreeMap::from([("SAIL_CATALOG__LIST".to_string(), "[...]".to_string())]);
        let started = Started {
            cluster_id: "1207-010203-abcdefgh",
            env: &env,
            minor: (3, 12),
            fallback: false,
        };
        let asked = Asked {
            cluster_id: "1207-010203-abcdefgh",
            workers: (0, 0),
            env: &env,
        };
        let config = ClusterConfig {
            spark_version: "16.4.x-scala2.12".into(),
            ..ClusterConfig::default()
        };
        assert!(started.fits(&asked, &config));
        // another cluster's id, workers, another environment, another Python: no
        let other_id = Asked {
            cluster_id: "1207-010203-zzzzzzzz",
            ..asked
        };
        assert!(!started.fits(&other_id, &config));
        let workers = Asked {
            workers: (2, 2),
            ..asked
        };
        assert!(!started.fits(&workers, &config));
        let changed = BTreeMap::from([("SAIL_CATALOG__LIST".to_string(), "[new]".to_string())]);
        let env_changed = Asked {
            env: &changed,
            ..asked
        };
        assert!(!started.fits(&env_changed, &config));
        let older = ClusterConfig {
            spark_version: "15.4.x-scala2.12".into(),
            ..config.clone()
        };
        assert!(!started.fits(&asked, &older));
        let mut python = config.clone();
        python
            .spark_env_vars
            .insert("PYSPARK_PYTHON".into(), "python3.11".into());
        assert!(!started.fits(&asked, &python));
        // a fallback runtime fits, unless the cluster refuses fallbacks
        let fallback = Started {
            fallback: true,
            ..started
        };
        assert!(fallback.fits(&asked, &config));
        let mut strict = config.clone();
        strict
            .spark_conf
            .insert("spark.kiln.python.strict".into(), "true".into());
        assert!(!fallback.fits(&asked, &strict));
        assert!(started.fits(&asked, &strict));
    }
}

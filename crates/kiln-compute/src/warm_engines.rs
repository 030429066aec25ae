//! Warm engines: up to `[clusters] warm_engines` engines started ahead of
//! cluster creates, so that a new cluster is RUNNING as soon as its record is
//! durable, instead of after an engine start.
//!
//! Invariants:
//! - a warm engine is started for one cluster id, reserved when it starts: its
//!   OS identity, directory and `KILN_CLUSTER_ID` are that id's. `create` gives
//!   the id to exactly one new cluster, so an engine never serves two clusters
//!   and user code never sees an engine started for another cluster;
//! - only a configuration whose engine would be started exactly like the warm
//!   one (the same Python runtime, local mode, no `spark_env_vars`, the same
//!   catalog settings) claims one; the launch step compares again and starts a
//!   fresh engine on any difference;
//! - engines are warmed for the runtime of the newest cluster (at start, the
//!   newest cluster on record, else the runtime of a cluster that names none;
//!   then that of each create that could not claim one);
//! - the keeper runs beside the reconciler with its token: warm engines stop
//!   with it, and a reserved directory left behind by a killed Kiln is removed
//!   at the next start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_core::time::now_ms;
use kiln_store::ClusterConfig;
use tokio_util::sync::CancellationToken;

use crate::clusters::Clusters;
use crate::engine::{Engine, EngineSpec};
use crate::warm_pool::{wanted_minor, WarmEngine, MARKER};

/// How long the keeper waits after a failed start before trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// A claim no launch step took by then is abandoned (the cluster went before it started).
const CLAIM_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the keeper looks for warm engines that died or went stale.
const CHECK_EVERY: Duration = Duration::from_secs(5);

impl Clusters {
    /// The environment a cluster with `config` gets: its `spark_env_vars` plus
    /// the catalog settings (which win).
    pub(crate) fn engine_env(&self, config: &ClusterConfig) -> BTreeMap<String, String> {
        let mut env = config.spark_env_vars.clone();
        if let Some(catalog) = &self.settings.engine_catalog {
            env.extend(catalog.env());
        }
        env
    }

    /// At create: the reserved id of a warm engine a cluster with `config` can
    /// run on, claimed for it (the keeper starts the next one). A create that
    /// finds none for its runtime points the keeper at that runtime.
    pub(crate) fn claim_warm(&self, config: &ClusterConfig) -> Option<String> {
        let local = config.num_workers == 0 && config.autoscale.is_none();
        if self.settings.warm_engines == 0 || !local || !config.spark_env_vars.is_empty() {
            return None;
        }
        let (env, minor) = (self.engine_env(config), wanted_minor(config));
        let found = self.warm.ready.lock().ok().and_then(|mut ready| {
            let at = ready
                .iter()
                .position(|w| w.env == env && w.minor == minor)?;
            Some(ready.swap_remove(at))
        });
        self.warm.wake.notify_one();
        let Some(taken) = found else {
            if let Ok(mut target) = self.warm.target.lock() {
                *target = Some(config.spark_version.clone());
            }
            return None;
        };
        let mut taken = taken;
        taken.claimed_at = Some(Instant::now());
        let id = taken.cluster_id.clone();
        self.warm.claimed.lock().ok()?.insert(id.clone(), taken);
        Some(id)
    }

    /// Gives a claimed engine back (the create that claimed it failed).
    pub(crate) fn unclaim_warm(&self, cluster_id: &str) {
        let back = self
            .warm
            .claimed
            .lock()
            .ok()
            .and_then(|mut claimed| claimed.remove(cluster_id));
        if let (Some(mut back), Ok(mut ready)) = (back, self.warm.ready.lock()) {
            back.claimed_at = None;
            ready.push(back);
        }
    }

    /// The warm engine claimed for `cluster_id`, for its launch step.
    pub(crate) fn take_warm(&self, cluster_id: &str) -> Option<WarmEngine> {
        self.warm.claimed.lock().ok()?.remove(cluster_id)
    }

    /// Every warm engine, ready or claimed (at shutdown).
    fn drain_warm(&self) -> Vec<WarmEngine> {
        let mut all: Vec<WarmEngine> = match self.warm.ready.lock() {
            Ok(mut ready) => ready.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        if let Ok(mut claimed) = self.warm.claimed.lock() {
            all.extend(claimed.drain().map(|(_, w)| w));
        }
        all
    }
}

impl Clusters {
    /// Keeps `[clusters] warm_engines` engines ready until `cancel`, then
    /// stops them (run beside the reconciler, with the same token).
    pub async fn keep_warm_engines(self: Arc<Self>, cancel: CancellationToken) {
        keep(self, cancel).await
    }
}

async fn keep(clusters: Arc<Clusters>, cancel: CancellationToken) {
    if let Err(err) = kiln_core::blocking::run(|| sweep_leftovers(&clusters)) {
        tracing::debug!(%err, "could not sweep reserved engine directories");
    }
    if let (Ok(mut target), Ok(all)) = (clusters.warm.target.lock(), clusters.list()) {
        // The newest cluster's runtime is the likeliest next one.
        *target = all.first().map(|c| c.config.spark_version.clone());
    }
    let mut retry_at: Option<Instant> = None;
    while !cancel.is_cancelled() {
        let stale = drop_stale(&clusters);
        for warm in stale {
            discard(&clusters, warm).await;
        }
        let have = clusters
            .warm
            .ready
            .lock()
            .map(|r| r.len())
            .unwrap_or(usize::MAX);
        let may_try = retry_at.is_none_or(|at| Instant::now() >= at);
        if have < clusters.settings.warm_engines && may_try {
            tokio::select! {
                _ = cancel.cancelled() => break,
                started = start_one(&clusters) => match started {
                    Ok(warm) => {
                        retry_at = None;
                        if let Ok(mut ready) = clusters.warm.ready.lock() {
                            ready.push(warm);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(%err, "could not start a warm engine; trying again in 30 s");
                        retry_at = Some(Instant::now() + RETRY_AFTER_FAILURE);
                    }
                },
            }
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = clusters.warm.wake.notified() => {}
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
    }
    let deadline = clusters.settings.stop_deadline;
    let mut stops = tokio::task::JoinSet::new();
    for warm in clusters.drain_warm() {
        let clusters = clusters.clone();
        stops.spawn(async move { discard(&clusters, warm).await });
    }
    while stops.join_next().await.is_some() {}
    tracing::debug!(?deadline, "warm engines stopped");
}

/// Ready engines that died, or whose environment no longer is a new
/// cluster's (the catalogs changed): they go, and the keeper starts others.
fn drop_stale(clusters: &Clusters) -> Vec<WarmEngine> {
    let config = target_config(clusters);
    let (env, minor) = (warm_env(clusters), wanted_minor(&config));
    let mut abandoned = Vec::new();
    if let Ok(mut claimed) = clusters.warm.claimed.lock() {
        let old: Vec<String> = claimed
            .iter()
            .filter(|(_, w)| w.claimed_at.is_some_and(|at| at.elapsed() > CLAIM_TIMEOUT))
            .map(|(id, _)| id.clone())
            .collect();
        abandoned.extend(old.iter().filter_map(|id| claimed.remove(id)));
    }
    let Ok(mut ready) = clusters.warm.ready.lock() else {
        return abandoned;
    };
    let (keep, stale): (Vec<WarmEngine>, Vec<WarmEngine>) = ready
        .drain(..)
        .partition(|w| w.env == env && w.minor == minor);
    let (mut alive, mut stale) = (Vec::new(), stale);
    for mut warm in keep {
        if warm.engine.exited().is_none() {
            alive.push(warm);
        } else {
            stale.push(warm);
        }
    }
    *ready = alive;
    stale.extend(abandoned);
    stale
}

/// Stops a warm engine nobody took and removes its reserved directory.
async fn discard(clusters: &Clusters, warm: WarmEngine) {
    let dir = clusters.engine_dir(&warm.cluster_id);
    let unclaimed = clusters.get(&warm.cluster_id).is_err();
    warm.stop(clusters.settings.stop_deadline).await;
    if unclaimed {
        let _ = kiln_core::blocking::run(|| std::fs::remove_dir_all(dir));
    }
}

fn dir_name(dir: &std::path::Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The environment of a warm engine: a new cluster's without `spark_env_vars`.
fn warm_env(clusters: &Clusters) -> BTreeMap<String, String> {
    clusters.engine_env(&ClusterConfig::default())
}

/// A configuration of the runtime engines are warmed for (only its Python
/// counts): the newest create's, else the runtime of a cluster that names none.
fn target_config(clusters: &Clusters) -> ClusterConfig {
    let target = clusters.warm.target.lock().ok().and_then(|t| t.clone());
    ClusterConfig {
        spark_version: target
            .unwrap_or_else(|| crate::spark_versions::DEFAULT_SPARK_VERSION.to_string()),
        ..ClusterConfig::default()
    }
}

async fn start_one(clusters: &Clusters) -> kiln_core::Result<WarmEngine> {
    let cluster_id = kiln_core::ids::cluster_id(now_ms());
    let config = target_config(clusters);
    let (minor, chosen) = (
        wanted_minor(&config),
        clusters.choose_runtime_for(&cluster_id, &config).await?,
    );
    let env = warm_env(clusters);
    let spec = EngineSpec {
        cluster_id: cluster_id.clone(),
        work_dir: clusters.prepare_engine_dir(&cluster_id)?,
        identity: clusters.isolation().cluster_identity(&cluster_id),
        isolation: clusters.isolation().clone(),
        num_workers: 0,
        max_workers: 0,
        env: env.clone(),
        kubernetes: None,
    };
    kiln_core::blocking::run(|| std::fs::write(spec.work_dir.join(MARKER), b""))
        .map_err(|e| kiln_core::Error::internal("mark a warm engine", e))?;
    let started = Instant::now();
    let engine = match Engine::launch(&chosen.runtime, &spec).await {
        Ok(engine) => engine,
        Err(err) => {
            let _ = kiln_core::blocking::run(|| std::fs::remove_dir_all(&spec.work_dir));
            return Err(err);
        }
    };
    tracing::info!(
        pid = engine.pid,
        rss_mib = rss_mib(engine.pid).unwrap_or(0),
        ms = started.elapsed().as_millis() as u64,
        "warm engine ready"
    );
    Ok(WarmEngine {
        cluster_id,
        engine,
        env,
        minor,
        chosen,
        claimed_at: None,
    })
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Removes directories reserved for warm engines of an earlier Kiln that were
/// never claimed (their engines died with it).
fn sweep_leftovers(clusters: &Clusters) -> std::io::Result<()> {
    for entry in std::fs::read_dir(clusters.isolation().engines())? {
        let path = entry?.path();
        if path.join(MARKER).exists() && clusters.get(&dir_name(&path)).is_err() {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
    Ok(())
}

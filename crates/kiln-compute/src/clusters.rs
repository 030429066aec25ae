//! The cluster service: user operations on clusters, the durable record cache,
//! and the engines the reconciler keeps in line with each cluster's state.
//!
//! Invariants:
//! - a state change is committed to the store before the call that caused it
//!   returns (the SDK's waiters poll immediately);
//! - every user-requested transition bumps `generation`; a reconciler step only
//!   commits its result if the generation it started from is still current;
//! - a cluster is RUNNING only while its engine process answered a query and has
//!   not exited.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kiln_core::{time::now_ms, Error, Result};
use kiln_store::{
    ClusterConfig, ClusterEventRecord, ClusterRecord, EventQuery, Store, TerminationReason, Write,
};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::engine::{self, Engine};
use crate::lifecycle::{next_state, ClusterState, Transition};
use crate::runtime::Runtime;
pub use crate::spark_versions::{validate_spark_version, SPARK_VERSIONS};

/// Tunables of the cluster service.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// Kiln's private directory (logs of kernels).
    pub data_dir: PathBuf,
    /// Who user code runs as; engines' directories live under its `engines/<cluster_id>`.
    pub isolation: Arc<crate::isolation::Isolation>,
    /// The length of one minute of `autotermination_minutes` (tests shorten it).
    pub autotermination_minute: Duration,
    /// How long an engine gets to exit after SIGTERM before SIGKILL.
    pub stop_deadline: Duration,
    /// The Unity Catalog engines use; `None` leaves Sail's per-session memory catalog.
    pub engine_catalog: Option<EngineCatalog>,
    /// Kiln's loopback Spark Connect front, which kernels and pipeline workers
    /// use (`None`: they talk to engines directly).
    pub front_port: Option<u16>,
    /// Interpreters for per-minor runtimes (`[runtime] pythons`).
    pub pythons: Vec<PathBuf>,
    /// Engines kept started ahead of cluster creates (0: none; see `warm_engines`).
    pub warm_engines: usize,
    /// `[kubernetes]`: node types whose workers are pods.
    pub kubernetes: Option<Arc<kiln_kubernetes::Kubernetes>>,
}

/// How engines reach Kiln's Unity Catalog.
#[derive(Clone)]
pub struct EngineCatalog {
    /// e.g. `http://127.0.0.1:8080/api/2.1/unity-catalog`
    pub uri: String,
    /// A credential Kiln accepts from its own engines.
    pub token: String,
    pub catalog: Arc<kiln_catalog::Catalog>,
}

impl std::fmt::Debug for EngineCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineCatalog")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

impl EngineCatalog {
    /// Sail settings: one `unity` catalog entry per Unity Catalog catalog, with
    /// `main.default` as the current catalog and database.
    pub fn env(&self) -> BTreeMap<String, String> {
        let names = self
            .catalog
            .catalogs()
            .map(|c| c.into_iter().map(|c| c.name).collect())
            .unwrap_or_else(|_| vec![kiln_catalog::DEFAULT_CATALOG.to_string()]);
        let entries: Vec<String> = names
            .iter()
            .map(|name| format!(r#"{{name="{name}", type="unity", uri="{}", default_catalog="{name}", token="{}"}}"#, self.uri, self.token))
            .collect();
        BTreeMap::from([
            (
                "SAIL_CATALOG__LIST".to_string(),
                format!("[{}]", entries.join(", ")),
            ),
            (
                "SAIL_CATALOG__DEFAULT_CATALOG".to_string(),
                kiln_catalog::DEFAULT_CATALOG.to_string(),
            ),
            (
                "SAIL_CATALOG__DEFAULT_DATABASE".to_string(),
                format!(r#"["{}"]"#, kiln_catalog::DEFAULT_SCHEMA),
            ),
        ])
    }
}

/// A live engine and the configuration it was started with.
pub(crate) struct EngineSlot {
    pub engine: Engine,
    pub workers: (u32, u32),
}

pub struct Clusters {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) runtime: Runtime,
    pub(crate) settings: ClusterSettings,
    records: RwLock<BTreeMap<String, ClusterRecord>>,
    writer: tokio::sync::Mutex<()>,
    pub(crate) engines: Mutex<HashMap<String, EngineSlot>>,
    /// The runtime each cluster's engine was started on (see `cluster_runtime`).
    pub(crate) runtimes: Mutex<HashMap<String, Runtime>>,
    pub(crate) nudge: Notify,
    pub(crate) warm: crate::warm_pool::WarmPool,
    /// Bumped after every committed change, for services that follow clusters.
    changes: watch::Sender<u64>,
}

fn does_not_exist(cluster_id: &str) -> Error {
    Error::invalid(format!("Cluster {cluster_id} does not exist"))
}

pub(crate) fn event(cluster_id: &str, event_type: &str, details: Value) -> ClusterEventRecord {
    ClusterEventRecord {
        cluster_id: cluster_id.into(),
        timestamp: now_ms(),
        event_type: event_type.into(),
        details,
    }
}

pub(crate) fn reason(code: &str, reason_type: &str, params: &[(&str, &str)]) -> TerminationReason {
    TerminationReason {
        code: code.into(),
        reason_type: reason_type.into(),
        parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

pub(crate) fn reason_json(reason: &TerminationReason) -> Value {
    json!({"code": reason.code, "type": reason.reason_type, "parameters": reason.parameters})
}

pub(crate) fn state_of(record: &ClusterRecord) -> ClusterState {
    record.state
}

/// Moves `record` along `transition`; returns the new state.
pub(crate) fn transition(
    record: &mut ClusterRecord,
    transition: Transition,
    message: &str,
) -> Result<ClusterState> {
    let to = next_state(&record.cluster_id, state_of(record), transition)?;
    record.state = to;
    record.state_message = message.into();
    Ok(to)
}

impl Clusters {
    /// Loads clusters from the store and reconciles them with reality after a
    /// (possibly unclean) stop of the previous Kiln: leftover engines are killed,
    /// clusters that should run are set to start again.
    pub fn open(
        store: Arc<dyn Store>,
        runtime: Runtime,
        settings: ClusterSettings,
    ) -> Result<Arc<Self>> {
        let mut writes = Vec::new();
        let mut records = BTreeMap::new();
        for mut record in store.clusters()? {
            recover(&mut record, &mut writes);
            records.insert(record.cluster_id.clone(), record);
        }
        store.commit(writes)?;
        Ok(Arc::new(Self {
            store,
            runtime,
            settings,
            records: RwLock::new(records),
            writer: tokio::sync::Mutex::new(()),
            engines: Mutex::new(HashMap::new()),
            runtimes: Mutex::new(HashMap::new()),
            nudge: Notify::new(),
            warm: Default::default(),
            changes: watch::Sender::new(0),
        }))
    }

    /// Runs the reconciler until `cancel` fires, then stops every engine.
    pub async fn run_reconciler(self: Arc<Self>, cancel: CancellationToken) {
        crate::reconciler::run(self, cancel).await;
    }

    /// A receiver that sees a new value after every committed cluster change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// A counter that moves on every committed change (for response caches).
    pub fn version(&self) -> u64 {
        *self.changes.borrow()
    }

    pub fn get(&self, cluster_id: &str) -> Result<ClusterRecord> {
        self.read_records()?
            .get(cluster_id)
            .cloned()
            .ok_or_else(|| does_not_exist(cluster_id))
    }

    /// All clusters, newest first.
    pub fn list(&self) -> Result<Vec<ClusterRecord>> {
        let mut all: Vec<ClusterRecord> = self.read_records()?.values().cloned().collect();
        all.sort_by(|a, b| {
            b.start_time
                .cmp(&a.start_time)
                .then_with(|| a.cluster_id.cmp(&b.cluster_id))
        });
        Ok(all)
    }

    fn read_records(
        &self,
    ) -> Result<std::sync::RwLockReadGuard<'_, BTreeMap<String, ClusterRecord>>> {
        self.records
            .read()
            .map_err(|_| Error::internal("read clusters", "poisoned lock"))
    }

    pub async fn create(&self, actor: &str, config: ClusterConfig) -> Result<ClusterRecord> {
        validate_spark_version(&config.spark_version)?;
        let now = now_ms();
        let warm = self.claim_warm(&config);
        let record = ClusterRecord {
            cluster_id: warm
                .clone()
                .unwrap_or_else(|| kiln_core::ids::cluster_id(now)),
            config,
            creator: actor.into(),
            owner: actor.into(),
            state: ClusterState::Pending,
            state_message: "Starting Spark engine".into(),
            start_time: now,
            terminated_time: None,
            last_restarted_time: None,
            last_activity_time: now,
            termination_reason: None,
            pinned: false,
            spark_context_id: 0,
            generation: 1,
            engine_pid: None,
            engine_port: None,
        };
        let created = event(
            &record.cluster_id,
            "CREATING",
            json!({"user": actor, "current_num_workers": 0, "target_num_workers": record.config.num_workers}),
        );
        let _guard = self.writer.lock().await;
        let committed = self.store.commit(vec![
            Write::PutCluster(Box::new(record.clone())),
            Write::AppendClusterEvent(created),
        ]);
        if let Err(err) = committed {
            if let Some(id) = &warm {
                self.unclaim_warm(id);
            }
            return Err(err);
        }
        self.records
            .write()
            .map_err(|_| Error::internal("create cluster", "poisoned lock"))?
            .insert(record.cluster_id.clone(), record.clone());
        self.nudge.notify_one();
        self.changes.send_modify(|v| *v += 1);
        Ok(record)
    }

    pub async fn start(&self, actor: &str, cluster_id: &str) -> Result<ClusterRecord> {
        self.user_transition(cluster_id, |record, events| {
            transition(record, Transition::Start, "Starting Spark engine")?;
            record.termination_reason = None;
            record.last_activity_time = now_ms();
            events.push(event(cluster_id, "STARTING", json!({"user": actor})));
            Ok(())
        })
        .await
    }

    pub async fn restart(&self, actor: &str, cluster_id: &str) -> Result<ClusterRecord> {
        self.user_transition(cluster_id, |record, events| {
            transition(record, Transition::Restart, "Restarting Spark engine")?;
            record.last_activity_time = now_ms();
            events.push(event(cluster_id, "RESTARTING", json!({"user": actor})));
            Ok(())
        })
        .await
    }

    pub async fn resize(
        &self,
        actor: &str,
        cluster_id: &str,
        num_workers: u32,
        autoscale: Option<(u32, u32)>,
    ) -> Result<ClusterRecord> {
        self.user_transition(cluster_id, |record, events| {
            let current = record.config.num_workers;
            transition(record, Transition::Resize, "Resizing cluster")?;
            record.config.num_workers = autoscale.map(|(min, _)| min).unwrap_or(num_workers);
            record.config.autoscale = autoscale;
            events.push(event(cluster_id, "RESIZING", json!({
                "user": actor, "current_num_workers": current, "target_num_workers": record.config.num_workers,
            })));
            Ok(())
        })
        .await
    }

    pub async fn edit(
        &self,
        actor: &str,
        cluster_id: &str,
        config: ClusterConfig,
    ) -> Result<ClusterRecord> {
        validate_spark_version(&config.spark_version)?;
        self.user_transition(cluster_id, |record, events| {
            let restarts = transition(record, Transition::Edit, "Applying new configuration")? == ClusterState::Restarting;
            let previous = record.config.cluster_name.clone();
            record.config = config;
            events.push(event(cluster_id, "EDITED", json!({
                "user": actor,
                "previous_attributes": {"cluster_name": previous},
                "attributes": {"cluster_name": record.config.cluster_name, "spark_version": record.config.spark_version},
            })));
            if restarts {
                events.push(event(cluster_id, "RESTARTING", json!({"user": actor})));
            } else {
                record.state_message = "Cluster configuration updated".into();
            }
            Ok(())
        })
        .await
    }

    /// Terminates (Databricks' clusters/delete); the configuration is kept.
    pub async fn terminate(&self, actor: &str, cluster_id: &str) -> Result<ClusterRecord> {
        self.user_transition(cluster_id, |record, events| {
            let from = state_of(record);
            if matches!(from, ClusterState::Terminating | ClusterState::Terminated) {
                return Ok(());
            }
            transition(
                record,
                Transition::Terminate,
                "Terminating cluster on user request",
            )?;
            let why = reason("USER_REQUEST", "SUCCESS", &[("username", actor)]);
            events.push(event(
                cluster_id,
                "TERMINATING",
                json!({"user": actor, "reason": reason_json(&why)}),
            ));
            record.termination_reason = Some(why);
            Ok(())
        })
        .await
    }

    /// Removes the cluster and its history; its engine is stopped by the reconciler.
    pub async fn permanent_delete(&self, cluster_id: &str) -> Result<()> {
        let _guard = self.writer.lock().await;
        self.get(cluster_id)?;
        self.store
            .commit(vec![Write::DeleteCluster(cluster_id.into())])?;
        self.records
            .write()
            .map_err(|_| Error::internal("delete cluster", "poisoned lock"))?
            .remove(cluster_id);
        self.nudge.notify_one();
        self.changes.send_modify(|v| *v += 1);
        Ok(())
    }

    pub async fn set_pinned(
        &self,
        actor: &str,
        cluster_id: &str,
        pinned: bool,
    ) -> Result<ClusterRecord> {
        self.mutate(cluster_id, None, |record, events| {
            if record.pinned != pinned {
                record.pinned = pinned;
                events.push(event(
                    cluster_id,
                    if pinned { "PINNED" } else { "UNPINNED" },
                    json!({"user": actor}),
                ));
            }
            Ok(())
        })
        .await
    }

    pub async fn change_owner(&self, cluster_id: &str, owner: &str) -> Result<ClusterRecord> {
        self.mutate(cluster_id, None, |record, _| {
            record.owner = owner.into();
            Ok(())
        })
        .await
    }

    /// Records activity on a cluster (it resets the autotermination clock).
    pub fn touch(&self, cluster_id: &str) {
        if let Ok(mut records) = self.records.write() {
            if let Some(record) = records.get_mut(cluster_id) {
                record.last_activity_time = now_ms();
            }
        }
    }

    pub fn events(&self, query: &EventQuery) -> Result<(Vec<ClusterEventRecord>, u64)> {
        self.get(&query.cluster_id)?;
        self.store.cluster_events(query)
    }

    async fn user_transition<F>(&self, cluster_id: &str, f: F) -> Result<ClusterRecord>
    where
        F: FnOnce(&mut ClusterRecord, &mut Vec<ClusterEventRecord>) -> Result<()>,
    {
        self.mutate(cluster_id, None, |record, events| {
            record.generation += 1;
            f(record, events)
        })
        .await
    }

    /// Read-modify-write of one cluster: durable before the cache changes.
    /// With `expected_generation`, fails (changing nothing) if it moved on.
    pub(crate) async fn mutate<F>(
        &self,
        cluster_id: &str,
        expected_generation: Option<u64>,
        f: F,
    ) -> Result<ClusterRecord>
    where
        F: FnOnce(&mut ClusterRecord, &mut Vec<ClusterEventRecord>) -> Result<()>,
    {
        let _guard = self.writer.lock().await;
        let mut record = self.get(cluster_id)?;
        if expected_generation.is_some_and(|g| g != record.generation) {
            return Err(Error::invalid_state(format!(
                "Cluster {cluster_id} changed meanwhile"
            )));
        }
        let mut events = Vec::new();
        f(&mut record, &mut events)?;
        let mut writes = vec![Write::PutCluster(Box::new(record.clone()))];
        writes.extend(events.into_iter().map(Write::AppendClusterEvent));
        self.store.commit(writes)?;
        self.records
            .write()
            .map_err(|_| Error::internal("update cluster", "poisoned lock"))?
            .insert(cluster_id.into(), record.clone());
        self.nudge.notify_one();
        self.changes.send_modify(|v| *v += 1);
        Ok(record)
    }

    pub(crate) fn snapshot(&self) -> Vec<ClusterRecord> {
        self.read_records()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    pub fn engine_dir(&self, cluster_id: &str) -> PathBuf {
        self.settings.isolation.engines().join(cluster_id)
    }

    /// The Spark Connect URL Kiln's own processes (kernels, pipeline workers)
    /// use for a cluster's engine: the front when there is one (it names the
    /// engine port, so a restarted engine gets new workers), else the engine.
    pub fn spark_url(&self, cluster_id: &str, engine_port: u16) -> String {
        match self.settings.front_port {
            Some(front) => format!(
                "sc://127.0.0.1:{front}/;x-databricks-cluster-id={cluster_id};x-kiln-engine-port={engine_port}"
            ),
            None => format!("sc://127.0.0.1:{engine_port}"),
        }
    }

    /// Its settings (the idle minute's length, the loopback front's port).
    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    pub fn isolation(&self) -> &Arc<crate::isolation::Isolation> {
        &self.settings.isolation
    }

    /// Creates the cluster's directory, owned by the cluster's identity (0750:
    /// its kernels, in its group, read its environment; nobody else does).
    pub fn prepare_engine_dir(&self, cluster_id: &str) -> Result<PathBuf> {
        let dir = self.engine_dir(cluster_id);
        let iso = &self.settings.isolation;
        iso.own_dir(&dir, iso.cluster_identity(cluster_id).as_ref(), 0o750)?;
        Ok(dir)
    }

    /// Where a cluster's kernels write their stderr (private to Kiln).
    pub fn kernel_log(&self, cluster_id: &str) -> PathBuf {
        let dir = self.settings.data_dir.join("logs");
        if !dir.exists() {
            let _ = std::fs::create_dir_all(&dir);
            let _ =
                std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        }
        dir.join(format!("kernels-{cluster_id}.log"))
    }
}

/// Startup recovery of one cluster record (see [`Clusters::open`]).
fn recover(record: &mut ClusterRecord, writes: &mut Vec<Write>) {
    if let Some(pid) = record.engine_pid.take() {
        if engine::kill_orphan(pid, &record.cluster_id) {
            tracing::warn!(cluster_id = %record.cluster_id, pid, "killed an engine left by a previous Kiln");
        }
    }
    record.engine_port = None;
    let state = state_of(record);
    // Every recovery goes through the lifecycle (it accepts every state).
    let next = next_state(&record.cluster_id, state, Transition::Recover).unwrap_or(state);
    if state.wants_engine() {
        record.state = next;
        record.state_message = "Starting a new Spark engine after Kiln restarted".into();
        record.generation += 1;
        record.last_activity_time = now_ms();
        writes.push(Write::AppendClusterEvent(event(
            &record.cluster_id,
            "STARTING",
            json!({"user": "kiln"}),
        )));
    } else if state == ClusterState::Terminating {
        record.state = next;
        record.terminated_time = Some(now_ms());
        if record.termination_reason.is_none() {
            record.termination_reason = Some(reason("USER_REQUEST", "SUCCESS", &[]));
        }
    }
    writes.push(Write::PutCluster(Box::new(record.clone())));
}

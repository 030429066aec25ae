//! The pipelines service: durable pipeline and update records, the event log,
//! and the owned tasks that run updates.
//!
//! Invariants: a mutation is committed before the call that caused it answers;
//! at most one active update per pipeline; every update task is tracked and
//! cancelled on shutdown; an update found active when Kiln starts is marked
//! FAILED (its streaming checkpoints resolve a half-written batch from the
//! table's Delta log at the next run).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use kiln_compute::clusters::Clusters;
use kiln_core::{time::now_ms, Error, ErrorCode, Result};
use kiln_store::{Store, Write};
use kiln_workspace::workspace::Workspace;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::events::Event;
use crate::journal::{put_pipeline, Journal};
use crate::lifecycle::UpdateState;
use crate::model::*;
use crate::spec::PipelineSpec;
use crate::worker::Worker;

pub struct Pipelines {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) workspace: Arc<Workspace>,
    pub(crate) clusters: Arc<Clusters>,
    /// The worker's `PYTHONPATH`: the kernel's package and its own.
    pub(crate) sources: Vec<PathBuf>,
    pub(crate) dbfs_root: PathBuf,
    pub(crate) logs: PathBuf,
    pub(crate) records: RwLock<BTreeMap<String, PipelineRecord>>,
    pub(crate) updates: RwLock<BTreeMap<String, Vec<UpdateRecord>>>,
    /// The event log and flow checkpoints.
    pub(crate) journal: Arc<Journal>,
    active: Mutex<HashMap<String, (String, CancellationToken)>>,
    /// Moves on every update change and every update task's end (to wait on).
    pub(crate) changes: tokio::sync::watch::Sender<u64>,
    /// Workers kept between updates of development pipelines, with their engine URL.
    workers: Mutex<HashMap<String, (String, Arc<Worker>)>>,
    writer: tokio::sync::Mutex<()>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// What start_update asks for.
#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    pub cause: String,
    pub full_refresh: bool,
    pub full_refresh_selection: Vec<String>,
    pub refresh_selection: Vec<String>,
    pub validate_only: bool,
}

pub(crate) fn poisoned<T>(_: T) -> Error {
    Error::internal("pipelines", "lock poisoned")
}

impl Pipelines {
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        store: Arc<dyn Store>,
        workspace: Arc<Workspace>,
        clusters: Arc<Clusters>,
        kernel_sources: PathBuf,
        cache: &std::path::Path,
        data_dir: PathBuf,
    ) -> Result<Arc<Self>> {
        let sources = vec![kernel_sources, crate::worker::install_sources(cache)?];
        let logs = data_dir.join("pipelines");
        std::fs::create_dir_all(&logs)
            .map_err(|e| Error::internal("create the pipelines dir", e))?;
        std::fs::set_permissions(&logs, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| Error::internal("create the pipelines dir", e))?;
        let mut records = BTreeMap::new();
        for v in store.objects(KIND_PIPELINE)? {
            let r: PipelineRecord =
                serde_json::from_value(v).map_err(|e| Error::internal("read a pipeline", e))?;
            records.insert(r.pipeline_id.clone(), r);
        }
        let mut updates: BTreeMap<String, Vec<UpdateRecord>> = BTreeMap::new();
        for v in store.objects(KIND_UPDATE)? {
            let u: UpdateRecord =
                serde_json::from_value(v).map_err(|e| Error::internal("read an update", e))?;
            updates.entry(u.pipeline_id.clone()).or_default().push(u);
        }
        let dbfs_root = clusters.isolation().dbfs();
        let journal = Arc::new(Journal::new(store.clone()));
        let service = Arc::new(Pipelines {
            store,
            workspace,
            clusters,
            sources,
            dbfs_root,
            logs,
            records: RwLock::new(records),
            updates: RwLock::new(updates),
            journal,
            active: Mutex::default(),
            changes: tokio::sync::watch::Sender::new(0),
            workers: Mutex::default(),
            writer: tokio::sync::Mutex::new(()),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        });
        service.recover()?;
        Ok(service)
    }

    /// Updates that were live when Kiln stopped end FAILED, each with an event.
    fn recover(&self) -> Result<()> {
        let live: Vec<UpdateRecord> = self
            .updates
            .read()
            .map_err(poisoned)?
            .values()
            .flatten()
            .filter(|u| !u.state.is_terminal())
            .cloned()
            .collect();
        for mut u in live {
            let Some(p) = self.get(&u.pipeline_id).ok() else {
                continue;
            };
            u.state = crate::lifecycle::next_state(u.state, UpdateState::Failed)?;
            let mut sink = self.sink(&p, &u.update_id);
            sink.error(
                "update_progress",
                "Update FAILED: Kiln restarted while it was running; start a new update to continue.",
                json!({"state": UpdateState::Failed.as_str()}),
                "KilnRestarted",
                "Kiln restarted while the update was running",
            );
            self.commit_update(&u, sink.take())?;
        }
        Ok(())
    }

    /// Starts the service's background work: clusters of pipelines that are
    /// not running an update (and not in development mode) are terminated, so
    /// an update interrupted by a crash does not keep its engine.
    pub fn start(self: &Arc<Self>) {
        let me = self.clone();
        self.tasks.spawn(async move {
            for p in me.list().unwrap_or_default() {
                let development = p.spec.development();
                if let (Some(cluster), false, false) =
                    (&p.cluster_id, development, me.is_active(&p.pipeline_id))
                {
                    if me
                        .clusters
                        .get(cluster)
                        .is_ok_and(|c| c.state != kiln_compute::lifecycle::ClusterState::Terminated)
                    {
                        let _ = me.clusters.terminate(&p.run_as, cluster).await;
                    }
                }
            }
        });
    }

    pub fn get(&self, pipeline_id: &str) -> Result<PipelineRecord> {
        self.records
            .read()
            .map_err(poisoned)?
            .get(pipeline_id)
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::ResourceDoesNotExist,
                    format!("Pipeline {pipeline_id} does not exist."),
                )
            })
    }

    pub fn list(&self) -> Result<Vec<PipelineRecord>> {
        Ok(self
            .records
            .read()
            .map_err(poisoned)?
            .values()
            .cloned()
            .collect())
    }

    /// Updates of a pipeline, newest first.
    pub fn updates(&self, pipeline_id: &str) -> Vec<UpdateRecord> {
        let mut v = self
            .updates
            .read()
            .ok()
            .and_then(|u| u.get(pipeline_id).cloned())
            .unwrap_or_default();
        v.sort_by(|a, b| {
            b.creation_time
                .cmp(&a.creation_time)
                .then(b.update_id.cmp(&a.update_id))
        });
        v
    }

    pub fn update(&self, pipeline_id: &str, update_id: &str) -> Result<UpdateRecord> {
        self.updates(pipeline_id)
            .into_iter()
            .find(|u| u.update_id == update_id)
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::ResourceDoesNotExist,
                    format!("Update {update_id} of pipeline {pipeline_id} does not exist."),
                )
            })
    }

    pub fn events(&self, pipeline_id: &str) -> Result<Vec<Event>> {
        self.store
            .pipeline_events(pipeline_id)?
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(|e| Error::internal("read an event", e)))
            .collect()
    }

    fn check_name(&self, spec: &PipelineSpec, except: Option<&str>) -> Result<()> {
        let name = spec.name();
        if spec.allow_duplicate_names.unwrap_or(false) || name.is_empty() {
            return Ok(());
        }
        let taken = self
            .records
            .read()
            .map_err(poisoned)?
            .values()
            .any(|r| r.name() == name && Some(r.pipeline_id.as_str()) != except);
        if taken {
            return Err(Error::new(
                ErrorCode::ResourceConflict,
                format!("Pipeline with name '{name}' already exists. Set allow_duplicate_names to create another."),
            ));
        }
        Ok(())
    }

    /// Validates a spec's libraries: each notebook or file must exist.
    pub fn check_libraries(&self, spec: &PipelineSpec) -> Result<()> {
        let libs = spec.libraries();
        if libs.is_empty() {
            return Err(Error::invalid(
                "Invalid value for field libraries: a pipeline needs at least one notebook or file",
            ));
        }
        for lib in libs {
            let path = crate::libraries::library_path(lib)?;
            crate::libraries::read(&self.workspace, &path)?;
        }
        Ok(())
    }

    pub async fn create(
        &self,
        actor: &str,
        mut spec: PipelineSpec,
        dry_run: bool,
    ) -> Result<PipelineRecord> {
        let _guard = self.writer.lock().await;
        self.check_name(&spec, None)?;
        self.check_libraries(&spec)?;
        let id = kiln_core::ids::uuid4();
        spec.id = Some(id.clone());
        spec.allow_duplicate_names = None;
        spec.other.remove("dry_run");
        if spec.storage.is_none() {
            spec.storage = Some(format!("dbfs:/pipelines/{id}"));
        }
        let now = now_ms();
        let record = PipelineRecord {
            pipeline_id: id.clone(),
            spec,
            creator: actor.into(),
            run_as: actor.into(),
            created_at: now,
            last_modified: now,
            cluster_id: None,
            unhealthy: false,
        };
        if dry_run {
            return Ok(record);
        }
        let mut sink = self.sink(&record, "");
        sink.emit(
            "INFO",
            "user_action",
            &format!("User {actor} created pipeline '{}'.", record.name()),
            json!({"action": "CREATE", "user_name": actor}),
        );
        let mut writes = vec![put_pipeline(&record)?];
        writes.extend(
            self.journal
                .event_writes(&record.pipeline_id, sink.take())?,
        );
        self.store.commit(writes)?;
        self.records
            .write()
            .map_err(poisoned)?
            .insert(id, record.clone());
        Ok(record)
    }

    pub async fn edit(
        &self,
        actor: &str,
        pipeline_id: &str,
        mut spec: PipelineSpec,
        expected_last_modified: Option<i64>,
    ) -> Result<()> {
        let _guard = self.writer.lock().await;
        let mut record = self.get(pipeline_id)?;
        if let Some(expected) = expected_last_modified {
            if expected != record.last_modified {
                return Err(Error::new(ErrorCode::ResourceConflict, format!(
                    "Pipeline {pipeline_id} was modified at {} (expected_last_modified {expected})", record.last_modified
                )));
            }
        }
        if let Some(id) = &spec.id {
            if id != pipeline_id {
                return Err(Error::invalid(
                    "Invalid value for field id: it must be the pipeline's id",
                ));
            }
        }
        self.check_name(&spec, Some(pipeline_id))?;
        self.check_libraries(&spec)?;
        spec.id = Some(pipeline_id.to_string());
        spec.allow_duplicate_names = None;
        spec.other.remove("expected_last_modified");
        match (&spec.storage, &record.spec.storage) {
            (Some(new), Some(old)) if new != old => {
                return Err(Error::invalid(
                    "Invalid value for field storage: it cannot be changed after creation",
                ))
            }
            (None, Some(old)) => spec.storage = Some(old.clone()),
            _ => {}
        }
        record.spec = spec;
        record.last_modified = now_ms().max(record.last_modified + 1);
        let mut sink = self.sink(&record, "");
        sink.emit(
            "INFO",
            "user_action",
            &format!("User {actor} edited pipeline '{}'.", record.name()),
            json!({"action": "EDIT", "user_name": actor}),
        );
        let mut writes = vec![put_pipeline(&record)?];
        writes.extend(
            self.journal
                .event_writes(&record.pipeline_id, sink.take())?,
        );
        self.store.commit(writes)?;
        self.records
            .write()
            .map_err(poisoned)?
            .insert(pipeline_id.into(), record);
        Ok(())
    }

    pub async fn delete(&self, pipeline_id: &str) -> Result<()> {
        let record = self.get(pipeline_id)?;
        self.stop_and_wait(pipeline_id).await;
        self.drop_worker(pipeline_id).await;
        let _guard = self.writer.lock().await;
        let mut writes = vec![
            Write::DeleteObject {
                kind: KIND_PIPELINE,
                key: pipeline_id.into(),
            },
            Write::DeletePipelineEvents(pipeline_id.into()),
        ];
        for u in self.updates(pipeline_id) {
            writes.push(Write::DeleteObject {
                kind: KIND_UPDATE,
                key: update_key(pipeline_id, &u.update_id),
            });
        }
        for v in self.store.objects(KIND_FLOW)? {
            if v["pipeline_id"] == json!(pipeline_id) {
                if let Some(flow) = v["flow"].as_str() {
                    writes.push(Write::DeleteObject {
                        kind: KIND_FLOW,
                        key: flow_key(pipeline_id, flow),
                    });
                }
            }
        }
        self.store.commit(writes)?;
        self.records.write().map_err(poisoned)?.remove(pipeline_id);
        self.updates.write().map_err(poisoned)?.remove(pipeline_id);
        if let Some(cluster) = record.cluster_id {
            let _ = self.clusters.terminate(&record.run_as, &cluster).await;
        }
        Ok(())
    }

    /// Starts an update (committed as CREATED before this returns) and its task.
    pub async fn start_update(
        self: &Arc<Self>,
        actor: &str,
        pipeline_id: &str,
        req: StartRequest,
    ) -> Result<UpdateRecord> {
        let _guard = self.writer.lock().await;
        let pipeline = self.get(pipeline_id)?;
        if req.full_refresh
            && !(req.full_refresh_selection.is_empty() && req.refresh_selection.is_empty())
        {
            return Err(Error::invalid(
                "full_refresh cannot be combined with refresh_selection or full_refresh_selection",
            ));
        }
        let mut active = self.active.lock().map_err(poisoned)?;
        if let Some((update, _)) = active.get(pipeline_id) {
            return Err(Error::new(
                ErrorCode::ResourceConflict,
                format!("Pipeline {pipeline_id} has an active update {update}. Stop it before starting another."),
            ));
        }
        let update = UpdateRecord {
            pipeline_id: pipeline_id.into(),
            update_id: kiln_core::ids::uuid4(),
            state: UpdateState::Created,
            cause: if req.cause.is_empty() {
                "API_CALL".into()
            } else {
                req.cause.clone()
            },
            creation_time: now_ms(),
            full_refresh: req.full_refresh,
            full_refresh_selection: req.full_refresh_selection.clone(),
            refresh_selection: req.refresh_selection.clone(),
            validate_only: req.validate_only,
            cluster_id: pipeline.cluster_id.clone(),
            config: pipeline.spec.clone(),
            requested_by: actor.into(),
        };
        let mut sink = self.sink(&pipeline, &update.update_id);
        sink.emit(
            "INFO",
            "user_action",
            &format!("User {actor} started an update."),
            json!({"action": "START", "user_name": actor}),
        );
        sink.emit(
            "INFO",
            "create_update",
            &format!("Update {} started by {}.", &update.update_id[..6], update.cause),
            json!({
                "cause": update.cause, "full_refresh": update.full_refresh,
                "full_refresh_selection": update.full_refresh_selection,
                "refresh_selection": update.refresh_selection, "validate_only": update.validate_only,
                "run_as": pipeline.run_as, "runtime_version": {"dbr_version": "16.4"},
                "config": pipeline.spec.to_json(),
            }),
        );
        sink.emit(
            "INFO",
            "update_progress",
            &format!("Update {} is CREATED.", &update.update_id[..6]),
            json!({"state": UpdateState::Created.as_str()}),
        );
        self.commit_update(&update, sink.take())?;
        let cancel = self.shutdown.child_token();
        active.insert(
            pipeline_id.into(),
            (update.update_id.clone(), cancel.clone()),
        );
        drop(active);
        let me = self.clone();
        let u = update.clone();
        self.tasks.spawn(async move {
            crate::runner::run(me.clone(), u.clone(), cancel).await;
            me.release(&u.pipeline_id, &u.update_id);
        });
        Ok(update)
    }

    /// The worker a development pipeline kept, when it talks to `spark_url`.
    pub(crate) fn take_worker(&self, pipeline_id: &str, spark_url: &str) -> Option<Arc<Worker>> {
        let (url, worker) = self.workers.lock().ok()?.remove(pipeline_id)?;
        (url == spark_url).then_some(worker)
    }

    pub(crate) fn keep_worker(&self, pipeline_id: &str, spark_url: String, worker: Arc<Worker>) {
        if let Ok(mut w) = self.workers.lock() {
            w.insert(pipeline_id.into(), (spark_url, worker));
        }
    }

    async fn drop_worker(&self, pipeline_id: &str) {
        let kept = self
            .workers
            .lock()
            .ok()
            .and_then(|mut w| w.remove(pipeline_id));
        if let Some((_, worker)) = kept {
            worker.kill().await;
        }
    }

    /// Forgets the pipeline's active update (when it is this one).
    pub(crate) fn release(&self, pipeline_id: &str, update_id: &str) {
        if let Ok(mut a) = self.active.lock() {
            if a.get(pipeline_id).is_some_and(|(id, _)| id == update_id) {
                a.remove(pipeline_id);
                self.changes.send_modify(|v| *v += 1);
            }
        }
    }

    /// Asks the active update to stop (a no-op when idle).
    pub fn stop(&self, pipeline_id: &str) -> Result<()> {
        self.get(pipeline_id)?;
        if let Some((_, token)) = self.active.lock().map_err(poisoned)?.get(pipeline_id) {
            token.cancel();
        }
        Ok(())
    }

    /// Stops the active update and waits (at most 30 s) until it has ended,
    /// watching the updates' changes.
    async fn stop_and_wait(&self, pipeline_id: &str) {
        let mut changes = self.changes.subscribe();
        let _ = self.stop(pipeline_id);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let ended = self
                .updates(pipeline_id)
                .first()
                .is_none_or(|u| u.state.is_terminal());
            if ended && !self.is_active(pipeline_id) {
                return;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    }

    /// A counter that moves on every update change (to wait on an update).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn is_active(&self, pipeline_id: &str) -> bool {
        self.active
            .lock()
            .map(|a| a.contains_key(pipeline_id))
            .unwrap_or(false)
    }

    /// Cancels every update and waits for their tasks (bounded by the tasks' own deadlines).
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let kept: Vec<Arc<Worker>> = self
            .workers
            .lock()
            .map(|mut w| w.drain().map(|(_, (_, worker))| worker).collect())
            .unwrap_or_default();
        for worker in kept {
            worker.kill().await;
        }
        self.tasks.close();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(20), self.tasks.wait()).await;
    }
}

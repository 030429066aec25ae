//! The Jobs service: jobs (settings, run_as), runs and their task runs, each
//! change durable before it is visible; every run is driven by a task the
//! service owns (`runner`), cancelled on shutdown; a run that was live when
//! Kiln stopped ends INTERNAL_ERROR at the next start and its job clusters
//! are terminated.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use kiln_catalog::Catalog;
use kiln_compute::clusters::Clusters;
use kiln_compute::contexts::Contexts;
use kiln_core::lifecycle::Lifecycle;
use kiln_core::time::now_ms;
use kiln_core::{Error, ErrorCode, Result};
use kiln_identity::Identity;
use kiln_pipelines::Pipelines;
use kiln_store::{Store, Write};
use kiln_workspace::workspace::Workspace;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::destinations::Destinations;
use crate::lifecycle::{RunEvent, RunLifecycle};
use crate::model::*;
use crate::settings;
use crate::trigger_settings;

/// The services a job's tasks and triggers reach.
pub struct Services {
    pub clusters: Arc<Clusters>,
    pub contexts: Arc<Contexts>,
    pub libraries: Arc<kiln_compute::libraries::Libraries>,
    pub pipelines: Arc<Pipelines>,
    pub workspace: Arc<Workspace>,
    pub identity: Arc<Identity>,
    pub catalog: Arc<Catalog>,
    /// DBFS and volumes on an object store (`[storage] root`), if so.
    pub storage: Option<Arc<kiln_storage::ObjectRoot>>,
    pub destinations: Arc<Destinations>,
    pub statements: Arc<kiln_sql::Statements>,
    /// Where dbt tasks reach Kiln's SQL protocol.
    pub sql_endpoint: crate::SqlEndpoint,
}

pub struct Jobs {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clusters: Arc<Clusters>,
    pub(crate) contexts: Arc<Contexts>,
    pub(crate) libraries: Arc<kiln_compute::libraries::Libraries>,
    pub(crate) pipelines: Arc<Pipelines>,
    pub(crate) workspace: Arc<Workspace>,
    pub(crate) identity: Arc<Identity>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) storage: Option<Arc<kiln_storage::ObjectRoot>>,
    pub destinations: Arc<Destinations>,
    pub(crate) statements: Arc<kiln_sql::Statements>,
    pub(crate) sql_endpoint: crate::SqlEndpoint,
    jobs: RwLock<BTreeMap<i64, JobRecord>>,
    pub(crate) runs: RwLock<BTreeMap<i64, RunRecord>>,
    next_id: AtomicI64,
    /// Live runs and how to cancel them.
    pub(crate) active: Mutex<HashMap<i64, CancellationToken>>,
    /// Moves on every run change (to wait on runs).
    changes: watch::Sender<u64>,
    /// Moves on every job change (the scheduler waits on it).
    job_changes: watch::Sender<u64>,
    writer: tokio::sync::Mutex<()>,
    /// Serialises read-modify-write of runs (tasks of one run change it concurrently).
    run_lock: Mutex<()>,
    /// Idle execution contexts of runs' code tasks: (run, cluster) → (context, credential).
    pub(crate) idle_contexts: Mutex<Pool>,
    /// Serialises the creation of runs' job clusters.
    pub(crate) cluster_lock: tokio::sync::Mutex<()>,
    pub(crate) tasks: TaskTracker,
    pub(crate) shutdown: CancellationToken,
}

/// Idle contexts by (run, cluster).
pub(crate) type Pool = HashMap<(i64, String), Vec<Held>>;

/// A context the run holds: its id and the credential it acts with.
pub(crate) struct Held {
    pub context_id: String,
    pub credential: String,
}

pub(crate) fn poisoned<T>(_: T) -> Error {
    Error::internal("jobs", "lock poisoned")
}

pub(crate) fn job_not_found(job_id: i64) -> Error {
    Error::new(
        ErrorCode::ResourceDoesNotExist,
        format!("Job {job_id} does not exist."),
    )
}

pub(crate) fn run_not_found(run_id: i64) -> Error {
    Error::new(
        ErrorCode::ResourceDoesNotExist,
        format!("Run {run_id} does not exist."),
    )
}

impl Jobs {
    pub fn open(store: Arc<dyn Store>, services: Services) -> Result<Arc<Self>> {
        let Services {
            clusters,
            contexts,
            libraries,
            pipelines,
            workspace,
            identity,
            catalog,
            storage,
            destinations,
            statements,
            sql_endpoint,
        } = services;
        let mut jobs = BTreeMap::new();
        for v in store.objects(KIND_JOB)? {
            let j: JobRecord =
                serde_json::from_value(v).map_err(|e| Error::internal("read a job", e))?;
            jobs.insert(j.job_id, j);
        }
        let mut runs = BTreeMap::new();
        for v in store.objects(KIND_RUN)? {
            let r: RunRecord =
                serde_json::from_value(v).map_err(|e| Error::internal("read a job run", e))?;
            runs.insert(r.run_id, r);
        }
        let top = jobs
            .keys()
            .chain(runs.keys())
            .chain(
                runs.values()
                    .flat_map(|r| r.tasks.iter().map(|t| &t.run_id)),
            )
            .copied()
            .max()
            .unwrap_or(0);
        let service = Arc::new(Self {
            store,
            clusters,
            contexts,
            libraries,
            pipelines,
            workspace,
            identity,
            catalog,
            storage,
            destinations,
            statements,
            sql_endpoint,
            jobs: RwLock::new(jobs),
            runs: RwLock::new(runs),
            next_id: AtomicI64::new(top.max(1000) + 1),
            active: Mutex::default(),
            changes: watch::Sender::new(0),
            job_changes: watch::Sender::new(0),
            writer: tokio::sync::Mutex::new(()),
            run_lock: Mutex::new(()),
            idle_contexts: Mutex::default(),
            cluster_lock: tokio::sync::Mutex::new(()),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        });
        service.recover()?;
        Ok(service)
    }

    pub(crate) fn new_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs that were live when Kiln stopped end INTERNAL_ERROR (their job
    /// clusters are terminated by `start`).
    fn recover(&self) -> Result<()> {
        let live: Vec<RunRecord> = self
            .runs
            .read()
            .map_err(poisoned)?
            .values()
            .filter(|r| !r.is_done())
            .cloned()
            .collect();
        for mut run in live {
            let now = now_ms();
            for t in run
                .tasks
                .iter_mut()
                .filter(|t| !t.state.life_cycle_state.is_terminal())
            {
                t.state.life_cycle_state = RunLifecycle::transition(
                    "A task run",
                    t.state.life_cycle_state,
                    RunEvent::Crash,
                )?;
                t.state.state_message = "Kiln restarted while the task was running".into();
                if t.end_time == 0 && t.start_time > 0 {
                    t.end_time = now;
                }
            }
            run.state.life_cycle_state =
                RunLifecycle::transition("A run", run.state.life_cycle_state, RunEvent::Crash)?;
            run.state.state_message =
                "Kiln restarted while the run was in progress; start a new run.".into();
            if run.end_time == 0 {
                run.end_time = now;
            }
            self.save_run(&run)?;
        }
        Ok(())
    }

    /// Cancels every run and waits for their tasks (bounded).
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        if let Ok(active) = self.active.lock() {
            for token in active.values() {
                token.cancel();
            }
        }
        self.tasks.close();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), self.tasks.wait()).await;
    }

    // ---- jobs ---------------------------------------------------------------

    pub fn get(&self, job_id: i64) -> Result<JobRecord> {
        self.jobs
            .read()
            .map_err(poisoned)?
            .get(&job_id)
            .cloned()
            .ok_or_else(|| job_not_found(job_id))
    }

    pub fn list(&self) -> Vec<JobRecord> {
        self.jobs
            .read()
            .map(|j| j.values().rev().cloned().collect())
            .unwrap_or_default()
    }

    fn run_as_of(settings: &Map<String, Value>, actor: &str) -> String {
        settings
            .get("run_as")
            .and_then(|r| {
                r.get("user_name")
                    .or_else(|| r.get("service_principal_name"))
                    .and_then(Value::as_str)
            })
            .unwrap_or(actor)
            .to_string()
    }

    fn put_job(job: &JobRecord) -> Result<Write> {
        Ok(Write::PutObject {
            kind: KIND_JOB,
            key: job.job_id.to_string(),
            record: serde_json::to_value(job).map_err(|e| Error::internal("encode a job", e))?,
        })
    }

    pub(crate) fn commit_job(&self, job: JobRecord) -> Result<JobRecord> {
        self.store.commit(vec![Self::put_job(&job)?])?;
        self.jobs
            .write()
            .map_err(poisoned)?
            .insert(job.job_id, job.clone());
        self.job_changes.send_modify(|v| *v += 1);
        Ok(job)
    }

    pub async fn create(&self, actor: &str, settings: Value) -> Result<JobRecord> {
        let _guard = self.writer.lock().await;
        let settings = settings::normalize(settings, self)?;
        let run_as = Self::run_as_of(&settings, actor);
        self.identity.acting_as(&run_as)?;
        let now = now_ms();
        let trigger_marks =
            trigger_settings::baseline(&self.catalog, &settings, &Default::default(), now);
        self.commit_job(JobRecord {
            job_id: self.new_id(),
            creator_user_name: actor.into(),
            run_as,
            created_time: now_ms(),
            settings,
            schedule_since_ms: now,
            schedule_fired_ms: 0,
            trigger_marks,
        })
    }

    /// `jobs/reset`: all settings replaced (`run_as` kept when omitted).
    pub async fn reset(&self, job_id: i64, settings: Value) -> Result<JobRecord> {
        let _guard = self.writer.lock().await;
        let mut job = self.get(job_id)?;
        let settings = settings::normalize(settings, self)?;
        if settings.get("run_as").is_some() {
            job.run_as = Self::run_as_of(&settings, &job.run_as);
            self.identity.acting_as(&job.run_as)?;
        }
        job.settings = settings;
        job.schedule_since_ms = now_ms();
        job.trigger_marks =
            trigger_settings::baseline(&self.catalog, &job.settings, &job.trigger_marks, now_ms());
        self.commit_job(job)
    }

    /// `jobs/update`: top-level fields replaced (tasks and job clusters by
    /// key), `fields_to_remove` removed.
    pub async fn update(
        &self,
        job_id: i64,
        new_settings: Map<String, Value>,
        fields_to_remove: &[String],
    ) -> Result<JobRecord> {
        let _guard = self.writer.lock().await;
        let mut job = self.get(job_id)?;
        let mut merged = job.settings.clone();
        for (field, value) in new_settings {
            match (field.as_str(), &value) {
                ("tasks" | "job_clusters", Value::Array(items)) => {
                    let key = if field == "tasks" {
                        "task_key"
                    } else {
                        "job_cluster_key"
                    };
                    let mut list = merged
                        .get(&field)
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    for item in items {
                        match list.iter_mut().find(|x| x[key] == item[key]) {
                            Some(slot) => *slot = item.clone(),
                            None => list.push(item.clone()),
                        }
                    }
                    merged.insert(field, Value::Array(list));
                }
                _ => {
                    merged.insert(field, value);
                }
            }
        }
        for f in fields_to_remove {
            match f.split_once('/') {
                Some(("tasks", key)) => remove_keyed(&mut merged, "tasks", "task_key", key),
                Some(("job_clusters", key)) => {
                    remove_keyed(&mut merged, "job_clusters", "job_cluster_key", key)
                }
                _ => {
                    merged.remove(f);
                }
            }
        }
        let settings = settings::normalize(Value::Object(merged), self)?;
        job.run_as = Self::run_as_of(&settings, &job.run_as);
        self.identity.acting_as(&job.run_as)?;
        job.settings = settings;
        job.schedule_since_ms = now_ms();
        job.trigger_marks =
            trigger_settings::baseline(&self.catalog, &job.settings, &job.trigger_marks, now_ms());
        self.commit_job(job)
    }

    /// Records the scheduled instants runs are about to start for (one
    /// durable commit for all, before any of those runs starts, so an instant
    /// fires at most once).
    pub(crate) fn mark_fired(&self, fired: &[(i64, i64)]) -> Result<()> {
        let mut updated = Vec::new();
        for (job_id, instant_ms) in fired {
            let mut job = self.get(*job_id)?;
            job.schedule_fired_ms = *instant_ms;
            updated.push(job);
        }
        let writes = updated
            .iter()
            .map(Self::put_job)
            .collect::<Result<Vec<_>>>()?;
        self.store.commit(writes)?;
        let mut jobs = self.jobs.write().map_err(poisoned)?;
        for job in updated {
            jobs.insert(job.job_id, job);
        }
        drop(jobs);
        self.job_changes.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Records a data trigger's firing (what it saw, and when) unless the
    /// job changed since it was looked at; `false` when it did.
    pub(crate) async fn mark_triggered(
        &self,
        seen: &JobRecord,
        marks: std::collections::BTreeMap<String, i64>,
    ) -> Result<bool> {
        let _guard = self.writer.lock().await;
        let mut job = self.get(seen.job_id)?;
        if job.settings != seen.settings || job.trigger_marks != seen.trigger_marks {
            return Ok(false);
        }
        job.trigger_marks = marks;
        job.schedule_fired_ms = now_ms();
        self.commit_job(job)?;
        Ok(true)
    }

    /// Deletes a job and its runs (live runs are cancelled).
    pub async fn delete(&self, job_id: i64) -> Result<()> {
        let _guard = self.writer.lock().await;
        self.get(job_id)?;
        self.cancel_all(job_id)?;
        let runs: Vec<i64> = self
            .runs()
            .into_iter()
            .filter(|r| r.job_id == Some(job_id) && r.is_done())
            .map(|r| r.run_id)
            .collect();
        let mut writes = vec![Write::DeleteObject {
            kind: KIND_JOB,
            key: job_id.to_string(),
        }];
        writes.extend(runs.iter().map(|id| Write::DeleteObject {
            kind: KIND_RUN,
            key: id.to_string(),
        }));
        self.store.commit(writes)?;
        self.jobs.write().map_err(poisoned)?.remove(&job_id);
        self.job_changes.send_modify(|v| *v += 1);
        let mut all = self.runs.write().map_err(poisoned)?;
        for id in runs {
            all.remove(&id);
        }
        Ok(())
    }

    // ---- runs ---------------------------------------------------------------

    pub fn run(&self, run_id: i64) -> Result<RunRecord> {
        self.runs
            .read()
            .map_err(poisoned)?
            .get(&run_id)
            .cloned()
            .ok_or_else(|| run_not_found(run_id))
    }

    /// How many runs match `f` (without copying them).
    pub(crate) fn count_runs(&self, f: impl Fn(&RunRecord) -> bool) -> usize {
        self.runs
            .read()
            .map(|r| r.values().filter(|x| f(x)).count())
            .unwrap_or(0)
    }

    /// The newest run matching `f`, or with `oldest`, the oldest.
    pub(crate) fn find_run(
        &self,
        oldest: bool,
        f: impl Fn(&RunRecord) -> bool,
    ) -> Option<RunRecord> {
        let runs = self.runs.read().ok()?;
        if oldest {
            runs.values().find(|x| f(x)).cloned()
        } else {
            runs.values().rev().find(|x| f(x)).cloned()
        }
    }

    /// Runs matching `f`, newest first: `take` of them after the first
    /// `skip`, and whether more follow (only the page is copied).
    pub fn runs_page(
        &self,
        f: impl Fn(&RunRecord) -> bool,
        skip: usize,
        take: usize,
    ) -> (Vec<RunRecord>, bool) {
        let Ok(runs) = self.runs.read() else {
            return (Vec::new(), false);
        };
        let mut matching = runs.values().rev().filter(|x| f(x)).skip(skip);
        let page: Vec<RunRecord> = matching.by_ref().take(take).cloned().collect();
        let more = matching.next().is_some();
        (page, more)
    }

    /// Every run, newest first.
    pub fn runs(&self) -> Vec<RunRecord> {
        self.runs
            .read()
            .map(|r| r.values().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// The run a task run belongs to, and the task run (a task run id, or
    /// the run id of a one-task run).
    pub fn task_run(&self, run_id: i64) -> Result<(RunRecord, TaskRun)> {
        let runs = self.runs.read().map_err(poisoned)?;
        if let Some(run) = runs.get(&run_id) {
            return match run.tasks.as_slice() {
                [one] => Ok((run.clone(), one.clone())),
                _ => Err(Error::invalid(format!(
                    "Retrieving the output of run {run_id} is not supported: it has several tasks; use a task run's run_id"
                ))),
            };
        }
        runs.values()
            .find_map(|r| {
                r.tasks
                    .iter()
                    .flat_map(|t| std::iter::once(t).chain(t.iterations.iter()))
                    .find(|t| t.run_id == run_id)
                    .map(|t| (r.clone(), t.clone()))
            })
            .ok_or_else(|| run_not_found(run_id))
    }

    pub(crate) fn save_run(&self, run: &RunRecord) -> Result<()> {
        self.store.commit(vec![Write::PutObject {
            kind: KIND_RUN,
            key: run.run_id.to_string(),
            record: serde_json::to_value(run)
                .map_err(|e| Error::internal("encode a job run", e))?,
        }])?;
        self.runs
            .write()
            .map_err(poisoned)?
            .insert(run.run_id, run.clone());
        self.changes.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Applies `change` to the stored run and saves it (the one way a run changes).
    pub(crate) fn change_run(
        &self,
        run_id: i64,
        change: impl FnOnce(&mut RunRecord) -> Result<()>,
    ) -> Result<RunRecord> {
        let _guard = self.run_lock.lock().map_err(poisoned)?;
        let mut run = self.run(run_id)?;
        change(&mut run)?;
        self.save_run(&run)?;
        Ok(run)
    }

    pub fn subscribe_jobs(&self) -> watch::Receiver<u64> {
        self.job_changes.subscribe()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Waits until the run has ended; returns it.
    pub async fn wait_run(&self, run_id: i64) -> Result<RunRecord> {
        let mut changes = self.subscribe();
        loop {
            let run = self.run(run_id)?;
            if run.is_done() {
                return Ok(run);
            }
            if changes.changed().await.is_err() {
                return Err(Error::internal(
                    "wait for a run",
                    "the jobs service stopped",
                ));
            }
        }
    }
}

fn remove_keyed(settings: &mut Map<String, Value>, list: &str, key_field: &str, key: &str) {
    if let Some(items) = settings.get_mut(list).and_then(Value::as_array_mut) {
        items.retain(|i| i[key_field].as_str() != Some(key));
    }
}

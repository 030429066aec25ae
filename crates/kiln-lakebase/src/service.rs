//! The Lakebase service: resource records (durable before any answer), the
//! running endpoints (desired vs observed, with a reconciler that suspends
//! idle ones and notices crashes), and single-flight wake-up for the proxy.
//!
//! Invariants:
//! - a record is committed to the store before the API acknowledges it;
//! - at most one postmaster per endpoint; every start and stop of an endpoint
//!   goes through its runtime's lock, so a wake and a suspend never interleave;
//! - an endpoint with open proxy sessions or running operations is never suspended;
//! - postmasters die with Kiln (PDEATHSIG) and are stopped on shutdown.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kiln_core::{time::now_ms, Error, ErrorCode, Result};
use kiln_store::{Store, Write};
use tokio_util::sync::CancellationToken;

use crate::compute::{Launch, Postmaster};
use crate::credentials::Credentials;
use crate::lifecycle::{EndpointEvent, EndpointState};
use crate::model::{BranchRecord, EndpointRecord, EndpointType, OperationRecord, ProjectRecord};
use crate::pg::{self, Install, OsUser, Postgres};
use crate::storage::Layout;

pub(crate) const PROJECT: &str = "pg_project";
pub(crate) const BRANCH: &str = "pg_branch";
pub(crate) const ENDPOINT: &str = "pg_endpoint";
pub(crate) const OPERATION: &str = "pg_operation";

#[derive(Debug, Clone)]
pub struct LakebaseConfig {
    /// Where branch and endpoint data live (must be reachable by `os_user`).
    pub root: PathBuf,
    /// The OS user postgres runs as when Kiln is root.
    pub os_user: String,
    /// Directories holding `<major>/bin/postgres`.
    pub pg_roots: Vec<PathBuf>,
    /// Endpoint hosts are `<endpoint uid>.<host_suffix>`.
    pub host_suffix: String,
    /// Shortest accepted suspend timeout (60 s as on Databricks; tests lower it).
    pub min_suspend_secs: u64,
    /// Shortest accepted credential lifetime (300 s as on Databricks; tests lower it).
    pub min_credential_secs: u64,
    pub start_timeout: Duration,
    /// How long a request waits for its operation before answering `done: false`.
    pub operation_wait: Duration,
    /// The workspace key that seals role passwords (`<data_dir>/secrets.key`).
    pub secrets_key: Option<PathBuf>,
    /// How long a soft-deleted project or branch can be undeleted.
    pub deleted_retention: Duration,
    /// CPU cores per compute unit (with 2 GiB of memory), and whether
    /// endpoints run in cgroups that enforce them.
    pub cpu_per_cu: f64,
    pub cgroups: bool,
}

/// What Kiln keeps about every resource.
#[derive(Default)]
pub(crate) struct Records {
    pub projects: BTreeMap<String, ProjectRecord>,
    pub branches: BTreeMap<String, BranchRecord>,
    pub endpoints: BTreeMap<String, EndpointRecord>,
    pub operations: BTreeMap<String, OperationRecord>,
}

/// A live endpoint's process and activity.
#[derive(Default)]
pub(crate) struct Runtime {
    pub process: tokio::sync::Mutex<Option<Postmaster>>,
    pub sessions: AtomicUsize,
    pub busy: AtomicUsize,
    pub last_active_ms: AtomicI64,
    pub scale: std::sync::Mutex<crate::scale::Scale>,
}

pub struct Lakebase {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) objects: crate::records::Objects,
    pub(crate) trash: RwLock<BTreeMap<String, crate::records::TrashEntry>>,
    pub(crate) snapshots: RwLock<BTreeMap<String, crate::records::SnapshotRecord>>,
    pub(crate) cipher: Option<kiln_core::seal::Cipher>,
    pub(crate) cgroups: Option<crate::cgroups::Cgroups>,
    pub config: LakebaseConfig,
    pub(crate) installs: Vec<Install>,
    pub(crate) user: Option<OsUser>,
    pub(crate) layout: Layout,
    pub(crate) records: RwLock<Records>,
    runtimes: Mutex<HashMap<String, Arc<Runtime>>>,
    project_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// One base backup of a branch at a time (see `base_backups`).
    pub(crate) base_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub credentials: Credentials,
    /// The tasks running operations' work (see `operations`).
    pub(crate) operations_tasks: Mutex<tokio::task::JoinSet<()>>,
}

/// Held while an operation uses an endpoint (it is not suspended meanwhile).
pub struct Busy(Arc<Runtime>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.last_active_ms.store(now_ms(), Ordering::Release);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Held for each proxied session.
pub struct Session(Arc<Runtime>);

impl Drop for Session {
    fn drop(&mut self) {
        self.0.last_active_ms.store(now_ms(), Ordering::Release);
        self.0.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

fn load<T: serde::de::DeserializeOwned>(store: &dyn Store, kind: &str) -> Result<Vec<T>> {
    store
        .objects(kind)?
        .into_iter()
        .map(|v| serde_json::from_value(v).map_err(|e| Error::internal("read Lakebase records", e)))
        .collect()
}

pub(crate) fn not_found(what: &str, name: &str) -> Error {
    Error::new(ErrorCode::NotFound, format!("{what} {name} not found"))
}

impl Lakebase {
    pub fn open(store: Arc<dyn Store>, config: LakebaseConfig) -> Result<Self> {
        if !(config.cpu_per_cu.is_finite() && config.cpu_per_cu > 0.0) {
            return Err(Error::invalid(
                "lakebase.cpu_per_cu must be a number above 0",
            ));
        }
        let mut records = Records::default();
        for p in load::<ProjectRecord>(store.as_ref(), PROJECT)? {
            records.projects.insert(p.project_id.clone(), p);
        }
        for b in load::<BranchRecord>(store.as_ref(), BRANCH)? {
            records.branches.insert(b.name(), b);
        }
        for e in load::<EndpointRecord>(store.as_ref(), ENDPOINT)? {
            records.endpoints.insert(e.name(), e);
        }
        for o in load::<OperationRecord>(store.as_ref(), OPERATION)? {
            records.operations.insert(o.name.clone(), o);
        }
        let trash = crate::records::load_trash(store.as_ref())?;
        let snapshots = crate::records::load_snapshots(store.as_ref())?;
        Self::remove_unreferenced(&config.root, &records, &trash, &snapshots);
        let credentials = Credentials::open(store.clone())?;
        let user = pg::os_user(&config.os_user).unwrap_or_else(|e| {
            tracing::warn!(error = %e.message, "Lakebase endpoints cannot start");
            None
        });
        let objects = crate::records::Objects::load(store.as_ref())?;
        let cipher = match &config.secrets_key {
            Some(path) => Some(kiln_core::seal::Cipher::load_or_create(path)?),
            None => None,
        };
        Ok(Self {
            store,
            objects,
            trash: RwLock::new(trash),
            snapshots: RwLock::new(snapshots),
            cipher,
            cgroups: crate::cgroups::for_root(&config.root, config.cgroups),
            installs: pg::installations(&config.pg_roots),
            user,
            layout: Layout {
                root: config.root.clone(),
            },
            config,
            records: RwLock::new(records),
            runtimes: Mutex::new(HashMap::new()),
            project_locks: Mutex::new(HashMap::new()),
            base_locks: Mutex::new(HashMap::new()),
            credentials,
            operations_tasks: Mutex::new(tokio::task::JoinSet::new()),
        })
        .and_then(|lakebase: Self| {
            lakebase.abort_interrupted()?;
            Ok(lakebase)
        })
    }

    /// Installed PostgreSQL majors, newest first.
    pub fn versions(&self) -> Vec<u32> {
        self.installs.iter().map(|i| i.major).collect()
    }

    pub(crate) fn postgres(&self, major: u32) -> Result<Postgres> {
        let install = self
            .installs
            .iter()
            .find(|i| i.major == major)
            .cloned()
            .ok_or_else(|| {
                Error::invalid(format!(
                    "PostgreSQL {major} is not installed on this host; available: {}",
                    self.versions()
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        Ok(Postgres {
            install,
            user: self.user,
        })
    }

    pub(crate) fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, Records>> {
        self.records
            .read()
            .map_err(|_| Error::internal("read Lakebase records", "poisoned lock"))
    }

    /// Commits writes, then applies `apply` to the in-memory records.
    pub(crate) fn commit(
        &self,
        writes: Vec<Write>,
        apply: impl FnOnce(&mut Records),
    ) -> Result<()> {
        self.store.commit(writes)?;
        let mut records = self
            .records
            .write()
            .map_err(|_| Error::internal("update Lakebase records", "poisoned lock"))?;
        apply(&mut records);
        Ok(())
    }

    pub(crate) fn put<T: serde::Serialize>(
        kind: &'static str,
        key: String,
        value: &T,
    ) -> Result<Write> {
        crate::records::put(kind, key, value)
    }

    /// Serialises mutating operations on one project.
    pub(crate) async fn lock_project(&self, project_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .project_locks
            .lock()
            .map(|mut m| m.entry(project_id.to_string()).or_default().clone())
            .unwrap_or_default();
        lock.lock_owned().await
    }

    /// The project's lock if nobody holds it (the reconciler never waits).
    pub(crate) fn try_lock_project(
        &self,
        project_id: &str,
    ) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let lock = self
            .project_locks
            .lock()
            .map(|mut m| m.entry(project_id.to_string()).or_default().clone())
            .ok()?;
        lock.try_lock_owned().ok()
    }

    pub(crate) fn runtime(&self, endpoint_uid: &str) -> Arc<Runtime> {
        self.runtimes
            .lock()
            .map(|mut m| m.entry(endpoint_uid.to_string()).or_default().clone())
            .unwrap_or_default()
    }

    pub(crate) fn forget_runtime(&self, endpoint_uid: &str) {
        if let Ok(mut m) = self.runtimes.lock() {
            m.remove(endpoint_uid);
        }
    }

    // ---- endpoints at run time --------------------------------------------------

    pub fn endpoint_host(&self, uid: &str) -> String {
        format!("{uid}.{}", self.config.host_suffix)
    }

    /// How an endpoint's postmaster starts.
    pub(crate) fn launch(&self, ep: &EndpointRecord) -> Result<Launch> {
        let branch = self.branch(&ep.project_id, &ep.branch_id)?;
        self.launch_on(ep, &branch.uid, None)
    }

    /// The launch of `ep` on the branch with `branch_uid`; `recovery` adds
    /// one-off recovery settings (restore_command, targets).
    pub(crate) fn launch_on(
        &self,
        ep: &EndpointRecord,
        branch_uid: &str,
        recovery: Option<BTreeMap<String, String>>,
    ) -> Result<Launch> {
        let replica = ep.endpoint_type == EndpointType::ReadOnly;
        let mut settings = ep.settings.pg_settings.clone();
        let pgdata = if replica {
            if let Some(primary) = self.primary_of(&ep.branch_name()) {
                settings.insert(
                    "primary_conninfo".into(),
                    format!(
                        "host={} port={} user={} application_name={}",
                        self.layout.socket_dir(&primary.uid).display(),
                        pg::SOCKET_PORT,
                        pg::SUPERUSER,
                        ep.uid
                    ),
                );
            }
            self.layout.replica_pgdata(&ep.uid)
        } else {
            self.layout.pgdata(branch_uid)
        };
        settings.extend(recovery.unwrap_or_default());
        Ok(Launch {
            pgdata,
            socket_dir: self.layout.socket_dir(&ep.uid),
            log: self.layout.log(&ep.uid),
            archive: self.layout.archive(branch_uid),
            settings,
            min_cu: ep.settings.min_cu,
            max_cu: ep.settings.max_cu,
            replica,
            cgroup: self.cgroup_target(ep),
        })
    }

    /// Hands a postmaster started by an operation to the endpoint's runtime.
    pub(crate) async fn adopt(&self, ep: &EndpointRecord, postmaster: Postmaster) {
        let runtime = self.runtime(&ep.uid);
        runtime.last_active_ms.store(now_ms(), Ordering::Release);
        *runtime.process.lock().await = Some(postmaster);
    }

    /// Stops an endpoint for good and removes its directory (not its record).
    pub(crate) async fn stop_and_remove_endpoint(&self, ep: &EndpointRecord) -> Result<()> {
        let runtime = self.runtime(&ep.uid);
        if let Some(mut p) = runtime.process.lock().await.take() {
            p.stop(Duration::from_secs(15)).await;
        }
        self.forget_runtime(&ep.uid);
        crate::storage::remove(&self.layout.endpoint_dir(&ep.uid))
    }

    pub(crate) fn primary_of(&self, branch_name: &str) -> Option<EndpointRecord> {
        self.read()
            .ok()?
            .endpoints
            .values()
            .find(|e| e.branch_name() == branch_name && e.endpoint_type == EndpointType::ReadWrite)
            .cloned()
    }

    pub(crate) fn pg_version_of(&self, project_id: &str) -> Result<u32> {
        self.read()?
            .projects
            .get(project_id)
            .map(|p| p.pg_version)
            .ok_or_else(|| not_found("Project", &format!("projects/{project_id}")))
    }

    /// Starts the endpoint if it is not running (single-flight); returns its
    /// socket directory and a guard that keeps it from being suspended.
    pub async fn wake(&self, endpoint_uid: &str) -> Result<(PathBuf, Busy)> {
        let ep = self
            .endpoint_by_uid(endpoint_uid)
            .ok_or_else(|| not_found("Endpoint", endpoint_uid))?;
        if ep.disabled {
            return Err(Error::new(
                ErrorCode::InvalidState,
                format!("Endpoint {} is disabled", ep.name()),
            ));
        }
        let runtime = self.runtime(&ep.uid);
        runtime.busy.fetch_add(1, Ordering::AcqRel);
        let busy = Busy(runtime.clone());
        let mut process = runtime.process.lock().await;
        let running = match process.as_mut() {
            Some(p) => !p.exited(),
            None => false,
        };
        if !running {
            let pg = self.postgres(self.pg_version_of(&ep.project_id)?)?;
            let launch = self.launch(&ep)?;
            match Postmaster::start(&pg, &launch, self.config.start_timeout).await {
                Ok(p) => {
                    tracing::info!(endpoint = %ep.name(), "endpoint started on demand");
                    *process = Some(p);
                    self.observe(&ep.name(), EndpointEvent::Started)?;
                }
                Err(e) => {
                    *process = None;
                    let _ = self.observe(&ep.name(), EndpointEvent::Crashed);
                    return Err(e);
                }
            }
        }
        runtime.last_active_ms.store(now_ms(), Ordering::Release);
        Ok((self.layout.socket_dir(&ep.uid), busy))
    }

    /// Counts a proxied session on a running endpoint.
    pub fn session(&self, busy: &Busy) -> Session {
        busy.0.sessions.fetch_add(1, Ordering::AcqRel);
        Session(busy.0.clone())
    }

    /// Stops an endpoint's postmaster (if running) and records IDLE.
    pub(crate) async fn suspend(&self, ep: &EndpointRecord) -> Result<()> {
        let runtime = self.runtime(&ep.uid);
        let mut process = runtime.process.lock().await;
        if let Some(mut p) = process.take() {
            p.stop(Duration::from_secs(15)).await;
        }
        self.observe(&ep.name(), EndpointEvent::Suspended)
    }

    /// Applies a lifecycle event to the recorded state (durably).
    pub(crate) fn observe(&self, endpoint_name: &str, event: EndpointEvent) -> Result<()> {
        let Some(mut ep) = self.read()?.endpoints.get(endpoint_name).cloned() else {
            return Ok(());
        };
        let Some(next) = ep.state.next(event) else {
            return Ok(());
        };
        ep.state = next;
        ep.last_active_ms = now_ms();
        let write = Self::put(ENDPOINT, ep.name(), &ep)?;
        self.commit(vec![write], |r| {
            r.endpoints.insert(ep.name(), ep);
        })
    }

    /// Suspends endpoints idle past their timeout; notices crashed ones.
    pub async fn run_reconciler(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            let endpoints: Vec<EndpointRecord> = match self.read() {
                Ok(r) => r.endpoints.values().cloned().collect(),
                Err(_) => continue,
            };
            for ep in endpoints {
                if let Err(e) = self.reconcile(&ep).await {
                    tracing::warn!(endpoint = %ep.name(), error = %e.message, "reconcile endpoint");
                }
            }
            self.collect_garbage().await;
        }
        self.shutdown().await;
    }

    async fn reconcile(&self, ep: &EndpointRecord) -> Result<()> {
        let runtime = self.runtime(&ep.uid);
        let (crashed, pid) = {
            let Ok(mut process) = runtime.process.try_lock() else {
                return Ok(());
            };
            match process.as_mut().map(|p| (p.exited(), p.pid)) {
                Some((true, _)) => {
                    *process = None;
                    if let Some(cgroups) = &self.cgroups {
                        cgroups.remove(&ep.uid);
                    }
                    (true, 0)
                }
                Some((false, pid)) => (false, pid),
                None => {
                    drop(process);
                    return self.recover_lost(ep, &runtime).await;
                }
            }
        };
        if crashed {
            tracing::warn!(endpoint = %ep.name(), "postgres exited unexpectedly");
            return self.observe(&ep.name(), EndpointEvent::Crashed);
        }
        let idle_ms = now_ms() - runtime.last_active_ms.load(Ordering::Acquire);
        let in_use =
            runtime.sessions.load(Ordering::Acquire) + runtime.busy.load(Ordering::Acquire);
        let expired = ep
            .settings
            .suspend_secs
            .is_some_and(|s| idle_ms >= (s as i64) * 1000);
        if (expired || ep.disabled) && in_use == 0 {
            tracing::info!(endpoint = %ep.name(), "suspending idle endpoint");
            return self.suspend(ep).await;
        }
        self.autoscale(ep, &runtime, pid).await
    }

    /// Restarts endpoints recorded ACTIVE (after a Kiln restart).
    pub async fn resume(self: Arc<Self>) {
        let active: Vec<EndpointRecord> = match self.read() {
            Ok(r) => r
                .endpoints
                .values()
                .filter(|e| e.state == EndpointState::Active && !e.disabled)
                .cloned()
                .collect(),
            Err(_) => return,
        };
        for ep in active {
            match self.wake(&ep.uid).await {
                Ok(_) => tracing::info!(endpoint = %ep.name(), "endpoint resumed"),
                Err(e) => {
                    tracing::warn!(endpoint = %ep.name(), error = %e.message, "resume endpoint")
                }
            }
        }
    }

    /// Lets running operations finish (30 s at most), then stops every
    /// postmaster (Kiln is shutting down); recorded states stay.
    pub async fn shutdown(&self) {
        self.drain_operations(Duration::from_secs(30)).await;
        let runtimes: Vec<Arc<Runtime>> = self
            .runtimes
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        for runtime in runtimes {
            if let Some(mut p) = runtime.process.lock().await.take() {
                p.stop(Duration::from_secs(10)).await;
            }
        }
        if let Some(cgroups) = &self.cgroups {
            cgroups.remove_all();
        }
    }

    /// At start-up: when PostgreSQL is installed, its data root must exist and
    /// be reachable by its OS user now, not at the first project.
    pub fn check_layout(&self) -> Result<()> {
        match self.versions().first() {
            Some(major) => self.ensure_root(&self.postgres(*major)?),
            None => Ok(()),
        }
    }

    pub(crate) fn ensure_root(&self, pg: &Postgres) -> Result<()> {
        pg.make_dir(&self.layout.root)?;
        pg.make_dir(&self.layout.root.join("b"))?;
        pg.make_dir(&self.layout.root.join("e"))?;
        if let Some(user) = self.user {
            check_reachable(&self.layout.root, user)?;
        }
        Ok(())
    }
}

/// Directories no record names (an operation interrupted by a crash before it
/// committed) are removed before Kiln serves again.
/// Every ancestor of `root` must be searchable by the postgres OS user.
fn check_reachable(root: &Path, user: OsUser) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut dir = root.parent();
    while let Some(d) = dir {
        if let Ok(meta) = std::fs::metadata(d) {
            let mode = meta.mode();
            let ok = (meta.uid() == user.uid && mode & 0o100 != 0)
                || (meta.gid() == user.gid && mode & 0o010 != 0)
                || mode & 0o001 != 0;
            if !ok {
                return Err(Error::invalid(format!(
                    "PostgreSQL runs as an unprivileged user that cannot reach {}: set lakebase.dir (KILN_LAKEBASE_DIR) to a directory outside {}",
                    root.display(),
                    d.display()
                )));
            }
        }
        dir = d.parent();
    }
    Ok(())
}

//! One engine process: `sail spark server` on a loopback port.
//!
//! Invariants:
//! - every engine is started with `PR_SET_PDEATHSIG = SIGKILL`, so it dies with
//!   Kiln even when Kiln is killed with SIGKILL;
//! - an engine is only handed out once a real Spark Connect query answered;
//! - [`Engine::stop`] sends SIGTERM, then SIGKILL after the deadline, and reaps.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use kiln_core::{Error, ErrorCode, Result};
use tokio::process::Child;

use crate::runtime::Runtime;
use crate::spark_connect;

/// The query that proves an engine answers.
pub const HEALTH_QUERY: &str = "SELECT 1 AS kiln_health";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Tasks a worker may run at once. Sail runs a stage only if each of its
/// partitions gets a slot at the most workers, so its default of 8 failed a
/// `repartition(16)` on one worker; its scheduler still spreads tasks.
pub const WORKER_TASK_SLOTS: u32 = 64;

/// How to run the engine of one cluster.
#[derive(Debug, Clone)]
pub struct EngineSpec {
    pub cluster_id: String,
    pub work_dir: PathBuf,
    /// 0 runs Sail in `local` mode; more runs `local-cluster` with that many workers.
    pub num_workers: u32,
    pub max_workers: u32,
    pub env: BTreeMap<String, String>,
    /// The cluster's OS identity (when Kiln is root).
    pub identity: Option<kiln_core::process::OsIdentity>,
    /// Who user code runs as (a sandbox, when Kiln is not root).
    pub isolation: std::sync::Arc<crate::isolation::Isolation>,
    /// Workers as Kubernetes pods (Sail's `kubernetes-cluster` mode) instead of local processes.
    pub kubernetes: Option<KubernetesWorkers>,
}

/// A cluster whose workers are pods of a `[kubernetes]` node type.
#[derive(Debug, Clone)]
pub struct KubernetesWorkers {
    pub k8s: std::sync::Arc<kiln_kubernetes::Kubernetes>,
    pub node_type_id: String,
}

/// A live engine process.
#[derive(Debug)]
pub struct Engine {
    child: Child,
    pub pid: u32,
    pub port: u16,
    /// Its hold on Kubernetes (worker pods), released when it stops.
    pods: Option<kiln_kubernetes::Registration>,
    /// Its lease on credentials scoped to the object-store root (when
    /// configured); ends with the engine.
    _credentials: Option<kiln_storage::Lease>,
}

impl Engine {
    /// Starts an engine and waits until it answers [`HEALTH_QUERY`].
    pub async fn launch(runtime: &Runtime, spec: &EngineSpec) -> Result<Engine> {
        crate::isolation::own_dir(&spec.work_dir, spec.identity.as_ref(), 0o750)?;
        let port = free_port()?;
        let (pod_env, pods) = match &spec.kubernetes {
            Some(k) => {
                let (access, registration) = k.k8s.engine_access(
                    &spec.cluster_id,
                    &k.node_type_id,
                    spec.max_workers.max(spec.num_workers),
                    pod_access(spec),
                )?;
                let path = spec.work_dir.join("kubeconfig");
                write_private(&path, &access.kubeconfig, spec.identity.as_ref())?;
                let mut env = access.env;
                env.insert("KUBECONFIG".into(), path.display().to_string());
                (Some(env), Some(registration))
            }
            None => (None, None),
        };
        let (object_env, credentials) = spec
            .isolation
            .object_store()
            .map(|access| access.process_env(&spec.cluster_id))
            .unwrap_or_default();
        let spawned = spawn(runtime, spec, port, pod_env.as_ref(), object_env);
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => {
                if let Some(pods) = pods {
                    pods.release().await;
                }
                return Err(err);
            }
        };
        let pid = child.id().unwrap_or(0);
        match wait_ready(&mut child, port).await {
            Ok(()) => Ok(Engine {
                child,
                pid,
                port,
                pods,
                _credentials: credentials,
            }),
            Err(err) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                if let Some(pods) = pods {
                    pods.release().await;
                }
                Err(err)
            }
        }
    }

    /// Whether its workers are Kubernetes pods.
    pub fn on_kubernetes(&self) -> bool {
        self.pods.is_some()
    }

    /// `Some(description)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL once `deadline` has passed.
    /// Its worker pods are deleted after it exited.
    pub async fn stop(mut self, deadline: Duration) {
        if self.exited().is_none() {
            signal(self.pid, libc::SIGTERM);
            if tokio::time::timeout(deadline, self.child.wait())
                .await
                .is_err()
            {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
            }
        }
        if let Some(pods) = self.pods.take() {
            pods.release().await;
        }
    }
}

fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| Error::internal("find a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::internal("find a free port", e))?
        .port();
    Ok(port)
}

/// What a cluster's worker pods run as and see: the engine's identity, and
/// the shared tree's DBFS and warehouse at the paths the engine uses.
fn pod_access(spec: &EngineSpec) -> kiln_kubernetes::PodAccess {
    let shared = spec.isolation.shared();
    // DBFS on an object store is reached by URL (the pods get the store's settings).
    let dbfs = (spec.isolation.object_store().is_none()).then(|| spec.isolation.dbfs());
    let mounts = dbfs
        .into_iter()
        .chain([spec.isolation.warehouse()])
        .collect::<Vec<_>>()
        .iter()
        .filter_map(|path| {
            let sub = path.strip_prefix(shared).ok()?;
            Some((path.display().to_string(), sub.display().to_string()))
        })
        .collect();
    kiln_kubernetes::PodAccess {
        run_as: spec
            .identity
            .as_ref()
            .map(|id| (id.uid, id.gid, id.groups.clone())),
        mounts,
    }
}

/// Writes a file only `identity` (or Kiln) may read.
fn write_private(
    path: &std::path::Path,
    text: &str,
    identity: Option<&kiln_core::process::OsIdentity>,
) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::internal("write the engine's kubeconfig", e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| Error::internal("write the engine's kubeconfig", e))?;
    if let Some(id) = identity {
        std::os::unix::fs::fchown(&file, Some(id.uid), Some(id.gid))
            .map_err(|e| Error::internal("give the kubeconfig to its engine", e))?;
    }
    Ok(())
}

fn spawn(
    runtime: &Runtime,
    spec: &EngineSpec,
    port: u16,
    pod_env: Option<&BTreeMap<String, String>>,
    object_env: Vec<(String, String)>,
) -> Result<Child> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(spec.work_dir.join("engine.log"))
        .map_err(|e| Error::internal("open the engine log", e))?;
    let log_err = log
        .try_clone()
        .map_err(|e| Error::internal("open the engine log", e))?;
    let (dbfs, warehouse) = (spec.isolation.dbfs(), spec.isolation.warehouse());
    let read = runtime.read_paths();
    let view = crate::isolation::View {
        rw: vec![&spec.work_dir, &dbfs, &warehouse],
        ro: read.iter().map(|p| p.as_path()).collect(),
        cwd: &spec.work_dir,
    };
    let mut command = spec.isolation.command(&runtime.sail, &view);
    // Nothing of Kiln's environment (credentials, Sail overrides) reaches it.
    crate::isolation::Isolation::base_env(&mut command, &spec.work_dir);
    command
        .args([
            "spark",
            "server",
            "--ip",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .arg("-C")
        .arg(&spec.work_dir)
        .envs(object_env)
        .envs(&spec.env)
        .env("KILN_CLUSTER_ID", &spec.cluster_id)
        .env("RUST_LOG", engine_log_filter())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .kill_on_drop(true);
    match pod_env {
        Some(env) => {
            command.envs(env);
        }
        None if spec.num_workers > 0 => {
            command.env("SAIL_MODE", "local-cluster");
        }
        None => {
            command.env("SAIL_MODE", "local");
        }
    }
    if spec.num_workers > 0 || pod_env.is_some() {
        command
            .env(
                "SAIL_CLUSTER__WORKER_TASK_SLOTS",
                WORKER_TASK_SLOTS.to_string(),
            )
            .env(
                "SAIL_CLUSTER__WORKER_INITIAL_COUNT",
                spec.num_workers.to_string(),
            )
            .env(
                "SAIL_CLUSTER__WORKER_MAX_COUNT",
                spec.max_workers.max(spec.num_workers).to_string(),
            );
    }
    kiln_core::process::spawn_as(command.as_std_mut(), spec.identity.as_ref());
    kiln_core::process::spawn(command).map_err(|e| {
        Error::new(
            ErrorCode::TemporarilyUnavailable,
            format!(
                "cannot start the engine ({}): {e}; run `kiln setup`",
                runtime.sail.display()
            ),
        )
    })
}

/// The engines' log filter: `warn`, or `KILN_ENGINE_LOG` from Kiln's own
/// environment (an operator's choice, e.g. `info` to see workers come and go).
fn engine_log_filter() -> String {
    std::env::var("KILN_ENGINE_LOG")
        .ok()
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| "warn".to_string())
}

async fn wait_ready(child: &mut Child, port: u16) -> Result<()> {
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::new(
                ErrorCode::TemporarilyUnavailable,
                format!("the engine exited during startup ({status}); see its engine.log"),
            ));
        }
        match spark_connect::count_rows(port, HEALTH_QUERY, Duration::from_secs(5)).await {
            Ok(1) => return Ok(()),
            Ok(n) => {
                return Err(Error::internal(
                    "health-check the engine",
                    format!("{n} rows for SELECT 1"),
                ))
            }
            Err(_) if started.elapsed() < READY_TIMEOUT => {
                tokio::time::sleep(Duration::from_millis(25)).await
            }
            Err(err) => return Err(err),
        }
    }
}

pub use kiln_core::process::signal;

/// Kills a leftover engine of `cluster_id` from an earlier Kiln process, if
/// `pid` is still alive and really is that engine (checked in /proc).
pub fn kill_orphan(pid: u32, cluster_id: &str) -> bool {
    let environ = match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(bytes) => bytes,
        Err(_) => return false,
    };
    let marker = format!("KILN_CLUSTER_ID={cluster_id}");
    let is_ours = environ
        .split(|b| *b == 0)
        .any(|entry| entry == marker.as_bytes());
    if is_ours {
        signal(pid, libc::SIGKILL);
    }
    is_ours
}

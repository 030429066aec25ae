//! The pipeline worker process: `python -m kiln_pipelines.worker` on the
//! update's engine, speaking line-delimited JSON with request ids so several
//! flows can run at once. It dies with Kiln (PR_SET_PDEATHSIG) and when dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kiln_core::{Error, ErrorCode, Result};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::{oneshot, Mutex as AsyncMutex};
use tokio::task::JoinHandle;

use crate::protocol::Request;
use kiln_compute::isolation::Isolation;
use kiln_compute::python_process::{handshake, remove_scratch, PythonProcess};

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// What a failed request reports: the exception class and its message.
#[derive(Debug, Clone)]
pub struct WorkerError {
    pub class_name: String,
    pub message: String,
}

pub struct Worker {
    child: AsyncMutex<Child>,
    stdin: AsyncMutex<ChildStdin>,
    pending: Pending,
    next: AtomicU64,
    reader: JoinHandle<()>,
    /// The worker's private working directory, removed with it.
    scratch: PathBuf,
    /// Its lease on engine credentials scoped to the root (when configured).
    _lease: Option<kiln_storage::Lease>,
}

/// The worker's package (`crates/kiln-pipelines/python/kiln_pipelines`),
/// embedded; it imports the kernel package for the paths DBFS maps to.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "kiln_pipelines/__init__.py",
        include_str!("../python/kiln_pipelines/__init__.py"),
    ),
    (
        "kiln_pipelines/cdc.py",
        include_str!("../python/kiln_pipelines/cdc.py"),
    ),
    (
        "kiln_pipelines/delta_log.py",
        include_str!("../python/kiln_pipelines/delta_log.py"),
    ),
    (
        "kiln_pipelines/expectations.py",
        include_str!("../python/kiln_pipelines/expectations.py"),
    ),
    (
        "kiln_pipelines/dlt_shim.py",
        include_str!("../python/kiln_pipelines/dlt_shim.py"),
    ),
    (
        "kiln_pipelines/worker.py",
        include_str!("../python/kiln_pipelines/worker.py"),
    ),
];

/// Unpacks the worker's package under `cache`; returns its `PYTHONPATH` entry.
pub fn install_sources(cache: &Path) -> Result<PathBuf> {
    kiln_compute::python_process::install(cache, "pipelines", SOURCES)
}

/// Where a worker runs and as whom.
pub struct WorkerSpec<'a> {
    pub python: &'a Path,
    /// The kernel's and the worker's unpacked packages.
    pub sources: &'a [PathBuf],
    pub spark_url: &'a str,
    pub dbfs_root: &'a Path,
    pub log: &'a Path,
    pub isolation: &'a Isolation,
    pub cluster_id: &'a str,
    /// What the worker reads besides DBFS: the runtime, the cluster's environment.
    pub read: Vec<PathBuf>,
}

impl Worker {
    pub async fn spawn(spec: WorkerSpec<'_>) -> Result<Worker> {
        let identity = spec.isolation.process_identity(spec.cluster_id);
        let started = PythonProcess {
            what: "the pipeline worker",
            python: spec.python,
            module: "kiln_pipelines.worker",
            sources: spec.sources.iter().map(PathBuf::as_path).collect(),
            spark_url: spec.spark_url,
            dbfs_root: spec.dbfs_root,
            log: spec.log,
            isolation: spec.isolation,
            identity: identity.as_ref(),
            read: spec.read.iter().map(PathBuf::as_path).collect(),
            env: Vec::new(),
            reads_table_logs: Some(spec.cluster_id),
        }
        .spawn()?;
        let pending: Pending = Arc::default();
        let (ready_tx, ready_rx) = oneshot::channel::<Value>();
        let reader = tokio::spawn(read_answers(started.stdout, pending.clone(), ready_tx));
        let worker = Worker {
            child: AsyncMutex::new(started.child),
            stdin: AsyncMutex::new(started.stdin),
            pending,
            next: AtomicU64::new(1),
            reader,
            scratch: started.scratch,
            _lease: started.lease,
        };
        match handshake(ready_rx).await {
            Some(v) if v["ready"] == json!(true) => Ok(worker),
            Some(v) => {
                worker.kill().await;
                Err(Error::new(
                    ErrorCode::TemporarilyUnavailable,
                    format!(
                        "the pipeline worker could not connect to its engine: {}",
                        v["error"]["message"].as_str().unwrap_or("unknown error")
                    ),
                ))
            }
            None => {
                worker.kill().await;
                Err(Error::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the pipeline worker failed to start; see its log",
                ))
            }
        }
    }

    /// Sends one request and waits for its answer (see [`crate::protocol`]).
    pub async fn call<A: DeserializeOwned>(
        &self,
        request: &Request,
    ) -> std::result::Result<A, WorkerError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut request = serde_json::to_value(request).map_err(|e| WorkerError {
            class_name: "ProtocolError".into(),
            message: format!("cannot encode a worker request: {e}"),
        })?;
        request["id"] = json!(id);
        let (tx, rx) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, tx);
        }
        let line = request.to_string() + "\n";
        let sent = {
            let mut stdin = self.stdin.lock().await;
            match stdin.write_all(line.as_bytes()).await {
                Ok(()) => stdin.flush().await,
                Err(e) => Err(e),
            }
        };
        if sent.is_err() {
            return Err(gone());
        }
        match rx.await {
            Ok(mut answer) if answer["ok"] == json!(true) => {
                serde_json::from_value(answer["result"].take()).map_err(|e| WorkerError {
                    class_name: "ProtocolError".into(),
                    message: format!("the pipeline worker's answer is malformed: {e}"),
                })
            }
            Ok(answer) => Err(WorkerError {
                class_name: answer["error"]["class_name"]
                    .as_str()
                    .unwrap_or("Error")
                    .to_string(),
                message: answer["error"]["message"]
                    .as_str()
                    .unwrap_or("failed")
                    .to_string(),
            }),
            Err(_) => Err(gone()),
        }
    }

    pub async fn kill(&self) {
        let mut child = self.child.lock().await;
        let _ = child.start_kill();
        let _ = child.wait().await;
        self.reader.abort();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.reader.abort();
        remove_scratch(std::mem::take(&mut self.scratch));
    }
}

fn gone() -> WorkerError {
    WorkerError {
        class_name: "WorkerExited".into(),
        message: "the pipeline worker exited".into(),
    }
}

async fn read_answers(
    stdout: tokio::process::ChildStdout,
    pending: Pending,
    ready: oneshot::Sender<Value>,
) {
    let mut ready = Some(ready);
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(value) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if value.get("ready").is_some() {
            if let Some(tx) = ready.take() {
                let _ = tx.send(value);
            }
            continue;
        }
        let Some(id) = value["id"].as_u64() else {
            continue;
        };
        let tx = pending.lock().ok().and_then(|mut p| p.remove(&id));
        if let Some(tx) = tx {
            let _ = tx.send(value);
        }
    }
    // The process ended: every waiting call learns it (dropping the senders).
    if let Ok(mut p) = pending.lock() {
        p.clear();
    }
}

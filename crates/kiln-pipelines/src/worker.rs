//! The pipeline worker process: `python -m kiln_pipelines.worker` on the
//! update's engine, speaking line-delimited JSON with request ids so several
//! flows can run at once. It dies with Kiln (PR_SET_PDEATHSIG) and when dropped.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_core::{Error, ErrorCode, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::{oneshot, Mutex as AsyncMutex};
use tokio::task::JoinHandle;

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
    scratch: std::path::PathBuf,
}

/// Where a worker runs and as whom.
pub struct WorkerSpec<'a> {
    pub python: &'a Path,
    pub sources: &'a Path,
    pub spark_url: &'a str,
    pub dbfs_root: &'a Path,
    pub log: &'a Path,
    pub isolation: &'a kiln_compute::isolation::Isolation,
    pub cluster_id: &'a str,
    /// What the worker reads besides DBFS: the runtime, the cluster's environment.
    pub read: Vec<std::path::PathBuf>,
}

const READY_TIMEOUT: Duration = Duration::from_secs(120);

impl Worker {
    pub async fn spawn(spec: WorkerSpec<'_>) -> Result<Worker> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(spec.log)
            .map_err(|e| Error::internal("open the pipeline worker log", e))?;
        let identity = spec.isolation.process_identity(spec.cluster_id);
        let scratch = spec.isolation.scratch(identity.as_ref())?;
        let (python, sources, spark_url, dbfs_root) =
            (spec.python, spec.sources, spec.spark_url, spec.dbfs_root);
        let (dbfs, warehouse) = (spec.isolation.dbfs(), spec.isolation.warehouse());
        let mut ro: Vec<&Path> = spec.read.iter().map(|p| p.as_path()).collect();
        ro.push(sources);
        let view = kiln_compute::isolation::View {
            rw: vec![&scratch, &dbfs, &warehouse],
            ro,
            cwd: &scratch,
        };
        let mut command = spec.isolation.command(python, &view);
        kiln_compute::isolation::Isolation::base_env(&mut command, &scratch);
        command
            .args(["-u", "-m", "kiln_pipelines.worker"])
            .env("PYTHONPATH", sources)
            .env("KILN_SPARK_URL", spark_url)
            .env("KILN_DBFS_ROOT", dbfs_root)
            .env("KILN_EXTERNAL_LOCATIONS", spec.isolation.external_env())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        kiln_core::process::spawn_as(command.as_std_mut(), identity.as_ref());
        let mut child = kiln_core::process::spawn(command).map_err(|e| {
            let _ = std::fs::remove_dir_all(&scratch);
            Error::new(
                ErrorCode::TemporarilyUnavailable,
                format!("cannot start the pipeline worker: {e}"),
            )
        })?;
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => return Err(Error::internal("start the pipeline worker", "no pipes")),
        };
        let pending: Pending = Arc::default();
        let (ready_tx, ready_rx) = oneshot::channel::<Value>();
        let reader = tokio::spawn(read_answers(stdout, pending.clone(), ready_tx));
        let worker = Worker {
            child: AsyncMutex::new(child),
            stdin: AsyncMutex::new(stdin),
            pending,
            next: AtomicU64::new(1),
            reader,
            scratch,
        };
        match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
            Ok(Ok(v)) if v["ready"] == json!(true) => Ok(worker),
            Ok(Ok(v)) => {
                worker.kill().await;
                Err(Error::new(
                    ErrorCode::TemporarilyUnavailable,
                    format!(
                        "the pipeline worker could not connect to its engine: {}",
                        v["error"]["message"].as_str().unwrap_or("unknown error")
                    ),
                ))
            }
            _ => {
                worker.kill().await;
                Err(Error::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the pipeline worker failed to start; see its log",
                ))
            }
        }
    }

    /// Sends one request and waits for its answer.
    pub async fn call(
        &self,
        op: &str,
        mut request: Value,
    ) -> std::result::Result<Value, WorkerError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        request["id"] = json!(id);
        request["op"] = json!(op);
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
            Ok(answer) if answer["ok"] == json!(true) => Ok(answer["result"].clone()),
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
        let scratch = std::mem::take(&mut self.scratch);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn_blocking(move || std::fs::remove_dir_all(scratch));
        }
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

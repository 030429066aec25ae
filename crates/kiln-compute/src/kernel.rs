//! One kernel process: `python -m kiln_kernel.kernel` in the runtime venv,
//! (the embedded sources also carry `kiln_pipelines`, the pipeline worker),
//! speaking line-delimited JSON (see `python/kiln_kernel/protocol.py`).
//!
//! The kernel's Python sources are embedded in the binary and unpacked into the
//! cache, so a `kiln` binary is self-contained. Like engines, kernels get
//! `PR_SET_PDEATHSIG = SIGKILL` and die with Kiln.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use kiln_core::process::OsIdentity;

use kiln_core::{Error, ErrorCode, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::engine::signal;
use crate::isolation::{Isolation, View};
use crate::runtime::Runtime;

const SOURCES: &[(&str, &str)] = &[
    (
        "kiln_kernel/__init__.py",
        include_str!("../../../python/kiln_kernel/__init__.py"),
    ),
    (
        "kiln_kernel/protocol.py",
        include_str!("../../../python/kiln_kernel/protocol.py"),
    ),
    (
        "kiln_kernel/results.py",
        include_str!("../../../python/kiln_kernel/results.py"),
    ),
    (
        "kiln_kernel/dbutils.py",
        include_str!("../../../python/kiln_kernel/dbutils.py"),
    ),
    (
        "kiln_kernel/magics.py",
        include_str!("../../../python/kiln_kernel/magics.py"),
    ),
    (
        "kiln_kernel/notebook_run.py",
        include_str!("../../../python/kiln_kernel/notebook_run.py"),
    ),
    (
        "kiln_kernel/kernel.py",
        include_str!("../../../python/kiln_kernel/kernel.py"),
    ),
    (
        "kiln_kernel/scala_kernel.py",
        include_str!("../../../python/kiln_kernel/scala_kernel.py"),
    ),
    (
        "kiln_pipelines/__init__.py",
        include_str!("../../../python/kiln_pipelines/__init__.py"),
    ),
    (
        "kiln_pipelines/cdc.py",
        include_str!("../../../python/kiln_pipelines/cdc.py"),
    ),
    (
        "kiln_pipelines/delta_log.py",
        include_str!("../../../python/kiln_pipelines/delta_log.py"),
    ),
    (
        "kiln_pipelines/expectations.py",
        include_str!("../../../python/kiln_pipelines/expectations.py"),
    ),
    (
        "kiln_pipelines/dlt_shim.py",
        include_str!("../../../python/kiln_pipelines/dlt_shim.py"),
    ),
    (
        "kiln_pipelines/worker.py",
        include_str!("../../../python/kiln_pipelines/worker.py"),
    ),
];
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Writes the embedded kernel package under `cache` (once per content hash)
/// and returns the directory to put on `PYTHONPATH`.
pub fn install_sources(cache: &Path) -> Result<PathBuf> {
    let mut hasher = Sha256::new();
    for (name, text) in SOURCES {
        hasher.update(name.as_bytes());
        hasher.update(text.as_bytes());
    }
    let root = cache.join(format!("kernel-{}", &hex::encode(hasher.finalize())[..12]));
    if !root.join(".complete").exists() {
        // Several Kiln processes may unpack at once: unique temp names, atomic renames.
        let suffix = kiln_core::ids::random_hex(4);
        for (name, text) in SOURCES {
            let path = root.join(name);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::internal("unpack the kernel", e))?;
            }
            let tmp = root.join(format!("{name}.{suffix}.tmp"));
            std::fs::write(&tmp, text).map_err(|e| Error::internal("unpack the kernel", e))?;
            std::fs::rename(&tmp, path).map_err(|e| Error::internal("unpack the kernel", e))?;
        }
        std::fs::write(root.join(".complete"), b"")
            .map_err(|e| Error::internal("unpack the kernel", e))?;
    }
    Ok(root)
}

/// Where a kernel runs and what it connects to.
#[derive(Debug, Clone)]
pub struct KernelSpec {
    pub cluster_id: String,
    pub spark_url: String,
    pub dbfs_root: PathBuf,
    /// The cluster's engine directory (its Python environment lives there).
    pub engine_dir: PathBuf,
    pub sources: PathBuf,
    pub log: PathBuf,
    /// The cluster's identity (owner of its environment) and the kernel's own.
    pub cluster_identity: Option<OsIdentity>,
    pub identity: Option<OsIdentity>,
    /// Creates private scratch directories.
    pub isolation: Arc<Isolation>,
    /// A Scala context's REPL (`None`: a Python/SQL kernel).
    pub scala: Option<crate::scala_repl::ScalaRepl>,
}

/// What a kernel reports.
#[derive(Debug)]
pub enum KernelEvent {
    Started(String),
    Done {
        id: String,
        status: String,
        results: Value,
    },
    Exited(String),
}

/// A live kernel. Dropping it kills the process.
pub struct Kernel {
    child: Child,
    stdin: ChildStdin,
    pub pid: u32,
    pub events: mpsc::UnboundedReceiver<KernelEvent>,
    reader: JoinHandle<()>,
    /// The kernel's private working directory, removed with it.
    scratch: PathBuf,
}

impl Kernel {
    /// Starts a kernel and waits until its Spark session is connected.
    pub async fn spawn(runtime: &Runtime, spec: &KernelSpec) -> Result<Kernel> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(|e| Error::internal("open the kernel log", e))?;
        let python =
            crate::pyenv::ensure(runtime, &spec.engine_dir, spec.cluster_identity.as_ref()).await?;
        let scratch = spec.isolation.scratch(spec.identity.as_ref())?;
        let (dbfs, warehouse) = (spec.isolation.dbfs(), spec.isolation.warehouse());
        let mut read = runtime.read_paths();
        if let Some(scala) = &spec.scala {
            read.push(scala.home.clone());
            // the JDK the REPL runs on (…/lib/jvm/<jdk>/bin/java)
            read.extend(
                scala
                    .java
                    .parent()
                    .and_then(Path::parent)
                    .map(Path::to_path_buf),
            );
        }
        let mut ro: Vec<&Path> = read.iter().map(|p| p.as_path()).collect();
        ro.extend([spec.engine_dir.as_path(), spec.sources.as_path()]);
        let view = View {
            rw: vec![&scratch, &dbfs, &warehouse],
            ro,
            cwd: &scratch,
        };
        let mut command = spec.isolation.command(&python, &view);
        Isolation::base_env(&mut command, &scratch);
        let module = match &spec.scala {
            Some(scala) => {
                command
                    .env("KILN_SCALA_HOME", &scala.home)
                    .env("KILN_JAVA", &scala.java);
                "kiln_kernel.scala_kernel"
            }
            None => "kiln_kernel.kernel",
        };
        command
            .args(["-u", "-m", module])
            .env("PYTHONPATH", &spec.sources)
            .env("KILN_SPARK_URL", &spec.spark_url)
            .env("KILN_DBFS_ROOT", &spec.dbfs_root)
            .env("KILN_EXTERNAL_LOCATIONS", spec.isolation.external_env())
            .env("KILN_CLUSTER_ID", &spec.cluster_id)
            .env("MPLBACKEND", "Agg")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        kiln_core::process::spawn_as(command.as_std_mut(), spec.identity.as_ref());
        let mut child = kiln_core::process::spawn(command).map_err(|e| {
            remove_scratch(scratch.clone());
            Error::new(
                ErrorCode::TemporarilyUnavailable,
                format!("cannot start a kernel: {e}"),
            )
        })?;
        let pid = child.id().unwrap_or(0);
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => return Err(Error::internal("start a kernel", "no pipes")),
        };
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (tx, events) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_events(stdout, tx, ready_tx));
        let mut kernel = Kernel {
            child,
            stdin,
            pid,
            events,
            reader,
            scratch,
        };
        match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
            Ok(Ok(())) => Ok(kernel),
            _ => {
                kernel.kill().await;
                Err(Error::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the kernel failed to start; see kernel.log",
                ))
            }
        }
    }

    /// Sends one command to run.
    pub async fn execute(
        &mut self,
        id: &str,
        language: &str,
        code: &str,
        options: &Value,
        api: &Value,
    ) -> Result<()> {
        let message = json!({"op": "execute", "id": id, "language": language, "code": code, "options": options, "api": api});
        let line = message.to_string() + "\n";
        self.stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| Error::internal("send a command to the kernel", e))?;
        self.stdin
            .flush()
            .await
            .map_err(|e| Error::internal("send a command to the kernel", e))
    }

    /// Interrupts the running command (SIGINT).
    pub fn interrupt(&self) {
        signal(kiln_core::process::signal_target(self.pid), libc::SIGINT);
    }

    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.reader.abort();
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.reader.abort();
        remove_scratch(std::mem::take(&mut self.scratch));
    }
}

/// Removes a kernel's scratch directory off the async workers.
fn remove_scratch(dir: PathBuf) {
    if dir.as_os_str().is_empty() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(move || std::fs::remove_dir_all(dir));
        }
        Err(_) => {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn read_events(
    stdout: tokio::process::ChildStdout,
    tx: mpsc::UnboundedSender<KernelEvent>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                let Ok(message) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let id = message["id"].as_str().unwrap_or_default().to_string();
                match message["event"].as_str() {
                    Some("ready") => {
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                    }
                    Some("started") => {
                        let _ = tx.send(KernelEvent::Started(id));
                    }
                    Some("done") => {
                        let status = message["status"].as_str().unwrap_or("Error").to_string();
                        let _ = tx.send(KernelEvent::Done {
                            id,
                            status,
                            results: message["results"].clone(),
                        });
                    }
                    _ => {}
                }
            }
            Ok(None) | Err(_) => {
                let _ = tx.send(KernelEvent::Exited("the kernel process exited".into()));
                return;
            }
        }
    }
}

//! One kernel process: `python -m kiln_kernel.kernel` in the cluster's
//! Python environment, speaking line-delimited JSON (see
//! `crates/kiln-compute/python/kiln_kernel/protocol.py`). Its sources
//! (`crates/kiln-compute/python/kiln_kernel`) are embedded in the binary and
//! started like every Kiln Python process ([`crate::python_process`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_core::process::OsIdentity;

use kiln_core::{Error, ErrorCode, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::engine::signal;
use crate::isolation::Isolation;
use crate::python_process::{handshake, remove_scratch, PythonProcess};
use crate::runtime::Runtime;

/// The kernel package, embedded.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "kiln_kernel/__init__.py",
        include_str!("../python/kiln_kernel/__init__.py"),
    ),
    (
        "kiln_kernel/protocol.py",
        include_str!("../python/kiln_kernel/protocol.py"),
    ),
    (
        "kiln_kernel/results.py",
        include_str!("../python/kiln_kernel/results.py"),
    ),
    (
        "kiln_kernel/dbutils.py",
        include_str!("../python/kiln_kernel/dbutils.py"),
    ),
    (
        "kiln_kernel/magics.py",
        include_str!("../python/kiln_kernel/magics.py"),
    ),
    (
        "kiln_kernel/notebook_run.py",
        include_str!("../python/kiln_kernel/notebook_run.py"),
    ),
    (
        "kiln_kernel/dbt_run.py",
        include_str!("../python/kiln_kernel/dbt_run.py"),
    ),
    (
        "kiln_kernel/kernel.py",
        include_str!("../python/kiln_kernel/kernel.py"),
    ),
    (
        "kiln_kernel/scala_kernel.py",
        include_str!("../python/kiln_kernel/scala_kernel.py"),
    ),
];

/// Writes the embedded kernel package under `cache` (once per content hash)
/// and returns the directory to put on `PYTHONPATH`.
pub fn install_sources(cache: &Path) -> Result<PathBuf> {
    crate::python_process::install(cache, "kernel", SOURCES)
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
        outcome: Outcome,
        results: Value,
    },
    Exited(String),
}

/// How a command ended, as the kernel reports it (`"status"` of a `done` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    Cancelled,
    Error,
}

impl Outcome {
    /// The kernel's spelling; anything else is an error.
    pub fn parse(status: Option<&str>) -> Self {
        match status {
            Some("Finished") => Self::Finished,
            Some("Cancelled") => Self::Cancelled,
            _ => Self::Error,
        }
    }
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
        let python =
            crate::pyenv::ensure(runtime, &spec.engine_dir, spec.cluster_identity.as_ref()).await?;
        let mut read = runtime.read_paths();
        let mut env = vec![
            ("KILN_CLUSTER_ID", spec.cluster_id.clone().into()),
            ("MPLBACKEND", "Agg".into()),
        ];
        let module = match &spec.scala {
            Some(scala) => {
                read.push(scala.home.clone());
                // the JDK the REPL runs on (…/lib/jvm/<jdk>/bin/java)
                read.extend(
                    scala
                        .java
                        .parent()
                        .and_then(Path::parent)
                        .map(Path::to_path_buf),
                );
                env.push(("KILN_SCALA_HOME", scala.home.clone().into()));
                env.push(("KILN_JAVA", scala.java.clone().into()));
                "kiln_kernel.scala_kernel"
            }
            None => "kiln_kernel.kernel",
        };
        let mut read: Vec<&Path> = read.iter().map(PathBuf::as_path).collect();
        read.push(&spec.engine_dir);
        let started = PythonProcess {
            what: "a kernel",
            python: &python,
            module,
            sources: vec![&spec.sources],
            spark_url: &spec.spark_url,
            dbfs_root: &spec.dbfs_root,
            log: &spec.log,
            isolation: &spec.isolation,
            identity: spec.identity.as_ref(),
            read,
            env,
            reads_table_logs: None,
        }
        .spawn()?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (tx, events) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_events(started.stdout, tx, ready_tx));
        let mut kernel = Kernel {
            child: started.child,
            stdin: started.stdin,
            pid: started.pid,
            events,
            reader,
            scratch: started.scratch,
        };
        match handshake(ready_rx).await {
            Some(()) => Ok(kernel),
            None => {
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
                        let _ = tx.send(KernelEvent::Done {
                            id,
                            outcome: Outcome::parse(message["status"].as_str()),
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

#[cfg(test)]
mod tests {
    /// Every module of the kernel package is embedded (a new one left out
    /// would fail only when a command imports it).
    #[test]
    fn every_kernel_module_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/kiln_kernel");
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with(".py") {
                let path = format!("kiln_kernel/{name}");
                if !super::SOURCES.iter().any(|(p, _)| *p == path) {
                    missing.push(path);
                }
            }
        }
        assert!(missing.is_empty(), "not embedded: {missing:?}");
    }
}

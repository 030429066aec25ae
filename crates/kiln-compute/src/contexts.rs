//! Execution contexts and commands (REST API 1.2).
//!
//! Each context is its own kernel process with its own namespace and its own
//! Spark Connect session on the cluster's engine. Commands of a context run in
//! order on the context's worker task. Contexts are runtime state, like on
//! Databricks: they end (status `Error`) when their cluster terminates or
//! restarts, and do not survive a Kiln restart (their kernels die with Kiln).
//!
//! Invariants:
//! - a command's state changes only through `next_command_state`;
//! - cancel and execute change state before they return (the SDK polls at once);
//! - one warm, pre-connected kernel is kept per RUNNING cluster, so creating a
//!   context usually costs no process start.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kiln_core::{ids, Error, Result};
use serde_json::Value;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clusters::Clusters;
use crate::command_lifecycle::{next_command_state, CommandEvent, CommandState, ContextStatus};
use crate::kernel::{Kernel, KernelSpec};
use crate::lifecycle::ClusterState;

/// Languages a context or command may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Python,
    Sql,
    Scala,
}

impl Language {
    /// Parses the wire value; R needs an R runtime Kiln does not have.
    pub fn parse(value: &str) -> Result<Self> {
        match value.to_ascii_lowercase().as_str() {
            "python" => Ok(Self::Python),
            "sql" => Ok(Self::Sql),
            "scala" => Ok(Self::Scala),
            "r" => Err(Error::invalid(format!(
                "Language {value} is not supported on this cluster: Kiln has no R runtime. Supported languages: python, sql, scala."
            ))),
            _ => Err(Error::invalid(format!("Invalid language {value}. Supported languages: python, sql, scala."))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Python => "python",
            Self::Sql => "sql",
            Self::Scala => "scala",
        }
    }
}

/// A command as the status call reports it.
#[derive(Debug, Clone)]
pub struct CommandView {
    pub id: String,
    pub state: CommandState,
    pub results: Option<Value>,
}

pub(crate) struct CommandEntry {
    pub state: CommandState,
    pub language: Language,
    pub code: String,
    pub options: Value,
    pub results: Option<Value>,
    /// Sent to the kernel, which has not yet said it started: still Queued,
    /// but a cancel must interrupt the kernel rather than just mark it.
    pub dispatched: bool,
}

pub(crate) struct ContextInner {
    pub status: ContextStatus,
    pub commands: HashMap<String, CommandEntry>,
    pub order: Vec<String>,
    pub kernel_pid: u32,
}

pub struct Context {
    pub id: String,
    pub cluster_id: String,
    pub language: Language,
    pub owner: String,
    /// The owner's context credential, passed to the kernel with each command.
    pub credential: String,
    pub(crate) engine_port: u16,
    pub(crate) inner: Mutex<ContextInner>,
    pub(crate) queue: mpsc::UnboundedSender<String>,
    pub(crate) stop: CancellationToken,
    /// Moves whenever one of its commands changes state (to wait on).
    pub(crate) changes: tokio::sync::watch::Sender<u64>,
}

pub(crate) struct WarmKernel {
    pub kernel: Kernel,
    pub engine_port: u16,
}

pub struct Contexts {
    pub(crate) clusters: Arc<Clusters>,
    pub(crate) sources: PathBuf,
    /// Where kernels reach Kiln's API (e.g. for `dbutils.secrets`).
    pub(crate) api_url: String,
    pub(crate) contexts: Mutex<HashMap<String, Arc<Context>>>,
    pub(crate) warm: Mutex<HashMap<String, WarmKernel>>,
    /// Warm kernels being started: cluster → (engine port, cancel).
    pub(crate) warming: Mutex<HashMap<String, (u16, CancellationToken)>>,
    pub(crate) tasks: Mutex<JoinSet<()>>,
    pub(crate) nudge: Notify,
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>> {
    m.lock()
        .map_err(|_| Error::internal("lock contexts", "poisoned"))
}

fn context_not_found(context_id: &str) -> Error {
    Error::not_found(format!("Context {context_id} does not exist"))
}

impl Context {
    pub fn status(&self) -> ContextStatus {
        self.inner
            .lock()
            .map(|i| i.status)
            .unwrap_or(ContextStatus::Error)
    }

    /// Applies a command event; returns the new state.
    pub(crate) fn advance(
        &self,
        command_id: &str,
        event: CommandEvent,
        results: Option<Value>,
    ) -> Result<CommandState> {
        let mut inner = lock(&self.inner)?;
        let entry = inner
            .commands
            .get_mut(command_id)
            .ok_or_else(|| Error::not_found(format!("Command {command_id} does not exist")))?;
        let was_terminal = entry.state.is_terminal();
        let next = next_command_state(command_id, entry.state, event)?;
        entry.state = next;
        // A finished command keeps its outcome, whatever arrives later.
        if results.is_some() && !was_terminal {
            entry.results = results;
        }
        drop(inner);
        self.changes.send_modify(|v| *v += 1);
        Ok(next)
    }

    /// Ends the context: every unfinished command fails with `cause`.
    pub(crate) fn fail(&self, cause: &str) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.status = crate::command_lifecycle::next_context_status(
            inner.status,
            crate::command_lifecycle::ContextEvent::Ended,
        );
        for (id, entry) in inner.commands.iter_mut() {
            if let Ok(next) = next_command_state(id, entry.state, CommandEvent::Fail) {
                entry.state = next;
                entry.results = Some(crate::contexts::error_results("ContextError", cause));
            }
        }
        drop(inner);
        self.changes.send_modify(|v| *v += 1);
        self.stop.cancel();
    }
}

/// A `results` object for an error Kiln itself reports.
pub(crate) fn error_results(kind: &str, cause: &str) -> Value {
    serde_json::json!({"resultType": "error", "summary": format!("{kind}: {cause}"), "cause": format!("{kind}: {cause}")})
}

impl Contexts {
    pub fn new(clusters: Arc<Clusters>, sources: PathBuf, api_url: String) -> Arc<Self> {
        Arc::new(Self {
            clusters,
            sources,
            api_url,
            contexts: Mutex::new(HashMap::new()),
            warm: Mutex::new(HashMap::new()),
            warming: Mutex::new(HashMap::new()),
            tasks: Mutex::new(JoinSet::new()),
            nudge: Notify::new(),
        })
    }

    pub(crate) fn kernel_spec(&self, cluster_id: &str, engine_port: u16) -> KernelSpec {
        let isolation = self.clusters.isolation().clone();
        KernelSpec {
            cluster_id: cluster_id.into(),
            spark_url: self.clusters.spark_url(cluster_id, engine_port),
            dbfs_root: isolation.dbfs(),
            engine_dir: self.clusters.engine_dir(cluster_id),
            sources: self.sources.clone(),
            log: self.clusters.kernel_log(cluster_id),
            scala: None,
            cluster_identity: isolation.cluster_identity(cluster_id),
            identity: isolation.process_identity(cluster_id),
            isolation,
        }
    }

    /// The engine port of a RUNNING cluster, or the Databricks error for others.
    fn running_port(&self, cluster_id: &str) -> Result<u16> {
        let record = self.clusters.get(cluster_id)?;
        let state = record.state;
        match (state, record.engine_port) {
            (ClusterState::Running, Some(port)) => Ok(port),
            _ => Err(Error::invalid_state(format!(
                "Cluster {cluster_id} is not running (state {}); start it before creating a context.",
                record.state.as_str()
            ))),
        }
    }

    pub fn create_context(
        self: &Arc<Self>,
        owner: &str,
        credential: String,
        cluster_id: &str,
        language: Language,
    ) -> Result<Arc<Context>> {
        let engine_port = self.running_port(cluster_id)?;
        // Warm kernels are Python's; a Scala context starts its own REPL.
        let warm = if language == Language::Scala {
            None
        } else {
            lock(&self.warm)?
                .remove(cluster_id)
                .filter(|w| w.engine_port == engine_port)
                .map(|w| w.kernel)
        };
        let (queue, jobs) = mpsc::unbounded_channel();
        let context = Arc::new(Context {
            id: ids::numeric_id(),
            cluster_id: cluster_id.into(),
            language,
            owner: owner.into(),
            credential,
            engine_port,
            inner: Mutex::new(ContextInner {
                status: if warm.is_some() {
                    ContextStatus::Running
                } else {
                    ContextStatus::Pending
                },
                commands: HashMap::new(),
                order: Vec::new(),
                kernel_pid: warm.as_ref().map(|k| k.pid).unwrap_or(0),
            }),
            queue,
            stop: CancellationToken::new(),
            changes: tokio::sync::watch::Sender::new(0),
        });
        lock(&self.contexts)?.insert(context.id.clone(), context.clone());
        let worker = crate::context_worker::run(self.clone(), context.clone(), warm, jobs);
        lock(&self.tasks)?.spawn(worker);
        self.clusters.touch(cluster_id);
        self.nudge.notify_one();
        Ok(context)
    }

    pub fn context(&self, cluster_id: &str, context_id: &str) -> Result<Arc<Context>> {
        lock(&self.contexts)?
            .get(context_id)
            .filter(|c| c.cluster_id == cluster_id)
            .cloned()
            .ok_or_else(|| context_not_found(context_id))
    }

    /// Whether a context exists and has not ended (its credential is valid).
    pub fn is_live(&self, context_id: &str) -> bool {
        lock(&self.contexts)
            .ok()
            .and_then(|map| map.get(context_id).cloned())
            .is_some_and(|c| c.status() != ContextStatus::Error)
    }

    pub fn destroy_context(&self, cluster_id: &str, context_id: &str) -> Result<()> {
        let context = self.context(cluster_id, context_id)?;
        lock(&self.contexts)?.remove(context_id);
        context.fail("the context was destroyed");
        Ok(())
    }

    pub fn execute(
        &self,
        cluster_id: &str,
        context_id: &str,
        language: Option<Language>,
        code: String,
        options: Value,
    ) -> Result<String> {
        let context = self.context(cluster_id, context_id)?;
        let id = ids::random_hex(16);
        {
            let mut inner = lock(&context.inner)?;
            if inner.status == ContextStatus::Error {
                return Err(Error::invalid_state(format!(
                    "Context {context_id} is in Error state; create a new context."
                )));
            }
            inner.commands.insert(
                id.clone(),
                CommandEntry {
                    dispatched: false,
                    state: CommandState::Queued,
                    language: language.unwrap_or(context.language),
                    code,
                    options,
                    results: None,
                },
            );
            inner.order.push(id.clone());
        }
        context
            .queue
            .send(id.clone())
            .map_err(|_| Error::invalid_state(format!("Context {context_id} has ended")))?;
        self.clusters.touch(cluster_id);
        Ok(id)
    }

    pub fn command(
        &self,
        cluster_id: &str,
        context_id: &str,
        command_id: &str,
    ) -> Result<CommandView> {
        let context = self.context(cluster_id, context_id)?;
        let inner = lock(&context.inner)?;
        let entry = inner
            .commands
            .get(command_id)
            .ok_or_else(|| Error::not_found(format!("Command {command_id} does not exist")))?;
        Ok(CommandView {
            id: command_id.into(),
            state: entry.state,
            results: entry.results.clone(),
        })
    }

    /// The command once it has ended (Finished, Cancelled or Error), watching
    /// its context's changes.
    pub async fn wait_command(
        &self,
        cluster_id: &str,
        context_id: &str,
        command_id: &str,
    ) -> Result<CommandView> {
        let mut changes = self.context(cluster_id, context_id)?.changes.subscribe();
        loop {
            let view = self.command(cluster_id, context_id, command_id)?;
            if view.state.is_terminal() {
                return Ok(view);
            }
            if changes.changed().await.is_err() {
                return Err(Error::invalid_state(format!(
                    "Context {context_id} has ended"
                )));
            }
        }
    }

    /// Cancels a queued command at once, or interrupts a running one.
    pub fn cancel(
        &self,
        cluster_id: &str,
        context_id: &str,
        command_id: &str,
    ) -> Result<CommandState> {
        let context = self.context(cluster_id, context_id)?;
        let cancelled = crate::contexts::error_results(
            "CommandCancelledException",
            "the command was cancelled",
        );
        // A command already handed to the kernel counts as started for its
        // cancellation: Queued → Running → Cancelling, and the kernel is interrupted.
        let dispatched = lock(&context.inner)?
            .commands
            .get(command_id)
            .is_some_and(|c| c.dispatched && c.state == CommandState::Queued);
        if dispatched {
            context.advance(command_id, CommandEvent::Start, None)?;
        }
        let state = context.advance(command_id, CommandEvent::Cancel, Some(cancelled))?;
        if state == CommandState::Cancelling {
            let pid = lock(&context.inner)?.kernel_pid;
            crate::engine::signal(kiln_core::process::signal_target(pid), libc::SIGINT);
        }
        Ok(state)
    }
}

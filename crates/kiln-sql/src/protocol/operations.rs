//! A protocol operation: a statement (or a metadata call) of a session, run
//! in a task, its state as TOperationState, its result framed for fetching.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_core::time::now_ms;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::batches::{self, Framed};
use super::tcli::TOperationState;
use super::{poisoned, SqlProtocol, Target};
use crate::session::{EngineTarget, Session};

/// How long a cluster target may take to start.
const CLUSTER_START: Duration = Duration::from_secs(600);

/// A fetch: its first row, its batches (bytes, rows), and whether more are left.
pub type Page = (i64, Vec<(Vec<u8>, i64)>, bool);

pub struct Operation {
    pub session: Vec<u8>,
    /// TOperationType.
    pub kind: i32,
    pub cancel: CancellationToken,
    /// The client reads LZ4-framed batches.
    pub lz4: bool,
    /// The client reads Arrow (else: column-based results).
    pub arrow: bool,
    state: Mutex<OpState>,
    done: watch::Sender<bool>,
}

#[derive(Debug, Clone)]
pub struct OpState {
    pub state: TOperationState,
    pub error: Option<String>,
    /// Shared, so a look at the state never copies the rows.
    pub result: Option<Arc<Framed>>,
    /// The next batch FetchResults hands out, and its first row.
    pub next_batch: usize,
    pub next_row: i64,
    pub started_ms: i64,
    pub completed_ms: i64,
}

impl Operation {
    pub fn new(
        session: &[u8],
        kind: i32,
        (arrow, lz4): (bool, bool),
        cancel: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            session: session.to_vec(),
            kind,
            cancel,
            lz4: lz4 && arrow,
            arrow,
            state: Mutex::new(OpState {
                state: TOperationState::PENDING_STATE,
                error: None,
                result: None,
                next_batch: 0,
                next_row: 0,
                started_ms: now_ms(),
                completed_ms: 0,
            }),
            done: watch::Sender::new(false),
        })
    }

    pub fn snapshot(&self) -> Option<OpState> {
        self.state.lock().ok().map(|s| s.clone())
    }

    fn set(&self, change: impl FnOnce(&mut OpState)) {
        if let Ok(mut s) = self.state.lock() {
            change(&mut s);
        }
    }

    pub fn running(&self) {
        self.set(|s| s.state = TOperationState::RUNNING_STATE);
    }

    /// Ends the operation (once).
    pub fn end(&self, outcome: Result<Framed, String>) {
        let cancelled = self.cancel.is_cancelled();
        self.set(|s| {
            if matches!(
                s.state,
                TOperationState::FINISHED_STATE
                    | TOperationState::ERROR_STATE
                    | TOperationState::CANCELED_STATE
                    | TOperationState::CLOSED_STATE
            ) {
                return;
            }
            s.completed_ms = now_ms();
            match outcome {
                _ if cancelled => s.state = TOperationState::CANCELED_STATE,
                Ok(framed) => {
                    s.state = TOperationState::FINISHED_STATE;
                    s.result = Some(Arc::new(framed));
                }
                Err(message) => {
                    s.state = TOperationState::ERROR_STATE;
                    s.error = Some(message);
                }
            }
        });
        self.done.send_replace(true);
    }

    /// Waits up to `timeout` for the end; whether it ended.
    pub async fn wait(&self, timeout: Duration) -> bool {
        let mut rx = self.done.subscribe();
        let ended = tokio::time::timeout(timeout, rx.wait_for(|d| *d))
            .await
            .is_ok();
        ended
    }

    /// The next batches, up to `max_rows` (at least one batch when any is
    /// left): (first row, batches, more left).
    pub fn take(&self, max_rows: i64) -> Option<Page> {
        let mut s = self.state.lock().ok()?;
        let total = s.result.as_ref().map(|r| r.batches.len()).unwrap_or(0);
        let start_row = s.next_row;
        let mut out = Vec::new();
        let mut rows = 0;
        while s.next_batch < total {
            let (bytes, n) = s.result.as_ref()?.batches.get(s.next_batch)?.clone();
            if !out.is_empty() && rows + n > max_rows.max(1) {
                break;
            }
            let bytes = if self.lz4 {
                batches::lz4(&bytes).ok()?
            } else {
                bytes
            };
            out.push((bytes, n));
            rows += n;
            s.next_batch += 1;
            s.next_row += n;
        }
        let more = s.next_batch < total;
        Some((start_row, out, more))
    }
}

fn mark_schema_set(protocol: &SqlProtocol, session: &[u8], cluster_id: &str) {
    if let Ok(mut sessions) = protocol.sessions.lock() {
        if let Some((_, set)) = sessions
            .get_mut(session)
            .and_then(|s| s.spark.get_mut(cluster_id))
        {
            *set = true;
        }
    }
}

/// A statement's work: an engine of the session's target, the session's
/// Spark Connect session there, the statement, its rows framed.
pub(crate) async fn execute(
    protocol: Arc<SqlProtocol>,
    op: Arc<Operation>,
    statement: String,
    named: HashMap<String, Vec<u8>>,
    positional: Vec<Vec<u8>>,
) -> Result<Framed, String> {
    let (user, target, catalog, schema) = {
        let sessions = protocol.sessions.lock().map_err(|e| poisoned(e).message)?;
        let s = sessions.get(&op.session).ok_or("the session was closed")?;
        (
            s.user.clone(),
            s.target.clone(),
            s.catalog.clone(),
            s.schema.clone(),
        )
    };
    let mut _lease = None;
    let mut tag_answer = None;
    let engine = match &target {
        Target::Warehouse(id) => {
            let lease = protocol
                .warehouses
                .acquire(id, &op.cancel)
                .await
                .map_err(|e| e.message)?;
            let t = lease.target.clone();
            _lease = Some(lease);
            t
        }
        Target::Cluster(id) => {
            let c = protocol.clusters.get(id).map_err(|e| e.message)?;
            if let Some(key) = crate::cluster_tags::parse(&statement) {
                tag_answer = Some(crate::cluster_tags::answer(
                    &key,
                    &crate::cluster_tags::value(&c, &key),
                ));
            }
            if matches!(c.state.as_str(), "TERMINATED" | "ERROR") {
                protocol
                    .clusters
                    .start(&user, id)
                    .await
                    .map_err(|e| e.message)?;
            }
            let port =
                kiln_compute::cluster_wait::wait_running(&protocol.clusters, id, CLUSTER_START)
                    .await
                    .map_err(|e| e.message)?;
            protocol.clusters.touch(id);
            EngineTarget {
                front: protocol.clusters.settings().front_port,
                cluster_id: id.clone(),
                engine_port: port,
            }
        }
    };
    op.running();
    let current = (
        catalog
            .as_deref()
            .filter(|c| !c.is_empty())
            .unwrap_or("main"),
        schema
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or("default"),
    );
    let statement = match tag_answer {
        Some(answer) => answer,
        None => crate::translate(&protocol.catalog, &statement, current)?,
    };
    let (spark, fresh, schema_set) = {
        let mut sessions = protocol.sessions.lock().map_err(|e| poisoned(e).message)?;
        let s = sessions
            .get_mut(&op.session)
            .ok_or("the session was closed")?;
        match s.spark.get(&engine.cluster_id) {
            Some((existing, set)) if existing.target.engine_port == engine.engine_port => {
                (existing.clone(), false, *set)
            }
            _ => {
                let fresh = Arc::new(Session::new(engine.clone(), &user));
                s.spark
                    .insert(engine.cluster_id.clone(), (fresh.clone(), false));
                (fresh, true, false)
            }
        }
    };
    let operation_id = kiln_core::ids::uuid4();
    let use_stmt = |what: &str, name: &str| format!("USE {what} `{}`", name.replace('`', "``"));
    let work = async {
        if fresh {
            if let Some(c) = catalog.as_deref().filter(|c| !c.is_empty()) {
                spark
                    .run(
                        &use_stmt("CATALOG", c),
                        HashMap::new(),
                        &kiln_core::ids::uuid4(),
                    )
                    .await?;
            }
        }
        match schema.as_deref().filter(|s| !s.is_empty()) {
            // a schema that does not exist yet (dbt creates its own) is set once it does
            Some(sc) if !schema_set => {
                let used = spark
                    .run(
                        &use_stmt("SCHEMA", sc),
                        HashMap::new(),
                        &kiln_core::ids::uuid4(),
                    )
                    .await;
                if used.is_ok() {
                    mark_schema_set(&protocol, &op.session, &engine.cluster_id);
                }
            }
            Some(_) => {}
            None => mark_schema_set(&protocol, &op.session, &engine.cluster_id),
        }
        spark
            .run_args(&statement, named, positional, &operation_id)
            .await
    };
    let collected = tokio::select! {
        got = work => got.map_err(|s| s.message().to_string())?,
        _ = op.cancel.cancelled() => {
            let _ = spark.interrupt(&operation_id).await;
            return Err("The operation was canceled.".into());
        }
    };
    batches::from_engine(&collected)
}

//! The Databricks SQL protocol: Thrift TCLIService (binary protocol) in HTTP
//! POST bodies, what databricks-sql-connector, dbt-databricks and the JDBC/ODBC
//! drivers speak, at `/sql/1.0/warehouses/<id>` and at
//! `sql/protocolv1/o/<org>/<cluster>`. The codec is generated from
//! `thrift/tcli.thrift` (`tcli.rs`); `handler.rs` answers the calls.
//!
//! A session is the caller's, on one warehouse or cluster; its statements
//! run as operations in tasks the warehouses service owns, through a Spark
//! Connect session per engine (so `USE` and `SET` carry over within it).

#[allow(
    clippy::all,
    clippy::unwrap_used,
    clippy::expect_used,
    dead_code,
    unused_imports,
    unused_extern_crates,
    non_camel_case_types,
    non_snake_case
)]
#[rustfmt::skip]
pub mod tcli;

pub mod batches;
mod columns;
mod handler;
mod metadata;
mod operations;
mod replies;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kiln_catalog::Catalog;
use kiln_compute::clusters::Clusters;
use kiln_core::{Error, Result};
use thrift::protocol::{TBinaryInputProtocol, TBinaryOutputProtocol};
use thrift::server::TProcessor;

use crate::history::History;
use crate::session::Session;
use crate::warehouses::Warehouses;
pub use operations::Operation;

/// What a protocol path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Warehouse(String),
    Cluster(String),
}

/// Who calls, and where.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: String,
    pub target: Target,
}

/// An open session.
pub(crate) struct SqlSession {
    pub user: String,
    pub target: Target,
    pub catalog: Option<String>,
    pub schema: Option<String>,
    /// A Spark Connect session per engine (cluster id) it ran on, and
    /// whether the initial schema is set there yet (it may not exist yet:
    /// dbt creates its schema through the session it names).
    pub spark: HashMap<String, (Arc<Session>, bool)>,
    /// Whether the client reads Arrow (it says so with each statement).
    pub arrow: bool,
}

pub struct SqlProtocol {
    pub(crate) warehouses: Arc<Warehouses>,
    pub(crate) clusters: Arc<Clusters>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) history: History,
    pub(crate) sessions: Mutex<HashMap<Vec<u8>, SqlSession>>,
    pub(crate) operations: Mutex<HashMap<Vec<u8>, Arc<Operation>>>,
    runtime: tokio::runtime::Handle,
}

pub(crate) fn poisoned<T>(_: T) -> Error {
    Error::internal("sql protocol", "lock poisoned")
}

impl SqlProtocol {
    pub fn new(
        warehouses: Arc<Warehouses>,
        clusters: Arc<Clusters>,
        catalog: Arc<Catalog>,
        history: History,
    ) -> Arc<Self> {
        Arc::new(Self {
            warehouses,
            clusters,
            catalog,
            history,
            sessions: Mutex::default(),
            operations: Mutex::default(),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Answers one Thrift message (a POST body); blocking, so run it on a
    /// blocking thread.
    pub fn process(self: &Arc<Self>, caller: Caller, body: &[u8]) -> Result<Vec<u8>> {
        let handler = handler::Handler {
            protocol: self.clone(),
            caller,
        };
        let processor = tcli::TCLIServiceSyncProcessor::new(handler);
        let mut input = TBinaryInputProtocol::new(std::io::Cursor::new(body), true);
        let mut out = Vec::new();
        {
            let mut output = TBinaryOutputProtocol::new(&mut out, true);
            processor
                .process(&mut input, &mut output)
                .map_err(|e| Error::invalid(format!("a malformed SQL protocol message: {e}")))?;
        }
        Ok(out)
    }

    /// Drops a session's operations and engine sessions (CloseSession).
    pub(crate) fn close_session(&self, guid: &[u8]) -> Option<SqlSession> {
        let session = self.sessions.lock().ok()?.remove(guid)?;
        if let Ok(mut ops) = self.operations.lock() {
            ops.retain(|_, op| {
                let keep = op.session != guid;
                if !keep {
                    op.cancel.cancel();
                }
                keep
            });
        }
        let spark: Vec<Arc<Session>> = session.spark.values().map(|(s, _)| s.clone()).collect();
        self.runtime.spawn(async move {
            for s in spark {
                s.release().await;
            }
        });
        Some(session)
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    pub(crate) fn spawn<F>(&self, f: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.warehouses.tasks.spawn_on(f, &self.runtime);
    }

    /// Open sessions (`num_active_sessions` of a warehouse).
    pub fn sessions_on(&self, target: &Target) -> usize {
        self.sessions
            .lock()
            .map(|s| s.values().filter(|x| &x.target == target).count())
            .unwrap_or(0)
    }
}

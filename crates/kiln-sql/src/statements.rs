//! The Statement Execution API's statements: each runs in a task the
//! service owns, PENDING until one of its warehouse's engines has a slot
//! (a stopped warehouse is started), RUNNING on it through Spark Connect,
//! then SUCCEEDED with its result in chunks, FAILED with the engine's
//! message, or CANCELED (the engine's operation is interrupted). A caller
//! waits up to `wait_timeout` and gets the state at that moment (with
//! `on_wait_timeout` CANCEL the statement is cancelled instead).
//!
//! Results are kept for an hour after a statement ends (then CLOSED);
//! EXTERNAL_LINKS chunks are served at short-lived links that carry their
//! own token. What ran is kept in the query history (`history.rs`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kiln_core::lifecycle::Lifecycle;
use kiln_core::time::now_ms;
use kiln_core::{Error, ErrorCode, Result};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::history::{History, QueryRecord};
use crate::lifecycle::{StatementEvent, StatementLifecycle, StatementState};
use crate::params::{self, StatementParameter};
use crate::results::{self, Format, Limits, ResultSet};
use crate::session::Session;
use crate::warehouses::Warehouses;

/// How long a result is kept after its statement ends.
const RESULT_TTL_MS: i64 = 3_600_000;
/// How long an external link is valid.
pub const LINK_TTL_MS: i64 = 15 * 60_000;

/// What a client asked (`ExecuteStatementRequest`), checked.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub statement: String,
    pub warehouse_id: String,
    pub catalog: Option<String>,
    pub schema: Option<String>,
    pub parameters: Vec<StatementParameter>,
    pub row_limit: Option<i64>,
    pub byte_limit: Option<i64>,
    pub disposition: Option<String>,
    pub format: Option<String>,
    pub wait_timeout: Option<String>,
    pub on_wait_timeout: Option<String>,
}

/// A statement as the API shows it.
#[derive(Debug, Clone)]
pub struct Statement {
    pub statement_id: String,
    pub warehouse_id: String,
    pub user: String,
    pub state: StatementState,
    /// (error_code, message) of a failed or cancelled statement.
    pub error: Option<(String, String)>,
    pub result: Option<Arc<ResultSet>>,
    pub format: Format,
    pub inline: bool,
    pub ended_ms: i64,
}

struct Live {
    statement: Statement,
    cancel: CancellationToken,
    done: watch::Sender<bool>,
}

/// An external link: its statement and chunk, and when it expires.
#[derive(Debug, Clone)]
pub struct Link {
    pub statement_id: String,
    pub chunk_index: usize,
    pub expires_ms: i64,
}

pub struct Statements {
    pub warehouses: Arc<Warehouses>,
    catalog: Arc<kiln_catalog::Catalog>,
    pub history: History,
    live: RwLock<HashMap<String, Live>>,
    links: RwLock<HashMap<String, Link>>,
}

fn poisoned<T>(_: T) -> Error {
    Error::internal("statements", "lock poisoned")
}

fn not_found(id: &str) -> Error {
    Error::new(
        ErrorCode::ResourceDoesNotExist,
        format!("Statement {id} does not exist or its result has expired."),
    )
}

/// `wait_timeout`: `0s`, or 5 to 50 seconds (default 10 s).
fn wait_timeout(text: Option<&str>) -> Result<Duration> {
    let text = text.unwrap_or("10s");
    let secs = text
        .strip_suffix('s')
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n == 0 || (5..=50).contains(n))
        .ok_or_else(|| {
            Error::invalid(format!(
                "wait_timeout must be 0s or between 5s and 50s, not {text:?}."
            ))
        })?;
    Ok(Duration::from_secs(secs))
}

impl Statements {
    pub fn new(
        warehouses: Arc<Warehouses>,
        history: History,
        catalog: Arc<kiln_catalog::Catalog>,
    ) -> Arc<Self> {
        Arc::new(Self {
            warehouses,
            catalog,
            history,
            live: RwLock::default(),
            links: RwLock::default(),
        })
    }

    /// Submits a statement and waits as asked.
    pub async fn execute(self: &Arc<Self>, user: &str, req: Request) -> Result<Statement> {
        if req.statement.trim().is_empty() {
            return Err(Error::invalid("statement is required."));
        }
        let inline = match req.disposition.as_deref().unwrap_or("INLINE") {
            "INLINE" => true,
            "EXTERNAL_LINKS" => false,
            other => {
                return Err(Error::invalid(format!(
                    "disposition must be INLINE or EXTERNAL_LINKS, not {other}."
                )))
            }
        };
        let format = Format::parse(req.format.as_deref())
            .ok_or_else(|| Error::invalid("format must be JSON_ARRAY, ARROW_STREAM or CSV."))?;
        if inline && format != Format::JsonArray {
            return Err(Error::invalid(format!(
                "{} results need disposition EXTERNAL_LINKS; INLINE results are JSON_ARRAY.",
                format.as_str()
            )));
        }
        let wait = wait_timeout(req.wait_timeout.as_deref())?;
        let cancel_on_timeout = match req.on_wait_timeout.as_deref().unwrap_or("CONTINUE") {
            "CONTINUE" => false,
            "CANCEL" => true,
            other => {
                return Err(Error::invalid(format!(
                    "on_wait_timeout must be CONTINUE or CANCEL, not {other}."
                )))
            }
        };
        let limit = |v: Option<i64>, field: &str| -> Result<Option<usize>> {
            match v {
                None => Ok(None),
                Some(n) if n >= 0 => Ok(Some(n as usize)),
                Some(_) => Err(Error::invalid(format!("{field} must not be negative."))),
            }
        };
        let limits = Limits {
            row_limit: limit(req.row_limit, "row_limit")?,
            byte_limit: limit(req.byte_limit, "byte_limit")?,
        };
        let args = params::bind(&req.parameters)?;
        let warehouse = self.warehouses.get(&req.warehouse_id)?;
        if matches!(
            warehouse.state,
            crate::lifecycle::WarehouseState::Deleted | crate::lifecycle::WarehouseState::Deleting
        ) {
            return Err(crate::warehouses::not_found(&req.warehouse_id));
        }
        let id = format!("01f{}", &kiln_core::ids::uuid4().replace('-', "")[3..]);
        let statement = Statement {
            statement_id: id.clone(),
            warehouse_id: req.warehouse_id.clone(),
            user: user.into(),
            state: StatementState::Pending,
            error: None,
            result: None,
            format,
            inline,
            ended_ms: 0,
        };
        let cancel = self.warehouses.shutdown.child_token();
        let (done, mut done_rx) = watch::channel(false);
        self.live.write().map_err(poisoned)?.insert(
            id.clone(),
            Live {
                statement,
                cancel: cancel.clone(),
                done,
            },
        );
        self.history.started(QueryRecord::new(
            &id,
            &req.warehouse_id,
            user,
            &req.statement,
        ))?;
        let me = self.clone();
        let task_id = id.clone();
        self.warehouses.tasks.spawn(async move {
            me.run(&task_id, req, args, limits, cancel).await;
        });
        self.sweep();
        if !wait.is_zero() {
            let ended = tokio::time::timeout(wait, done_rx.wait_for(|d| *d))
                .await
                .is_ok();
            if !ended && cancel_on_timeout {
                self.cancel(user, &id, true)?;
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), done_rx.wait_for(|d| *d)).await;
            }
        }
        self.get(user, &id, true)
    }

    async fn run(
        self: &Arc<Self>,
        id: &str,
        req: Request,
        args: HashMap<String, Vec<u8>>,
        limits: Limits,
        cancel: CancellationToken,
    ) {
        let outcome = self.run_inner(id, &req, args, limits, &cancel).await;
        let ended = now_ms();
        let (event, error, result) = match outcome {
            Ok(result) => (StatementEvent::Succeed, None, Some(Arc::new(result))),
            Err(_) if cancel.is_cancelled() => (
                StatementEvent::Cancel,
                Some(("CANCELLED".into(), "The statement was canceled.".into())),
                None,
            ),
            Err(e) => (StatementEvent::Fail, Some(e), None),
        };
        let mut finished = None;
        if let Ok(mut live) = self.live.write() {
            if let Some(l) = live.get_mut(id) {
                let what = format!("Statement {id}");
                if let Ok(next) = StatementLifecycle::transition(&what, l.statement.state, event) {
                    l.statement.state = next;
                    l.statement.error = error;
                    l.statement.result = result;
                    l.statement.ended_ms = ended;
                }
                finished = Some(l.statement.clone());
                l.done.send_replace(true);
            }
        }
        if let Some(s) = finished {
            if let Err(e) = self.history.ended(&s) {
                tracing::warn!(statement_id = %id, error = %e.message, "record query history");
            }
        }
    }

    /// The statement's work; `Err((error_code, message))` when it fails.
    async fn run_inner(
        self: &Arc<Self>,
        id: &str,
        req: &Request,
        args: HashMap<String, Vec<u8>>,
        limits: Limits,
        cancel: &CancellationToken,
    ) -> std::result::Result<ResultSet, (String, String)> {
        let lease = self
            .warehouses
            .acquire(&req.warehouse_id, cancel)
            .await
            .map_err(|e| (e.code.as_str().to_string(), e.message))?;
        self.set_state(id, StatementEvent::Start)
            .map_err(|e| (e.code.as_str().to_string(), e.message))?;
        self.history.running(id);
        let user = self.live_user(id);
        let session = Session::new(lease.target.clone(), &user);
        let operation = kiln_core::ids::uuid4();
        let work = async {
            if let Some(c) = req.catalog.as_deref().filter(|c| !c.is_empty()) {
                session
                    .run(
                        &format!("USE CATALOG {}", quote(c)),
                        HashMap::new(),
                        &kiln_core::ids::uuid4(),
                    )
                    .await?;
            }
            if let Some(s) = req.schema.as_deref().filter(|s| !s.is_empty()) {
                session
                    .run(
                        &format!("USE SCHEMA {}", quote(s)),
                        HashMap::new(),
                        &kiln_core::ids::uuid4(),
                    )
                    .await?;
            }
            let current = (
                req.catalog.as_deref().unwrap_or("main"),
                req.schema.as_deref().unwrap_or("default"),
            );
            let sql = crate::translate(&self.catalog, &req.statement, current)
                .map_err(tonic::Status::invalid_argument)?;
            session.run(&sql, args, &operation).await
        };
        let collected = tokio::select! {
            got = work => got,
            _ = cancel.cancelled() => {
                let _ = session.interrupt(&operation).await;
                session.release().await;
                return Err(("CANCELLED".into(), "The statement was canceled.".into()));
            }
        };
        session.release().await;
        drop(lease);
        let collected =
            collected.map_err(|s| ("BAD_REQUEST".to_string(), s.message().to_string()))?;
        let (format, inline) = {
            let live = self.live.read().map_err(|_| internal())?;
            let s = &live.get(id).ok_or_else(internal)?.statement;
            (s.format, s.inline)
        };
        let result = results::build(&collected, format, inline, limits)
            .map_err(|m| ("INTERNAL_ERROR".to_string(), m))?;
        if inline && result.total_bytes() > results::INLINE_LIMIT {
            return Err((
                "BAD_REQUEST".into(),
                "The result exceeds the 25 MiB limit of INLINE results; use disposition EXTERNAL_LINKS, or a row_limit.".into(),
            ));
        }
        Ok(result)
    }

    fn live_user(&self, id: &str) -> String {
        self.live
            .read()
            .ok()
            .and_then(|l| l.get(id).map(|s| s.statement.user.clone()))
            .unwrap_or_default()
    }

    fn set_state(&self, id: &str, event: StatementEvent) -> Result<()> {
        let mut live = self.live.write().map_err(poisoned)?;
        let l = live.get_mut(id).ok_or_else(|| not_found(id))?;
        l.statement.state =
            StatementLifecycle::transition(&format!("Statement {id}"), l.statement.state, event)?;
        Ok(())
    }

    /// Runs a statement to its end (a job's SQL task): cancelled with `cancel`.
    pub async fn run_to_end(
        self: &Arc<Self>,
        user: &str,
        mut req: Request,
        cancel: &CancellationToken,
    ) -> Result<Statement> {
        req.wait_timeout = Some("0s".into());
        let started = self.execute(user, req).await?;
        let id = started.statement_id.clone();
        let mut done = {
            let live = self.live.read().map_err(poisoned)?;
            live.get(&id)
                .ok_or_else(|| not_found(&id))?
                .done
                .subscribe()
        };
        let cancelled = tokio::select! {
            _ = done.wait_for(|d| *d) => false,
            _ = cancel.cancelled() => true,
        };
        if cancelled {
            self.cancel(user, &id, true)?;
            let _ = tokio::time::timeout(Duration::from_secs(30), done.wait_for(|d| *d)).await;
        }
        self.get(user, &id, true)
    }

    /// A statement its submitter (or an admin) may see.
    pub fn get(&self, user: &str, id: &str, admin: bool) -> Result<Statement> {
        let live = self.live.read().map_err(poisoned)?;
        let l = live.get(id).ok_or_else(|| not_found(id))?;
        if l.statement.user != user && !admin {
            return Err(not_found(id));
        }
        Ok(l.statement.clone())
    }

    /// Cancels a statement (no-op once it ended).
    pub fn cancel(&self, user: &str, id: &str, admin: bool) -> Result<()> {
        self.get(user, id, admin)?;
        let live = self.live.read().map_err(poisoned)?;
        if let Some(l) = live.get(id) {
            l.cancel.cancel();
        }
        Ok(())
    }

    /// A token for chunk `index` of statement `id`'s external result.
    pub fn link(&self, id: &str, index: usize) -> Result<(String, i64)> {
        let token = kiln_core::ids::random_hex(24);
        let expires_ms = now_ms() + LINK_TTL_MS;
        self.links.write().map_err(poisoned)?.insert(
            token.clone(),
            Link {
                statement_id: id.into(),
                chunk_index: index,
                expires_ms,
            },
        );
        Ok((token, expires_ms))
    }

    /// The bytes an external link serves (no caller: the token is the key).
    pub fn fetch_link(&self, token: &str) -> Result<(Vec<u8>, Format)> {
        let link = self
            .links
            .read()
            .map_err(poisoned)?
            .get(token)
            .cloned()
            .filter(|l| l.expires_ms > now_ms())
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::PermissionDenied,
                    "The link has expired or is not valid.",
                )
            })?;
        let live = self.live.read().map_err(poisoned)?;
        let s = &live
            .get(&link.statement_id)
            .ok_or_else(|| not_found(&link.statement_id))?
            .statement;
        let chunk = s
            .result
            .as_ref()
            .and_then(|r| r.chunks.get(link.chunk_index))
            .ok_or_else(|| not_found(&link.statement_id))?;
        Ok((chunk.bytes.clone(), s.format))
    }

    /// Releases results past their time (the statement is CLOSED), forgets
    /// statements a day after they ended, and drops expired links.
    fn sweep(&self) {
        let now = now_ms();
        if let Ok(mut live) = self.live.write() {
            live.retain(|_, l| {
                l.statement.ended_ms == 0 || now - l.statement.ended_ms < 24 * RESULT_TTL_MS
            });
            for l in live.values_mut() {
                let s = &mut l.statement;
                if s.ended_ms > 0 && now - s.ended_ms >= RESULT_TTL_MS {
                    if let Some(next) = StatementLifecycle::next(s.state, StatementEvent::Close) {
                        s.state = next;
                        s.result = None;
                    }
                }
            }
        }
        if let Ok(mut links) = self.links.write() {
            links.retain(|_, l| l.expires_ms > now);
        }
    }
}

fn internal() -> (String, String) {
    ("INTERNAL_ERROR".into(), "the statement vanished".into())
}

/// A backquoted identifier (catalog or schema as the client named it).
fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_timeouts() {
        assert_eq!(wait_timeout(None).ok(), Some(Duration::from_secs(10)));
        assert_eq!(wait_timeout(Some("0s")).ok(), Some(Duration::ZERO));
        assert_eq!(
            wait_timeout(Some("50s")).ok(),
            Some(Duration::from_secs(50))
        );
        assert!(wait_timeout(Some("4s")).is_err());
        assert!(wait_timeout(Some("51s")).is_err());
        assert!(wait_timeout(Some("ten")).is_err());
    }
}

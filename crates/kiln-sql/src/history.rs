//! Query history (`/api/2.0/sql/history/queries`): every statement with its
//! text, user, warehouse, status, times and rows, kept durably once it ends
//! (the most recent `KEEP` in memory for listing).

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use kiln_core::time::now_ms;
use kiln_core::{Error, Result};
use kiln_store::{Store, Write};
use serde::{Deserialize, Serialize};

use crate::lifecycle::StatementState;
use crate::statements::Statement;

const KIND: &str = "sql_query";
const KEEP: usize = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueryRecord {
    pub query_id: String,
    pub warehouse_id: String,
    pub user_name: String,
    pub query_text: String,
    /// QUEUED, RUNNING, FINISHED, FAILED or CANCELED.
    pub status: String,
    pub query_start_time_ms: i64,
    #[serde(default)]
    pub query_end_time_ms: Option<i64>,
    #[serde(default)]
    pub rows_produced: Option<i64>,
    #[serde(default)]
    pub error_message: Option<String>,
    pub statement_type: String,
}

impl QueryRecord {
    pub fn new(id: &str, warehouse_id: &str, user: &str, text: &str) -> Self {
        let kind = text
            .split_whitespace()
            .next()
            .unwrap_or("OTHER")
            .trim_start_matches('(')
            .to_uppercase();
        let statement_type = match kind.as_str() {
            "SELECT" | "WITH" | "VALUES" => "SELECT",
            "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "CREATE" | "DROP" | "ALTER" | "USE"
            | "SHOW" | "DESCRIBE" | "REPLACE" | "TRUNCATE" | "COPY" | "GRANT" | "REVOKE" => {
                kind.as_str()
            }
            _ => "OTHER",
        };
        Self {
            query_id: id.into(),
            warehouse_id: warehouse_id.into(),
            user_name: user.into(),
            query_text: text.into(),
            status: "QUEUED".into(),
            query_start_time_ms: now_ms(),
            query_end_time_ms: None,
            rows_produced: None,
            error_message: None,
            statement_type: statement_type.into(),
        }
    }
}

/// Which queries a listing wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub statuses: Vec<String>,
    pub user_names: Vec<String>,
    pub warehouse_ids: Vec<String>,
    pub start_time_from_ms: Option<i64>,
    pub start_time_to_ms: Option<i64>,
}

#[derive(Clone)]
pub struct History {
    store: Arc<dyn Store>,
    recent: Arc<RwLock<VecDeque<QueryRecord>>>,
}

impl History {
    pub fn open(store: Arc<dyn Store>) -> Result<Self> {
        let mut all: Vec<QueryRecord> = store
            .objects(KIND)?
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect();
        all.sort_by_key(|q| q.query_start_time_ms);
        let skip = all.len().saturating_sub(KEEP);
        Ok(Self {
            store,
            recent: Arc::new(RwLock::new(all.into_iter().skip(skip).collect())),
        })
    }

    fn poisoned<T>(_: T) -> Error {
        Error::internal("query history", "lock poisoned")
    }

    pub fn started(&self, q: QueryRecord) -> Result<()> {
        let mut recent = self.recent.write().map_err(Self::poisoned)?;
        recent.push_back(q);
        while recent.len() > KEEP {
            recent.pop_front();
        }
        Ok(())
    }

    /// Records how a statement ended (durably).
    pub fn ended(&self, s: &Statement) -> Result<()> {
        let mut recent = self.recent.write().map_err(Self::poisoned)?;
        let Some(q) = recent
            .iter_mut()
            .rev()
            .find(|q| q.query_id == s.statement_id)
        else {
            return Ok(());
        };
        q.status = match s.state {
            StatementState::Succeeded | StatementState::Closed => "FINISHED",
            StatementState::Canceled => "CANCELED",
            StatementState::Failed => "FAILED",
            StatementState::Running => "RUNNING",
            StatementState::Pending => "QUEUED",
        }
        .into();
        q.query_end_time_ms = Some(s.ended_ms);
        q.rows_produced = s.result.as_ref().map(|r| r.total_rows as i64);
        q.error_message = s.error.as_ref().map(|(_, m)| m.clone());
        let record = serde_json::to_value(&*q).map_err(|e| Error::internal("encode a query", e))?;
        let key = q.query_id.clone();
        drop(recent);
        self.store.commit(vec![Write::PutObject {
            kind: KIND,
            key,
            record,
        }])
    }

    /// Records how a statement of the SQL protocol ended (durably).
    pub fn ended_protocol(
        &self,
        id: &str,
        cancelled: bool,
        rows: Option<i64>,
        error: Option<String>,
        ended_ms: i64,
    ) {
        let Ok(mut recent) = self.recent.write() else {
            return;
        };
        let Some(q) = recent.iter_mut().rev().find(|q| q.query_id == id) else {
            return;
        };
        q.status = match (cancelled, &error) {
            (true, _) => "CANCELED",
            (false, Some(_)) => "FAILED",
            (false, None) => "FINISHED",
        }
        .into();
        q.query_end_time_ms = Some(ended_ms);
        q.rows_produced = rows;
        q.error_message = error;
        let Ok(record) = serde_json::to_value(&*q) else {
            return;
        };
        let key = q.query_id.clone();
        drop(recent);
        if let Err(e) = self.store.commit(vec![Write::PutObject {
            kind: KIND,
            key,
            record,
        }]) {
            tracing::warn!(error = %e.message, "record query history");
        }
    }

    /// Marks a query RUNNING (in memory).
    pub fn running(&self, id: &str) {
        if let Ok(mut recent) = self.recent.write() {
            if let Some(q) = recent.iter_mut().rev().find(|q| q.query_id == id) {
                q.status = "RUNNING".into();
            }
        }
    }

    /// Matching queries, newest first.
    pub fn list(&self, filter: &Filter) -> Vec<QueryRecord> {
        let recent = self.recent.read().map(|r| r.clone()).unwrap_or_default();
        recent
            .into_iter()
            .rev()
            .filter(|q| filter.statuses.is_empty() || filter.statuses.contains(&q.status))
            .filter(|q| filter.user_names.is_empty() || filter.user_names.contains(&q.user_name))
            .filter(|q| {
                filter.warehouse_ids.is_empty() || filter.warehouse_ids.contains(&q.warehouse_id)
            })
            .filter(|q| {
                filter
                    .start_time_from_ms
                    .is_none_or(|t| q.query_start_time_ms >= t)
            })
            .filter(|q| {
                filter
                    .start_time_to_ms
                    .is_none_or(|t| q.query_start_time_ms <= t)
            })
            .collect()
    }
}

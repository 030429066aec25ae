//! The SQLite implementation of [`Store`]: WAL journal, `synchronous=FULL`,
//! numbered migrations embedded in the binary and applied at open. Commits go
//! through the one writer connection; reads use read-only connections of
//! their own, so a read never waits for a commit's fsync (WAL readers see the
//! last committed state).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use kiln_core::{Error, Result};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::de::DeserializeOwned;

use crate::{
    ClusterEventRecord, ClusterRecord, EventQuery, PrincipalRecord, SpSecretRecord, Store,
    TokenRecord, Write,
};

/// Numbered migrations, applied in order; `PRAGMA user_version` records the last.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../migrations/0001_init.sql")),
    (2, include_str!("../migrations/0002_unity_catalog.sql")),
    (3, include_str!("../migrations/0003_libraries.sql")),
    (4, include_str!("../migrations/0004_objects.sql")),
    (5, include_str!("../migrations/0005_pipeline_events.sql")),
];

pub struct SqliteStore {
    writer: Mutex<Connection>,
    /// Read-only connections to the same file (none for an in-memory store,
    /// which reads on the writer).
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

/// Read connections per store.
const READERS: usize = 4;
/// How long a connection waits for a lock SQLite itself holds (a checkpoint).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

fn db_err(context: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::internal(context, e)
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(db_err("open the store"))?;
        let mut store = Self::init(conn)?;
        for _ in 0..READERS {
            let reader = Connection::open_with_flags(
                path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(db_err("open the store for reading"))?;
            reader
                .busy_timeout(BUSY_TIMEOUT)
                .map_err(db_err("open the store for reading"))?;
            store.readers.push(Mutex::new(reader));
        }
        Ok(store)
    }

    /// An in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(db_err("open the store"))?;
        Self::init(conn)
    }

    fn init(mut conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err("set journal mode"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_err("set synchronous"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err("set foreign keys"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(db_err("set the busy timeout"))?;
        migrate(&mut conn)?;
        Ok(Self {
            writer: Mutex::new(conn),
            readers: Vec::new(),
            next_reader: AtomicUsize::new(0),
        })
    }

    /// Runs `f` on the writer connection.
    fn with_writer<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut guard = self
            .writer
            .lock()
            .map_err(|_| Error::internal("lock the store", "poisoned"))?;
        f(&mut guard)
    }

    /// Runs `f` on a read connection: a free one if there is, else the next in turn.
    fn with_conn<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        if self.readers.is_empty() {
            return self.with_writer(f);
        }
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let n = self.readers.len();
        for i in 0..n {
            if let Ok(mut guard) = self.readers[(start + i) % n].try_lock() {
                return f(&mut guard);
            }
        }
        let mut guard = self.readers[start % n]
            .lock()
            .map_err(|_| Error::internal("lock the store", "poisoned"))?;
        f(&mut guard)
    }

    fn list<T: DeserializeOwned>(&self, sql: &str) -> Result<Vec<T>> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(sql).map_err(db_err("read the store"))?;
            let rows = stmt
                .query_map([], |row| row.get::<_, String>(0))
                .map_err(db_err("read the store"))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(decode(&row.map_err(db_err("read the store"))?)?);
            }
            Ok(out)
        })
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let current: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err("read schema version"))?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction().map_err(db_err("begin migration"))?;
        tx.execute_batch(sql).map_err(db_err("apply migration"))?;
        tx.pragma_update(None, "user_version", version)
            .map_err(db_err("record migration"))?;
        tx.commit().map_err(db_err("commit migration"))?;
        tracing::info!(version, "applied store migration");
    }
    Ok(())
}

fn decode<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::internal("decode a record", e))
}

fn apply(tx: &Transaction<'_>, write: &Write) -> rusqlite::Result<()> {
    let enc = |v: &dyn erased::Encode| v.encode_json();
    match write {
        Write::PutPrincipal(p) => tx.execute(
            "INSERT INTO principals (id, user_name, record) VALUES (?1, ?2, ?3) \
             ON CONFLICT(id) DO UPDATE SET user_name = excluded.user_name, record = excluded.record",
            params![p.id, p.user_name, enc(p)?],
        ),
        Write::DeletePrincipal(id) => {
            tx.execute("DELETE FROM tokens WHERE principal = ?1", params![id])?;
            tx.execute("DELETE FROM sp_secrets WHERE principal = ?1", params![id])?;
            tx.execute("DELETE FROM principals WHERE id = ?1", params![id])
        }
        Write::PutToken(t) => tx.execute(
            "INSERT INTO tokens (token_id, principal, token_hash, record) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT(token_id) DO UPDATE SET record = excluded.record",
            params![t.token_id, t.principal_id, t.token_hash, enc(t)?],
        ),
        Write::DeleteToken(id) => tx.execute("DELETE FROM tokens WHERE token_id = ?1", params![id]),
        Write::PutSpSecret(s) => tx.execute(
            "INSERT INTO sp_secrets (id, principal, secret_hash, record) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT(id) DO UPDATE SET record = excluded.record",
            params![s.id, s.principal_id, s.secret_hash, enc(s)?],
        ),
        Write::DeleteSpSecret(id) => tx.execute("DELETE FROM sp_secrets WHERE id = ?1", params![id]),
        Write::PutCluster(c) => tx.execute(
            "INSERT INTO clusters (cluster_id, record) VALUES (?1, ?2) \
             ON CONFLICT(cluster_id) DO UPDATE SET record = excluded.record",
            params![c.cluster_id, enc(c)?],
        ),
        Write::DeleteCluster(id) => {
            tx.execute("DELETE FROM cluster_libraries WHERE cluster_id = ?1", params![id])?;
            tx.execute("DELETE FROM cluster_events WHERE cluster_id = ?1", params![id])?;
            tx.execute("DELETE FROM clusters WHERE cluster_id = ?1", params![id])
        }
        Write::AppendClusterEvent(e) => tx.execute(
            "INSERT INTO cluster_events (cluster_id, timestamp, event_type, details) VALUES (?1, ?2, ?3, ?4)",
            params![e.cluster_id, e.timestamp, e.event_type, e.details.to_string()],
        ),
        Write::PutUc { kind, key, record } => tx.execute(
            "INSERT INTO uc_objects (kind, key, record) VALUES (?1, ?2, ?3) \
             ON CONFLICT(kind, key) DO UPDATE SET record = excluded.record",
            params![kind, key, record.to_string()],
        ),
        Write::DeleteUc { kind, key } => {
            tx.execute("DELETE FROM uc_objects WHERE kind = ?1 AND key = ?2", params![kind, key])
        }
        Write::PutLibrary { cluster_id, key, record } => tx.execute(
            "INSERT INTO cluster_libraries (cluster_id, library_key, record) VALUES (?1, ?2, ?3) \
             ON CONFLICT(cluster_id, library_key) DO UPDATE SET record = excluded.record",
            params![cluster_id, key, record.to_string()],
        ),
        Write::DeleteLibrary { cluster_id, key } => tx.execute(
            "DELETE FROM cluster_libraries WHERE cluster_id = ?1 AND library_key = ?2",
            params![cluster_id, key],
        ),
        Write::PutObject { kind, key, record } => tx.execute(
            "INSERT INTO objects (kind, key, record) VALUES (?1, ?2, ?3) \
             ON CONFLICT(kind, key) DO UPDATE SET record = excluded.record",
            params![kind, key, record.to_string()],
        ),
        Write::DeleteObject { kind, key } => {
            tx.execute("DELETE FROM objects WHERE kind = ?1 AND key = ?2", params![kind, key])
        }
        Write::AppendPipelineEvent {
            pipeline_id,
            seq,
            record,
        } => tx.execute(
            "INSERT INTO pipeline_events (pipeline_id, seq, record) VALUES (?1, ?2, ?3)",
            params![pipeline_id, seq, record.to_string()],
        ),
        Write::DeletePipelineEvents(pipeline_id) => tx.execute(
            "DELETE FROM pipeline_events WHERE pipeline_id = ?1",
            params![pipeline_id],
        ),
        Write::PutMeta(key, value) => tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        ),
    }
    .map(|_| ())
}

/// Serialisation of records inside a SQLite statement, with the error type
/// rusqlite expects.
mod erased {
    pub trait Encode {
        fn encode_json(&self) -> rusqlite::Result<String>;
    }
    impl<T: serde::Serialize> Encode for T {
        fn encode_json(&self) -> rusqlite::Result<String> {
            serde_json::to_string(self)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
        }
    }
}

impl Store for SqliteStore {
    fn commit(&self, writes: Vec<Write>) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        // The transaction ends in an fsync (synchronous=FULL): off the async workers.
        kiln_core::blocking::run(|| {
            self.with_writer(|conn| {
                let tx = conn.transaction().map_err(db_err("begin a write"))?;
                for write in &writes {
                    apply(&tx, write).map_err(db_err("write to the store"))?;
                }
                tx.commit().map_err(db_err("commit a write"))
            })
        })
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.with_conn(|conn| {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err("read metadata"))
        })
    }

    fn principals(&self) -> Result<Vec<PrincipalRecord>> {
        self.list("SELECT record FROM principals ORDER BY rowid")
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>> {
        self.list("SELECT record FROM tokens ORDER BY rowid")
    }

    fn sp_secrets(&self) -> Result<Vec<SpSecretRecord>> {
        self.list("SELECT record FROM sp_secrets ORDER BY rowid")
    }

    fn clusters(&self) -> Result<Vec<ClusterRecord>> {
        self.list("SELECT record FROM clusters ORDER BY rowid")
    }

    fn uc_objects(&self, kind: &str) -> Result<Vec<serde_json::Value>> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT record FROM uc_objects WHERE kind = ?1 ORDER BY rowid")
                .map_err(db_err("read catalog objects"))?;
            let rows = stmt
                .query_map(params![kind], |row| row.get::<_, String>(0))
                .map_err(db_err("read catalog objects"))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(decode(&row.map_err(db_err("read catalog objects"))?)?);
            }
            Ok(out)
        })
    }

    fn objects(&self, kind: &str) -> Result<Vec<serde_json::Value>> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT record FROM objects WHERE kind = ?1 ORDER BY rowid")
                .map_err(db_err("read objects"))?;
            let rows = stmt
                .query_map(params![kind], |row| row.get::<_, String>(0))
                .map_err(db_err("read objects"))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(decode(&row.map_err(db_err("read objects"))?)?);
            }
            Ok(out)
        })
    }

    fn pipeline_events(&self, pipeline_id: &str) -> Result<Vec<serde_json::Value>> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT record FROM pipeline_events WHERE pipeline_id = ?1 ORDER BY seq",
                )
                .map_err(db_err("read pipeline events"))?;
            let rows = stmt
                .query_map(params![pipeline_id], |row| row.get::<_, String>(0))
                .map_err(db_err("read pipeline events"))?;
            let mut out = Vec::new();
            for row in rows {
                out.push(decode(&row.map_err(db_err("read pipeline events"))?)?);
            }
            Ok(out)
        })
    }

    fn libraries(&self) -> Result<Vec<serde_json::Value>> {
        self.list("SELECT record FROM cluster_libraries ORDER BY rowid")
    }

    fn cluster_events(&self, q: &EventQuery) -> Result<(Vec<ClusterEventRecord>, u64)> {
        self.with_conn(|conn| read_events(conn, q))
    }
}

fn read_events(conn: &Connection, q: &EventQuery) -> Result<(Vec<ClusterEventRecord>, u64)> {
    let order = if q.descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT cluster_id, timestamp, event_type, details FROM cluster_events \
         WHERE cluster_id = ?1 AND timestamp >= ?2 AND timestamp <= ?3 \
         ORDER BY timestamp {order}, seq {order}"
    );
    let mut stmt = conn
        .prepare_cached(&sql)
        .map_err(db_err("read cluster events"))?;
    let start = q.start_time.unwrap_or(i64::MIN);
    let end = q.end_time.unwrap_or(i64::MAX);
    let rows = stmt
        .query_map(params![q.cluster_id, start, end], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        })
        .map_err(db_err("read cluster events"))?;
    let mut matching = Vec::new();
    for row in rows {
        let (cluster_id, timestamp, event_type, details) =
            row.map_err(db_err("read cluster events"))?;
        if q.event_types.is_empty() || q.event_types.contains(&event_type) {
            matching.push(ClusterEventRecord {
                cluster_id,
                timestamp,
                event_type,
                details: decode(&details)?,
            });
        }
    }
    let total = matching.len() as u64;
    let page = matching
        .into_iter()
        .skip(q.offset as usize)
        .take(if q.limit == 0 {
            usize::MAX
        } else {
            q.limit as usize
        })
        .collect();
    Ok((page, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClusterConfig, PrincipalKind, TokenKind};

    fn principal(id: &str) -> PrincipalRecord {
        PrincipalRecord {
            id: id.into(),
            user_name: format!("{id}@example.com"),
            display_name: id.into(),
            kind: PrincipalKind::User,
            active: true,
            admin: false,
            password_hash: None,
            created_ms: 1,
        }
    }

    fn cluster(id: &str) -> ClusterRecord {
        ClusterRecord {
            cluster_id: id.into(),
            config: ClusterConfig::default(),
            creator: "a".into(),
            owner: "a".into(),
            state: crate::ClusterState::Pending,
            state_message: String::new(),
            start_time: 1,
            terminated_time: None,
            last_restarted_time: None,
            last_activity_time: 1,
            termination_reason: None,
            pinned: false,
            spark_context_id: 1,
            generation: 0,
            engine_pid: None,
            engine_port: None,
        }
    }

    fn event(id: &str, ts: i64, kind: &str) -> Write {
        Write::AppendClusterEvent(ClusterEventRecord {
            cluster_id: id.into(),
            timestamp: ts,
            event_type: kind.into(),
            details: serde_json::json!({}),
        })
    }

    #[test]
    fn survives_reopen() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::internal("tempdir", e))?;
        let path = dir.path().join("kiln.db");
        {
            let store = SqliteStore::open(&path)?;
            store.commit(vec![
                Write::PutPrincipal(principal("1")),
                Write::PutCluster(Box::new(cluster("c1"))),
            ])?;
            store.commit(vec![Write::PutMeta("workspace_id".into(), "42".into())])?;
        }
        let store = SqliteStore::open(&path)?;
        assert_eq!(store.principals()?, vec![principal("1")]);
        assert_eq!(store.clusters()?, vec![cluster("c1")]);
        assert_eq!(store.meta("workspace_id")?.as_deref(), Some("42"));
        Ok(())
    }

    #[test]
    fn reads_see_commits_and_never_wait_for_the_writer() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::internal("tempdir", e))?;
        let store = SqliteStore::open(&dir.path().join("kiln.db"))?;
        store.commit(vec![Write::PutPrincipal(principal("1"))])?;
        assert_eq!(store.principals()?, vec![principal("1")]);
        // While a commit holds the writer (e.g. during its fsync), reads go on.
        let held = store
            .writer
            .lock()
            .map_err(|_| Error::internal("lock", "poisoned"))?;
        assert_eq!(store.principals()?, vec![principal("1")]);
        drop(held);
        store.commit(vec![Write::PutPrincipal(principal("2"))])?;
        assert_eq!(store.principals()?.len(), 2);
        Ok(())
    }

    #[test]
    fn a_failed_batch_changes_nothing() -> Result<()> {
        let store = SqliteStore::open_in_memory()?;
        store.commit(vec![Write::PutPrincipal(principal("1"))])?;
        let mut duplicate = principal("2");
        duplicate.user_name = "1@example.com".into(); // violates UNIQUE(user_name)
        let result = store.commit(vec![
            Write::PutCluster(Box::new(cluster("c1"))),
            Write::PutPrincipal(duplicate),
        ]);
        assert!(result.is_err());
        assert!(store.clusters()?.is_empty());
        Ok(())
    }

    #[test]
    fn deleting_a_principal_revokes_its_tokens() -> Result<()> {
        let store = SqliteStore::open_in_memory()?;
        let token = TokenRecord {
            token_id: "t".into(),
            principal_id: "1".into(),
            token_hash: "h".into(),
            comment: None,
            created_ms: 1,
            expiry_ms: -1,
            kind: TokenKind::Personal,
        };
        store.commit(vec![
            Write::PutPrincipal(principal("1")),
            Write::PutToken(token),
        ])?;
        store.commit(vec![Write::DeletePrincipal("1".into())])?;
        assert!(store.tokens()?.is_empty());
        Ok(())
    }

    #[test]
    fn events_filter_order_and_page() -> Result<()> {
        let store = SqliteStore::open_in_memory()?;
        store.commit(vec![
            event("c1", 10, "CREATING"),
            event("c1", 20, "RUNNING"),
            event("c1", 30, "TERMINATING"),
            event("c2", 15, "CREATING"),
        ])?;
        let all = EventQuery {
            cluster_id: "c1".into(),
            ..Default::default()
        };
        let (events, total) = store.cluster_events(&all)?;
        assert_eq!(total, 3);
        assert_eq!(
            events.iter().map(|e| e.timestamp).collect::<Vec<_>>(),
            vec![10, 20, 30]
        );
        let desc = EventQuery {
            descending: true,
            limit: 2,
            offset: 1,
            ..all.clone()
        };
        let (events, total) = store.cluster_events(&desc)?;
        assert_eq!((total, events.len()), (3, 2));
        assert_eq!(events[0].timestamp, 20);
        let typed = EventQuery {
            event_types: vec!["RUNNING".into()],
            ..all
        };
        assert_eq!(store.cluster_events(&typed)?.1, 1);
        Ok(())
    }
}

//! The Warehouses service: each warehouse is one or more real engines (Kiln
//! clusters with `cluster_source` SQL, owned by the warehouse's creator),
//! started and stopped with it. The desired state is the record's; the
//! reconciler (`reconciler.rs`) moves it as the engines come up or go down,
//! stops an idle warehouse after `auto_stop_mins`, and adds engines while
//! statements queue (up to `max_num_clusters`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use kiln_compute::clusters::Clusters;
use kiln_core::lifecycle::Lifecycle;
use kiln_core::time::now_ms;
use kiln_core::{Error, ErrorCode, Result};
use kiln_store::ClusterState;
use kiln_store::{Store, Write};
use serde_json::{Map, Value};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::lifecycle::{WarehouseEvent, WarehouseLifecycle, WarehouseState};
use crate::session::EngineTarget;
use crate::warehouse::{self, WarehouseRecord, KIND};

/// Statements one engine runs at once; more queue (Databricks queues at 10).
pub const SLOTS_PER_ENGINE: usize = 10;
const CONFIG_KEY: &str = "sql_warehouse_config";

pub struct Warehouses {
    store: Arc<dyn Store>,
    pub(crate) clusters: Arc<Clusters>,
    all: RwLock<BTreeMap<String, WarehouseRecord>>,
    /// Statements running on each engine.
    busy: Mutex<HashMap<String, usize>>,
    /// Statements waiting for a slot, per warehouse.
    pub(crate) waiting: Mutex<HashMap<String, usize>>,
    /// Woken when a slot frees or an engine comes up.
    pub(crate) slot_freed: Notify,
    changes: watch::Sender<u64>,
    pub(crate) writer: tokio::sync::Mutex<()>,
    pub(crate) tasks: TaskTracker,
    pub(crate) shutdown: CancellationToken,
}

pub(crate) fn poisoned<T>(_: T) -> Error {
    Error::internal("warehouses", "lock poisoned")
}

pub fn not_found(id: &str) -> Error {
    Error::new(
        ErrorCode::ResourceDoesNotExist,
        format!("Warehouse {id} does not exist."),
    )
}

/// A slot on an engine; freed when dropped.
pub struct Lease {
    warehouses: Arc<Warehouses>,
    pub target: EngineTarget,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(mut busy) = self.warehouses.busy.lock() {
            if let Some(n) = busy.get_mut(&self.target.cluster_id) {
                *n = n.saturating_sub(1);
            }
        }
        self.warehouses.slot_freed.notify_waiters();
    }
}

impl Warehouses {
    pub fn open(store: Arc<dyn Store>, clusters: Arc<Clusters>) -> Result<Arc<Self>> {
        let mut all = BTreeMap::new();
        for v in store.objects(KIND)? {
            let w: WarehouseRecord =
                serde_json::from_value(v).map_err(|e| Error::internal("read a warehouse", e))?;
            all.insert(w.id.clone(), w);
        }
        Ok(Arc::new(Self {
            store,
            clusters,
            all: RwLock::new(all),
            busy: Mutex::default(),
            waiting: Mutex::default(),
            slot_freed: Notify::new(),
            changes: watch::Sender::new(0),
            writer: tokio::sync::Mutex::new(()),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        }))
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn commit(&self, w: WarehouseRecord) -> Result<WarehouseRecord> {
        let record =
            serde_json::to_value(&w).map_err(|e| Error::internal("encode a warehouse", e))?;
        self.store.commit(vec![Write::PutObject {
            kind: KIND,
            key: w.id.clone(),
            record,
        }])?;
        self.all
            .write()
            .map_err(poisoned)?
            .insert(w.id.clone(), w.clone());
        self.changes.send_modify(|v| *v += 1);
        Ok(w)
    }

    pub fn get(&self, id: &str) -> Result<WarehouseRecord> {
        self.all
            .read()
            .map_err(poisoned)?
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    /// Every warehouse's id (deleting and deleted ones too).
    pub fn all_ids(&self) -> Vec<String> {
        self.all
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Warehouses not deleted, oldest first.
    pub fn list(&self) -> Vec<WarehouseRecord> {
        let mut all: Vec<WarehouseRecord> = self
            .all
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        all.retain(|w| w.state != WarehouseState::Deleted);
        all.sort_by_key(|w| (w.created_at, w.id.clone()));
        all
    }

    pub(crate) fn transition(&self, w: &mut WarehouseRecord, event: WarehouseEvent) -> Result<()> {
        w.state = WarehouseLifecycle::transition(&format!("Warehouse {}", w.id), w.state, event)?;
        Ok(())
    }

    /// Creates a warehouse and starts it.
    pub async fn create(&self, actor: &str, settings: Value) -> Result<WarehouseRecord> {
        let settings = warehouse::normalize(settings)?;
        let _guard = self.writer.lock().await;
        if self.list().iter().any(|w| w.name() == settings["name"]) {
            return Err(Error::new(
                ErrorCode::ResourceAlreadyExists,
                format!(
                    "A warehouse named {} already exists.",
                    settings["name"].as_str().unwrap_or_default()
                ),
            ));
        }
        let id = kiln_core::ids::random_hex(8);
        let w = self.commit(WarehouseRecord {
            id,
            creator_name: actor.into(),
            created_at: now_ms(),
            settings,
            state: WarehouseState::Starting,
            failure: None,
            engines: Vec::new(),
            last_activity_ms: now_ms(),
        })?;
        Ok(w)
    }

    /// `edit`: the given fields over the current ones. A running warehouse
    /// whose engines change (size) is restarted on new engines.
    pub async fn edit(&self, id: &str, changes: Map<String, Value>) -> Result<WarehouseRecord> {
        let _guard = self.writer.lock().await;
        let mut w = self.live(id)?;
        let mut merged = w.settings.clone();
        for (k, v) in changes {
            merged.insert(k, v);
        }
        let merged = warehouse::normalize(Value::Object(merged))?;
        if self
            .list()
            .iter()
            .any(|o| o.id != w.id && o.name() == merged["name"])
        {
            return Err(Error::new(
                ErrorCode::ResourceAlreadyExists,
                "A warehouse with that name already exists.",
            ));
        }
        let resized = merged.get("cluster_size") != w.settings.get("cluster_size");
        w.settings = merged;
        if resized {
            // the old engines go; the reconciler brings new ones up if it runs
            self.retire_engines(&mut w).await;
        }
        self.commit(w)
    }

    /// Whether a warehouse exists (not deleted or being deleted).
    pub fn exists(&self, id: &str) -> bool {
        self.live(id).is_ok()
    }

    fn live(&self, id: &str) -> Result<WarehouseRecord> {
        let w = self.get(id)?;
        if matches!(w.state, WarehouseState::Deleted | WarehouseState::Deleting) {
            return Err(not_found(id));
        }
        Ok(w)
    }

    pub async fn start(&self, id: &str) -> Result<WarehouseRecord> {
        let _guard = self.writer.lock().await;
        let mut w = self.live(id)?;
        self.transition(&mut w, WarehouseEvent::Start)?;
        w.failure = None;
        w.last_activity_ms = now_ms();
        self.commit(w)
    }

    pub async fn stop(&self, id: &str) -> Result<WarehouseRecord> {
        let _guard = self.writer.lock().await;
        let mut w = self.live(id)?;
        self.transition(&mut w, WarehouseEvent::Stop)?;
        self.commit(w)
    }

    pub async fn delete(&self, id: &str) -> Result<()> {
        let _guard = self.writer.lock().await;
        let mut w = self.live(id)?;
        self.transition(&mut w, WarehouseEvent::Delete)?;
        self.commit(w)?;
        Ok(())
    }

    /// Terminates and forgets a warehouse's engines.
    pub(crate) async fn retire_engines(&self, w: &mut WarehouseRecord) {
        for id in std::mem::take(&mut w.engines) {
            let _ = self.clusters.terminate(&w.creator_name, &id).await;
            let _ = self.clusters.permanent_delete(&id).await;
            if let Ok(mut busy) = self.busy.lock() {
                busy.remove(&id);
            }
        }
    }

    /// Engines of `w` that run, with their ports.
    pub fn running_engines(&self, w: &WarehouseRecord) -> Vec<(String, u16)> {
        w.engines
            .iter()
            .filter_map(|id| {
                let c = self.clusters.get(id).ok()?;
                match (c.state, c.engine_port) {
                    (ClusterState::Running | ClusterState::Resizing, Some(port)) => {
                        Some((id.clone(), port))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// A slot on one of the warehouse's engines, starting a stopped warehouse
    /// and waiting (queued) while all are busy or none is up yet.
    pub async fn acquire(self: &Arc<Self>, id: &str, cancel: &CancellationToken) -> Result<Lease> {
        let mut counted = false;
        let lease = loop {
            let notified = self.slot_freed.notified();
            let mut changes = self.clusters.subscribe();
            let w = self.live(id)?;
            if matches!(w.state, WarehouseState::Stopped | WarehouseState::Stopping) {
                self.start(id).await?;
                continue;
            }
            if let Some(lease) = self.take_slot(&w)? {
                break lease;
            }
            if !counted {
                counted = true;
                *self
                    .waiting
                    .lock()
                    .map_err(poisoned)?
                    .entry(id.into())
                    .or_default() += 1;
                self.changes.send_modify(|v| *v += 1);
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    self.unwait(id, counted);
                    return Err(Error::invalid_state("The statement was canceled."));
                }
                _ = notified => {}
                _ = changes.changed() => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        };
        self.unwait(id, counted);
        Ok(lease)
    }

    fn unwait(&self, id: &str, counted: bool) {
        if counted {
            if let Ok(mut waiting) = self.waiting.lock() {
                if let Some(n) = waiting.get_mut(id) {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }

    fn take_slot(self: &Arc<Self>, w: &WarehouseRecord) -> Result<Option<Lease>> {
        let running = self.running_engines(w);
        let mut busy = self.busy.lock().map_err(poisoned)?;
        let best = running
            .into_iter()
            .map(|(id, port)| (busy.get(&id).copied().unwrap_or(0), id, port))
            .filter(|(n, _, _)| *n < SLOTS_PER_ENGINE)
            .min();
        let Some((_, cluster_id, port)) = best else {
            return Ok(None);
        };
        *busy.entry(cluster_id.clone()).or_default() += 1;
        drop(busy);
        self.clusters.touch(&cluster_id);
        self.touch(&w.id);
        Ok(Some(Lease {
            warehouses: self.clone(),
            target: EngineTarget {
                front: self.clusters.settings().front_port,
                cluster_id,
                engine_port: port,
            },
        }))
    }

    /// Records activity (auto-stop counts from the last).
    pub fn touch(&self, id: &str) {
        if let Ok(mut all) = self.all.write() {
            if let Some(w) = all.get_mut(id) {
                w.last_activity_ms = now_ms();
            }
        }
    }

    /// Statements running on `w`'s engines.
    pub fn active(&self, w: &WarehouseRecord) -> usize {
        let busy = self.busy.lock().map(|b| b.clone()).unwrap_or_default();
        w.engines
            .iter()
            .map(|e| busy.get(e).copied().unwrap_or(0))
            .sum()
    }

    pub(crate) fn queued(&self, id: &str) -> usize {
        self.waiting
            .lock()
            .map(|w| w.get(id).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// `get_workspace_warehouse_config`: as set (or empty).
    pub fn config(&self) -> Result<Value> {
        Ok(match self.store.meta(CONFIG_KEY)? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| Error::internal("read the warehouse config", e))?,
            None => Value::Object(Map::new()),
        })
    }

    pub fn set_config(&self, config: Value) -> Result<()> {
        if !config.is_object() {
            return Err(Error::invalid(
                "The warehouse config must be a JSON object.",
            ));
        }
        self.store
            .commit(vec![Write::PutMeta(CONFIG_KEY.into(), config.to_string())])
    }

    /// Cancels running statements and the reconciler, and waits for them.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(15), self.tasks.wait()).await;
    }
}

//! Brings each warehouse's engines to its state: a STARTING or RUNNING
//! warehouse has `min_num_clusters` engines up (one more, up to
//! `max_num_clusters`, while statements queue; extras go after a minute
//! without work), RUNNING once all are up; a STOPPING one has them
//! terminated, then STOPPED; a DELETING one has them deleted, then DELETED.
//! An idle RUNNING warehouse stops after `auto_stop_mins`. It wakes on
//! warehouse and cluster changes, and every second.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_core::time::now_ms;
use kiln_core::Result;
use kiln_store::ClusterState;
use serde_json::json;

use crate::lifecycle::{WarehouseEvent, WarehouseState};
use crate::warehouses::Warehouses;

/// Times a warehouse restarts an engine that stopped before it gives up.
const RESTARTS: u32 = 2;

pub fn start(warehouses: &Arc<Warehouses>) {
    let me = warehouses.clone();
    warehouses.tasks.spawn(async move { run(me).await });
}

async fn run(ws: Arc<Warehouses>) {
    let mut clusters = ws.clusters.subscribe();
    let mut changes = ws.subscribe();
    let mut restarts: HashMap<String, u32> = HashMap::new();
    loop {
        let ids: Vec<String> = ws.all_ids().into_iter().collect();
        for id in ids {
            if let Err(e) = reconcile(&ws, &id, &mut restarts).await {
                tracing::warn!(warehouse_id = %id, error = %e.message, "warehouse reconcile");
            }
        }
        tokio::select! {
            _ = ws.shutdown.cancelled() => return,
            _ = clusters.changed() => {}
            _ = changes.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn reconcile(
    ws: &Arc<Warehouses>,
    id: &str,
    restarts: &mut HashMap<String, u32>,
) -> Result<()> {
    let _guard = ws.writer.lock().await;
    let mut w = ws.get(id)?;
    let before = (w.state, w.engines.clone(), w.failure.clone());
    let minute = ws.clusters.settings().autotermination_minute.as_millis() as i64;
    match w.state {
        WarehouseState::Starting | WarehouseState::Running => {
            let min = w.int("min_num_clusters").max(1) as usize;
            let max = w.int("max_num_clusters").max(min as i64) as usize;
            let running = ws.running_engines(&w).len();
            let full = ws.active(&w) >= running * crate::warehouses::SLOTS_PER_ENGINE;
            let mut want = w.engines.len().clamp(min, max);
            if ws.queued(id) > 0 && running == w.engines.len() && full && w.engines.len() < max {
                want = w.engines.len() + 1;
            }
            // an extra engine goes after a minute without work
            if w.engines.len() > min
                && ws.active(&w) == 0
                && ws.queued(id) == 0
                && now_ms() - w.last_activity_ms > minute
            {
                if let Some(extra) = w.engines.pop() {
                    let _ = ws.clusters.terminate(&w.creator_name, &extra).await;
                    let _ = ws.clusters.permanent_delete(&extra).await;
                }
                want = w.engines.len();
            }
            while w.engines.len() < want {
                let n = w.engines.len() + 1;
                let spec = json!({
                    "num_workers": w.workers(),
                    "custom_tags": {"SqlEndpointId": w.id, "KilnWarehouse": w.name()},
                });
                let name = format!("warehouse-{}-{n}", w.id);
                let config = kiln_compute::cluster_spec::config_from_json(&spec, &name, "SQL", 0)?;
                let record = ws.clusters.create(&w.creator_name, config).await?;
                w.engines.push(record.cluster_id);
            }
            let mut failed = None;
            for engine in &w.engines {
                let c = ws.clusters.get(engine)?;
                match c.state {
                    ClusterState::Error => failed = Some(c.state_message.clone()),
                    ClusterState::Terminated => {
                        let n = restarts.entry(engine.clone()).or_default();
                        *n += 1;
                        if *n > RESTARTS {
                            failed = Some(c.state_message.clone());
                        } else {
                            ws.clusters.start(&w.creator_name, engine).await?;
                        }
                    }
                    _ => {}
                }
            }
            if let Some(why) = failed {
                ws.transition(&mut w, WarehouseEvent::Fail)?;
                w.failure = Some(format!("An engine of the warehouse did not start: {why}"));
                ws.retire_engines(&mut w).await;
            } else if ws.running_engines(&w).len() == w.engines.len() {
                for e in &w.engines {
                    restarts.remove(e);
                }
                if w.state == WarehouseState::Starting {
                    // idle time counts from when it is up
                    ws.touch(id);
                    w.last_activity_ms = now_ms();
                }
                ws.transition(&mut w, WarehouseEvent::EnginesUp)?;
                let stop_after = w.int("auto_stop_mins") * minute;
                let idle = ws.active(&w) == 0 && ws.queued(id) == 0;
                if stop_after > 0 && idle && now_ms() - ws.get(id)?.last_activity_ms > stop_after {
                    tracing::info!(warehouse_id = %id, "auto-stop after idle minutes");
                    ws.transition(&mut w, WarehouseEvent::Stop)?;
                }
            }
        }
        WarehouseState::Stopping => {
            let mut down = true;
            for engine in &w.engines {
                let c = ws.clusters.get(engine)?;
                match c.state {
                    ClusterState::Terminated | ClusterState::Error => {}
                    ClusterState::Terminating => down = false,
                    _ => {
                        down = false;
                        ws.clusters.terminate(&w.creator_name, engine).await?;
                    }
                }
            }
            if down {
                ws.transition(&mut w, WarehouseEvent::EnginesDown)?;
            }
        }
        WarehouseState::Deleting => {
            ws.retire_engines(&mut w).await;
            ws.transition(&mut w, WarehouseEvent::EnginesDown)?;
        }
        WarehouseState::Stopped | WarehouseState::Deleted => return Ok(()),
    }
    // last_activity_ms is kept in memory between commits; keep the newest
    w.last_activity_ms = w.last_activity_ms.max(ws.get(id)?.last_activity_ms);
    if (w.state, w.engines.clone(), w.failure.clone()) != before {
        ws.commit(w)?;
        ws.slot_freed.notify_waiters();
    }
    Ok(())
}

//! Runs one update: compute, graph, analysis, reset, table setup, then the
//! flows in dependency order (independent flows concurrently), with the event
//! log written as it goes. Every state change goes through the lifecycle.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kiln_compute::pyenv;
use kiln_store::ClusterState;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bind::Binder;
use crate::error::{fail, Stop};
use crate::events::Event;
use crate::graph::key;
use crate::lifecycle::{next_state, UpdateState};
use crate::model::{PipelineRecord, UpdateRecord};
use crate::protocol::{Empty, Request};
use crate::service::Pipelines;
use crate::sink::{error_json, Sink};
use crate::sql::DatasetKind;
use crate::worker::{Worker, WorkerSpec};

const MAX_CONCURRENT_FLOWS: usize = 4;
/// How long an update waits for its new cluster to run.
const CLUSTER_START_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(svc: Arc<Pipelines>, mut update: UpdateRecord, cancel: CancellationToken) {
    let Ok(mut pipeline) = svc.get(&update.pipeline_id) else {
        return;
    };
    let mut sink = Sink::new(&pipeline, &update.update_id);
    let mut worker: Option<(Arc<Worker>, String)> = None;
    let result = execute(
        &svc,
        &mut pipeline,
        &mut update,
        &mut sink,
        &cancel,
        &mut worker,
    )
    .await;
    // The update's last events, decided before anything is cleaned up.
    let progress = |state: UpdateState| {
        sink.event(
            "INFO",
            "update_progress",
            &format!("Update {} is {}.", &update.update_id[..6], state.as_str()),
            json!({"state": state.as_str()}),
        )
    };
    let (ends, last) = match &result {
        Ok(()) => (
            vec![UpdateState::Completed],
            vec![progress(UpdateState::Completed)],
        ),
        Err(Stop::Canceled) => (
            vec![UpdateState::Stopping, UpdateState::Canceled],
            vec![
                progress(UpdateState::Stopping),
                progress(UpdateState::Canceled),
            ],
        ),
        Err(Stop::Failed {
            class_name,
            message,
        }) => {
            let mut e = sink.event(
                "ERROR",
                "update_progress",
                &format!("Update {} is FAILED: {message}", &update.update_id[..6]),
                json!({"state": UpdateState::Failed.as_str()}),
            );
            e.error = Some(error_json(class_name, message));
            (vec![UpdateState::Failed], vec![e])
        }
    };
    let mut events = sink.take();
    events.extend(last);
    if let Some((w, _)) = &worker {
        copy_event_log(&svc, w, &update, &events).await;
    }
    // Clean up before the end is visible: a client that sees the update end
    // may start the next one at once.
    let development = update.config.development();
    if let Some((w, url)) = worker {
        // Development pipelines keep their engine, and its worker, between updates.
        if development && result.is_ok() {
            svc.keep_worker(&update.pipeline_id, url, w);
        } else {
            w.kill().await;
        }
    }
    if !development {
        if let Some(cluster) = &pipeline.cluster_id {
            let _ = svc.clusters.terminate(&pipeline.run_as, cluster).await;
        }
    }
    if let Ok(mut current) = svc.get(&pipeline.pipeline_id) {
        current.unhealthy = matches!(result, Err(Stop::Failed { .. }));
        current.cluster_id = pipeline.cluster_id.clone();
        let _ = svc.set_pipeline(&current);
    }
    svc.release(&update.pipeline_id, &update.update_id);
    let outcome = ends
        .into_iter()
        .try_fold(update.state, next_state)
        .and_then(|state| {
            update.state = state;
            svc.commit_update(&update, events)
        });
    if let Err(e) = outcome {
        tracing::error!(pipeline = %update.pipeline_id, error = %e.message, "record the end of an update");
    }
}

/// Appends the update's events to the Delta table `<storage>/system/events`
/// (queryable as ``delta.`<storage>/system/events` ``). A failure is logged,
/// never fails the update: the authoritative log is Kiln's store.
async fn copy_event_log(svc: &Pipelines, worker: &Worker, update: &UpdateRecord, last: &[Event]) {
    let default = format!("dbfs:/pipelines/{}", update.pipeline_id);
    let storage = update.config.storage.as_deref().unwrap_or(&default);
    let Ok(root) = crate::bind::dbfs_path(&svc.dbfs_root, storage) else {
        return;
    };
    let stored = svc.events(&update.pipeline_id).unwrap_or_default();
    let rows: Vec<Value> = stored
        .iter()
        .filter(|e| e.origin["update_id"].as_str() == Some(update.update_id.as_str()))
        .chain(last)
        .map(Event::to_json)
        .collect();
    let path = root.join("system").join("events");
    let request = Request::WriteEvents { path, events: rows };
    if let Err(e) = worker.call::<Empty>(&request).await {
        tracing::warn!(pipeline = %update.pipeline_id, error = %e.message, "copy the event log to storage");
    }
}

async fn execute(
    svc: &Arc<Pipelines>,
    pipeline: &mut PipelineRecord,
    update: &mut UpdateRecord,
    sink: &mut Sink,
    cancel: &CancellationToken,
    worker_slot: &mut Option<(Arc<Worker>, String)>,
) -> Result<(), Stop> {
    svc.transition(update, UpdateState::WaitingForResources, sink.take(), sink)?;
    let (cluster_id, port) = tokio::select! {
        r = ensure_cluster(svc, pipeline, update) => r?,
        _ = cancel.cancelled() => return Err(Stop::Canceled),
    };
    sink.set_cluster(&cluster_id);
    update.cluster_id = Some(cluster_id.clone());
    pipeline.cluster_id = Some(cluster_id.clone());
    if let Ok(mut current) = svc.get(&pipeline.pipeline_id) {
        current.cluster_id = Some(cluster_id.clone());
        svc.set_pipeline(&current)?;
    }
    let engine_dir = svc.clusters.engine_dir(&cluster_id);
    let isolation = svc.clusters.isolation().clone();
    let cluster_identity = isolation.cluster_identity(&cluster_id);
    let runtime = svc.clusters.runtime_of(&cluster_id);
    let python = pyenv::ensure(&runtime, &engine_dir, cluster_identity.as_ref()).await?;
    let log = svc.logs.join(format!("{}.log", pipeline.pipeline_id));
    let spark_url = svc.clusters.spark_url(&cluster_id, port);
    let worker = match svc.take_worker(&pipeline.pipeline_id, &spark_url) {
        Some(w) if w.call::<Empty>(&Request::Ping).await.is_ok() => w,
        _ => tokio::select! {
            w = Worker::spawn(WorkerSpec {
                python: &python,
                sources: &svc.sources,
                spark_url: &spark_url,
                dbfs_root: &svc.dbfs_root,
                log: &log,
                isolation: &isolation,
                cluster_id: &cluster_id,
                read: [runtime.read_paths(), vec![engine_dir.clone()]].concat(),
            }) => Arc::new(w?),
            _ = cancel.cancelled() => return Err(Stop::Canceled),
        },
    };
    *worker_slot = Some((worker.clone(), spark_url));

    svc.transition(update, UpdateState::Initializing, sink.take(), sink)?;
    let graph = Arc::new(crate::plan::load_graph(&svc.workspace, &worker, update, sink).await?);
    let (catalog, schema) = update.config.publish_schema();
    let binder = Binder::new(graph.clone(), &catalog, &schema, svc.dbfs_root.clone());
    crate::plan::definitions(&graph, &binder, sink);
    svc.journal
        .commit_events(&pipeline.pipeline_id, sink.take())?;
    let schemas = crate::analysis::analyze(&worker, &graph, &binder, sink).await?;
    if update.validate_only {
        return Ok(());
    }
    if cancel.is_cancelled() {
        return Err(Stop::Canceled);
    }
    let resets = crate::plan::resets(&graph, update)?;
    if !resets.is_empty() {
        svc.transition(update, UpdateState::Resetting, sink.take(), sink)?;
        let tables: Vec<String> = resets
            .iter()
            .flat_map(|d| [binder.table(d), binder.cdc_log(d)])
            .collect();
        worker
            .call::<Empty>(&Request::Drop { tables })
            .await
            .map_err(|e| fail(&e.class_name, e.message))?;
        for d in &resets {
            for f in graph.flows_into(d) {
                svc.journal
                    .reset_checkpoint(&pipeline.pipeline_id, &key(&f.name))?;
            }
        }
    }
    svc.transition(update, UpdateState::SettingUpTables, sink.take(), sink)?;
    worker
        .call::<Empty>(&Request::EnsureSchema {
            schema: format!("`{catalog}`.`{schema}`"),
        })
        .await
        .map_err(|e| {
            fail(
                &e.class_name,
                format!(
                    "cannot create the target schema {catalog}.{schema}: {}",
                    e.message
                ),
            )
        })?;
    svc.transition(update, UpdateState::Running, sink.take(), sink)?;
    let ctx = Arc::new(crate::flows::FlowContext {
        journal: svc.journal.clone(),
        worker,
        graph: graph.clone(),
        binder,
        schemas,
        pipeline_id: pipeline.pipeline_id.clone(),
        update_id: update.update_id.clone(),
        sink: Sink::new(pipeline, &update.update_id),
    });
    let continuous = update.config.continuous();
    let interval = trigger_interval(
        update
            .config
            .setting("pipelines.trigger.interval")
            .unwrap_or(&Value::Null),
    );
    loop {
        schedule(&ctx, update, cancel).await?;
        if !continuous {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = cancel.cancelled() => return Err(Stop::Canceled),
        }
    }
}

/// `pipelines.trigger.interval` ("10 seconds", "1 minute", "500 ms"); 5 s by default.
pub(crate) fn trigger_interval(value: &Value) -> Duration {
    let text = value.as_str().unwrap_or("").trim().to_ascii_lowercase();
    let (number, unit) = text.split_once(' ').unwrap_or((text.as_str(), "seconds"));
    let Ok(n) = number.trim().parse::<f64>() else {
        return Duration::from_secs(5);
    };
    let secs = match unit.trim().trim_end_matches('s') {
        "m" | "millisecond" => n / 1000.0,
        "minute" | "min" => n * 60.0,
        "hour" => n * 3600.0,
        _ => n,
    };
    Duration::from_secs_f64(secs.clamp(0.1, 86_400.0))
}

/// The pipeline's engine: its development cluster when still running, else a new one.
async fn ensure_cluster(
    svc: &Pipelines,
    pipeline: &PipelineRecord,
    update: &UpdateRecord,
) -> Result<(String, u16), Stop> {
    if let Some(id) = &pipeline.cluster_id {
        if let Ok(c) = svc.clusters.get(id) {
            if c.state == ClusterState::Running
                && c.engine_port.is_some()
                && update.config.development()
            {
                return Ok((id.clone(), c.engine_port.unwrap_or_default()));
            }
        }
    }
    let spec = update
        .config
        .clusters
        .as_ref()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["label"].as_str().unwrap_or("default") == "default")
                .cloned()
        })
        .unwrap_or(json!({}));
    let mut spec = spec;
    if let Some(obj) = spec.as_object_mut() {
        // a pipeline's cluster is named after it and runs Kiln's default runtime
        obj.remove("cluster_name");
        obj.remove("spark_version");
    }
    let autotermination = if update.config.development() { 120 } else { 0 };
    let config = kiln_compute::cluster_spec::config_from_json(
        &spec,
        &format!("dlt-execution-{}", pipeline.pipeline_id),
        "PIPELINE",
        autotermination,
    )?;
    let record = svc.clusters.create(&pipeline.run_as, config).await?;
    let port = kiln_compute::cluster_wait::wait_running(
        &svc.clusters,
        &record.cluster_id,
        CLUSTER_START_TIMEOUT,
    )
    .await
    .map_err(|e| fail("ClusterFailure", format!("the pipeline's {}", e.message)))?;
    Ok((record.cluster_id, port))
}

/// Runs the selected flows in dependency order.
async fn schedule(
    ctx: &Arc<crate::flows::FlowContext>,
    update: &UpdateRecord,
    cancel: &CancellationToken,
) -> Result<(), Stop> {
    let graph = &ctx.graph;
    let selection: BTreeSet<String> = update
        .refresh_selection
        .iter()
        .chain(&update.full_refresh_selection)
        .map(|s| key(s))
        .collect();
    let runnable: Vec<String> = graph
        .order
        .iter()
        .filter(|f| {
            graph
                .datasets
                .get(&key(&graph.flows[*f].target))
                .is_some_and(|d| d.kind != DatasetKind::View)
        })
        .cloned()
        .collect();
    let mut pending: Vec<String> = Vec::new();
    let mut done: BTreeMap<String, bool> = BTreeMap::new();
    let mut events = Vec::new();
    for f in &runnable {
        let flow = &graph.flows[f];
        if selection.is_empty() || selection.contains(&key(&flow.target)) {
            pending.push(f.clone());
            events.push(ctx.sink.flow_event(
                &flow.name,
                &flow.target,
                "INFO",
                "flow_progress",
                &format!("Flow '{}' is QUEUED.", flow.name),
                json!({"status": "QUEUED"}),
            ));
        } else {
            done.insert(f.clone(), true);
            events.push(ctx.sink.flow_event(
                &flow.name,
                &flow.target,
                "INFO",
                "flow_progress",
                &format!("Flow '{}' is EXCLUDED.", flow.name),
                json!({"status": "EXCLUDED"}),
            ));
        }
    }
    ctx.journal.commit_events(&ctx.pipeline_id, events)?;
    let mut running: JoinSet<(String, bool)> = JoinSet::new();
    let mut failed_any: Option<String> = None;
    loop {
        // Start every flow whose upstream tables are done.
        let mut i = 0;
        while i < pending.len() && running.len() < MAX_CONCURRENT_FLOWS && !cancel.is_cancelled() {
            let f = pending[i].clone();
            let deps: Vec<String> = graph
                .table_deps(&graph.flows[&f])
                .into_iter()
                .flat_map(|d| {
                    graph
                        .flows_into(&d)
                        .into_iter()
                        .map(|x| key(&x.name))
                        .collect::<Vec<_>>()
                })
                .filter(|d| *d != f)
                .collect();
            if deps.iter().any(|d| done.get(d) == Some(&false)) {
                pending.remove(i);
                let flow = &graph.flows[&f];
                ctx.journal.commit_events(
                    &ctx.pipeline_id,
                    vec![ctx.sink.flow_event(
                        &flow.name,
                        &flow.target,
                        "WARN",
                        "flow_progress",
                        &format!("Flow '{}' SKIPPED due to upstream failure(s).", flow.name),
                        json!({"status": "SKIPPED"}),
                    )],
                )?;
                done.insert(f, false);
                continue;
            }
            if deps.iter().all(|d| done.contains_key(d)) {
                pending.remove(i);
                let c = ctx.clone();
                let token = cancel.clone();
                running.spawn(async move {
                    let ok = crate::flows::run_flow(&c, &f, &token).await;
                    (f, ok)
                });
                continue;
            }
            i += 1;
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next() => {
                if let Some(Ok((f, ok))) = joined {
                    if !ok && failed_any.is_none() {
                        failed_any = Some(f.clone());
                    }
                    done.insert(f, ok);
                }
            }
            _ = cancel.cancelled() => {
                // A query the engine has not registered yet misses an
                // interrupt: repeat it until every running flow has ended.
                loop {
                    ctx.cancel_all().await;
                    tokio::select! {
                        joined = running.join_next() => if joined.is_none() { break },
                        _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
                    }
                }
                break;
            }
        }
    }
    if cancel.is_cancelled() {
        let mut events = Vec::new();
        for f in pending {
            let flow = &graph.flows[&f];
            events.push(ctx.sink.flow_event(
                &flow.name,
                &flow.target,
                "INFO",
                "flow_progress",
                &format!("Flow '{}' has STOPPED.", flow.name),
                json!({"status": "STOPPED"}),
            ));
        }
        ctx.journal.commit_events(&ctx.pipeline_id, events)?;
        return Err(Stop::Canceled);
    }
    match failed_any {
        Some(f) => Err(fail(
            "FlowFailure",
            format!(
                "Flow '{}' failed; see its flow_progress event",
                graph.flows[&f].name
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_intervals() {
        assert_eq!(
            trigger_interval(&json!("10 seconds")),
            Duration::from_secs(10)
        );
        assert_eq!(
            trigger_interval(&json!("1 minute")),
            Duration::from_secs(60)
        );
        assert_eq!(
            trigger_interval(&json!("500 ms")),
            Duration::from_millis(500)
        );
        assert_eq!(trigger_interval(&json!("2")), Duration::from_secs(2));
        assert_eq!(trigger_interval(&json!("soon")), Duration::from_secs(5));
        assert_eq!(trigger_interval(&Value::Null), Duration::from_secs(5));
    }
}

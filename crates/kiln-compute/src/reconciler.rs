//! The reconciler: compares each cluster's desired state (its lifecycle state)
//! with the observed engines and runs one step per cluster at a time to close
//! the gap. It owns every step task; on cancellation it waits for them (with a
//! deadline) and stops every engine.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kiln_core::time::now_ms;
use kiln_store::ClusterRecord;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clusters::{event, reason, reason_json, state_of, transition, Clusters, EngineSlot};
use crate::engine::{Engine, EngineSpec};
use crate::lifecycle::{ClusterState, Transition};

const TICK: Duration = Duration::from_millis(250);
const STEP_DRAIN_DEADLINE: Duration = Duration::from_secs(10);

/// One unit of work for one cluster.
#[derive(Debug)]
enum Step {
    Launch {
        generation: u64,
    },
    /// Resize that keeps the running engine (its worker configuration is unchanged).
    CompleteResize {
        generation: u64,
    },
    Stop {
        generation: u64,
    },
    EngineDied {
        generation: u64,
        detail: String,
    },
    Idle {
        generation: u64,
    },
    /// An engine whose cluster no longer wants it (or no longer exists).
    StopStray,
}

pub(crate) async fn run(clusters: Arc<Clusters>, cancel: CancellationToken) {
    let mut steps: JoinSet<()> = JoinSet::new();
    // Which cluster each step task works on: a step that panics frees its
    // cluster like one that returns (the next tick plans it again).
    let mut busy: HashMap<tokio::task::Id, String> = HashMap::new();
    loop {
        let taken: HashSet<String> = busy.values().cloned().collect();
        for (cluster_id, step) in plan(&clusters, &taken) {
            let clusters = clusters.clone();
            let id = cluster_id.clone();
            let handle = steps.spawn(async move {
                run_step(&clusters, &id, step).await;
            });
            busy.insert(handle.id(), cluster_id);
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = clusters.nudge.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
            Some(done) = steps.join_next_with_id(), if !steps.is_empty() => finish_step(&mut busy, done),
        }
        while let Some(done) = steps.try_join_next_with_id() {
            finish_step(&mut busy, done);
        }
    }
    if tokio::time::timeout(STEP_DRAIN_DEADLINE, async {
        while steps.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        steps.abort_all();
    }
    stop_all(&clusters).await;
}

/// Stops every engine concurrently, each with the stop deadline.
async fn stop_all(clusters: &Clusters) {
    let slots: Vec<EngineSlot> = match clusters.engines.lock() {
        Ok(mut engines) => engines.drain().map(|(_, slot)| slot).collect(),
        Err(_) => Vec::new(),
    };
    let deadline = clusters.settings.stop_deadline;
    let mut stops = JoinSet::new();
    for slot in slots {
        stops.spawn(slot.engine.stop(deadline));
    }
    while stops.join_next().await.is_some() {}
}

fn finish_step(
    busy: &mut HashMap<tokio::task::Id, String>,
    done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
) {
    let id = match done {
        Ok((id, ())) => id,
        Err(e) => {
            if e.is_panic() {
                tracing::error!("a reconcile step panicked; its cluster is planned again");
            }
            e.id()
        }
    };
    busy.remove(&id);
}

fn plan(clusters: &Clusters, busy: &HashSet<String>) -> Vec<(String, Step)> {
    let records = clusters.snapshot();
    let mut steps = Vec::new();
    let mut engines = match clusters.engines.lock() {
        Ok(engines) => engines,
        Err(_) => return steps,
    };
    for record in &records {
        if busy.contains(&record.cluster_id) {
            continue;
        }
        let slot = engines.get_mut(&record.cluster_id);
        if let Some(step) = plan_one(clusters, record, slot) {
            steps.push((record.cluster_id.clone(), step));
        }
    }
    for cluster_id in engines.keys() {
        let known = records
            .iter()
            .any(|r| r.cluster_id == *cluster_id && state_of(r).wants_engine());
        if !known && !busy.contains(cluster_id) && !steps.iter().any(|(id, _)| id == cluster_id) {
            steps.push((cluster_id.clone(), Step::StopStray));
        }
    }
    steps
}

fn plan_one(
    clusters: &Clusters,
    record: &ClusterRecord,
    slot: Option<&mut EngineSlot>,
) -> Option<Step> {
    let generation = record.generation;
    match state_of(record) {
        ClusterState::Pending | ClusterState::Restarting => Some(Step::Launch { generation }),
        ClusterState::Resizing => match slot {
            Some(slot) if slot.workers == workers_of(record) => {
                Some(Step::CompleteResize { generation })
            }
            _ => Some(Step::Launch { generation }),
        },
        ClusterState::Running => match slot {
            None => Some(Step::EngineDied {
                generation,
                detail: "engine not running".into(),
            }),
            Some(slot) => match slot.engine.exited() {
                Some(status) => Some(Step::EngineDied {
                    generation,
                    detail: status,
                }),
                None if is_idle(clusters, record) => Some(Step::Idle { generation }),
                None => None,
            },
        },
        ClusterState::Terminating => Some(Step::Stop { generation }),
        _ => None,
    }
}

fn is_idle(clusters: &Clusters, record: &ClusterRecord) -> bool {
    let minutes = record.config.autotermination_minutes;
    if minutes == 0 {
        return false;
    }
    let limit_ms = clusters.settings.autotermination_minute.as_millis() as i64 * i64::from(minutes);
    now_ms() - record.last_activity_time > limit_ms
}

fn workers_of(record: &ClusterRecord) -> (u32, u32) {
    match record.config.autoscale {
        Some((min, max)) => (min, max),
        None => (record.config.num_workers, record.config.num_workers),
    }
}

fn take_engine(clusters: &Clusters, cluster_id: &str) -> Option<EngineSlot> {
    clusters
        .engines
        .lock()
        .ok()
        .and_then(|mut engines| engines.remove(cluster_id))
}

async fn run_step(clusters: &Clusters, cluster_id: &str, step: Step) {
    tracing::debug!(cluster_id, ?step, "reconcile");
    let result = match step {
        Step::Launch { generation } => launch(clusters, cluster_id, generation).await,
        Step::CompleteResize { generation } => {
            complete_resize(clusters, cluster_id, generation).await
        }
        Step::Stop { generation } => stop(clusters, cluster_id, generation).await,
        Step::EngineDied { generation, detail } => {
            engine_died(clusters, cluster_id, generation, &detail).await
        }
        Step::Idle { generation } => idle(clusters, cluster_id, generation).await,
        Step::StopStray => {
            if let Some(slot) = take_engine(clusters, cluster_id) {
                slot.engine.stop(clusters.settings.stop_deadline).await;
            }
            if clusters.get(cluster_id).is_err() {
                let dir = clusters.engine_dir(cluster_id);
                let _ = kiln_core::blocking::run(|| std::fs::remove_dir_all(dir));
            }
            Ok(())
        }
    };
    if let Err(err) = result {
        tracing::debug!(cluster_id, %err, "reconcile step not applied");
    }
}

async fn launch(clusters: &Clusters, cluster_id: &str, generation: u64) -> kiln_core::Result<()> {
    if let Some(old) = take_engine(clusters, cluster_id) {
        old.engine.stop(clusters.settings.stop_deadline).await;
    }
    let record = clusters.get(cluster_id)?;
    let workers = workers_of(&record);
    let spec = EngineSpec {
        cluster_id: cluster_id.into(),
        work_dir: clusters.engine_dir(cluster_id),
        identity: clusters.isolation().cluster_identity(cluster_id),
        isolation: clusters.isolation().clone(),
        num_workers: workers.0,
        max_workers: workers.1,
        env: clusters.engine_env(&record.config),
        kubernetes: clusters.kubernetes_workers(&record.config, workers.1),
    };
    let was_resize = state_of(&record) == ClusterState::Resizing;
    let mut warm = clusters.take_warm(cluster_id);
    let fits = warm.as_mut().is_some_and(|w| w.fits(&spec, &record.config));
    let started = match warm {
        Some(w) if fits => Ok(w.adopt(&spec.work_dir)),
        other => {
            if let Some(w) = other {
                w.stop(clusters.settings.stop_deadline).await;
            }
            match clusters.choose_runtime(&record).await {
                Ok(chosen) => Engine::launch(&chosen.runtime, &spec)
                    .await
                    .map(|engine| (engine, chosen)),
                Err(err) => Err(err),
            }
        }
    };
    match started {
        Ok((engine, chosen)) => {
            let python = chosen.runtime.minor().map(crate::pythons::show);
            clusters.remember_runtime(cluster_id, chosen.runtime);
            let started = Started {
                engine,
                workers,
                python,
                note: chosen.note,
            };
            engine_ready(clusters, cluster_id, generation, started, was_resize).await
        }
        Err(err) => {
            let detail = err.message.clone();
            clusters
                .mutate(cluster_id, Some(generation), |record, events| {
                    transition(
                        record,
                        Transition::EngineFailed,
                        &format!("Spark engine failed to start: {detail}"),
                    )?;
                    let why = reason(
                        "SPARK_STARTUP_FAILURE",
                        "SERVICE_FAULT",
                        &[("databricks_error_message", &detail)],
                    );
                    events.push(terminating_event(cluster_id, &why));
                    finish_termination(record, why);
                    Ok(())
                })
                .await
                .map(|_| ())
        }
    }
}

/// An engine that answered, and the Python it runs.
struct Started {
    engine: Engine,
    workers: (u32, u32),
    python: Option<String>,
    /// Why the Python is not the one the runtime version runs.
    note: Option<String>,
}

async fn engine_ready(
    clusters: &Clusters,
    cluster_id: &str,
    generation: u64,
    started: Started,
    was_resize: bool,
) -> kiln_core::Result<()> {
    let Started {
        engine,
        workers,
        python,
        note,
    } = started;
    let (pid, port) = (engine.pid, engine.port);
    let committed = clusters
        .mutate(cluster_id, Some(generation), |record, events| {
            transition(record, Transition::EngineReady, "")?;
            let now = now_ms();
            record.engine_pid = Some(pid);
            record.engine_port = Some(port);
            record.spark_context_id = rand::random::<i64>().abs();
            record.last_restarted_time = Some(now);
            record.last_activity_time = now;
            record.termination_reason = None;
            record.terminated_time = None;
            let kind = if was_resize {
                "UPSIZE_COMPLETED"
            } else {
                "RUNNING"
            };
            let mut details = json!({"current_num_workers": workers.0});
            if let Some(python) = &python {
                details["python_version"] = json!(python);
            }
            if let Some(note) = &note {
                details["reason"] = json!({"code": "PYTHON_VERSION_FALLBACK", "type": "CLIENT_ERROR", "parameters": {"message": note}});
            }
            events.push(event(cluster_id, kind, details));
            Ok(())
        })
        .await;
    match committed {
        Ok(_) => {
            if let Ok(mut engines) = clusters.engines.lock() {
                engines.insert(cluster_id.into(), EngineSlot { engine, workers });
            }
            Ok(())
        }
        Err(err) => {
            engine.stop(clusters.settings.stop_deadline).await;
            Err(err)
        }
    }
}

async fn complete_resize(
    clusters: &Clusters,
    cluster_id: &str,
    generation: u64,
) -> kiln_core::Result<()> {
    clusters
        .mutate(cluster_id, Some(generation), |record, events| {
            transition(record, Transition::EngineReady, "")?;
            events.push(event(
                cluster_id,
                "UPSIZE_COMPLETED",
                json!({"current_num_workers": record.config.num_workers}),
            ));
            Ok(())
        })
        .await
        .map(|_| ())
}

async fn stop(clusters: &Clusters, cluster_id: &str, generation: u64) -> kiln_core::Result<()> {
    if let Some(slot) = take_engine(clusters, cluster_id) {
        slot.engine.stop(clusters.settings.stop_deadline).await;
    }
    clusters
        .mutate(cluster_id, Some(generation), |record, _events| {
            transition(record, Transition::EngineStopped, "")?;
            let why = record
                .termination_reason
                .clone()
                .unwrap_or_else(|| reason("USER_REQUEST", "SUCCESS", &[]));
            finish_termination(record, why);
            Ok(())
        })
        .await
        .map(|_| ())
}

async fn engine_died(
    clusters: &Clusters,
    cluster_id: &str,
    generation: u64,
    detail: &str,
) -> kiln_core::Result<()> {
    if let Some(slot) = take_engine(clusters, cluster_id) {
        slot.engine.stop(clusters.settings.stop_deadline).await;
    }
    tracing::warn!(cluster_id, detail, "engine exited unexpectedly");
    clusters
        .mutate(cluster_id, Some(generation), |record, events| {
            transition(
                record,
                Transition::EngineFailed,
                &format!("Spark engine exited unexpectedly ({detail})"),
            )?;
            let why = reason(
                "DRIVER_UNEXPECTED_FAILURE",
                "SERVICE_FAULT",
                &[("databricks_error_message", detail)],
            );
            events.push(event(
                cluster_id,
                "DRIVER_NOT_RESPONDING",
                json!({"driver_state_message": detail}),
            ));
            events.push(terminating_event(cluster_id, &why));
            finish_termination(record, why);
            Ok(())
        })
        .await
        .map(|_| ())
}

async fn idle(clusters: &Clusters, cluster_id: &str, generation: u64) -> kiln_core::Result<()> {
    clusters
        .mutate(cluster_id, Some(generation), |record, events| {
            let minutes = record.config.autotermination_minutes;
            let message = format!("Inactive cluster terminated (inactive for {minutes} minutes).");
            transition(record, Transition::Idle, &message)?;
            let why = reason(
                "INACTIVITY",
                "SUCCESS",
                &[("inactivity_duration_min", &minutes.to_string())],
            );
            events.push(terminating_event(cluster_id, &why));
            record.termination_reason = Some(why);
            Ok(())
        })
        .await
        .map(|_| ())
}

fn terminating_event(
    cluster_id: &str,
    why: &kiln_store::TerminationReason,
) -> kiln_store::ClusterEventRecord {
    event(
        cluster_id,
        "TERMINATING",
        json!({"reason": reason_json(why)}),
    )
}

/// Records the end of a termination. Databricks has no TERMINATED event type
/// (nor does the SDK's `EventType`): the reason travels on the TERMINATING event.
fn finish_termination(record: &mut ClusterRecord, why: kiln_store::TerminationReason) {
    record.engine_pid = None;
    record.engine_port = None;
    record.terminated_time = Some(now_ms());
    if record.state_message.is_empty() {
        record.state_message = match why.code.as_str() {
            "INACTIVITY" => format!(
                "Inactive cluster terminated (inactive for {} minutes).",
                record.config.autotermination_minutes
            ),
            _ => "Terminated by user".into(),
        };
    }
    record.termination_reason = Some(why);
}

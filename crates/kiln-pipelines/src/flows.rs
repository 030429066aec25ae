//! One flow of a running update: materialized views recompute (or are skipped
//! when no input changed), streaming flows append only what is new since their
//! checkpoint. A batch is recorded as planned before it is written (with a
//! `userMetadata` naming pipeline, flow and batch) and recorded as committed
//! after; a crash in between is resolved from the table's Delta log.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::bind::{Binder, Mode, Selection, Source};
use crate::error::{fail, Stop};
use crate::graph::expectations;
use crate::graph::{key, Flow, FlowKind, Graph};
use crate::journal::Journal;
use crate::lifecycle::FlowStatus;
use crate::model::{Batch, FlowCheckpoint};
use crate::protocol::{Empty, Request, RunAnswer, Version};
use crate::sink::{error_json, Sink};
use crate::worker::Worker;

pub(crate) struct FlowContext {
    /// The event log and the flows' checkpoints: all a flow writes.
    pub journal: Arc<Journal>,
    pub worker: Arc<Worker>,
    pub graph: Arc<Graph>,
    pub binder: Binder,
    pub schemas: BTreeMap<String, String>,
    pub pipeline_id: String,
    pub update_id: String,
    pub sink: Sink,
}

static RUNNING_TAGS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

impl FlowContext {
    fn tag(&self, flow: &str) -> String {
        format!("kiln-{}-{}", &self.update_id[..8], flow.replace(',', "_"))
    }

    /// Interrupts every running query of this update.
    pub async fn cancel_all(&self) {
        let prefix = format!("kiln-{}-", &self.update_id[..8]);
        let tags: Vec<String> = RUNNING_TAGS
            .lock()
            .map(|t| {
                t.iter()
                    .filter(|t| t.starts_with(&prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for tag in tags {
            let _: Result<Empty, _> = self.worker.call(&Request::Cancel { tag }).await;
        }
    }

    fn event(
        &self,
        flow: &Flow,
        level: &str,
        event_type: &str,
        message: &str,
        details: Value,
    ) -> crate::events::Event {
        self.sink.flow_event(
            &flow.name,
            &flow.target,
            level,
            event_type,
            message,
            details,
        )
    }

    fn emit(&self, events: Vec<crate::events::Event>) -> Result<(), Stop> {
        Ok(self.journal.commit_events(&self.pipeline_id, events)?)
    }

    async fn call<A: serde::de::DeserializeOwned>(&self, request: &Request) -> Result<A, Stop> {
        self.worker
            .call(request)
            .await
            .map_err(|e| fail(&e.class_name, e.message))
    }
}

/// What a flow did.
#[derive(Default)]
struct Outcome {
    rows: i64,
    /// Extra metrics (num_upserted_rows, num_deleted_rows for CDC flows).
    metrics: Option<Value>,
    data_quality: Option<Value>,
    no_op: bool,
}

/// Runs one flow and records its progress; false when it failed.
pub(crate) async fn run_flow(ctx: &FlowContext, name: &str, cancel: &CancellationToken) -> bool {
    let flow = &ctx.graph.flows[name];
    let _ = ctx.emit(
        [FlowStatus::Starting, FlowStatus::Running]
            .into_iter()
            .map(|status| {
                ctx.event(
                    flow,
                    status.level(),
                    "flow_progress",
                    &format!("Flow '{}' is {}.", flow.name, status.as_str()),
                    json!({"status": status.as_str()}),
                )
            })
            .collect(),
    );
    let tag = ctx.tag(&key(&flow.name));
    if let Ok(mut t) = RUNNING_TAGS.lock() {
        t.insert(tag.clone());
    }
    let result = match flow.kind {
        FlowKind::Complete => complete(ctx, flow, &tag).await,
        FlowKind::Append => append(ctx, flow, &tag).await,
        FlowKind::Cdc => append(ctx, flow, &tag).await,
    };
    if let Ok(mut t) = RUNNING_TAGS.lock() {
        t.remove(&tag);
    }
    match result {
        Ok(outcome) => {
            let status = FlowStatus::Completed;
            let mut details =
                json!({"status": status.as_str(), "metrics": {"num_output_rows": outcome.rows}});
            if let Some(Value::Object(extra)) = outcome.metrics {
                for (k, v) in extra {
                    details["metrics"][k] = v;
                }
            }
            if let Some(dq) = outcome.data_quality {
                details["data_quality"] = dq;
            }
            let message = if outcome.no_op {
                format!(
                    "Flow '{}' has COMPLETED: its inputs did not change, nothing to do.",
                    flow.name
                )
            } else {
                format!("Flow '{}' has COMPLETED.", flow.name)
            };
            ctx.emit(vec![ctx.event(
                flow,
                status.level(),
                "flow_progress",
                &message,
                details,
            )])
            .is_ok()
        }
        Err(stop) => {
            let (status, class_name, message) = match stop {
                Stop::Canceled => (
                    FlowStatus::Stopped,
                    "Canceled".to_string(),
                    "stopped".to_string(),
                ),
                Stop::Failed {
                    class_name,
                    message,
                } if cancel.is_cancelled() => (FlowStatus::Stopped, class_name, message),
                Stop::Failed {
                    class_name,
                    message,
                } => (FlowStatus::Failed, class_name, message),
            };
            let text = format!("Flow '{}' has {}: {message}", flow.name, status.as_str());
            let mut e = ctx.event(
                flow,
                status.level(),
                "flow_progress",
                &text,
                json!({"status": status.as_str()}),
            );
            if status == FlowStatus::Failed {
                e.error = Some(error_json(&class_name, &message));
            }
            let _ = ctx.emit(vec![e]);
            false
        }
    }
}

fn create_spec(ctx: &FlowContext, flow: &Flow) -> Value {
    ctx.graph
        .datasets
        .get(&key(&flow.target))
        .map(|d| json!({"partition_cols": d.partition_cols, "table_properties": d.table_properties, "comment": d.comment}))
        .unwrap_or(json!({}))
}

async fn write(
    ctx: &FlowContext,
    flow: &Flow,
    tag: &str,
    mode: &str,
    selection: Selection,
    metadata: &str,
) -> Result<Outcome, Stop> {
    let target = key(&flow.target);
    let binding = ctx
        .binder
        .bind_flow(flow, &Mode::Run(selection), &ctx.schemas)?;
    let Value::Object(binding) = binding else {
        return Err(fail("KilnError", "a flow's binding is not an object"));
    };
    let answer: RunAnswer = ctx
        .call(&Request::Run {
            flow: flow.name.clone(),
            target: ctx.binder.table(&target),
            mode: mode.to_string(),
            expectations: expectations(&ctx.graph, &target),
            user_metadata: metadata.to_string(),
            tag: tag.to_string(),
            create: create_spec(ctx, flow),
            binding,
        })
        .await?;
    Ok(Outcome {
        rows: answer.num_output_rows,
        metrics: answer.metrics,
        data_quality: answer.data_quality.filter(|v| !v.is_null()),
        no_op: false,
    })
}

async fn table_version(ctx: &FlowContext, table: &str) -> Result<i64, Stop> {
    let answer: Version = ctx
        .call(&Request::TableVersion {
            table: table.to_string(),
        })
        .await?;
    Ok(answer.version.unwrap_or(-1))
}

/// A materialized view: recomputed, unless nothing it reads changed.
async fn complete(ctx: &FlowContext, flow: &Flow, tag: &str) -> Result<Outcome, Stop> {
    let target = key(&flow.target);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    flow.origin.statement.hash(&mut hasher);
    format!("{:?}", expectations(&ctx.graph, &target)).hash(&mut hasher);
    for dep in ctx.graph.table_deps(flow) {
        table_version(ctx, &ctx.binder.table(&dep))
            .await?
            .hash(&mut hasher);
    }
    for item in ctx.graph.flow_items(flow) {
        match item {
            crate::sql::ItemKind::Files { path, .. } => {
                ctx.binder.list_files(path)?.hash(&mut hasher)
            }
            crate::sql::ItemKind::Relation { parts, .. } if ctx.graph.internal(parts).is_none() => {
                // External tables: their current version, when they are Delta.
                table_version(ctx, &parts.join("."))
                    .await
                    .unwrap_or(-2)
                    .hash(&mut hasher);
            }
            _ => {}
        }
    }
    let fingerprint = format!("{:016x}", hasher.finish());
    let mut ckpt = ctx.journal.checkpoint(&ctx.pipeline_id, &key(&flow.name))?;
    let exists = table_version(ctx, &ctx.binder.table(&target)).await? >= 0;
    if exists && ckpt.fingerprint.as_deref() == Some(fingerprint.as_str()) {
        ctx.emit(vec![ctx.event(flow, "INFO", "planning_information", &format!("Flow '{}' is a no-op: no input changed.", flow.name), json!({
            "technique_information": [{"maintenance_type": "MAINTENANCE_TYPE_NO_OP", "is_chosen": true, "is_applicable": true}]
        }))])?;
        return Ok(Outcome {
            no_op: true,
            ..Default::default()
        });
    }
    ctx.emit(vec![ctx.event(flow, "INFO", "planning_information", &format!("Flow '{}' will be fully recomputed.", flow.name), json!({
        "technique_information": [{"maintenance_type": "MAINTENANCE_TYPE_COMPLETE_RECOMPUTE", "is_chosen": true, "is_applicable": true}]
    }))])?;
    let metadata = format!(
        "kiln:{}:{}:{}",
        ctx.pipeline_id,
        key(&flow.name),
        ctx.update_id
    );
    let outcome = write(ctx, flow, tag, "complete", Selection::default(), &metadata).await?;
    ckpt.fingerprint = Some(fingerprint);
    ctx.journal.save_checkpoint(&ckpt)?;
    Ok(outcome)
}

fn apply(ckpt: &mut FlowCheckpoint, batch: &Batch) {
    for (source, files) in &batch.files {
        let seen = ckpt.seen.entry(source.clone()).or_default();
        for (path, size, mtime) in files {
            seen.insert(path.clone(), (*size, *mtime));
        }
    }
    for (source, (_, to)) in &batch.versions {
        ckpt.versions.insert(source.clone(), *to);
    }
    ckpt.next_batch = batch.id + 1;
    ckpt.pending = None;
}

/// A streaming flow: exactly the input that is new since its checkpoint.
async fn append(ctx: &FlowContext, flow: &Flow, tag: &str) -> Result<Outcome, Stop> {
    let target_table = ctx.binder.table(&key(&flow.target));
    let mut ckpt = ctx.journal.checkpoint(&ctx.pipeline_id, &key(&flow.name))?;
    if let Some(pending) = ckpt.pending.clone() {
        let found: Version = ctx
            .call(&Request::FindCommit {
                table: target_table.clone(),
                user_metadata: pending.user_metadata.clone(),
            })
            .await?;
        if found.version.is_some() {
            apply(&mut ckpt, &pending);
        } else {
            ckpt.pending = None;
        }
        ctx.journal.save_checkpoint(&ckpt)?;
    }
    if flow.once && ckpt.next_batch > 0 {
        return Ok(Outcome {
            no_op: true,
            ..Default::default()
        });
    }
    let mut batch = Batch {
        id: ckpt.next_batch,
        ..Default::default()
    };
    let mut selection = Selection::default();
    let mut anything = false;
    for source in ctx.binder.sources(flow) {
        match source {
            Source::Files { key, path } => {
                let seen = ckpt.seen.get(&key).cloned().unwrap_or_default();
                let new: Vec<(String, u64, i64)> = ctx
                    .binder
                    .list_files(&path)?
                    .into_iter()
                    .filter(|(p, _, _)| !seen.contains_key(p))
                    .collect();
                anything |= !new.is_empty();
                selection
                    .files
                    .insert(key.clone(), new.iter().map(|f| f.0.clone()).collect());
                selection
                    .seen
                    .insert(key.clone(), seen.keys().cloned().collect());
                batch.files.insert(key, new);
            }
            Source::Delta { key, table } => {
                let to = table_version(ctx, &table).await?;
                if to < 0 {
                    return Err(fail(
                        "TABLE_OR_VIEW_NOT_FOUND",
                        format!("streaming source {table} does not exist"),
                    ));
                }
                let from = ckpt.versions.get(&key).map(|v| v + 1).unwrap_or(0);
                anything |= to >= from;
                selection.versions.insert(key.clone(), (from, to));
                batch.versions.insert(key, (from, to));
            }
        }
    }
    let exists = table_version(ctx, &target_table).await? >= 0;
    if !anything && exists {
        return Ok(Outcome::default());
    }
    batch.user_metadata = format!("kiln:{}:{}:{}", ctx.pipeline_id, key(&flow.name), batch.id);
    ckpt.pending = Some(batch.clone());
    ctx.journal.save_checkpoint(&ckpt)?;
    let mode = if flow.kind == FlowKind::Cdc {
        "cdc"
    } else {
        "append"
    };
    failpoint("pipeline-before-write");
    let outcome = write(ctx, flow, tag, mode, selection, &batch.user_metadata).await?;
    failpoint("pipeline-after-write");
    apply(&mut ckpt, &batch);
    ctx.journal.save_checkpoint(&ckpt)?;
    Ok(outcome)
}

/// Crash-test hook: `KILN_FAILPOINT=<name>` aborts the whole process at that
/// point (between recording a batch as planned, writing it, and recording it
/// as committed), as kill -9 would. Unset in normal operation.
fn failpoint(name: &str) {
    if std::env::var("KILN_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::error!(failpoint = name, "aborting at a failpoint");
        std::process::abort();
    }
}

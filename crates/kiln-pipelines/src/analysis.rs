//! Analysis: every flow planned in dependency order against empty inputs of
//! its upstream schemas, before anything is written.

use std::collections::BTreeMap;

use serde_json::json;

use crate::bind::{Binder, Mode};
use crate::error::truncate;
use crate::error::{fail, Stop};
use crate::graph::expectations;
use crate::graph::{key, Graph};
use crate::protocol::{Analyzed, Request};
use crate::sink::{error_json, Sink};
use crate::worker::Worker;

/// The schema (Spark JSON) of every dataset, or the first error naming its flow.
pub(crate) async fn analyze(
    worker: &Worker,
    graph: &Graph,
    binder: &Binder,
    sink: &mut Sink,
) -> Result<BTreeMap<String, String>, Stop> {
    let mut schemas = BTreeMap::new();
    for name in &graph.order {
        let flow = &graph.flows[name];
        let target = key(&flow.target);
        let mut step = binder.bind_flow(flow, &Mode::Analysis, &schemas)?;
        step["expectations"] = json!(expectations(graph, &target));
        let answer: Analyzed = worker
            .call(&Request::Analyze { steps: vec![step] })
            .await
            .map_err(|e| fail(&e.class_name, e.message))?;
        let Some(result) = answer.steps.into_iter().next() else {
            return Err(fail("ProtocolError", "the worker analyzed no step"));
        };
        if result.ok {
            schemas
                .entry(target)
                .or_insert_with(|| result.schema.unwrap_or_default());
            continue;
        }
        let error = result.error.unwrap_or_default();
        let message = format!(
            "Failed to analyze flow '{}' of dataset '{}' ({}:{}: {}): {}",
            flow.name,
            flow.target,
            flow.origin.path,
            flow.origin.line,
            truncate(&flow.origin.statement),
            error.message.as_deref().unwrap_or("unknown error")
        );
        let mut e = sink.flow_event(
            &flow.name,
            &flow.target,
            "ERROR",
            "flow_progress",
            &message,
            json!({"status": "FAILED"}),
        );
        let class = error
            .class_name
            .unwrap_or_else(|| "AnalysisException".to_string());
        e.error = Some(error_json(&class, &message));
        sink.push(e);
        return Err(fail(&class, message));
    }
    Ok(schemas)
}

//! Analysis: every flow planned in dependency order against empty inputs of
//! its upstream schemas, before anything is written.

use std::collections::BTreeMap;

use serde_json::json;

use crate::bind::{Binder, Mode};
use crate::error::truncate;
use crate::error::{fail, Stop};
use crate::graph::expectations;
use crate::graph::{key, Graph};
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
        let answer = worker
            .call("analyze", json!({"steps": [step]}))
            .await
            .map_err(|e| fail(&e.class_name, e.message))?;
        let result = &answer["steps"][0];
        if result["ok"] == json!(true) {
            schemas
                .entry(target)
                .or_insert_with(|| result["schema"].as_str().unwrap_or_default().to_string());
            continue;
        }
        let message = format!(
            "Failed to analyze flow '{}' of dataset '{}' ({}:{}: {}): {}",
            flow.name,
            flow.target,
            flow.origin.path,
            flow.origin.line,
            truncate(&flow.origin.statement),
            result["error"]["message"]
                .as_str()
                .unwrap_or("unknown error")
        );
        let mut e = sink.flow_event(
            &flow.name,
            &flow.target,
            "ERROR",
            "flow_progress",
            &message,
            json!({"status": "FAILED"}),
        );
        let class = result["error"]["class_name"]
            .as_str()
            .unwrap_or("AnalysisException")
            .to_string();
        e.error = Some(error_json(&class, &message));
        sink.push(e);
        return Err(fail(&class, message));
    }
    Ok(schemas)
}

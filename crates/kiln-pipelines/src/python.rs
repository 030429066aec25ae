//! Datasets and flows of Python libraries, as the worker registered them
//! (`import dlt` / `pyspark.pipelines`), added to the same graph as SQL ones.

use serde_json::Value;

use crate::error::{fail, Stop};
use crate::graph::{Dataset, Flow, FlowKind, FlowQuery, Graph, GraphError, Origin};
use crate::sql::{Action, CdcDef, DatasetKind, Expectation, Item, ItemKind, Query};

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// A read recorded at registration.
fn item(v: &Value) -> ItemKind {
    if v["kind"] == "files" {
        ItemKind::Files {
            streaming: v["streaming"].as_bool().unwrap_or(false),
            path: text(&v["path"]),
            format: v["format"].as_str().map(str::to_string),
            options: v["options"]
                .as_array()
                .map(|a| a.iter().map(|kv| (text(&kv[0]), text(&kv[1]))).collect())
                .unwrap_or_default(),
        }
    } else {
        ItemKind::Relation {
            parts: strings(&v["parts"]),
            streaming: v["streaming"].as_bool().unwrap_or(false),
            live: v["live"].as_bool().unwrap_or(false),
        }
    }
}

fn action(v: &Value) -> Action {
    match v.as_str() {
        Some("drop") => Action::Drop,
        Some("fail") => Action::Fail,
        _ => Action::Warn,
    }
}

fn cdc(v: &Value, items: &[ItemKind]) -> Result<CdcDef, Stop> {
    let source = text(&v["source"]);
    let kind = items
        .first()
        .cloned()
        .ok_or_else(|| fail("InvalidFlow", "apply_changes needs a source"))?;
    let sequence_by = text(&v["sequence_by"]);
    if sequence_by.is_empty() {
        return Err(fail("InvalidFlow", "apply_changes needs sequence_by"));
    }
    Ok(CdcDef {
        source: Query {
            items: vec![Item {
                span: 0..source.len(),
                kind,
            }],
            text: source,
        },
        keys: strings(&v["keys"]),
        sequence_by,
        delete_when: v["delete_when"].as_str().map(str::to_string),
        truncate_when: v["truncate_when"].as_str().map(str::to_string),
        ignore_null_updates: v["ignore_null_updates"].as_bool().unwrap_or(false),
        columns: v["columns"].as_array().map(|_| strings(&v["columns"])),
        except_columns: strings(&v["except_columns"]),
        scd_type: v["scd_type"].as_u64().unwrap_or(1) as u8,
        track_history: None,
        where_clause: v["where"].as_str().map(str::to_string),
    })
}

/// Adds the worker's `{datasets, flows}` to the graph.
pub(crate) fn add_elements(
    graph: &mut Graph,
    elements: &Value,
    errors: &mut Vec<GraphError>,
) -> Result<(), Stop> {
    let flows = elements["flows"].as_array().cloned().unwrap_or_default();
    let streaming_flow = |name: &str| {
        flows
            .iter()
            .any(|f| f["target"].as_str() == Some(name) && f["streaming"].as_bool() == Some(true))
    };
    for d in elements["datasets"].as_array().cloned().unwrap_or_default() {
        let name = text(&d["name"]);
        let kind = match d["kind"].as_str() {
            Some("view") => DatasetKind::View,
            Some("materialized_view") => DatasetKind::MaterializedView,
            Some("streaming_table") => DatasetKind::StreamingTable,
            _ if streaming_flow(&name) => DatasetKind::StreamingTable,
            _ => DatasetKind::MaterializedView,
        };
        let dataset = Dataset {
            name: name.clone(),
            kind,
            temporary: d["temporary"].as_bool().unwrap_or(false),
            columns: Vec::new(),
            expectations: d["expectations"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|e| Expectation {
                            name: text(&e["name"]),
                            expr: text(&e["expr"]),
                            action: action(&e["action"]),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            comment: d["comment"].as_str().map(str::to_string),
            partition_cols: strings(&d["partition_cols"]),
            table_properties: d["table_properties"]
                .as_array()
                .map(|a| a.iter().map(|kv| (text(&kv[0]), text(&kv[1]))).collect())
                .unwrap_or_default(),
            origin: Origin {
                path: text(&d["path"]),
                line: 0,
                statement: format!("dataset {name}"),
            },
        };
        if let Err(e) = graph.add_dataset(dataset) {
            errors.push(e);
        }
    }
    for f in &flows {
        let items: Vec<ItemKind> = f["items"]
            .as_array()
            .map(|a| a.iter().map(item).collect())
            .unwrap_or_default();
        let name = text(&f["name"]);
        let target = text(&f["target"]);
        let target_streaming = graph
            .datasets
            .get(&crate::graph::key(&target))
            .is_some_and(|d| d.kind == DatasetKind::StreamingTable);
        let (kind, query) = if f["cdc"].is_object() {
            (
                FlowKind::Cdc,
                FlowQuery::Cdc(Box::new(cdc(&f["cdc"], &items)?)),
            )
        } else {
            let kind = if target_streaming {
                FlowKind::Append
            } else {
                FlowKind::Complete
            };
            (
                kind,
                FlowQuery::Python {
                    id: text(&f["id"]),
                    items,
                },
            )
        };
        let flow = Flow {
            name,
            target,
            kind,
            query,
            once: f["once"].as_bool().unwrap_or(false),
            origin: Origin {
                path: text(&f["path"]),
                line: f["line"].as_u64().unwrap_or(0) as usize,
                statement: text(&f["code"]),
            },
        };
        if let Err(e) = graph.add_flow(flow) {
            errors.push(e);
        }
    }
    Ok(())
}

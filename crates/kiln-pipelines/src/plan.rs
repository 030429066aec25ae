//! Planning an update: reading and parsing the libraries into a resolved graph
//! (errors name the file, line and dataset), the definition events, and the
//! tables a full refresh resets.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::bind::Binder;
use crate::error::{fail, truncate, Stop};
use crate::graph::{key, FlowQuery, Graph};
use crate::libraries::{self, SourceLanguage};
use crate::model::UpdateRecord;
use crate::protocol::{PythonLibrary, Request};
use crate::sink::{error_json, Sink};
use crate::sql::DatasetKind;
use crate::worker::Worker;
use kiln_workspace::workspace::Workspace;

/// Reads, parses and resolves every library; errors fail the update naming
/// the file, the statement and the dataset.
pub(crate) async fn load_graph(
    workspace: &Workspace,
    worker: &Worker,
    update: &UpdateRecord,
    sink: &mut Sink,
) -> Result<Graph, Stop> {
    let configuration = update.config.configuration();
    let mut graph = Graph::default();
    let mut errors = Vec::new();
    let mut python = Vec::new();
    for lib in update.config.libraries() {
        let path = libraries::library_path(lib)?;
        let source = libraries::read(workspace, &path)?;
        let (text, ignored) = libraries::strip_notebook(&source.text, source.language);
        for what in ignored {
            sink.emit(
                "WARN",
                "planning_information",
                &format!("'{what}' in {path} is ignored by pipelines on Kiln."),
                json!({}),
            );
        }
        let text = libraries::substitute(&text, &configuration);
        match source.language {
            SourceLanguage::Sql => {
                let statements = crate::sql::parse(&text).map_err(|e| {
                    fail(
                        "ParseException",
                        format!(
                            "Syntax error in {path} at line {}: {}. Statement: {}",
                            e.line,
                            e.message,
                            truncate(&e.statement)
                        ),
                    )
                })?;
                for st in &statements {
                    for what in &st.ignored {
                        sink.emit(
                            "WARN",
                            "planning_information",
                            &format!(
                                "{what} in {path}:{} is parsed and ignored by Kiln.",
                                st.line
                            ),
                            json!({}),
                        );
                    }
                }
                graph.add_sql(
                    crate::graph::SqlSource {
                        path: source.path.clone(),
                        statements,
                    },
                    &mut errors,
                );
            }
            SourceLanguage::Python => python.push(PythonLibrary {
                path: source.path.clone(),
                source: text,
            }),
        }
    }
    if !python.is_empty() {
        let configuration = configuration
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let elements: Value = worker
            .call(&Request::RegisterPython {
                libraries: python,
                configuration,
            })
            .await
            .map_err(|e| fail("PythonRegistrationError", e.message))?;
        crate::python::add_elements(&mut graph, &elements, &mut errors)?;
    }
    graph.resolve(&mut errors);
    if let Some(first) = errors.first() {
        for e in &errors {
            let mut ev = sink.flow_event(
                e.flow.as_deref().unwrap_or(""),
                e.dataset.as_deref().unwrap_or(""),
                "ERROR",
                "flow_progress",
                &e.message,
                json!({"status": "FAILED"}),
            );
            ev.error = Some(error_json(e.class_name, &e.message));
            sink.push(ev);
        }
        let place = first
            .origin
            .as_ref()
            .map(|o| format!(" ({}:{}: {})", o.path, o.line, truncate(&o.statement)))
            .unwrap_or_default();
        return Err(fail(first.class_name, format!("{}{place}", first.message)));
    }
    Ok(graph)
}

pub(crate) fn definitions(graph: &Graph, binder: &Binder, sink: &mut Sink) {
    for ds in graph.datasets.values() {
        let dataset_type = match ds.kind {
            DatasetKind::MaterializedView => "MATERIALIZED_VIEW",
            DatasetKind::StreamingTable => "STREAMING_TABLE",
            DatasetKind::View => "VIEW",
        };
        let e = sink.flow_event("", &ds.name, "INFO", "dataset_definition", &format!("Dataset '{}' is defined as a {}.", ds.name, dataset_type.to_lowercase().replace('_', " ")), json!({
            "dataset_type": dataset_type,
            "num_flows": graph.flows_into(&key(&ds.name)).len(),
            "expectations": ds.expectations.iter().map(|e| json!({"name": e.name, "constraint": e.expr, "action": format!("{:?}", e.action).to_uppercase()})).collect::<Vec<_>>(),
            "table_properties": ds.table_properties.iter().cloned().collect::<BTreeMap<_, _>>(),
            "partition_columns": ds.partition_cols,
            "path": if ds.kind == DatasetKind::View { Value::Null } else { json!(binder.table(&key(&ds.name))) },
        }));
        sink.push(e);
    }
    for name in &graph.order {
        let flow = &graph.flows[name];
        let inputs: Vec<String> = graph
            .reads(flow)
            .into_iter()
            .map(|(k, _)| graph.datasets.get(&k).map(|d| d.name.clone()).unwrap_or(k))
            .chain(external_inputs(&flow.query))
            .collect();
        let e = sink.flow_event(
            &flow.name,
            &flow.target,
            "INFO",
            "flow_definition",
            &format!("Flow '{}' is defined as {}.", flow.name, flow.kind.as_str()),
            json!({
                "output_dataset": flow.target,
                "input_datasets": inputs,
                "flow_type": flow.kind.as_str(),
                "language": if matches!(flow.query, FlowQuery::Python { .. }) { "PYTHON" } else { "SQL" },
                "source_code_location": {"path": flow.origin.path, "line_number": flow.origin.line},
            }),
        );
        sink.push(e);
    }
}

fn external_inputs(q: &FlowQuery) -> Vec<String> {
    let query = match q {
        FlowQuery::Sql(q) => q,
        FlowQuery::Cdc(c) => &c.source,
        FlowQuery::Python { .. } => return Vec::new(),
    };
    query
        .items
        .iter()
        .filter_map(|i| match &i.kind {
            crate::sql::ItemKind::Files { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

/// The tables a full refresh resets.
pub(crate) fn resets(graph: &Graph, update: &UpdateRecord) -> Result<Vec<String>, Stop> {
    let tables = graph
        .datasets
        .values()
        .filter(|d| d.kind != DatasetKind::View);
    if update.full_refresh {
        return Ok(tables
            .filter(|d| d.resettable())
            .map(|d| key(&d.name))
            .collect());
    }
    let mut out = Vec::new();
    for name in &update.full_refresh_selection {
        let Some(d) = graph.datasets.get(&key(name)) else {
            return Err(fail("TABLE_NOT_FOUND", format!("full_refresh_selection names '{name}', which is not a dataset of this pipeline")));
        };
        if !d.resettable() {
            return Err(fail(
                "TABLE_NOT_RESETTABLE",
                format!(
                    "'{name}' has pipelines.reset.allowed = false and cannot be fully refreshed"
                ),
            ));
        }
        out.push(key(name));
    }
    Ok(out)
}

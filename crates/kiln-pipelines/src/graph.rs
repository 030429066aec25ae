//! The dataflow graph: every dataset and flow of every library, resolved
//! before anything runs (statement and file order do not matter), validated
//! (missing datasets, duplicates, cycles, materialized views with several
//! flows), and ordered for execution.

use std::collections::{BTreeMap, BTreeSet};

use crate::sql::{
    self, CdcDef, ColumnDef, DatasetKind, Expectation, FlowBody, ItemKind, Query, StatementKind,
};

/// Where an element was declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub path: String,
    pub line: usize,
    pub statement: String,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub kind: DatasetKind,
    pub temporary: bool,
    pub columns: Vec<ColumnDef>,
    pub expectations: Vec<Expectation>,
    pub comment: Option<String>,
    pub partition_cols: Vec<String>,
    pub table_properties: Vec<(String, String)>,
    pub origin: Origin,
}

impl Dataset {
    pub fn resettable(&self) -> bool {
        !self
            .table_properties
            .iter()
            .any(|(k, v)| k == "pipelines.reset.allowed" && v.eq_ignore_ascii_case("false"))
    }
}

#[derive(Debug, Clone)]
pub enum FlowQuery {
    Sql(Query),
    /// A Python flow function, by its registration id, and what it reads
    /// (recorded when Kiln registered it).
    Python {
        id: String,
        items: Vec<ItemKind>,
    },
    Cdc(Box<CdcDef>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKind {
    /// Recomputed every update (materialized views).
    Complete,
    /// Appends what is new since its checkpoint (streaming tables).
    Append,
    /// APPLY CHANGES into a streaming table.
    Cdc,
}

impl FlowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "COMPLETE",
            Self::Append => "APPEND",
            Self::Cdc => "CHANGE",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Flow {
    pub name: String,
    pub target: String,
    pub kind: FlowKind,
    pub query: FlowQuery,
    pub once: bool,
    pub origin: Origin,
}

/// A graph error with the element it concerns.
#[allow(clippy::result_large_err)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    pub dataset: Option<String>,
    pub flow: Option<String>,
    pub origin: Option<Origin>,
    pub class_name: &'static str,
    pub message: String,
}

/// Parsed statements of one library.
pub struct SqlSource {
    pub path: String,
    pub statements: Vec<sql::Statement>,
}

#[derive(Debug, Default)]
pub struct Graph {
    pub datasets: BTreeMap<String, Dataset>,
    pub flows: BTreeMap<String, Flow>,
    /// Flows in dependency order.
    pub order: Vec<String>,
}

pub fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

fn error(class_name: &'static str, message: String, origin: &Origin) -> GraphError {
    GraphError {
        dataset: None,
        flow: None,
        origin: Some(origin.clone()),
        class_name,
        message,
    }
}

impl Graph {
    #[allow(clippy::result_large_err)]
    pub fn add_dataset(&mut self, d: Dataset) -> Result<(), GraphError> {
        let k = key(&d.name);
        if let Some(existing) = self.datasets.get(&k) {
            return Err(GraphError {
                dataset: Some(d.name.clone()),
                ..error(
                    "DUPLICATE_GRAPH_ELEMENT",
                    format!(
                        "Dataset '{}' is defined twice: at {}:{} and at {}:{}",
                        d.name,
                        existing.origin.path,
                        existing.origin.line,
                        d.origin.path,
                        d.origin.line
                    ),
                    &d.origin,
                )
            });
        }
        self.datasets.insert(k, d);
        Ok(())
    }

    #[allow(clippy::result_large_err)]
    pub fn add_flow(&mut self, f: Flow) -> Result<(), GraphError> {
        let k = key(&f.name);
        if self.flows.contains_key(&k) {
            return Err(GraphError {
                flow: Some(f.name.clone()),
                ..error(
                    "DUPLICATE_GRAPH_ELEMENT",
                    format!("Flow '{}' is defined twice", f.name),
                    &f.origin,
                )
            });
        }
        self.flows.insert(k, f);
        Ok(())
    }

    /// Adds the statements of a SQL library.
    pub fn add_sql(&mut self, source: SqlSource, errors: &mut Vec<GraphError>) {
        for st in source.statements {
            let origin = Origin {
                path: source.path.clone(),
                line: st.line,
                statement: st.text.clone(),
            };
            let result = match st.kind {
                StatementKind::Dataset(d) => {
                    let d = *d;
                    let name = d.name.last().cloned().unwrap_or_default();
                    let query = d.query.clone();
                    let kind = d.kind;
                    let added = self.add_dataset(Dataset {
                        name: name.clone(),
                        kind,
                        temporary: d.temporary,
                        columns: d.columns,
                        expectations: d.expectations,
                        comment: d.comment,
                        partition_cols: d.partition_cols,
                        table_properties: d.table_properties,
                        origin: origin.clone(),
                    });
                    match (added, query) {
                        (Ok(()), Some(q)) => self.add_flow(Flow {
                            name: name.clone(),
                            target: name,
                            kind: if kind == DatasetKind::StreamingTable {
                                FlowKind::Append
                            } else {
                                FlowKind::Complete
                            },
                            query: FlowQuery::Sql(q),
                            once: false,
                            origin,
                        }),
                        (other, _) => other,
                    }
                }
                StatementKind::Flow(f) => {
                    let f = *f;
                    let target = f.target.last().cloned().unwrap_or_default();
                    let name = f.name.clone().unwrap_or_else(|| target.clone());
                    let (kind, query, once) = match f.body {
                        FlowBody::Append { query, once } => {
                            (FlowKind::Append, FlowQuery::Sql(query), once)
                        }
                        FlowBody::Cdc(c) => (FlowKind::Cdc, FlowQuery::Cdc(c), false),
                    };
                    self.add_flow(Flow {
                        name,
                        target,
                        kind,
                        query,
                        once,
                        origin,
                    })
                }
                StatementKind::Set { .. } | StatementKind::Use { .. } => Ok(()),
            };
            if let Err(e) = result {
                errors.push(e);
            }
        }
    }

    /// What a flow reads: the references of its query or function.
    pub fn flow_items<'a>(&self, flow: &'a Flow) -> Vec<&'a ItemKind> {
        match &flow.query {
            FlowQuery::Sql(q) => q.items.iter().map(|i| &i.kind).collect(),
            FlowQuery::Cdc(c) => c.source.items.iter().map(|i| &i.kind).collect(),
            FlowQuery::Python { items, .. } => items.iter().collect(),
        }
    }

    /// The datasets a flow reads directly: (dataset key, streaming).
    pub fn reads(&self, flow: &Flow) -> Vec<(String, bool)> {
        self.flow_items(flow)
            .into_iter()
            .filter_map(|i| match i {
                ItemKind::Relation {
                    parts, streaming, ..
                } => self.internal(parts).map(|k| (k, *streaming)),
                ItemKind::Files { .. } => None,
            })
            .collect()
    }

    /// The dataset a relation names, when it is one of this pipeline's.
    pub fn internal(&self, parts: &[String]) -> Option<String> {
        match parts {
            [one] if self.datasets.contains_key(&key(one)) => Some(key(one)),
            _ => None,
        }
    }

    /// The flows writing into a dataset.
    pub fn flows_into(&self, dataset: &str) -> Vec<&Flow> {
        self.flows
            .values()
            .filter(|f| key(&f.target) == dataset)
            .collect()
    }

    /// Validates the graph and computes the execution order.
    pub fn resolve(&mut self, errors: &mut Vec<GraphError>) {
        for flow in self.flows.values() {
            let target = key(&flow.target);
            let Some(ds) = self.datasets.get(&target) else {
                errors.push(GraphError {
                    flow: Some(flow.name.clone()),
                    dataset: Some(flow.target.clone()),
                    ..error(
                        "DATASET_NOT_DEFINED",
                        format!(
                            "Flow '{}' writes to '{}', which is not defined in this pipeline",
                            flow.name, flow.target
                        ),
                        &flow.origin,
                    )
                });
                continue;
            };
            if flow.name != flow.target && ds.kind != DatasetKind::StreamingTable {
                errors.push(GraphError {
                    flow: Some(flow.name.clone()),
                    dataset: Some(ds.name.clone()),
                    ..error(
                        "INVALID_FLOW_TARGET",
                        format!(
                            "Flow '{}' can only write to a streaming table; '{}' is not one",
                            flow.name, ds.name
                        ),
                        &flow.origin,
                    )
                });
            }
            let missing = live_missing(self, flow);
            for name in missing {
                errors.push(GraphError {
                    flow: Some(flow.name.clone()),
                    dataset: Some(flow.target.clone()),
                    ..error(
                        "DATASET_NOT_FOUND",
                        format!(
                            "Failed to resolve flow '{}': dataset '{}' is read at {}:{} but is not defined in this pipeline",
                            flow.name, name, flow.origin.path, flow.origin.line
                        ),
                        &flow.origin,
                    )
                });
            }
            if let (FlowQuery::Sql(q), FlowKind::Append) = (&flow.query, flow.kind) {
                if !flow.once && !q.is_streaming() && ds.kind == DatasetKind::StreamingTable {
                    errors.push(GraphError {
                        flow: Some(flow.name.clone()),
                        dataset: Some(ds.name.clone()),
                        ..error(
                            "NON_STREAMING_QUERY",
                            format!(
                                "Streaming table '{}' needs a streaming source: read with STREAM(…), STREAM read_files(…) or cloud_files(…), or declare a materialized view",
                                ds.name
                            ),
                            &flow.origin,
                        )
                    });
                }
            }
        }
        for ds in self.datasets.values() {
            let n = self.flows_into(&key(&ds.name)).len();
            if n == 0 {
                errors.push(GraphError {
                    dataset: Some(ds.name.clone()),
                    ..error(
                        "PIPELINE_DATASET_WITHOUT_FLOW",
                        format!(
                            "Dataset '{}' has no query and no flow writes to it",
                            ds.name
                        ),
                        &ds.origin,
                    )
                });
            }
            if n > 1 && ds.kind != DatasetKind::StreamingTable {
                errors.push(GraphError {
                    dataset: Some(ds.name.clone()),
                    ..error(
                        "MATERIALIZED_VIEW_WITH_MULTIPLE_QUERIES",
                        format!(
                            "'{}' has {n} flows; only a streaming table may have several",
                            ds.name
                        ),
                        &ds.origin,
                    )
                });
            }
        }
        match self.toposort() {
            Ok(order) => self.order = order,
            Err(cycle) => {
                let origin = self
                    .datasets
                    .get(&cycle[0])
                    .map(|d| d.origin.clone())
                    .unwrap_or(Origin {
                        path: String::new(),
                        line: 0,
                        statement: String::new(),
                    });
                let names: Vec<String> = cycle
                    .iter()
                    .map(|k| {
                        self.datasets
                            .get(k)
                            .map(|d| d.name.clone())
                            .unwrap_or(k.clone())
                    })
                    .collect();
                errors.push(GraphError {
                    dataset: names.first().cloned(),
                    ..error(
                        "CIRCULAR_DEPENDENCY",
                        format!(
                            "Circular dependency between datasets: {}",
                            names.join(" -> ")
                        ),
                        &origin,
                    )
                });
            }
        }
    }

    /// Dataset-level dependencies: dataset → the datasets its flows read.
    pub fn upstream(&self, dataset: &str) -> BTreeSet<String> {
        self.flows_into(dataset)
            .into_iter()
            .flat_map(|f| self.reads(f).into_iter().map(|(k, _)| k))
            .collect()
    }

    /// Flows ordered so that every flow comes after the flows of the datasets
    /// it reads; a cycle is returned as the dataset path that closes it.
    fn toposort(&self) -> Result<Vec<String>, Vec<String>> {
        let mut order = Vec::new();
        let mut state: BTreeMap<String, u8> = BTreeMap::new();
        fn visit(
            g: &Graph,
            ds: &str,
            state: &mut BTreeMap<String, u8>,
            stack: &mut Vec<String>,
            out: &mut Vec<String>,
        ) -> Result<(), Vec<String>> {
            match state.get(ds) {
                Some(2) => return Ok(()),
                Some(1) => {
                    let start = stack.iter().position(|s| s == ds).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(ds.to_string());
                    return Err(cycle);
                }
                _ => {}
            }
            state.insert(ds.to_string(), 1);
            stack.push(ds.to_string());
            for up in g.upstream(ds) {
                visit(g, &up, state, stack, out)?;
            }
            stack.pop();
            state.insert(ds.to_string(), 2);
            out.push(ds.to_string());
            Ok(())
        }
        let mut datasets = Vec::new();
        for ds in self.datasets.keys() {
            visit(self, ds, &mut state, &mut Vec::new(), &mut datasets)?;
        }
        for ds in datasets {
            for f in self.flows_into(&ds) {
                order.push(key(&f.name));
            }
        }
        Ok(order)
    }

    /// Tables whose flows a flow must wait for (views are looked through).
    pub fn table_deps(&self, flow: &Flow) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo: Vec<String> = self.reads(flow).into_iter().map(|(k, _)| k).collect();
        let mut seen = BTreeSet::new();
        while let Some(ds) = todo.pop() {
            if !seen.insert(ds.clone()) {
                continue;
            }
            match self.datasets.get(&ds) {
                Some(d) if d.kind == DatasetKind::View => {
                    for f in self.flows_into(&ds) {
                        todo.extend(self.reads(f).into_iter().map(|(k, _)| k));
                    }
                }
                Some(_) => {
                    out.insert(ds);
                }
                None => {}
            }
        }
        out
    }
}

fn live_missing(g: &Graph, flow: &Flow) -> Vec<String> {
    g.flow_items(flow)
        .into_iter()
        .filter_map(|i| match i {
            ItemKind::Relation {
                parts, live: true, ..
            } if g.internal(parts).is_none() => Some(parts.join(".")),
            _ => None,
        })
        .collect()
}

/// A dataset's expectations as the worker receives them.
pub(crate) fn expectations(graph: &Graph, dataset: &str) -> Vec<serde_json::Value> {
    graph
        .datasets
        .get(dataset)
        .map(|d| {
            d.expectations
                .iter()
                .map(|e| serde_json::json!({"name": e.name, "expr": e.expr, "action": format!("{:?}", e.action).to_lowercase(), "dataset": d.name}))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(files: &[(&str, &str)]) -> (Graph, Vec<GraphError>) {
        let mut g = Graph::default();
        let mut errors = Vec::new();
        for (path, text) in files {
            let statements = sql::parse(text).unwrap_or_else(|e| panic!("{e}"));
            g.add_sql(
                SqlSource {
                    path: path.to_string(),
                    statements,
                },
                &mut errors,
            );
        }
        g.resolve(&mut errors);
        (g, errors)
    }

    #[test]
    fn order_follows_dependencies_across_files() {
        let (g, errors) = build(&[
            ("/b", "CREATE OR REFRESH MATERIALIZED VIEW agg AS SELECT count(*) FROM clean;"),
            (
                "/a",
                "CREATE TEMPORARY VIEW clean AS SELECT * FROM raw WHERE id > 0;
                 CREATE OR REFRESH STREAMING TABLE raw AS SELECT * FROM STREAM read_files('/in', format => 'json');",
            ),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        let raw = g.order.iter().position(|f| f == "raw");
        let agg = g.order.iter().position(|f| f == "agg");
        assert!(raw < agg, "{:?}", g.order);
        let deps = g.table_deps(&g.flows["agg"]);
        assert_eq!(
            deps.into_iter().collect::<Vec<_>>(),
            vec!["raw".to_string()]
        );
    }

    #[test]
    fn missing_dataset_names_it() {
        let (_, errors) = build(&[(
            "/nb",
            "CREATE OR REFRESH LIVE TABLE t AS SELECT * FROM LIVE.nope",
        )]);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("'nope'"),
            "{}",
            errors[0].message
        );
        assert!(errors[0].message.contains("/nb:1"));
        assert_eq!(errors[0].flow.as_deref(), Some("t"));
    }

    #[test]
    fn cycles_duplicates_and_multiple_flows() {
        let (_, errors) = build(&[(
            "/x",
            "CREATE OR REFRESH LIVE TABLE a AS SELECT * FROM b;
             CREATE OR REFRESH LIVE TABLE b AS SELECT * FROM a;",
        )]);
        assert!(
            errors.iter().any(|e| e.class_name == "CIRCULAR_DEPENDENCY"),
            "{errors:?}"
        );
        let (_, errors) = build(&[
            ("/x", "CREATE OR REFRESH LIVE TABLE a AS SELECT 1"),
            ("/y", "CREATE OR REFRESH LIVE TABLE A AS SELECT 2"),
        ]);
        assert_eq!(errors[0].class_name, "DUPLICATE_GRAPH_ELEMENT");
        let (_, errors) = build(&[(
            "/x",
            "CREATE OR REFRESH STREAMING TABLE s;
             CREATE OR REFRESH MATERIALIZED VIEW m AS SELECT 1 AS x;
             CREATE FLOW f AS INSERT INTO m SELECT 2 AS x;",
        )]);
        let classes: Vec<_> = errors.iter().map(|e| e.class_name).collect();
        assert!(
            classes.contains(&"PIPELINE_DATASET_WITHOUT_FLOW"),
            "{classes:?}"
        );
        assert!(classes.contains(&"INVALID_FLOW_TARGET"), "{classes:?}");
        let (_, errors) = build(&[("/x", "CREATE OR REFRESH STREAMING TABLE s AS SELECT 1 AS x")]);
        assert_eq!(errors[0].class_name, "NON_STREAMING_QUERY");
    }
}

//! Turns a flow's query into the SQL the worker runs and the inputs it binds:
//! pipeline datasets, views (inlined as session views), incremental Delta
//! ranges and file selections replace the references the parser found.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::error::{fail, Stop};
use crate::graph::{key, Flow, FlowQuery, Graph};
use crate::sql::{DatasetKind, ItemKind};

/// What a run reads from its streaming sources.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub files: BTreeMap<String, Vec<String>>,
    /// Files already consumed (to infer a schema when nothing is new).
    pub seen: BTreeMap<String, Vec<String>>,
    pub versions: BTreeMap<String, (i64, i64)>,
}

pub enum Mode {
    /// Planning against empty inputs of the upstream schemas.
    Analysis,
    Run(Selection),
}

/// A streaming source of a flow.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Files { key: String, path: String },
    Delta { key: String, table: String },
}

pub struct Binder {
    pub graph: Arc<Graph>,
    catalog: String,
    schema: String,
    pub dbfs_root: PathBuf,
    counter: AtomicU64,
}

fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

impl Binder {
    pub fn new(graph: Arc<Graph>, catalog: &str, schema: &str, dbfs_root: PathBuf) -> Binder {
        Binder {
            graph,
            catalog: catalog.into(),
            schema: schema.into(),
            dbfs_root,
            counter: AtomicU64::new(0),
        }
    }

    /// The published name of a dataset.
    pub fn table(&self, dataset: &str) -> String {
        let name = self
            .graph
            .datasets
            .get(dataset)
            .map(|d| d.name.as_str())
            .unwrap_or(dataset);
        format!(
            "{}.{}.{}",
            quote(&self.catalog),
            quote(&self.schema),
            quote(name)
        )
    }

    /// The append-only log of change events behind an APPLY CHANGES target.
    pub fn cdc_log(&self, dataset: &str) -> String {
        let name = self
            .graph
            .datasets
            .get(dataset)
            .map(|d| d.name.as_str())
            .unwrap_or(dataset);
        format!(
            "{}.{}.{}",
            quote(&self.catalog),
            quote(&self.schema),
            quote(&format!("__kiln_cdc_log_{name}"))
        )
    }

    fn placeholder(&self) -> String {
        format!(
            "__kiln_src_{}",
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The local directory of a DBFS path (`/x`, `dbfs:/x`); nothing outside DBFS.
    pub fn resolve_path(&self, path: &str) -> Result<PathBuf, Stop> {
        dbfs_path(&self.dbfs_root, path)
    }

    /// Every data file under a source path: (local path, size, mtime ms), sorted.
    pub fn list_files(&self, path: &str) -> Result<Vec<(String, u64, i64)>, Stop> {
        let root = self.resolve_path(path)?;
        let mut out = Vec::new();
        let mut todo = vec![root.clone()];
        while let Some(dir) = todo.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                if dir == root && root.is_file() {
                    if let Ok(m) = root.metadata() {
                        out.push((root.display().to_string(), m.len(), mtime(&m)));
                    }
                }
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if name.starts_with('_') || name.starts_with('.') {
                    continue;
                }
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    todo.push(entry.path());
                } else if meta.is_file() {
                    out.push((entry.path().display().to_string(), meta.len(), mtime(&meta)));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The streaming sources a flow reads, looking through views.
    pub fn sources(&self, flow: &Flow) -> Vec<Source> {
        let mut out = Vec::new();
        self.collect_sources(self.graph.flow_items(flow), &mut out, 0);
        out
    }

    fn collect_sources(&self, items: Vec<&ItemKind>, out: &mut Vec<Source>, depth: usize) {
        if depth > 32 {
            return;
        }
        for item in items {
            let source = match item {
                ItemKind::Files {
                    streaming: true,
                    path,
                    ..
                } => Some(Source::Files {
                    key: format!("files:{path}"),
                    path: path.clone(),
                }),
                ItemKind::Relation {
                    parts, streaming, ..
                } => match self.graph.internal(parts) {
                    Some(k) if self.is_view(&k) => {
                        if let Some(view) = self.view_flow(&k) {
                            self.collect_sources(self.graph.flow_items(view), out, depth + 1);
                        }
                        None
                    }
                    Some(k) if *streaming => {
                        let table = self.table(&k);
                        Some(Source::Delta {
                            key: format!("delta:{table}"),
                            table,
                        })
                    }
                    None if *streaming => {
                        let table = parts.join(".");
                        Some(Source::Delta {
                            key: format!("delta:{table}"),
                            table,
                        })
                    }
                    _ => None,
                },
                _ => None,
            };
            if let Some(s) = source {
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
    }

    fn is_view(&self, k: &str) -> bool {
        self.graph
            .datasets
            .get(k)
            .is_some_and(|d| d.kind == DatasetKind::View)
    }

    fn view_flow(&self, k: &str) -> Option<&Flow> {
        self.graph.flows_into(k).into_iter().next()
    }

    /// What the worker needs to build a flow's DataFrame: `sql` (with every
    /// reference replaced) or `python` (the function and `refs`, the views its
    /// reads resolve to), and the `inputs` to bind.
    pub fn bind_flow(
        &self,
        flow: &Flow,
        mode: &Mode,
        schemas: &BTreeMap<String, String>,
    ) -> Result<Value, Stop> {
        let mut inputs = Map::new();
        match &flow.query {
            FlowQuery::Sql(q) => {
                let mut failure = None;
                let sql =
                    q.render(
                        |item| match self.bind_item(&item.kind, mode, schemas, &mut inputs) {
                            Ok(Some(name)) => name,
                            Ok(None) => q.text[item.span.clone()].to_string(),
                            Err(e) => {
                                failure.get_or_insert(e);
                                String::new()
                            }
                        },
                    );
                if let Some(e) = failure {
                    return Err(e);
                }
                Ok(json!({"sql": sql, "inputs": inputs}))
            }
            FlowQuery::Python { id, items } => {
                let mut refs = Map::new();
                for item in items {
                    if let Some(name) = self.bind_item(item, mode, schemas, &mut inputs)? {
                        refs.insert(ref_key(item), json!(name));
                    }
                }
                Ok(json!({"python": id, "refs": refs, "inputs": inputs}))
            }
            FlowQuery::Cdc(c) => {
                let item = c.source.items.first().map(|i| &i.kind).ok_or_else(|| {
                    fail("InvalidFlow", format!("flow '{}' has no source", flow.name))
                })?;
                let name = self.bind_item(item, mode, schemas, &mut inputs)?;
                let source = name.unwrap_or_else(|| c.source.text.clone());
                Ok(json!({
                    "sql": format!("SELECT * FROM {source}"),
                    "inputs": inputs,
                    "cdc": {
                        "keys": c.keys, "sequence_by": c.sequence_by, "delete_when": c.delete_when,
                        "truncate_when": c.truncate_when, "ignore_null_updates": c.ignore_null_updates,
                        "columns": c.columns, "except_columns": c.except_columns,
                        "scd_type": c.scd_type, "where": c.where_clause,
                    },
                    "cdc_log": self.cdc_log(&key(&flow.target)),
                }))
            }
        }
    }

    /// Binds one reference; `None` leaves it as written (an external table read in batch).
    fn bind_item(
        &self,
        kind: &ItemKind,
        mode: &Mode,
        schemas: &BTreeMap<String, String>,
        inputs: &mut Map<String, Value>,
    ) -> Result<Option<String>, Stop> {
        let binding = match kind {
            ItemKind::Relation {
                parts, streaming, ..
            } => match self.graph.internal(parts) {
                Some(k) => match mode {
                    Mode::Analysis => {
                        let schema = schemas.get(&k).ok_or_else(|| {
                            fail(
                                "UpstreamFailure",
                                format!("dataset '{}' could not be analysed", parts.join(".")),
                            )
                        })?;
                        json!({"kind": "empty", "schema": schema})
                    }
                    Mode::Run(_) if self.is_view(&k) => {
                        let view = self.view_flow(&k).ok_or_else(|| {
                            fail("InvalidView", format!("view '{k}' has no query"))
                        })?;
                        let mut binding = self.bind_flow(view, mode, schemas)?;
                        binding["kind"] = json!("view");
                        binding["expectations"] =
                            json!(crate::graph::expectations(&self.graph, &k));
                        binding
                    }
                    Mode::Run(sel) => {
                        let table = self.table(&k);
                        if *streaming {
                            delta_range(sel, table)
                        } else {
                            json!({"kind": "table", "table": table})
                        }
                    }
                },
                None if *streaming => {
                    let table = parts.join(".");
                    match mode {
                        Mode::Analysis => json!({"kind": "table", "table": table}),
                        Mode::Run(sel) => delta_range(sel, table),
                    }
                }
                None => return Ok(None),
            },
            ItemKind::Files {
                streaming,
                path,
                format,
                options,
            } => {
                let key = format!("files:{path}");
                let (files, sample): (Vec<String>, Vec<String>) = match mode {
                    Mode::Run(sel) if *streaming => (
                        sel.files.get(&key).cloned().unwrap_or_default(),
                        sel.seen.get(&key).cloned().unwrap_or_default(),
                    ),
                    _ => {
                        let all: Vec<String> =
                            self.list_files(path)?.into_iter().map(|f| f.0).collect();
                        match mode {
                            Mode::Analysis => (all.into_iter().take(64).collect(), Vec::new()),
                            Mode::Run(_) => (all, Vec::new()),
                        }
                    }
                };
                json!({"kind": "files", "path": path, "format": format, "options": options, "files": files, "sample": sample.into_iter().take(16).collect::<Vec<_>>()})
            }
        };
        let name = self.placeholder();
        inputs.insert(name.clone(), binding);
        Ok(Some(name))
    }
}

/// How a Python function names a read: `ds:<name>` or `files:<path>`.
fn ref_key(item: &ItemKind) -> String {
    match item {
        ItemKind::Relation { parts, .. } => format!("ds:{}", parts.join(".").to_ascii_lowercase()),
        ItemKind::Files { path, .. } => format!("files:{path}"),
    }
}

/// The local directory of a DBFS path (`/x`, `dbfs:/x`); nothing outside DBFS.
pub fn dbfs_path(dbfs_root: &Path, path: &str) -> Result<PathBuf, Stop> {
    let rel = path.strip_prefix("dbfs:").unwrap_or(path);
    if !rel.starts_with('/') {
        return Err(fail(
            "InvalidPath",
            format!("{path} is not an absolute DBFS path"),
        ));
    }
    let rel = Path::new(rel.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(fail("InvalidPath", format!("{path} leaves DBFS")));
    }
    Ok(dbfs_root.join(rel))
}

/// The binding of a streaming read of a Delta table: the versions selected for it.
fn delta_range(sel: &Selection, table: String) -> Value {
    let (from, to) = sel
        .versions
        .get(&format!("delta:{table}"))
        .copied()
        .unwrap_or((0, -1));
    json!({"kind": "delta_range", "table": table, "from": from, "to": to})
}

fn mtime(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

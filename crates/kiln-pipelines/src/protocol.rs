//! The pipeline worker's protocol: every request Kiln sends it, and the
//! answer each gets. A request is one JSON line `{"id", "op", …fields}`; an
//! answer is `{"id", "ok": true, "result"}` or `{"id", "ok": false, "error":
//! {"class_name", "message"}}`. The Python side mirrors this table in
//! `OPS` (`crates/kiln-pipelines/python/kiln_pipelines/worker.py`); a unit test
//! holds the two lists of operations together.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One request to the worker.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Is the worker (and its Spark session) alive? Answer: [`Empty`].
    Ping,
    /// Interrupts the queries tagged `tag`. Answer: [`Empty`].
    Cancel { tag: String },
    /// Plans each step against empty inputs. Answer: [`Analyzed`].
    Analyze { steps: Vec<Value> },
    /// Runs the Python sources of a pipeline and returns the datasets and
    /// flows they declare (graph elements, read by [`crate::python`]).
    RegisterPython {
        libraries: Vec<PythonLibrary>,
        configuration: Map<String, Value>,
    },
    /// Drops tables (a full refresh). Answer: [`Empty`].
    Drop { tables: Vec<String> },
    /// `CREATE SCHEMA IF NOT EXISTS` (a quoted name). Answer: [`Empty`].
    EnsureSchema { schema: String },
    /// Writes one flow's batch. `binding` is what the binder made of the flow
    /// (its query, inputs and CDC settings). Answer: [`RunAnswer`].
    Run {
        flow: String,
        target: String,
        mode: String,
        expectations: Vec<Value>,
        user_metadata: String,
        tag: String,
        create: Value,
        #[serde(flatten)]
        binding: Map<String, Value>,
    },
    /// The latest Delta version of a table (-1: none). Answer: [`Version`].
    TableVersion { table: String },
    /// The version of the commit carrying `user_metadata`. Answer: [`Version`].
    FindCommit {
        table: String,
        user_metadata: String,
    },
    /// Appends events to the event log's Delta table at `path`. Answer: [`Empty`].
    WriteEvents { path: PathBuf, events: Vec<Value> },
}

impl Request {
    /// The operation's name, as the worker's table has it.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::Cancel { .. } => "cancel",
            Request::Analyze { .. } => "analyze",
            Request::RegisterPython { .. } => "register_python",
            Request::Drop { .. } => "drop",
            Request::EnsureSchema { .. } => "ensure_schema",
            Request::Run { .. } => "run",
            Request::TableVersion { .. } => "table_version",
            Request::FindCommit { .. } => "find_commit",
            Request::WriteEvents { .. } => "write_events",
        }
    }
}

/// One Python source file of a pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct PythonLibrary {
    pub path: String,
    pub source: String,
}

/// An answer that carries nothing Kiln reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Empty {}

/// Each analyzed step: its schema (Spark JSON) or its error.
#[derive(Debug, Clone, Deserialize)]
pub struct Analyzed {
    pub steps: Vec<StepResult>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StepResult {
    pub ok: bool,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub error: Option<Failure>,
}

/// A failure as the worker describes it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Failure {
    #[serde(default)]
    pub class_name: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// What a flow's batch wrote.
#[derive(Debug, Clone, Deserialize)]
pub struct RunAnswer {
    #[serde(default)]
    pub num_output_rows: i64,
    /// Extra metrics (num_upserted_rows, num_deleted_rows for CDC flows).
    #[serde(default)]
    pub metrics: Option<Value>,
    #[serde(default)]
    pub data_quality: Option<Value>,
}

/// A table version (`None`: no such commit).
#[derive(Debug, Clone, Deserialize)]
pub struct Version {
    pub version: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKER_PY: &str = include_str!("../python/kiln_pipelines/worker.py");

    fn every_request() -> Vec<Request> {
        vec![
            Request::Ping,
            Request::Cancel { tag: "t".into() },
            Request::Analyze { steps: vec![] },
            Request::RegisterPython {
                libraries: vec![],
                configuration: Map::new(),
            },
            Request::Drop { tables: vec![] },
            Request::EnsureSchema { schema: "s".into() },
            Request::Run {
                flow: "f".into(),
                target: "t".into(),
                mode: "append".into(),
                expectations: vec![],
                user_metadata: "m".into(),
                tag: "t".into(),
                create: Value::Null,
                binding: Map::new(),
            },
            Request::TableVersion { table: "t".into() },
            Request::FindCommit {
                table: "t".into(),
                user_metadata: "m".into(),
            },
            Request::WriteEvents {
                path: "/p".into(),
                events: vec![],
            },
        ]
    }

    #[test]
    fn requests_carry_their_op_and_the_worker_serves_each() -> Result<(), serde_json::Error> {
        let table = WORKER_PY
            .split("OPS = {")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .unwrap_or_default();
        let served: Vec<&str> = table
            .lines()
            .filter_map(|l| l.trim().strip_prefix('"'))
            .filter_map(|l| l.split('"').next())
            .collect();
        let requests = every_request();
        assert_eq!(served.len(), requests.len(), "worker.py's OPS: {served:?}");
        for request in requests {
            let json = serde_json::to_value(&request)?;
            assert_eq!(json["op"], request.op());
            assert!(
                served.contains(&request.op()),
                "{} is not in OPS",
                request.op()
            );
        }
        Ok(())
    }

    #[test]
    fn a_run_request_flattens_its_binding() -> Result<(), serde_json::Error> {
        let mut binding = Map::new();
        binding.insert("sql".into(), Value::String("SELECT 1".into()));
        let json = serde_json::to_value(Request::Run {
            flow: "f".into(),
            target: "`c`.`s`.`t`".into(),
            mode: "complete".into(),
            expectations: vec![],
            user_metadata: "m".into(),
            tag: "tag".into(),
            create: Value::Null,
            binding,
        })?;
        assert_eq!(json["op"], "run");
        assert_eq!(json["sql"], "SELECT 1");
        assert_eq!(json["target"], "`c`.`s`.`t`");
        Ok(())
    }
}

//! What a DLT SQL library declares, as the parser reports it.

use std::ops::Range;

use serde::Serialize;

/// The kind of dataset a statement declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DatasetKind {
    MaterializedView,
    StreamingTable,
    /// A pipeline-scoped view: never materialized, inlined into its readers.
    View,
}

/// What a violated expectation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Keep the row and count it.
    Warn,
    /// Remove the row and count it.
    Drop,
    /// Fail the flow before anything is committed.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expectation {
    pub name: String,
    /// The boolean SQL expression, as written.
    pub expr: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnDef {
    pub name: String,
    /// The column definition as written (`amount DOUBLE NOT NULL COMMENT 'x'`).
    pub definition: String,
}

/// A reference inside a query body that Kiln resolves or rewrites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ItemKind {
    /// A table or view name (`x`, `LIVE.x`, `c.s.t`), read in batch or as a stream.
    Relation {
        parts: Vec<String>,
        streaming: bool,
        /// Written with the `LIVE.` prefix: must be a dataset of this pipeline.
        live: bool,
    },
    /// `read_files(...)` / `cloud_files(...)`: files Kiln selects.
    Files {
        streaming: bool,
        path: String,
        format: Option<String>,
        options: Vec<(String, String)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// Byte range in [`Query::text`] that the rewrite replaces.
    pub span: Range<usize>,
    pub kind: ItemKind,
}

/// A query body: its text and the references found in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Query {
    pub text: String,
    pub items: Vec<Item>,
}

impl Query {
    /// The text with every item replaced by what `render` returns for it.
    pub fn render(&self, mut render: impl FnMut(&Item) -> String) -> String {
        let mut out = String::with_capacity(self.text.len());
        let mut at = 0;
        for item in &self.items {
            out.push_str(&self.text[at..item.span.start]);
            out.push_str(&render(item));
            at = item.span.end;
        }
        out.push_str(&self.text[at..]);
        out
    }

    /// Whether the query reads anything as a stream.
    pub fn is_streaming(&self) -> bool {
        self.items.iter().any(|i| match &i.kind {
            ItemKind::Relation { streaming, .. } | ItemKind::Files { streaming, .. } => *streaming,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatasetDef {
    pub kind: DatasetKind,
    pub name: Vec<String>,
    /// `TEMPORARY` tables are materialized but not published.
    pub temporary: bool,
    pub columns: Vec<ColumnDef>,
    pub expectations: Vec<Expectation>,
    pub comment: Option<String>,
    pub partition_cols: Vec<String>,
    pub table_properties: Vec<(String, String)>,
    pub query: Option<Query>,
}

/// `SEQUENCE BY`, `KEYS`, … of `APPLY CHANGES` / `AUTO CDC`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CdcDef {
    pub source: Query,
    pub keys: Vec<String>,
    pub sequence_by: String,
    pub delete_when: Option<String>,
    pub truncate_when: Option<String>,
    pub ignore_null_updates: bool,
    /// `COLUMNS (a, b)`: only these.
    pub columns: Option<Vec<String>>,
    /// `COLUMNS * EXCEPT (a, b)`.
    pub except_columns: Vec<String>,
    pub scd_type: u8,
    pub track_history: Option<String>,
    pub where_clause: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum FlowBody {
    /// `INSERT INTO target [BY NAME] query`.
    Append {
        query: Query,
        once: bool,
    },
    Cdc(Box<CdcDef>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowDef {
    /// `None` for `APPLY CHANGES INTO` (the flow is named after its target).
    pub name: Option<String>,
    pub target: Vec<String>,
    pub comment: Option<String>,
    pub body: FlowBody,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum StatementKind {
    Dataset(Box<DatasetDef>),
    Flow(Box<FlowDef>),
    Set {
        key: String,
        value: String,
    },
    Use {
        catalog: Option<String>,
        schema: Option<String>,
    },
}

/// One parsed statement with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    pub kind: StatementKind,
    /// 1-based line of the statement's first token in its source.
    pub line: usize,
    /// The statement as written (for error messages).
    pub text: String,
    /// Clauses Kiln parses but does not apply (`CLUSTER BY`, `SCHEDULE`, …).
    pub ignored: Vec<String>,
}

/// A parse failure with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
    /// The statement's text (empty when the failure is in tokenizing).
    pub statement: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

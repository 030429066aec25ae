//! What a client's `ExecutePlan` asks of a Unity Catalog table, read from the
//! request and the catalog: the writes the engine's catalog client cannot do
//! itself (REPLACE, overwrite `saveAsTable`) and new managed Delta tables
//! (which Kiln creates from the analyzed schema before the data is inserted:
//! the engine's own create-as-select from an in-memory relation commits a
//! table whose metadata its writer then refuses). Everything else is `None`:
//! the request goes to the engine untouched.

use kiln_core::ErrorCode;
use prost::Message as _;
use tonic::Status;

use super::ddl::{self, CreateTable};
use super::errors::analysis_error;
use super::wire::{
    save_method, save_mode, v2_mode, Command, ExecutePlanRequest, Expression, WriteOperation,
    WriteOperationV2,
};
use kiln_catalog::{Catalog, TableInfo, DEFAULT_CATALOG, DEFAULT_SCHEMA};

/// Where the rows come from: the client's DataFrame (an encoded relation, with
/// the writer's options) or a SQL query (the client ran `spark.sql`).
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Relation {
        relation: Vec<u8>,
        options: Vec<(String, String)>,
    },
    Query(String),
}

/// How a new table is declared beyond its columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableSpec {
    /// Partition columns, unquoted.
    pub partition_by: Vec<String>,
    /// `PARTITIONED BY` as the user wrote it in SQL (wins over `partition_by`).
    pub partition_sql: Option<String>,
    /// A SQL string literal.
    pub comment_sql: Option<String>,
    /// The inside of `TBLPROPERTIES (…)`.
    pub properties_sql: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Intent {
    /// A new managed Delta table filled from `source`.
    Create {
        target: [String; 3],
        source: Source,
        spec: TableSpec,
    },
    /// `CREATE OR REPLACE TABLE t (cols)` of a table that does not exist: the
    /// engine runs it as a plain `CREATE TABLE`.
    PlainCreate {
        sql: String,
    },
    /// Overwrite `saveAsTable` of an existing table.
    Overwrite {
        table: Box<TableInfo>,
        source: Source,
        replace_schema: bool,
        spec: TableSpec,
    },
    /// REPLACE of an existing table, from rows or (`columns`) empty.
    Replace {
        table: Box<TableInfo>,
        source: Option<Source>,
        columns: Option<String>,
        spec: TableSpec,
    },
    Refuse(Status),
}

/// Reads the client's request; `None` when Kiln leaves it to the engine.
pub fn read(catalog: &Catalog, request: &ExecutePlanRequest, scope: &Scope) -> Option<Intent> {
    let command = request.plan.as_ref()?.command.as_ref()?;
    let Command {
        write_operation,
        write_operation_v2,
        sql_command,
    } = command;
    if let Some(write) = write_operation {
        return save_as_table(catalog, write, scope);
    }
    if let Some(write) = write_operation_v2 {
        return write_to(catalog, write, scope);
    }
    sql_command.as_ref()?;
    create_table_sql(catalog, &sql_text(request)?, scope)
}

/// The SQL text of a `spark.sql` command without parameters.
pub fn sql_text(request: &ExecutePlanRequest) -> Option<String> {
    let sql = request
        .plan
        .as_ref()?
        .command
        .as_ref()?
        .sql_command
        .as_ref()?;
    let parameterized = !sql.args.is_empty()
        || !sql.pos_args.is_empty()
        || !sql.named_arguments.is_empty()
        || !sql.pos_arguments.is_empty();
    if parameterized {
        return None;
    }
    match &sql.input {
        Some(relation) => {
            let q = relation.sql.as_ref()?;
            let parameterized = !q.args.is_empty()
                || !q.pos_args.is_empty()
                || !q.named_arguments.is_empty()
                || !q.pos_arguments.is_empty();
            if parameterized || relation.project.is_some() {
                return None;
            }
            Some(q.query.clone())
        }
        None => Some(sql.sql.clone()),
    }
}

fn is_delta(format: Option<&str>) -> bool {
    format.is_none_or(|f| f.eq_ignore_ascii_case("delta"))
}

/// A Spark session's current catalog and schema, as far as Kiln has seen
/// them change (`USE …` statements); `main.default` until then.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    pub catalog: String,
    pub schema: String,
}

impl Default for Scope {
    fn default() -> Self {
        Self {
            catalog: DEFAULT_CATALOG.into(),
            schema: DEFAULT_SCHEMA.into(),
        }
    }
}

/// A table name as the engine resolves it in `scope`.
pub fn resolve(parts: &[String], scope: &Scope) -> Option<[String; 3]> {
    let lower = |s: &String| s.to_lowercase();
    match parts {
        [t] => Some([scope.catalog.clone(), scope.schema.clone(), lower(t)]),
        [s, t] => Some([scope.catalog.clone(), lower(s), lower(t)]),
        [c, s, t] => Some([lower(c), lower(s), lower(t)]),
        _ => None,
    }
}

/// Splits a name as clients write it (`a.b.c`, with backquotes).
pub fn split_name(name: &str) -> Option<Vec<String>> {
    let parsed = ddl::parse_create_table(&format!("CREATE TABLE {name} (x INT)"))?;
    (parsed.columns.as_deref() == Some("x INT")).then_some(parsed.name)
}

fn existing(catalog: &Catalog, target: &[String; 3]) -> Option<TableInfo> {
    catalog.get_table(&target.join(".")).ok()
}

fn option_true(options: &[(String, String)], key: &str) -> bool {
    options
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case(key) && v.trim().eq_ignore_ascii_case("true"))
}

fn save_as_table(catalog: &Catalog, write: &WriteOperation, scope: &Scope) -> Option<Intent> {
    let table = write.table.as_ref()?;
    let simple = table.save_method == save_method::SAVE_AS_TABLE
        && write.path.is_none()
        && is_delta(write.source.as_deref())
        && write.bucket_by.is_none()
        && write.sort_column_names.is_empty()
        && write.clustering_columns.is_empty();
    if !simple {
        return None;
    }
    let target = resolve(&split_name(&table.table_name)?, scope)?;
    let mut options: Vec<(String, String)> = write
        .options
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    options.sort();
    let replace_schema =
        option_true(&options, "overwriteSchema") || option_true(&options, "mergeSchema");
    options.retain(|(k, _)| {
        !k.eq_ignore_ascii_case("overwriteSchema") && !k.eq_ignore_ascii_case("mergeSchema")
    });
    let source = Source::Relation {
        relation: write.input.clone()?,
        options,
    };
    let spec = TableSpec {
        partition_by: write.partitioning_columns.clone(),
        ..Default::default()
    };
    match (existing(catalog, &target), write.mode) {
        (None, _) => Some(Intent::Create {
            target,
            source,
            spec,
        }),
        (Some(table), save_mode::OVERWRITE) => Some(Intent::Overwrite {
            table: Box::new(table),
            source,
            replace_schema,
            spec,
        }),
        (Some(_), _) => None,
    }
}

fn write_to(catalog: &Catalog, write: &WriteOperationV2, scope: &Scope) -> Option<Intent> {
    let wanted = [
        v2_mode::CREATE,
        v2_mode::CREATE_OR_REPLACE,
        v2_mode::REPLACE,
    ];
    if !wanted.contains(&write.mode)
        || !is_delta(write.provider.as_deref())
        || !write.clustering_columns.is_empty()
    {
        return None;
    }
    let parts = split_name(&write.table_name)?;
    let target = resolve(&parts, scope)?;
    let mut partition_by = Vec::new();
    for expression in &write.partitioning_columns {
        let column = Expression::decode(expression.as_slice())
            .ok()?
            .unresolved_attribute?;
        partition_by.push(split_name(&column.unparsed_identifier)?.join("."));
    }
    let mut properties: Vec<_> = write.table_properties.iter().collect();
    properties.sort();
    let spec = TableSpec {
        partition_by,
        properties_sql: (!properties.is_empty()).then(|| {
            properties
                .iter()
                .map(|(k, v)| format!("{} = {}", ddl::literal(k), ddl::literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        }),
        ..Default::default()
    };
    let mut options: Vec<(String, String)> = write
        .options
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    options.sort();
    let source = Source::Relation {
        relation: write.input.clone()?,
        options,
    };
    match (existing(catalog, &target), write.mode) {
        (None, v2_mode::REPLACE) => Some(Intent::Refuse(not_found(&parts))),
        (None, _) => Some(Intent::Create {
            target,
            source,
            spec,
        }),
        (Some(_), v2_mode::CREATE) => None,
        (Some(table), _) => Some(Intent::Replace {
            table: Box::new(table),
            source: Some(source),
            columns: None,
            spec,
        }),
    }
}

fn create_table_sql(catalog: &Catalog, sql: &str, scope: &Scope) -> Option<Intent> {
    let parsed: CreateTable = ddl::parse_create_table(sql)?;
    if !is_delta(parsed.using.as_deref()) {
        return None;
    }
    let target = resolve(&parsed.name, scope)?;
    let spec = TableSpec {
        partition_sql: parsed.partitioned_by.clone(),
        comment_sql: parsed.comment.clone(),
        properties_sql: parsed.tblproperties.clone(),
        ..Default::default()
    };
    let source = parsed.query.clone().map(Source::Query);
    match existing(catalog, &target) {
        None if parsed.must_exist => Some(Intent::Refuse(not_found(&parsed.name))),
        None => match source {
            Some(source) => Some(Intent::Create {
                target,
                source,
                spec,
            }),
            None if parsed.replace => Some(Intent::PlainCreate {
                sql: plain_create(&target, &parsed),
            }),
            None => None,
        },
        Some(_) if !parsed.replace => None,
        Some(table) => Some(Intent::Replace {
            table: Box::new(table),
            source,
            columns: parsed.columns.clone(),
            spec,
        }),
    }
}

/// The `CREATE TABLE` of a new table as the user declared it.
fn plain_create(target: &[String; 3], parsed: &CreateTable) -> String {
    let spec = TableSpec {
        partition_sql: parsed.partitioned_by.clone(),
        comment_sql: parsed.comment.clone(),
        properties_sql: parsed.tblproperties.clone(),
        ..Default::default()
    };
    create_statement(
        &ddl::quote_name(target),
        parsed.columns.as_deref().unwrap_or_default(),
        &spec,
    )
}

/// `CREATE TABLE name (columns) USING DELTA …`.
pub fn create_statement(name: &str, columns: &str, spec: &TableSpec) -> String {
    let mut sql = format!("CREATE TABLE {name} ({columns}) USING DELTA");
    if let Some(partition) = &spec.partition_sql {
        sql.push_str(&format!(" PARTITIONED BY ({partition})"));
    } else if !spec.partition_by.is_empty() {
        let columns: Vec<String> = spec.partition_by.iter().map(|c| ddl::quote(c)).collect();
        sql.push_str(&format!(" PARTITIONED BY ({})", columns.join(", ")));
    }
    if let Some(comment) = &spec.comment_sql {
        sql.push_str(&format!(" COMMENT {comment}"));
    }
    if let Some(properties) = &spec.properties_sql {
        sql.push_str(&format!(" TBLPROPERTIES ({properties})"));
    }
    sql
}

fn not_found(parts: &[String]) -> Status {
    let name = parts
        .iter()
        .map(|p| ddl::quote(p))
        .collect::<Vec<_>>()
        .join(".");
    analysis_error(
        "TABLE_OR_VIEW_NOT_FOUND",
        "42P01",
        &format!("[TABLE_OR_VIEW_NOT_FOUND] The table or view {name} cannot be found. Verify the spelling and correctness of the schema and catalog."),
    )
}

/// The request's `ExecutePlanRequest`, when it is one Kiln may rewrite
/// (uncompressed; commands only).
pub fn decode(message: &[u8]) -> Option<ExecutePlanRequest> {
    let request = ExecutePlanRequest::decode(message).ok()?;
    let plan = request.plan.as_ref()?;
    (plan.command.is_some() && plan.root.is_none() && plan.compressed_operation.is_none())
        .then_some(request)
}

/// Kiln's internal errors as a gRPC status.
pub fn internal(error: kiln_core::Error) -> Status {
    match error.code {
        ErrorCode::TableAlreadyExists | ErrorCode::ResourceAlreadyExists => {
            Status::already_exists(error.message)
        }
        _ => Status::internal(error.message),
    }
}

//! The Spark Connect messages Kiln reads and writes when it rewrites a table
//! write, declared by hand with the field numbers of Spark 4.x
//! `spark/connect/{base,commands,relations,types}.proto` (the same numbers as
//! 3.5, which Databricks Connect speaks). A subtree Kiln never looks into (the
//! user's input relation, literals, expressions, options) is kept as its
//! encoded bytes, so it reaches the engine exactly as the client sent it.

use std::collections::HashMap;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecutePlanRequest {
    #[prost(string, tag = "1")]
    pub session_id: String,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub user_context: Option<Vec<u8>>,
    #[prost(message, optional, tag = "3")]
    pub plan: Option<Plan>,
    #[prost(string, optional, tag = "4")]
    pub client_type: Option<String>,
    #[prost(bytes = "vec", repeated, tag = "5")]
    pub request_options: Vec<Vec<u8>>,
    #[prost(string, optional, tag = "6")]
    pub operation_id: Option<String>,
    #[prost(string, repeated, tag = "7")]
    pub tags: Vec<String>,
    #[prost(string, optional, tag = "8")]
    pub client_observed_server_side_session_id: Option<String>,
}

/// `Plan.op_type`: a relation to run (`root`, kept encoded) or a command.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Plan {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub root: Option<Vec<u8>>,
    #[prost(message, optional, tag = "2")]
    pub command: Option<Command>,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub compressed_operation: Option<Vec<u8>>,
}

impl Plan {
    /// `spark.sql(query)` as a 4.x client sends it (the query as the input relation).
    pub fn sql(query: &str) -> Self {
        Plan {
            command: Some(Command {
                sql_command: Some(SqlCommand {
                    input: Some(Relation::sql(query)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

impl Relation {
    /// A relation of SQL text.
    pub fn sql(query: &str) -> Self {
        Relation {
            sql: Some(Sql {
                query: query.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// `Command.command_type`: only the table writes and SQL are read; any other
/// command is forwarded untouched (Kiln never re-encodes it).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Command {
    #[prost(message, optional, tag = "2")]
    pub write_operation: Option<WriteOperation>,
    #[prost(message, optional, tag = "4")]
    pub write_operation_v2: Option<WriteOperationV2>,
    #[prost(message, optional, tag = "5")]
    pub sql_command: Option<SqlCommand>,
}

pub mod save_mode {
    pub const UNSPECIFIED: i32 = 0;
    pub const APPEND: i32 = 1;
    pub const OVERWRITE: i32 = 2;
    pub const ERROR_IF_EXISTS: i32 = 3;
    pub const IGNORE: i32 = 4;
}

pub mod save_method {
    pub const SAVE_AS_TABLE: i32 = 1;
    pub const INSERT_INTO: i32 = 2;
}

pub mod v2_mode {
    pub const CREATE: i32 = 1;
    pub const OVERWRITE: i32 = 2;
    pub const OVERWRITE_PARTITIONS: i32 = 3;
    pub const APPEND: i32 = 4;
    pub const REPLACE: i32 = 5;
    pub const CREATE_OR_REPLACE: i32 = 6;
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteOperation {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub input: Option<Vec<u8>>,
    #[prost(string, optional, tag = "2")]
    pub source: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub path: Option<String>,
    #[prost(message, optional, tag = "4")]
    pub table: Option<SaveTable>,
    #[prost(int32, tag = "5")]
    pub mode: i32,
    #[prost(string, repeated, tag = "6")]
    pub sort_column_names: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub partitioning_columns: Vec<String>,
    #[prost(bytes = "vec", optional, tag = "8")]
    pub bucket_by: Option<Vec<u8>>,
    #[prost(map = "string, string", tag = "9")]
    pub options: HashMap<String, String>,
    #[prost(string, repeated, tag = "10")]
    pub clustering_columns: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SaveTable {
    #[prost(string, tag = "1")]
    pub table_name: String,
    #[prost(int32, tag = "2")]
    pub save_method: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteOperationV2 {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub input: Option<Vec<u8>>,
    #[prost(string, tag = "2")]
    pub table_name: String,
    #[prost(string, optional, tag = "3")]
    pub provider: Option<String>,
    /// Expressions, kept encoded.
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub partitioning_columns: Vec<Vec<u8>>,
    #[prost(map = "string, string", tag = "5")]
    pub options: HashMap<String, String>,
    #[prost(map = "string, string", tag = "6")]
    pub table_properties: HashMap<String, String>,
    #[prost(int32, tag = "7")]
    pub mode: i32,
    #[prost(bytes = "vec", optional, tag = "8")]
    pub overwrite_condition: Option<Vec<u8>>,
    #[prost(string, repeated, tag = "9")]
    pub clustering_columns: Vec<String>,
}

/// `spark.sql(...)`: the query as `sql` (3.5 clients) or as an `input`
/// relation holding a `SQL` (4.x clients); parameters are kept encoded.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SqlCommand {
    #[prost(string, tag = "1")]
    pub sql: String,
    #[prost(map = "string, bytes", tag = "2")]
    pub args: HashMap<String, Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub pos_args: Vec<Vec<u8>>,
    #[prost(map = "string, bytes", tag = "4")]
    pub named_arguments: HashMap<String, Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "5")]
    pub pos_arguments: Vec<Vec<u8>>,
    #[prost(message, optional, tag = "6")]
    pub input: Option<Relation>,
}

/// A relation as far as Kiln builds or reads one: `sql` and `project`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Relation {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub common: Option<Vec<u8>>,
    #[prost(message, optional, tag = "3")]
    pub project: Option<Project>,
    #[prost(message, optional, tag = "10")]
    pub sql: Option<Sql>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Sql {
    #[prost(string, tag = "1")]
    pub query: String,
    #[prost(map = "string, bytes", tag = "2")]
    pub args: HashMap<String, Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub pos_args: Vec<Vec<u8>>,
    #[prost(map = "string, bytes", tag = "4")]
    pub named_arguments: HashMap<String, Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "5")]
    pub pos_arguments: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Project {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub input: Option<Vec<u8>>,
    #[prost(message, repeated, tag = "3")]
    pub expressions: Vec<Expression>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Expression {
    #[prost(message, optional, tag = "2")]
    pub unresolved_attribute: Option<UnresolvedAttribute>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct UnresolvedAttribute {
    #[prost(string, tag = "1")]
    pub unparsed_identifier: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecutePlanResponse {
    #[prost(string, tag = "1")]
    pub session_id: String,
    #[prost(string, tag = "15")]
    pub server_side_session_id: String,
    #[prost(message, optional, tag = "2")]
    pub arrow_batch: Option<ArrowBatch>,
    #[prost(message, optional, tag = "5")]
    pub sql_command_result: Option<SqlCommandResult>,
    /// The result's schema (sent once, before or with the first batch).
    #[prost(message, optional, tag = "7")]
    pub schema: Option<DataType>,
}

/// Rows of a result: an Arrow IPC stream (its schema, then record batches).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ArrowBatch {
    #[prost(int64, tag = "1")]
    pub row_count: i64,
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
    #[prost(int64, optional, tag = "3")]
    pub start_offset: Option<i64>,
}

/// `spark.sql`'s answer: the relation to run for the rows (kept encoded).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SqlCommandResult {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub relation: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AnalyzePlanRequest {
    #[prost(string, tag = "1")]
    pub session_id: String,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub user_context: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    pub client_type: Option<String>,
    #[prost(message, optional, tag = "4")]
    pub schema: Option<AnalyzeSchema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AnalyzeSchema {
    #[prost(message, optional, tag = "1")]
    pub plan: Option<Plan>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AnalyzePlanResponse {
    #[prost(string, tag = "1")]
    pub session_id: String,
    #[prost(message, optional, tag = "2")]
    pub schema: Option<AnalyzedSchema>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AnalyzedSchema {
    #[prost(message, optional, tag = "1")]
    pub schema: Option<DataType>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DataType {
    #[prost(
        oneof = "Kind",
        tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 24, 25"
    )]
    pub kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Kind {
    #[prost(message, tag = "1")]
    Null(Empty),
    #[prost(message, tag = "2")]
    Binary(Empty),
    #[prost(message, tag = "3")]
    Boolean(Empty),
    #[prost(message, tag = "4")]
    Byte(Empty),
    #[prost(message, tag = "5")]
    Short(Empty),
    #[prost(message, tag = "6")]
    Integer(Empty),
    #[prost(message, tag = "7")]
    Long(Empty),
    #[prost(message, tag = "8")]
    Float(Empty),
    #[prost(message, tag = "9")]
    Double(Empty),
    #[prost(message, tag = "10")]
    Decimal(Decimal),
    #[prost(message, tag = "11")]
    String(Empty),
    #[prost(message, tag = "12")]
    Char(Length),
    #[prost(message, tag = "13")]
    VarChar(Length),
    #[prost(message, tag = "14")]
    Date(Empty),
    #[prost(message, tag = "15")]
    Timestamp(Empty),
    #[prost(message, tag = "16")]
    TimestampNtz(Empty),
    #[prost(message, tag = "17")]
    CalendarInterval(Empty),
    #[prost(message, tag = "18")]
    YearMonthInterval(Interval),
    #[prost(message, tag = "19")]
    DayTimeInterval(Interval),
    #[prost(message, tag = "20")]
    Array(Box<ArrayType>),
    #[prost(message, tag = "21")]
    Struct(StructType),
    #[prost(message, tag = "22")]
    Map(Box<MapType>),
    #[prost(message, tag = "24")]
    Unparsed(Unparsed),
    #[prost(message, tag = "25")]
    Variant(Empty),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Decimal {
    #[prost(int32, optional, tag = "1")]
    pub scale: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub precision: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Length {
    #[prost(int32, tag = "1")]
    pub length: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Interval {
    #[prost(int32, optional, tag = "1")]
    pub start_field: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub end_field: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ArrayType {
    #[prost(message, optional, boxed, tag = "1")]
    pub element_type: Option<Box<DataType>>,
    #[prost(bool, tag = "2")]
    pub contains_null: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MapType {
    #[prost(message, optional, boxed, tag = "1")]
    pub key_type: Option<Box<DataType>>,
    #[prost(message, optional, boxed, tag = "2")]
    pub value_type: Option<Box<DataType>>,
    #[prost(bool, tag = "3")]
    pub value_contains_null: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StructType {
    #[prost(message, repeated, tag = "1")]
    pub fields: Vec<StructField>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StructField {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub data_type: Option<DataType>,
    #[prost(bool, tag = "3")]
    pub nullable: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Unparsed {
    #[prost(string, tag = "1")]
    pub data_type_string: String,
}

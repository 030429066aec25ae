//! A statement's result, from the engine's Arrow IPC to what the Statement
//! Execution API answers: the columns (`name`, `type_name`, `type_text`,
//! `position`), and chunks of rows as JSON_ARRAY (every value a string or
//! null, nested values as JSON), ARROW_STREAM (the engine's IPC bytes, passed
//! through unless a limit cut them) or CSV.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType as ArrowType, Schema};
use kiln_compute::connect::wire::{DataType, Kind};
use serde::Serialize;
use serde_json::Value;

use crate::session::Collected;

/// Rows a chunk holds at most.
pub const CHUNK_ROWS: usize = 10_000;
/// Bytes an INLINE result may hold (Databricks' limit).
pub const INLINE_LIMIT: usize = 25 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    pub position: usize,
    pub type_name: String,
    pub type_text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_precision: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_scale: Option<i32>,
}

/// What a client asked the rows to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonArray,
    ArrowStream,
    Csv,
}

impl Format {
    pub fn parse(text: Option<&str>) -> Option<Self> {
        Some(match text.unwrap_or("JSON_ARRAY") {
            "JSON_ARRAY" => Self::JsonArray,
            "ARROW_STREAM" => Self::ArrowStream,
            "CSV" => Self::Csv,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::JsonArray => "JSON_ARRAY",
            Self::ArrowStream => "ARROW_STREAM",
            Self::Csv => "CSV",
        }
    }
}

/// One chunk of rows.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub row_offset: usize,
    pub row_count: usize,
    /// JSON_ARRAY rows (INLINE, or the JSON of an external link).
    pub rows: Vec<Vec<Option<String>>>,
    /// The chunk as an external link serves it.
    pub bytes: Vec<u8>,
}

impl Chunk {
    pub fn byte_count(&self) -> usize {
        if self.bytes.is_empty() {
            serde_json::to_vec(&self.rows).map(|b| b.len()).unwrap_or(0)
        } else {
            self.bytes.len()
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ResultSet {
    pub columns: Vec<ColumnInfo>,
    pub chunks: Vec<Chunk>,
    pub total_rows: usize,
    pub truncated: bool,
}

impl ResultSet {
    pub fn total_bytes(&self) -> usize {
        self.chunks.iter().map(Chunk::byte_count).sum()
    }
}

/// The engine's record batches.
pub fn decode(collected: &Collected) -> Result<(Option<Arc<Schema>>, Vec<RecordBatch>), String> {
    let mut schema = None;
    let mut batches = Vec::new();
    for ipc in &collected.ipc {
        let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None)
            .map_err(|e| format!("the engine's rows cannot be read: {e}"))?;
        schema.get_or_insert_with(|| reader.schema());
        for batch in reader {
            batches.push(batch.map_err(|e| format!("the engine's rows cannot be read: {e}"))?);
        }
    }
    Ok((schema, batches))
}

/// The result's columns: names and types from the engine's schema.
pub fn columns(collected: &Collected, arrow: Option<&Schema>) -> Vec<ColumnInfo> {
    if let Some(DataType {
        kind: Some(Kind::Struct(s)),
    }) = &collected.schema
    {
        return s
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| column(i, &f.name, f.data_type.as_ref()))
            .collect();
    }
    arrow
        .map(|s| {
            s.fields()
                .iter()
                .enumerate()
                .map(|(i, f)| arrow_column(i, f.name(), f.data_type()))
                .collect()
        })
        .unwrap_or_default()
}

fn column(position: usize, name: &str, t: Option<&DataType>) -> ColumnInfo {
    let kind = t.and_then(|t| t.kind.as_ref());
    let type_name = match kind {
        Some(Kind::Null(_)) => "NULL",
        Some(Kind::Binary(_)) => "BINARY",
        Some(Kind::Boolean(_)) => "BOOLEAN",
        Some(Kind::Byte(_)) => "BYTE",
        Some(Kind::Short(_)) => "SHORT",
        Some(Kind::Integer(_)) => "INT",
        Some(Kind::Long(_)) => "LONG",
        Some(Kind::Float(_)) => "FLOAT",
        Some(Kind::Double(_)) => "DOUBLE",
        Some(Kind::Decimal(_)) => "DECIMAL",
        Some(Kind::Char(_)) => "CHAR",
        Some(Kind::Date(_)) => "DATE",
        Some(Kind::Timestamp(_) | Kind::TimestampNtz(_)) => "TIMESTAMP",
        Some(Kind::CalendarInterval(_) | Kind::YearMonthInterval(_) | Kind::DayTimeInterval(_)) => {
            "INTERVAL"
        }
        Some(Kind::Array(_)) => "ARRAY",
        Some(Kind::Struct(_)) => "STRUCT",
        Some(Kind::Map(_)) => "MAP",
        _ => "STRING",
    };
    let type_text = t
        .and_then(|t| kiln_compute::connect::ddl::type_ddl(t).ok())
        .unwrap_or_else(|| type_name.to_string());
    let (type_precision, type_scale) = match kind {
        Some(Kind::Decimal(d)) => (Some(d.precision.unwrap_or(10)), Some(d.scale.unwrap_or(0))),
        _ => (None, None),
    };
    ColumnInfo {
        name: name.into(),
        position,
        type_name: type_name.into(),
        type_text,
        type_precision,
        type_scale,
    }
}

fn arrow_column(position: usize, name: &str, t: &ArrowType) -> ColumnInfo {
    let (type_name, text) = match t {
        ArrowType::Null => ("NULL", "VOID".to_string()),
        ArrowType::Boolean => ("BOOLEAN", "BOOLEAN".into()),
        ArrowType::Int8 => ("BYTE", "TINYINT".into()),
        ArrowType::Int16 => ("SHORT", "SMALLINT".into()),
        ArrowType::Int32 => ("INT", "INT".into()),
        ArrowType::Int64 => ("LONG", "BIGINT".into()),
        ArrowType::Float32 => ("FLOAT", "FLOAT".into()),
        ArrowType::Float64 => ("DOUBLE", "DOUBLE".into()),
        ArrowType::Decimal128(p, s) => ("DECIMAL", format!("DECIMAL({p},{s})")),
        ArrowType::Date32 | ArrowType::Date64 => ("DATE", "DATE".into()),
        ArrowType::Timestamp(_, Some(_)) => ("TIMESTAMP", "TIMESTAMP".into()),
        ArrowType::Timestamp(_, None) => ("TIMESTAMP", "TIMESTAMP_NTZ".into()),
        ArrowType::Binary | ArrowType::LargeBinary => ("BINARY", "BINARY".into()),
        ArrowType::List(_) | ArrowType::LargeList(_) => ("ARRAY", "ARRAY".into()),
        ArrowType::Struct(_) => ("STRUCT", "STRUCT".into()),
        ArrowType::Map(_, _) => ("MAP", "MAP".into()),
        _ => ("STRING", "STRING".into()),
    };
    let (type_precision, type_scale) = match t {
        ArrowType::Decimal128(p, s) => (Some(i32::from(*p)), Some(i32::from(*s))),
        _ => (None, None),
    };
    ColumnInfo {
        name: name.into(),
        position,
        type_name: type_name.into(),
        type_text: text,
        type_precision,
        type_scale,
    }
}

fn options() -> FormatOptions<'static> {
    FormatOptions::new()
        .with_timestamp_tz_format(Some("%Y-%m-%dT%H:%M:%S%.3fZ"))
        .with_timestamp_format(Some("%Y-%m-%dT%H:%M:%S%.3f"))
}

/// One value as JSON (nested values as JSON, leaves as the formatter writes them).
fn json_value(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        ArrowType::Boolean => Value::Bool(text(array, row) == "true"),
        ArrowType::Int8
        | ArrowType::Int16
        | ArrowType::Int32
        | ArrowType::Int64
        | ArrowType::UInt8
        | ArrowType::UInt16
        | ArrowType::UInt32
        | ArrowType::UInt64
        | ArrowType::Float32
        | ArrowType::Float64 => serde_json::from_str(&text(array, row))
            .unwrap_or_else(|_| Value::String(text(array, row))),
        ArrowType::List(_) => {
            let list = array.as_any().downcast_ref::<arrow_array::ListArray>();
            match list {
                Some(l) => {
                    let values = l.value(row);
                    Value::Array((0..values.len()).map(|i| json_value(&values, i)).collect())
                }
                None => Value::String(text(array, row)),
            }
        }
        ArrowType::Struct(fields) => {
            let s = array.as_any().downcast_ref::<arrow_array::StructArray>();
            match s {
                Some(s) => Value::Object(
                    fields
                        .iter()
                        .zip(s.columns())
                        .map(|(f, c)| (f.name().clone(), json_value(c.as_ref(), row)))
                        .collect(),
                ),
                None => Value::String(text(array, row)),
            }
        }
        ArrowType::Map(_, _) => {
            let m = array.as_any().downcast_ref::<arrow_array::MapArray>();
            match m {
                Some(m) => {
                    let entries = m.value(row);
                    let (keys, values) = (entries.column(0), entries.column(1));
                    Value::Object(
                        (0..entries.len())
                            .map(|i| (text(keys.as_ref(), i), json_value(values.as_ref(), i)))
                            .collect(),
                    )
                }
                None => Value::String(text(array, row)),
            }
        }
        _ => Value::String(text(array, row)),
    }
}

fn text(array: &dyn Array, row: usize) -> String {
    let options = options();
    ArrayFormatter::try_new(array, &options)
        .map(|f| f.value(row).to_string())
        .unwrap_or_default()
}

/// A value as JSON_ARRAY carries it: a string, or null.
fn cell(column: &ArrayRef, row: usize) -> Option<String> {
    if column.is_null(row) {
        return None;
    }
    match column.data_type() {
        ArrowType::List(_)
        | ArrowType::LargeList(_)
        | ArrowType::Struct(_)
        | ArrowType::Map(_, _) => Some(json_value(column.as_ref(), row).to_string()),
        _ => {
            let options = options();
            let f = ArrayFormatter::try_new(column.as_ref(), &options).ok()?;
            Some(f.value(row).to_string())
        }
    }
}

/// The rows of `batches` as strings, at most `limit`.
pub fn rows(batches: &[RecordBatch], limit: Option<usize>) -> Vec<Vec<Option<String>>> {
    let mut out = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            if limit.is_some_and(|l| out.len() >= l) {
                return out;
            }
            out.push(batch.columns().iter().map(|c| cell(c, row)).collect());
        }
    }
    out
}

fn csv_line(row: &[Option<String>]) -> String {
    let mut line = row
        .iter()
        .map(|v| match v {
            None => String::new(),
            Some(v) if v.contains([',', '"', '\n', '\r']) => {
                format!("\"{}\"", v.replace('"', "\"\""))
            }
            Some(v) => v.clone(),
        })
        .collect::<Vec<_>>()
        .join(",");
    line.push('\n');
    line
}

/// Arrow IPC stream of `batches`.
fn ipc(schema: &Schema, batches: &[RecordBatch]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut writer =
        arrow_ipc::writer::StreamWriter::try_new(&mut out, schema).map_err(|e| e.to_string())?;
    for b in batches {
        writer.write(b).map_err(|e| e.to_string())?;
    }
    writer.finish().map_err(|e| e.to_string())?;
    drop(writer);
    Ok(out)
}

/// Limits a client set.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    pub row_limit: Option<usize>,
    pub byte_limit: Option<usize>,
}

/// Builds the result in chunks of `format` (INLINE results hold rows only).
pub fn build(
    collected: &Collected,
    format: Format,
    inline: bool,
    limits: Limits,
) -> Result<ResultSet, String> {
    let (schema, batches) = decode(collected)?;
    let columns = columns(collected, schema.as_deref());
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut kept = rows(&batches, limits.row_limit);
    let mut truncated = kept.len() < total;
    if let Some(bytes) = limits.byte_limit {
        let mut used = 0;
        let mut keep = 0;
        for r in &kept {
            used += serde_json::to_vec(r).map(|b| b.len()).unwrap_or(0) + 1;
            if used > bytes {
                break;
            }
            keep += 1;
        }
        if keep < kept.len() {
            kept.truncate(keep);
            truncated = true;
        }
    }
    let mut chunks = Vec::new();
    let mut offset = 0;
    let arrow_passthrough = format == Format::ArrowStream && !truncated && !inline;
    if arrow_passthrough {
        for (data, batch) in collected.ipc.iter().zip(batch_rows(collected)?) {
            chunks.push(Chunk {
                row_offset: offset,
                row_count: batch,
                rows: Vec::new(),
                bytes: data.clone(),
            });
            offset += batch;
        }
    } else {
        for piece in kept.chunks(CHUNK_ROWS) {
            let bytes = match (inline, format) {
                (true, _) => Vec::new(),
                (false, Format::JsonArray) => {
                    serde_json::to_vec(piece).map_err(|e| e.to_string())?
                }
                (false, Format::Csv) => piece
                    .iter()
                    .map(|r| csv_line(r))
                    .collect::<String>()
                    .into_bytes(),
                (false, Format::ArrowStream) => {
                    let schema = schema.clone().unwrap_or_else(|| Arc::new(Schema::empty()));
                    let all = arrow_select_rows(&batches, offset, piece.len());
                    ipc(&schema, &all)?
                }
            };
            chunks.push(Chunk {
                row_offset: offset,
                row_count: piece.len(),
                rows: if inline { piece.to_vec() } else { Vec::new() },
                bytes,
            });
            offset += piece.len();
        }
    }
    if chunks.is_empty() && inline {
        chunks.push(Chunk {
            row_offset: 0,
            row_count: 0,
            rows: Vec::new(),
            bytes: Vec::new(),
        });
    }
    Ok(ResultSet {
        columns,
        total_rows: offset,
        chunks,
        truncated,
    })
}

/// Rows per engine IPC stream.
fn batch_rows(collected: &Collected) -> Result<Vec<usize>, String> {
    collected
        .ipc
        .iter()
        .map(|data| {
            let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(data), None)
                .map_err(|e| e.to_string())?;
            let mut n = 0;
            for b in reader {
                n += b.map_err(|e| e.to_string())?.num_rows();
            }
            Ok(n)
        })
        .collect()
}

/// Rows `[offset, offset + len)` of `batches`, as slices.
fn arrow_select_rows(batches: &[RecordBatch], offset: usize, len: usize) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    let mut skip = offset;
    let mut want = len;
    for b in batches {
        if want == 0 {
            break;
        }
        if skip >= b.num_rows() {
            skip -= b.num_rows();
            continue;
        }
        let take = (b.num_rows() - skip).min(want);
        out.push(b.slice(skip, take));
        want -= take;
        skip = 0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int32Array, StringArray};
    use arrow_schema::Field;

    fn collected() -> Collected {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", ArrowType::Int32, false),
            Field::new("name", ArrowType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![Some("a,b"), None, Some("c")])),
            ],
        )
        .unwrap_or_else(|_| RecordBatch::new_empty(schema.clone()));
        Collected {
            schema: None,
            ipc: vec![ipc(&schema, &[batch]).unwrap_or_default()],
            rows: 3,
        }
    }

    #[test]
    fn rows_are_strings_or_null() -> Result<(), String> {
        let r = build(&collected(), Format::JsonArray, true, Limits::default())?;
        assert_eq!(r.columns[0].type_name, "INT");
        assert_eq!(r.columns[1].name, "name");
        assert_eq!(r.total_rows, 3);
        assert_eq!(
            r.chunks[0].rows,
            vec![
                vec![Some("1".into()), Some("a,b".into())],
                vec![Some("2".into()), None],
                vec![Some("3".into()), Some("c".into())]
            ]
        );
        let limited = build(
            &collected(),
            Format::JsonArray,
            true,
            Limits {
                row_limit: Some(2),
                byte_limit: None,
            },
        )?;
        assert!(limited.truncated && limited.total_rows == 2);
        let csv = build(&collected(), Format::Csv, false, Limits::default())?;
        assert_eq!(
            String::from_utf8_lossy(&csv.chunks[0].bytes),
            "1,\"a,b\"\n2,\n3,c\n"
        );
        let arrow = build(&collected(), Format::ArrowStream, false, Limits::default())?;
        assert_eq!(arrow.chunks[0].bytes, collected().ipc[0]);
        Ok(())
    }
}

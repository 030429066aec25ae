//! A result as the SQL protocol carries it: the Arrow schema as one IPC
//! message (`arrowSchema`), then each record batch as its own IPC message
//! (`arrowBatches[].batch`), which the client appends to the schema to read
//! a stream; LZ4-framed when the client can decompress it. The engine's
//! batches are re-framed, not re-computed.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int16Array, Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use crate::results::{self, ColumnInfo};
use crate::session::Collected;

/// A result ready to fetch.
#[derive(Debug, Clone, Default)]
pub struct Framed {
    pub columns: Vec<ColumnInfo>,
    /// The schema's IPC message.
    pub schema: Vec<u8>,
    /// Each batch's IPC message and row count.
    pub batches: Vec<(Vec<u8>, i64)>,
}

impl Framed {
    pub fn rows(&self) -> i64 {
        self.batches.iter().map(|(_, n)| n).sum()
    }
}

/// Frames record batches of `schema`.
pub fn frame(
    schema: &Schema,
    batches: &[RecordBatch],
    columns: Vec<ColumnInfo>,
) -> Result<Framed, String> {
    let mut buffer = Vec::new();
    let mut writer =
        arrow_ipc::writer::StreamWriter::try_new(&mut buffer, schema).map_err(|e| e.to_string())?;
    let mut marks = Vec::new();
    for b in batches {
        writer.write(b).map_err(|e| e.to_string())?;
        marks.push(b.num_rows() as i64);
    }
    drop(writer);
    // Re-read the stream's message boundaries: the schema, then one message per batch.
    let mut offsets = Vec::new();
    let mut at = 0usize;
    while at + 8 <= buffer.len() {
        let (len, header) = message_len(&buffer[at..]).ok_or("a malformed Arrow message")?;
        let body =
            body_len(&buffer[at + header..at + header + len]).ok_or("a malformed Arrow message")?;
        let end = at + header + len + body;
        offsets.push((at, end));
        at = end;
    }
    let Some((&(s0, s1), rest)) = offsets.split_first() else {
        return Err("the engine's result has no schema".into());
    };
    let batches = rest
        .iter()
        .zip(marks)
        .map(|(&(a, b), rows)| (buffer[a..b].to_vec(), rows))
        .collect();
    Ok(Framed {
        columns,
        schema: buffer[s0..s1].to_vec(),
        batches,
    })
}

/// An encapsulated message's metadata length and the prefix size
/// (`0xFFFFFFFF` continuation, then the little-endian length).
fn message_len(bytes: &[u8]) -> Option<(usize, usize)> {
    let word = |i: usize| -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?))
    };
    match word(0)? {
        0xFFFF_FFFF => Some((word(4)? as usize, 8)),
        n => Some((n as usize, 4)),
    }
}

/// A message's body length, from its flatbuffer metadata.
fn body_len(metadata: &[u8]) -> Option<usize> {
    let message = arrow_ipc::root_as_message(metadata).ok()?;
    usize::try_from(message.bodyLength()).ok()
}

/// An IPC stream's messages as (start, end) offsets, and whether each is a
/// record batch (the first is the schema); `None` if one is malformed.
fn messages(stream: &[u8]) -> Option<Vec<(usize, usize, bool)>> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 8 <= stream.len() {
        let (len, header) = message_len(&stream[at..])?;
        if len == 0 {
            break; // end of stream
        }
        let metadata = stream.get(at + header..at + header + len)?;
        let message = arrow_ipc::root_as_message(metadata).ok()?;
        let body = usize::try_from(message.bodyLength()).ok()?;
        let end = at + header + len + body;
        if end > stream.len() {
            return None;
        }
        let batch = message.header_type() == arrow_ipc::MessageHeader::RecordBatch;
        out.push((at, end, batch));
        at = end;
    }
    Some(out)
}

/// The engine's streams re-framed without decoding: the first stream's
/// schema message, then every record batch message as it is. `None` when a
/// stream holds anything else (dictionaries), which then goes the long way.
fn passthrough(collected: &Collected, columns: Vec<ColumnInfo>) -> Option<Framed> {
    let mut schema = None;
    let mut batches = Vec::new();
    for stream in &collected.ipc {
        let msgs = messages(stream)?;
        let ((s0, s1, _), rest) = msgs.split_first()?;
        schema.get_or_insert_with(|| stream[*s0..*s1].to_vec());
        for (a, b, batch) in rest {
            if !batch {
                return None;
            }
            let metadata_len = message_len(&stream[*a..])?;
            let metadata = stream.get(*a + metadata_len.1..*a + metadata_len.1 + metadata_len.0)?;
            let rows = arrow_ipc::root_as_message(metadata)
                .ok()?
                .header_as_record_batch()?
                .length();
            batches.push((stream[*a..*b].to_vec(), rows));
        }
    }
    Some(Framed {
        columns,
        schema: schema?,
        batches,
    })
}

/// The engine's result, framed.
pub fn from_engine(collected: &Collected) -> Result<Framed, String> {
    if !collected.ipc.is_empty() {
        let arrow_schema = collected.ipc.first().and_then(|first| {
            arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(first), None)
                .ok()
                .map(|r| r.schema())
        });
        let columns = results::columns(collected, arrow_schema.as_deref());
        if let Some(framed) = passthrough(collected, columns) {
            return Ok(framed);
        }
    }
    let (schema, batches) = results::decode(collected)?;
    let schema = schema.unwrap_or_else(|| Arc::new(Schema::empty()));
    let columns = results::columns(collected, Some(&schema));
    frame(&schema, &batches, columns)
}

/// A result Kiln builds (the metadata calls): string and integer columns.
pub enum Col {
    Str(&'static str, Vec<Option<String>>),
    Int(&'static str, Vec<Option<i32>>),
    Short(&'static str, Vec<Option<i16>>),
}

pub fn table(cols: Vec<Col>) -> Result<Framed, String> {
    let mut fields = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for c in cols {
        match c {
            Col::Str(name, v) => {
                fields.push(Field::new(name, DataType::Utf8, true));
                arrays.push(Arc::new(StringArray::from(v)));
            }
            Col::Int(name, v) => {
                fields.push(Field::new(name, DataType::Int32, true));
                arrays.push(Arc::new(Int32Array::from(v)));
            }
            Col::Short(name, v) => {
                fields.push(Field::new(name, DataType::Int16, true));
                arrays.push(Arc::new(Int16Array::from(v)));
            }
        }
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| e.to_string())?;
    let collected = Collected::default();
    let columns = results::columns(&collected, Some(&schema));
    let batches = if batch.num_rows() == 0 {
        Vec::new()
    } else {
        vec![batch]
    };
    frame(&schema, &batches, columns)
}

/// LZ4 frame of `bytes` (what `lz4.frame.decompress` reads).
pub fn lz4(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write as _;
    let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
    encoder.write_all(bytes).map_err(|e| e.to_string())?;
    encoder.finish().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_and_batches_concatenate_to_a_stream() -> Result<(), String> {
        let framed = table(vec![
            Col::Str("name", vec![Some("a".into()), None]),
            Col::Int("n", vec![Some(1), Some(2)]),
        ])?;
        assert_eq!(framed.batches.len(), 1);
        assert_eq!(framed.rows(), 2);
        let mut stream = framed.schema.clone();
        stream.extend(&framed.batches[0].0);
        let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(stream), None)
            .map_err(|e| e.to_string())?;
        let read: Vec<RecordBatch> = reader
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        assert_eq!(read[0].num_rows(), 2);
        assert_eq!(framed.columns[1].type_name, "INT");
        // an engine's stream is split as it is, not decoded and re-encoded
        let mut engine = framed.schema.clone();
        engine.extend(&framed.batches[0].0);
        engine.extend([0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]);
        let collected = Collected {
            schema: None,
            ipc: vec![engine.clone(), engine],
            rows: 4,
        };
        let passed = from_engine(&collected)?;
        assert_eq!(passed.schema, framed.schema);
        assert_eq!(passed.batches.len(), 2);
        assert_eq!(passed.batches[1], framed.batches[0]);
        let empty = table(vec![Col::Str("x", vec![])])?;
        assert!(empty.batches.is_empty() && !empty.schema.is_empty());
        Ok(())
    }
}

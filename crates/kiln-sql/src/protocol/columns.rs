//! Column-based results (`COLUMN_BASED_SET`) for clients that cannot read
//! Arrow (databricks-sql-connector without pyarrow): each column's values in
//! a typed list with a bitmap of nulls (bit i of byte i/8, lowest bit first).
//! Types without a column kind of their own (decimals, dates, timestamps,
//! nested values) travel as strings, as Databricks sends them.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::DataType;
use thrift::OrderedFloat;

use super::tcli::*;

fn nulls(array: &dyn Array) -> Vec<u8> {
    let mut bits = vec![0u8; array.len().div_ceil(8)];
    for i in 0..array.len() {
        if array.is_null(i) {
            bits[i / 8] |= 1 << (i % 8);
        }
    }
    bits
}

fn column(array: &ArrayRef) -> TColumn {
    let n = nulls(array.as_ref());
    let len = array.len();
    match array.data_type() {
        DataType::Boolean => {
            let a = array.as_boolean();
            TColumn::BoolVal(TBoolColumn {
                values: Some((0..len).map(|i| !a.is_null(i) && a.value(i)).collect()),
                nulls: Some(n),
            })
        }
        DataType::Int8 => TColumn::ByteVal(TByteColumn {
            values: Some(array.as_primitive::<Int8Type>().values().to_vec()),
            nulls: Some(n),
        }),
        DataType::Int16 => TColumn::I16Val(TI16Column {
            values: Some(array.as_primitive::<Int16Type>().values().to_vec()),
            nulls: Some(n),
        }),
        DataType::Int32 => TColumn::I32Val(TI32Column {
            values: Some(array.as_primitive::<Int32Type>().values().to_vec()),
            nulls: Some(n),
        }),
        DataType::Int64 => TColumn::I64Val(TI64Column {
            values: Some(array.as_primitive::<Int64Type>().values().to_vec()),
            nulls: Some(n),
        }),
        DataType::Float32 => TColumn::DoubleVal(TDoubleColumn {
            values: Some(
                array
                    .as_primitive::<Float32Type>()
                    .values()
                    .iter()
                    .map(|v| OrderedFloat(f64::from(*v)))
                    .collect(),
            ),
            nulls: Some(n),
        }),
        DataType::Float64 => TColumn::DoubleVal(TDoubleColumn {
            values: Some(
                array
                    .as_primitive::<Float64Type>()
                    .values()
                    .iter()
                    .map(|v| OrderedFloat(*v))
                    .collect(),
            ),
            nulls: Some(n),
        }),
        DataType::Binary => {
            let a = array.as_binary::<i32>();
            TColumn::BinaryVal(TBinaryColumn {
                values: Some(
                    (0..len)
                        .map(|i| {
                            if a.is_null(i) {
                                Vec::new()
                            } else {
                                a.value(i).to_vec()
                            }
                        })
                        .collect(),
                ),
                nulls: Some(n),
            })
        }
        _ => {
            let options = FormatOptions::new().with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"));
            let formatter = ArrayFormatter::try_new(array.as_ref(), &options).ok();
            TColumn::StringVal(TStringColumn {
                values: Some(
                    (0..len)
                        .map(|i| match (&formatter, array.is_null(i)) {
                            (Some(f), false) => f.value(i).to_string(),
                            _ => String::new(),
                        })
                        .collect(),
                ),
                nulls: Some(n),
            })
        }
    }
}

/// The rows of framed batches (the schema message, then batch messages) as columns.
pub fn from_batches(schema: &[u8], batches: &[(Vec<u8>, i64)]) -> Result<Vec<TColumn>, String> {
    let mut decoded: Vec<RecordBatch> = Vec::new();
    let mut arrow_schema = None;
    for (bytes, _) in batches {
        let mut stream = schema.to_vec();
        stream.extend(bytes);
        let reader = arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(stream), None)
            .map_err(|e| e.to_string())?;
        arrow_schema.get_or_insert_with(|| reader.schema());
        for b in reader {
            decoded.push(b.map_err(|e| e.to_string())?);
        }
    }
    if arrow_schema.is_none() {
        let reader =
            arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(schema.to_vec()), None)
                .map_err(|e| e.to_string())?;
        arrow_schema = Some(reader.schema());
    }
    let schema = arrow_schema.unwrap_or_else(|| Arc::new(arrow_schema::Schema::empty()));
    let all = arrow_select_concat(&schema, &decoded)?;
    Ok(all.columns().iter().map(column).collect())
}

fn arrow_select_concat(
    schema: &Arc<arrow_schema::Schema>,
    batches: &[RecordBatch],
) -> Result<RecordBatch, String> {
    if batches.is_empty() {
        return Ok(RecordBatch::new_empty(schema.clone()));
    }
    let columns: Vec<ArrayRef> = (0..schema.fields().len())
        .map(|i| {
            let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(i).as_ref()).collect();
            arrow_select::concat::concat(&parts).map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::batches::{table, Col};
    use super::*;

    #[test]
    fn columns_carry_values_and_null_bits() -> Result<(), String> {
        let framed = table(vec![
            Col::Str("s", vec![Some("a".into()), None, Some("c".into())]),
            Col::Int("n", vec![Some(1), Some(2), None]),
        ])?;
        let cols = from_batches(&framed.schema, &framed.batches)?;
        match (&cols[0], &cols[1]) {
            (TColumn::StringVal(s), TColumn::I32Val(n)) => {
                assert_eq!(
                    s.values.as_deref(),
                    Some(&["a".to_string(), String::new(), "c".to_string()][..])
                );
                assert_eq!(s.nulls.as_deref(), Some(&[0b010u8][..]));
                assert_eq!(n.values.as_deref(), Some(&[1, 2, 0][..]));
                assert_eq!(n.nulls.as_deref(), Some(&[0b100u8][..]));
            }
            other => return Err(format!("unexpected columns {other:?}")),
        }
        Ok(())
    }
}

//! What the TCLIService calls answer with: statuses, handles, a result's
//! table schema (Thrift type ids), and a statement's parameters bound for
//! the engine.

use std::collections::HashMap;

use thrift::OrderedFloat;

use super::batches::Framed;
use super::tcli::*;
use crate::params::{self, StatementParameter};

pub(crate) fn ok() -> Option<TStatus> {
    Some(TStatus {
        status_code: Some(TStatusCode::SUCCESS_STATUS),
        ..Default::default()
    })
}

pub(crate) fn failed(message: impl Into<String>) -> Option<TStatus> {
    let message = message.into();
    Some(TStatus {
        status_code: Some(TStatusCode::ERROR_STATUS),
        error_message: Some(message.clone()),
        display_message: Some(message),
        sql_state: Some("HY000".into()),
        ..Default::default()
    })
}

pub(crate) fn invalid_handle(what: &str) -> Option<TStatus> {
    Some(TStatus {
        status_code: Some(TStatusCode::INVALID_HANDLE_STATUS),
        error_message: Some(format!(
            "Invalid {what} handle: it does not exist or is closed."
        )),
        ..Default::default()
    })
}

/// 16 random bytes (a session's or an operation's id).
pub(crate) fn guid() -> Vec<u8> {
    let hex = kiln_core::ids::random_hex(16);
    (0..16)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0))
        .collect()
}

pub(crate) fn handle_guid(id: Option<&THandleIdentifier>) -> Vec<u8> {
    id.and_then(|h| h.guid.clone()).unwrap_or_default()
}

pub(crate) fn op_handle(guid: Vec<u8>, kind: i32, has_result: bool) -> TOperationHandle {
    TOperationHandle {
        operation_id: Some(THandleIdentifier {
            guid: Some(guid),
            secret: Some(self::guid()),
        }),
        operation_type: Some(TOperationType(kind)),
        has_result_set: Some(has_result),
        modified_row_count: Some(OrderedFloat(0.0)),
    }
}

pub(crate) fn type_id(type_name: &str) -> TTypeId {
    match type_name {
        "BOOLEAN" => TTypeId::BOOLEAN_TYPE,
        "BYTE" => TTypeId::TINYINT_TYPE,
        "SHORT" => TTypeId::SMALLINT_TYPE,
        "INT" => TTypeId::INT_TYPE,
        "LONG" => TTypeId::BIGINT_TYPE,
        "FLOAT" => TTypeId::FLOAT_TYPE,
        "DOUBLE" => TTypeId::DOUBLE_TYPE,
        "TIMESTAMP" => TTypeId::TIMESTAMP_TYPE,
        "BINARY" => TTypeId::BINARY_TYPE,
        "ARRAY" => TTypeId::ARRAY_TYPE,
        "MAP" => TTypeId::MAP_TYPE,
        "STRUCT" => TTypeId::STRUCT_TYPE,
        "DECIMAL" => TTypeId::DECIMAL_TYPE,
        "NULL" => TTypeId::NULL_TYPE,
        "DATE" => TTypeId::DATE_TYPE,
        "CHAR" => TTypeId::CHAR_TYPE,
        "INTERVAL" => TTypeId::INTERVAL_DAY_TIME_TYPE,
        _ => TTypeId::STRING_TYPE,
    }
}

pub(crate) fn table_schema(framed: &Framed) -> TTableSchema {
    let columns = framed
        .columns
        .iter()
        .map(|c| {
            let qualifiers = match (c.type_precision, c.type_scale) {
                (Some(p), Some(s)) => Some(TTypeQualifiers {
                    qualifiers: Some(
                        [("precision", p), ("scale", s)]
                            .into_iter()
                            .map(|(k, v)| {
                                (
                                    k.to_string(),
                                    TTypeQualifierValue {
                                        i32_value: Some(v),
                                        string_value: None,
                                    },
                                )
                            })
                            .collect(),
                    ),
                }),
                _ => None,
            };
            TColumnDesc {
                column_name: Some(c.name.clone()),
                type_desc: Some(TTypeDesc {
                    types: Some(vec![TTypeEntry {
                        primitive_entry: Some(TPrimitiveTypeEntry {
                            type_: Some(type_id(&c.type_name)),
                            type_qualifiers: qualifiers,
                        }),
                    }]),
                }),
                position: Some(c.position as i32 + 1),
                comment: Some(String::new()),
            }
        })
        .collect();
    TTableSchema {
        columns: Some(columns),
    }
}

/// Named and positional arguments, encoded.
pub(crate) type Bound = (HashMap<String, Vec<u8>>, Vec<Vec<u8>>);

pub(crate) fn parameters(list: &[TSparkParameter]) -> Result<Bound, String> {
    let mut named = Vec::new();
    let mut positional: Vec<(i32, Vec<u8>)> = Vec::new();
    for p in list {
        let value = p.value.as_ref().map(|v| {
            v.string_value
                .clone()
                .or_else(|| v.double_value.map(|d| d.0.to_string()))
                .or_else(|| v.boolean_value.map(|b| b.to_string()))
                .unwrap_or_default()
        });
        let param = StatementParameter {
            name: p.name.clone().unwrap_or_default(),
            value,
            type_: p.type_.clone(),
        };
        match p.name.as_deref().filter(|n| !n.is_empty()) {
            Some(_) => named.push(param),
            None => positional.push((
                p.ordinal.unwrap_or(positional.len() as i32 + 1),
                params::encode(&param).map_err(|e| e.message)?,
            )),
        }
    }
    positional.sort_by_key(|(o, _)| *o);
    let named = params::bind(&named).map_err(|e| e.message)?;
    Ok((named, positional.into_iter().map(|(_, v)| v).collect()))
}

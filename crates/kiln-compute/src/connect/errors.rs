//! Errors Kiln answers itself on a Spark Connect call, shaped as the engine's
//! are (a `google.rpc.Status` with an `ErrorInfo` naming the exception class),
//! so PySpark raises the same `AnalysisException` a Spark server would.

use std::collections::HashMap;

use prost::Message as _;
use tonic::{Code, Status};

#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ErrorInfo {
    #[prost(string, tag = "1")]
    reason: String,
    #[prost(string, tag = "2")]
    domain: String,
    #[prost(map = "string, string", tag = "3")]
    metadata: HashMap<String, String>,
}

/// An engine's error status (`grpc-status-details-bin`, decoded) with `note`
/// appended to its message. An `errorId` is dropped from its `ErrorInfo`, so
/// the client shows this message instead of fetching the engine's own.
pub fn status_with_note(details: &[u8], note: &str) -> Option<Vec<u8>> {
    let mut status = RpcStatus::decode(details).ok()?;
    status.message.push_str(note);
    for detail in &mut status.details {
        if detail.type_url.ends_with("google.rpc.ErrorInfo") {
            if let Ok(mut info) = ErrorInfo::decode(detail.value.as_slice()) {
                info.metadata.remove("errorId");
                detail.value = info.encode_to_vec();
            }
        }
    }
    Some(status.encode_to_vec())
}

const ANALYSIS_EXCEPTION: &str = "org.apache.spark.sql.AnalysisException";

/// An `AnalysisException` with Spark's error class and SQLSTATE.
pub fn analysis_error(error_class: &str, sql_state: &str, message: &str) -> Status {
    let info = ErrorInfo {
        reason: ANALYSIS_EXCEPTION.into(),
        domain: "org.apache.spark".into(),
        metadata: HashMap::from([
            (
                "classes".to_string(),
                format!(r#"["{ANALYSIS_EXCEPTION}"]"#),
            ),
            ("errorClass".to_string(), error_class.to_string()),
            ("sqlState".to_string(), sql_state.to_string()),
        ]),
    };
    let status = RpcStatus {
        code: Code::InvalidArgument as i32,
        message: message.to_string(),
        details: vec![Any {
            type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
            value: info.encode_to_vec(),
        }],
    };
    Status::with_details(
        Code::InvalidArgument,
        message,
        status.encode_to_vec().into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_details_name_the_class_and_repeat_the_status() -> Result<(), Box<dyn std::error::Error>>
    {
        let status = analysis_error("X", "42000", "boom");
        assert_eq!(status.code(), Code::InvalidArgument);
        let decoded = RpcStatus::decode(status.details())?;
        assert_eq!(decoded.code, Code::InvalidArgument as i32);
        assert_eq!(decoded.message, "boom");
        let info = ErrorInfo::decode(decoded.details[0].value.as_slice())?;
        assert_eq!(info.reason, ANALYSIS_EXCEPTION);
        assert_eq!(info.metadata["errorClass"], "X");
        Ok(())
    }

    #[test]
    fn a_note_joins_the_message_and_the_error_id_goes() {
        let info = ErrorInfo {
            reason: "x".into(),
            domain: "org.apache.spark".into(),
            metadata: HashMap::from([
                ("errorId".to_string(), "e1".to_string()),
                ("classes".to_string(), "[]".to_string()),
            ]),
        };
        let status = RpcStatus {
            code: 13,
            message: "task failed".into(),
            details: vec![Any {
                type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
                value: info.encode_to_vec(),
            }],
        };
        let noted = status_with_note(&status.encode_to_vec(), " NODES_LOST").unwrap_or_default();
        let back = RpcStatus::decode(noted.as_slice()).unwrap_or_default();
        assert_eq!(back.message, "task failed NODES_LOST");
        assert_eq!(back.code, 13);
        let info = ErrorInfo::decode(back.details[0].value.as_slice()).unwrap_or_default();
        assert!(!info.metadata.contains_key("errorId"));
        assert_eq!(info.metadata["classes"], "[]");
        assert!(status_with_note(b"\xff\xff", "x").is_none());
    }
}

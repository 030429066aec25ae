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
}

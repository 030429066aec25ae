//! One error vocabulary, in Databricks' `error_code` terms.
//!
//! The HTTP status for each code follows the SDK's generated error mapping
//! (`databricks/sdk/errors/mapping.py`); see the contract §3.2.

use std::fmt;

/// Databricks `error_code` strings that Kiln emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidParameterValue,
    MalformedRequest,
    InvalidState,
    BadRequest,
    Unauthenticated,
    PermissionDenied,
    ResourceDoesNotExist,
    EndpointNotFound,
    NotFound,
    ResourceAlreadyExists,
    AlreadyExists,
    ResourceConflict,
    RequestLimitExceeded,
    InternalError,
    NotImplemented,
    TemporarilyUnavailable,
    // Unity Catalog's own codes.
    CatalogDoesNotExist,
    SchemaDoesNotExist,
    TableDoesNotExist,
    CatalogAlreadyExists,
    SchemaAlreadyExists,
    TableAlreadyExists,
    SchemaNotEmpty,
    // DBFS and workspace codes.
    DirectoryNotEmpty,
    MaxBlockSizeExceeded,
    MaxReadSizeExceeded,
}

impl ErrorCode {
    /// The exact `error_code` string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            Self::MalformedRequest => "MALFORMED_REQUEST",
            Self::InvalidState => "INVALID_STATE",
            Self::BadRequest => "BAD_REQUEST",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::ResourceDoesNotExist => "RESOURCE_DOES_NOT_EXIST",
            Self::EndpointNotFound => "ENDPOINT_NOT_FOUND",
            Self::NotFound => "NOT_FOUND",
            Self::ResourceAlreadyExists => "RESOURCE_ALREADY_EXISTS",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::ResourceConflict => "RESOURCE_CONFLICT",
            Self::RequestLimitExceeded => "REQUEST_LIMIT_EXCEEDED",
            Self::InternalError => "INTERNAL_ERROR",
            Self::NotImplemented => "NOT_IMPLEMENTED",
            Self::TemporarilyUnavailable => "TEMPORARILY_UNAVAILABLE",
            Self::CatalogDoesNotExist => "CATALOG_DOES_NOT_EXIST",
            Self::SchemaDoesNotExist => "SCHEMA_DOES_NOT_EXIST",
            Self::TableDoesNotExist => "TABLE_DOES_NOT_EXIST",
            Self::CatalogAlreadyExists => "CATALOG_ALREADY_EXISTS",
            Self::SchemaAlreadyExists => "SCHEMA_ALREADY_EXISTS",
            Self::TableAlreadyExists => "TABLE_ALREADY_EXISTS",
            Self::SchemaNotEmpty => "SCHEMA_NOT_EMPTY",
            Self::DirectoryNotEmpty => "DIRECTORY_NOT_EMPTY",
            Self::MaxBlockSizeExceeded => "MAX_BLOCK_SIZE_EXCEEDED",
            Self::MaxReadSizeExceeded => "MAX_READ_SIZE_EXCEEDED",
        }
    }

    /// The HTTP status the SDK expects with this code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidParameterValue
            | Self::MalformedRequest
            | Self::InvalidState
            | Self::BadRequest
            | Self::SchemaNotEmpty
            | Self::DirectoryNotEmpty
            | Self::MaxBlockSizeExceeded
            | Self::MaxReadSizeExceeded => 400,
            Self::Unauthenticated => 401,
            Self::PermissionDenied => 403,
            Self::ResourceDoesNotExist
            | Self::EndpointNotFound
            | Self::NotFound
            | Self::CatalogDoesNotExist
            | Self::SchemaDoesNotExist
            | Self::TableDoesNotExist => 404,
            Self::ResourceAlreadyExists
            | Self::AlreadyExists
            | Self::ResourceConflict
            | Self::CatalogAlreadyExists
            | Self::SchemaAlreadyExists
            | Self::TableAlreadyExists => 409,
            Self::RequestLimitExceeded => 429,
            Self::InternalError => 500,
            Self::NotImplemented => 501,
            Self::TemporarilyUnavailable => 503,
        }
    }
}

/// A failure with a Databricks error code and a user-facing message.
///
/// `retry_after_secs` is set only on throttling errors (429), which the edge
/// renders with a `Retry-After` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParameterValue, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ResourceDoesNotExist, message)
    }
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidState, message)
    }
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ResourceAlreadyExists, message)
    }
    pub fn not_implemented(operation: &str) -> Self {
        Self::new(
            ErrorCode::NotImplemented,
            format!("{operation} is not implemented by Kiln yet"),
        )
    }
    /// An internal failure. The detail goes to the log, never to the client.
    pub fn internal(context: &str, detail: impl fmt::Display) -> Self {
        tracing::error!(context, detail = %detail, "internal error");
        Self::new(
            ErrorCode::InternalError,
            format!("internal error while trying to {context}"),
        )
    }
    pub fn status(&self) -> u16 {
        self.code.http_status()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Error {}

/// Substrings that make the SDK retry a request forever (contract §3.3). No
/// non-transient message may contain them.
pub const SDK_RETRY_TRIGGERS: &[&str] = &[
    "com.databricks.backend.manager.util.UnknownWorkerEnvironmentException",
    "does not have any associated worker environments",
    "There is no worker environment with id",
    "Unknown worker environment",
    "ClusterNotReadyException",
    "Unexpected error",
    "Please try again later or try a faster operation.",
    "RPC token bucket limit has been exceeded",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_sdk_mapping() {
        let cases = [
            (ErrorCode::InvalidParameterValue, 400),
            (ErrorCode::Unauthenticated, 401),
            (ErrorCode::PermissionDenied, 403),
            (ErrorCode::ResourceDoesNotExist, 404),
            (ErrorCode::ResourceAlreadyExists, 409),
            (ErrorCode::RequestLimitExceeded, 429),
            (ErrorCode::NotImplemented, 501),
            (ErrorCode::TemporarilyUnavailable, 503),
        ];
        for (code, status) in cases {
            assert_eq!(code.http_status(), status, "{}", code.as_str());
        }
    }

    #[test]
    fn internal_errors_hide_details() {
        let err = Error::internal("create cluster", "disk I/O error at /secret/path");
        assert!(!err.message.contains("/secret/path"));
        assert_eq!(err.code, ErrorCode::InternalError);
    }
}

//! The edge's error type: renders a `kiln_core::Error` once as Databricks'
//! `{"error_code","message"}` body with the status the SDK expects.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_api::error::ErrorBody;
use kiln_core::{Error, ErrorCode};

/// A handler error.
#[derive(Debug)]
pub struct ApiError(pub Error);

pub type ApiResult<T> = Result<T, ApiError>;

/// The message of an error response, kept on the response so an API family
/// with another error body (REST API 1.2) can render it its own way.
#[derive(Debug, Clone)]
pub struct RenderedError(pub String);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(Error::new(code, message))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            error_code: self.0.code.as_str().into(),
            message: self.0.message.clone(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        response
            .extensions_mut()
            .insert(RenderedError(self.0.message));
        if let Some(secs) = self.0.retry_after_secs {
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::error::SDK_RETRY_TRIGGERS;

    #[test]
    fn renders_status_and_retry_after() {
        let mut err = Error::new(ErrorCode::RequestLimitExceeded, "slow down");
        err.retry_after_secs = Some(2);
        let response = ApiError(err).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("2")
        );
    }

    #[test]
    fn internal_message_never_triggers_sdk_retries() {
        let err = Error::internal("start the engine", "Unexpected error: boom");
        for trigger in SDK_RETRY_TRIGGERS {
            assert!(!err.message.contains(trigger), "{}", err.message);
        }
    }
}

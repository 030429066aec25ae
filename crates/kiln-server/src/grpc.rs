//! gRPC status codes and trailers-only error responses, as the Spark Connect
//! gateway and the relay answer them.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response};

/// gRPC status codes used here.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GrpcCode {
    InvalidArgument = 3,
    NotFound = 5,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// The `grpc-status` of a response's headers or trailers.
pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<u16> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// A trailers-only gRPC error response.
pub(crate) fn grpc_error(status: GrpcCode, message: &str) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(status as u16));
    if let Ok(value) = HeaderValue::from_str(&encode_message(message)) {
        headers.insert("grpc-message", value);
    }
    response
}

/// `grpc-message`'s percent-encoding.
pub(crate) fn encode_message(message: &str) -> String {
    message
        .bytes()
        .flat_map(|b| {
            if (0x20..0x7F).contains(&b) && b != b'%' {
                vec![b as char]
            } else {
                format!("%{b:02X}").chars().collect()
            }
        })
        .collect()
}

/// A `grpc-message` as text (malformed escapes kept as they are).
pub(crate) fn decode_message(encoded: &str) -> String {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_percent_encoded() {
        let response = grpc_error(GrpcCode::NotFound, "cluster 1 is gone — 100%");
        let message = response
            .headers()
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert_eq!(message, "cluster 1 is gone %E2%80%94 100%25");
        assert_eq!(decode_message(&message), "cluster 1 is gone — 100%");
        assert_eq!(decode_message("50%"), "50%");
    }
}

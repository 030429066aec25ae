//! A Spark Connect call that fails on a cluster whose worker pods were lost
//! while it ran says so, as a failed command does: the `NODES_LOST` note is
//! added to its status (`grpc-message` and the `google.rpc.Status` in
//! `grpc-status-details-bin`, whose message PySpark shows).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response};
use base64::Engine as _;
use futures_util::StreamExt as _;
use http_body_util::{BodyStream, StreamBody};
use kiln_compute::clusters::Clusters;

use crate::grpc::{decode_message, encode_message, grpc_status};

/// `response` to a call on `cluster_id` that began at `since_ms`, with the
/// note added to a failure's status when the cluster lost workers meanwhile.
pub(crate) async fn explain(
    clusters: Arc<Clusters>,
    cluster_id: String,
    since_ms: i64,
    response: Response<Body>,
) -> Response<Body> {
    if !clusters.on_pods(&cluster_id) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    if grpc_status(&parts.headers).is_some_and(|s| s != 0) {
        // Trailers-only: the status is in the headers.
        if let Some(note) = clusters
            .lost_workers_note(&cluster_id, since_ms, "query")
            .await
        {
            add_note(&mut parts.headers, &note);
        }
        return Response::from_parts(parts, body);
    }
    let frames = BodyStream::new(body).then(move |frame| {
        let (clusters, cluster_id) = (clusters.clone(), cluster_id.clone());
        async move {
            let frame = frame?;
            if !frame.is_trailers() {
                return Ok(frame);
            }
            let Ok(mut trailers) = frame.into_trailers() else {
                return Err(axum::Error::new("a trailers frame without trailers"));
            };
            if grpc_status(&trailers).is_some_and(|s| s != 0) {
                if let Some(note) = clusters
                    .lost_workers_note(&cluster_id, since_ms, "query")
                    .await
                {
                    add_note(&mut trailers, &note);
                }
            }
            Ok(hyper::body::Frame::trailers(trailers))
        }
    });
    Response::from_parts(parts, Body::new(StreamBody::new(frames)))
}

/// Appends `note` to a failed call's status message, in both places.
fn add_note(headers: &mut HeaderMap, note: &str) {
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(decode_message)
        .unwrap_or_default();
    if let Ok(v) = HeaderValue::from_str(&encode_message(&format!("{message}{note}"))) {
        headers.insert("grpc-message", v);
    }
    let engine = base64::engine::general_purpose::STANDARD_NO_PAD;
    let details = headers
        .get("grpc-status-details-bin")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| engine.decode(v.trim_end_matches('=')).ok())
        .and_then(|d| kiln_compute::connect::status_with_note(&d, note));
    if let Some(details) = details {
        if let Ok(v) = HeaderValue::from_str(&engine.encode(details)) {
            headers.insert("grpc-status-details-bin", v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_reaches_both_messages() {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_static("13"));
        headers.insert("grpc-message", HeaderValue::from_static("task failed%0A"));
        // google.rpc.Status { code: 13, message: "task failed\n" }
        let status = [0x08, 0x0d, 0x12, 0x0c]
            .into_iter()
            .chain(*b"task failed\n")
            .collect::<Vec<u8>>();
        let engine = base64::engine::general_purpose::STANDARD_NO_PAD;
        if let Ok(v) = HeaderValue::from_str(&engine.encode(&status)) {
            headers.insert("grpc-status-details-bin", v);
        }
        add_note(&mut headers, "NODES_LOST: pod p");
        let message = headers
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .map(decode_message);
        assert_eq!(message.as_deref(), Some("task failed\nNODES_LOST: pod p"));
        let details = headers
            .get("grpc-status-details-bin")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| engine.decode(v).ok())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&details);
        assert!(text.contains("task failed\nNODES_LOST: pod p"), "{text}");
    }
}

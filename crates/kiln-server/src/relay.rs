//! Forwarding one Spark Connect call to an engine, shared by the gateway
//! (workspace ports, authenticated) and the front (loopback, for kernels and
//! pipeline workers). An `ExecutePlan` is read whole first (it is one message)
//! so that table writes the engine cannot do are carried out by
//! [`kiln_compute::connect::TableWrites`]; its rewritten request's answer is
//! held until Kiln has finished the write (e.g. the catalog swap of a
//! REPLACE), so the client's success means the write is done.

use axum::body::Body;
use axum::http::{header, Request, Response, Uri};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use http_body_util::{BodyExt as _, BodyStream, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use kiln_compute::connect::{Finish, Prepared, TableWrites};

/// The largest `ExecutePlan` message read whole (bigger ones stream through;
/// PySpark sends local data over 64 MiB as artifacts anyway).
const WHOLE_LIMIT: usize = 256 * 1024 * 1024;
const EXECUTE_PLAN: &str = "/spark.connect.SparkConnectService/ExecutePlan";
const ANALYZE_PLAN: &str = "/spark.connect.SparkConnectService/AnalyzePlan";
const CONFIG: &str = "/spark.connect.SparkConnectService/Config";
const ADD_ARTIFACTS: &str = "/spark.connect.SparkConnectService/AddArtifacts";
/// The largest `AddArtifacts` body read whole.
const ARTIFACTS_LIMIT: usize = 64 * 1024 * 1024;

pub type Failure = (crate::grpc::GrpcCode, String);

/// Reads the body until its first gRPC message is complete (up to `limit`
/// bytes of message) and returns what was read with the rest of the body.
pub async fn read_first(mut body: Incoming, limit: usize) -> Result<(BytesMut, Incoming), Failure> {
    let mut prefix = BytesMut::new();
    while prefix.len() < wanted(&prefix, limit) {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    prefix.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => return Err((crate::grpc::GrpcCode::InvalidArgument, e.to_string())),
            None => break,
        }
    }
    Ok((prefix, body))
}

fn wanted(prefix: &[u8], limit: usize) -> usize {
    if prefix.len() < 5 {
        return 5;
    }
    let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    5 + length.min(limit)
}

/// How much of a call's body to read before forwarding it.
pub fn read_limit(path: &str, peek: usize) -> usize {
    if path == EXECUTE_PLAN || path == ANALYZE_PLAN {
        WHOLE_LIMIT
    } else if path == CONFIG {
        peek.max(1024 * 1024)
    } else {
        peek
    }
}

/// The whole uncompressed message, when `prefix` holds exactly one.
fn whole_message(prefix: &[u8]) -> Option<&[u8]> {
    let (&compressed, rest) = prefix.split_first()?;
    let length = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let message = rest.get(4..)?;
    (compressed == 0 && message.len() == length).then_some(message)
}

/// One uncompressed gRPC message frame.
pub(crate) fn framed(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(message.len() + 5);
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out.freeze()
}

/// Forwards the call (the `prefix` already read, then `rest`) to the engine on
/// `port`, carrying out a table write first when the call is one.
pub async fn forward(
    client: &Client<HttpConnector, Body>,
    writes: &TableWrites,
    mut parts: axum::http::request::Parts,
    prefix: BytesMut,
    rest: Incoming,
    port: u16,
) -> Result<Response<Body>, Failure> {
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    if parts.uri.path() == ADD_ARTIFACTS {
        return add_artifacts(client, parts, prefix, rest, port).await;
    }
    let prepared = match (parts.uri.path(), whole_message(&prefix)) {
        (EXECUTE_PLAN, Some(message)) => writes.prepare(port, message).await,
        (ANALYZE_PLAN, Some(message)) => writes.prepare_analyze(message),
        (CONFIG, Some(message)) => {
            writes.note_config(message);
            Prepared::Pass
        }
        _ => Prepared::Pass,
    };
    parts.uri = format!("http://127.0.0.1:{port}{path_and_query}")
        .parse::<Uri>()
        .map_err(|e| (crate::grpc::GrpcCode::Internal, e.to_string()))?;
    parts.headers.remove(header::AUTHORIZATION);
    parts.headers.remove(header::HOST);
    parts.extensions = Default::default();
    let (body, finish) = match prepared {
        Prepared::Refuse(status) => return Ok(status.into_http::<Body>()),
        Prepared::Pass => {
            let first = futures_util::stream::iter(
                (!prefix.is_empty()).then(|| Ok::<_, hyper::Error>(Frame::data(prefix.freeze()))),
            );
            let body = Body::new(StreamBody::new(first.chain(BodyStream::new(rest))));
            (body, None)
        }
        Prepared::Forward { request, finish } => {
            parts.headers.remove(header::CONTENT_LENGTH);
            (Body::from(framed(&request)), finish)
        }
    };
    let response = client.request(Request::from_parts(parts, body)).await;
    let response = match (response, finish) {
        (Ok(response), None) => return Ok(response.map(Body::new)),
        (Err(e), finish) => {
            if let Some(finish) = finish {
                let _ = writes.finish(finish, false);
            }
            return Err((
                crate::grpc::GrpcCode::Unavailable,
                format!("the cluster's Spark engine did not answer: {e}"),
            ));
        }
        (Ok(response), Some(finish)) => (response, finish),
    };
    held(writes, response.0, response.1).await
}

/// `AddArtifacts` (client streaming, read whole): REPL class files are
/// acknowledged by Kiln (see `connect::artifacts`), anything else goes on.
async fn add_artifacts(
    client: &Client<HttpConnector, Body>,
    mut parts: axum::http::request::Parts,
    prefix: BytesMut,
    rest: Incoming,
    port: u16,
) -> Result<Response<Body>, Failure> {
    let limited = http_body_util::Limited::new(rest, ARTIFACTS_LIMIT);
    let tail = limited
        .collect()
        .await
        .map_err(|e| (crate::grpc::GrpcCode::InvalidArgument, e.to_string()))?
        .to_bytes();
    let mut body = prefix;
    body.extend_from_slice(&tail);
    if let Some(answer) = kiln_compute::connect::artifacts::class_files_only(&body) {
        let trailers = {
            let mut t = axum::http::HeaderMap::new();
            t.insert("grpc-status", axum::http::HeaderValue::from_static("0"));
            t
        };
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(framed(&answer))),
            Ok(Frame::trailers(trailers)),
        ];
        let mut response = Response::new(Body::new(StreamBody::new(futures_util::stream::iter(
            frames,
        ))));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/grpc"),
        );
        return Ok(response);
    }
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    parts.uri = format!("http://127.0.0.1:{port}{path_and_query}")
        .parse::<Uri>()
        .map_err(|e| (crate::grpc::GrpcCode::Internal, e.to_string()))?;
    parts.headers.remove(header::AUTHORIZATION);
    parts.headers.remove(header::HOST);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.extensions = Default::default();
    let response = client
        .request(Request::from_parts(parts, Body::from(body.freeze())))
        .await
        .map_err(|e| {
            (
                crate::grpc::GrpcCode::Unavailable,
                format!("the cluster's Spark engine did not answer: {e}"),
            )
        })?;
    Ok(response.map(Body::new))
}

/// Reads the engine's whole answer to a rewritten call, finishes the write,
/// then answers the client.
async fn held(
    writes: &TableWrites,
    response: Response<Incoming>,
    finish: Finish,
) -> Result<Response<Body>, Failure> {
    let (parts, body) = response.into_parts();
    let collected = match body.collect().await {
        Ok(collected) => collected,
        Err(e) => {
            let _ = writes.finish(finish, false);
            return Err((
                crate::grpc::GrpcCode::Unavailable,
                format!("the cluster's Spark engine stopped answering: {e}"),
            ));
        }
    };
    let trailers = collected.trailers().cloned();
    let status = crate::grpc::grpc_status(&parts.headers)
        .or_else(|| trailers.as_ref().and_then(crate::grpc::grpc_status));
    if let Err(status) = writes.finish(finish, status == Some(0)) {
        return Ok(status.into_http::<Body>());
    }
    let data = collected.to_bytes();
    let mut frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = Vec::new();
    if !data.is_empty() {
        frames.push(Ok(Frame::data(data)));
    }
    if let Some(trailers) = trailers {
        frames.push(Ok(Frame::trailers(trailers)));
    }
    let body = Body::new(StreamBody::new(futures_util::stream::iter(frames)));
    Ok(Response::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execute_plan_is_read_whole_and_other_calls_only_peeked() {
        assert_eq!(read_limit(EXECUTE_PLAN, 512), WHOLE_LIMIT);
        // a session's settings are followed (the Delta utilities read some)
        assert_eq!(read_limit(CONFIG, 512), 1024 * 1024);
        assert_eq!(
            read_limit("/spark.connect.SparkConnectService/ReleaseExecute", 512),
            512
        );
        let message = framed(b"abc");
        assert_eq!(wanted(&message, 2), 7);
        assert_eq!(whole_message(&message), Some(&b"abc"[..]));
        assert_eq!(whole_message(&message[..6]), None);
        let mut compressed = message.to_vec();
        compressed[0] = 1;
        assert_eq!(whole_message(&compressed), None);
    }
}

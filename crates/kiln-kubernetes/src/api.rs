//! A small client of the Kubernetes pods API, with Kiln's own credentials:
//! one HTTP/1.1 request per call (pod traffic is a handful of calls a minute).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use kiln_core::{Error, ErrorCode, Result};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::access::Access;

const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct Api {
    access: Access,
    pub namespace: String,
}

/// An answer of the API: its status and JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::TemporarilyUnavailable,
        format!("the Kubernetes API did not answer: {e}"),
    )
}

/// `k=v,k2=v2` as a query value.
pub fn selector(labels: &[(&str, &str)]) -> String {
    let text = labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

impl Api {
    pub fn new(access: Access, namespace: String) -> Api {
        Api { access, namespace }
    }

    fn pods_path(&self) -> String {
        format!("/api/v1/namespaces/{}/pods", self.namespace)
    }

    pub async fn create_pod(&self, pod: &Value) -> Result<Reply> {
        self.call(Method::POST, &self.pods_path(), Some(pod)).await
    }

    pub async fn get_pod(&self, name: &str) -> Result<Reply> {
        self.call(Method::GET, &format!("{}/{name}", self.pods_path()), None)
            .await
    }

    pub async fn delete_pod(&self, name: &str) -> Result<Reply> {
        self.call(
            Method::DELETE,
            &format!("{}/{name}", self.pods_path()),
            None,
        )
        .await
    }

    /// Pods matching every label.
    pub async fn list_pods(&self, labels: &[(&str, &str)]) -> Result<Vec<Value>> {
        let path = format!("{}?labelSelector={}", self.pods_path(), selector(labels));
        let reply = self.call(Method::GET, &path, None).await?;
        if !reply.ok() {
            return Err(unavailable(format!(
                "listing pods answered HTTP {}: {}",
                reply.status, reply.body["message"]
            )));
        }
        Ok(reply.body["items"].as_array().cloned().unwrap_or_default())
    }

    /// Deletes the pods matching every label (a `deletecollection`).
    pub async fn delete_pods(&self, labels: &[(&str, &str)]) -> Result<Reply> {
        let path = format!("{}?labelSelector={}", self.pods_path(), selector(labels));
        self.call(Method::DELETE, &path, None).await
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply> {
        tokio::time::timeout(TIMEOUT, self.send(method, path, body))
            .await
            .map_err(|_| unavailable("timed out"))?
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply> {
        let a = &self.access;
        let authority = if a.host.contains(':') {
            format!("[{}]:{}", a.host, a.port)
        } else {
            format!("{}:{}", a.host, a.port)
        };
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", a.base_path))
            .header(hyper::header::HOST, authority)
            .header(hyper::header::ACCEPT, "application/json")
            .header(hyper::header::USER_AGENT, "kiln");
        if let Some(header) = a.auth.header()? {
            request = request.header(hyper::header::AUTHORIZATION, header);
        }
        let payload = match body {
            Some(v) => {
                request = request.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(|e| Error::internal("build a Kubernetes request", e))?;
        let tcp = TcpStream::connect((a.host.as_str(), a.port))
            .await
            .map_err(unavailable)?;
        let _ = tcp.set_nodelay(true);
        match &a.tls {
            None => exchange(tcp, request).await,
            Some(tls) => {
                let name =
                    rustls::pki_types::ServerName::try_from(a.host.clone()).map_err(unavailable)?;
                let stream = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(unavailable)?;
                exchange(stream, request).await
            }
        }
    }
}

async fn exchange<S>(io: S, request: Request<Full<Bytes>>) -> Result<Reply>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(unavailable)?;
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender.send_request(request).await.map_err(unavailable)?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(unavailable)?
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                serde_json::json!({"message": String::from_utf8_lossy(&bytes[..bytes.len().min(500)])})
            })
        };
        Ok(Reply { status, body })
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_query_encoded() {
        assert_eq!(
            selector(&[("kiln.dev/cluster-id", "0101-a"), ("x", "y")]),
            "kiln.dev%2Fcluster-id%3D0101-a%2Cx%3Dy"
        );
    }
}

//! The workspace's listeners: plain HTTP (HTTP/1.1 and h2c) and HTTPS (TLS
//! 1.2/1.3, ALPN h2 and http/1.1), each connection served by hyper. Every
//! request has its repeated slashes collapsed before routing (clients given a
//! host ending in `/` call `//api/…`) and carries its [`Scheme`]; Spark Connect
//! gRPC calls go to the gateway, everything else to the REST router.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, Uri};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::gateway::Gateway;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish after shutdown begins.
const DRAIN_DEADLINE: Duration = Duration::from_secs(20);

pub use crate::extract::Scheme;

/// One bound port.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<Arc<ServerConfig>>,
    /// The loopback front for kernels and pipeline workers: Spark Connect only.
    pub front: bool,
}

/// What every connection serves.
#[derive(Clone)]
pub struct Services {
    pub app: Router,
    pub gateway: Gateway,
}

/// Serves every listener until `shutdown` completes, then lets open
/// connections finish (up to a deadline).
pub async fn serve(
    listeners: Vec<Listener>,
    services: Services,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let stop = CancellationToken::new();
    // Shared by every connection and request: one reference count per request.
    let services = Arc::new(services);
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|listener| tokio::spawn(accept_loop(listener, services.clone(), stop.clone())))
        .collect();
    shutdown.await;
    stop.cancel();
    for task in loops {
        let _ = task.await;
    }
}

async fn accept_loop(listener: Listener, services: Arc<Services>, stop: CancellationToken) {
    let graceful = GracefulShutdown::new();
    let acceptor = listener.tls.map(TlsAcceptor::from);
    loop {
        let accepted = tokio::select! {
            accepted = listener.tcp.accept() => accepted,
            _ = stop.cancelled() => break,
        };
        let Ok((stream, _peer)) = accepted else {
            // Out of file descriptors and the like: back off, keep serving.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        match &acceptor {
            None => {
                let connection = serve_io(
                    TokioIo::new(stream),
                    services.clone(),
                    Scheme::Http,
                    listener.front,
                );
                let watched = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = watched.await;
                });
            }
            Some(acceptor) => {
                // The handshake runs in its own task; the connection is watched
                // once it is established.
                let handshake = acceptor.accept(stream);
                let services = services.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await
                    else {
                        return;
                    };
                    let connection = serve_io(TokioIo::new(tls), services, Scheme::Https, false);
                    let _ = watcher.watch(connection).await;
                });
            }
        }
    }
    drop(listener.tcp);
    let _ = tokio::time::timeout(DRAIN_DEADLINE, graceful.shutdown()).await;
}

fn serve_io<I>(
    io: TokioIo<I>,
    services: Arc<Services>,
    scheme: Scheme,
    front: bool,
) -> impl hyper_util::server::graceful::GracefulConnection<
    Error = Box<dyn std::error::Error + Send + Sync>,
> + Send
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let services = services.clone();
        async move {
            if front {
                return Ok::<_, Infallible>(services.gateway.handle_front(request).await);
            }
            Ok::<_, Infallible>(route(services, request, scheme).await)
        }
    });
    Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(io, service)
        .into_owned()
}

async fn route(
    services: Arc<Services>,
    mut request: Request<Incoming>,
    scheme: Scheme,
) -> Response<Body> {
    collapse_slashes(request.uri_mut());
    request.extensions_mut().insert(scheme);
    if crate::gateway::is_spark_connect(&request) {
        return services.gateway.handle(request).await;
    }
    match services.app.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// `//api//2.0/x` → `/api/2.0/x` (the query is kept as it is).
/// A trailing slash of a REST path is dropped too (`GET /api/2.0/pipelines/`,
/// as seed 001 writes it, is the list call), except in the Files API, whose
/// paths name files and directories.
fn collapse_slashes(uri: &mut Uri) {
    let path = uri.path();
    let trailing = path.len() > 1
        && path.ends_with('/')
        && path.starts_with("/api/")
        && !path.starts_with("/api/2.0/fs/");
    if !path.contains("//") && !trailing {
        return;
    }
    let mut collapsed = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && collapsed.ends_with('/')) {
            collapsed.push(c);
        }
    }
    if trailing {
        while collapsed.len() > 1 && collapsed.ends_with('/') {
            collapsed.pop();
        }
    }
    let path_and_query = match uri.query() {
        Some(query) => format!("{collapsed}?{query}"),
        None => collapsed,
    };
    let mut parts = uri.clone().into_parts();
    if let Ok(value) = path_and_query.parse() {
        parts.path_and_query = Some(value);
        if let Ok(rebuilt) = Uri::from_parts(parts) {
            *uri = rebuilt;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collapsed(text: &str) -> String {
        let mut uri: Uri = text.parse().unwrap_or_default();
        collapse_slashes(&mut uri);
        uri.to_string()
    }

    #[test]
    fn repeated_slashes_collapse_and_the_query_stays() {
        assert_eq!(
            collapsed("//api/2.0/clusters/list"),
            "/api/2.0/clusters/list"
        );
        assert_eq!(collapsed("/api//2.0///x?a=b//c"), "/api/2.0/x?a=b//c");
        assert_eq!(collapsed("/health"), "/health");
        assert_eq!(collapsed("/api/2.0/pipelines/"), "/api/2.0/pipelines");
        assert_eq!(
            collapsed("/api/2.0/pipelines//?a=1"),
            "/api/2.0/pipelines?a=1"
        );
        assert_eq!(
            collapsed("/api/2.0/fs/directories/Volumes/a/"),
            "/api/2.0/fs/directories/Volumes/a/"
        );
        assert_eq!(collapsed("/ui/"), "/ui/");
    }
}

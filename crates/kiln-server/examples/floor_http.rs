//! The floor `bench/floors.py` measures Kiln's REST API against: a bare axum
//! handler on the same runtime Kiln builds (multi-threaded tokio), answering
//! every GET with a fixed JSON body (Kiln's own `clusters/list` answer, read
//! from a file) and no authentication, logging or store.
//!
//!     cargo run --release -p kiln-server --example floor_http -- <port> <body.json>

use std::net::SocketAddr;

use axum::http::header;
use axum::routing::get;
use axum::Router;

/// The allocator Kiln's binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or("usage: floor_http <port> <body.json>")?;
    let path = args.next().ok_or("usage: floor_http <port> <body.json>")?;
    let body = std::fs::read(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let app = Router::new().fallback(get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .map_err(|e| e.to_string())?;
        axum::serve(listener, app).await.map_err(|e| e.to_string())
    })
}

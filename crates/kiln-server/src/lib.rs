//! Kiln's HTTP edge: the route table, authentication, rate limits and error
//! rendering, and [`serve`], which owns the server's lifetime.
//!
//! Architecture invariant: only this crate knows HTTP; engines and the store
//! never see wire types.

pub mod config;
pub mod error;
pub mod extract;
pub mod identity;
pub mod middleware;
pub mod ratelimit;
pub mod routes;
pub mod state;

mod bootstrap;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use kiln_compute::clusters::{ClusterSettings, Clusters};
use kiln_compute::runtime::{cache_dir, Runtime};
use kiln_core::{Error, Result};
use kiln_store::{SqliteStore, Store};
use tokio_util::sync::CancellationToken;

pub use config::Config;
use routes::HostInfo;
use state::{AppState, Shared};

/// Builds the application router over a state.
pub fn app(state: AppState) -> Router {
    routes::router(routes::endpoints())
        .fallback(routes::fallback)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::authenticate,
        ))
        .layer(axum::middleware::from_fn(middleware::trace))
        .with_state(state)
}

/// Runs Kiln until `shutdown` completes: installs the engine runtime if needed,
/// opens the store, recovers clusters, serves HTTP, then drains requests and
/// stops every engine.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        Error::internal(
            "create the data dir",
            format!("{}: {e}", config.data_dir.display()),
        )
    })?;
    let cache = cache_dir();
    let runtime = tokio::task::spawn_blocking(move || Runtime::ensure(&cache))
        .await
        .map_err(|e| Error::internal("install the engine runtime", e))??;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.data_dir.join("kiln.db"))?);
    let identity = identity::Identity::open(store.clone())?;
    let workspace_id = bootstrap::workspace_id(store.as_ref())?;
    bootstrap::admin(&identity, &config)?;
    let clusters = Clusters::open(
        store.clone(),
        runtime,
        ClusterSettings {
            data_dir: config.data_dir.clone(),
            autotermination_minute: config.clusters.minute(),
            stop_deadline: std::time::Duration::from_secs(config.clusters.engine_stop_seconds),
        },
    )?;
    let cancel = CancellationToken::new();
    let reconciler = tokio::spawn(clusters.clone().run_reconciler(cancel.clone()));
    let listener = tokio::net::TcpListener::bind((config.host.as_str(), config.port))
        .await
        .map_err(|e| {
            Error::internal(
                "bind the HTTP port",
                format!("{}:{}: {e}", config.host, config.port),
            )
        })?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::internal("bind the HTTP port", e))?;
    let limiter = ratelimit::RateLimiter::new(
        config.rate_limit.requests_per_second,
        config.rate_limit.burst,
    );
    let state = AppState {
        inner: Arc::new(Shared {
            config,
            identity,
            clusters,
            limiter,
            workspace_id,
            host: HostInfo::detect(),
        }),
    };
    tracing::info!(%address, "kiln is serving");
    println!("Kiln is listening on http://{address}");
    let served = axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await;
    cancel.cancel();
    let _ = reconciler.await;
    tracing::info!("kiln stopped");
    served.map_err(|e| Error::internal("serve HTTP", e))
}

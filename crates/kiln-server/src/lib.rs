//! Kiln's HTTP edge: the route table, authentication, rate limits and error
//! rendering, and [`serve`], which owns the server's lifetime.
//!
//! Architecture invariant: only this crate knows HTTP; engines and the store
//! never see wire types.

pub(crate) mod access;
pub mod config;
pub mod error;
pub mod extract;
pub mod gateway;
mod grpc;
pub mod listen;
pub mod middleware;
pub mod ratelimit;
mod relay;
pub mod routes;
pub mod state;
pub mod ui;
pub mod uploads;

mod bootstrap;
mod lost_workers;
mod object_storage;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use kiln_catalog::Catalog;
use kiln_compute::clusters::{ClusterSettings, Clusters, EngineCatalog};
use kiln_compute::contexts::Contexts;
use kiln_compute::isolation::Isolation;
use kiln_compute::libraries::Libraries;
use kiln_compute::runtime::{cache_dir, Runtime};
use kiln_core::{Error, Result};
use kiln_store::{SqliteStore, Store};
use tokio_util::sync::CancellationToken;

pub use config::Config;
use kiln_compute::host::HostInfo;
use state::{AppState, Shared};

/// Builds the application router over a state.
pub fn app(state: AppState) -> Router {
    routes::router(routes::endpoints())
        .merge(ui::router())
        .merge(routes::postgres_data_api::router())
        .merge(routes::engine_credentials::router())
        .fallback(routes::fallback)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::trace,
        ))
        .with_state(state)
}

/// Runs Kiln until `shutdown` completes: installs the engine runtime if needed,
/// opens the store, recovers clusters, serves HTTP, then drains requests, stops
/// every kernel and then every engine.
pub async fn serve(
    mut config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        Error::invalid(format!(
            "cannot create the data dir {}: {e}",
            config.data_dir.display()
        ))
    })?;
    let cache = cache_dir();
    let runtime = {
        let cache = cache.clone();
        tokio::task::spawn_blocking(move || Runtime::ensure(&cache))
            .await
            .map_err(|e| Error::internal("install the engine runtime", e))??
    };
    let sources = kiln_compute::kernel::install_sources(&cache)?;
    let external = external_locations(&config.catalog.external_locations)?;
    let object_root = object_storage::open_root(&config).await?;
    let isolation = Arc::new(Isolation::open(
        &config.data_dir,
        config.shared_dir.clone(),
        &external,
        object_root.is_some(),
    )?);
    if isolation.users() {
        runtime.check_reachable()?;
        // Files Kiln creates in DBFS and the warehouse stay writable by the
        // data group; private files are made private explicitly.
        kiln_core::process::set_umask(0o002);
    }
    // Parts of multipart uploads to object storage (their sessions ended with the last run).
    let _ = std::fs::remove_dir_all(config.data_dir.join("uploads"));
    // DBFS (volumes included) on an object store: user code opens its files
    // through a FUSE mount where DBFS's directory would be.
    let dbfs_mount = match &object_root {
        Some(root) => {
            object_storage::warn_of_local_dbfs(&isolation.shared().join("dbfs"));
            tracing::info!(dbfs = %root.url("dbfs"), "DBFS and MANAGED volumes live on object storage");
            let gid = isolation
                .users()
                .then_some(kiln_compute::isolation::DATA_GID);
            let home = config.data_dir.join("s3fs");
            let mount =
                kiln_storage::FuseMount::mount(root, "dbfs", &isolation.dbfs(), &home, gid).await?;
            Some(mount)
        }
        None => None,
    };
    tracing::info!(
        isolation = isolation.mode(),
        shared_dir = %isolation.shared().display(),
        "user code isolation"
    );
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.data_dir.join("kiln.db"))?);
    private_files(&config.data_dir)?;
    let identity = Arc::new(kiln_identity::Identity::open(store.clone())?);
    let cipher = kiln_workspace::secrets::SecretCipher::load_or_create(
        &config.data_dir.join("secrets.key"),
    )?;
    let secrets = kiln_workspace::secrets::Secrets::open(store.clone(), cipher)?;
    let dbfs = kiln_workspace::dbfs::Dbfs::open(isolation.dbfs())?;
    let dbfs = match &object_root {
        Some(root) => {
            dbfs.on_object_store(root.clone(), config.data_dir.join("uploads").join("dbfs"))?
        }
        None => dbfs,
    };
    let workspace = Arc::new(kiln_workspace::workspace::Workspace::open(store.clone())?);
    let permissions = kiln_workspace::permissions::Permissions::open(store.clone())?;
    let groups = kiln_workspace::groups::Groups::open(store.clone())?;
    let workspace_id = bootstrap::workspace_id(store.as_ref())?;
    let account_id = bootstrap::account_id(store.as_ref())?;
    let metastore_id = bootstrap::uuid_once(store.as_ref(), "metastore_id")?;
    bootstrap::admin(&identity, &config)?;
    bootstrap::shared_folder(store.as_ref(), &workspace, &permissions)?;
    let mut listeners = bind_listeners(&mut config).await?;
    // Kernels and pipeline workers reach engines through this loopback front,
    // which carries out the table writes engines cannot do themselves.
    let front = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| Error::internal("bind the engine front", e))?;
    let front_port = front
        .local_addr()
        .map_err(|e| Error::internal("bind the engine front", e))?
        .port();
    let address = listeners[0]
        .tcp
        .local_addr()
        .map_err(|e| Error::internal("bind the HTTP port", e))?;
    // What engines and pipeline workers get to reach the root: Kiln's key, or
    // leases on credentials scoped to the root (`[storage] engine_role_arn`).
    let engine_credentials = match &object_root {
        Some(root) => object_storage::engine_access(root, &isolation, loopback_address(address))?,
        None => None,
    };
    let catalog = Catalog::open(
        store.clone(),
        isolation.warehouse(),
        &isolation.dbfs(),
        &external,
    )?;
    if let Some(root) = &object_root {
        catalog.put_on_object_store(root.clone());
    }
    let kubernetes = match &config.kubernetes {
        Some(k) => {
            // Worker pods reach volumes on the object store as their driver does.
            let mut k = k.clone();
            k.data_on_object_store = object_root.is_some();
            // With scoped engine credentials, each pod gets its cluster's
            // session at creation instead of Kiln's key.
            let root_env = match (&object_root, &engine_credentials) {
                (Some(root), Some(_)) => root.store_env(),
                (Some(root), None) => root.engine_env(),
                (None, _) => Vec::new(),
            };
            for (name, value) in root_env {
                k.worker_env.entry(name).or_insert(value);
            }
            let k = kiln_kubernetes::Kubernetes::new(k, &workspace_id)?;
            if let (Some(root), Some(credentials)) = (&object_root, &engine_credentials) {
                k.set_pod_credentials(object_storage::pod_credentials(
                    root.clone(),
                    credentials.clone(),
                ));
            }
            Some(k)
        }
        None => None,
    };
    // The engines' Kubernetes API outlives the engines (they delete pods at their end).
    let kubernetes_stop = CancellationToken::new();
    let kubernetes_api = match &kubernetes {
        Some(k) => Some(k.serve_engine_api(kubernetes_stop.clone()).await?),
        None => None,
    };
    let settings = ClusterSettings {
        data_dir: config.data_dir.clone(),
        isolation: isolation.clone(),
        autotermination_minute: config.clusters.minute(),
        stop_deadline: std::time::Duration::from_secs(config.clusters.engine_stop_seconds),
        front_port: Some(front_port),
        pythons: config.runtime.pythons.clone(),
        warm_engines: config.clusters.warm_engines,
        kubernetes: kubernetes.clone(),
        engine_catalog: Some(EngineCatalog {
            uri: format!("http://{}/api/2.1/unity-catalog", loopback_address(address)),
            token: identity.system_token().to_string(),
            catalog: catalog.clone(),
        }),
    };
    let clusters = Clusters::open(store.clone(), runtime.clone(), settings)?;
    let pipelines = kiln_pipelines::Pipelines::open(
        store.clone(),
        workspace.clone(),
        clusters.clone(),
        sources.clone(),
        &cache,
        config.data_dir.clone(),
    )?;
    pipelines.start();
    let api_url = format!("http://{}", loopback_address(address));
    let contexts = Contexts::new(clusters.clone(), sources, api_url);
    let libraries = Libraries::open(store.clone(), clusters.clone(), isolation.dbfs())?;
    let lakebase = Arc::new(kiln_lakebase::Lakebase::open(
        store.clone(),
        lakebase_config(&config, &isolation),
    )?);
    lakebase.check_layout().map_err(|e| {
        Error::invalid(format!(
            "Lakebase cannot prepare its data directory ({}): set lakebase.dir (KILN_LAKEBASE_DIR) to a directory Kiln can create and the postgres OS user can reach",
            e.message
        ))
    })?;
    let lakebase_stop = CancellationToken::new();
    let lakebase_tasks = start_lakebase(&config, lakebase.clone(), lakebase_stop.clone()).await?;
    private_files(&config.data_dir)?;
    let engines_stop = CancellationToken::new();
    let kernels_stop = CancellationToken::new();
    let engines = tokio::spawn(clusters.clone().run_reconciler(engines_stop.clone()));
    let warm_engines = tokio::spawn(clusters.clone().keep_warm_engines(engines_stop.clone()));
    let worker_pods = tokio::spawn(clusters.clone().watch_worker_pods(engines_stop.clone()));
    let installs = tokio::spawn(libraries.clone().run(kernels_stop.clone()));
    let kernels = tokio::spawn(kiln_compute::run_contexts_reconciler(
        contexts.clone(),
        kernels_stop.clone(),
    ));
    let limiter = ratelimit::RateLimiter::new(
        config.rate_limit.requests_per_second,
        config.rate_limit.burst,
    );
    let warehouses = kiln_sql::Warehouses::open(store.clone(), clusters.clone())?;
    kiln_sql::reconciler::start(&warehouses);
    let history = kiln_sql::history::History::open(store.clone())?;
    let statements =
        kiln_sql::Statements::new(warehouses.clone(), history.clone(), catalog.clone());
    let sql_protocol = kiln_sql::protocol::SqlProtocol::new(
        warehouses.clone(),
        clusters.clone(),
        catalog.clone(),
        history,
    );
    let jobs = kiln_jobs::Jobs::open(
        store.clone(),
        kiln_jobs::Services {
            clusters: clusters.clone(),
            contexts: contexts.clone(),
            libraries: libraries.clone(),
            pipelines: pipelines.clone(),
            workspace: workspace.clone(),
            identity: identity.clone(),
            catalog: catalog.clone(),
            storage: object_root.clone(),
            destinations: kiln_jobs::destinations::Destinations::open(
                store.clone(),
                Arc::new(kiln_core::seal::Cipher::load_or_create(
                    &config.data_dir.join("secrets.key"),
                )?),
            )?,
            statements: statements.clone(),
            sql_endpoint: kiln_jobs::SqlEndpoint {
                hostname: loopback_address(address).ip().to_string(),
                port: config.server.https_port,
                org_id: workspace_id.clone(),
                ca_bundle: (config.server.tls_cert.is_none())
                    .then(|| config.data_dir.join("tls").join("bundle.pem")),
            },
        },
    )?;
    kiln_jobs::scheduler::start(&jobs);
    let host = HostInfo::detect(&config.data_dir);
    let shared = Shared {
        config,
        identity,
        u2m: kiln_identity::oauth_u2m::U2m::open(store.clone())?,
        uploads: Default::default(),
        ui_sessions: Default::default(),
        clusters,
        contexts,
        catalog,
        storage: object_root,
        engine_credentials,
        libraries,
        secrets,
        dbfs,
        workspace,
        permissions,
        groups,
        lakebase,
        pipelines: pipelines.clone(),
        jobs: jobs.clone(),
        warehouses: warehouses.clone(),
        statements,
        sql_protocol,
        limiter,
        workspace_id,
        account_id,
        metastore_id,
        host,
        list_cache: Default::default(),
    };
    let state = AppState {
        inner: Arc::new(shared),
    };
    tracing::info!(%address, "kiln is serving");
    println!("Kiln is listening on http://{address}");
    for listener in &listeners[1..] {
        if let Ok(extra) = listener.tcp.local_addr() {
            let scheme = if listener.tls.is_some() {
                "https"
            } else {
                "http"
            };
            tracing::info!(address = %extra, scheme, "kiln is serving");
            println!("Kiln is listening on {scheme}://{extra}");
        }
    }
    listeners.push(listen::Listener {
        tcp: front,
        tls: None,
        front: true,
    });
    let services = listen::Services {
        app: app(state.clone()),
        gateway: gateway::Gateway::new(state),
    };
    listen::serve(listeners, services, shutdown).await;
    // Lakebase endpoints stop with the proxy.
    lakebase_stop.cancel();
    for task in lakebase_tasks {
        let _ = task.await;
    }
    // Job runs and pipeline updates, then kernels (they talk to engines), then engines.
    jobs.shutdown().await;
    warehouses.shutdown().await;
    pipelines.shutdown().await;
    kernels_stop.cancel();
    let _ = kernels.await;
    let _ = installs.await;
    engines_stop.cancel();
    let _ = engines.await;
    let _ = warm_engines.await;
    let _ = worker_pods.await;
    kubernetes_stop.cancel();
    if let Some(api) = kubernetes_api {
        let _ = api.await;
    }
    if let Some(mount) = dbfs_mount {
        mount.unmount().await;
    }
    tracing::info!("kiln stopped");
    Ok(())
}

/// DBFS files on local disk are not used while DBFS is on an object store.
/// The plain-HTTP port first, then the HTTPS port and any extra plain ports.
async fn bind_listeners(config: &mut Config) -> Result<Vec<listen::Listener>> {
    let host = config.host.clone();
    let bind = |port: u16| {
        let host = host.clone();
        async move {
            tokio::net::TcpListener::bind((host.as_str(), port))
                .await
                .map_err(|e| {
                    let hint = if port < 1024 {
                        " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
                    } else {
                        ""
                    };
                    Error::invalid(format!("cannot listen on {host}:{port}: {e}{hint}"))
                })
        }
    };
    let mut listeners = vec![listen::Listener {
        tcp: bind(config.port).await?,
        tls: None,
        front: false,
    }];
    if config.server.https_port != 0 {
        let tcp = match bind(config.server.https_port).await {
            Ok(tcp) => tcp,
            // the default port taken (another Kiln): a free one, printed with the others
            Err(_) if !config.server.https_port_asked => bind(0).await?,
            Err(e) => return Err(e),
        };
        config.server.https_port = tcp
            .local_addr()
            .map_err(|e| Error::internal("bind the HTTPS port", e))?
            .port();
        listeners.push(listen::Listener {
            tcp,
            tls: Some(workspace_tls(config)?),
            front: false,
        });
    }
    let server = &config.server;
    for port in &server.extra_http_ports {
        listeners.push(listen::Listener {
            tcp: bind(*port).await?,
            tls: None,
            front: false,
        });
    }
    Ok(listeners)
}

/// The HTTPS identity: the configured certificate, or a leaf from Kiln's CA.
fn workspace_tls(config: &Config) -> Result<Arc<tokio_rustls::rustls::ServerConfig>> {
    use kiln_core::tls;
    let server = &config.server;
    match (&server.tls_cert, &server.tls_key) {
        (Some(cert), Some(key)) => tls::server_config_from_files(cert, key, tls::HTTP_ALPN),
        (None, None) => {
            let ca = tls::LocalCa::open(&config.data_dir.join("tls"))?;
            ca.write_bundle()?;
            ca.server_config(&tls::default_names(&server.tls_names), tls::HTTP_ALPN)
        }
        _ => Err(Error::invalid(
            "server.tls_cert and server.tls_key go together: set both or neither",
        )),
    }
}

/// Kiln's private files: only Kiln's OS user reads them (user code never runs as it).
fn private_files(data_dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (name, mode) in [
        ("kiln.db", 0o600),
        ("kiln.db-wal", 0o600),
        ("kiln.db-shm", 0o600),
        ("admin.token", 0o600),
        ("secrets.key", 0o600),
        ("lakebase-tls", 0o700),
        ("tls", 0o755),
        ("tls/ca.key", 0o600),
        ("logs", 0o700),
        ("pipelines", 0o700),
    ] {
        let path = data_dir.join(name);
        if name == "logs" {
            std::fs::create_dir_all(&path).map_err(|e| Error::internal("create logs", e))?;
        }
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::internal(&format!("chmod {}", path.display()), e))?;
        }
    }
    Ok(())
}

fn lakebase_config(config: &Config, isolation: &Isolation) -> kiln_lakebase::LakebaseConfig {
    let section = &config.lakebase;
    kiln_lakebase::LakebaseConfig {
        root: section
            .dir
            .clone()
            .unwrap_or_else(|| isolation.shared().join("lakebase")),
        os_user: section.os_user.clone(),
        pg_roots: section.postgres_roots.clone(),
        host_suffix: section.host_suffix.clone(),
        min_suspend_secs: section.min_suspend_seconds,
        min_credential_secs: section.min_credential_seconds,
        start_timeout: std::time::Duration::from_secs(60),
        operation_wait: std::time::Duration::from_millis(section.operation_wait_ms),
        secrets_key: Some(config.data_dir.join("secrets.key")),
        deleted_retention: std::time::Duration::from_secs(section.deleted_retention_seconds),
        cpu_per_cu: section.cpu_per_cu,
        cgroups: section.cgroups,
    }
}

/// Starts the Lakebase reconciler, the Postgres proxy (TLS, certificates from
/// Kiln's CA in `<data_dir>/tls`) and the resumption of endpoints that were active.
async fn start_lakebase(
    config: &Config,
    lakebase: Arc<kiln_lakebase::Lakebase>,
    stop: CancellationToken,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = vec![tokio::spawn(lakebase.clone().run_reconciler(stop.clone()))];
    tasks.push(tokio::spawn(lakebase.clone().resume()));
    lakebase.take_missing_bases();
    let port = config.lakebase.proxy_port;
    if port == 0 {
        return Ok(tasks);
    }
    // Each endpoint host name gets a leaf of its own from Kiln's CA (Node
    // rejects `*.localhost`); IP-address clients get the default leaf.
    let tls = kiln_core::tls::SniCertificates::new(
        kiln_core::tls::LocalCa::open(&config.data_dir.join("tls"))?,
        &config.lakebase.host_suffix,
        &kiln_core::tls::default_names(&config.server.tls_names),
    )?
    .into_config(&[])?;
    let bound = tokio::net::TcpListener::bind((config.host.as_str(), port))
        .await
        .and_then(|l| l.into_std());
    match bound {
        Ok(listener) => {
            tracing::info!(port, "lakebase postgres proxy listening");
            tasks.push(kiln_lakebase::proxy::spawn(lakebase, listener, tls, stop));
        }
        Err(e) => tracing::error!(
            port,
            error = %e,
            "cannot listen for Postgres clients; set lakebase.proxy_port (KILN_PG_PORT)"
        ),
    }
    Ok(tasks)
}

/// Where engines reach this server: the bound address, or loopback when bound
/// to every interface.
fn loopback_address(address: std::net::SocketAddr) -> std::net::SocketAddr {
    if address.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], address.port()))
    } else {
        address
    }
}

/// `[catalog] external_locations`, created if missing and resolved once, so
/// that every check compares real paths.
fn external_locations(configured: &[std::path::PathBuf]) -> Result<Vec<std::path::PathBuf>> {
    configured
        .iter()
        .map(|dir| {
            if !dir.is_absolute() {
                return Err(Error::invalid(format!(
                    "catalog.external_locations: {} is not an absolute path",
                    dir.display()
                )));
            }
            std::fs::create_dir_all(dir)
                .and_then(|_| dir.canonicalize())
                .map_err(|e| Error::internal("prepare an external location", e))
        })
        .collect()
}

//! The `kiln` binary: command-line parsing, logging, signals. Everything else
//! lives in the library crates.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kiln_compute::runtime::{cache_dir, Runtime};
use kiln_server::Config;

mod log_buffer;
mod log_format;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "A self-hosted, Databricks-compatible workspace"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server (installs the engine runtime first if needed).
    Serve {
        /// Address to bind [env: KILN_HOST] [default: 127.0.0.1]
        #[arg(long)]
        host: Option<String>,
        /// HTTP port [env: KILN_PORT] [default: 8080]
        #[arg(long)]
        port: Option<u16>,
        /// HTTPS port, 0 = off [env: KILN_HTTPS_PORT] [default: 8443]
        #[arg(long)]
        https_port: Option<u16>,
        /// Data directory [env: KILN_DATA_DIR] [default: ./kiln-data]
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// TOML configuration file (see docs/configuration.md)
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the environment settings that make clients trust Kiln's HTTPS
    /// and Postgres certificates (creates Kiln's CA if needed).
    Trust {
        /// Data directory [env: KILN_DATA_DIR] [default: ./kiln-data]
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// TOML configuration file
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Install the engine runtime (a Python venv with pysail) into the per-user cache.
    Setup,
}

/// Requests allocate and free many small buffers across threads; mimalloc
/// does that for a fraction of glibc's cost (measured with bench/floors.py).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Log lines gather in a buffer a background thread writes to stderr in
    // batches (log_buffer.rs): no system call or wake-up per request.
    let (writer, _flush_on_exit) = match log_buffer::start(std::io::stderr()) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("kiln: cannot start the log writer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        logs.with_target(false).with_ansi(true).init();
    } else {
        // The same text, formatted with less work per line (log_format.rs).
        logs.event_format(log_format::Line).init();
    }
    let result = match Cli::parse().command {
        Command::Setup => setup(),
        Command::Trust { data_dir, config } => trust(data_dir, config),
        Command::Serve {
            host,
            port,
            https_port,
            data_dir,
            config,
        } => serve(host, port, https_port, data_dir, config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("kiln: {message}");
            ExitCode::FAILURE
        }
    }
}

fn setup() -> Result<(), String> {
    let runtime = Runtime::ensure(&cache_dir()).map_err(|e| e.message)?;
    println!("Engine runtime ready at {}", runtime.root.display());
    Ok(())
}

fn trust(data_dir: Option<PathBuf>, file: Option<PathBuf>) -> Result<(), String> {
    let mut config = Config::load(file.as_deref())?;
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", config.data_dir.display()))?;
    let data_dir = config
        .data_dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", config.data_dir.display()))?;
    let ca = kiln_core::tls::LocalCa::open(&data_dir.join("tls")).map_err(|e| e.message)?;
    let bundle = ca.write_bundle().map_err(|e| e.message)?;
    let ca = ca.cert_path().display().to_string();
    let bundle = bundle.display().to_string();
    println!("# Trust Kiln's local CA ({ca}); paste into your shell:");
    println!("export REQUESTS_CA_BUNDLE={bundle}");
    println!("export SSL_CERT_FILE={bundle}");
    println!("export GRPC_DEFAULT_SSL_ROOTS_FILE_PATH={bundle}");
    println!("export NODE_EXTRA_CA_CERTS={ca}");
    println!("export PGSSLROOTCERT={ca}");
    Ok(())
}

fn serve(
    host: Option<String>,
    port: Option<u16>,
    https_port: Option<u16>,
    data_dir: Option<PathBuf>,
    file: Option<PathBuf>,
) -> Result<(), String> {
    let mut config = Config::load(file.as_deref())?;
    if let Some(host) = host {
        config.host = host;
    }
    if let Some(port) = port {
        config.port = port;
    }
    if let Some(port) = https_port {
        config.server.https_port = port;
        config.server.https_port_asked = true;
    }
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime
        .block_on(kiln_server::serve(config, shutdown_signal()))
        .map_err(|e| e.message)
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutdown requested");
}

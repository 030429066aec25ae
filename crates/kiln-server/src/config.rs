//! Kiln's configuration: one typed struct with documented defaults, read from a
//! TOML file, then `KILN_*` environment variables, then command-line flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Everything `kiln serve` can be told. See `docs/configuration.md`.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to bind. Loopback by default: Kiln is not meant to face a network unprotected.
    pub host: String,
    /// HTTP port.
    pub port: u16,
    /// Where the store, engine directories and `admin.token` live.
    pub data_dir: PathBuf,
    /// Password for the `admin` user's Basic auth (optional; the admin token always works).
    pub admin_password: Option<String>,
    /// Where the files user code may reach live (DBFS, warehouse, cluster
    /// environments, scratch, Lakebase data). Default: the data dir, or when
    /// Kiln is root and others cannot reach the data dir,
    /// `/var/lib/kiln/shared/<name>-<hash>`.
    pub shared_dir: Option<PathBuf>,
    pub server: ServerSection,
    pub catalog: CatalogSection,
    pub rate_limit: RateLimitConfig,
    pub clusters: ClustersConfig,
    pub lakebase: LakebaseSection,
    pub runtime: RuntimeSection,
    /// Clusters whose workers run as Kubernetes pods (absent: all on this host).
    pub kubernetes: Option<kiln_kubernetes::KubernetesConfig>,
    /// Where the data user code reaches lives: absent, the local shared tree;
    /// `root = "s3://bucket/prefix"`, an object store (MANAGED volumes today).
    pub storage: kiln_storage::StorageConfig,
}

/// Engine runtimes: the Python interpreters Kiln may build them on (one
/// runtime per Python minor, chosen from a cluster's `spark_version`), besides
/// `python3.X` on PATH and pyenv's versions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSection {
    pub pythons: Vec<PathBuf>,
}

/// Unity Catalog settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogSection {
    /// Directories EXTERNAL volumes may live under (none by default: only
    /// MANAGED volumes). User code on clusters and pipelines reaches them like
    /// DBFS: when Kiln is root they are given to the `kiln-data` group, in
    /// sandbox mode they are bound into every sandbox.
    pub external_locations: Vec<PathBuf>,
}

/// HTTPS and extra listeners of the workspace API (the REST API and the
/// Spark Connect gateway answer on every one of them).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// HTTPS port (TLS 1.2/1.3, ALPN h2 and http/1.1); 0 disables it. 443
    /// needs root or `CAP_NET_BIND_SERVICE`.
    pub https_port: u16,
    /// Whether `https_port` was asked for (flag, environment or file). When it
    /// was not and the default 8443 is taken (a second Kiln on the machine),
    /// Kiln listens on a free port instead and prints it.
    #[serde(skip)]
    pub https_port_asked: bool,
    /// More plain-HTTP ports (e.g. 80 for the legacy CLI's `http://` hosts).
    pub extra_http_ports: Vec<u16>,
    /// Names (DNS or IP) the certificate covers besides localhost, 127.0.0.1 and ::1.
    pub tls_names: Vec<String>,
    /// A certificate chain (PEM) to present instead of one from Kiln's CA.
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_key: Option<PathBuf>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            https_port: 8443,
            https_port_asked: false,
            extra_http_ports: Vec::new(),
            tls_names: Vec::new(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained requests per second allowed per token (0 disables the limit).
    pub requests_per_second: f64,
    /// Burst size per token.
    pub burst: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClustersConfig {
    /// Seconds in one minute of `autotermination_minutes` (tests shorten it).
    pub autotermination_minute_seconds: f64,
    /// Seconds an engine gets after SIGTERM before SIGKILL.
    pub engine_stop_seconds: u64,
    /// Engines kept started ahead of cluster creates, so a new cluster is
    /// RUNNING without waiting for one (each costs an idle engine's memory; 0: off).
    pub warm_engines: usize,
}

/// Lakebase Postgres: where its data lives, the proxy port and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakebaseSection {
    /// Branch and endpoint data (default `<data_dir>/lakebase`). When Kiln runs
    /// as root, postgres runs as `os_user`, which must be able to reach it.
    pub dir: Option<PathBuf>,
    /// The Postgres proxy port (TLS; clients use `sslmode=require`). 0 disables it.
    pub proxy_port: u16,
    /// Endpoint hosts are `<endpoint uid>.<host_suffix>`.
    pub host_suffix: String,
    /// The OS user postgres runs as when Kiln is root.
    pub os_user: String,
    /// Directories holding `<major>/bin/postgres`.
    pub postgres_roots: Vec<PathBuf>,
    /// Shortest suspend timeout accepted (Databricks: 60 s; tests lower it).
    pub min_suspend_seconds: u64,
    /// Shortest credential lifetime accepted (Databricks: 300 s; tests lower it).
    pub min_credential_seconds: u64,
    /// How long a create/update/delete waits for its work before it answers
    /// with a pending operation (`done: false`) that the client polls.
    pub operation_wait_ms: u64,
    /// How long a deleted (not purged) project or branch can be undeleted.
    pub deleted_retention_seconds: u64,
    /// CPU cores per compute unit (each also gets 2 GiB of memory).
    pub cpu_per_cu: f64,
    /// Run endpoints in cgroups that enforce their CU (when Kiln may).
    pub cgroups: bool,
}

impl Default for LakebaseSection {
    fn default() -> Self {
        Self {
            dir: None,
            proxy_port: 5432,
            host_suffix: "localhost".into(),
            os_user: "postgres".into(),
            postgres_roots: vec![PathBuf::from("/usr/lib/postgresql")],
            min_suspend_seconds: 60,
            min_credential_seconds: 300,
            operation_wait_ms: 1000,
            deleted_retention_seconds: 7 * 24 * 3600,
            cpu_per_cu: 1.0,
            cgroups: true,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            data_dir: PathBuf::from("kiln-data"),
            admin_password: None,
            shared_dir: None,
            server: ServerSection::default(),
            catalog: CatalogSection::default(),
            rate_limit: RateLimitConfig::default(),
            clusters: ClustersConfig::default(),
            lakebase: LakebaseSection::default(),
            runtime: RuntimeSection::default(),
            kubernetes: None,
            storage: Default::default(),
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 100_000.0,
            burst: 200_000.0,
        }
    }
}

impl Default for ClustersConfig {
    fn default() -> Self {
        Self {
            autotermination_minute_seconds: 60.0,
            engine_stop_seconds: 5,
            warm_engines: 1,
        }
    }
}

/// Debug without secrets: `admin_password` shows only whether it is set.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "<redacted>"),
            )
            .field("shared_dir", &self.shared_dir)
            .field("server", &self.server)
            .field("catalog", &self.catalog)
            .field("rate_limit", &self.rate_limit)
            .field("clusters", &self.clusters)
            .field("lakebase", &self.lakebase)
            .field("kubernetes", &self.kubernetes)
            .field("storage", &self.storage)
            .finish()
    }
}

impl ClustersConfig {
    pub fn minute(&self) -> Duration {
        Duration::from_secs_f64(self.autotermination_minute_seconds.max(0.01))
    }
}

impl Config {
    /// Reads a TOML file (if given), then applies `KILN_HOST`, `KILN_PORT`,
    /// `KILN_DATA_DIR` and `KILN_ADMIN_PASSWORD`.
    pub fn load(file: Option<&Path>) -> Result<Self, String> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let mut config: Config = toml::from_str(&text)
                    .map_err(|e| format!("invalid config {}: {e}", path.display()))?;
                config.server.https_port_asked = toml::from_str::<toml::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("server")?.get("https_port").cloned())
                    .is_some();
                config
            }
            None => Config::default(),
        };
        if let Ok(host) = std::env::var("KILN_HOST") {
            config.host = host;
        }
        if let Ok(port) = std::env::var("KILN_PORT") {
            config.port = port
                .parse()
                .map_err(|_| format!("KILN_PORT is not a port number: {port}"))?;
        }
        if let Ok(port) = std::env::var("KILN_HTTPS_PORT") {
            config.server.https_port = port
                .parse()
                .map_err(|_| format!("KILN_HTTPS_PORT is not a port number: {port}"))?;
            config.server.https_port_asked = true;
        }
        if let Some(dir) = std::env::var_os("KILN_DATA_DIR") {
            config.data_dir = PathBuf::from(dir);
        }
        if let Some(dir) = std::env::var_os("KILN_SHARED_DIR") {
            config.shared_dir = Some(PathBuf::from(dir));
        }
        if let Some(dir) = std::env::var_os("KILN_LAKEBASE_DIR") {
            config.lakebase.dir = Some(PathBuf::from(dir));
        }
        if let Ok(port) = std::env::var("KILN_PG_PORT") {
            config.lakebase.proxy_port = port
                .parse()
                .map_err(|_| format!("KILN_PG_PORT is not a port number: {port}"))?;
        }
        if let Ok(password) = std::env::var("KILN_ADMIN_PASSWORD") {
            config.admin_password = Some(password);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_admin_password() {
        let config = Config {
            admin_password: Some("s3cret-pw".into()),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn defaults_bind_loopback() {
        let config = Config::default();
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.port, 8080);
    }

    #[test]
    fn parses_toml_and_rejects_unknown_keys() {
        let config: Config =
            toml::from_str("port = 9000\n[clusters]\nautotermination_minute_seconds = 0.5\n")
                .unwrap_or_default();
        assert_eq!(config.port, 9000);
        assert_eq!(config.clusters.autotermination_minute_seconds, 0.5);
        assert!(toml::from_str::<Config>("prot = 1").is_err());
    }
}

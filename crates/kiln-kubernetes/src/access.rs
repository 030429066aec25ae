//! How Kiln reaches its Kubernetes API: the in-cluster service account, or a
//! kubeconfig's current context (token, token file or client certificate;
//! the cluster's CA). Exec and auth-provider plugins are refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use kiln_core::{Error, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Where the API is and how to authenticate to it.
#[derive(Clone)]
pub struct Access {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// The server URL's path (usually empty), prepended to every request.
    pub base_path: String,
    pub auth: Auth,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The namespace the credentials name (service account or context).
    pub namespace: Option<String>,
}

/// A bearer token, or one read from a file at each request (projected
/// service-account tokens rotate), or none (a client certificate).
#[derive(Clone)]
pub enum Auth {
    Token(String),
    TokenFile(PathBuf),
    None,
}

impl Auth {
    pub fn header(&self) -> Result<Option<String>> {
        Ok(match self {
            Auth::Token(t) => Some(format!("Bearer {t}")),
            Auth::TokenFile(path) => {
                let token = std::fs::read_to_string(path)
                    .map_err(|e| Error::internal("read the Kubernetes token", e))?;
                Some(format!("Bearer {}", token.trim()))
            }
            Auth::None => None,
        })
    }
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}:{}{}",
            if self.https { "https" } else { "http" },
            self.host,
            self.port,
            self.base_path
        )
    }
}

impl Access {
    /// From a kubeconfig file, or the in-cluster service account when `None`.
    pub fn load(kubeconfig: Option<&Path>) -> Result<Access> {
        match kubeconfig {
            Some(path) => from_kubeconfig(path),
            None => in_cluster(),
        }
    }
}

fn bad(message: impl Into<String>) -> Error {
    Error::invalid(message)
}

fn in_cluster() -> Result<Access> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
        bad("[kubernetes]: no kubeconfig is set and Kiln is not in a pod (KUBERNETES_SERVICE_HOST is unset)")
    })?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(443);
    let dir = Path::new(SERVICE_ACCOUNT);
    let ca = std::fs::read(dir.join("ca.crt"))
        .map_err(|e| bad(format!("cannot read the service account's CA: {e}")))?;
    let namespace = std::fs::read_to_string(dir.join("namespace"))
        .ok()
        .map(|s| s.trim().to_string());
    Ok(Access {
        https: true,
        host: host.trim_matches(['[', ']']).to_string(),
        port,
        base_path: String::new(),
        auth: Auth::TokenFile(dir.join("token")),
        tls: Some(tls_config(&ca, None)?),
        namespace,
    })
}

#[derive(Deserialize)]
struct Kubeconfig {
    #[serde(rename = "current-context", default)]
    current_context: String,
    #[serde(default)]
    contexts: Vec<Named<Context>>,
    #[serde(default)]
    clusters: Vec<Named<ClusterEntry>>,
    #[serde(default)]
    users: Vec<Named<UserEntry>>,
}

#[derive(Deserialize)]
struct Named<T> {
    name: String,
    #[serde(alias = "context", alias = "cluster", alias = "user")]
    value: T,
}

#[derive(Deserialize)]
struct Context {
    cluster: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
struct ClusterEntry {
    server: String,
    #[serde(rename = "certificate-authority", default)]
    ca_file: Option<PathBuf>,
    #[serde(rename = "certificate-authority-data", default)]
    ca_data: Option<String>,
}

#[derive(Deserialize, Default)]
struct UserEntry {
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "tokenFile", default)]
    token_file: Option<PathBuf>,
    #[serde(rename = "client-certificate", default)]
    cert_file: Option<PathBuf>,
    #[serde(rename = "client-certificate-data", default)]
    cert_data: Option<String>,
    #[serde(rename = "client-key", default)]
    key_file: Option<PathBuf>,
    #[serde(rename = "client-key-data", default)]
    key_data: Option<String>,
    #[serde(default)]
    exec: Option<serde_yaml::Value>,
    #[serde(rename = "auth-provider", default)]
    auth_provider: Option<serde_yaml::Value>,
}

fn from_kubeconfig(path: &Path) -> Result<Access> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("cannot read kubeconfig {}: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    parse_kubeconfig(&text, dir)
}

fn parse_kubeconfig(text: &str, dir: &Path) -> Result<Access> {
    let config: Kubeconfig =
        serde_yaml::from_str(text).map_err(|e| bad(format!("invalid kubeconfig: {e}")))?;
    let context = config
        .contexts
        .iter()
        .find(|c| c.name == config.current_context)
        .map(|c| &c.value)
        .ok_or_else(|| bad("the kubeconfig's current-context is not among its contexts"))?;
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .map(|c| &c.value)
        .ok_or_else(|| bad(format!("kubeconfig: no cluster {:?}", context.cluster)))?;
    let user = config
        .users
        .iter()
        .find(|u| u.name == context.user)
        .map(|u| &u.value);
    let empty = UserEntry::default();
    let user = user.unwrap_or(&empty);
    if user.exec.is_some() || user.auth_provider.is_some() {
        return Err(bad(
            "kubeconfig: exec and auth-provider credentials are not supported; use a token, a token file or a client certificate",
        ));
    }
    let read =
        |data: &Option<String>, file: &Option<PathBuf>, what: &str| -> Result<Option<Vec<u8>>> {
            if let Some(data) = data {
                return base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .map(Some)
                    .map_err(|e| bad(format!("kubeconfig: {what} is not base64: {e}")));
            }
            match file {
                Some(f) => std::fs::read(dir.join(f)).map(Some).map_err(|e| {
                    bad(format!(
                        "kubeconfig: cannot read {what} {}: {e}",
                        f.display()
                    ))
                }),
                None => Ok(None),
            }
        };
    let (https, rest) = match cluster.server.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        _ => {
            return Err(bad(format!(
                "kubeconfig: server {:?} is not an http(s) URL",
                cluster.server
            )))
        }
    };
    let (authority, base_path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/').to_string()),
        None => (rest, String::new()),
    };
    let (host, port) = split_authority(authority, if https { 443 } else { 80 })?;
    let auth = match (&user.token, &user.token_file) {
        (Some(t), _) => Auth::Token(t.clone()),
        (None, Some(f)) => Auth::TokenFile(dir.join(f)),
        (None, None) => Auth::None,
    };
    let tls = if https {
        let ca = read(&cluster.ca_data, &cluster.ca_file, "certificate-authority")?
            .ok_or_else(|| bad("kubeconfig: an https server needs certificate-authority(-data)"))?;
        let cert = read(&user.cert_data, &user.cert_file, "client-certificate")?;
        let key = read(&user.key_data, &user.key_file, "client-key")?;
        let client = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err(bad("kubeconfig: a client certificate needs its key")),
        };
        Some(tls_config(&ca, client)?)
    } else {
        None
    };
    Ok(Access {
        https,
        host,
        port,
        base_path,
        auth,
        tls,
        namespace: context.namespace.clone(),
    })
}

fn split_authority(authority: &str, default_port: u16) -> Result<(String, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, tail) = rest
            .split_once(']')
            .ok_or_else(|| bad("kubeconfig: bad IPv6 server address"))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad("kubeconfig: bad server port"))?,
            None => default_port,
        };
        return Ok((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Ok((
            host.to_string(),
            port.parse()
                .map_err(|_| bad("kubeconfig: bad server port"))?,
        )),
        None => Ok((authority.to_string(), default_port)),
    }
}

fn tls_config(ca: &[u8], client: Option<(Vec<u8>, Vec<u8>)>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca) {
        let cert = cert.map_err(|e| bad(format!("the Kubernetes CA is not PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("the Kubernetes CA is not usable: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal("TLS", e))?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(&cert)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("kubeconfig: client certificate: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(&key)
                .map_err(|e| bad(format!("kubeconfig: client key: {e}")))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| bad(format!("kubeconfig: client certificate: {e}")))?
        }
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_kubeconfig_names_server_token_and_namespace() -> Result<()> {
        let text = "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u, namespace: data}\nclusters:\n- name: k\n  cluster: {server: 'http://127.0.0.1:16443/prefix/'}\nusers:\n- name: u\n  user: {token: abc}\n";
        let access = parse_kubeconfig(text, Path::new("/"))?;
        assert!(!access.https);
        assert_eq!((access.host.as_str(), access.port), ("127.0.0.1", 16443));
        assert_eq!(access.base_path, "/prefix");
        assert_eq!(access.namespace.as_deref(), Some("data"));
        assert_eq!(access.auth.header()?.as_deref(), Some("Bearer abc"));
        Ok(())
    }

    #[test]
    fn exec_plugins_and_https_without_a_ca_are_refused() {
        let exec = "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\nclusters: [{name: k, cluster: {server: 'http://h'}}]\nusers: [{name: u, user: {exec: {command: aws}}}]\n";
        assert!(parse_kubeconfig(exec, Path::new("/")).is_err());
        let no_ca = "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\nclusters: [{name: k, cluster: {server: 'https://h:6443'}}]\nusers: [{name: u, user: {token: t}}]\n";
        assert!(parse_kubeconfig(no_ca, Path::new("/")).is_err());
        assert!(split_authority("[::1]:6443", 443).is_ok_and(|(h, p)| h == "::1" && p == 6443));
    }
}

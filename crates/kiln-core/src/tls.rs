//! Kiln's local certificate authority and the TLS configurations built on it.
//!
//! One CA per data dir (`<dir>/ca.crt`, key `<dir>/ca.key` at 0600) is created
//! once; clients trust it (`kiln trust` prints how). Leaf certificates are
//! issued from it in memory at every start — only the CA is durable — so a
//! changed host name never needs a migration. The Lakebase proxy issues one
//! leaf per endpoint host name on demand ([`SniCertificates`]): clients such
//! as Node reject a two-label wildcard like `*.localhost`.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::{Error, Result};

/// ALPN for a port that serves HTTP/2 (gRPC) and HTTP/1.1.
pub const HTTP_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Where distributions keep their trusted roots.
const SYSTEM_ROOTS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// How many per-name leaf certificates [`SniCertificates`] keeps.
const SNI_CACHE: usize = 1024;

/// The local CA: its certificate and an issuer holding its key.
pub struct LocalCa {
    cert_path: PathBuf,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

fn tls_error(what: &str) -> impl FnOnce(rcgen::Error) -> Error + '_ {
    move |e| Error::internal(what, e)
}

/// The CA's parameters; the same key always yields the same subject, so an
/// issuer rebuilt from the stored key signs leaves the stored certificate verifies.
fn ca_params(key: &KeyPair) -> Result<CertificateParams> {
    use sha2::Digest as _;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(tls_error("CA"))?;
    let fingerprint = hex::encode(&sha2::Sha256::digest(key.public_key_pem().as_bytes())[..6]);
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Kiln");
    name.push(DnType::CommonName, format!("Kiln local CA {fingerprint}"));
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(current_year() - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(current_year() + 20, 1, 1);
    Ok(params)
}

fn current_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    1970 + (secs / 31_556_952) as i32
}

impl LocalCa {
    /// Loads the CA from `dir`, creating it first if it does not exist.
    pub fn open(dir: &Path) -> Result<Self> {
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        if !cert_path.is_file() || !key_path.is_file() {
            create(dir)?;
        }
        let key_pem = std::fs::read_to_string(&key_path)
            .map_err(|e| Error::internal("read the CA key", e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(tls_error("read the CA key"))?;
        let cert_der = CertificateDer::from_pem_file(&cert_path)
            .map_err(|e| Error::internal("read the CA certificate", e))?;
        let params = ca_params(&key)?;
        Ok(Self {
            cert_path,
            cert_der,
            issuer: Issuer::new(params, key),
        })
    }

    /// Where the CA certificate is (what clients are told to trust).
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Writes `<dir>/bundle.pem`: the system's trusted roots plus this CA,
    /// for clients whose setting replaces the default roots
    /// (`REQUESTS_CA_BUNDLE`, `SSL_CERT_FILE`, `GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`).
    pub fn write_bundle(&self) -> Result<PathBuf> {
        let dir = self.cert_path.parent().unwrap_or(Path::new("."));
        let mut bundle = SYSTEM_ROOTS
            .iter()
            .find_map(|path| std::fs::read(path).ok())
            .unwrap_or_default();
        if !bundle.is_empty() && !bundle.ends_with(b"\n") {
            bundle.push(b'\n');
        }
        bundle
            .extend(std::fs::read(&self.cert_path).map_err(|e| Error::internal("read the CA", e))?);
        let path = dir.join("bundle.pem");
        let tmp = dir.join("bundle.pem.tmp");
        std::fs::write(&tmp, bundle)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::internal("write the CA bundle", e))?;
        Ok(path)
    }

    /// A new leaf certificate for `names` (DNS names or IP addresses) and its
    /// key; the chain holds the leaf then the CA.
    pub fn issue(&self, names: &[String]) -> Result<CertifiedKey> {
        let key = KeyPair::generate().map_err(tls_error("generate a TLS key"))?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(tls_error("leaf"))?;
        let mut subject = DistinguishedName::new();
        subject.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_else(|| "localhost".into()),
        );
        params.distinguished_name = subject;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = rcgen::date_time_ymd(current_year() - 1, 1, 1);
        params.not_after = rcgen::date_time_ymd(current_year() + 2, 1, 1);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(tls_error("issue a certificate"))?;
        let key_der = PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| Error::internal("issue a certificate", e))?;
        certified(vec![cert.der().clone(), self.cert_der.clone()], key_der)
    }

    /// A server configuration presenting a leaf for `names`.
    pub fn server_config(&self, names: &[String], alpn: &[&[u8]]) -> Result<Arc<ServerConfig>> {
        let resolver = Arc::new(FixedCertificate(Arc::new(self.issue(names)?)));
        config_with(resolver, alpn)
    }
}

/// The names Kiln's certificates always cover, plus configured ones.
pub fn default_names(extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(String::from)
        .collect();
    for name in extra {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

/// A server configuration from a user-supplied PEM certificate chain and key.
pub fn server_config_from_files(
    cert: &Path,
    key: &Path,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>> {
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        Error::invalid(format!(
            "cannot read the TLS {what} {}: {e}",
            path.display()
        ))
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("certificate", cert, &e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad("certificate", cert, &e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, &e))?;
    let resolver = Arc::new(FixedCertificate(Arc::new(certified(chain, key_der)?)));
    config_with(resolver, alpn)
}

fn certified(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'_>) -> Result<CertifiedKey> {
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| Error::invalid(format!("unsupported TLS key: {e}")))?;
    Ok(CertifiedKey::new(chain, signing))
}

fn config_with(resolver: Arc<dyn ResolvesServerCert>, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::internal("configure TLS", e))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct FixedCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Presents, for a server name under `suffix`, a leaf issued for exactly that
/// name; for any other name (or none, as when a client connects to an IP
/// address) the default leaf.
#[derive(Debug)]
pub struct SniCertificates {
    ca: LocalCa,
    suffix: String,
    default: Arc<CertifiedKey>,
    issued: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl SniCertificates {
    pub fn new(ca: LocalCa, suffix: &str, names: &[String]) -> Result<Self> {
        let default = Arc::new(ca.issue(names)?);
        Ok(Self {
            ca,
            suffix: suffix.trim_start_matches('.').to_ascii_lowercase(),
            default,
            issued: Mutex::new(HashMap::new()),
        })
    }

    /// A server configuration using these certificates.
    pub fn into_config(self, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>> {
        config_with(Arc::new(self), alpn)
    }

    fn for_name(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        let label = name.strip_suffix(&format!(".{}", self.suffix))?;
        let valid = !label.is_empty()
            && label.len() <= 63
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return None;
        }
        let mut issued = self.issued.lock().ok()?;
        if let Some(found) = issued.get(&name) {
            return Some(found.clone());
        }
        let leaf = Arc::new(self.ca.issue(std::slice::from_ref(&name)).ok()?);
        if issued.len() >= SNI_CACHE {
            issued.clear();
        }
        issued.insert(name, leaf.clone());
        Some(leaf)
    }
}

impl ResolvesServerCert for SniCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.for_name(name))
            .or_else(|| Some(self.default.clone()))
    }
}

fn create(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::internal("create the TLS dir", e))?;
    let key = KeyPair::generate().map_err(tls_error("generate the CA key"))?;
    let cert = ca_params(&key)?
        .self_signed(&key)
        .map_err(tls_error("create the CA"))?;
    write_private(&dir.join("ca.key"), key.serialize_pem().as_bytes())?;
    let tmp = dir.join("ca.crt.tmp");
    std::fs::write(&tmp, cert.pem())
        .and_then(|_| std::fs::rename(&tmp, dir.join("ca.crt")))
        .map_err(|e| Error::internal("write the CA certificate", e))
}

fn write_private(path: &Path, content: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::internal("write the CA key", e))?;
    file.write_all(content)
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::internal("write the CA key", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn ca() -> (tempfile::TempDir, LocalCa) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let ca = LocalCa::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        (dir, ca)
    }

    #[test]
    fn the_ca_is_created_once_with_a_private_key() {
        let (dir, _) = ca();
        let first = std::fs::read(dir.path().join("ca.crt")).unwrap_or_default();
        LocalCa::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            std::fs::read(dir.path().join("ca.crt")).unwrap_or_default(),
            first
        );
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn leaves_chain_to_the_ca_and_verify() {
        use rustls::client::danger::ServerCertVerifier as _;
        let (_dir, ca) = ca();
        let leaf = ca
            .issue(&default_names(&[]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(leaf.cert.len(), 2);
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.cert_der.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap_or_else(|e| panic!("{e}"));
        let now = rustls::pki_types::UnixTime::now();
        for name in ["localhost", "127.0.0.1"] {
            let server = rustls::pki_types::ServerName::try_from(name.to_string())
                .unwrap_or_else(|e| panic!("{e}"));
            verifier
                .verify_server_cert(&leaf.cert[0], &leaf.cert[1..], &server, &[], now)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = rustls::pki_types::ServerName::try_from("example.com".to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(verifier
            .verify_server_cert(&leaf.cert[0], &leaf.cert[1..], &other, &[], now)
            .is_err());
    }

    #[test]
    fn sni_names_under_the_suffix_get_their_own_leaf() {
        let (_dir, ca) = ca();
        let sni = SniCertificates::new(ca, "localhost", &default_names(&[]))
            .unwrap_or_else(|e| panic!("{e}"));
        let a = sni.for_name("ep-a1.localhost").map(|c| c.cert[0].clone());
        assert!(a.is_some());
        assert_eq!(
            sni.for_name("EP-A1.localhost").map(|c| c.cert[0].clone()),
            a
        );
        assert!(sni.for_name("evil.example.com").is_none());
        assert!(sni.for_name("a.b.localhost").is_none());
    }
}

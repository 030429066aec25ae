//! The proxy's TLS identity: a self-signed certificate Kiln generates once
//! (for `localhost`, `*.<host suffix>` and 127.0.0.1), kept in the data dir
//! with its key at mode 0600.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use kiln_core::{Error, Result};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;

/// Loads `<dir>/server.crt` and `<dir>/server.key`, creating them first if missing.
pub fn server_config(dir: &Path, host_suffix: &str) -> Result<Arc<ServerConfig>> {
    let cert_path = dir.join("server.crt");
    let key_path = dir.join("server.key");
    if !cert_path.is_file() || !key_path.is_file() {
        generate(dir, host_suffix)?;
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| Error::internal("read the proxy certificate", e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::internal("read the proxy certificate", e))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| Error::internal("read the proxy key", e))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal("configure TLS", e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::internal("configure TLS", e))?;
    Ok(Arc::new(config))
}

fn generate(dir: &Path, host_suffix: &str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::internal("create the TLS dir", e))?;
    let names = vec![
        "localhost".to_string(),
        format!("*.{host_suffix}"),
        "127.0.0.1".to_string(),
    ];
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| Error::internal("generate the proxy certificate", e))?;
    write_private(
        &dir.join("server.key"),
        certified.signing_key.serialize_pem().as_bytes(),
    )?;
    std::fs::write(dir.join("server.crt"), certified.cert.pem())
        .map_err(|e| Error::internal("write the proxy certificate", e))
}

fn write_private(path: &Path, content: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::internal("write the proxy key", e))?;
    file.write_all(content)
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::internal("write the proxy key", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_and_reloads() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::internal("tempdir", e))?;
        server_config(dir.path(), "localhost")?;
        let first = std::fs::read(dir.path().join("server.crt")).unwrap_or_default();
        server_config(dir.path(), "localhost")?;
        assert_eq!(
            std::fs::read(dir.path().join("server.crt")).unwrap_or_default(),
            first
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("server.key"))
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o600);
        Ok(())
    }
}

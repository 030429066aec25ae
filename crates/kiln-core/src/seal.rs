//! Sealing small secrets at rest (AES-256-GCM, a random nonce per value, the
//! record's identity as associated data) with the workspace key
//! `<data_dir>/secrets.key`: secret values, Lakebase role passwords.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;

use crate::{Error, Result};

/// The sealing key.
pub struct Cipher {
    cipher: Aes256Gcm,
}

impl Cipher {
    /// Reads the key file, creating it (32 random bytes, mode 0600) if missing.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        let key = match std::fs::read(path) {
            Ok(bytes) if bytes.len() == 32 => bytes,
            Ok(_) => {
                return Err(Error::invalid(format!(
                    "{} must hold exactly 32 bytes",
                    path.display()
                )))
            }
            Err(_) => {
                let bytes: [u8; 32] = rand::random();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| Error::internal("create the secrets key", e))?;
                file.write_all(&bytes)
                    .and_then(|_| file.sync_all())
                    .map_err(|e| Error::internal("create the secrets key", e))?;
                bytes.to_vec()
            }
        };
        let cipher = Aes256Gcm::new_from_slice(&key)
            .map_err(|e| Error::internal("load the secrets key", e))?;
        Ok(Self { cipher })
    }

    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<String> {
        let nonce_bytes: [u8; 12] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce_bytes),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| Error::internal("seal a secret", "encryption failed"))?;
        let mut out = nonce_bytes.to_vec();
        out.extend(sealed);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    pub fn open(&self, aad: &str, sealed: &str) -> Result<Vec<u8>> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|e| Error::internal("open a secret", e))?;
        if bytes.len() < 12 {
            return Err(Error::internal("open a secret", "truncated"));
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| Error::internal("open a secret", "authentication failed"))
    }
}

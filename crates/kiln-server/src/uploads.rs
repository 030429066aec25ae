//! Multipart uploads of the Files API (what the SDK uses for files of 50 MB
//! and more): a session per upload, parts sent to signed URLs Kiln serves
//! itself (the SDK sends parts without credentials, as to cloud storage),
//! then joined into the target in one rename.
//!
//! Sessions are in memory: a Kiln restart ends them (the client's upload
//! fails; nothing half-written is ever visible at the target). Part files live
//! in a hidden directory beside the target, removed on completion or abort.
//! For volumes on an object store, parts go straight into the store's own
//! multipart upload (nothing is staged); an upload a restart ended is left
//! to the bucket's lifecycle rule (`AbortIncompleteMultipartUpload`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use kiln_core::{Error, ErrorCode, Result};
use sha2::Sha256;

/// Sessions older than this are forgotten (their parts removed).
const SESSION_LIFETIME: Duration = Duration::from_secs(24 * 3600);
const MAX_SESSIONS: usize = 1024;
pub const PART_PREFIX: &str = "/api/2.0/fs/upload-parts/";

#[derive(Debug, Clone)]
pub struct Session {
    pub principal_id: String,
    /// The target as the user wrote it (`/Volumes/…`).
    pub path: String,
    pub target: PathBuf,
    pub parts_dir: PathBuf,
    pub overwrite: bool,
    /// On an object store: the target's path below the root and the store's
    /// upload id (parts go straight there), and the etag of each part stored.
    pub object: Option<(String, String)>,
    pub parts: std::collections::BTreeMap<u32, String>,
    started: Instant,
}

/// Parts bound for an object store are held in memory while they are sent
/// (S3 wants a part's length first): at most this many MiB of them at once;
/// other part uploads wait (their clients are held back by TCP).
pub const PART_BUDGET_MIB: u32 = 64;

pub struct Uploads {
    key: [u8; 32],
    sessions: Mutex<HashMap<String, Session>>,
    /// MiB of parts in memory (see `PART_BUDGET_MIB`).
    pub part_budget: tokio::sync::Semaphore,
}

impl Default for Uploads {
    fn default() -> Self {
        Self {
            key: rand::random(),
            sessions: Mutex::new(HashMap::new()),
            part_budget: tokio::sync::Semaphore::new(PART_BUDGET_MIB as usize),
        }
    }
}

fn poisoned() -> Error {
    Error::internal("uploads", "poisoned lock")
}

impl Uploads {
    pub fn start(
        &self,
        principal_id: &str,
        path: &str,
        target: PathBuf,
        parent: PathBuf,
        overwrite: bool,
        object: Option<(String, String)>,
    ) -> Result<String> {
        let token = kiln_core::ids::random_hex(24);
        let parts_dir = parent.join(format!(".kiln-upload-parts-{token}"));
        if object.is_none() {
            std::fs::create_dir_all(&parts_dir)
                .map_err(|e| Error::internal("start the upload", e))?;
        }
        let mut sessions = self.sessions.lock().map_err(|_| poisoned())?;
        let expired: Vec<String> = sessions
            .iter()
            .filter(|(_, s)| s.started.elapsed() > SESSION_LIFETIME)
            .map(|(t, _)| t.clone())
            .collect();
        for token in expired {
            if let Some(s) = sessions.remove(&token) {
                let _ = std::fs::remove_dir_all(&s.parts_dir);
            }
        }
        if sessions.len() >= MAX_SESSIONS {
            let _ = std::fs::remove_dir_all(&parts_dir);
            return Err(Error::new(
                ErrorCode::RequestLimitExceeded,
                "too many uploads in progress",
            ));
        }
        sessions.insert(
            token.clone(),
            Session {
                principal_id: principal_id.into(),
                path: path.into(),
                target,
                parts_dir,
                overwrite,
                object,
                parts: Default::default(),
                started: Instant::now(),
            },
        );
        Ok(token)
    }

    /// The caller's session for `path`.
    pub fn session(&self, token: &str, principal_id: &str, path: &str) -> Result<Session> {
        self.sessions
            .lock()
            .map_err(|_| poisoned())?
            .get(token)
            .filter(|s| s.principal_id == principal_id && s.path == path)
            .cloned()
            .ok_or_else(|| Error::not_found("No such upload session for this path"))
    }

    /// A session by token alone (signed part URLs carry no credentials).
    pub fn by_token(&self, token: &str) -> Option<Session> {
        self.sessions.lock().ok()?.get(token).cloned()
    }

    /// Ends a session; returns it (an object-store upload is the caller's to
    /// complete or abort).
    pub fn finish(&self, token: &str) -> Option<Session> {
        let session = self.sessions.lock().ok()?.remove(token)?;
        let _ = std::fs::remove_dir_all(&session.parts_dir);
        Some(session)
    }

    /// Records the etag of a part stored on the object store.
    pub fn record_part(&self, token: &str, number: u32, etag: String) -> Result<()> {
        self.sessions
            .lock()
            .map_err(|_| poisoned())?
            .get_mut(token)
            .ok_or_else(|| Error::not_found("The upload session has ended"))?
            .parts
            .insert(number, etag);
        Ok(())
    }

    /// Removes the sessions past their lifetime; returns them (their
    /// object-store uploads are the caller's to abort).
    pub fn take_expired(&self) -> Vec<Session> {
        let Ok(mut sessions) = self.sessions.lock() else {
            return Vec::new();
        };
        let expired: Vec<String> = sessions
            .iter()
            .filter(|(_, s)| s.started.elapsed() > SESSION_LIFETIME)
            .map(|(t, _)| t.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|t| sessions.remove(&t))
            .inspect(|s| {
                let _ = std::fs::remove_dir_all(&s.parts_dir);
            })
            .collect()
    }

    fn mac(&self, message: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(message.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// `?expires=…&signature=…` for a part (or `abort`) of a session.
    pub fn sign(&self, token: &str, part: &str, expires: i64) -> String {
        let signature = self.mac(&format!("{token}\n{part}\n{expires}"));
        format!("expires={expires}&signature={signature}")
    }

    pub fn verify(&self, token: &str, part: &str, expires: i64, signature: &str) -> bool {
        let now = kiln_core::time::now_ms() / 1000;
        let expected = self.mac(&format!("{token}\n{part}\n{expires}"));
        expires >= now
            && expected.len() == signature.len()
            && expected
                .bytes()
                .zip(signature.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_token_part_and_expiry() {
        let uploads = Uploads::default();
        let later = kiln_core::time::now_ms() / 1000 + 60;
        let query = uploads.sign("t1", "3", later);
        let signature = query.rsplit('=').next().unwrap_or_default().to_string();
        assert!(uploads.verify("t1", "3", later, &signature));
        assert!(!uploads.verify("t1", "4", later, &signature));
        assert!(!uploads.verify("t2", "3", later, &signature));
        assert!(!uploads.verify("t1", "3", later + 1, &signature));
        let past = kiln_core::time::now_ms() / 1000 - 1;
        let old = uploads.sign("t1", "3", past);
        let old_signature = old.rsplit('=').next().unwrap_or_default().to_string();
        assert!(!uploads.verify("t1", "3", past, &old_signature));
        assert!(!Uploads::default().verify("t1", "3", later, &signature));
    }
}

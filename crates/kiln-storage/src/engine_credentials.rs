//! Engine credentials scoped to the data root (`[storage] engine_role_arn`):
//! instead of Kiln's own key, each engine, worker pod and pipeline worker gets
//! a role session whose session policy allows only the root's prefix.
//!
//! Engines and pipeline workers on this host fetch them, and fetch them again
//! before they expire, from Kiln's loopback credentials endpoint (the
//! container-credentials protocol that aws-config, and so Sail, speaks:
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` + `AWS_CONTAINER_AUTHORIZATION_TOKEN`).
//! Each process holds a [`Lease`]: a random token that names its session and
//! stops working when the process's owner drops it. Worker pods, which cannot
//! reach Kiln's loopback, get the session's current credentials at creation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kiln_core::{Error, ErrorCode, Result};
use object_store::client::HttpClient;

use crate::object::ObjectRoot;
use crate::sts::{self, AssumeRole, TempCredentials};

/// The path of the credentials endpoint on Kiln's HTTP port.
pub const ENDPOINT_PATH: &str = "/kiln/engine-credentials";

/// Credentials are fetched again once less than this is left of them.
const REFRESH_MARGIN_MS: i64 = 5 * 60 * 1000;

pub struct EngineCredentials {
    root: Arc<ObjectRoot>,
    role_arn: String,
    duration_seconds: u64,
    sts_endpoint: String,
    /// `http://127.0.0.1:<port>/kiln/engine-credentials`.
    url: String,
    client: HttpClient,
    policy: String,
    /// token → session name.
    leases: Mutex<HashMap<String, String>>,
    /// session name → its current credentials.
    sessions: tokio::sync::Mutex<HashMap<String, TempCredentials>>,
}

impl EngineCredentials {
    /// `None` when `[storage] engine_role_arn` is unset (engines then get
    /// the root's own key).
    /// `kiln_url`: Kiln's plain-HTTP API on loopback (`http://127.0.0.1:<port>`).
    pub fn open(root: &Arc<ObjectRoot>, kiln_url: &str) -> Result<Option<Arc<Self>>> {
        let config = root.config();
        let Some(role_arn) = config.engine_role_arn.clone().filter(|r| !r.is_empty()) else {
            return Ok(None);
        };
        let region = root.region();
        Ok(Some(Arc::new(Self {
            policy: sts::session_policy(root.bucket(), root.prefix()),
            sts_endpoint: sts::endpoint(
                config.sts_endpoint.as_deref(),
                config.endpoint.as_deref(),
                &region,
            ),
            client: sts::client(config.allow_http)?,
            duration_seconds: config.engine_credentials_seconds,
            role_arn,
            url: format!("{}{ENDPOINT_PATH}", kiln_url.trim_end_matches('/')),
            root: root.clone(),
            leases: Mutex::new(HashMap::new()),
            sessions: tokio::sync::Mutex::new(HashMap::new()),
        })))
    }

    /// A new lease for the process of `session` (a cluster id, `pipeline-<id>`).
    pub fn lease(self: &Arc<Self>, session: &str) -> Lease {
        let token = hex::encode(rand::random::<[u8; 32]>());
        self.lock_leases()
            .insert(token.clone(), session_name(session));
        Lease {
            credentials: self.clone(),
            token,
        }
    }

    /// The credentials a lease's token stands for; an unknown or ended
    /// lease is refused.
    pub async fn for_token(&self, token: &str) -> Result<TempCredentials> {
        let session = self
            .lock_leases()
            .iter()
            .find(|(t, _)| kiln_core::ids::same_token(t, token))
            .map(|(_, s)| s.clone())
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::PermissionDenied,
                    "Unknown or ended engine credentials lease.",
                )
            })?;
        self.for_session(&session).await
    }

    /// The current credentials of `session`, assumed again when they are
    /// near their end (one STS call at a time).
    pub async fn for_session(&self, session: &str) -> Result<TempCredentials> {
        self.lasting(session, REFRESH_MARGIN_MS).await
    }

    /// Credentials for a worker pod, which keeps what it is given: at least
    /// half their lifetime left.
    pub async fn for_pod(&self, session: &str) -> Result<TempCredentials> {
        let half = i64::try_from(self.duration_seconds).unwrap_or(i64::MAX / 2000) * 500;
        self.lasting(session, half.max(REFRESH_MARGIN_MS)).await
    }

    async fn lasting(&self, session: &str, min_left_ms: i64) -> Result<TempCredentials> {
        let session = session_name(session);
        let mut sessions = self.sessions.lock().await;
        if let Some(c) = sessions.get(&session) {
            if c.expiration_ms - kiln_core::time::now_ms() > min_left_ms {
                return Ok(c.clone());
            }
        }
        let signer = self.root.signing_credential().await?;
        let region = self.root.region();
        let fresh = AssumeRole {
            endpoint: &self.sts_endpoint,
            region: &region,
            role_arn: &self.role_arn,
            session_name: &session,
            policy: &self.policy,
            duration_seconds: self.duration_seconds,
        }
        .call(&self.client, &signer)
        .await?;
        tracing::info!(session = %session, access_key_id = %fresh.access_key_id, "engine credentials assumed");
        sessions.insert(session, fresh.clone());
        Ok(fresh)
    }

    /// The variables a process on this host needs to fetch its credentials.
    fn env(&self, token: &str) -> Vec<(String, String)> {
        let mut env = self.root.store_env();
        env.push((
            "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
            self.url.clone(),
        ));
        env.push((
            "AWS_CONTAINER_AUTHORIZATION_TOKEN".into(),
            token.to_string(),
        ));
        env
    }

    fn lock_leases(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The container-credentials answer (what aws-config and the AWS SDKs read).
pub fn container_answer(c: &TempCredentials) -> serde_json::Value {
    serde_json::json!({
        "AccessKeyId": c.access_key_id,
        "SecretAccessKey": c.secret_access_key,
        "Token": c.session_token,
        "Expiration": kiln_core::time::rfc3339(c.expiration_ms),
    })
}

/// The variables for a worker pod: the store's settings and the session's
/// current credentials (pods cannot reach Kiln's loopback endpoint).
pub fn pod_env(root: &ObjectRoot, c: &TempCredentials) -> Vec<(String, String)> {
    let mut env = root.store_env();
    env.push(("AWS_ACCESS_KEY_ID".into(), c.access_key_id.clone()));
    env.push(("AWS_SECRET_ACCESS_KEY".into(), c.secret_access_key.clone()));
    env.push(("AWS_SESSION_TOKEN".into(), c.session_token.clone()));
    env
}

/// A process's right to its session's credentials; ends when dropped.
pub struct Lease {
    credentials: Arc<EngineCredentials>,
    token: String,
}

impl Lease {
    /// What the process is started with (no key of Kiln's).
    pub fn env(&self) -> Vec<(String, String)> {
        self.credentials.env(&self.token)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut leases = self.credentials.lock_leases();
        let Some(session) = leases.remove(&self.token) else {
            return;
        };
        // The session's credentials are forgotten with its last lease (pods
        // of a cluster whose engine ended get none from here either).
        if !leases.values().any(|s| *s == session) {
            if let Ok(mut sessions) = self.credentials.sessions.try_lock() {
                sessions.remove(&session);
            }
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lease(..)")
    }
}

/// `kiln-<session>` in STS's RoleSessionName alphabet (`[\w+=,.@-]`, 2–64).
fn session_name(session: &str) -> String {
    let cleaned: String = session
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = if cleaned.starts_with("kiln-") {
        cleaned
    } else {
        format!("kiln-{cleaned}")
    };
    name.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_fit_sts() {
        assert_eq!(
            session_name("1207-185518-3hzs9mf0"),
            "kiln-1207-185518-3hzs9mf0"
        );
        assert_eq!(session_name("pipeline-a/b c"), "kiln-pipeline-a-b-c");
        assert_eq!(session_name(&"x".repeat(100)).len(), 64);
    }

    type Outcome = std::result::Result<(), Box<dyn std::error::Error>>;

    fn broker() -> std::result::Result<Arc<EngineCredentials>, Box<dyn std::error::Error>> {
        let store = Arc::new(object_store::memory::InMemory::new());
        let mut root = ObjectRoot::with_store(store, "bucket", "kiln");
        root.set_engine_role("arn:aws:iam::123456789012:role/kiln-engines");
        Ok(
            EngineCredentials::open(&Arc::new(root), "http://127.0.0.1:8080")?
                .ok_or("no broker")?,
        )
    }

    #[tokio::test]
    async fn a_lease_ends_when_dropped_and_a_foreign_token_is_refused() -> Outcome {
        let broker = broker()?;
        let lease = broker.lease("c1");
        let env: HashMap<String, String> = lease.env().into_iter().collect();
        assert_eq!(
            env["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
            format!("http://127.0.0.1:8080{ENDPOINT_PATH}")
        );
        let token = env["AWS_CONTAINER_AUTHORIZATION_TOKEN"].clone();
        assert!(!env.contains_key("AWS_SECRET_ACCESS_KEY"));
        assert!(broker.lock_leases().contains_key(&token));
        let refused = broker.for_token("not-a-lease").await.err().map(|e| e.code);
        assert_eq!(refused, Some(ErrorCode::PermissionDenied));
        drop(lease);
        assert!(broker.lock_leases().is_empty());
        let ended = broker.for_token(&token).await.err().map(|e| e.code);
        assert_eq!(ended, Some(ErrorCode::PermissionDenied));
        Ok(())
    }

    #[tokio::test]
    async fn fresh_credentials_are_kept_and_old_ones_assumed_again() -> Outcome {
        let broker = broker()?;
        let cached = |ms: i64| TempCredentials {
            access_key_id: "ASIAOLD".into(),
            secret_access_key: "s".into(),
            session_token: "t".into(),
            expiration_ms: kiln_core::time::now_ms() + ms,
        };
        broker
            .sessions
            .lock()
            .await
            .insert("kiln-c1".into(), cached(30 * 60 * 1000));
        assert_eq!(broker.for_session("c1").await?.access_key_id, "ASIAOLD");
        // A pod keeps what it gets: 30 minutes left of an hour is not enough for one.
        assert!(broker.for_pod("c1").await.is_err());
        // The session is forgotten with its last lease.
        let (a, b) = (broker.lease("c1"), broker.lease("c1"));
        drop(a);
        assert!(broker.sessions.lock().await.contains_key("kiln-c1"));
        drop(b);
        assert!(!broker.sessions.lock().await.contains_key("kiln-c1"));
        broker
            .sessions
            .lock()
            .await
            .insert("kiln-c1".into(), cached(30 * 60 * 1000));
        // Near its end: assumed again (here STS is unreachable, so the call fails).
        broker
            .sessions
            .lock()
            .await
            .insert("kiln-c1".into(), cached(60 * 1000));
        assert!(broker.for_session("c1").await.is_err());
        Ok(())
    }
}

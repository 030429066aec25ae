//! OAuth U2M (user to machine): the authorization-code grant with PKCE that
//! `databricks auth login` and the SDK's `external-browser` flow drive, and
//! refresh tokens.
//!
//! A client (public: no secret) sends the user to `/oidc/v1/authorize`; once
//! the user signs in, Kiln redirects to the client's loopback `redirect_uri`
//! with a one-time code bound to the client, the redirect URI and the PKCE
//! challenge. The code (within five minutes, once) and the verifier buy a
//! one-hour access token and a refresh token. Refresh tokens are durable
//! (hashed in the store), rotate on every use and end with their principal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use kiln_core::ids::random_hex;
use kiln_core::time::now_ms;
use kiln_core::{Error, ErrorCode, Result};
use kiln_store::{Store, TokenKind, Write};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Identity, OAUTH_TOKEN_SECONDS};

const REFRESH_KIND: &str = "oauth_refresh_token";
const CODE_LIFETIME: Duration = Duration::from_secs(300);
/// Refresh tokens live 90 days unless used (each use rotates them).
const REFRESH_LIFETIME_MS: i64 = 90 * 24 * 3600 * 1000;
/// Pending codes kept at most (oldest dropped first beyond this).
const MAX_CODES: usize = 10_000;

/// A validated `/oidc/v1/authorize` request.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct AuthorizeRequest {
    pub response_type: String,
    pub client_id: String,
    pub redirect_uri: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub state: String,
    pub code_challenge: String,
    pub code_challenge_method: String,
}

impl AuthorizeRequest {
    /// Checks what must hold before a sign-in page is shown: a code flow
    /// with an S256 PKCE challenge and a loopback `http` redirect (RFC 8252:
    /// native clients listen on localhost, any port).
    pub fn validate(&self) -> Result<()> {
        if self.response_type != "code" {
            return Err(Error::invalid("response_type must be code"));
        }
        if self.client_id.trim().is_empty() || self.client_id.len() > 256 {
            return Err(Error::invalid("client_id is required"));
        }
        if self.code_challenge_method != "S256" || self.code_challenge.len() < 43 {
            return Err(Error::invalid(
                "a PKCE code_challenge with code_challenge_method S256 is required",
            ));
        }
        if !is_loopback_redirect(&self.redirect_uri) {
            return Err(Error::invalid(
                "redirect_uri must be an http URL on localhost, 127.0.0.1 or [::1]",
            ));
        }
        Ok(())
    }
}

fn is_loopback_redirect(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return false;
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            if !port.chars().all(|c| c.is_ascii_digit()) || port.is_empty() {
                return false;
            }
            host
        }
        _ => authority,
    };
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

#[derive(Debug, Clone)]
struct PendingCode {
    principal_id: String,
    request: AuthorizeRequest,
    issued: Instant,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RefreshRecord {
    hash: String,
    principal_id: String,
    client_id: String,
    scope: String,
    expire_ms: i64,
}

/// What a successful grant returns.
#[derive(Debug)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub scope: String,
}

pub struct U2m {
    store: Arc<dyn Store>,
    codes: Mutex<HashMap<String, PendingCode>>,
    refresh: Mutex<HashMap<String, RefreshRecord>>,
}

fn hash(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// The S256 PKCE challenge of a verifier (RFC 7636).
fn challenge_of(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn invalid_grant(message: &str) -> Error {
    Error::new(ErrorCode::InvalidParameterValue, message)
}

impl U2m {
    pub fn open(store: Arc<dyn Store>) -> Result<Self> {
        let mut refresh = HashMap::new();
        for value in store.objects(REFRESH_KIND)? {
            let record: RefreshRecord = serde_json::from_value(value)
                .map_err(|e| Error::internal("read refresh tokens", e))?;
            refresh.insert(record.hash.clone(), record);
        }
        Ok(Self {
            store,
            codes: Mutex::new(HashMap::new()),
            refresh: Mutex::new(refresh),
        })
    }

    /// A one-time code for a signed-in principal.
    pub fn grant(&self, principal_id: &str, request: AuthorizeRequest) -> Result<String> {
        let code = random_hex(32);
        let mut codes = self
            .codes
            .lock()
            .map_err(|_| Error::internal("oauth codes", "poisoned lock"))?;
        codes.retain(|_, c| c.issued.elapsed() < CODE_LIFETIME);
        if codes.len() >= MAX_CODES {
            return Err(Error::new(
                ErrorCode::RequestLimitExceeded,
                "too many sign-ins in progress",
            ));
        }
        codes.insert(
            hash(&code),
            PendingCode {
                principal_id: principal_id.into(),
                request,
                issued: Instant::now(),
            },
        );
        Ok(code)
    }

    /// The authorization-code grant: the code is used up whatever the outcome.
    pub fn exchange(
        &self,
        identity: &Identity,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
        client_id: &str,
    ) -> Result<Tokens> {
        let pending = self
            .codes
            .lock()
            .map_err(|_| Error::internal("oauth codes", "poisoned lock"))?
            .remove(&hash(code))
            .filter(|c| c.issued.elapsed() < CODE_LIFETIME)
            .ok_or_else(|| invalid_grant("the authorization code is invalid, used or expired"))?;
        let request = &pending.request;
        if request.client_id != client_id || request.redirect_uri != redirect_uri {
            return Err(invalid_grant(
                "client_id and redirect_uri must match the authorization request",
            ));
        }
        if challenge_of(verifier) != request.code_challenge {
            return Err(invalid_grant(
                "the code_verifier does not match the code_challenge",
            ));
        }
        self.issue(identity, &pending.principal_id, client_id, &request.scope)
    }

    /// The refresh-token grant: the old refresh token is spent, a new one issued.
    pub fn refresh(&self, identity: &Identity, token: &str, client_id: &str) -> Result<Tokens> {
        let key = hash(token);
        let record = self
            .refresh
            .lock()
            .map_err(|_| Error::internal("refresh tokens", "poisoned lock"))?
            .get(&key)
            .cloned()
            .filter(|r| r.expire_ms > now_ms() && r.client_id == client_id)
            .ok_or_else(|| invalid_grant("the refresh token is invalid or expired"))?;
        self.forget(&key)?;
        self.issue(identity, &record.principal_id, client_id, &record.scope)
    }

    fn forget(&self, key: &str) -> Result<()> {
        self.store.commit(vec![Write::DeleteObject {
            kind: REFRESH_KIND,
            key: key.into(),
        }])?;
        self.refresh
            .lock()
            .map_err(|_| Error::internal("refresh tokens", "poisoned lock"))?
            .remove(key);
        Ok(())
    }

    fn issue(
        &self,
        identity: &Identity,
        principal_id: &str,
        client_id: &str,
        scope: &str,
    ) -> Result<Tokens> {
        let principal = identity.principal(principal_id)?;
        if !principal.active {
            return Err(invalid_grant("the user is not active"));
        }
        let (access_token, _) = identity.issue_token(
            principal_id,
            TokenKind::OAuth,
            Some(OAUTH_TOKEN_SECONDS),
            None,
        )?;
        let refresh_token = format!("doau{}", random_hex(32));
        let record = RefreshRecord {
            hash: hash(&refresh_token),
            principal_id: principal_id.into(),
            client_id: client_id.into(),
            scope: scope.into(),
            expire_ms: now_ms() + REFRESH_LIFETIME_MS,
        };
        let value =
            serde_json::to_value(&record).map_err(|e| Error::internal("refresh token", e))?;
        self.store.commit(vec![Write::PutObject {
            kind: REFRESH_KIND,
            key: record.hash.clone(),
            record: value,
        }])?;
        self.refresh
            .lock()
            .map_err(|_| Error::internal("refresh tokens", "poisoned lock"))?
            .insert(record.hash.clone(), record);
        Ok(Tokens {
            access_token,
            refresh_token,
            expires_in: OAUTH_TOKEN_SECONDS,
            scope: if scope.is_empty() {
                "all-apis".into()
            } else {
                scope.into()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> AuthorizeRequest {
        AuthorizeRequest {
            response_type: "code".into(),
            client_id: "databricks-cli".into(),
            redirect_uri: "http://localhost:8020".into(),
            scope: "all-apis offline_access".into(),
            state: "s".into(),
            code_challenge: "ipwhGXrAJh4C8hC0mgJ7HwDuzYH5NepCfbCJEnZNk0k".into(),
            code_challenge_method: "S256".into(),
        }
    }

    #[test]
    fn only_loopback_http_redirects_are_accepted() {
        for ok in [
            "http://localhost:8020",
            "http://127.0.0.1:53682/callback",
            "http://[::1]:8020/",
            "http://localhost/",
        ] {
            assert!(is_loopback_redirect(ok), "{ok}");
        }
        for bad in [
            "https://localhost:8020",
            "http://evil.com:8020",
            "http://localhost.evil.com:8020",
            "http://localhost@evil.com",
            "http://localhost:80x",
            "javascript:alert(1)",
        ] {
            assert!(!is_loopback_redirect(bad), "{bad}");
        }
    }

    #[test]
    fn the_challenge_is_the_s256_of_the_verifier() {
        // computed independently (Python hashlib + base64.urlsafe_b64encode)
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mJ0JJpR2wGkD1RhNmDGAMW6TJo4fCE"),
            request().code_challenge
        );
    }

    #[test]
    fn requests_need_a_code_flow_with_s256() {
        assert!(request().validate().is_ok());
        let mut plain = request();
        plain.code_challenge_method = "plain".into();
        assert!(plain.validate().is_err());
        let mut token = request();
        token.response_type = "token".into();
        assert!(token.validate().is_err());
    }
}

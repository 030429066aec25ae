//! Browser sessions of the web UI: a random id in an `HttpOnly`,
//! `SameSite=Strict` cookie, a CSRF token the page sends back on every
//! state-changing request, and the caller the session acts as — checked again
//! on each request (a revoked token or a deactivated user ends the session).
//! Sessions live in memory: a restart signs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;

use kiln_core::{Error, ErrorCode, Result};

use crate::{sha256_hex, Caller, Identity};

/// The cookie's name.
pub const COOKIE: &str = "kiln_session";
/// The header a cookie-authenticated state-changing request must carry.
pub const CSRF_HEADER: &str = "x-kiln-csrf";
/// A session ends this long after sign-in.
const LIFETIME_MS: i64 = 12 * 3600 * 1000;
/// At most this many live sessions (the oldest go first).
const MAX_SESSIONS: usize = 10_000;

struct Session {
    caller: Caller,
    /// The personal access token signed in with (kept in memory only, to
    /// notice its revocation), or none for a password sign-in.
    token: Option<String>,
    csrf: String,
    expires_ms: i64,
}

/// What a page learns about its session.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub caller: Caller,
    pub csrf: String,
}

#[derive(Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Starts a session for `caller`; returns the cookie value and CSRF token.
    pub fn create(&self, caller: Caller, token: Option<String>) -> Result<(String, String)> {
        let id = random_token();
        let csrf = random_token();
        let now = kiln_core::time::now_ms();
        let mut map = self.lock()?;
        map.retain(|_, s| s.expires_ms > now);
        if map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.expires_ms)
                .map(|(k, _)| k.clone());
            if let Some(key) = oldest {
                map.remove(&key);
            }
        }
        map.insert(
            sha256_hex(&id),
            Session {
                caller,
                token,
                csrf: csrf.clone(),
                expires_ms: now + LIFETIME_MS,
            },
        );
        Ok((id, csrf))
    }

    /// The live session behind a cookie value, its caller re-checked.
    pub fn resolve(&self, identity: &Identity, id: &str) -> Result<SessionInfo> {
        let key = sha256_hex(id);
        let (caller, token, csrf) = {
            let map = self.lock()?;
            let session = map
                .get(&key)
                .filter(|s| s.expires_ms > kiln_core::time::now_ms())
                .ok_or_else(ended)?;
            (
                session.caller.clone(),
                session.token.clone(),
                session.csrf.clone(),
            )
        };
        let checked = match token {
            Some(token) => identity.authenticate_token(&token),
            None => identity.refresh(&caller),
        };
        match checked {
            Ok(caller) => Ok(SessionInfo { caller, csrf }),
            Err(_) => {
                self.lock()?.remove(&key);
                Err(ended())
            }
        }
    }

    /// Ends a session (sign out).
    pub fn remove(&self, id: &str) -> Result<()> {
        self.lock()?.remove(&sha256_hex(id));
        Ok(())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Session>>> {
        self.by_hash
            .lock()
            .map_err(|_| Error::new(ErrorCode::InternalError, "session table poisoned"))
    }
}

fn ended() -> Error {
    Error::unauthenticated("Your session has ended: sign in again.")
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// The session cookie's value among a request's `Cookie` header values, if any.
pub fn cookie_value<'a>(cookie_headers: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    cookie_headers
        .into_iter()
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Constant-time comparison of the CSRF token a request carries.
pub fn csrf_matches(expected: &str, given: Option<&str>) -> bool {
    let Some(given) = given else {
        return false;
    };
    if expected.len() != given.len() {
        return false;
    }
    expected
        .bytes()
        .zip(given.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_session_cookie_among_others() {
        assert_eq!(
            cookie_value(["x=0", "a=1; kiln_session=abc; b=2"]),
            Some("abc")
        );
        assert_eq!(cookie_value(["kiln_sessionx=1"]), None);
    }

    #[test]
    fn csrf_must_match_exactly() {
        assert!(csrf_matches("abcd", Some("abcd")));
        assert!(!csrf_matches("abcd", Some("abce")));
        assert!(!csrf_matches("abcd", Some("abc")));
        assert!(!csrf_matches("abcd", None));
    }
}

//! Database credentials: short-lived tokens a Postgres client uses as its
//! password. Only their SHA-256 is kept (durably, so a restart keeps them
//! valid); a token names its identity and the endpoint it was issued for.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kiln_core::{time::now_ms, Error, Result};
use kiln_store::{Store, Write};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How every Lakebase credential starts (a native password never does).
pub const TOKEN_PREFIX: &str = "kiln-pg-";

const KIND: &str = "pg_credential";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credential {
    /// The Databricks identity (user name or SP application id): the Postgres role.
    pub identity: String,
    /// `projects/{p}/branches/{b}/endpoints/{e}`.
    pub endpoint: String,
    pub expire_ms: i64,
}

pub struct Credentials {
    store: Arc<dyn Store>,
    by_hash: RwLock<HashMap<String, Credential>>,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Credentials {
    pub fn open(store: Arc<dyn Store>) -> Result<Self> {
        let now = now_ms();
        let mut by_hash = HashMap::new();
        for value in store.objects(KIND)? {
            let (h, c): (String, Credential) = serde_json::from_value(value)
                .map_err(|e| Error::internal("read credentials", e))?;
            if c.expire_ms > now {
                by_hash.insert(h, c);
            }
        }
        Ok(Self {
            store,
            by_hash: RwLock::new(by_hash),
        })
    }

    /// Issues a token valid until `expire_ms`; returns the token (shown once).
    pub fn issue(&self, identity: &str, endpoint: &str, expire_ms: i64) -> Result<String> {
        let token = format!("{TOKEN_PREFIX}{}", kiln_core::ids::random_hex(32));
        let h = hash(&token);
        let credential = Credential {
            identity: identity.into(),
            endpoint: endpoint.into(),
            expire_ms,
        };
        let record = serde_json::to_value((&h, &credential))
            .map_err(|e| Error::internal("write a credential", e))?;
        let mut writes = vec![Write::PutObject {
            kind: KIND,
            key: h.clone(),
            record,
        }];
        writes.extend(
            self.expired()
                .into_iter()
                .map(|k| Write::DeleteObject { kind: KIND, key: k }),
        );
        self.store.commit(writes)?;
        if let Ok(mut map) = self.by_hash.write() {
            let now = now_ms();
            map.retain(|_, c| c.expire_ms > now);
            map.insert(h, credential);
        }
        Ok(token)
    }

    fn expired(&self) -> Vec<String> {
        let now = now_ms();
        self.by_hash
            .read()
            .map(|m| {
                m.iter()
                    .filter(|(_, c)| c.expire_ms <= now)
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The credential a token stands for, if it is known and unexpired.
    pub fn check(&self, token: &str) -> std::result::Result<Credential, &'static str> {
        let found = self
            .by_hash
            .read()
            .ok()
            .and_then(|m| m.get(&hash(token)).cloned());
        match found {
            None => {
                Err("password authentication failed: the token is not a valid Lakebase credential")
            }
            Some(c) if c.expire_ms <= now_ms() => {
                Err("password authentication failed: the Lakebase credential has expired")
            }
            Some(c) => Ok(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_store::SqliteStore;

    #[test]
    fn tokens_are_checked_expire_and_survive_reopen() -> Result<()> {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open_in_memory()?);
        let creds = Credentials::open(store.clone())?;
        let token = creds.issue(
            "ann@x.com",
            "projects/p/branches/b/endpoints/e",
            now_ms() + 60_000,
        )?;
        assert_eq!(
            creds.check(&token).map(|c| c.identity).ok(),
            Some("ann@x.com".into())
        );
        assert!(creds.check("kiln-pg-forged").is_err());
        let old = creds.issue("ann@x.com", "e", now_ms() - 1)?;
        assert!(creds.check(&old).is_err());
        let reopened = Credentials::open(store)?;
        assert!(reopened.check(&token).is_ok());
        Ok(())
    }
}

//! Secret scopes, secrets and their ACLs (Secrets API 2.0).
//!
//! Invariants: a secret value exists in plaintext only in memory while a
//! request handles it: at rest it is AES-256-GCM sealed with a 32-byte key kept
//! in `<data_dir>/secrets.key` (mode 0600), the scope and key bound in as
//! associated data. Every operation checks the caller's ACL (admins may do
//! everything); nothing here logs a value.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use kiln_core::{time::now_ms, Error, ErrorCode, Result};
use kiln_store::{Store, Write};
use serde::{Deserialize, Serialize};

use crate::Principal;

const MAX_VALUE_BYTES: usize = 128 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AclPermission {
    Read,
    Write,
    Manage,
}

impl AclPermission {
    pub fn parse(value: &str) -> Result<Self> {
        match value.to_ascii_uppercase().as_str() {
            "READ" => Ok(Self::Read),
            "WRITE" => Ok(Self::Write),
            "MANAGE" => Ok(Self::Manage),
            _ => Err(Error::invalid(format!(
                "Invalid permission {value}: use READ, WRITE or MANAGE"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "READ",
            Self::Write => "WRITE",
            Self::Manage => "MANAGE",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScopeRecord {
    pub name: String,
    pub backend_type: String,
    pub created_by: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SecretRecord {
    scope: String,
    key: String,
    /// base64(nonce ‖ AES-256-GCM ciphertext).
    sealed: String,
    last_updated_timestamp: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AclRecord {
    pub scope: String,
    pub principal: String,
    pub permission: AclPermission,
}

/// Metadata of one secret (never its value).
#[derive(Debug, Clone)]
pub struct SecretMetadata {
    pub key: String,
    pub last_updated_timestamp: i64,
}

pub use kiln_core::seal::Cipher as SecretCipher;

#[derive(Default)]
struct State {
    scopes: BTreeMap<String, ScopeRecord>,
    secrets: BTreeMap<(String, String), SecretRecord>,
    acls: BTreeMap<(String, String), AclRecord>,
}

pub struct Secrets {
    store: Arc<dyn Store>,
    cipher: SecretCipher,
    state: RwLock<State>,
    writer: Mutex<()>,
}

fn valid_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "Invalid {kind} name '{name}': use up to 128 letters, digits, dashes, underscores, periods and @"
        )))
    }
}

fn aad(scope: &str, key: &str) -> String {
    format!("{scope}/{key}")
}

fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::internal("encode a secrets record", e))
}

impl Secrets {
    pub fn open(store: Arc<dyn Store>, cipher: SecretCipher) -> Result<Self> {
        let mut state = State::default();
        let decode = |v| serde_json::from_value(v).map_err(|e| Error::internal("read secrets", e));
        for v in store.objects("secret_scope")? {
            let s: ScopeRecord = decode(v)?;
            state.scopes.insert(s.name.clone(), s);
        }
        for v in store.objects("secret")? {
            let s: SecretRecord =
                serde_json::from_value(v).map_err(|e| Error::internal("read secrets", e))?;
            state.secrets.insert((s.scope.clone(), s.key.clone()), s);
        }
        for v in store.objects("secret_acl")? {
            let a: AclRecord =
                serde_json::from_value(v).map_err(|e| Error::internal("read secrets", e))?;
            state.acls.insert((a.scope.clone(), a.principal.clone()), a);
        }
        Ok(Self {
            store,
            cipher,
            state: RwLock::new(state),
            writer: Mutex::new(()),
        })
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, State>> {
        self.state
            .read()
            .map_err(|_| Error::internal("read secrets", "poisoned lock"))
    }

    fn commit(&self, writes: Vec<Write>, change: impl FnOnce(&mut State)) -> Result<()> {
        self.store.commit(writes)?;
        let mut state = self
            .state
            .write()
            .map_err(|_| Error::internal("update secrets", "poisoned lock"))?;
        change(&mut state);
        Ok(())
    }

    fn guard(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        self.writer
            .lock()
            .map_err(|_| Error::internal("update secrets", "poisoned lock"))
    }

    /// The caller's permission on a scope (admins manage every scope).
    fn permission(&self, caller: &Principal, scope: &str) -> Result<Option<AclPermission>> {
        let state = self.read()?;
        if !state.scopes.contains_key(scope) {
            return Err(Error::not_found(format!("Scope {scope} does not exist!")));
        }
        if caller.admin {
            return Ok(Some(AclPermission::Manage));
        }
        Ok(caller
            .names()
            .filter_map(|n| {
                state
                    .acls
                    .get(&(scope.to_string(), n.to_string()))
                    .map(|a| a.permission)
            })
            .max())
    }

    fn require(&self, caller: &Principal, scope: &str, needed: AclPermission) -> Result<()> {
        match self.permission(caller, scope)? {
            Some(p) if p >= needed => Ok(()),
            _ => Err(Error::permission_denied(format!(
                "User {} does not have {} permission on scope {scope}",
                caller.name,
                needed.as_str()
            ))),
        }
    }

    pub fn create_scope(
        &self,
        caller: &Principal,
        scope: &str,
        initial_manage_principal: Option<&str>,
    ) -> Result<()> {
        valid_name("scope", scope)?;
        let manager = match initial_manage_principal {
            None => caller.name.clone(),
            Some("users") => "users".to_string(),
            Some(other) => {
                return Err(Error::invalid(format!(
                    "initial_manage_principal must be 'users' or omitted, got '{other}'"
                )))
            }
        };
        let _guard = self.guard()?;
        if self.read()?.scopes.contains_key(scope) {
            return Err(Error::already_exists(format!(
                "Scope {scope} already exists!"
            )));
        }
        let record = ScopeRecord {
            name: scope.into(),
            backend_type: "DATABRICKS".into(),
            created_by: caller.name.clone(),
            created_ms: now_ms(),
        };
        let acl = AclRecord {
            scope: scope.into(),
            principal: manager.clone(),
            permission: AclPermission::Manage,
        };
        let writes = vec![
            Write::PutObject {
                kind: "secret_scope",
                key: scope.into(),
                record: to_json(&record)?,
            },
            Write::PutObject {
                kind: "secret_acl",
                key: format!("{scope}/{manager}"),
                record: to_json(&acl)?,
            },
        ];
        self.commit(writes, |s| {
            s.scopes.insert(scope.into(), record);
            s.acls.insert((scope.into(), manager), acl);
        })
    }

    pub fn delete_scope(&self, caller: &Principal, scope: &str) -> Result<()> {
        self.require(caller, scope, AclPermission::Manage)?;
        let _guard = self.guard()?;
        let (keys, principals): (Vec<String>, Vec<String>) = {
            let state = self.read()?;
            (
                state
                    .secrets
                    .keys()
                    .filter(|(s, _)| s == scope)
                    .map(|(_, k)| k.clone())
                    .collect(),
                state
                    .acls
                    .keys()
                    .filter(|(s, _)| s == scope)
                    .map(|(_, p)| p.clone())
                    .collect(),
            )
        };
        let mut writes = vec![Write::DeleteObject {
            kind: "secret_scope",
            key: scope.into(),
        }];
        writes.extend(keys.iter().map(|k| Write::DeleteObject {
            kind: "secret",
            key: aad(scope, k),
        }));
        writes.extend(principals.iter().map(|p| Write::DeleteObject {
            kind: "secret_acl",
            key: format!("{scope}/{p}"),
        }));
        self.commit(writes, |s| {
            s.scopes.remove(scope);
            s.secrets.retain(|(sc, _), _| sc != scope);
            s.acls.retain(|(sc, _), _| sc != scope);
        })
    }

    pub fn scopes(&self) -> Result<Vec<ScopeRecord>> {
        Ok(self.read()?.scopes.values().cloned().collect())
    }

    pub fn put_secret(
        &self,
        caller: &Principal,
        scope: &str,
        key: &str,
        value: &[u8],
    ) -> Result<()> {
        valid_name("key", key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(Error::invalid(format!(
                "A secret value may be at most {MAX_VALUE_BYTES} bytes"
            )));
        }
        self.require(caller, scope, AclPermission::Write)?;
        let record = SecretRecord {
            scope: scope.into(),
            key: key.into(),
            sealed: self.cipher.seal(&aad(scope, key), value)?,
            last_updated_timestamp: now_ms(),
        };
        let _guard = self.guard()?;
        let write = Write::PutObject {
            kind: "secret",
            key: aad(scope, key),
            record: to_json(&record)?,
        };
        self.commit(vec![write], |s| {
            s.secrets.insert((scope.into(), key.into()), record);
        })
    }

    pub fn delete_secret(&self, caller: &Principal, scope: &str, key: &str) -> Result<()> {
        self.require(caller, scope, AclPermission::Write)?;
        let _guard = self.guard()?;
        if !self
            .read()?
            .secrets
            .contains_key(&(scope.to_string(), key.to_string()))
        {
            return Err(Error::not_found(format!(
                "Secret {key} does not exist in scope {scope}"
            )));
        }
        self.commit(
            vec![Write::DeleteObject {
                kind: "secret",
                key: aad(scope, key),
            }],
            |s| {
                s.secrets.remove(&(scope.to_string(), key.to_string()));
            },
        )
    }

    pub fn list_secrets(&self, caller: &Principal, scope: &str) -> Result<Vec<SecretMetadata>> {
        self.require(caller, scope, AclPermission::Read)?;
        Ok(self
            .read()?
            .secrets
            .values()
            .filter(|s| s.scope == scope)
            .map(|s| SecretMetadata {
                key: s.key.clone(),
                last_updated_timestamp: s.last_updated_timestamp,
            })
            .collect())
    }

    /// The plaintext value, for a caller with READ.
    pub fn get_secret(&self, caller: &Principal, scope: &str, key: &str) -> Result<Vec<u8>> {
        self.require(caller, scope, AclPermission::Read)?;
        let sealed = self
            .read()?
            .secrets
            .get(&(scope.to_string(), key.to_string()))
            .map(|s| s.sealed.clone())
            .ok_or_else(|| {
                Error::not_found(format!("Secret {key} does not exist in scope {scope}"))
            })?;
        self.cipher.open(&aad(scope, key), &sealed)
    }

    pub fn put_acl(
        &self,
        caller: &Principal,
        scope: &str,
        principal: &str,
        permission: AclPermission,
    ) -> Result<()> {
        self.require(caller, scope, AclPermission::Manage)?;
        if principal.trim().is_empty() {
            return Err(Error::invalid("principal must not be empty"));
        }
        let acl = AclRecord {
            scope: scope.into(),
            principal: principal.into(),
            permission,
        };
        let _guard = self.guard()?;
        let write = Write::PutObject {
            kind: "secret_acl",
            key: format!("{scope}/{principal}"),
            record: to_json(&acl)?,
        };
        self.commit(vec![write], |s| {
            s.acls.insert((scope.into(), principal.into()), acl);
        })
    }

    pub fn delete_acl(&self, caller: &Principal, scope: &str, principal: &str) -> Result<()> {
        self.require(caller, scope, AclPermission::Manage)?;
        let _guard = self.guard()?;
        if !self
            .read()?
            .acls
            .contains_key(&(scope.to_string(), principal.to_string()))
        {
            return Err(Error::not_found(format!(
                "No ACL for principal {principal} in scope {scope}"
            )));
        }
        self.commit(
            vec![Write::DeleteObject {
                kind: "secret_acl",
                key: format!("{scope}/{principal}"),
            }],
            |s| {
                s.acls.remove(&(scope.to_string(), principal.to_string()));
            },
        )
    }

    pub fn acls(&self, caller: &Principal, scope: &str) -> Result<Vec<AclRecord>> {
        self.require(caller, scope, AclPermission::Manage)?;
        Ok(self
            .read()?
            .acls
            .values()
            .filter(|a| a.scope == scope)
            .cloned()
            .collect())
    }

    pub fn acl(&self, caller: &Principal, scope: &str, principal: &str) -> Result<AclRecord> {
        self.require(caller, scope, AclPermission::Manage)?;
        self.read()?
            .acls
            .get(&(scope.to_string(), principal.to_string()))
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::ResourceDoesNotExist,
                    format!("No ACL for principal {principal} in scope {scope}"),
                )
            })
    }
}

#[cfg(test)]
mod tests;

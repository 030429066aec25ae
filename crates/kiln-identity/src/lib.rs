//! Identities and credentials: users, service principals, personal access
//! tokens, OAuth client secrets and access tokens.
//!
//! Invariants: token values and secrets are never stored, only their SHA-256;
//! passwords are stored as Argon2 hashes; every change is durable before the
//! in-memory index used for authentication changes.

pub mod oauth_u2m;
pub mod scim;
pub mod sessions;
mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use kiln_core::{ids, time::now_ms, Error, Result};
use kiln_store::{
    PrincipalKind, PrincipalRecord, SpSecretRecord, Store, TokenKind, TokenRecord, Write,
};
use sha2::{Digest, Sha256};

/// OAuth access tokens live one hour, as on Databricks.
pub const OAUTH_TOKEN_SECONDS: i64 = 3600;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal_id: String,
    pub user_name: String,
    pub admin: bool,
    /// The credential used (token id, or `basic:<principal>`), the rate-limit key.
    pub credential: String,
    /// What the credential may reach (see `middleware::check_scope`).
    pub scope: Scope,
}

/// Where a credential is valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Scope {
    /// Every route the principal may call.
    #[default]
    Full,
    /// Only the Unity Catalog routes (the credential engines hold).
    Catalog,
    /// While this execution context lives (a kernel's credential).
    Context(String),
}

#[derive(Default)]
struct Index {
    principals: HashMap<String, PrincipalRecord>,
    tokens: HashMap<String, TokenRecord>,
    secrets: HashMap<String, SpSecretRecord>,
    /// SHA-256 of `user:password` pairs that verified, so Basic auth does not
    /// pay Argon2 on every request.
    verified_passwords: HashMap<String, String>,
}

pub struct Identity {
    store: Arc<dyn Store>,
    index: RwLock<Index>,
    /// SHA-256 of the credential Kiln's own engines use (new on every start,
    /// never stored, handed to engines in their environment).
    system_token_hash: String,
    system_token: String,
    /// Credentials handed to execution contexts: in memory only (contexts do
    /// not outlive Kiln), keyed by SHA-256, with an expiry; valid only while
    /// their context lives (scope `Context`, bound once the context exists).
    ephemeral: std::sync::Mutex<HashMap<String, (Caller, i64)>>,
}

/// How long a context credential lives.
pub const CONTEXT_CREDENTIAL_MS: i64 = 12 * 3600 * 1000;

/// The user name Kiln's engines act as.
pub const SYSTEM_USER: &str = "kiln-system";

pub fn sha256_hex(value: &str) -> String {
    // Every request hashes its token: hex's slice encoder (a table), not
    // `hex::encode`'s char iterator.
    let digest = Sha256::digest(value.as_bytes());
    let mut out = [0u8; 64];
    match hex::encode_to_slice(digest, &mut out) {
        Ok(()) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => hex::encode(digest),
    }
}

fn hash_password(password: &str) -> Result<String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| Error::internal("hash a password", e))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal("hash a password", e))
}

fn unauthenticated() -> Error {
    Error::unauthenticated("Invalid access token.")
}

impl Identity {
    pub fn open(store: Arc<dyn Store>) -> Result<Self> {
        let mut index = Index::default();
        for p in store.principals()? {
            index.principals.insert(p.id.clone(), p);
        }
        let now = now_ms();
        let mut expired = Vec::new();
        for t in store.tokens()? {
            if t.kind == TokenKind::OAuth && t.expiry_ms >= 0 && t.expiry_ms < now {
                expired.push(Write::DeleteToken(t.token_id.clone()));
            } else {
                index.tokens.insert(t.token_hash.clone(), t);
            }
        }
        store.commit(expired)?;
        for s in store.sp_secrets()? {
            index.secrets.insert(s.secret_hash.clone(), s);
        }
        let system_token = format!("dkys{}", ids::random_hex(32));
        Ok(Self {
            store,
            index: RwLock::new(index),
            system_token_hash: sha256_hex(&system_token),
            system_token,
            ephemeral: std::sync::Mutex::new(HashMap::new()),
        })
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, Index>> {
        self.index
            .read()
            .map_err(|_| Error::internal("read identities", "poisoned lock"))
    }

    fn write(&self) -> Result<std::sync::RwLockWriteGuard<'_, Index>> {
        self.index
            .write()
            .map_err(|_| Error::internal("update identities", "poisoned lock"))
    }

    fn ephemeral_caller(&self, hash: &str) -> Option<Caller> {
        let map = self.ephemeral.lock().ok()?;
        map.get(hash)
            .filter(|(caller, expiry)| *expiry > now_ms() && caller.scope != Scope::Full)
            .map(|(caller, _)| caller.clone())
    }

    /// A short-lived credential acting as `caller`, for an execution context.
    pub fn issue_context_credential(&self, caller: &Caller) -> Result<String> {
        let value = format!("dkcx{}", ids::random_hex(32));
        let now = now_ms();
        let mut map = self
            .ephemeral
            .lock()
            .map_err(|_| Error::internal("issue a context credential", "poisoned lock"))?;
        map.retain(|_, (_, expiry)| *expiry > now);
        // Not valid until bound to its context (`Scope::Full` is never accepted here).
        let acting = Caller {
            credential: format!("context:{}", caller.principal_id),
            scope: Scope::Full,
            ..caller.clone()
        };
        map.insert(sha256_hex(&value), (acting, now + CONTEXT_CREDENTIAL_MS));
        Ok(value)
    }

    /// Makes a context credential valid for as long as `context_id` lives.
    pub fn bind_context_credential(&self, value: &str, context_id: &str) {
        if let Ok(mut map) = self.ephemeral.lock() {
            if let Some((caller, _)) = map.get_mut(&sha256_hex(value)) {
                caller.scope = Scope::Context(context_id.to_string());
            }
        }
    }

    pub fn revoke_context_credential(&self, value: &str) {
        if let Ok(mut map) = self.ephemeral.lock() {
            map.remove(&sha256_hex(value));
        }
    }

    /// The caller Kiln acts as when it runs work on a principal's behalf (a
    /// job's `run_as`): the principal must exist and be active.
    pub fn acting_as(&self, user_name: &str) -> Result<Caller> {
        let principal = self
            .by_name(user_name)?
            .filter(|p| p.active)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "Invalid value for field run_as: {user_name} is not an active user or service principal"
                ))
            })?;
        Ok(caller(&principal, format!("run_as:{}", principal.id)))
    }

    /// The credential for Kiln's own engines (only for their environment).
    pub fn system_token(&self) -> &str {
        &self.system_token
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.read()?.principals.is_empty())
    }

    // ---- authentication ------------------------------------------------------

    /// A bearer token (PAT or OAuth access token).
    pub fn authenticate_token(&self, token: &str) -> Result<Caller> {
        let hash = sha256_hex(token);
        if hash == self.system_token_hash {
            return Ok(Caller {
                principal_id: "system".into(),
                user_name: SYSTEM_USER.into(),
                admin: true,
                credential: "system".into(),
                scope: Scope::Catalog,
            });
        }
        if let Some(caller) = self.ephemeral_caller(&hash) {
            return Ok(caller);
        }
        let index = self.read()?;
        let record = index.tokens.get(&hash).ok_or_else(unauthenticated)?;
        if record.expiry_ms >= 0 && record.expiry_ms < now_ms() {
            return Err(Error::unauthenticated("Token expired."));
        }
        let principal = index
            .principals
            .get(&record.principal_id)
            .filter(|p| p.active)
            .ok_or_else(unauthenticated)?;
        Ok(caller(principal, record.token_id.clone()))
    }

    /// Basic credentials: `token:<PAT>`, `<user>:<PAT>` or `<user>:<password>`.
    pub fn authenticate_basic(&self, user: &str, secret: &str) -> Result<Caller> {
        if let Ok(found) = self.authenticate_token(secret) {
            if user == "token" || user == found.user_name {
                return Ok(found);
            }
            return Err(Error::unauthenticated(
                "Token does not belong to this user.",
            ));
        }
        let pair = sha256_hex(&format!("{user}\u{0}{secret}"));
        let principal = {
            let index = self.read()?;
            if let Some(id) = index.verified_passwords.get(&pair) {
                index.principals.get(id).filter(|p| p.active).cloned()
            } else {
                None
            }
        };
        if let Some(principal) = principal {
            return Ok(caller(&principal, format!("basic:{}", principal.id)));
        }
        let principal = self
            .by_name(user)?
            .filter(|p| p.active)
            .ok_or_else(unauthenticated)?;
        let hash = principal
            .password_hash
            .as_deref()
            .ok_or_else(unauthenticated)?;
        let parsed =
            PasswordHash::new(hash).map_err(|e| Error::internal("read a password hash", e))?;
        kiln_core::blocking::run(|| Argon2::default().verify_password(secret.as_bytes(), &parsed))
            .map_err(|_| unauthenticated())?;
        self.write()?
            .verified_passwords
            .insert(pair, principal.id.clone());
        Ok(caller(&principal, format!("basic:{}", principal.id)))
    }

    /// A signed-in browser session's caller, checked again on every request:
    /// the principal must still be active (admin rights follow changes).
    pub fn refresh(&self, caller: &Caller) -> Result<Caller> {
        let index = self.read()?;
        let principal = index
            .principals
            .get(&caller.principal_id)
            .filter(|p| p.active)
            .ok_or_else(unauthenticated)?;
        Ok(self::caller(principal, caller.credential.clone()))
    }

    /// OAuth client credentials → a one-hour access token.
    pub fn issue_oauth_token(&self, client_id: &str, client_secret: &str) -> Result<String> {
        let principal = {
            let index = self.read()?;
            let secret = index
                .secrets
                .get(&sha256_hex(client_secret))
                .ok_or_else(unauthenticated)?;
            let principal = index
                .principals
                .get(&secret.principal_id)
                .filter(|p| p.active)
                .ok_or_else(unauthenticated)?;
            if principal.user_name != client_id {
                return Err(unauthenticated());
            }
            principal.clone()
        };
        let (value, _) = self.issue_token(
            &principal.id,
            TokenKind::OAuth,
            Some(OAUTH_TOKEN_SECONDS),
            None,
        )?;
        Ok(value)
    }

    // ---- principals ----------------------------------------------------------

    pub fn by_name(&self, user_name: &str) -> Result<Option<PrincipalRecord>> {
        Ok(self
            .read()?
            .principals
            .values()
            .find(|p| p.user_name == user_name)
            .cloned())
    }

    pub fn principal(&self, id: &str) -> Result<PrincipalRecord> {
        self.read()?
            .principals
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("User {id} does not exist.")))
    }

    pub fn principals(&self, kind: PrincipalKind) -> Result<Vec<PrincipalRecord>> {
        let mut all: Vec<_> = self
            .read()?
            .principals
            .values()
            .filter(|p| p.kind == kind)
            .cloned()
            .collect();
        all.sort_by(|a, b| {
            a.created_ms
                .cmp(&b.created_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(all)
    }

    pub fn create_principal(
        &self,
        kind: PrincipalKind,
        user_name: &str,
        display_name: &str,
        admin: bool,
        password: Option<&str>,
    ) -> Result<PrincipalRecord> {
        if user_name.trim().is_empty() {
            return Err(Error::invalid("userName must not be empty"));
        }
        if self.by_name(user_name)?.is_some() {
            return Err(Error::already_exists(format!(
                "User with username {user_name} already exists."
            )));
        }
        let record = PrincipalRecord {
            id: ids::numeric_id(),
            user_name: user_name.into(),
            display_name: display_name.into(),
            kind,
            active: true,
            admin,
            password_hash: password.map(hash_password).transpose()?,
            created_ms: now_ms(),
        };
        self.store
            .commit(vec![Write::PutPrincipal(record.clone())])?;
        self.write()?
            .principals
            .insert(record.id.clone(), record.clone());
        Ok(record)
    }

    pub fn set_password(&self, principal_id: &str, password: &str) -> Result<()> {
        let mut record = self.principal(principal_id)?;
        record.password_hash = Some(kiln_core::blocking::run(|| hash_password(password))?);
        self.store
            .commit(vec![Write::PutPrincipal(record.clone())])?;
        let mut index = self.write()?;
        index.verified_passwords.retain(|_, id| id != principal_id);
        index.principals.insert(record.id.clone(), record);
        Ok(())
    }

    /// Adds a principal to, or removes it from, the `admins` group.
    pub fn set_admin(&self, principal_id: &str, admin: bool) -> Result<()> {
        let mut record = self.principal(principal_id)?;
        if record.admin == admin {
            return Ok(());
        }
        if !admin && self.admin_count()? <= 1 {
            return Err(Error::invalid("Cannot remove the last workspace admin."));
        }
        record.admin = admin;
        self.store
            .commit(vec![Write::PutPrincipal(record.clone())])?;
        self.write()?.principals.insert(record.id.clone(), record);
        Ok(())
    }

    fn admin_count(&self) -> Result<usize> {
        Ok(self
            .read()?
            .principals
            .values()
            .filter(|p| p.admin && p.active)
            .count())
    }

    /// Deletes a principal with its tokens and secrets.
    pub fn delete_principal(&self, id: &str) -> Result<()> {
        let record = self.principal(id)?;
        if record.admin && self.admin_count()? <= 1 {
            return Err(Error::invalid("Cannot delete the last workspace admin."));
        }
        self.store.commit(vec![Write::DeletePrincipal(id.into())])?;
        let mut index = self.write()?;
        index.principals.remove(id);
        index.tokens.retain(|_, t| t.principal_id != id);
        index.secrets.retain(|_, s| s.principal_id != id);
        index.verified_passwords.retain(|_, p| p != id);
        Ok(())
    }

    // ---- service principal secrets ------------------------------------------

    pub fn create_sp_secret(&self, principal_id: &str) -> Result<(String, SpSecretRecord)> {
        let principal = self.principal(principal_id)?;
        if principal.kind != PrincipalKind::ServicePrincipal {
            return Err(Error::not_found(format!(
                "Service principal {principal_id} does not exist."
            )));
        }
        let value = format!("dose{}", ids::random_hex(32));
        let record = SpSecretRecord {
            id: ids::random_hex(16),
            principal_id: principal_id.into(),
            secret_hash: sha256_hex(&value),
            created_ms: now_ms(),
        };
        self.store
            .commit(vec![Write::PutSpSecret(record.clone())])?;
        self.write()?
            .secrets
            .insert(record.secret_hash.clone(), record.clone());
        Ok((value, record))
    }

    pub fn sp_secrets_of(&self, principal_id: &str) -> Result<Vec<SpSecretRecord>> {
        Ok(self
            .read()?
            .secrets
            .values()
            .filter(|s| s.principal_id == principal_id)
            .cloned()
            .collect())
    }

    pub fn delete_sp_secret(&self, principal_id: &str, secret_id: &str) -> Result<()> {
        let hash = self
            .read()?
            .secrets
            .values()
            .find(|s| s.id == secret_id && s.principal_id == principal_id)
            .map(|s| s.secret_hash.clone())
            .ok_or_else(|| Error::not_found(format!("Secret {secret_id} does not exist.")))?;
        self.store
            .commit(vec![Write::DeleteSpSecret(secret_id.into())])?;
        self.write()?.secrets.remove(&hash);
        Ok(())
    }
}

fn caller(principal: &PrincipalRecord, credential: String) -> Caller {
    Caller {
        principal_id: principal.id.clone(),
        user_name: principal.user_name.clone(),
        admin: principal.admin,
        credential,
        scope: Scope::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_store::SqliteStore;

    fn identity() -> Result<Identity> {
        Identity::open(Arc::new(SqliteStore::open_in_memory()?))
    }

    #[test]
    fn token_hashes_are_lowercase_hex_sha256() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_hex("dapi1"), hex::encode(Sha256::digest(b"dapi1")));
    }

    #[test]
    fn tokens_authenticate_until_revoked() -> Result<()> {
        let id = identity()?;
        let user = id.create_principal(PrincipalKind::User, "a@x", "A", false, None)?;
        let (value, record) = id.issue_token(&user.id, TokenKind::Personal, None, None)?;
        assert!(value.starts_with("dapi"));
        assert_eq!(id.authenticate_token(&value)?.user_name, "a@x");
        assert!(id.authenticate_token("dapi-wrong").is_err());
        id.revoke_token(&user.id, &record.token_id)?;
        assert!(id.authenticate_token(&value).is_err());
        Ok(())
    }

    #[test]
    fn expired_tokens_are_refused() -> Result<()> {
        let id = identity()?;
        let user = id.create_principal(PrincipalKind::User, "a@x", "A", false, None)?;
        let (value, mut record) = id.issue_token(&user.id, TokenKind::Personal, Some(60), None)?;
        record.expiry_ms = now_ms() - 1;
        id.write()?.tokens.insert(record.token_hash.clone(), record);
        assert_eq!(
            id.authenticate_token(&value).err().map(|e| e.message),
            Some("Token expired.".into())
        );
        Ok(())
    }

    #[test]
    fn basic_with_password_or_token() -> Result<()> {
        let id = identity()?;
        let user = id.create_principal(PrincipalKind::User, "a@x", "A", false, Some("pw"))?;
        assert_eq!(id.authenticate_basic("a@x", "pw")?.principal_id, user.id);
        assert_eq!(id.authenticate_basic("a@x", "pw")?.principal_id, user.id); // cached path
        assert!(id.authenticate_basic("a@x", "nope").is_err());
        let (value, _) = id.issue_token(&user.id, TokenKind::Personal, None, None)?;
        assert!(id.authenticate_basic("token", &value).is_ok());
        assert!(id.authenticate_basic("someone-else", &value).is_err());
        Ok(())
    }

    #[test]
    fn oauth_client_credentials() -> Result<()> {
        let id = identity()?;
        let sp =
            id.create_principal(PrincipalKind::ServicePrincipal, "app-1", "SP", false, None)?;
        let (secret, _) = id.create_sp_secret(&sp.id)?;
        let token = id.issue_oauth_token("app-1", &secret)?;
        assert_eq!(id.authenticate_token(&token)?.principal_id, sp.id);
        assert!(id.issue_oauth_token("app-2", &secret).is_err());
        Ok(())
    }

    #[test]
    fn store_keeps_only_hashes() -> Result<()> {
        let store = Arc::new(SqliteStore::open_in_memory()?);
        let id = Identity::open(store.clone())?;
        let user = id.create_principal(PrincipalKind::User, "a@x", "A", true, None)?;
        let (value, _) = id.issue_token(&user.id, TokenKind::Personal, None, None)?;
        let stored = store.tokens()?;
        assert!(stored
            .iter()
            .all(|t| t.token_hash != value && t.token_hash == sha256_hex(&value)));
        Ok(())
    }
}

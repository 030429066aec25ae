//! Personal access and OAuth tokens of principals: issue, list, revoke
//! (token management reaches every principal's).

use kiln_core::ids;
use kiln_core::time::now_ms;
use kiln_core::{Error, Result};
use kiln_store::{TokenKind, TokenRecord, Write};

use super::{sha256_hex, Identity};

impl Identity {
    /// Creates a token; returns its value (shown once) and record.
    pub fn issue_token(
        &self,
        principal_id: &str,
        kind: TokenKind,
        lifetime_seconds: Option<i64>,
        comment: Option<String>,
    ) -> Result<(String, TokenRecord)> {
        let value = match kind {
            TokenKind::Personal => format!("dapi{}", ids::random_hex(16)),
            TokenKind::OAuth => format!("dkoa{}", ids::random_hex(32)),
        };
        let now = now_ms();
        let record = TokenRecord {
            token_id: ids::random_hex(32),
            principal_id: principal_id.into(),
            token_hash: sha256_hex(&value),
            comment,
            created_ms: now,
            expiry_ms: match lifetime_seconds {
                Some(secs) if secs > 0 => now.saturating_add(secs.saturating_mul(1000)),
                _ => -1,
            },
            kind,
        };
        self.store.commit(vec![Write::PutToken(record.clone())])?;
        self.write()?
            .tokens
            .insert(record.token_hash.clone(), record.clone());
        Ok((value, record))
    }

    /// Personal access tokens of one principal, oldest first.
    pub fn tokens_of(&self, principal_id: &str) -> Result<Vec<TokenRecord>> {
        let mut tokens: Vec<_> = self
            .read()?
            .tokens
            .values()
            .filter(|t| t.principal_id == principal_id && t.kind == TokenKind::Personal)
            .cloned()
            .collect();
        tokens.sort_by_key(|t| t.created_ms);
        Ok(tokens)
    }

    /// Every personal access token of the workspace (token management), oldest first.
    pub fn all_personal_tokens(&self) -> Result<Vec<TokenRecord>> {
        let mut tokens: Vec<_> = self
            .read()?
            .tokens
            .values()
            .filter(|t| t.kind == TokenKind::Personal)
            .cloned()
            .collect();
        tokens.sort_by_key(|t| t.created_ms);
        Ok(tokens)
    }

    /// Revokes any personal access token (token management, admins).
    pub fn revoke_any_token(&self, token_id: &str) -> Result<()> {
        let owner = self
            .all_personal_tokens()?
            .into_iter()
            .find(|t| t.token_id == token_id)
            .map(|t| t.principal_id)
            .ok_or_else(|| Error::not_found(format!("Token with ID {token_id} does not exist.")))?;
        self.revoke_token(&owner, token_id)
    }

    /// Revokes one of the caller's tokens.
    pub fn revoke_token(&self, principal_id: &str, token_id: &str) -> Result<()> {
        let hash = self
            .read()?
            .tokens
            .values()
            .find(|t| t.token_id == token_id && t.principal_id == principal_id)
            .map(|t| t.token_hash.clone())
            .ok_or_else(|| Error::not_found(format!("Token with ID {token_id} does not exist.")))?;
        self.store
            .commit(vec![Write::DeleteToken(token_id.into())])?;
        self.write()?.tokens.remove(&hash);
        Ok(())
    }
}

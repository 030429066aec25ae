//! Secrets API 2.0 (`workspace.py`: `SecretsAPI`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct CreateScope {
    pub scope: String,
    pub initial_manage_principal: Option<String>,
    pub scope_backend_type: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ScopeRef {
    pub scope: String,
}

#[derive(Debug, Serialize)]
pub struct SecretScope {
    pub name: String,
    pub backend_type: String,
}

#[derive(Debug, Serialize)]
pub struct ListScopesResponse {
    pub scopes: Vec<SecretScope>,
}

#[derive(Debug, Deserialize)]
pub struct PutSecret {
    pub scope: String,
    pub key: String,
    pub string_value: Option<String>,
    /// base64
    pub bytes_value: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SecretRef {
    pub scope: String,
    pub key: String,
}

#[derive(Debug, Serialize)]
pub struct SecretMetadata {
    pub key: String,
    pub last_updated_timestamp: i64,
}

#[derive(Debug, Serialize)]
pub struct ListSecretsResponse {
    pub secrets: Vec<SecretMetadata>,
}

#[derive(Debug, Serialize)]
pub struct GetSecretResponse {
    pub key: String,
    /// base64 of the value's bytes
    pub value: String,
}

#[derive(Debug, Deserialize)]
pub struct PutAcl {
    pub scope: String,
    pub principal: String,
    pub permission: String,
}

#[derive(Debug, Deserialize)]
pub struct AclRef {
    pub scope: String,
    pub principal: String,
}

#[derive(Debug, Serialize)]
pub struct AclItem {
    pub principal: String,
    pub permission: String,
}

#[derive(Debug, Serialize)]
pub struct ListAclsResponse {
    pub items: Vec<AclItem>,
}

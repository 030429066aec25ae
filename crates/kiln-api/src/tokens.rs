//! Token API 2.0: `settings.py` (`w.tokens`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct CreateToken {
    pub comment: Option<String>,
    pub lifetime_seconds: Option<i64>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PublicTokenInfo {
    pub token_id: String,
    pub creation_time: i64,
    pub expiry_time: i64,
    pub comment: String,
}

#[derive(Debug, Serialize)]
pub struct CreateTokenResponse {
    pub token_value: String,
    pub token_info: PublicTokenInfo,
}

#[derive(Debug, Serialize)]
pub struct ListTokensResponse {
    pub token_infos: Vec<PublicTokenInfo>,
}

#[derive(Debug, Deserialize)]
pub struct RevokeToken {
    pub token_id: String,
}

// ---- Token management (`w.token_management`, admins) ------------------------

/// POST /api/2.0/token-management/on-behalf-of/tokens
#[derive(Debug, Deserialize)]
pub struct CreateOboTokenRequest {
    pub application_id: String,
    pub comment: Option<String>,
    pub lifetime_seconds: Option<i64>,
}

/// A token as token management shows it (with its owner).
#[derive(Debug, Serialize)]
pub struct TokenInfo {
    pub token_id: String,
    pub comment: String,
    pub creation_time: i64,
    pub expiry_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by_id: Option<i64>,
    pub created_by_username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct CreateOboTokenResponse {
    pub token_info: TokenInfo,
    pub token_value: String,
}

#[derive(Debug, Serialize)]
pub struct GetTokenResponse {
    pub token_info: TokenInfo,
}

/// GET /api/2.0/token-management/tokens
#[derive(Debug, Deserialize)]
pub struct ListTokenManagementRequest {
    pub created_by_id: Option<String>,
    pub created_by_username: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ListTokenManagementResponse {
    pub token_infos: Vec<TokenInfo>,
}

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

//! OAuth M2M: host metadata, OIDC discovery, the token endpoint and
//! service-principal secrets (`oauth2.py`).

use serde::{Deserialize, Serialize};

/// GET /.well-known/databricks-config
#[derive(Debug, Serialize)]
pub struct HostMetadata {
    pub oidc_endpoint: String,
    pub workspace_id: String,
    pub account_id: String,
    pub cloud: String,
}

/// GET /oidc/.well-known/oauth-authorization-server
#[derive(Debug, Serialize)]
pub struct OidcDiscovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub grant_types_supported: Vec<String>,
    pub response_types_supported: Vec<String>,
    pub code_challenge_methods_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub scopes_supported: Vec<String>,
}

/// Form body of POST /oidc/v1/token.
#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// authorization_code grant
    pub code: Option<String>,
    pub code_verifier: Option<String>,
    pub redirect_uri: Option<String>,
    /// refresh_token grant
    pub refresh_token: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// OAuth-style error body (RFC 6749 §5.2).
#[derive(Debug, Serialize)]
pub struct OAuthError {
    pub error: String,
    pub error_description: String,
}

/// POST /api/2.0/accounts/servicePrincipals/{id}/credentials/secrets
#[derive(Debug, Serialize)]
pub struct CreateServicePrincipalSecretResponse {
    pub id: String,
    pub secret: String,
    pub secret_hash: String,
    pub status: String,
    pub create_time: String,
    pub update_time: String,
}

#[derive(Debug, Serialize)]
pub struct SecretInfo {
    pub id: String,
    pub secret_hash: String,
    pub status: String,
    pub create_time: String,
    pub update_time: String,
}

#[derive(Debug, Serialize)]
pub struct ListServicePrincipalSecretsResponse {
    pub secrets: Vec<SecretInfo>,
}

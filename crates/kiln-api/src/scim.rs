//! SCIM 2.0 Users, ServicePrincipals and Me (`iam.py`), camelCase as SCIM has it.

use serde::{Deserialize, Serialize};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const SP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServicePrincipal";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
pub struct ComplexValue {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(rename = "$ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct Name {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
}

/// POST /api/2.0/preview/scim/v2/Users. `password` is Kiln's way to let a user
/// log in with Basic auth (Databricks workspaces use SSO instead).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateUser {
    pub user_name: String,
    pub display_name: Option<String>,
    pub active: Option<bool>,
    pub password: Option<String>,
    #[serde(default)]
    pub groups: Vec<ComplexValue>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub user_name: String,
    pub display_name: String,
    pub active: bool,
    pub emails: Vec<ComplexValue>,
    pub name: Name,
    pub groups: Vec<ComplexValue>,
    pub entitlements: Vec<ComplexValue>,
    pub schemas: Vec<String>,
}

/// POST /api/2.0/preview/scim/v2/ServicePrincipals
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateServicePrincipal {
    pub display_name: Option<String>,
    pub application_id: Option<String>,
    pub active: Option<bool>,
    #[serde(default)]
    pub groups: Vec<ComplexValue>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipal {
    pub id: String,
    pub application_id: String,
    pub display_name: String,
    pub active: bool,
    pub groups: Vec<ComplexValue>,
    pub entitlements: Vec<ComplexValue>,
    pub schemas: Vec<String>,
}

/// Query of SCIM list calls (1-based `startIndex`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    pub start_index: Option<usize>,
    pub count: Option<usize>,
    pub filter: Option<String>,
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse<T> {
    pub total_results: usize,
    pub items_per_page: usize,
    pub start_index: usize,
    #[serde(rename = "Resources")]
    pub resources: Vec<T>,
    pub schemas: Vec<String>,
}

/// A workspace group (`Group`), as returned by get/list/create/update.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: String,
    pub display_name: String,
    pub members: Vec<ComplexValue>,
    pub groups: Vec<ComplexValue>,
    pub entitlements: Vec<ComplexValue>,
    pub roles: Vec<ComplexValue>,
    pub schemas: Vec<String>,
}

/// POST /Groups and PUT /Groups/{id}.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateGroup {
    pub display_name: Option<String>,
    pub members: Option<Vec<ComplexValue>>,
    #[serde(default)]
    pub entitlements: Vec<ComplexValue>,
    pub external_id: Option<String>,
    #[serde(default)]
    pub schemas: Vec<String>,
}

/// One SCIM PATCH operation (`Patch`): `op` add/remove/replace, an optional
/// `path` (`members`, `members[value eq "<id>"]`, `displayName`) and a value.
#[derive(Debug, Deserialize)]
pub struct PatchOperation {
    pub op: String,
    pub path: Option<String>,
    pub value: Option<serde_json::Value>,
}

/// PATCH /Groups/{id}.
#[derive(Debug, Deserialize)]
pub struct PatchRequest {
    #[serde(rename = "Operations", default)]
    pub operations: Vec<PatchOperation>,
    #[serde(default)]
    pub schemas: Vec<String>,
}

//! Unity Catalog REST API 2.1 (`catalog.py`): catalogs, schemas, tables, plus
//! the staging-table and coordinated-commit calls that Delta engines make.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Serialize)]
pub struct CatalogInfo {
    pub name: String,
    pub full_name: String,
    pub id: String,
    pub catalog_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub properties: BTreeMap<String, String>,
    pub owner: String,
    pub created_at: i64,
    pub storage_root: String,
}

#[derive(Debug, Serialize)]
pub struct ListCatalogsResponse {
    pub catalogs: Vec<CatalogInfo>,
}

#[derive(Debug, Deserialize)]
pub struct CreateCatalog {
    pub name: String,
    pub comment: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct SchemaInfo {
    pub name: String,
    pub catalog_name: String,
    pub full_name: String,
    pub schema_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub properties: BTreeMap<String, String>,
    pub owner: String,
    pub created_at: i64,
}

#[derive(Debug, Serialize)]
pub struct ListSchemasResponse {
    pub schemas: Vec<SchemaInfo>,
}

#[derive(Debug, Deserialize)]
pub struct ListSchemas {
    pub catalog_name: String,
}

#[derive(Debug, Deserialize)]
pub struct CreateSchema {
    pub name: String,
    pub catalog_name: String,
    pub comment: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// PATCH of a catalog, schema or table.
#[derive(Debug, Deserialize)]
pub struct UpdateSecurable {
    pub comment: Option<String>,
    pub owner: Option<String>,
    pub properties: Option<BTreeMap<String, String>>,
    pub new_name: Option<String>,
}

/// GET /api/2.1/unity-catalog/metastore_summary
#[derive(Debug, Serialize)]
pub struct MetastoreSummary {
    pub metastore_id: String,
    pub global_metastore_id: String,
    pub name: String,
    pub owner: String,
    pub cloud: String,
    pub region: String,
    pub default_data_access_config_id: String,
    pub storage_root: String,
    pub delta_sharing_scope: String,
    pub privilege_model_version: String,
    pub created_at: i64,
    pub created_by: String,
}

/// GET /api/2.1/unity-catalog/current-metastore-assignment
#[derive(Debug, Serialize)]
pub struct MetastoreAssignment {
    pub metastore_id: String,
    pub workspace_id: i64,
    pub default_catalog_name: String,
}

/// `force` on schema and catalog deletes.
#[derive(Debug, Default, Deserialize)]
pub struct DeleteQuery {
    #[serde(default, deserialize_with = "crate::lenient::opt_bool")]
    pub force: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct TableInfo {
    pub name: String,
    pub catalog_name: String,
    pub schema_name: String,
    pub full_name: String,
    pub table_id: String,
    pub table_type: String,
    /// Absent for views.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub data_source_format: String,
    pub columns: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view_definition: Option<String>,
    pub properties: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub owner: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Serialize)]
pub struct ListTablesResponse {
    pub tables: Vec<TableInfo>,
}

/// GET tables: `include_browse`, `include_delta_metadata`,
/// `include_manifest_capabilities` are accepted (everything is included).
#[derive(Debug, Deserialize)]
pub struct ListTables {
    pub catalog_name: String,
    pub schema_name: String,
    #[serde(default, deserialize_with = "crate::lenient::opt_bool")]
    pub omit_columns: Option<bool>,
    #[serde(default, deserialize_with = "crate::lenient::opt_bool")]
    pub omit_properties: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct CreateTable {
    pub name: String,
    pub catalog_name: String,
    pub schema_name: String,
    pub table_type: String,
    pub data_source_format: String,
    #[serde(default)]
    pub columns: Vec<Value>,
    pub storage_location: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    pub comment: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct TableExistsResponse {
    pub table_exists: bool,
}

#[derive(Debug, Deserialize)]
pub struct CreateStagingTable {
    pub name: String,
    pub catalog_name: String,
    pub schema_name: String,
}

#[derive(Debug, Serialize)]
pub struct StagingTableInfo {
    pub id: String,
    pub name: String,
    pub catalog_name: String,
    pub schema_name: String,
    pub staging_location: String,
}

/// GET delta/preview/commits (parameters in a JSON body or the query).
#[derive(Debug, Deserialize)]
pub struct GetCommits {
    pub table_id: String,
    pub table_uri: Option<String>,
    pub start_version: Option<i64>,
    pub end_version: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct GetCommitsResponse {
    pub commits: Vec<Value>,
    pub latest_table_version: i64,
}

/// POST delta/preview/commits
#[derive(Debug, Deserialize)]
pub struct CommitRequest {
    pub table_id: String,
    pub table_uri: Option<String>,
    pub commit_info: Option<Value>,
    pub latest_backfilled_version: Option<i64>,
    pub metadata: Option<Value>,
}

// ---- volumes (`w.volumes`) and their grants (`w.grants`) ------------------------

#[derive(Debug, Serialize)]
pub struct VolumeInfo {
    pub catalog_name: String,
    pub schema_name: String,
    pub name: String,
    pub full_name: String,
    pub volume_id: String,
    pub volume_type: String,
    pub storage_location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub owner: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Deserialize)]
pub struct CreateVolume {
    pub catalog_name: String,
    pub schema_name: String,
    pub name: String,
    pub volume_type: String,
    pub comment: Option<String>,
    pub storage_location: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ListVolumes {
    pub catalog_name: String,
    pub schema_name: String,
    pub max_results: Option<usize>,
    pub page_token: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ListVolumesResponse {
    pub volumes: Vec<VolumeInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct UpdateVolume {
    pub new_name: Option<String>,
    pub comment: Option<String>,
    pub owner: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PermissionsChange {
    pub principal: String,
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct UpdatePermissions {
    #[serde(default)]
    pub changes: Vec<PermissionsChange>,
}

#[derive(Debug, Deserialize)]
pub struct GetPermissions {
    pub principal: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PrivilegeAssignment {
    pub principal: String,
    pub privileges: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PermissionsList {
    pub privilege_assignments: Vec<PrivilegeAssignment>,
}

//! Pipelines API 2.0 (Delta Live Tables): request parameters of the
//! operations. Pipeline settings (PipelineSpec) travel as JSON objects and are
//! echoed back as given.

use serde::Deserialize;

use crate::lenient::opt_bool;

/// `POST /api/2.0/pipelines` and `PUT /api/2.0/pipelines/{id}` flags (the rest of
/// the body is the PipelineSpec).
#[derive(Debug, Default, Deserialize)]
pub struct PipelineFlags {
    #[serde(default, deserialize_with = "opt_bool")]
    pub dry_run: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    pub allow_duplicate_names: Option<bool>,
    #[serde(default)]
    pub expected_last_modified: Option<i64>,
}

/// `POST /api/2.0/pipelines/{id}/updates`.
#[derive(Debug, Default, Deserialize)]
pub struct StartUpdate {
    #[serde(default)]
    pub cause: Option<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    pub full_refresh: Option<bool>,
    #[serde(default)]
    pub full_refresh_selection: Vec<String>,
    #[serde(default)]
    pub refresh_selection: Vec<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    pub validate_only: Option<bool>,
}

/// `GET /api/2.0/pipelines`.
#[derive(Debug, Default, Deserialize)]
pub struct ListPipelines {
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub max_results: Option<i64>,
    #[serde(default)]
    pub order_by: Vec<String>,
    #[serde(default)]
    pub page_token: Option<String>,
}

/// `GET /api/2.0/pipelines/{id}/events` takes the same parameters as the list.
pub type ListPipelineEvents = ListPipelines;

/// `GET /api/2.0/pipelines/{id}/updates`.
#[derive(Debug, Default, Deserialize)]
pub struct ListUpdates {
    #[serde(default)]
    pub max_results: Option<i64>,
    #[serde(default)]
    pub page_token: Option<String>,
    #[serde(default)]
    pub until_update_id: Option<String>,
}

/// `DELETE /api/2.0/pipelines/{id}`.
#[derive(Debug, Default, Deserialize)]
pub struct DeletePipeline {
    #[serde(default, deserialize_with = "opt_bool")]
    pub cascade: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    pub force: Option<bool>,
}

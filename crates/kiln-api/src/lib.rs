//! Databricks wire types, one module per API family, named after the upstream
//! operations (`CreateCluster`, `GetEvents`, `CreateToken`, …). Field names are
//! the SDK's JSON names. Nothing here knows HTTP, the store or the engines.

pub mod clusters;
pub mod clusters_v12;
pub mod commands;
pub mod dbfs;
pub mod error;
pub mod files;
pub mod groups;
pub mod jobs;
pub mod lenient;
pub mod libraries;
pub mod notification_destinations;
pub mod oauth;
pub mod pipelines;
pub mod postgres;
pub mod scim;
pub mod secrets;
pub mod sql;
pub mod tokens;
pub mod unity_catalog;
pub mod workspace;

/// The `{}` body of operations that return nothing.
#[derive(Debug, Default, serde::Serialize)]
pub struct Empty {}

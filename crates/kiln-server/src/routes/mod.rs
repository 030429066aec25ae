//! The route table: every upstream endpoint of the families Kiln serves, each
//! either bound to a handler or answering Databricks' 501 `NOT_IMPLEMENTED`.
//! The OpenAPI document and the compatibility table come from this table.

mod clusters;
mod clusters_convert;
mod clusters_v12;
mod commands;
mod data_api_http;
mod dbfs;
pub(crate) mod engine_credentials;
mod files;
mod files_multipart;
mod files_object;
mod groups_v2;
mod identity;
pub(crate) mod jobs;
mod jobs_convert;
mod libraries;
mod meta;
mod notification_destinations;
mod oauth_u2m;
mod permissions;
pub(crate) mod pipelines;
mod pipelines_spec;
mod postgres;
mod postgres_common;
mod postgres_compute;
mod postgres_convert;
pub(crate) mod postgres_data_api;
mod postgres_roles;
mod postgres_snapshots;
mod postgres_trash;
mod scim;
mod scim_groups;
pub(crate) mod secrets;
pub(crate) mod sql_protocol;
pub(crate) mod sql_statements;
pub(crate) mod sql_warehouses;
mod token_management;
mod uc_volumes;
mod unity_catalog;
mod workspace;

use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

use crate::state::AppState;

pub use meta::{fallback, openapi_document};

/// One upstream endpoint.
pub struct Endpoint {
    pub method: Method,
    pub path: String,
    /// The Databricks operation, e.g. `clusters/create`.
    pub operation: &'static str,
    /// `None` answers 501 NOT_IMPLEMENTED.
    pub handler: Option<MethodRouter<AppState>>,
}

pub(crate) fn ep(
    method: Method,
    path: impl Into<String>,
    operation: &'static str,
    handler: MethodRouter<AppState>,
) -> Endpoint {
    Endpoint {
        method,
        path: path.into(),
        operation,
        handler: Some(handler),
    }
}

pub(crate) fn todo_ep(
    method: Method,
    path: impl Into<String>,
    operation: &'static str,
) -> Endpoint {
    Endpoint {
        method,
        path: path.into(),
        operation,
        handler: None,
    }
}

/// One page of `items` after the offset a `page_token` carries (an offset,
/// as the token this module hands out), and the next token if more remain.
pub(crate) fn offset_page<T>(
    items: Vec<T>,
    page_token: Option<&str>,
    size: usize,
) -> kiln_core::Result<(Vec<T>, Option<String>)> {
    let start = page_token
        .map(|t| {
            t.parse::<usize>()
                .map_err(|_| kiln_core::Error::invalid("Invalid page_token"))
        })
        .transpose()?
        .unwrap_or(0);
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(size.max(1)).collect();
    let next = (start + page.len() < total).then(|| (start + page.len()).to_string());
    Ok((page, next))
}

/// Every endpoint, family by family.
pub fn endpoints() -> Vec<Endpoint> {
    let mut all = Vec::new();
    all.extend(meta::endpoints());
    all.extend(identity::endpoints());
    all.extend(oauth_u2m::endpoints());
    all.extend(token_management::endpoints());
    all.extend(scim::endpoints());
    all.extend(scim_groups::endpoints());
    all.extend(groups_v2::endpoints());
    all.extend(clusters::endpoints());
    all.extend(clusters_v12::endpoints());
    all.extend(commands::endpoints());
    all.extend(libraries::endpoints());
    all.extend(pipelines::endpoints());
    all.extend(jobs::endpoints());
    all.extend(notification_destinations::endpoints());
    all.extend(sql_warehouses::endpoints());
    all.extend(sql_statements::endpoints());
    all.extend(sql_protocol::endpoints());
    all.extend(secrets::endpoints());
    all.extend(dbfs::endpoints());
    all.extend(workspace::endpoints());
    all.extend(permissions::endpoints());
    all.extend(unity_catalog::endpoints());
    all.extend(uc_volumes::endpoints());
    all.extend(files::endpoints());
    all.extend(files_multipart::endpoints());
    all.extend(postgres::endpoints());
    all.extend(postgres_roles::endpoints());
    all.extend(postgres_data_api::endpoints());
    all.extend(postgres_snapshots::endpoints());
    all.extend(planned_endpoints());
    all
}

/// Upstream endpoints of families whose issues are still open: listed so they
/// answer 501 (not 404) and show in the compatibility table.
fn planned_endpoints() -> Vec<Endpoint> {
    Vec::new()
}

/// Builds the router from the table (public and authenticated routes alike;
/// the auth middleware decides which paths are public).
pub fn router(endpoints: Vec<Endpoint>) -> Router<AppState> {
    let mut router = Router::new();
    for endpoint in endpoints {
        let filter = match MethodFilter::try_from(endpoint.method.clone()) {
            Ok(f) => f,
            Err(_) => continue,
        };
        let operation = endpoint.operation;
        let handler = endpoint
            .handler
            .unwrap_or_else(|| on(filter, move || meta::not_implemented(operation)));
        router = router.route(&endpoint.path, handler);
    }
    router
}

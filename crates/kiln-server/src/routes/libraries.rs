//! Libraries API 2.0 and the deprecated REST API 1.2 library calls.

use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};
use axum::{Extension, Json};
use kiln_api::libraries as wire;
use kiln_api::Empty;
use kiln_compute::libraries::{LibraryRecord, LibraryStatus};
use kiln_core::Error;
use serde_json::json;

use super::{ep, Endpoint};
use crate::access::{can_see_cluster, require_cluster};
use crate::error::ApiResult;
use crate::extract::Params;
use crate::state::AppState;
use kiln_identity::Caller;

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    vec![
        ep(
            M::POST,
            "/api/2.0/libraries/install",
            "libraries/install",
            post(install),
        ),
        ep(
            M::POST,
            "/api/2.0/libraries/uninstall",
            "libraries/uninstall",
            post(uninstall),
        ),
        ep(
            M::GET,
            "/api/2.0/libraries/cluster-status",
            "libraries/cluster-status",
            get(cluster_status),
        ),
        ep(
            M::GET,
            "/api/2.0/libraries/all-cluster-statuses",
            "libraries/all-cluster-statuses",
            get(all_cluster_statuses),
        ),
        ep(
            M::GET,
            "/api/1.2/libraries/list",
            "libraries/list (1.2)",
            get(list_v12),
        ),
        ep(
            M::POST,
            "/api/1.2/libraries/upload",
            "libraries/upload (1.2)",
            post(upload_v12),
        ),
    ]
}

fn full_status(record: LibraryRecord) -> wire::LibraryFullStatus {
    wire::LibraryFullStatus {
        library: record.library,
        status: record.status.as_str().into(),
        messages: record.messages,
        is_library_for_all_clusters: false,
    }
}

fn require_some(libraries: &[serde_json::Value]) -> Result<(), Error> {
    if libraries.is_empty() {
        return Err(Error::invalid("libraries must name at least one library"));
    }
    Ok(())
}

async fn install(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::InstallLibraries>,
) -> ApiResult<Json<Empty>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_MANAGE")?;
    crate::access::require_code_execution(&state, &caller)?;
    require_some(&req.libraries)?;
    for library in &req.libraries {
        require_volume_read(&state, &caller, library)?;
    }
    state.libraries.install(&req.cluster_id, &req.libraries)?;
    Ok(Json(Empty {}))
}

/// A wheel or requirements file in a volume needs `READ_VOLUME` on it.
fn require_volume_read(
    state: &AppState,
    caller: &Caller,
    library: &serde_json::Value,
) -> Result<(), Error> {
    let path = ["whl", "requirements"]
        .iter()
        .find_map(|kind| library.get(kind).and_then(|v| v.as_str()));
    let Some(path) = path.filter(|p| p.starts_with("/Volumes/")) else {
        return Ok(());
    };
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() < 6 {
        return Err(Error::invalid(format!("{path} is not a file in a volume")));
    }
    let volume = state
        .catalog
        .get_volume(&format!("{}.{}.{}", parts[2], parts[3], parts[4]))?;
    super::uc_volumes::require_privilege(state, caller, &volume, kiln_catalog::READ_VOLUME)
}

async fn uninstall(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::InstallLibraries>,
) -> ApiResult<Json<Empty>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_MANAGE")?;
    require_some(&req.libraries)?;
    state.libraries.uninstall(&req.cluster_id, &req.libraries)?;
    Ok(Json(Empty {}))
}

async fn cluster_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::ClusterStatus>,
) -> ApiResult<Json<wire::ClusterLibraryStatuses>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_ATTACH_TO")?;
    let statuses = state.libraries.statuses(&req.cluster_id)?;
    Ok(Json(wire::ClusterLibraryStatuses {
        cluster_id: req.cluster_id,
        library_statuses: statuses.into_iter().map(full_status).collect(),
    }))
}

async fn all_cluster_statuses(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<wire::ListAllClusterLibraryStatusesResponse>> {
    let statuses = state
        .libraries
        .all_statuses()?
        .into_iter()
        .filter(|(cluster_id, _)| {
            state
                .clusters
                .get(cluster_id)
                .is_ok_and(|c| can_see_cluster(&state, &caller, cluster_id, &c.owner))
        })
        .map(|(cluster_id, records)| wire::ClusterLibraryStatuses {
            cluster_id,
            library_statuses: records.into_iter().map(full_status).collect(),
        })
        .collect();
    Ok(Json(wire::ListAllClusterLibraryStatusesResponse {
        statuses,
    }))
}

async fn list_v12(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::ListLibrariesV12>,
) -> ApiResult<Json<Vec<wire::LibraryV12>>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_ATTACH_TO")?;
    let libraries = state.libraries.statuses(&req.cluster_id)?;
    Ok(Json(
        libraries
            .into_iter()
            .map(|r| wire::LibraryV12 {
                name: r.name.clone().unwrap_or_else(|| {
                    r.key
                        .split_once(':')
                        .map(|(_, name)| name.trim_end_matches('@').to_string())
                        .unwrap_or(r.key.clone())
                }),
                status: match r.status {
                    LibraryStatus::Installed | LibraryStatus::UninstallOnRestart => "LibraryLoaded",
                    LibraryStatus::Failed => "LibraryError",
                    LibraryStatus::Pending | LibraryStatus::Installing => "LibraryPending",
                }
                .into(),
            })
            .collect(),
    ))
}

/// Registers a Python library from a URI: `dbfs:/…` wheels, http(s) URLs pip
/// fetches, or (admins only) a `file:` wheel on Kiln's host, copied into DBFS.
async fn upload_v12(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Params(req): Params<wire::UploadLibraryV12>,
) -> ApiResult<Json<wire::UploadLibraryV12Response>> {
    require_cluster(&state, &caller, &req.cluster_id, "CAN_MANAGE")?;
    crate::access::require_code_execution(&state, &caller)?;
    if !req.language.eq_ignore_ascii_case("python") {
        return Err(Error::invalid(format!(
            "Libraries of language {} are not supported: Kiln clusters run Python (Sail).",
            req.language
        ))
        .into());
    }
    let library = if req.uri.starts_with("dbfs:/") && req.uri.ends_with(".whl") {
        json!({"whl": req.uri})
    } else if req.uri.starts_with("http://") || req.uri.starts_with("https://") {
        // A direct reference (`name @ url`), never a pip option.
        json!({"pypi": {"package": kiln_compute::validate::wheel_url_requirement(&req.uri)?}})
    } else if let Some(path) = req.uri.strip_prefix("file:") {
        json!({"whl": host_wheel_to_dbfs(&state, &caller, path)?})
    } else {
        return Err(
            Error::invalid("uri must be a dbfs:/ or file: wheel, or an http(s) URL").into(),
        );
    };
    state
        .libraries
        .install_named(&req.cluster_id, &[library], req.name.as_deref())?;
    Ok(Json(wire::UploadLibraryV12Response {
        language: req.language,
        uri: req.uri,
    }))
}

/// A `file:` URI names a file on Kiln's host, so only admins may use one. It
/// must be an absolute path to a `.whl` outside Kiln's data dir (Kiln's
/// private state is never a library source); its bytes are copied into DBFS
/// under `/FileStore/libraries/` and installed from there.
fn host_wheel_to_dbfs(state: &AppState, caller: &Caller, uri_path: &str) -> Result<String, Error> {
    if !caller.admin {
        return Err(Error::new(
            kiln_core::ErrorCode::PermissionDenied,
            "file: URIs read files on Kiln's host and are for workspace admins; upload the wheel to DBFS and use its dbfs:/ URI",
        ));
    }
    let path = std::path::Path::new(uri_path.trim_start_matches("//"));
    let refused = |why: &str| Error::invalid(format!("uri file:{uri_path}: {why}"));
    if !path.is_absolute()
        || path
            .components()
            .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(refused("must be an absolute path without '..'"));
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| n.ends_with(".whl"))
        .ok_or_else(|| refused("must name a .whl file"))?;
    let real = path.canonicalize().map_err(|e| refused(&e.to_string()))?;
    let private = state.config.data_dir.canonicalize().unwrap_or_default();
    if real.starts_with(&private) || !real.is_file() {
        return Err(refused("is not a wheel Kiln may read"));
    }
    let bytes =
        kiln_core::blocking::run(|| std::fs::read(&real).map_err(|e| refused(&e.to_string())))?;
    let target = format!("/FileStore/libraries/{name}");
    kiln_core::blocking::run(|| state.dbfs.put(&target, &bytes, true))?;
    Ok(format!("dbfs:{target}"))
}

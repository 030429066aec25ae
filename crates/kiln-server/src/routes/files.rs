//! Files API 2.0 (`/api/2.0/fs/files{path}`, `/api/2.0/fs/directories{path}`)
//! on Unity Catalog volumes: `/Volumes/<catalog>/<schema>/<volume>/…`.
//!
//! Bodies stream: an upload goes to a temporary file beside its target and is
//! renamed into place once complete and synced (a reader never sees half a
//! file); a download streams from disk, `Range` included. Paths never leave
//! their volume: `.`/`..` segments are refused and so is any symlink on the way.
//! Reads need `READ_VOLUME`, writes `WRITE_VOLUME` (owners and admins hold both).

use std::path::{Component, PathBuf};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, head, put};
use axum::{Extension, Json};
use futures_util::StreamExt as _;
use kiln_api::files as wire;
use kiln_catalog::{VolumeInfo, READ_VOLUME, WRITE_VOLUME};
use kiln_core::{Error, ErrorCode, Result};
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};

use super::files_object as object;
use super::uc_volumes::require_privilege;
use super::{ep, Endpoint};
use crate::error::{ApiError, ApiResult};
use crate::extract::from_query;
use crate::state::AppState;
use kiln_identity::Caller;

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    let files = "/api/2.0/fs/files/{*path}";
    let dirs = "/api/2.0/fs/directories/{*path}";
    vec![
        ep(M::GET, files, "files/download", get(download)),
        ep(M::PUT, files, "files/upload", put(upload)),
        ep(M::DELETE, files, "files/delete", delete(delete_file)),
        ep(M::HEAD, files, "files/get-metadata", head(head_file)),
        ep(
            M::GET,
            dirs,
            "files/list-directory-contents",
            get(list_directory),
        ),
        ep(
            M::PUT,
            dirs,
            "files/create-directory",
            put(create_directory),
        ),
        ep(
            M::DELETE,
            dirs,
            "files/delete-directory",
            delete(delete_directory),
        ),
        ep(
            M::HEAD,
            dirs,
            "files/get-directory-metadata",
            head(head_directory),
        ),
    ]
}

/// A path inside a volume, resolved to its local file.
pub(super) struct Target {
    pub(super) volume: VolumeInfo,
    /// What the user wrote, normalised (`/Volumes/c/s/v/a/b`).
    pub(super) path: String,
    pub(super) local: PathBuf,
    /// On the object-store root: the path below it (`volumes/c/s/v/a/b`).
    /// File bytes go through Kiln's storage layer; directories are made and
    /// removed at `local`, on the FUSE mount (s3fs's directory markers).
    pub(super) object: Option<String>,
}

fn resolve(state: &AppState, raw: &str) -> Result<Target> {
    let path = format!("/{}", raw.trim_start_matches('/'));
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let bad = || {
        Error::invalid(format!(
            "Invalid path {path}: use /Volumes/<catalog>/<schema>/<volume>/…"
        ))
    };
    if parts.len() < 4 || parts[0] != "Volumes" {
        return Err(bad());
    }
    let rest: Vec<&str> = parts[4..]
        .iter()
        .copied()
        .filter(|p| !p.is_empty())
        .collect();
    if rest
        .iter()
        .any(|p| *p == "." || *p == ".." || p.contains('\0'))
    {
        return Err(Error::invalid(format!(
            "Invalid path {path}: '.' and '..' are not allowed"
        )));
    }
    let volume = state
        .catalog
        .get_volume(&format!("{}.{}.{}", parts[1], parts[2], parts[3]))?;
    let root = state.catalog.volume_dir(&volume);
    let mut local = root.clone();
    for part in &rest {
        local.push(part);
        // No symlink anywhere on the way (a link could lead out of the volume).
        if local
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            return Err(Error::invalid(format!(
                "Invalid path {path}: it crosses a symbolic link"
            )));
        }
    }
    if local
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(bad());
    }
    // The volume's own directory (and those above it) could have been
    // replaced by a link by code on a cluster: what the path resolves to
    // must be inside the volume's real root.
    state.catalog.confine(&volume, &local)?;
    let path = format!("{}/{}", volume.path(), rest.join("/"));
    // On the object-store root, the same path below it (its mount is `local`).
    let object = (state.storage.is_some() && volume.storage_location.is_none()).then(|| {
        let rel = format!("dbfs{}/{}", volume.path(), rest.join("/"));
        rel.trim_end_matches('/').to_string()
    });
    Ok(Target {
        volume,
        path: path.trim_end_matches('/').to_string(),
        local,
        object,
    })
}

pub(super) fn target_for(
    state: &AppState,
    caller: &Caller,
    raw: &str,
    privilege: &str,
) -> Result<Target> {
    target(state, caller, raw, privilege)
}

fn target(state: &AppState, caller: &Caller, raw: &str, privilege: &str) -> Result<Target> {
    let target = resolve(state, raw)?;
    require_privilege(state, caller, &target.volume, privilege)?;
    Ok(target)
}

pub(super) fn not_found(path: &str) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!("The file {path} does not exist."),
    )
}

async fn upload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
    request: Request,
) -> ApiResult<Response> {
    let query: wire::Upload = from_query(request.uri().query().unwrap_or(""))?;
    if query.action.is_some() {
        return Err(
            Error::invalid("actions are POSTed: POST /api/2.0/fs/files{path}?action=…").into(),
        );
    }
    let target = target(&state, &caller, &raw, WRITE_VOLUME)?;
    let overwrite = query.overwrite.unwrap_or(false);
    if let Some((root, rel)) = on_object_store(&state, &target) {
        return object::upload(root, rel, &target, overwrite, request.into_body()).await;
    }
    if target.local.is_dir() {
        return Err(Error::invalid(format!("{} is a directory", target.path)).into());
    }
    if target.local.exists() && !overwrite {
        return Err(Error::new(
            ErrorCode::AlreadyExists,
            format!("The file {} already exists.", target.path),
        )
        .into());
    }
    let parent = target
        .local
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| Error::invalid("no parent"))?;
    tokio::fs::create_dir_all(&parent)
        .await
        .map_err(|e| Error::internal("create the directory", e))?;
    let temp = parent.join(format!(".kiln-upload-{}", kiln_core::ids::random_hex(8)));
    let written = write_body(&temp, request.into_body()).await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(e.into());
    }
    if let Err(e) = tokio::fs::rename(&temp, &target.local).await {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(Error::internal("store the file", e).into());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn write_body(temp: &std::path::Path, body: Body) -> Result<()> {
    let mut file = tokio::fs::File::create(temp)
        .await
        .map_err(|e| Error::internal("create the file", e))?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Error::new(
                ErrorCode::MalformedRequest,
                format!("the upload broke off: {e}"),
            )
        })?;
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::internal("write the file", e))?;
    }
    file.sync_all()
        .await
        .map_err(|e| Error::internal("sync the file", e))
}

/// `Range: bytes=a-b` / `a-` / `-n` within `size`, as (start, end inclusive).
pub(super) fn range_of(
    headers: &HeaderMap,
    size: u64,
) -> Option<std::result::Result<(u64, u64), ()>> {
    let value = headers.get(header::RANGE)?.to_str().ok()?;
    let spec = value.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let parsed = match (a.trim(), b.trim()) {
        ("", n) => n
            .parse::<u64>()
            .ok()
            .map(|n| (size.saturating_sub(n), size.saturating_sub(1))),
        (a, "") => a.parse::<u64>().ok().map(|a| (a, size.saturating_sub(1))),
        (a, b) => a
            .parse::<u64>()
            .ok()
            .zip(b.parse::<u64>().ok())
            .map(|(a, b)| (a, b.min(size.saturating_sub(1)))),
    };
    Some(match parsed {
        Some((start, end)) if start <= end && start < size => Ok((start, end)),
        _ => Err(()),
    })
}

pub(super) fn file_headers(response: &mut Response, size: u64, modified_ms: i64) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&kiln_core::time::http_date(modified_ms)) {
        headers.insert(header::LAST_MODIFIED, v);
    }
}

fn modified_ms(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn download(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let target = target(&state, &caller, &raw, READ_VOLUME)?;
    if let Some((root, rel)) = on_object_store(&state, &target) {
        return object::download(root, rel, &target.path, &headers).await;
    }
    let meta = tokio::fs::metadata(&target.local)
        .await
        .ok()
        .filter(|m| m.is_file())
        .ok_or_else(|| not_found(&target.path))?;
    let size = meta.len();
    let mut file = tokio::fs::File::open(&target.local)
        .await
        .map_err(|_| not_found(&target.path))?;
    let (status, start, length) = match range_of(&headers, size) {
        None => (StatusCode::OK, 0, size),
        Some(Ok((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Some(Err(())) => {
            let mut response = ApiError(Error::invalid(format!(
                "Range not satisfiable for a file of {size} bytes"
            )))
            .into_response();
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            return Ok(response);
        }
    };
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|e| Error::internal("read the file", e))?;
    let reader = tokio::io::AsyncReadExt::take(file, length);
    let mut response = Response::new(Body::from_stream(
        tokio_util::io::ReaderStream::with_capacity(reader, 256 * 1024),
    ));
    *response.status_mut() = status;
    file_headers(&mut response, length, modified_ms(&meta));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(v) =
            HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + length - 1))
        {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

async fn head_file(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let target = target(&state, &caller, &raw, READ_VOLUME)?;
    if let Some((root, rel)) = on_object_store(&state, &target) {
        return object::head_file(root, rel, &target.path).await;
    }
    let meta = tokio::fs::metadata(&target.local)
        .await
        .ok()
        .filter(|m| m.is_file())
        .ok_or_else(|| not_found(&target.path))?;
    let mut response = StatusCode::OK.into_response();
    file_headers(&mut response, meta.len(), modified_ms(&meta));
    Ok(response)
}

async fn delete_file(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let target = target(&state, &caller, &raw, WRITE_VOLUME)?;
    if let Some((root, rel)) = on_object_store(&state, &target) {
        return object::delete_file(root, rel, &target.path).await;
    }
    if !target.local.is_file() {
        return Err(not_found(&target.path).into());
    }
    tokio::fs::remove_file(&target.local)
        .await
        .map_err(|e| Error::internal("delete the file", e))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create_directory(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let target = target(&state, &caller, &raw, WRITE_VOLUME)?;
    if target.local.is_file() {
        return Err(Error::new(
            ErrorCode::AlreadyExists,
            format!("{} is a file", target.path),
        )
        .into());
    }
    tokio::fs::create_dir_all(&target.local)
        .await
        .map_err(|e| Error::internal("create the directory", e))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn head_directory(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let target = target(&state, &caller, &raw, READ_VOLUME)?;
    if !target.local.is_dir() {
        return Err(not_found(&target.path).into());
    }
    Ok(StatusCode::OK.into_response())
}

async fn delete_directory(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
) -> ApiResult<Response> {
    let target = target(&state, &caller, &raw, WRITE_VOLUME)?;
    if target.local == state.catalog.volume_dir(&target.volume) {
        return Err(
            Error::invalid("The volume's root cannot be deleted; delete the volume").into(),
        );
    }
    if !target.local.is_dir() {
        return Err(not_found(&target.path).into());
    }
    tokio::fs::remove_dir(&target.local)
        .await
        .map_err(|_| Error::invalid(format!("The directory {} is not empty.", target.path)))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_directory(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
    request: Request,
) -> ApiResult<Json<wire::ListDirectoryResponse>> {
    let query: wire::ListDirectory = from_query(request.uri().query().unwrap_or(""))?;
    let target = target(&state, &caller, &raw, READ_VOLUME)?;
    let entries = match on_object_store(&state, &target) {
        Some((root, rel)) => object::list_directory(root, rel, &target).await?,
        None => local_entries(&target)?,
    };
    let size = query.page_size.filter(|n| *n > 0).unwrap_or(1000);
    let (contents, next) = super::offset_page(entries, query.page_token.as_deref(), size)?;
    Ok(Json(wire::ListDirectoryResponse {
        contents,
        next_page_token: next,
    }))
}

fn local_entries(target: &Target) -> Result<Vec<wire::DirectoryEntry>> {
    if !target.local.is_dir() {
        return Err(not_found(&target.path));
    }
    kiln_core::blocking::run(|| {
        let mut entries: Vec<wire::DirectoryEntry> = std::fs::read_dir(&target.local)
            .map_err(|e| Error::internal("list the directory", e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let meta = e.metadata().ok()?;
                (!name.starts_with(".kiln-upload-")).then(|| wire::DirectoryEntry {
                    path: format!("{}/{name}", target.path),
                    is_directory: meta.is_dir(),
                    file_size: meta.is_file().then_some(meta.len()),
                    last_modified: modified_ms(&meta),
                    name,
                })
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok::<_, Error>(entries)
    })
}

/// The object-store root and the target's path below it, when the target's
/// volume lives there.
fn on_object_store<'a>(
    state: &'a AppState,
    target: &'a Target,
) -> Option<(&'a kiln_storage::ObjectRoot, &'a str)> {
    Some((state.storage.as_deref()?, target.object.as_deref()?))
}

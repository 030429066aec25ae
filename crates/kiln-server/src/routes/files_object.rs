//! The Files API on volumes kept on the object-store root: extracts were done
//! by `files`; the bytes move through `kiln_storage` (streamed both ways).

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_api::files as wire;
use kiln_core::{Error, ErrorCode, Result};
use kiln_storage::ObjectRoot;

use super::files::{file_headers, not_found, range_of, Target};
use crate::error::{ApiError, ApiResult};

/// Whether `rel` is the volume's own root (always a directory).
fn is_volume_root(target: &Target) -> bool {
    target.path == target.volume.path()
}

pub(super) async fn upload(
    root: &ObjectRoot,
    rel: &str,
    target: &Target,
    overwrite: bool,
    body: Body,
) -> ApiResult<Response> {
    let path = &target.path;
    if root.is_dir(rel).await? {
        return Err(Error::invalid(format!("{path} is a directory")).into());
    }
    // No file where a directory on the way would be (`a.txt/b` under a file `a.txt`).
    let volume_root = target.volume.path();
    let mut ancestor = rel;
    let mut shown = path.as_str();
    while let (Some((up, _)), Some((up_shown, _))) =
        (ancestor.rsplit_once('/'), shown.rsplit_once('/'))
    {
        if up_shown.len() <= volume_root.len() {
            break;
        }
        if root.head(up).await?.is_some() {
            return Err(Error::invalid(format!("{up_shown} is a file")).into());
        }
        (ancestor, shown) = (up, up_shown);
    }
    if !overwrite && root.head(rel).await?.is_some() {
        return Err(Error::new(
            ErrorCode::AlreadyExists,
            format!("The file {path} already exists."),
        )
        .into());
    }
    root.write(rel, body.into_data_stream(), overwrite)
        .await
        .map_err(|e| match e.code {
            ErrorCode::AlreadyExists => Error::new(
                ErrorCode::AlreadyExists,
                format!("The file {path} already exists."),
            ),
            _ => e,
        })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn download(
    root: &ObjectRoot,
    rel: &str,
    path: &str,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let meta = root.head(rel).await?.ok_or_else(|| not_found(path))?;
    let size = meta.size;
    let (status, range) = match range_of(headers, size) {
        None => (StatusCode::OK, None),
        Some(Ok(range)) => (StatusCode::PARTIAL_CONTENT, Some(range)),
        Some(Err(())) => {
            let mut response = ApiError(Error::invalid(format!(
                "Range not satisfiable for a file of {size} bytes"
            )))
            .into_response();
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            return Ok(response);
        }
    };
    // An empty object has no bytes to range over.
    let stream = if size == 0 {
        Body::empty()
    } else {
        Body::from_stream(root.read(rel, &meta, range).await.map_err(|e| {
            if e.code == ErrorCode::NotFound {
                not_found(path)
            } else {
                e
            }
        })?)
    };
    let mut response = Response::new(stream);
    *response.status_mut() = status;
    let length = range.map(|(a, b)| b - a + 1).unwrap_or(size);
    file_headers(&mut response, length, meta.modified_ms);
    if let Some((start, end)) = range {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

pub(super) async fn head_file(root: &ObjectRoot, rel: &str, path: &str) -> ApiResult<Response> {
    let meta = root.head(rel).await?.ok_or_else(|| not_found(path))?;
    let mut response = StatusCode::OK.into_response();
    file_headers(&mut response, meta.size, meta.modified_ms);
    Ok(response)
}

pub(super) async fn delete_file(root: &ObjectRoot, rel: &str, path: &str) -> ApiResult<Response> {
    if root.head(rel).await?.is_none() {
        return Err(not_found(path).into());
    }
    root.delete_file(rel).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn list_directory(
    root: &ObjectRoot,
    rel: &str,
    target: &Target,
) -> Result<Vec<wire::DirectoryEntry>> {
    let entries = root.list_dir(rel).await?;
    if entries.is_empty() && !is_volume_root(target) && !target.local.is_dir() {
        return Err(not_found(&target.path));
    }
    Ok(entries
        .into_iter()
        .map(|e| wire::DirectoryEntry {
            path: format!("{}/{}", target.path, e.name),
            is_directory: e.is_directory,
            file_size: e.size,
            last_modified: e.modified_ms,
            name: e.name,
        })
        .collect())
}

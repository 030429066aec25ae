//! The Files API's multipart upload, as `w.files.upload` drives it for large
//! files: `POST fs/files{path}?action=initiate-upload`, `POST
//! fs/create-upload-part-urls` (signed URLs on Kiln itself), `PUT` of each part
//! to its URL (no credentials: the signature is the credential), `POST
//! fs/files{path}?action=complete-upload`, and `create-abort-upload-url`.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Extension, Json};
use std::path::PathBuf;

use futures_util::StreamExt as _;
use kiln_catalog::WRITE_VOLUME;
use kiln_core::{Error, ErrorCode, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::files::{target_for, Target};
use super::{ep, Endpoint};
use crate::error::ApiResult;
use crate::extract::{from_query, Params};
use crate::listen::Scheme;
use crate::state::AppState;
use kiln_identity::Caller;

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    vec![
        ep(
            M::POST,
            "/api/2.0/fs/files/{*path}",
            "files/upload-action",
            post(action),
        ),
        ep(
            M::POST,
            "/api/2.0/fs/create-upload-part-urls",
            "files/create-upload-part-urls",
            post(part_urls),
        ),
        ep(
            M::POST,
            "/api/2.0/fs/create-abort-upload-url",
            "files/create-abort-upload-url",
            post(abort_url),
        ),
        ep(
            M::PUT,
            "/api/2.0/fs/upload-parts/{token}/{part}",
            "files/upload-part",
            put(upload_part).delete(abort),
        ),
    ]
}

#[derive(Deserialize)]
struct ActionQuery {
    action: Option<String>,
    overwrite: Option<bool>,
    session_token: Option<String>,
}

#[derive(Deserialize)]
struct CompleteBody {
    #[serde(default)]
    parts: Vec<PartRef>,
}

#[derive(Deserialize)]
struct PartRef {
    part_number: u32,
    etag: String,
}

async fn action(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(raw): Path<String>,
    request: Request,
) -> ApiResult<Json<Value>> {
    let query: ActionQuery = from_query(request.uri().query().unwrap_or(""))?;
    let target = target_for(&state, &caller, &raw, WRITE_VOLUME)?;
    match query.action.as_deref() {
        Some("initiate-upload") => {
            let overwrite = query.overwrite.unwrap_or(true);
            refuse_existing(&state, &target, overwrite).await?;
            for expired in state.uploads.take_expired() {
                abort_object_upload(&state, expired);
            }
            let (parent, object) = match (state.storage.as_deref(), &target.object) {
                (Some(root), Some(rel)) => (
                    state.config.data_dir.join("uploads"),
                    Some((rel.clone(), root.start_upload(rel).await?)),
                ),
                _ => (
                    target.local.parent().map(PathBuf::from).unwrap_or_default(),
                    None,
                ),
            };
            let started = state.uploads.start(
                &caller.principal_id,
                &target.path,
                target.local.clone(),
                parent,
                overwrite,
                object.clone(),
            );
            let token = match started {
                Ok(token) => token,
                Err(e) => {
                    if let (Some(root), Some((rel, id))) = (state.storage.as_deref(), object) {
                        let _ = root.abort_upload(&rel, &id).await;
                    }
                    return Err(e.into());
                }
            };
            Ok(Json(json!({"multipart_upload": {"session_token": token}})))
        }
        Some("complete-upload") => {
            let token = query.session_token.unwrap_or_default();
            let session = state
                .uploads
                .session(&token, &caller.principal_id, &target.path)?;
            let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                .await
                .map_err(|e| Error::new(ErrorCode::MalformedRequest, e.to_string()))?;
            let complete: CompleteBody = crate::extract::from_json(&body)?;
            refuse_existing(&state, &target, session.overwrite).await?;
            match (state.storage.as_deref(), &session.object) {
                (Some(root), Some((rel, id))) => {
                    let etags = stored_etags(&session, &complete.parts)?;
                    root.complete_upload(rel, id, etags).await?;
                }
                _ => {
                    let parts = session.parts_dir.clone();
                    let destination = session.target.clone();
                    kiln_core::blocking::run(|| join_parts(&parts, &complete.parts, &destination))?;
                }
            }
            state.uploads.finish(&token);
            Ok(Json(json!({})))
        }
        other => Err(Error::invalid(format!("Unsupported action {other:?}")).into()),
    }
}

async fn refuse_existing(state: &AppState, target: &Target, overwrite: bool) -> Result<()> {
    if overwrite {
        return Ok(());
    }
    let exists = match (state.storage.as_deref(), target.object.as_deref()) {
        (Some(root), Some(rel)) => root.head(rel).await?.is_some(),
        _ => target.local.exists(),
    };
    if exists {
        return Err(Error::new(
            ErrorCode::AlreadyExists,
            format!("The file {} already exists.", target.path),
        ));
    }
    Ok(())
}

/// At least one part, in ascending `part_number` order.
fn check_order(parts: &[PartRef]) -> Result<()> {
    if parts.is_empty() {
        return Err(Error::invalid("parts: at least one part is required"));
    }
    if parts
        .windows(2)
        .any(|w| w[0].part_number >= w[1].part_number)
    {
        return Err(Error::invalid(
            "parts must be in ascending part_number order",
        ));
    }
    Ok(())
}

/// The parts' files, in order, once each is there with the etag the client gave.
fn checked_parts(dir: &std::path::Path, parts: &[PartRef]) -> Result<Vec<PathBuf>> {
    check_order(parts)?;
    let mut files = Vec::with_capacity(parts.len());
    for part in parts {
        let etag = std::fs::read_to_string(dir.join(format!("{}.etag", part.part_number)))
            .unwrap_or_default();
        if etag != part.etag.trim_matches('"') {
            return Err(Error::invalid(format!(
                "part {} is missing or its etag does not match",
                part.part_number
            )));
        }
        files.push(dir.join(part.part_number.to_string()));
    }
    Ok(files)
}

/// The object store's etags of the parts the client names, in order, once
/// each was stored with the etag the client gives.
fn stored_etags(session: &crate::uploads::Session, parts: &[PartRef]) -> Result<Vec<String>> {
    check_order(parts)?;
    let mut etags = Vec::with_capacity(parts.len());
    for part in parts {
        match session.parts.get(&part.part_number) {
            Some(etag) if etag.trim_matches('"') == part.etag.trim_matches('"') => {
                etags.push(etag.clone())
            }
            _ => {
                return Err(Error::invalid(format!(
                    "part {} is missing or its etag does not match",
                    part.part_number
                )))
            }
        }
    }
    Ok(etags)
}

/// A part's bytes, read once its share of the part budget is free (its
/// `Content-Length` says how much; the permit is held until it is stored).
async fn read_part(
    state: &AppState,
    request: Request,
) -> Result<(bytes::Bytes, tokio::sync::SemaphorePermit<'_>)> {
    let length: usize = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .ok_or_else(|| Error::invalid("a part needs a Content-Length"))?;
    let max = kiln_storage::multipart::MAX_PART;
    if length > max {
        return Err(Error::invalid(format!(
            "a part may be at most {} MiB",
            max >> 20
        )));
    }
    let mib = (length.div_ceil(1 << 20) as u32).clamp(1, crate::uploads::PART_BUDGET_MIB);
    let permit = state
        .uploads
        .part_budget
        .acquire_many(mib)
        .await
        .map_err(|e| Error::internal("wait for memory", e))?;
    let mut data = bytes::BytesMut::with_capacity(length);
    let mut stream = request.into_body().into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Error::new(
                ErrorCode::MalformedRequest,
                format!("the part broke off: {e}"),
            )
        })?;
        if data.len() + chunk.len() > length {
            return Err(Error::invalid("the part is longer than its Content-Length"));
        }
        data.extend_from_slice(&chunk);
    }
    if data.len() != length {
        return Err(Error::new(
            ErrorCode::MalformedRequest,
            "the part broke off before its Content-Length",
        ));
    }
    Ok((data.freeze(), permit))
}

/// Aborts an ended session's object-store upload (in the background).
fn abort_object_upload(state: &AppState, session: crate::uploads::Session) {
    if let (Some(root), Some((rel, id))) = (state.storage.clone(), session.object) {
        tokio::spawn(async move {
            if let Err(e) = root.abort_upload(&rel, &id).await {
                tracing::warn!(error = %e.message, "could not abort an upload");
            }
        });
    }
}

/// Joins the parts, in order, into a temporary file, then renames it onto the target.
fn join_parts(
    dir: &std::path::Path,
    parts: &[PartRef],
    destination: &std::path::Path,
) -> Result<()> {
    use std::io::Write as _;
    let files = checked_parts(dir, parts)?;
    let parent = destination
        .parent()
        .ok_or_else(|| Error::invalid("no parent"))?;
    let temp = parent.join(format!(".kiln-upload-{}", kiln_core::ids::random_hex(8)));
    let joined = (|| -> Result<()> {
        let mut out =
            std::fs::File::create(&temp).map_err(|e| Error::internal("join the parts", e))?;
        for path in &files {
            let mut input =
                std::fs::File::open(path).map_err(|e| Error::internal("join the parts", e))?;
            std::io::copy(&mut input, &mut out)
                .map_err(|e| Error::internal("join the parts", e))?;
        }
        out.flush()
            .and_then(|_| out.sync_all())
            .map_err(|e| Error::internal("join the parts", e))?;
        std::fs::rename(&temp, destination).map_err(|e| Error::internal("store the file", e))
    })();
    if joined.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    joined
}

#[derive(Deserialize)]
struct PartUrlsRequest {
    path: String,
    session_token: String,
    start_part_number: u32,
    count: u32,
}

#[derive(Deserialize)]
struct AbortUrlRequest {
    path: String,
    session_token: String,
}

/// URLs valid for one hour, on the host and scheme the client used.
fn signed_url(state: &AppState, base: &str, token: &str, part: &str) -> String {
    let expires = kiln_core::time::now_ms() / 1000 + 3600;
    format!(
        "{base}{}{token}/{part}?{}",
        crate::uploads::PART_PREFIX,
        state.uploads.sign(token, part, expires)
    )
}

async fn part_urls(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    scheme: Option<Extension<Scheme>>,
    uri: Uri,
    headers: HeaderMap,
    Params(req): Params<PartUrlsRequest>,
) -> ApiResult<Json<Value>> {
    state
        .uploads
        .session(&req.session_token, &caller.principal_id, &req.path)?;
    if req.count == 0 || req.count > 10_000 || req.start_part_number == 0 {
        return Err(Error::invalid("start_part_number must be positive and count 1..10000").into());
    }
    let base = super::identity::base_url(&headers, &uri, scheme);
    let urls: Vec<Value> = (req.start_part_number..req.start_part_number + req.count)
        .map(|n| json!({"part_number": n, "url": signed_url(&state, &base, &req.session_token, &n.to_string()), "headers": []}))
        .collect();
    Ok(Json(json!({"upload_part_urls": urls})))
}

async fn abort_url(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    scheme: Option<Extension<Scheme>>,
    uri: Uri,
    headers: HeaderMap,
    Params(req): Params<AbortUrlRequest>,
) -> ApiResult<Json<Value>> {
    state
        .uploads
        .session(&req.session_token, &caller.principal_id, &req.path)?;
    let base = super::identity::base_url(&headers, &uri, scheme);
    let url = signed_url(&state, &base, &req.session_token, "abort");
    Ok(Json(
        json!({"abort_upload_url": {"url": url, "method": "DELETE", "headers": []}}),
    ))
}

#[derive(Deserialize)]
struct Signed {
    expires: i64,
    signature: String,
}

fn check_signature(
    state: &AppState,
    token: &str,
    part: &str,
    uri: &Uri,
) -> Result<crate::uploads::Session> {
    let signed: Signed = from_query(uri.query().unwrap_or(""))
        .map_err(|_| Error::permission_denied("This upload URL is not signed"))?;
    if !state
        .uploads
        .verify(token, part, signed.expires, &signed.signature)
    {
        return Err(Error::permission_denied(
            "This upload URL is invalid or has expired",
        ));
    }
    state
        .uploads
        .by_token(token)
        .ok_or_else(|| Error::not_found("The upload session has ended"))
}

async fn upload_part(
    State(state): State<AppState>,
    Path((token, part)): Path<(String, String)>,
    request: Request,
) -> ApiResult<Response> {
    let session = check_signature(&state, &token, &part, request.uri())?;
    let number: u32 = part.parse().map_err(|_| Error::invalid("part number"))?;
    if let (Some(root), Some((rel, id))) = (state.storage.as_deref(), &session.object) {
        let (data, permit) = read_part(&state, request).await?;
        let etag = root.upload_part(rel, id, number, data).await?;
        drop(permit);
        state.uploads.record_part(&token, number, etag.clone())?;
        let mut response = StatusCode::OK.into_response();
        let quoted = format!("\"{}\"", etag.trim_matches('"'));
        if let Ok(value) = HeaderValue::from_str(&quoted) {
            response.headers_mut().insert(header::ETAG, value);
        }
        return Ok(response);
    }
    let path = session.parts_dir.join(number.to_string());
    let etag = write_part(&path, request.into_body()).await?;
    tokio::fs::write(session.parts_dir.join(format!("{number}.etag")), &etag)
        .await
        .map_err(|e| Error::internal("store the part", e))?;
    let mut response = StatusCode::OK.into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

/// Streams a part to disk (temp + rename); its etag is the SHA-256 of its bytes.
async fn write_part(path: &std::path::Path, body: Body) -> Result<String> {
    let temp = path.with_extension("partial");
    let mut file = tokio::fs::File::create(&temp)
        .await
        .map_err(|e| Error::internal("store the part", e))?;
    let mut hasher = Sha256::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            Error::new(
                ErrorCode::MalformedRequest,
                format!("the part broke off: {e}"),
            )
        })?;
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| Error::internal("store the part", e))?;
    }
    file.sync_all()
        .await
        .map_err(|e| Error::internal("store the part", e))?;
    tokio::fs::rename(&temp, path)
        .await
        .map_err(|e| Error::internal("store the part", e))?;
    Ok(hex::encode(hasher.finalize()))
}

async fn abort(
    State(state): State<AppState>,
    Path((token, part)): Path<(String, String)>,
    uri: Uri,
) -> ApiResult<Response> {
    if part != "abort" {
        return Err(Error::invalid("not an abort URL").into());
    }
    check_signature(&state, &token, &part, &uri)?;
    if let Some(session) = state.uploads.finish(&token) {
        abort_object_upload(&state, session);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

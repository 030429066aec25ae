//! DBFS API 2.0 over `<data_dir>/dbfs` (the files engines and dbutils.fs see).

use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};
use axum::Json;
use base64::Engine as _;
use kiln_api::dbfs as wire;
use kiln_api::Empty;
use kiln_core::blocking::run;
use kiln_core::Error;
use kiln_workspace::dbfs::FileInfo;

use super::{ep, Endpoint};
use crate::error::ApiResult;
use crate::extract::{base64_field, MultipartOr, Params};
use crate::state::AppState;

const D: &str = "/api/2.0/dbfs";

pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    vec![
        ep(
            M::GET,
            format!("{D}/get-status"),
            "dbfs/get-status",
            get(get_status),
        ),
        ep(M::GET, format!("{D}/list"), "dbfs/list", get(list)),
        ep(M::POST, format!("{D}/mkdirs"), "dbfs/mkdirs", post(mkdirs)),
        ep(M::POST, format!("{D}/put"), "dbfs/put", post(put)),
        ep(M::GET, format!("{D}/read"), "dbfs/read", get(read)),
        ep(M::POST, format!("{D}/delete"), "dbfs/delete", post(delete)),
        ep(M::POST, format!("{D}/move"), "dbfs/move", post(move_path)),
        ep(M::POST, format!("{D}/create"), "dbfs/create", post(create)),
        ep(
            M::POST,
            format!("{D}/add-block"),
            "dbfs/add-block",
            post(add_block),
        ),
        ep(M::POST, format!("{D}/close"), "dbfs/close", post(close)),
    ]
}

fn info(f: FileInfo) -> wire::FileInfo {
    wire::FileInfo {
        path: f.path,
        is_dir: f.is_dir,
        file_size: f.file_size,
        modification_time: f.modification_time,
    }
}

async fn get_status(
    State(state): State<AppState>,
    Params(req): Params<wire::PathRef>,
) -> ApiResult<Json<wire::FileInfo>> {
    Ok(Json(info(run(|| state.dbfs.get_status(&req.path))?)))
}

async fn list(
    State(state): State<AppState>,
    Params(req): Params<wire::PathRef>,
) -> ApiResult<Json<wire::ListStatusResponse>> {
    Ok(Json(wire::ListStatusResponse {
        files: run(|| state.dbfs.list(&req.path))?
            .into_iter()
            .map(info)
            .collect(),
    }))
}

async fn mkdirs(
    State(state): State<AppState>,
    Params(req): Params<wire::PathRef>,
) -> ApiResult<Json<Empty>> {
    run(|| state.dbfs.mkdirs(&req.path))?;
    Ok(Json(Empty {}))
}

/// Inline base64 `contents`, or multipart with the file as a raw part (named
/// `contents` by curl examples, `file` by the legacy CLI).
async fn put(
    State(state): State<AppState>,
    body: MultipartOr<wire::Put>,
) -> ApiResult<Json<Empty>> {
    let (path, contents, overwrite) = match body {
        MultipartOr::Params(req) => {
            let contents = base64_field("contents", req.contents.as_deref().unwrap_or(""))?;
            (req.path, contents, req.overwrite.unwrap_or(false))
        }
        MultipartOr::Multipart(form) => {
            let contents = form.file("contents").ok_or_else(|| {
                Error::invalid(
                    "Missing required field: contents (the multipart body has no file part)",
                )
            })?;
            (
                form.required("path")?,
                contents.to_vec(),
                form.flag("overwrite"),
            )
        }
    };
    run(|| state.dbfs.put(&path, &contents, overwrite))?;
    Ok(Json(Empty {}))
}

async fn read(
    State(state): State<AppState>,
    Params(req): Params<wire::Read>,
) -> ApiResult<Json<wire::ReadResponse>> {
    let data = run(|| {
        state
            .dbfs
            .read(&req.path, req.offset.unwrap_or(0), req.length)
    })?;
    Ok(Json(wire::ReadResponse {
        bytes_read: data.len() as u64,
        data: base64::engine::general_purpose::STANDARD.encode(data),
    }))
}

async fn delete(
    State(state): State<AppState>,
    Params(req): Params<wire::Delete>,
) -> ApiResult<Json<Empty>> {
    run(|| state.dbfs.delete(&req.path, req.recursive.unwrap_or(false)))?;
    Ok(Json(Empty {}))
}

async fn move_path(
    State(state): State<AppState>,
    Params(req): Params<wire::Move>,
) -> ApiResult<Json<Empty>> {
    run(|| {
        state
            .dbfs
            .move_path(&req.source_path, &req.destination_path)
    })?;
    Ok(Json(Empty {}))
}

async fn create(
    State(state): State<AppState>,
    Params(req): Params<wire::Create>,
) -> ApiResult<Json<wire::CreateResponse>> {
    Ok(Json(wire::CreateResponse {
        handle: run(|| state.dbfs.create(&req.path, req.overwrite.unwrap_or(false)))?,
    }))
}

async fn add_block(
    State(state): State<AppState>,
    Params(req): Params<wire::AddBlock>,
) -> ApiResult<Json<Empty>> {
    let data = base64_field("data", &req.data)?;
    run(|| state.dbfs.add_block(req.handle, &data))?;
    Ok(Json(Empty {}))
}

async fn close(
    State(state): State<AppState>,
    Params(req): Params<wire::Close>,
) -> ApiResult<Json<Empty>> {
    run(|| state.dbfs.close(req.handle))?;
    Ok(Json(Empty {}))
}

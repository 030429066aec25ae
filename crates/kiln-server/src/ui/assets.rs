//! The web UI's files, embedded in the binary at build time (`cargo build`
//! needs no Node): served under a versioned prefix with long-lived caching,
//! gzip-compressed when the browser accepts it (compressed once, on first use).

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

macro_rules! asset {
    ($path:literal, $mime:expr) => {
        (
            $path,
            $mime,
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $path)) as &[u8],
        )
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the UI: path under `ui/`, media type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/main.js", JS),
    asset!("js/api.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/compute.js", JS),
    asset!("js/workspace.js", JS),
    asset!("js/notebook.js", JS),
    asset!("js/results.js", JS),
    asset!("js/pipelines.js", JS),
    asset!("js/jobs.js", JS),
    asset!("js/sql.js", JS),
    asset!("js/graph.js", JS),
    asset!("js/catalog.js", JS),
    asset!("js/settings.js", JS),
    asset!("js/lakebase.js", JS),
    asset!("js/admin.js", JS),
    // Third-party code, bundled by scripts/build-ui-vendor (see VERSIONS.txt).
    asset!("vendor/editor.js", JS),
    asset!("vendor/layout.js", JS),
    asset!("vendor/VERSIONS.txt", "text/plain; charset=utf-8"),
    asset!("vendor/LICENSES.txt", "text/plain; charset=utf-8"),
];

pub struct Asset {
    pub mime: &'static str,
    pub raw: Vec<u8>,
    pub gzip: Vec<u8>,
}

pub struct Assets {
    /// A hash of every file: the prefix assets are served under.
    pub version: String,
    files: Vec<(&'static str, Asset)>,
}

/// The embedded files, with `index.html` naming the current version.
pub fn assets() -> &'static Assets {
    static ASSETS: OnceLock<Assets> = OnceLock::new();
    ASSETS.get_or_init(build)
}

fn build() -> Assets {
    let mut hash = Sha256::new();
    for (path, _, bytes) in FILES {
        hash.update(path.as_bytes());
        hash.update(bytes);
    }
    let version = hex::encode(&hash.finalize()[..6]);
    let files = FILES
        .iter()
        .map(|(path, mime, bytes)| {
            let raw = if *path == "index.html" {
                String::from_utf8_lossy(bytes)
                    .replace("{{VERSION}}", &version)
                    .into_bytes()
            } else {
                bytes.to_vec()
            };
            let gzip = gzip(&raw);
            (*path, Asset { mime, raw, gzip })
        })
        .collect();
    Assets { version, files }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    if encoder.write_all(bytes).is_err() {
        return Vec::new();
    }
    encoder.finish().unwrap_or_default()
}

impl Assets {
    pub fn get(&self, path: &str) -> Option<&Asset> {
        self.files.iter().find(|(p, _)| *p == path).map(|(_, a)| a)
    }
}

/// Serves one asset, compressed when the request accepts gzip.
pub fn respond(asset: &Asset, request: &HeaderMap, cache: &'static str) -> Response {
    let accepts_gzip = request
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let use_gzip = accepts_gzip && !asset.gzip.is_empty();
    let body = if use_gzip {
        asset.gzip.clone()
    } else {
        asset.raw.clone()
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.mime));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if use_gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_embedded_and_compressed() {
        let assets = assets();
        assert_eq!(assets.version.len(), 12);
        for (path, _, _) in FILES {
            let asset = assets.get(path);
            assert!(
                asset.is_some_and(|a| !a.raw.is_empty() && !a.gzip.is_empty()),
                "{path}"
            );
        }
        let index = assets
            .get("index.html")
            .map(|a| String::from_utf8_lossy(&a.raw).into_owned());
        assert!(index.is_some_and(|i| i.contains(&assets.version)
            && !i.contains("{{VERSION}}")
            && i.contains("{{NONCE}}")));
    }
}

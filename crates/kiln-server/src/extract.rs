//! Request extractors whose failures come out as Databricks errors naming the
//! field. `Params<T>` reads the parameters of an operation wherever clients put
//! them: the query string, a JSON body (any content type: the legacy CLI sends
//! `text/json`, curl's GET examples send JSON bodies) or a form body (REST 1.2
//! curl examples), with field errors such as
//! `Invalid value for field num_workers: invalid type: string "x", expected u32`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, Method};
use kiln_core::{Error, ErrorCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

const MAX_BODY: usize = 16 * 1024 * 1024;

/// Whether the request declared no body (no `Content-Length` but 0, no
/// `Transfer-Encoding`; an HTTP/2 request that ended with its headers).
pub fn declares_no_body(request: &Request) -> bool {
    axum::body::HttpBody::is_end_stream(request.body())
}

/// Operation parameters from query and/or body.
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let query = req.uri().query().unwrap_or("").to_string();
        let raw_content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let content_type = raw_content_type.to_ascii_lowercase();
        let declared_json = content_type.contains("json");
        let is_read = matches!(*req.method(), Method::GET | Method::DELETE);
        // A request that declared no body (most reads) is not collected.
        let body = if declares_no_body(&req) {
            Bytes::new()
        } else {
            Bytes::from_request(req, state).await.map_err(|e| {
                ApiError::new(
                    ErrorCode::MalformedRequest,
                    format!("cannot read the request body: {e}"),
                )
            })?
        };
        if body.len() > MAX_BODY {
            return Err(ApiError::new(
                ErrorCode::InvalidParameterValue,
                "request body too large",
            ));
        }
        let body_is_empty = body.iter().all(u8::is_ascii_whitespace);
        let parsed = if let Some(boundary) = multipart_boundary(&raw_content_type) {
            from_multipart(body, boundary).await
        } else if body_is_empty || (is_read && !query.is_empty()) {
            from_query(&query)
        } else if !declared_json && looks_like_form(&body) {
            from_query(&String::from_utf8_lossy(&body))
        } else {
            from_json(&body)
        };
        parsed.map(Params).map_err(ApiError)
    }
}

fn multipart_boundary(content_type: &str) -> Option<String> {
    // The REST API 1.2 docs send `Content-Type: multipart/form` (curl adds the
    // boundary), so any multipart type with a boundary is a form.
    if !content_type.to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

/// A multipart body as raw bytes per field, or the operation's parameters
/// from query/JSON/form: uploads carry file parts that are not text.
pub enum MultipartOr<T> {
    Multipart(Form),
    Params(T),
}

/// The fields of a multipart body, and which of them were file parts.
pub struct Form {
    fields: std::collections::HashMap<String, Bytes>,
    /// Names of the parts sent with a `filename` (file uploads), in order.
    files: Vec<String>,
}

impl Form {
    /// The uploaded file: the part named `preferred`, else the first file part
    /// whatever its name (the legacy CLI names it `file`). `None` when the body
    /// carries no file at all: an upload without data is an error, never an
    /// empty file.
    pub fn file(&self, preferred: &str) -> Option<&Bytes> {
        self.fields
            .get(preferred)
            .or_else(|| self.files.first().and_then(|name| self.fields.get(name)))
    }

    /// A field as text (lossy UTF-8).
    pub fn text(&self, name: &str) -> Option<String> {
        self.fields
            .get(name)
            .map(|b| String::from_utf8_lossy(b).to_string())
    }

    pub fn required(&self, name: &str) -> Result<String, Error> {
        self.text(name)
            .ok_or_else(|| Error::invalid(format!("Missing required field: {name}")))
    }

    /// Whether `name` was sent as a file part.
    pub fn is_file(&self, name: &str) -> bool {
        self.files.iter().any(|f| f == name)
    }

    /// Every field as text, as a JSON object (what `Params` would read).
    pub fn text_fields(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.fields
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).to_string().into()))
                .collect(),
        )
    }

    /// A boolean field (`true`, any case); absent is false.
    pub fn flag(&self, name: &str) -> bool {
        self.text(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// Decodes a base64 field, naming it in the error.
pub fn base64_field(field: &str, value: &str) -> Result<Vec<u8>, Error> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| Error::invalid(format!("Invalid value for field {field}: not base64")))
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for MultipartOr<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let boundary = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(multipart_boundary);
        let Some(boundary) = boundary else {
            return Params::<T>::from_request(req, state)
                .await
                .map(|Params(p)| Self::Params(p));
        };
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::new(
                ErrorCode::MalformedRequest,
                format!("cannot read the request body: {e}"),
            )
        })?;
        let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
        let mut form = multer::Multipart::new(stream, boundary);
        let mut fields = std::collections::HashMap::new();
        let mut files = Vec::new();
        let bad = |e: multer::Error| {
            ApiError::new(
                ErrorCode::MalformedRequest,
                format!("Malformed multipart body: {e}"),
            )
        };
        while let Some(field) = form.next_field().await.map_err(bad)? {
            let name = field.name().unwrap_or_default().to_string();
            if field.file_name().is_some() {
                files.push(name.clone());
            }
            fields.insert(name, field.bytes().await.map_err(bad)?);
        }
        Ok(Self::Multipart(Form { fields, files }))
    }
}

/// A multipart form (`curl --form command=@file.py`): every part, file or not,
/// becomes a text field.
async fn from_multipart<T: DeserializeOwned>(body: Bytes, boundary: String) -> Result<T, Error> {
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut fields = serde_json::Map::new();
    let bad = |e: multer::Error| {
        Error::new(
            ErrorCode::MalformedRequest,
            format!("Malformed multipart body: {e}"),
        )
    };
    while let Some(field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_string();
        let text = field.text().await.map_err(bad)?;
        fields.insert(name, serde_json::Value::String(text));
    }
    let json =
        serde_json::to_vec(&fields).map_err(|e| Error::internal("read a multipart body", e))?;
    from_json(&json)
}

/// A body declared JSON (`application/json`, the legacy CLI's `text/json`) is
/// JSON; otherwise its shape decides, because `curl --data '{…}'` labels JSON
/// as a form.
fn looks_like_form(body: &[u8]) -> bool {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    !matches!(first, Some(b'{') | Some(b'['))
}

/// Parses a query string (repeated keys become lists, numbers and booleans are
/// read from their text).
pub fn from_query<T: DeserializeOwned>(query: &str) -> Result<T, Error> {
    let de = serde_html_form::Deserializer::new(form_urlencoded_parse(query));
    serde_path_to_error::deserialize(de)
        .map_err(|e| field_error(e.path().to_string(), e.inner().to_string()))
}

fn form_urlencoded_parse(query: &str) -> form_urlencoded::Parse<'_> {
    form_urlencoded::parse(query.as_bytes())
}

/// Parses a JSON body, naming the offending field on failure.
pub fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => Ok(value),
        Err(e) if e.inner().is_syntax() || e.inner().is_eof() => Err(Error::new(
            ErrorCode::MalformedRequest,
            format!("Malformed JSON request body: {}", e.inner()),
        )),
        Err(e) => Err(field_error(e.path().to_string(), e.inner().to_string())),
    }
}

fn field_error(path: String, detail: String) -> Error {
    let detail = strip_position(&detail);
    if let Some(field) = detail
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        let full = if path == "." || path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        return Error::invalid(format!("Missing required field: {full}"));
    }
    if path == "." || path.is_empty() {
        return Error::invalid(format!("Invalid request: {detail}"));
    }
    Error::invalid(format!("Invalid value for field {path}: {detail}"))
}

/// serde_json appends " at line 1 column 20"; that helps nobody here.
fn strip_position(detail: &str) -> String {
    match detail.rfind(" at line ") {
        Some(i) => detail[..i].to_string(),
        None => detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Resize {
        cluster_id: String,
        num_workers: Option<u32>,
        #[serde(default)]
        states: Vec<String>,
    }

    fn message<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
        r.err()
            .map(|e| format!("{}: {}", e.code.as_str(), e.message))
            .unwrap_or_default()
    }

    #[test]
    fn names_the_field_with_a_wrong_type() {
        let got = message(from_json::<Resize>(
            br#"{"cluster_id": "c", "num_workers": "two"}"#,
        ));
        assert_eq!(
            got,
            r#"INVALID_PARAMETER_VALUE: Invalid value for field num_workers: invalid type: string "two", expected u32"#
        );
    }

    #[test]
    fn names_a_missing_field() {
        assert_eq!(
            message(from_json::<Resize>(b"{}")),
            "INVALID_PARAMETER_VALUE: Missing required field: cluster_id"
        );
    }

    #[test]
    fn malformed_json_is_its_own_error() {
        assert!(message(from_json::<Resize>(b"{\"cluster_id\": ")).starts_with("MALFORMED_REQUEST"));
    }

    #[test]
    fn multipart_boundaries() {
        let seed = "multipart/form; boundary=------------------------3ec90ac2803dcb25";
        assert_eq!(
            multipart_boundary(seed).as_deref(),
            Some("------------------------3ec90ac2803dcb25")
        );
        assert_eq!(
            multipart_boundary("multipart/form-data; boundary=\"AbC\"").as_deref(),
            Some("AbC")
        );
        assert_eq!(multipart_boundary("application/json"), None);
    }

    #[test]
    fn query_lists_and_numbers() -> Result<(), Error> {
        let r: Resize = from_query("cluster_id=c&num_workers=3&states=A&states=B")?;
        assert_eq!(r.num_workers, Some(3));
        assert_eq!(r.states, vec!["A", "B"]);
        Ok(())
    }
}

/// How a request reached Kiln (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

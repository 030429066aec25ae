//! The Databricks error body: `{"error_code": "...", "message": "..."}`.

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error_code: String,
    pub message: String,
}

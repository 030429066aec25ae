//! Kiln's shared vocabulary: the Databricks error model, id generation and the clock.
//!
//! Every crate reports failures as [`Error`], whose [`ErrorCode`] is one of the
//! `error_code` strings the Databricks SDK knows. The HTTP edge renders it once.

pub mod blocking;
pub mod error;
pub mod fuzz;
pub mod ids;
pub mod lifecycle;
pub mod process;
pub mod seal;
pub mod time;
pub mod tls;

pub use error::{Error, ErrorCode, Result};

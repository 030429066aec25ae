//! Spark Connect requests Kiln reads on their way to an engine: the table
//! writes the engine's Unity Catalog client cannot do (REPLACE, overwrite
//! `saveAsTable`) or gets wrong (a new table from an in-memory relation),
//! which Kiln carries out against the catalog it owns ([`writes`]). Every
//! path to an engine — Databricks Connect and raw Spark Connect through the
//! gateway, kernels and pipeline workers through the loopback front — goes
//! through [`TableWrites::prepare`]. So do the Delta table utilities the
//! engine's parser does not take (`DESCRIBE HISTORY`, `OPTIMIZE`, `VACUUM`,
//! `RESTORE`, `CLONE`, …: [`utilities`]), served from the tables' Delta logs.

pub mod artifacts;
pub mod ddl;
pub mod engine;
mod errors;
pub use errors::status_with_note;
pub mod first_message;
mod intent;
mod optimize;
mod restore;
mod rows;
mod sessions;
mod table_changes;
mod utilities;
mod utility_call;
mod utility_sql;
mod vacuum;
mod view_requests;
mod views;
mod walk;
pub mod wire;
mod write_plans;
mod writes;

pub use errors::analysis_error;
pub use writes::{Finish, Prepared, TableWrites};

//! Delta Live Tables pipelines on Sail: the DLT SQL parser (`sql`), the
//! dataflow graph (`graph`), the update lifecycle, the event log, and the
//! service that runs updates on engines through a Python worker.

mod analysis;
mod bind;
mod error;
pub mod events;
mod flows;
pub mod graph;
mod journal;
pub mod libraries;
pub mod lifecycle;
pub mod model;
mod plan;
pub mod protocol;
mod python;
mod records;
mod runner;
pub mod service;
mod sink;
pub mod spec;
pub mod sql;
pub mod worker;

pub use service::{Pipelines, StartRequest};
pub use spec::PipelineSpec;

//! Delta Live Tables pipelines on Sail: the DLT SQL parser (`sql`), the
//! dataflow graph (`graph`), the update lifecycle, the event log, and the
//! service that runs updates on engines through a Python worker.

pub mod events;
pub mod graph;
pub mod lifecycle;
pub mod model;
pub mod sql;

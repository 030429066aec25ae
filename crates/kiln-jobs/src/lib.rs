//! Jobs (Workflows): job settings checked as the Jobs API checks them, runs
//! of their task DAGs on real clusters, pipelines and notebooks, a scheduler
//! for their Quartz cron schedules, and the run lifecycle.

mod attempt;
mod chained;
mod code_task;
mod contexts_pool;
pub mod cron;
pub mod dbt_settings;
pub mod dbt_task;
pub mod destinations;
pub mod environments;
mod for_each;
pub mod lifecycle;
mod lookups;
pub mod model;
mod outcome;
mod refs;
mod repair;
mod runner;
mod runs;
pub mod scheduler;
pub mod service;
pub mod settings;
mod sql_task;
mod task_settings;
mod tasks;
pub mod trigger_settings;
pub mod triggers;
mod webhooks;

pub use dbt_task::SqlEndpoint;
pub use repair::Repair;
pub use runs::RunNow;
pub use service::{Jobs, Services};

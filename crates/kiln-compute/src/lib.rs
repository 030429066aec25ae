//! Clusters as real Spark Connect engines.
//!
//! - [`runtime`] installs and finds the engine runtime (a Python venv with
//!   `pysail` and friends) in a per-user cache.
//! - [`engine`] launches one `sail spark server` process, health-checks it with a
//!   real Spark Connect query and stops it.
//! - [`spark_connect`] is the minimal Spark Connect client used for that check.
//! - [`lifecycle`] is the cluster state enum with every transition in one place.
//! - [`clusters`] is the cluster service: user operations, the durable record
//!   cache and the reconciler that makes observed engines match desired state.

mod cluster_runtime;
pub mod cluster_spec;
pub mod cluster_wait;
pub mod clusters;
pub mod command_lifecycle;
pub mod connect;
pub mod contexts;
pub mod engine;
pub mod host;
pub mod isolation;
pub mod kernel;
pub mod libraries;
pub mod library_lifecycle;
pub mod lifecycle;
pub mod pyenv;
pub mod python_process;
pub mod pythons;
pub mod runtime;
pub mod scala_repl;
pub mod spark_connect;
pub mod spark_versions;
pub mod validate;

mod context_worker;
mod reconciler;
mod warm_engines;
mod warm_pool;
mod worker_pods;

pub use context_worker::reconcile as run_contexts_reconciler;

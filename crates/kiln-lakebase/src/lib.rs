//! Lakebase Postgres: projects, branches and endpoints backed by real
//! PostgreSQL servers that Kiln supervises, database credentials, and the TLS
//! Postgres proxy that authenticates them and wakes suspended endpoints.

pub mod autoscale;
mod base_backups;
pub mod branches;
pub mod cgroups;
pub mod compute;
pub mod credentials;
pub mod data_api;
pub mod databases;
pub mod endpoints;
pub mod lifecycle;
pub mod model;
pub mod objects;
pub mod operations;
pub mod pg;
pub mod projects;
pub mod proxy;
pub mod records;
pub mod roles;
pub mod scale;
pub mod schedules;
pub mod scram;
pub mod service;
pub mod snapshots;
pub mod storage;
pub mod trash;

pub use service::{Lakebase, LakebaseConfig};

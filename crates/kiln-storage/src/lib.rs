//! Kiln's data root on object storage: `[storage]` (config), the store and
//! its start-up check (object), streaming file I/O below it (files), and the
//! FUSE mount through which user code opens those files (fuse).

pub mod config;
pub mod engine_credentials;
pub mod files;
pub mod fuse;
pub mod journal;
pub mod multipart;
pub mod object;
pub mod sts;
pub mod tables;

pub use config::StorageConfig;
pub use engine_credentials::{EngineCredentials, Lease};
pub use files::{Entry, FileMeta, HIDDEN_PREFIX, PART_SIZE};
pub use fuse::FuseMount;
pub use object::ObjectRoot;
pub use tables::Listed;

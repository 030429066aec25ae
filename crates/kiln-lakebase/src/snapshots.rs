//! Snapshots: named, durable restore points of a branch (`w.postgres.*_snapshot`).
//! A snapshot is a stopped, consistent copy of the branch's cluster at its
//! head, an LSN or a time — made by the same recovery as a branch, then shut
//! down — so it survives its source branch; `create_branch` with
//! `source_snapshot` copies it into a new branch. Expired snapshots are
//! removed by the reconciler.

use std::time::Duration;

use kiln_core::time::now_ms;
use kiln_core::{Error, ErrorCode, Result};
use kiln_store::Write;

use crate::branches::Fork;
use crate::lifecycle::BranchState;
use crate::model::{check_id, BranchRecord, EndpointType};
use crate::projects::new_endpoint;
pub use crate::records::SnapshotRecord;
pub(crate) use crate::records::SNAPSHOT;
use crate::records::{read, write};
use crate::service::Lakebase;
use crate::storage;

/// A snapshot as `create_snapshot` asks for it.
#[derive(Debug, Clone, Default)]
pub struct NewSnapshot {
    pub source_branch: String,
    pub source_lsn: Option<String>,
    pub source_time_ms: Option<i64>,
    pub expire_ms: Option<i64>,
}

impl Lakebase {
    pub fn snapshots(&self, project_id: &str) -> Result<Vec<SnapshotRecord>> {
        self.project(project_id)?;
        Ok(read(&self.snapshots)?
            .values()
            .filter(|s| s.project_id == project_id)
            .cloned()
            .collect())
    }

    pub fn snapshot(&self, project_id: &str, snapshot_id: &str) -> Result<SnapshotRecord> {
        read(&self.snapshots)?
            .get(&format!("projects/{project_id}/snapshots/{snapshot_id}"))
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::NotFound,
                    format!("Snapshot projects/{project_id}/snapshots/{snapshot_id} not found"),
                )
            })
    }

    pub fn snapshot_size(&self, s: &SnapshotRecord) -> u64 {
        storage::size_of(&self.layout.pgdata(&s.uid))
    }

    pub async fn create_snapshot(
        &self,
        project_id: &str,
        snapshot_id: &str,
        new: NewSnapshot,
    ) -> Result<SnapshotRecord> {
        check_id("snapshot", snapshot_id)?;
        let project = self.project(project_id)?;
        let pg = self.postgres(project.pg_version)?;
        let branch_id = new
            .source_branch
            .rsplit('/')
            .next()
            .unwrap_or(&new.source_branch)
            .to_string();
        if branch_id.is_empty() {
            return Err(Error::invalid("spec.source_branch is required"));
        }
        let fork = Fork::of(new.source_lsn.as_deref(), new.source_time_ms)?;
        let _lock = self.lock_project(project_id).await;
        let source = self.branch(project_id, &branch_id)?;
        if self.snapshot(project_id, snapshot_id).is_ok() {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("Snapshot {snapshot_id} already exists in project {project_id}"),
            ));
        }
        crate::operations::accepted();
        let now = now_ms();
        let uid = format!(
            "sn-{}",
            kiln_core::ids::random_alnum(12).to_ascii_lowercase()
        );
        // Made as a branch would be (same recovery to the same point), never recorded as one.
        let stand_in = BranchRecord {
            project_id: project_id.into(),
            branch_id: format!("snapshot-{snapshot_id}"),
            uid: uid.clone(),
            source_branch: Some(source.name()),
            source_lsn: None,
            source_time_ms: Some(now),
            source_snapshot: None,
            is_protected: false,
            expire_ms: None,
            state: BranchState::Init,
            default: false,
            base_ms: now,
            create_ms: now,
            update_ms: now,
            state_change_ms: now,
        };
        let endpoint = new_endpoint(
            project_id,
            &stand_in.branch_id,
            "snapshot",
            EndpointType::ReadWrite,
            project.defaults.clone(),
        );
        let made = self
            .materialize(&pg, &source, &stand_in, &endpoint, &fork)
            .await;
        let (mut postmaster, lsn) = match made {
            Ok(done) => done,
            Err(e) => {
                let _ = storage::remove(&self.layout.endpoint_dir(&endpoint.uid));
                let _ = storage::remove(&self.layout.branch_dir(&uid));
                return Err(e);
            }
        };
        postmaster.stop(Duration::from_secs(15)).await;
        let _ = storage::remove(&self.layout.endpoint_dir(&endpoint.uid));
        // Only the stopped cluster is kept (a stand-in has no base backup).
        let record = SnapshotRecord {
            project_id: project_id.into(),
            snapshot_id: snapshot_id.into(),
            uid,
            source_branch: source.name(),
            source_lsn: Some(lsn),
            source_time_ms: new.source_time_ms.or(Some(now)),
            expire_ms: new.expire_ms,
            create_ms: now,
        };
        self.store
            .commit(vec![Lakebase::put(SNAPSHOT, record.name(), &record)?])?;
        write(&self.snapshots)?.insert(record.name(), record.clone());
        Ok(record)
    }

    pub async fn delete_snapshot(&self, project_id: &str, snapshot_id: &str) -> Result<()> {
        let _lock = self.lock_project(project_id).await;
        let record = self.snapshot(project_id, snapshot_id)?;
        crate::operations::accepted();
        self.remove_snapshot(&record)
    }

    fn remove_snapshot(&self, record: &SnapshotRecord) -> Result<()> {
        self.store.commit(vec![Write::DeleteObject {
            kind: SNAPSHOT,
            key: record.name(),
        }])?;
        write(&self.snapshots)?.remove(&record.name());
        storage::remove(&self.layout.branch_dir(&record.uid))
    }

    /// Removes every snapshot of a project (the project is purged).
    pub(crate) fn remove_snapshots_of(&self, project_id: &str) -> Result<()> {
        let all: Vec<SnapshotRecord> = read(&self.snapshots)?
            .values()
            .filter(|s| s.project_id == project_id)
            .cloned()
            .collect();
        for s in &all {
            self.remove_snapshot(s)?;
        }
        Ok(())
    }

    /// Removes snapshots past their expiry (the reconciler).
    pub(crate) fn expire_snapshots(&self) {
        let due: Vec<SnapshotRecord> = match read(&self.snapshots) {
            Ok(s) => s
                .values()
                .filter(|s| s.expire_ms.is_some_and(|t| t <= now_ms()))
                .cloned()
                .collect(),
            Err(_) => return,
        };
        for s in due {
            tracing::info!(snapshot = %s.name(), "removing an expired snapshot");
            if let Err(e) = self.remove_snapshot(&s) {
                tracing::warn!(snapshot = %s.name(), error = %e.message, "remove an expired snapshot");
            }
        }
    }
}

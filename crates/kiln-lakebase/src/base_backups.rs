//! Base backups: a branch's point-in-time restore floor (`base/`, replayed
//! from the branch's WAL archive). A new branch answers as soon as its primary
//! runs; its base backup is taken right after, in the background, so a branch
//! create copies its data once on the request's path, not twice.
//!
//! Invariants:
//! - `base/` only ever holds a complete backup: it is copied into
//!   `staging/base-<branch uid>` (outside the branch, so removing a branch
//!   never races with a copy into it) and renamed into the branch if it is
//!   still there;
//! - a point-in-time branch off a branch whose base is still missing waits for
//!   it, and the restore window starts when the base was taken (`base_ms`);
//! - a base still missing when Kiln starts (it stopped first) is taken then;
//!   a stopped endpoint is copied as is, never woken for it.

use std::sync::Arc;

use kiln_core::{time::now_ms, Error, Result};

use crate::model::BranchRecord;
use crate::service::{Lakebase, BRANCH};
use crate::storage;

impl Lakebase {
    /// Takes `branch`'s base backup in the background (owned by the
    /// operations' task set, drained at shutdown).
    pub(crate) fn take_base_later(self: &Arc<Self>, branch: &BranchRecord) {
        let (lakebase, branch) = (self.clone(), branch.clone());
        let task = async move {
            let taken = match lakebase.ensure_base(&branch).await {
                Ok(taken) => taken,
                Err(e) => {
                    tracing::warn!(branch = %branch.name(), error = %e.message, "base backup not taken yet; a point-in-time branch takes it");
                    return;
                }
            };
            if let Some(ms) = taken {
                let _lock = lakebase.lock_project(&branch.project_id).await;
                if let Err(e) = lakebase.record_base(&branch, ms) {
                    tracing::warn!(branch = %branch.name(), error = %e.message, "record a base backup");
                }
            }
        };
        if let Ok(mut tasks) = self.operations_tasks.lock() {
            while tasks.try_join_next().is_some() {}
            tasks.spawn(task);
        }
    }

    /// Takes the base backups a stopped Kiln left missing (and clears copies
    /// it left half done).
    pub fn take_missing_bases(self: &Arc<Self>) {
        let _ = storage::remove(&self.layout.staging());
        let branches: Vec<BranchRecord> = match self.records.read() {
            Ok(records) => records.branches.values().cloned().collect(),
            Err(_) => return,
        };
        for branch in branches {
            let uid = &branch.uid;
            if !self.layout.base(uid).exists() && self.layout.pgdata(uid).exists() {
                self.take_base_later(&branch);
            }
        }
    }

    /// Makes sure `branch` has its base backup; `Some(time)` when it was taken
    /// now (the caller records it, holding the project's lock).
    pub(crate) async fn ensure_base(&self, branch: &BranchRecord) -> Result<Option<i64>> {
        let lock = self.base_lock(&branch.uid);
        let _held = lock.lock().await;
        let base = self.layout.base(&branch.uid);
        if base.exists() {
            return Ok(None);
        }
        let primary = self.primary_of(&branch.name()).ok_or_else(|| {
            Error::invalid(format!(
                "Branch {} has no read-write endpoint",
                branch.name()
            ))
        })?;
        let pg = self.postgres(self.pg_version_of(&branch.project_id)?)?;
        let pgdata = self.layout.pgdata(&branch.uid);
        pg.make_dir(&self.layout.staging())?;
        let partial = self.layout.staging().join(format!("base-{}", branch.uid));
        storage::remove(&partial)?;
        let runtime = self.runtime(&primary.uid);
        let mut process = runtime.process.lock().await;
        if process.as_mut().is_some_and(|p| !p.exited()) {
            // Running: an online backup; `busy` keeps it from being suspended meanwhile.
            drop(process);
            let (socket_dir, busy) = self.wake(&primary.uid).await?;
            let copied = storage::clone_online(&pg, &socket_dir, &pgdata, &partial).await;
            drop(busy);
            copied?;
        } else {
            // Stopped: copied as is, the process lock keeping it stopped.
            storage::clone_offline(&pg, &pgdata, &partial).await?;
            drop(process);
        }
        if let Err(e) = std::fs::rename(&partial, &base) {
            // The branch was removed meanwhile (or its directory is unusable).
            let _ = storage::remove(&partial);
            return Err(Error::internal("keep a base backup", e));
        }
        Ok(Some(now_ms()))
    }

    /// Records when `branch`'s base backup was taken (its restore floor).
    pub(crate) fn record_base(&self, branch: &BranchRecord, ms: i64) -> Result<()> {
        let Ok(mut now) = self.branch(&branch.project_id, &branch.branch_id) else {
            return Ok(()); // deleted meanwhile
        };
        if now.uid != branch.uid {
            return Ok(());
        }
        now.base_ms = ms;
        let write = Self::put(BRANCH, now.name(), &now)?;
        self.commit(vec![write], |r| {
            r.branches.insert(now.name(), now);
        })
    }

    fn base_lock(&self, branch_uid: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.base_locks
            .lock()
            .map(|mut m| m.entry(branch_uid.to_string()).or_default().clone())
            .unwrap_or_default()
    }
}

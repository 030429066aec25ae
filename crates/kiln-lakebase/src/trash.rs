//! Soft delete: a deleted project or branch leaves the live records with its
//! data kept and its processes stopped; `undelete_*` puts it back until its
//! purge time, when the reconciler removes its data. The reconciler also
//! deletes branches past their `expire_time` (a recorded DELETE operation).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_core::time::now_ms;
use kiln_core::{Error, ErrorCode, Result};
use kiln_store::Write;

use crate::lifecycle::EndpointEvent;
use crate::model::{BranchRecord, EndpointRecord, ProjectRecord};
pub use crate::records::TrashEntry;
pub(crate) use crate::records::TRASH;
use crate::records::{read, write};
use crate::service::{Lakebase, BRANCH, ENDPOINT, PROJECT};
use crate::storage;

impl Lakebase {
    /// Deleted projects (`branch` none) or branches of a project, for `show_deleted`.
    pub fn deleted(&self, project_id: &str, branches: bool) -> Result<Vec<TrashEntry>> {
        let prefix = format!("projects/{project_id}");
        Ok(read(&self.trash)?
            .values()
            .filter(|t| {
                if branches {
                    t.project.is_none() && t.name.starts_with(&format!("{prefix}/"))
                } else {
                    t.project.is_some() && (project_id.is_empty() || t.name == prefix)
                }
            })
            .cloned()
            .collect())
    }

    /// At start: removes branch and endpoint data that no live record, deleted
    /// resource or snapshot names (left by a crash between copy and commit).
    pub(crate) fn remove_unreferenced(
        root: &std::path::Path,
        records: &crate::service::Records,
        trash: &BTreeMap<String, TrashEntry>,
        snapshots: &BTreeMap<String, crate::snapshots::SnapshotRecord>,
    ) {
        let mut kept = Self::trashed_uids(trash);
        kept.extend(snapshots.values().map(|s| s.uid.clone()));
        let mut b: Vec<&str> = records.branches.values().map(|b| b.uid.as_str()).collect();
        let mut e: Vec<&str> = records.endpoints.values().map(|e| e.uid.as_str()).collect();
        b.extend(kept.iter().map(String::as_str));
        e.extend(kept.iter().map(String::as_str));
        storage::remove_unreferenced(root, &b, &e);
    }

    /// Uids of branches and endpoints whose data the trash keeps.
    pub(crate) fn trashed_uids(trash: &BTreeMap<String, TrashEntry>) -> Vec<String> {
        trash
            .values()
            .flat_map(|t| {
                t.branches
                    .iter()
                    .map(|b| b.uid.clone())
                    .chain(t.endpoints.iter().map(|e| e.uid.clone()))
            })
            .collect()
    }

    /// Moves a project's or branch's records into the trash, after stopping
    /// its endpoints (their data stays).
    pub(crate) async fn soft_delete(
        &self,
        name: String,
        project: Option<ProjectRecord>,
        branches: Vec<BranchRecord>,
        endpoints: Vec<EndpointRecord>,
    ) -> Result<()> {
        for ep in &endpoints {
            let runtime = self.runtime(&ep.uid);
            if let Some(mut p) = runtime.process.lock().await.take() {
                p.stop(Duration::from_secs(15)).await;
            }
            self.forget_runtime(&ep.uid);
        }
        let in_scope = |b: &str| branches.iter().any(|x| x.name() == b);
        let entry = TrashEntry {
            name: name.clone(),
            delete_ms: now_ms(),
            purge_ms: now_ms() + self.config.deleted_retention.as_millis() as i64,
            project,
            branches: branches.clone(),
            endpoints: endpoints
                .iter()
                .map(|e| EndpointRecord {
                    state: e.state.next(EndpointEvent::Suspended).unwrap_or(e.state),
                    ..e.clone()
                })
                .collect(),
            roles: read(&self.objects.roles)?
                .values()
                .filter(|r| in_scope(&r.branch_name()))
                .cloned()
                .collect(),
            databases: read(&self.objects.databases)?
                .values()
                .filter(|d| in_scope(&d.branch_name()))
                .cloned()
                .collect(),
        };
        let mut writes = vec![Lakebase::put(TRASH, name.clone(), &entry)?];
        if let Some(p) = &entry.project {
            writes.push(Write::DeleteObject {
                kind: PROJECT,
                key: p.project_id.clone(),
            });
        }
        writes.extend(branches.iter().map(|b| Write::DeleteObject {
            kind: BRANCH,
            key: b.name(),
        }));
        writes.extend(endpoints.iter().map(|e| Write::DeleteObject {
            kind: ENDPOINT,
            key: e.name(),
        }));
        let objects = self.drop_objects(in_scope)?;
        writes.extend(objects.iter().cloned());
        let (project_id, names): (Option<String>, Vec<String>) = (
            entry.project.as_ref().map(|p| p.project_id.clone()),
            branches.iter().map(|b| b.name()).collect(),
        );
        self.commit(writes, |r| {
            if let Some(p) = &project_id {
                r.projects.remove(p);
            }
            r.branches.retain(|k, _| !names.contains(k));
            r.endpoints.retain(|_, e| !names.contains(&e.branch_name()));
        })?;
        self.apply_objects(&objects)?;
        write(&self.trash)?.insert(name, entry);
        Ok(())
    }

    /// Puts a soft-deleted project or branch back (its endpoints IDLE, woken on connect).
    pub async fn undelete(&self, name: &str) -> Result<()> {
        let project_id = name.split('/').nth(1).unwrap_or_default().to_string();
        let _lock = self.lock_project(&project_id).await;
        let entry = read(&self.trash)?.get(name).cloned().ok_or_else(|| {
            Error::new(
                ErrorCode::NotFound,
                format!("{name} is not a deleted resource (or it was purged)"),
            )
        })?;
        match &entry.project {
            Some(_) if self.project(&project_id).is_ok() => return Err(conflict(name)),
            None => {
                self.project(&project_id)?;
                let branch = &entry.branches[..];
                if branch
                    .iter()
                    .any(|b| self.branch(&project_id, &b.branch_id).is_ok())
                {
                    return Err(conflict(name));
                }
                if let Some(parent) = branch.first().and_then(|b| b.source_branch.clone()) {
                    if !self.read()?.branches.contains_key(&parent) {
                        return Err(Error::new(
                            ErrorCode::InvalidState,
                            format!("{name} was branched from {parent}, which no longer exists"),
                        ));
                    }
                }
            }
            _ => {}
        }
        crate::operations::accepted();
        let mut writes = vec![Write::DeleteObject {
            kind: TRASH,
            key: name.to_string(),
        }];
        if let Some(p) = &entry.project {
            writes.push(Lakebase::put(PROJECT, p.project_id.clone(), p)?);
        }
        for b in &entry.branches {
            writes.push(Lakebase::put(BRANCH, b.name(), b)?);
        }
        for e in &entry.endpoints {
            writes.push(Lakebase::put(ENDPOINT, e.name(), e)?);
        }
        let mut objects = Vec::new();
        for r in &entry.roles {
            objects.push(Lakebase::put(crate::objects::ROLE, r.name(), r)?);
        }
        for d in &entry.databases {
            objects.push(Lakebase::put(crate::objects::DATABASE, d.name(), d)?);
        }
        writes.extend(objects.iter().cloned());
        let restored = entry.clone();
        self.commit(writes, |r| {
            if let Some(p) = restored.project {
                r.projects.insert(p.project_id.clone(), p);
            }
            for b in restored.branches {
                r.branches.insert(b.name(), b);
            }
            for e in restored.endpoints {
                r.endpoints.insert(e.name(), e);
            }
        })?;
        self.apply_objects(&objects)?;
        write(&self.trash)?.remove(name);
        Ok(())
    }

    /// Purges trash past its purge time, removes expired snapshots and
    /// deletes expired branches.
    pub(crate) async fn collect_garbage(self: &Arc<Self>) {
        self.expire_snapshots();
        self.run_schedules().await;
        let due: Vec<TrashEntry> = match read(&self.trash) {
            Ok(t) => t
                .values()
                .filter(|t| t.purge_ms <= now_ms())
                .cloned()
                .collect(),
            Err(_) => return,
        };
        for entry in due {
            if let Err(e) = self.purge(&entry) {
                tracing::warn!(resource = %entry.name, error = %e.message, "purge a deleted Lakebase resource");
            }
        }
        let expired: Vec<BranchRecord> = match self.read() {
            Ok(r) => r
                .branches
                .values()
                .filter(|b| {
                    b.expire_ms.is_some_and(|t| t <= now_ms()) && !b.default && !b.is_protected
                })
                .cloned()
                .collect(),
            Err(_) => return,
        };
        for b in expired {
            let lakebase = self.clone();
            let (project, branch) = (b.project_id.clone(), b.branch_id.clone());
            let work = async move {
                lakebase.delete_branch(&project, &branch, true).await?;
                Ok(serde_json::json!({"@type": "type.googleapis.com/google.protobuf.Empty"}))
            };
            tracing::info!(branch = %b.name(), "deleting an expired branch");
            if let Err(e) = self
                .run_operation(&b.name(), "Branch", "system", work)
                .await
            {
                tracing::warn!(branch = %b.name(), error = %e.message, "delete an expired branch");
            }
        }
    }

    /// Purges every deleted resource of a project (the project is being purged).
    pub(crate) fn purge_trash_of(&self, project_id: &str) -> Result<()> {
        let (own, prefix) = (
            format!("projects/{project_id}"),
            format!("projects/{project_id}/"),
        );
        let entries: Vec<TrashEntry> = read(&self.trash)?
            .values()
            .filter(|t| t.name == own || t.name.starts_with(&prefix))
            .cloned()
            .collect();
        for entry in &entries {
            self.purge(entry)?;
        }
        Ok(())
    }

    fn purge(&self, entry: &TrashEntry) -> Result<()> {
        for b in &entry.branches {
            storage::remove(&self.layout.branch_dir(&b.uid))?;
        }
        for e in &entry.endpoints {
            storage::remove(&self.layout.endpoint_dir(&e.uid))?;
        }
        self.store.commit(vec![Write::DeleteObject {
            kind: TRASH,
            key: entry.name.clone(),
        }])?;
        write(&self.trash)?.remove(&entry.name);
        if let Some(p) = &entry.project {
            self.remove_snapshots_of(&p.project_id)?;
        }
        Ok(())
    }
}

fn conflict(name: &str) -> Error {
    Error::new(
        ErrorCode::AlreadyExists,
        format!("{name} cannot be undeleted: a resource with its id exists now"),
    )
}

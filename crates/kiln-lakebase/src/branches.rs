//! Branches: each has its own data directory cloned from its source branch —
//! at the head (consistently, from the running parent inside an online backup,
//! or from the stopped parent as is) or at a point in time (the source's base
//! backup replayed from its WAL archive to the requested time or LSN). Every
//! branch gets a read-write endpoint `primary`, an archive and a base backup
//! (taken after the create answers: see `base_backups`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_core::{time::now_ms, Error, ErrorCode, Result};
use kiln_store::Write;

use crate::compute::Postmaster;
use crate::lifecycle::BranchState;
use crate::model::{check_id, BranchRecord, EndpointRecord, EndpointType};
use crate::pg::{self, Postgres};
use crate::projects::{new_endpoint, DEFAULT_ENDPOINT};
use crate::service::{not_found, Lakebase, BRANCH, ENDPOINT};
use crate::storage;

/// A create request, as the API layer parsed it.
#[derive(Debug, Clone, Default)]
pub struct NewBranch {
    /// Source branch (id or `projects/…/branches/…`); the default branch if unset.
    pub source_branch: Option<String>,
    pub source_lsn: Option<String>,
    pub source_time_ms: Option<i64>,
    /// A snapshot of the project (id or `projects/…/snapshots/…`) to restore.
    pub source_snapshot: Option<String>,
    pub is_protected: bool,
    pub expire_ms: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct BranchPatch {
    pub is_protected: Option<bool>,
    /// `Some(None)`: no expiry.
    pub expire_ms: Option<Option<i64>>,
}

/// Where the new branch's data comes from.
pub(crate) enum Fork {
    Head,
    Lsn(String),
    Time(i64),
    /// A stopped copy kept by a snapshot (its branch-layout uid).
    Snapshot(String),
}

impl Fork {
    /// The fork point a request names: an LSN, a time, or the head.
    pub(crate) fn of(lsn: Option<&str>, time_ms: Option<i64>) -> Result<Self> {
        match (lsn, time_ms) {
            (Some(_), Some(_)) => Err(Error::invalid(
                "Set at most one of source_branch_lsn and source_branch_time",
            )),
            (Some(lsn), None) => Ok(Fork::Lsn(check_lsn(lsn)?)),
            (None, Some(t)) => Ok(Fork::Time(t)),
            (None, None) => Ok(Fork::Head),
        }
    }
}

impl Lakebase {
    pub fn branch(&self, project_id: &str, branch_id: &str) -> Result<BranchRecord> {
        let name = format!("projects/{project_id}/branches/{branch_id}");
        self.read()?
            .branches
            .get(&name)
            .cloned()
            .ok_or_else(|| not_found("Branch", &name))
    }

    pub fn branches(&self, project_id: &str) -> Result<Vec<BranchRecord>> {
        self.project(project_id)?;
        Ok(self
            .read()?
            .branches
            .values()
            .filter(|b| b.project_id == project_id)
            .cloned()
            .collect())
    }

    pub async fn create_branch(
        self: &Arc<Self>,
        project_id: &str,
        branch_id: &str,
        new: NewBranch,
    ) -> Result<BranchRecord> {
        check_id("branch", branch_id)?;
        let project = self.project(project_id)?;
        let pg = self.postgres(project.pg_version)?;
        let source_id = match &new.source_branch {
            Some(s) => s.rsplit('/').next().unwrap_or(s).to_string(),
            None => project.default_branch.clone(),
        };
        let fork = Fork::of(new.source_lsn.as_deref(), new.source_time_ms)?;
        let snapshot = match &new.source_snapshot {
            None => None,
            Some(_) if new.source_branch.is_some() || !matches!(fork, Fork::Head) => {
                return Err(Error::invalid(
                    "source_snapshot excludes source_branch, source_branch_lsn and source_branch_time",
                ))
            }
            Some(s) => Some(self.snapshot(project_id, s.rsplit('/').next().unwrap_or(s))?),
        };
        let fork = match &snapshot {
            Some(s) => Fork::Snapshot(s.uid.clone()),
            None => fork,
        };
        let _lock = self.lock_project(project_id).await;
        let trashed = crate::records::read(&self.trash)?
            .contains_key(&format!("projects/{project_id}/branches/{branch_id}"));
        if self.branch(project_id, branch_id).is_ok() || trashed {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!(
                    "Branch with id {branch_id} already exists in project {project_id}{}",
                    if trashed {
                        " (deleted: undelete it, or delete it with purge)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        let mut source = self.branch(project_id, &source_id)?;
        if matches!(fork, Fork::Lsn(_) | Fork::Time(_)) {
            // A point in time is replayed from the source's base backup.
            if let Some(ms) = self.ensure_base(&source).await? {
                self.record_base(&source, ms)?;
                source = self.branch(project_id, &source_id)?;
            }
        }
        if let Fork::Time(t) = fork {
            let floor = source
                .base_ms
                .max(now_ms() - project.history_retention_secs as i64 * 1000);
            if t < floor || t > now_ms() {
                return Err(Error::invalid(format!(
                    "source_branch_time must be inside the restore window of {} (from {} to now)",
                    source.name(),
                    kiln_core::time::rfc3339(floor)
                )));
            }
        }
        crate::operations::accepted();
        let now = now_ms();
        let mut branch = BranchRecord {
            project_id: project_id.into(),
            branch_id: branch_id.into(),
            uid: format!("br-{}", kiln_core::ids::random_alnum(12)),
            source_branch: snapshot.is_none().then(|| source.name()),
            source_lsn: None,
            source_time_ms: Some(now),
            source_snapshot: snapshot.as_ref().map(|s| s.name()),
            is_protected: new.is_protected,
            expire_ms: new.expire_ms,
            state: BranchState::Ready,
            default: false,
            base_ms: now,
            create_ms: now,
            update_ms: now,
            state_change_ms: now,
        };
        let endpoint = new_endpoint(
            project_id,
            branch_id,
            DEFAULT_ENDPOINT,
            EndpointType::ReadWrite,
            project.defaults.clone(),
        );
        let made = self
            .materialize(&pg, &source, &branch, &endpoint, &fork)
            .await;
        let (postmaster, lsn) = match made {
            Ok(done) => done,
            Err(e) => {
                let _ = storage::remove(&self.layout.branch_dir(&branch.uid));
                let _ = storage::remove(&self.layout.endpoint_dir(&endpoint.uid));
                return Err(e);
            }
        };
        branch.source_lsn = Some(lsn);
        if let Fork::Time(t) = fork {
            branch.source_time_ms = Some(t);
        }
        branch.base_ms = now_ms();
        let copied_from = snapshot
            .map(|s| s.source_branch)
            .unwrap_or_else(|| source.name());
        let objects = self.copy_objects(&copied_from, project_id, branch_id)?;
        let mut writes = vec![
            Self::put(BRANCH, branch.name(), &branch)?,
            Self::put(ENDPOINT, endpoint.name(), &endpoint)?,
        ];
        writes.extend(objects.iter().cloned());
        let (b, e) = (branch.clone(), endpoint.clone());
        self.commit(writes, |r| {
            r.branches.insert(b.name(), b);
            r.endpoints.insert(e.name(), e);
        })?;
        self.apply_objects(&objects)?;
        self.adopt(&endpoint, postmaster).await;
        self.take_base_later(&branch);
        Ok(branch)
    }

    /// Clones the data and starts the branch's primary (promoted onto its own
    /// timeline where it recovered); returns the running primary and the fork LSN.
    pub(crate) async fn materialize(
        &self,
        pg: &Postgres,
        source: &BranchRecord,
        branch: &BranchRecord,
        endpoint: &EndpointRecord,
        fork: &Fork,
    ) -> Result<(Postmaster, String)> {
        pg.make_dir(&self.layout.branch_dir(&branch.uid))?;
        pg.make_dir(&self.layout.archive(&branch.uid))?;
        pg.make_dir(&self.layout.endpoint_dir(&endpoint.uid))?;
        let pgdata = self.layout.pgdata(&branch.uid);
        let source_archive = self.layout.archive(&source.uid).display().to_string();
        let mut recovery = BTreeMap::from([
            (
                "restore_command".to_string(),
                format!("cp '{source_archive}/%f' %p"),
            ),
            ("recovery_target_action".to_string(), "promote".to_string()),
            ("recovery_target_timeline".to_string(), "latest".to_string()),
        ]);
        let recovering = match fork {
            Fork::Head => match self.clone_head(pg, source, &pgdata).await? {
                (lsn, true) => {
                    recovery.insert("recovery_target".into(), "immediate".into());
                    Some(lsn)
                }
                (lsn, false) => {
                    let launch = self.launch_on(endpoint, &branch.uid, None)?;
                    let postmaster =
                        Postmaster::start(pg, &launch, self.config.start_timeout).await?;
                    return Ok((postmaster, lsn));
                }
            },
            Fork::Snapshot(uid) => {
                // A snapshot is a stopped, consistent cluster: copied as is.
                let lsn = storage::clone_offline(pg, &self.layout.pgdata(uid), &pgdata).await?;
                let launch = self.launch_on(endpoint, &branch.uid, None)?;
                let postmaster = Postmaster::start(pg, &launch, self.config.start_timeout).await?;
                return Ok((postmaster, lsn));
            }
            Fork::Lsn(lsn) => {
                self.prepare_pitr(source).await?;
                recovery.insert("recovery_target_lsn".into(), lsn.clone());
                pg.copy_tree(&self.layout.base(&source.uid), &pgdata)
                    .await?;
                None
            }
            Fork::Time(t) => {
                self.prepare_pitr(source).await?;
                recovery.insert("recovery_target_time".into(), pg_timestamp(*t));
                pg.copy_tree(&self.layout.base(&source.uid), &pgdata)
                    .await?;
                None
            }
        };
        for f in ["postmaster.pid", "postmaster.opts", "standby.signal"] {
            let _ = std::fs::remove_file(pgdata.join(f));
        }
        storage::prepare_recovery(pg, &pgdata)?;
        let launch = self.launch_on(endpoint, &branch.uid, Some(recovery))?;
        let postmaster = Postmaster::start(pg, &launch, self.config.start_timeout).await?;
        let replayed = wait_promoted(&launch.socket_dir, self.config.start_timeout).await;
        let replayed = match replayed {
            Ok(lsn) => lsn,
            Err(e) => {
                let mut postmaster = postmaster;
                postmaster.stop(Duration::from_secs(5)).await;
                return Err(e);
            }
        };
        Ok((postmaster, recovering.unwrap_or(replayed)))
    }

    /// Copies the source branch's current data: online from its running
    /// primary (`true`: the copy must recover) or as is from its stopped one.
    async fn clone_head(
        &self,
        pg: &Postgres,
        source: &BranchRecord,
        to: &std::path::Path,
    ) -> Result<(String, bool)> {
        let primary = self.primary_of(&source.name()).ok_or_else(|| {
            Error::invalid(format!(
                "Branch {} has no read-write endpoint",
                source.name()
            ))
        })?;
        let from = self.layout.pgdata(&source.uid);
        if !primary.disabled {
            // An online copy of the running source (woken if it was idle). The
            // endpoint's process lock is held only while it starts; `busy`
            // keeps it from being suspended during the copy, so a login that
            // wakes it meanwhile does not wait for the copy.
            let (socket_dir, busy) = self.wake(&primary.uid).await?;
            let lsn = storage::clone_online(pg, &socket_dir, &from, to).await?;
            drop(busy);
            return Ok((lsn, true));
        }
        // A disabled source is never woken (logins are refused before they
        // lock); the lock keeps it stopped for the offline copy.
        let runtime = self.runtime(&primary.uid);
        let _process = runtime.process.lock().await;
        Ok((storage::clone_offline(pg, &from, to).await?, false))
    }

    /// Makes sure the source's archive holds WAL past any target up to now:
    /// a commit record stamped now, then a WAL switch that is archived.
    async fn prepare_pitr(&self, source: &BranchRecord) -> Result<()> {
        let primary = self.primary_of(&source.name()).ok_or_else(|| {
            Error::invalid(format!(
                "Branch {} has no read-write endpoint",
                source.name()
            ))
        })?;
        let (socket, _busy) = self.wake(&primary.uid).await?;
        let client = pg::connect(&socket, "postgres").await?;
        pg::execute(&client, "SELECT txid_current()").await?;
        let row = client
            .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
            .await
            .map_err(|e| Error::internal("switch WAL", pg::sql_error(&e)))?;
        let segment: String = row.get(0);
        let archived = self.layout.archive(&source.uid).join(&segment);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !archived.exists() {
            if std::time::Instant::now() > deadline {
                return Err(Error::internal(
                    "archive WAL",
                    format!("{segment} was not archived"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    pub async fn update_branch(
        &self,
        project_id: &str,
        branch_id: &str,
        patch: BranchPatch,
    ) -> Result<BranchRecord> {
        let _lock = self.lock_project(project_id).await;
        let mut branch = self.branch(project_id, branch_id)?;
        if let Some(p) = patch.is_protected {
            branch.is_protected = p;
        }
        if let Some(e) = patch.expire_ms {
            branch.expire_ms = e;
        }
        branch.update_ms = now_ms();
        let write = Self::put(BRANCH, branch.name(), &branch)?;
        let stored = branch.clone();
        self.commit(vec![write], |r| {
            r.branches.insert(stored.name(), stored);
        })?;
        Ok(branch)
    }

    /// Deletes a branch with its endpoints and data. The default branch,
    /// protected branches and branches with children are refused.
    /// Deletes a branch: soft (kept for `deleted_retention`, undeletable)
    /// unless `purge`.
    pub async fn delete_branch(
        &self,
        project_id: &str,
        branch_id: &str,
        purge: bool,
    ) -> Result<()> {
        let _lock = self.lock_project(project_id).await;
        let branch = self.branch(project_id, branch_id)?;
        let project = self.project(project_id)?;
        let refuse = |why: String| Err(Error::new(ErrorCode::BadRequest, why));
        if branch.is_protected {
            return refuse(format!(
                "Branch {} is protected and cannot be deleted",
                branch.name()
            ));
        }
        if project.default_branch == branch_id {
            return refuse(format!(
                "Branch {} is the project's default branch and cannot be deleted",
                branch.name()
            ));
        }
        let (children, endpoints) = {
            let r = self.read()?;
            let children = r
                .branches
                .values()
                .any(|b| b.source_branch.as_deref() == Some(&branch.name()));
            let endpoints: Vec<EndpointRecord> = r
                .endpoints
                .values()
                .filter(|e| e.branch_name() == branch.name())
                .cloned()
                .collect();
            (children, endpoints)
        };
        if children {
            return refuse(format!(
                "Branch {} has child branches; delete them first",
                branch.name()
            ));
        }
        if !purge {
            return self
                .soft_delete(branch.name(), None, vec![branch], endpoints)
                .await;
        }
        for ep in &endpoints {
            self.stop_and_remove_endpoint(ep).await?;
        }
        let mut writes = vec![Write::DeleteObject {
            kind: BRANCH,
            key: branch.name(),
        }];
        writes.extend(endpoints.iter().map(|e| Write::DeleteObject {
            kind: ENDPOINT,
            key: e.name(),
        }));
        let name = branch.name();
        let objects = self.drop_objects(|b| b == name)?;
        writes.extend(objects.iter().cloned());
        self.commit(writes, |r| {
            r.branches.remove(&name);
            r.endpoints.retain(|_, e| e.branch_name() != name);
        })?;
        self.apply_objects(&objects)?;
        storage::remove(&self.layout.branch_dir(&branch.uid))
    }
}

/// Waits until a recovering cluster has promoted; returns the last replayed LSN.
async fn wait_promoted(socket_dir: &std::path::Path, timeout: Duration) -> Result<String> {
    let deadline = std::time::Instant::now() + timeout;
    let client = pg::connect(socket_dir, "postgres").await?;
    loop {
        let row = client
            .query_one(
                "SELECT pg_is_in_recovery(), COALESCE(pg_last_wal_replay_lsn(), pg_current_wal_lsn())::text",
                &[],
            )
            .await
            .map_err(|e| Error::internal("wait for promotion", pg::sql_error(&e)))?;
        let in_recovery: bool = row.get(0);
        if !in_recovery {
            return Ok(row.get(1));
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::internal(
                "wait for promotion",
                "the branch did not finish recovery",
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `X/Y` hexadecimal, as Postgres prints LSNs.
pub(crate) fn check_lsn(lsn: &str) -> Result<String> {
    let ok = lsn.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && a.len() <= 8
            && b.len() <= 8
            && a.chars().chain(b.chars()).all(|c| c.is_ascii_hexdigit())
    });
    if ok {
        Ok(lsn.to_ascii_uppercase())
    } else {
        Err(Error::invalid(format!(
            "Invalid source_branch_lsn '{lsn}' (expected e.g. 0/1C016EB8)"
        )))
    }
}

/// A recovery_target_time value (UTC, millisecond precision).
fn pg_timestamp(ms: i64) -> String {
    let t = kiln_core::time::rfc3339(ms);
    format!("{}+00", t.trim_end_matches('Z').replace('T', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_and_target_times() {
        assert_eq!(check_lsn("0/1c016eb8").ok(), Some("0/1C016EB8".into()));
        assert!(check_lsn("x/1").is_err());
        assert!(check_lsn("01C016EB8").is_err());
        assert_eq!(pg_timestamp(1500), "1970-01-01 00:00:01.500+00");
    }
}

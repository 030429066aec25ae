//! Triggers that watch data rather than the clock: `trigger.file_arrival`
//! (new files under a `/Volumes/…` path) and `trigger.table_update` (a new
//! Delta version of Unity Catalog tables; `trigger.table` is its older name).
//!
//! What a trigger has already seen is kept on the job (`trigger_marks`: the
//! newest file change it fired for, each table's version), taken when the
//! trigger is set and moved forward in the same durable commit that records
//! the firing, before the run starts. So files and versions that were there
//! before the trigger never fire it, and one change fires it once, across a
//! restart too; changes made while Kiln was down fire it once after.
//!
//! `wait_after_last_change_seconds` holds a firing back until the location
//! (the tables) stopped changing for that long; `min_time_between_triggers_seconds`
//! spaces firings. Kiln looks every second (Databricks every minute or so).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kiln_catalog::{Catalog, VolumeInfo};
use kiln_core::time::now_ms;
use kiln_core::Result;
use tokio_util::sync::CancellationToken;

use crate::model::{JobRecord, RunNow};
use crate::service::Jobs;
use crate::trigger_settings::{file_key, spec, table_key, table_version, volume_of, Watch};

/// How often watched locations and tables are looked at.
const POLL: Duration = Duration::from_secs(1);
/// At most this many files of a location are looked at (as Databricks).
const MAX_FILES: usize = 10_000;

/// The volume a `/Volumes/…` URL names, and the path inside it.
fn volume_and_rest<'u>(catalog: &Catalog, url: &'u str) -> Option<(VolumeInfo, &'u str)> {
    let volume = catalog.get_volume(&volume_of(url)?).ok()?;
    let path = url.strip_prefix("dbfs:").unwrap_or(url);
    let rest = path
        .splitn(6, '/')
        .nth(5)
        .unwrap_or_default()
        .trim_matches('/');
    Some((volume, rest))
}

/// Where a `/Volumes/…` URL is on this host, confined to its volume.
fn local_path(catalog: &Catalog, url: &str) -> Option<PathBuf> {
    let (volume, rest) = volume_and_rest(catalog, url)?;
    let local = catalog.volume_dir(&volume).join(rest);
    catalog.confine(&volume, &local).ok()?;
    Some(local)
}

/// On an object store: the path of a `/Volumes/…` URL below its root.
fn object_path(catalog: &Catalog, url: &str) -> Option<String> {
    let (volume, rest) = volume_and_rest(catalog, url)?;
    if volume.storage_location.is_some() {
        return None;
    }
    let rel = format!("dbfs{}/{rest}", volume.path());
    Some(rel.trim_end_matches('/').to_string())
}

/// The newest change (ms) of the files under `dir` changed after `after`.
fn newest_change(dir: &Path, after: i64) -> Option<i64> {
    use std::os::unix::fs::MetadataExt;
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0usize;
    let mut newest: Option<i64> = None;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_FILES {
                return newest;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
                continue;
            }
            // a file renamed or copied with its times kept changes its ctime
            let changed = (meta.mtime() * 1000 + meta.mtime_nsec() / 1_000_000)
                .max(meta.ctime() * 1000 + meta.ctime_nsec() / 1_000_000);
            if changed > after && newest.is_none_or(|n| changed > n) {
                newest = Some(changed);
            }
        }
    }
    newest
}

/// A firing a job is owed: its run's trigger name and the marks to keep.
struct Firing {
    trigger: &'static str,
    marks: BTreeMap<String, i64>,
}

/// Where watched files are: the local tree, or an object store (listed
/// through `object_store`, one request per 1,000 keys, never through the
/// mount, which would stat every file), with the runtime to list it on.
struct Place<'a> {
    catalog: &'a Catalog,
    storage: Option<(&'a kiln_storage::ObjectRoot, &'a tokio::runtime::Handle)>,
}

impl Place<'_> {
    fn newest_change(&self, url: &str, after: i64) -> Option<i64> {
        match self.storage {
            Some((root, runtime)) => {
                let rel = object_path(self.catalog, url)?;
                let listed = runtime.block_on(root.newest_change(&rel, after, MAX_FILES));
                listed
                    .map_err(|e| tracing::warn!(error = %e.message, "list a watched location"))
                    .ok()?
            }
            None => newest_change(&local_path(self.catalog, url)?, after),
        }
    }
}

/// Whether `job`'s data trigger fires now.
fn observe(place: &Place<'_>, job: &JobRecord, now: i64) -> Option<Firing> {
    let catalog = place.catalog;
    let spec = spec(&job.settings)?;
    let mut marks = job.trigger_marks.clone();
    let (trigger, last_change) = match &spec.watch {
        Watch::Files { url } => {
            let key = file_key(url);
            let after = marks.get(&key).copied().unwrap_or(job.schedule_since_ms);
            let newest = place.newest_change(url, after)?;
            marks.insert(key, newest);
            ("FILE_ARRIVAL", newest)
        }
        Watch::Tables { names, all } => {
            let mut updated = 0;
            let mut last = 0;
            for name in names {
                let key = table_key(name);
                let (version, at) = table_version(catalog, name)?;
                if marks.get(&key) != Some(&version) {
                    updated += 1;
                    last = last.max(at);
                    marks.insert(key, version);
                }
            }
            let enough = if *all {
                updated == names.len()
            } else {
                updated > 0
            };
            if !enough {
                return None;
            }
            ("TABLE", last)
        }
    };
    let quiet = now - last_change >= spec.wait_after_ms;
    let spaced = now - job.schedule_fired_ms >= spec.min_between_ms;
    (quiet && spaced).then_some(Firing { trigger, marks })
}

pub(crate) async fn run(jobs: Arc<Jobs>, cancel: CancellationToken) {
    let mut changes = jobs.subscribe_jobs();
    loop {
        let watched: Vec<JobRecord> = jobs
            .list()
            .into_iter()
            .filter(|j| spec(&j.settings).is_some())
            .collect();
        let any = !watched.is_empty();
        let catalog = jobs.catalog.clone();
        let storage = jobs.storage.clone();
        let runtime = tokio::runtime::Handle::current();
        let look = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            let place = Place {
                catalog: &catalog,
                storage: storage.as_deref().map(|root| (root, &runtime)),
            };
            watched
                .into_iter()
                .filter_map(|j| observe(&place, &j, now).map(|f| (j, f)))
                .collect::<Vec<_>>()
        });
        let firings = tokio::select! {
            _ = cancel.cancelled() => return,
            got = look => got.unwrap_or_default(),
        };
        for (job, firing) in firings {
            if let Err(e) = fire(&jobs, &job, firing).await {
                tracing::warn!(job_id = job.job_id, error = %e.message, "a triggered run could not start");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(POLL), if any => {}
            _ = changes.changed() => {}
        }
    }
}

/// Records the firing (durably, before the run starts), then starts the run.
async fn fire(jobs: &Arc<Jobs>, job: &JobRecord, firing: Firing) -> Result<()> {
    if !jobs.mark_triggered(job, firing.marks).await? {
        return Ok(()); // the job changed meanwhile: look again
    }
    let request = RunNow {
        trigger: firing.trigger.into(),
        ..Default::default()
    };
    let run = jobs.run_now(&job.run_as, job.job_id, request).await?;
    tracing::info!(
        job_id = job.job_id,
        run_id = run.run_id,
        trigger = firing.trigger,
        "triggered run started"
    );
    Ok(())
}

/// The volume (`c.s.v`) a job's `trigger.file_arrival` watches.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_files_are_newer_than_the_mark() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(newest_change(dir.path(), 0), None);
        std::fs::create_dir(dir.path().join("sub"))?;
        std::fs::write(dir.path().join("sub/a.csv"), "1")?;
        let first = newest_change(dir.path(), 0).unwrap_or_default();
        assert!(first > 0);
        assert_eq!(newest_change(dir.path(), first), None);
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(dir.path().join("b.csv"), "2")?;
        assert!(newest_change(dir.path(), first).is_some_and(|n| n > first));
        Ok(())
    }
}

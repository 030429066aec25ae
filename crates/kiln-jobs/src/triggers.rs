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

use kiln_catalog::delta::log::DeltaLog;
use kiln_catalog::Catalog;
use kiln_core::time::now_ms;
use kiln_core::Result;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

use crate::model::{JobRecord, RunNow};
use crate::service::Jobs;
use crate::task_settings::{invalid, Lookups};

/// How often watched locations and tables are looked at.
const POLL: Duration = Duration::from_secs(1);
/// At most this many files of a location are looked at (as Databricks).
const MAX_FILES: usize = 10_000;

/// Checks `trigger` (one of `periodic`, `file_arrival`, `table_update`),
/// filling the defaults Databricks echoes.
pub(crate) fn check(trigger: &mut Value, lookups: &dyn Lookups) -> Result<()> {
    let Value::Object(t) = trigger else {
        return Err(invalid("trigger", "expected an object"));
    };
    match t.get("pause_status") {
        None | Some(Value::Null) => {}
        Some(Value::String(p)) if p == "PAUSED" || p == "UNPAUSED" => {}
        Some(other) => {
            return Err(invalid(
                "trigger.pause_status",
                format!("{other}: PAUSED or UNPAUSED"),
            ))
        }
    }
    let kinds: Vec<String> = ["periodic", "file_arrival", "table_update", "table"]
        .into_iter()
        .filter(|k| t.get(*k).is_some_and(|v| !v.is_null()))
        .map(String::from)
        .collect();
    let [kind] = kinds.as_slice() else {
        return Err(invalid(
            "trigger",
            "exactly one of periodic, file_arrival or table_update is required",
        ));
    };
    let field = format!("trigger.{kind}");
    let Some(Value::Object(spec)) = t.get_mut(kind) else {
        return Err(invalid(&field, "expected an object"));
    };
    match kind.as_str() {
        "periodic" => {
            let interval = spec.get("interval").and_then(Value::as_i64).unwrap_or(0);
            if interval < 1 {
                return Err(invalid("trigger.periodic.interval", "a positive integer"));
            }
            match spec.get("unit").and_then(Value::as_str) {
                Some("HOURS" | "DAYS" | "WEEKS") => {}
                _ => return Err(invalid("trigger.periodic.unit", "HOURS, DAYS or WEEKS")),
            }
        }
        "file_arrival" => {
            let url = spec.get("url").and_then(Value::as_str).unwrap_or_default();
            let Some(volume) = volume_of(url) else {
                return Err(invalid(
                    "trigger.file_arrival.url",
                    format!("{url:?}: Kiln watches Unity Catalog volumes, /Volumes/<catalog>/<schema>/<volume>/…"),
                ));
            };
            if !lookups.volume_exists(&volume) {
                return Err(invalid(
                    "trigger.file_arrival.url",
                    format!("volume {volume} does not exist"),
                ));
            }
            seconds(spec, &field)?;
        }
        _ => {
            let names = spec
                .get("table_names")
                .and_then(Value::as_array)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| invalid(&format!("{field}.table_names"), "a non-empty list"))?;
            for name in names {
                let name = name.as_str().unwrap_or_default();
                if name.split('.').count() != 3 || !lookups.table_exists(name) {
                    return Err(invalid(
                        &format!("{field}.table_names"),
                        format!("{name:?} is not an existing table (catalog.schema.table)"),
                    ));
                }
            }
            match spec.get("condition") {
                None | Some(Value::Null) => {
                    spec.insert("condition".into(), json!("ANY_UPDATED"));
                }
                Some(Value::String(c)) if c == "ANY_UPDATED" || c == "ALL_UPDATED" => {}
                Some(other) => {
                    return Err(invalid(
                        &format!("{field}.condition"),
                        format!("{other}: ANY_UPDATED or ALL_UPDATED"),
                    ))
                }
            }
            seconds(spec, &field)?;
        }
    }
    Ok(())
}

fn seconds(spec: &Map<String, Value>, field: &str) -> Result<()> {
    for k in [
        "min_time_between_triggers_seconds",
        "wait_after_last_change_seconds",
    ] {
        match spec.get(k) {
            None | Some(Value::Null) => {}
            Some(v) if v.as_i64().is_some_and(|s| s >= 0) => {}
            Some(_) => return Err(invalid(&format!("{field}.{k}"), "seconds, 0 or more")),
        }
    }
    Ok(())
}

/// `/Volumes/c/s/v/…` (or `dbfs:/Volumes/…`) → `c.s.v`.
fn volume_of(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("dbfs:")
        .unwrap_or(url)
        .strip_prefix("/Volumes/")?;
    let parts: Vec<&str> = rest.split('/').take(3).collect();
    if parts.len() < 3 || parts.iter().any(|p| p.is_empty() || *p == "..") {
        return None;
    }
    Some(parts.join("."))
}

/// What a job's unpaused data trigger watches.
enum Watch {
    Files { url: String },
    Tables { names: Vec<String>, all: bool },
}

struct Spec {
    watch: Watch,
    min_between_ms: i64,
    wait_after_ms: i64,
}

fn spec(settings: &Map<String, Value>) -> Option<Spec> {
    let trigger = settings.get("trigger").filter(|t| !t.is_null())?;
    if trigger.get("pause_status").and_then(Value::as_str) == Some("PAUSED") {
        return None;
    }
    let (watch, s) = if let Some(f) = trigger.get("file_arrival").filter(|v| v.is_object()) {
        let url = f.get("url").and_then(Value::as_str)?.to_string();
        (Watch::Files { url }, f)
    } else {
        let t = ["table_update", "table"]
            .into_iter()
            .find_map(|k| trigger.get(k).filter(|v| v.is_object()))?;
        let names = t
            .get("table_names")
            .and_then(Value::as_array)?
            .iter()
            .filter_map(|n| n.as_str().map(String::from))
            .collect();
        let all = t.get("condition").and_then(Value::as_str) == Some("ALL_UPDATED");
        (Watch::Tables { names, all }, t)
    };
    let ms = |k: &str| s.get(k).and_then(Value::as_i64).unwrap_or(0).max(0) * 1000;
    Some(Spec {
        watch,
        min_between_ms: ms("min_time_between_triggers_seconds"),
        wait_after_ms: ms("wait_after_last_change_seconds"),
    })
}

fn file_key(url: &str) -> String {
    format!("files:{url}")
}

fn table_key(name: &str) -> String {
    format!("table:{}", name.to_lowercase())
}

/// The marks of a job whose settings were just set: what its trigger
/// already sees does not fire it (marks of an unchanged watch are kept).
pub(crate) fn baseline(
    catalog: &Catalog,
    settings: &Map<String, Value>,
    old: &BTreeMap<String, i64>,
    now: i64,
) -> BTreeMap<String, i64> {
    let Some(spec) = spec(settings) else {
        return BTreeMap::new();
    };
    match spec.watch {
        Watch::Files { url } => {
            let key = file_key(&url);
            let mark = old.get(&key).copied().unwrap_or(now);
            BTreeMap::from([(key, mark)])
        }
        Watch::Tables { names, .. } => names
            .iter()
            .map(|n| {
                let key = table_key(n);
                let mark = old
                    .get(&key)
                    .copied()
                    .or_else(|| table_version(catalog, n).map(|(v, _)| v))
                    .unwrap_or(-1);
                (key, mark)
            })
            .collect(),
    }
}

/// A table's newest version and when it was written.
fn table_version(catalog: &Catalog, name: &str) -> Option<(i64, i64)> {
    let table = catalog.get_table(name).ok()?;
    DeltaLog::of(&table).ok()?.latest(catalog).ok()
}

/// Where a `/Volumes/…` URL is on this host, confined to its volume.
fn local_path(catalog: &Catalog, url: &str) -> Option<PathBuf> {
    let volume = catalog.get_volume(&volume_of(url)?).ok()?;
    let path = url.strip_prefix("dbfs:").unwrap_or(url);
    let rest = path
        .splitn(6, '/')
        .nth(5)
        .unwrap_or_default()
        .trim_matches('/');
    let local = catalog.volume_dir(&volume).join(rest);
    catalog.confine(&volume, &local).ok()?;
    Some(local)
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

/// Whether `job`'s data trigger fires now.
fn observe(catalog: &Catalog, job: &JobRecord, now: i64) -> Option<Firing> {
    let spec = spec(&job.settings)?;
    let mut marks = job.trigger_marks.clone();
    let (trigger, last_change) = match &spec.watch {
        Watch::Files { url } => {
            let key = file_key(url);
            let after = marks.get(&key).copied().unwrap_or(job.schedule_since_ms);
            let newest = newest_change(&local_path(catalog, url)?, after)?;
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
        let look = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            watched
                .into_iter()
                .filter_map(|j| observe(&catalog, &j, now).map(|f| (j, f)))
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
pub fn watched_volume(settings: &Map<String, Value>) -> Option<String> {
    settings
        .get("trigger")?
        .get("file_arrival")?
        .get("url")?
        .as_str()
        .and_then(volume_of)
}

/// The tables a job's `trigger.table_update` watches (paused or not).
pub fn watched_tables(settings: &Map<String, Value>) -> Vec<String> {
    let Some(trigger) = settings.get("trigger") else {
        return Vec::new();
    };
    ["table_update", "table"]
        .into_iter()
        .filter_map(|k| trigger.get(k)?.get("table_names")?.as_array())
        .flatten()
        .filter_map(|n| n.as_str().map(String::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_urls() {
        assert_eq!(volume_of("/Volumes/c/s/v/in/").as_deref(), Some("c.s.v"));
        assert_eq!(volume_of("dbfs:/Volumes/c/s/v").as_deref(), Some("c.s.v"));
        assert_eq!(volume_of("/Volumes/c/s"), None);
        assert_eq!(volume_of("/Volumes/c/../v/x"), None);
        assert_eq!(volume_of("s3://bucket/x"), None);
    }

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

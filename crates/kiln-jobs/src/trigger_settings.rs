//! The settings side of the data triggers (`trigger.periodic`,
//! `trigger.file_arrival`, `trigger.table_update`): checking them, reading
//! what an unpaused one watches, and the marks a newly set trigger starts
//! from (what it already sees does not fire it). The watching itself is in
//! `triggers`.

use std::collections::BTreeMap;

use kiln_catalog::delta::log::DeltaLog;
use kiln_catalog::Catalog;
use kiln_core::Result;
use serde_json::{json, Map, Value};

use crate::task_settings::{invalid, Lookups};

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
pub(crate) fn volume_of(url: &str) -> Option<String> {
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
pub(crate) enum Watch {
    Files { url: String },
    Tables { names: Vec<String>, all: bool },
}

pub(crate) struct Spec {
    pub watch: Watch,
    pub min_between_ms: i64,
    pub wait_after_ms: i64,
}

pub(crate) fn spec(settings: &Map<String, Value>) -> Option<Spec> {
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

pub(crate) fn file_key(url: &str) -> String {
    format!("files:{url}")
}

pub(crate) fn table_key(name: &str) -> String {
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
pub(crate) fn table_version(catalog: &Catalog, name: &str) -> Option<(i64, i64)> {
    let table = catalog.get_table(name).ok()?;
    DeltaLog::of(catalog, &table).ok()?.latest(catalog).ok()
}

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
}

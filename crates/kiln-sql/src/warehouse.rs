//! A warehouse's record and its settings as the Warehouses API takes them
//! (`CreateWarehouseRequest`, `EditWarehouseRequest`), checked field by field.
//!
//! `cluster_size` becomes engine resources: each of the warehouse's engines
//! is a Sail engine with the size's number of local workers (2X-Small: one
//! process; X-Small 1, Small 2, Medium 4, Large and above 8, the most a Kiln
//! engine runs). `min_num_clusters`/`max_num_clusters` are engines: the
//! warehouse keeps `min` up and adds one, up to `max`, while statements queue.

use std::collections::BTreeMap;

use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::lifecycle::WarehouseState;

pub const KIND: &str = "sql_warehouse";

/// Sizes, smallest first, and the local workers of each engine.
pub const SIZES: &[(&str, u32)] = &[
    ("2X-Small", 0),
    ("X-Small", 1),
    ("Small", 2),
    ("Medium", 4),
    ("Large", 8),
    ("X-Large", 8),
    ("2X-Large", 8),
    ("3X-Large", 8),
    ("4X-Large", 8),
];

/// The most engines one warehouse runs.
pub const MAX_CLUSTERS: i64 = 30;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WarehouseRecord {
    pub id: String,
    pub creator_name: String,
    pub created_at: i64,
    /// The settings as given, with defaults filled in (`name`, `cluster_size`,
    /// `min/max_num_clusters`, `auto_stop_mins`, … and any other field echoed).
    pub settings: Map<String, Value>,
    pub state: WarehouseState,
    /// Why it stopped unasked (an engine that did not start), for `health`.
    #[serde(default)]
    pub failure: Option<String>,
    /// Its engines: the ids of the clusters (`cluster_source` SQL) behind it.
    #[serde(default)]
    pub engines: Vec<String>,
    /// When a statement last ran (auto-stop counts from it).
    #[serde(default)]
    pub last_activity_ms: i64,
}

impl WarehouseRecord {
    pub fn name(&self) -> &str {
        self.settings
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn int(&self, field: &str) -> i64 {
        self.settings
            .get(field)
            .and_then(Value::as_i64)
            .unwrap_or_default()
    }

    pub fn workers(&self) -> u32 {
        let size = self
            .settings
            .get("cluster_size")
            .and_then(Value::as_str)
            .unwrap_or("2X-Small");
        SIZES
            .iter()
            .find(|(s, _)| *s == size)
            .map(|(_, w)| *w)
            .unwrap_or(0)
    }

    pub fn tags(&self) -> BTreeMap<String, String> {
        self.settings
            .get("tags")
            .and_then(|t| t.get("custom_tags"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|t| {
                Some((
                    t.get("key")?.as_str()?.to_string(),
                    t.get("value")?.as_str().unwrap_or_default().to_string(),
                ))
            })
            .collect()
    }
}

fn invalid(field: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!("Invalid value for field {field}: {why}"))
}

fn int(s: &mut Map<String, Value>, field: &str, default: i64, range: (i64, i64)) -> Result<i64> {
    let v = match s.get(field) {
        None | Some(Value::Null) => default,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| invalid(field, "expected an integer"))?,
    };
    if v < range.0 || v > range.1 {
        return Err(invalid(
            field,
            format!("must be between {} and {}", range.0, range.1),
        ));
    }
    s.insert(field.into(), Value::from(v));
    Ok(v)
}

fn one_of(s: &mut Map<String, Value>, field: &str, allowed: &[&str], default: &str) -> Result<()> {
    match s.get(field) {
        None | Some(Value::Null) => {
            s.insert(field.into(), Value::from(default));
            Ok(())
        }
        Some(Value::String(v)) if allowed.contains(&v.as_str()) => Ok(()),
        Some(other) => Err(invalid(
            field,
            format!("{other} (use one of {})", allowed.join(", ")),
        )),
    }
}

fn boolean(s: &mut Map<String, Value>, field: &str, default: bool) -> Result<()> {
    match s.get(field) {
        None | Some(Value::Null) => {
            s.insert(field.into(), Value::from(default));
            Ok(())
        }
        Some(Value::Bool(_)) => Ok(()),
        Some(_) => Err(invalid(field, "expected a boolean")),
    }
}

/// Checks a warehouse's settings (create, or edit merged over the current
/// ones), filling Databricks' defaults.
pub fn normalize(settings: Value) -> Result<Map<String, Value>> {
    let Value::Object(mut s) = settings else {
        return Err(Error::invalid(
            "A warehouse's settings must be a JSON object",
        ));
    };
    s.remove("id");
    match s.get("name").and_then(Value::as_str) {
        Some(n) if !n.trim().is_empty() && n.len() <= 100 => {}
        _ => return Err(invalid("name", "required, 1 to 100 characters")),
    }
    let sizes: Vec<&str> = SIZES.iter().map(|(s, _)| *s).collect();
    match s.get("cluster_size") {
        Some(Value::String(v)) if sizes.contains(&v.as_str()) => {}
        None | Some(Value::Null) => {
            return Err(invalid(
                "cluster_size",
                format!("required, one of {}", sizes.join(", ")),
            ))
        }
        Some(other) => {
            return Err(invalid(
                "cluster_size",
                format!("{other} (use one of {})", sizes.join(", ")),
            ))
        }
    }
    let min = int(&mut s, "min_num_clusters", 1, (1, MAX_CLUSTERS))?;
    let max = int(&mut s, "max_num_clusters", min, (1, MAX_CLUSTERS))?;
    if max < min {
        return Err(invalid(
            "max_num_clusters",
            "must be at least min_num_clusters",
        ));
    }
    let stop = int(&mut s, "auto_stop_mins", 120, (0, 10_000))?;
    if stop != 0 && stop < 1 {
        return Err(invalid("auto_stop_mins", "0 (never) or at least 1"));
    }
    boolean(&mut s, "enable_photon", true)?;
    boolean(&mut s, "enable_serverless_compute", false)?;
    one_of(
        &mut s,
        "warehouse_type",
        &["CLASSIC", "PRO", "TYPE_UNSPECIFIED"],
        "CLASSIC",
    )?;
    one_of(
        &mut s,
        "spot_instance_policy",
        &[
            "COST_OPTIMIZED",
            "RELIABILITY_OPTIMIZED",
            "POLICY_UNSPECIFIED",
        ],
        "COST_OPTIMIZED",
    )?;
    match s.get("channel") {
        None | Some(Value::Null) => {
            s.insert(
                "channel".into(),
                serde_json::json!({"name": "CHANNEL_NAME_CURRENT"}),
            );
        }
        Some(Value::Object(_)) => {}
        Some(_) => return Err(invalid("channel", "expected an object")),
    }
    if let Some(tags) = s.get("tags").filter(|t| !t.is_null()) {
        let ok = tags.get("custom_tags").is_none_or(|c| {
            c.is_null()
                || c.as_array().is_some_and(|a| {
                    a.iter()
                        .all(|t| t.get("key").and_then(Value::as_str).is_some())
                })
        });
        if !tags.is_object() || !ok {
            return Err(invalid("tags.custom_tags", "a list of {key, value}"));
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_bad_fields() -> Result<()> {
        let s = normalize(json!({"name": "w", "cluster_size": "2X-Small"}))?;
        assert_eq!(s["min_num_clusters"], json!(1));
        assert_eq!(s["max_num_clusters"], json!(1));
        assert_eq!(s["auto_stop_mins"], json!(120));
        assert_eq!(s["warehouse_type"], json!("CLASSIC"));
        for (bad, field) in [
            (json!({"cluster_size": "Small"}), "name"),
            (json!({"name": "w"}), "cluster_size"),
            (json!({"name": "w", "cluster_size": "Huge"}), "cluster_size"),
            (
                json!({"name": "w", "cluster_size": "Small", "min_num_clusters": 3, "max_num_clusters": 2}),
                "max_num_clusters",
            ),
            (
                json!({"name": "w", "cluster_size": "Small", "max_num_clusters": 31}),
                "max_num_clusters",
            ),
            (
                json!({"name": "w", "cluster_size": "Small", "warehouse_type": "BIG"}),
                "warehouse_type",
            ),
        ] {
            let e = normalize(bad).err().map(|e| e.message).unwrap_or_default();
            assert!(e.contains(field), "{e}");
        }
        Ok(())
    }
}

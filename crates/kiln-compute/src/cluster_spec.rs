//! A cluster spec given as JSON by another product — a pipeline's `clusters`
//! entry, a job's `new_cluster` or `job_clusters` — turned into the cluster
//! configuration Kiln runs, with the same checks as the Clusters API on what
//! reaches the engine's process.

use std::collections::BTreeMap;

use kiln_core::{Error, Result};
use kiln_store::ClusterConfig;
use serde_json::Value;

/// Most workers a cluster of this host gets.
const MAX_WORKERS: u32 = 8;

/// A JSON object of settings as strings.
fn strings(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let text = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    (k.clone(), text)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The configuration of a cluster `spec` asks for, named `name`, created by
/// `source` (`PIPELINE`, `JOB`). `spark_env_vars` and `spark_conf` are checked
/// as the Clusters API checks them.
pub fn config_from_json(
    spec: &Value,
    name: &str,
    source: &str,
    autotermination_minutes: u32,
) -> Result<ClusterConfig> {
    if !spec.is_object() && !spec.is_null() {
        return Err(Error::invalid("A cluster spec must be an object"));
    }
    let spark_env_vars = strings(&spec["spark_env_vars"]);
    crate::validate::spark_env_vars(&spark_env_vars)?;
    let spark_conf = strings(&spec["spark_conf"]);
    crate::validate::spark_conf(&spark_conf)?;
    let autoscale = spec["autoscale"].as_object().map(|a| {
        let min = a.get("min_workers").and_then(Value::as_u64).unwrap_or(1) as u32;
        let max = a
            .get("max_workers")
            .and_then(Value::as_u64)
            .unwrap_or(min as u64) as u32;
        let min = min.min(MAX_WORKERS);
        (min, max.clamp(min, MAX_WORKERS))
    });
    Ok(ClusterConfig {
        cluster_name: spec["cluster_name"].as_str().unwrap_or(name).to_string(),
        spark_version: spec["spark_version"]
            .as_str()
            .unwrap_or(crate::spark_versions::DEFAULT_SPARK_VERSION)
            .to_string(),
        node_type_id: spec["node_type_id"].as_str().unwrap_or("kiln-local").into(),
        driver_node_type_id: spec["driver_node_type_id"]
            .as_str()
            .unwrap_or("kiln-local")
            .into(),
        num_workers: (spec["num_workers"].as_u64().unwrap_or(0) as u32).min(MAX_WORKERS),
        autoscale,
        autotermination_minutes,
        spark_conf,
        spark_env_vars,
        custom_tags: strings(&spec["custom_tags"]),
        cluster_source: source.into(),
        other: ["ssh_public_keys", "cluster_log_conf"]
            .into_iter()
            .filter_map(|k| {
                spec.get(k)
                    .filter(|v| !v.is_null())
                    .map(|v| (k.to_string(), v.clone()))
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn specs_map_to_configs_and_env_is_checked() -> Result<()> {
        let c = config_from_json(
            &json!({"spark_version": "15.4.x-scala2.12", "num_workers": 20,
                    "spark_conf": {"spark.x": 1}, "custom_tags": {"team": "a"}}),
            "job-1",
            "JOB",
            0,
        )?;
        assert_eq!(c.cluster_name, "job-1");
        assert_eq!(c.spark_version, "15.4.x-scala2.12");
        assert_eq!(c.num_workers, MAX_WORKERS);
        assert_eq!(c.spark_conf["spark.x"], "1");
        assert_eq!(c.cluster_source, "JOB");
        assert!(config_from_json(
            &json!({"spark_env_vars": {"LD_PRELOAD": "/x.so"}}),
            "j",
            "JOB",
            0
        )
        .is_err());
        Ok(())
    }
}

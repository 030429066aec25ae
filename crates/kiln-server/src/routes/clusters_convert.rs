//! Conversions between the Clusters wire types and the domain records.

use std::collections::BTreeMap;

use kiln_api::clusters as wire;
use kiln_core::{Error, Result};
use kiln_store::{ClusterConfig, ClusterEventRecord, ClusterRecord};
use serde_json::{Map, Value};

pub use kiln_compute::host::HostInfo;

/// The only node type: the machine Kiln runs on.
pub const NODE_TYPE_ID: &str = "kiln-local";

/// Validates a ClusterSpec and turns it into the domain configuration.
pub fn config_from_spec(spec: wire::ClusterSpec) -> Result<ClusterConfig> {
    if spec.spark_version.trim().is_empty() {
        return Err(Error::invalid("Missing required field: spark_version"));
    }
    let autoscale = match spec.autoscale {
        Some(a) if a.min_workers > a.max_workers || a.max_workers == 0 => {
            return Err(Error::invalid(
                "autoscale.max_workers must be positive and at least autoscale.min_workers",
            ))
        }
        Some(a) => Some((a.min_workers, a.max_workers)),
        None => None,
    };
    let minutes = spec.autotermination_minutes.unwrap_or(0);
    if minutes != 0 && !(10..=43_200).contains(&minutes) {
        return Err(Error::invalid(
            "Invalid value for field autotermination_minutes: it must be 0 (disabled) or between 10 and 43200.",
        ));
    }
    if let Some(vars) = &spec.spark_env_vars {
        kiln_compute::validate::spark_env_vars(vars)?;
    }
    if let Some(conf) = &spec.spark_conf {
        kiln_compute::validate::spark_conf(conf)?;
    }
    let node_type_id = spec.node_type_id.unwrap_or_else(|| NODE_TYPE_ID.into());
    let source = spec
        .cluster_source
        .map(|s| enum_name(&s))
        .unwrap_or_else(|| "API".into());
    Ok(ClusterConfig {
        cluster_name: spec.cluster_name.unwrap_or_default(),
        spark_version: spec.spark_version,
        driver_node_type_id: spec
            .driver_node_type_id
            .unwrap_or_else(|| node_type_id.clone()),
        node_type_id,
        num_workers: autoscale
            .map(|(min, _)| min)
            .unwrap_or(spec.num_workers.unwrap_or(0)),
        autoscale,
        autotermination_minutes: minutes,
        spark_conf: spec.spark_conf.unwrap_or_default(),
        spark_env_vars: spec.spark_env_vars.unwrap_or_default(),
        custom_tags: spec.custom_tags.unwrap_or_default(),
        cluster_source: source,
        other: spec.other.into_iter().collect(),
    })
}

fn enum_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The user-settable attributes of a cluster as ClusterSpec JSON (for `update`).
pub fn spec_json(config: &ClusterConfig) -> Map<String, Value> {
    let mut map: Map<String, Value> = config.other.clone().into_iter().collect();
    let mut put = |k: &str, v: Value| {
        map.insert(k.into(), v);
    };
    put("cluster_name", config.cluster_name.clone().into());
    put("spark_version", config.spark_version.clone().into());
    put("node_type_id", config.node_type_id.clone().into());
    put(
        "driver_node_type_id",
        config.driver_node_type_id.clone().into(),
    );
    match config.autoscale {
        Some((min, max)) => put(
            "autoscale",
            serde_json::json!({"min_workers": min, "max_workers": max}),
        ),
        None => put("num_workers", config.num_workers.into()),
    }
    put(
        "autotermination_minutes",
        config.autotermination_minutes.into(),
    );
    put("spark_conf", serde_json::json!(config.spark_conf));
    put("spark_env_vars", serde_json::json!(config.spark_env_vars));
    put("custom_tags", serde_json::json!(config.custom_tags));
    put("cluster_source", config.cluster_source.clone().into());
    map
}

fn state_of(record: &ClusterRecord) -> wire::State {
    serde_json::from_value(Value::String(record.state.as_str().into()))
        .unwrap_or(wire::State::Unknown)
}

/// `ClusterDetails` for get/list.
pub fn details(record: &ClusterRecord, host: HostInfo) -> wire::ClusterDetails {
    let config = &record.config;
    let state = state_of(record);
    let running = state == wire::State::Running;
    let mut default_tags = BTreeMap::from([
        ("Vendor".to_string(), "Databricks".to_string()),
        ("Creator".to_string(), record.creator.clone()),
        ("ClusterName".to_string(), config.cluster_name.clone()),
        ("ClusterId".to_string(), record.cluster_id.clone()),
    ]);
    if let (true, Some(port)) = (running, record.engine_port) {
        default_tags.insert(
            "KilnSparkConnectUrl".into(),
            format!("sc://127.0.0.1:{port}"),
        );
    }
    let driver = running.then(|| wire::SparkNode {
        node_id: format!("{}-driver", record.cluster_id),
        instance_id: format!("pid-{}", record.engine_pid.unwrap_or(0)),
        host_private_ip: "127.0.0.1".into(),
        private_ip: "127.0.0.1".into(),
        public_dns: "127.0.0.1".into(),
        start_timestamp: record.last_restarted_time.unwrap_or(record.start_time),
    });
    wire::ClusterDetails {
        cluster_id: record.cluster_id.clone(),
        cluster_name: config.cluster_name.clone(),
        spark_version: config.spark_version.clone(),
        node_type_id: config.node_type_id.clone(),
        driver_node_type_id: config.driver_node_type_id.clone(),
        num_workers: config.autoscale.is_none().then_some(config.num_workers),
        autoscale: config.autoscale.map(|(min, max)| wire::AutoScale {
            min_workers: min,
            max_workers: max,
        }),
        autotermination_minutes: config.autotermination_minutes,
        spark_conf: config.spark_conf.clone(),
        spark_env_vars: config.spark_env_vars.clone(),
        custom_tags: config.custom_tags.clone(),
        default_tags,
        cluster_source: config.cluster_source.clone(),
        creator_user_name: record.owner.clone(),
        single_user_name: config
            .other
            .get("single_user_name")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        state,
        state_message: record.state_message.clone(),
        start_time: record.start_time,
        terminated_time: record.terminated_time,
        last_restarted_time: record.last_restarted_time,
        termination_reason: record
            .termination_reason
            .as_ref()
            .map(|r| wire::TerminationReason {
                code: r.code.clone(),
                reason_type: r.reason_type.clone(),
                parameters: r.parameters.clone(),
            }),
        driver,
        executors: Vec::new(),
        spark_context_id: record.spark_context_id,
        cluster_cores: host.cores,
        cluster_memory_mb: host.memory_mb,
        is_pinned: record.pinned,
        other: config
            .other
            .iter()
            .filter(|(k, _)| k.as_str() != "single_user_name")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

pub fn event(record: ClusterEventRecord) -> wire::ClusterEvent {
    wire::ClusterEvent {
        cluster_id: record.cluster_id,
        timestamp: record.timestamp,
        event_type: record.event_type,
        details: record.details,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<ClusterConfig> {
        config_from_spec(crate::extract::from_json(json.as_bytes())?)
    }

    #[test]
    fn keeps_unknown_attributes() -> Result<()> {
        let config = spec(
            r#"{"spark_version": "16.4.x-scala2.12", "aws_attributes": {"zone_id": "auto"}}"#,
        )?;
        assert_eq!(
            config.other.get("aws_attributes"),
            Some(&serde_json::json!({"zone_id": "auto"}))
        );
        assert_eq!(config.node_type_id, NODE_TYPE_ID);
        assert_eq!(config.cluster_source, "API");
        Ok(())
    }

    #[test]
    fn validates_autotermination_and_autoscale() {
        let bad = |j: &str| spec(j).is_err();
        assert!(bad(
            r#"{"spark_version": "16.4.x-scala2.12", "autotermination_minutes": 5}"#
        ));
        assert!(bad(
            r#"{"spark_version": "16.4.x-scala2.12", "autoscale": {"min_workers": 3, "max_workers": 1}}"#
        ));
        assert!(bad(
            r#"{"spark_version": "16.4.x-scala2.12", "cluster_source": "NOPE"}"#
        ));
        assert!(!bad(
            r#"{"spark_version": "16.4.x-scala2.12", "autotermination_minutes": 10}"#
        ));
    }
}

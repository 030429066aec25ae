//! The settings a pipeline is created or edited with, checked at the edge:
//! field types, `target`/`schema`, and pipeline clusters as the Pipelines API
//! accepts them.

use kiln_api::pipelines::PipelineFlags;
use kiln_core::{Error, Result};
use serde_json::{json, Value};

pub(super) fn spec_of(mut body: Value) -> Result<(Value, PipelineFlags)> {
    let flags: PipelineFlags = serde_json::from_value(body.clone())
        .map_err(|e| Error::invalid(format!("Invalid request: {e}")))?;
    let Some(obj) = body.as_object_mut() else {
        return Err(Error::invalid(
            "The request body must be a JSON object of pipeline settings",
        ));
    };
    for k in ["dry_run", "expected_last_modified"] {
        obj.remove(k);
    }
    if obj.get("target").is_some() && obj.get("schema").is_some() {
        return Err(Error::invalid(
            "Invalid value for field target: set schema or target, not both",
        ));
    }
    for field in [
        "name", "storage", "catalog", "schema", "target", "edition", "channel",
    ] {
        if obj.get(field).is_some_and(|v| !v.is_string()) {
            return Err(Error::invalid(format!(
                "Invalid value for field {field}: expected a string"
            )));
        }
    }
    for field in ["continuous", "development", "photon", "serverless"] {
        match obj.get(field) {
            Some(Value::String(s)) if s == "true" || s == "false" => {
                let b = s == "true";
                obj.insert(field.into(), json!(b));
            }
            Some(v) if !v.is_boolean() => {
                return Err(Error::invalid(format!(
                    "Invalid value for field {field}: expected a boolean"
                )))
            }
            _ => {}
        }
    }
    if obj.get("configuration").is_some_and(|c| !c.is_object()) {
        return Err(Error::invalid(
            "Invalid value for field configuration: expected an object of strings",
        ));
    }
    if obj.get("libraries").is_some_and(|c| !c.is_array()) {
        return Err(Error::invalid(
            "Invalid value for field libraries: expected a list",
        ));
    }
    check_clusters(obj.get("clusters"))?;
    Ok((body, flags))
}

/// Pipeline clusters as the Pipelines API accepts them: at most 10 SSH keys
/// and 45 custom tags each, environment variables users may set.
fn check_clusters(clusters: Option<&Value>) -> Result<()> {
    let Some(clusters) = clusters else {
        return Ok(());
    };
    let list = clusters
        .as_array()
        .ok_or_else(|| Error::invalid("Invalid value for field clusters: expected a list"))?;
    for (i, cluster) in list.iter().enumerate() {
        let field = |name: &str| format!("clusters[{i}].{name}");
        let strings = |name: &str| -> Result<Option<Vec<(String, String)>>> {
            match cluster.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(map)) => map
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(v) => Ok((k.clone(), v.clone())),
                        _ => Err(Error::invalid(format!(
                            "Invalid value for field {}: expected an object of strings",
                            field(name)
                        ))),
                    })
                    .collect::<Result<Vec<_>>>()
                    .map(Some),
                Some(_) => Err(Error::invalid(format!(
                    "Invalid value for field {}: expected an object of strings",
                    field(name)
                ))),
            }
        };
        if let Some(tags) = strings("custom_tags")? {
            if tags.len() > 45 {
                return Err(Error::invalid(format!(
                    "Invalid value for field {}: at most 45 custom tags, got {}",
                    field("custom_tags"),
                    tags.len()
                )));
            }
        }
        if let Some(vars) = strings("spark_env_vars")? {
            kiln_compute::validate::spark_env_vars(vars.iter().map(|(k, v)| (k, v)))?;
        }
        match cluster.get("ssh_public_keys") {
            None | Some(Value::Null) => {}
            Some(Value::Array(keys)) if keys.iter().all(Value::is_string) => {
                if keys.len() > 10 {
                    return Err(Error::invalid(format!(
                        "Invalid value for field {}: at most 10 SSH public keys, got {}",
                        field("ssh_public_keys"),
                        keys.len()
                    )));
                }
            }
            Some(_) => {
                return Err(Error::invalid(format!(
                    "Invalid value for field {}: expected a list of strings",
                    field("ssh_public_keys")
                )))
            }
        }
        if cluster
            .get("cluster_log_conf")
            .is_some_and(|c| !c.is_object() && !c.is_null())
        {
            return Err(Error::invalid(format!(
                "Invalid value for field {}: expected an object",
                field("cluster_log_conf")
            )));
        }
    }
    Ok(())
}

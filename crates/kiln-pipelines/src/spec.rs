//! A pipeline's settings (`PipelineSpec`): the fields Kiln reads, typed, and
//! every other field kept as the user gave it (they are echoed back as given).
//! The HTTP edge checks the fields' types before a spec gets here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The legacy name of `schema`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub development: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuous: Option<bool>,
    /// A request flag, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_duplicate_names: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<Map<String, Value>>,
    /// `PipelineLibrary` objects (`notebook`, `file`, `glob`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub libraries: Option<Vec<Value>>,
    /// `PipelineCluster` objects (the `default` label's settings are used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<Vec<Value>>,
    /// Every other field, as given (edition, channel, photon, notifications, …).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl PipelineSpec {
    /// A spec from the JSON object of settings a request carries.
    pub fn from_json(value: Value) -> kiln_core::Result<Self> {
        serde_json::from_value(value)
            .map_err(|e| kiln_core::Error::invalid(format!("Invalid pipeline settings: {e}")))
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    pub fn development(&self) -> bool {
        self.development.unwrap_or(false)
    }

    pub fn continuous(&self) -> bool {
        self.continuous.unwrap_or(false)
    }

    pub fn libraries(&self) -> &[Value] {
        self.libraries.as_deref().unwrap_or_default()
    }

    /// `configuration`, every value as a string.
    pub fn configuration(&self) -> BTreeMap<String, String> {
        self.configuration
            .as_ref()
            .map(|c| string_map(&Value::Object(c.clone())))
            .unwrap_or_default()
    }

    /// One `configuration` value as given.
    pub fn setting(&self, key: &str) -> Option<&Value> {
        self.configuration.as_ref()?.get(key)
    }

    /// Where it publishes: `catalog` (default `main`) and `schema` (or legacy
    /// `target`, default `default`).
    pub fn publish_schema(&self) -> (String, String) {
        let catalog = self.catalog.clone().unwrap_or_else(|| "main".into());
        let schema = self
            .schema
            .clone()
            .or_else(|| self.target.clone())
            .unwrap_or_else(|| "default".into());
        (catalog, schema)
    }
}

/// A JSON object of settings as strings (`configuration`, `spark_conf`, tags).
pub fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_round_trip_and_known_ones_are_typed() -> kiln_core::Result<()> {
        let given = json!({
            "name": "p", "target": "t", "development": true,
            "configuration": {"a": 1, "b": "x"},
            "libraries": [{"notebook": {"path": "/n"}}],
            "edition": "ADVANCED", "notifications": [{"email_recipients": ["a@b"]}]
        });
        let spec = PipelineSpec::from_json(given.clone())?;
        assert_eq!(spec.to_json(), given);
        assert_eq!(spec.publish_schema(), ("main".into(), "t".into()));
        assert!(spec.development() && !spec.continuous());
        assert_eq!(spec.configuration()["a"], "1");
        assert_eq!(spec.libraries().len(), 1);
        assert!(PipelineSpec::from_json(json!({"development": "yes"})).is_err());
        Ok(())
    }
}

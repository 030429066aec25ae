//! Jobs API 2.2 (and the 2.0/2.1 paths older clients use): request
//! parameters of the operations. Job settings (`JobSettings`) and one-time
//! run specs travel as JSON objects; ids may come as numbers or as text.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::lenient::opt_bool;

/// An id given as a JSON number or as text (query strings).
pub fn id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    match opt_id(deserializer)? {
        Some(v) => Ok(v),
        None => Err(serde::de::Error::custom("missing id")),
    }
}

pub fn opt_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Int(i64),
        Text(String),
    }
    match Option::<Loose>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Loose::Int(i)) => Ok(Some(i)),
        Some(Loose::Text(t)) => t
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("expected an integer, got {t}"))),
    }
}

/// `jobs/get`, `jobs/delete`.
#[derive(Debug, Deserialize)]
pub struct JobRef {
    #[serde(deserialize_with = "id")]
    pub job_id: i64,
    /// 2.2: the next page of a job's tasks, job clusters, parameters and environments.
    #[serde(default)]
    pub page_token: Option<String>,
}

/// `jobs/list`.
#[derive(Debug, Default, Deserialize)]
pub struct ListJobs {
    #[serde(default, deserialize_with = "opt_id")]
    pub limit: Option<i64>,
    #[serde(default, deserialize_with = "opt_id")]
    pub offset: Option<i64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    pub expand_tasks: Option<bool>,
    #[serde(default)]
    pub page_token: Option<String>,
}

/// `jobs/reset`.
#[derive(Debug, Deserialize)]
pub struct ResetJob {
    #[serde(deserialize_with = "id")]
    pub job_id: i64,
    pub new_settings: Value,
}

/// `jobs/update`.
#[derive(Debug, Deserialize)]
pub struct UpdateJob {
    #[serde(deserialize_with = "id")]
    pub job_id: i64,
    #[serde(default)]
    pub new_settings: Option<Map<String, Value>>,
    #[serde(default)]
    pub fields_to_remove: Vec<String>,
}

/// `jobs/run-now`.
#[derive(Debug, Default, Deserialize)]
pub struct RunNow {
    #[serde(default, deserialize_with = "opt_id")]
    pub job_id: Option<i64>,
    #[serde(default)]
    pub job_parameters: Option<Map<String, Value>>,
    #[serde(default)]
    pub notebook_params: Option<Map<String, Value>>,
    #[serde(default)]
    pub python_params: Option<Vec<Value>>,
    #[serde(default)]
    pub python_named_params: Option<Map<String, Value>>,
    #[serde(default)]
    pub jar_params: Option<Vec<Value>>,
    #[serde(default)]
    pub spark_submit_params: Option<Vec<Value>>,
    #[serde(default)]
    pub sql_params: Option<Map<String, Value>>,
    #[serde(default)]
    pub dbt_commands: Option<Vec<Value>>,
    #[serde(default)]
    pub idempotency_token: Option<String>,
    #[serde(default)]
    pub only: Vec<String>,
    #[serde(default)]
    pub queue: Option<Value>,
}

/// `runs/get`, `runs/get-output`, `runs/cancel`, `runs/delete`, `runs/export`.
#[derive(Debug, Deserialize)]
pub struct RunRef {
    #[serde(deserialize_with = "id")]
    pub run_id: i64,
    /// 2.2: the next page of a run's tasks, job clusters, parameters and repair history.
    #[serde(default)]
    pub page_token: Option<String>,
}

/// `runs/list`.
#[derive(Debug, Default, Deserialize)]
pub struct ListRuns {
    #[serde(default, deserialize_with = "opt_id")]
    pub job_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_bool")]
    pub active_only: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    pub completed_only: Option<bool>,
    #[serde(default, deserialize_with = "opt_id")]
    pub offset: Option<i64>,
    #[serde(default, deserialize_with = "opt_id")]
    pub limit: Option<i64>,
    #[serde(default)]
    pub run_type: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    pub start_time_from: Option<i64>,
    #[serde(default, deserialize_with = "opt_id")]
    pub start_time_to: Option<i64>,
    #[serde(default, deserialize_with = "opt_bool")]
    pub expand_tasks: Option<bool>,
    #[serde(default)]
    pub page_token: Option<String>,
}

/// `runs/repair`.
#[derive(Debug, Deserialize)]
pub struct RepairRun {
    #[serde(deserialize_with = "id")]
    pub run_id: i64,
    #[serde(default)]
    pub rerun_tasks: Vec<String>,
    #[serde(default, deserialize_with = "opt_bool")]
    pub rerun_all_failed_tasks: Option<bool>,
    #[serde(default, deserialize_with = "opt_bool")]
    pub rerun_dependent_tasks: Option<bool>,
    #[serde(default, deserialize_with = "opt_id")]
    pub latest_repair_id: Option<i64>,
    #[serde(default)]
    pub job_parameters: Option<Map<String, Value>>,
    #[serde(default)]
    pub notebook_params: Option<Map<String, Value>>,
    #[serde(default)]
    pub python_params: Option<Vec<Value>>,
}

/// `runs/cancel-all`.
#[derive(Debug, Default, Deserialize)]
pub struct CancelAllRuns {
    #[serde(default, deserialize_with = "opt_id")]
    pub job_id: Option<i64>,
    #[serde(default, deserialize_with = "opt_bool")]
    pub all_queued_runs: Option<bool>,
}

/// Parameter maps as text, as runs receive them.
pub fn text_map(map: Option<&Map<String, Value>>) -> BTreeMap<String, String> {
    map.map(|m| {
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

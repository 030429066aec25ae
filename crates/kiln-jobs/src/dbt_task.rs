//! `dbt_task`: the task's dbt commands on its compute (an existing cluster,
//! a job cluster, or an environment's pooled engine), through the same
//! execution contexts as notebooks and Python files, as the run's `run_as`.
//! dbt itself comes from the task's libraries or environment dependencies
//! (`dbt-databricks`, added when they name no dbt); the work happens in
//! `kiln_kernel.dbt_run`, which exports the project from the workspace,
//! writes the profile for the task's warehouse and runs the commands. The
//! dbt models' SQL reaches the warehouse (or the cluster) through the
//! Databricks SQL protocol on Kiln's HTTPS port, as the run's identity.

use std::path::PathBuf;

use kiln_core::{Error, Result};
use serde_json::{json, Value};

use crate::model::RunRecord;
use crate::service::Jobs;

/// Where dbt reaches Kiln's SQL protocol from a cluster.
#[derive(Debug, Clone)]
pub struct SqlEndpoint {
    /// The host a cluster's processes reach Kiln at.
    pub hostname: String,
    /// Kiln's HTTPS port (0: HTTPS is off, and dbt tasks cannot connect).
    pub port: u16,
    /// The workspace (org) id of `sql/protocolv1/o/<org>/<cluster>`.
    pub org_id: String,
    /// Trust roots with Kiln's own CA (when Kiln issued its certificate).
    pub ca_bundle: Option<PathBuf>,
}

/// Adds the default dbt package unless the task's libraries name dbt.
pub(crate) fn ensure_dbt(libraries: &mut Vec<Value>) {
    let names_dbt = libraries.iter().any(|l| {
        l["pypi"]["package"]
            .as_str()
            .is_some_and(|p| p.trim_start().to_ascii_lowercase().starts_with("dbt-"))
            || l["whl"]
                .as_str()
                .is_some_and(|w| w.rsplit('/').next().is_some_and(|f| f.starts_with("dbt")))
            || l.get("requirements").is_some_and(|r| !r.is_null())
    });
    if !names_dbt {
        libraries.push(json!({"pypi": {"package": crate::dbt_settings::DEFAULT_DBT}}));
    }
}

/// The command that runs the task's dbt commands (run-now's `dbt_commands`
/// replace the task's).
pub(crate) fn code(jobs: &Jobs, run: &RunRecord, spec: &Value) -> Result<String> {
    let endpoint = &jobs.sql_endpoint;
    if endpoint.port == 0 {
        return Err(Error::invalid(
            "A dbt task reaches its warehouse through Kiln's HTTPS port, which is off (server.https_port = 0)",
        ));
    }
    let ca_bundle = match &endpoint.ca_bundle {
        Some(path) => Value::String(
            std::fs::read_to_string(path)
                .map_err(|e| Error::internal("read Kiln's CA bundle", e))?,
        ),
        None => Value::Null,
    };
    let commands = run
        .overriding_parameters
        .get("dbt_commands")
        .filter(|c| c.as_array().is_some_and(|c| !c.is_empty()))
        .unwrap_or(&spec["commands"]);
    let task = json!({
        "commands": commands,
        "project_directory": spec["project_directory"],
        "profiles_directory": spec.get("profiles_directory").cloned().unwrap_or(Value::Null),
        "warehouse_id": spec.get("warehouse_id").cloned().unwrap_or(Value::Null),
        "catalog": spec.get("catalog").cloned().unwrap_or(Value::Null),
        "schema": spec.get("schema").cloned().unwrap_or(Value::Null),
        "connection": {
            "hostname": endpoint.hostname,
            "port": endpoint.port,
            "org_id": endpoint.org_id,
            "ca_bundle": ca_bundle,
        },
    });
    // the settings travel as a JSON string literal (JSON's is Python's too)
    let literal = Value::String(task.to_string()).to_string();
    Ok(format!(
        "import json as _kiln_json\n\
         from kiln_kernel import dbt_run as _kiln_dbt\n\
         _kiln_dbt.run(dbutils.secrets._api, dbutils.secrets._redacted, _kiln_json.loads({literal}))\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_dbt_is_added_only_when_no_library_names_dbt() {
        let mut none = vec![json!({"pypi": {"package": "requests"}})];
        ensure_dbt(&mut none);
        assert_eq!(none[1]["pypi"]["package"], crate::dbt_settings::DEFAULT_DBT);
        let mut named = vec![json!({"pypi": {"package": "dbt-databricks==1.10.19"}})];
        ensure_dbt(&mut named);
        assert_eq!(named.len(), 1);
        let mut wheel =
            vec![json!({"whl": "/Volumes/c/s/v/dbt_databricks-1.10.19-py3-none-any.whl"})];
        ensure_dbt(&mut wheel);
        assert_eq!(wheel.len(), 1);
    }
}

//! Serverless-style tasks: a job's `environments` (each an `environment_key`
//! and a `spec` with `client`/`environment_version` and pip `dependencies`)
//! and tasks that name one with `environment_key` instead of a cluster.
//!
//! Kiln keeps a pool of engines for them (`code_task::environment_engine`): one per (run_as, environment spec),
//! a cluster named `serverless-env-<hash>` tagged `KilnEnvironment`, whose
//! libraries are the environment's dependencies. It outlives the run, so the
//! next run of any job with the same environment finds it warm with its
//! dependencies installed; it stops after `IDLE_MINUTES` without work and is
//! started again when a task needs it. One engine per user keeps one user's
//! code away from another's.

use std::collections::BTreeSet;

use kiln_core::Result;
use serde_json::{json, Map, Value};

use crate::task_settings::invalid;

/// Minutes an environment's engine stays up without work.
pub const IDLE_MINUTES: u32 = 10;
pub(crate) const TAG: &str = "KilnEnvironment";

/// Checks `environments`, returning their keys.
pub(crate) fn check(s: &Map<String, Value>) -> Result<BTreeSet<String>> {
    let mut keys = BTreeSet::new();
    let Some(list) = s.get("environments").filter(|v| !v.is_null()) else {
        return Ok(keys);
    };
    let list = list
        .as_array()
        .ok_or_else(|| invalid("environments", "expected a list"))?;
    for env in list {
        let key = env
            .get("environment_key")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| invalid("environments.environment_key", "required"))?;
        if !keys.insert(key.to_string()) {
            return Err(invalid(
                "environments.environment_key",
                format!("duplicate key {key}"),
            ));
        }
        let spec = env.get("spec").filter(|v| !v.is_null());
        if spec.is_some_and(|s| !s.is_object()) {
            return Err(invalid("environments.spec", "expected an object"));
        }
        for dep in dependencies(spec.unwrap_or(&Value::Null))? {
            kiln_compute::libraries::LibrarySource::parse(&dep)
                .map_err(|e| invalid("environments.spec.dependencies", e.message))?;
        }
    }
    Ok(keys)
}

/// Every task (and for-each nested task) names an environment that exists.
pub(crate) fn check_keys(tasks: &[Map<String, Value>], keys: &BTreeSet<String>) -> Result<()> {
    for task in tasks {
        let nested = task
            .get("for_each_task")
            .and_then(|f| f.get("task"))
            .and_then(Value::as_object);
        for t in std::iter::once(task).chain(nested) {
            if let Some(k) = t.get("environment_key").and_then(Value::as_str) {
                if !keys.contains(k) {
                    return Err(invalid(
                        "tasks.environment_key",
                        format!("no environment {k} in the job's environments"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// An environment's `dependencies` as cluster libraries: a wheel path is a
/// `whl`, `-r <file>` a `requirements` file, anything else a PyPI requirement.
pub(crate) fn dependencies(spec: &Value) -> Result<Vec<Value>> {
    let Some(list) = spec.get("dependencies").filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| invalid("environments.spec.dependencies", "expected a list"))?;
    list.iter()
        .map(|d| {
            let d = d
                .as_str()
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .ok_or_else(|| {
                    invalid(
                        "environments.spec.dependencies",
                        "expected requirement strings",
                    )
                })?;
            Ok(if let Some(file) = d.strip_prefix("-r ") {
                json!({"requirements": file.trim()})
            } else if d.ends_with(".whl") && (d.starts_with('/') || d.contains(":/")) {
                json!({"whl": d})
            } else {
                json!({"pypi": {"package": d}})
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_become_libraries() -> Result<()> {
        let spec = json!({"client": "2", "dependencies": [
            "pandas==2.2.3", "/Volumes/main/default/w/pkg-1.0-py3-none-any.whl", "-r /Workspace/Shared/req.txt"]});
        assert_eq!(
            dependencies(&spec)?,
            vec![
                json!({"pypi": {"package": "pandas==2.2.3"}}),
                json!({"whl": "/Volumes/main/default/w/pkg-1.0-py3-none-any.whl"}),
                json!({"requirements": "/Workspace/Shared/req.txt"}),
            ]
        );
        assert!(dependencies(&json!({"dependencies": [""]})).is_err());
        let s = json!({"environments": [{"environment_key": "e", "spec": {}}, {"environment_key": "e"}]});
        assert!(check(s.as_object().unwrap_or(&Map::new())).is_err());
        Ok(())
    }
}

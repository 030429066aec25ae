//! Dynamic value references (`{{job.id}}`, `{{job.parameters.env}}`,
//! `{{tasks.ingest.values.rows}}`, …) in a task's parameters, resolved when
//! the task starts. An unknown reference fails the task, naming it.

use std::collections::BTreeMap;

use kiln_core::time::rfc3339;
use serde_json::Value;

/// What references may name.
pub struct Scope<'a> {
    pub job_id: Option<i64>,
    pub run_id: i64,
    pub job_name: &'a str,
    pub start_time_ms: i64,
    pub trigger: &'a str,
    pub parameters: &'a BTreeMap<String, String>,
    pub task_key: &'a str,
    pub task_run_id: i64,
    /// A for-each iteration's input (`{{input}}`).
    pub input: Option<String>,
    /// Earlier tasks: their result state and the values they set.
    pub tasks: BTreeMap<String, (String, serde_json::Map<String, Value>)>,
}

impl Scope<'_> {
    fn value(&self, name: &str) -> Option<String> {
        let name = name.trim();
        let start = || rfc3339(self.start_time_ms);
        Some(match name {
            "job.id" | "job_id" => self.job_id.map(|i| i.to_string()).unwrap_or_default(),
            "job.run_id" | "parent_run_id" => self.run_id.to_string(),
            "job.name" => self.job_name.to_string(),
            "job.trigger.type" => self.trigger.to_string(),
            "job.start_time.iso_datetime" => start(),
            "job.start_time.iso_date" => start().get(..10)?.to_string(),
            "job.start_time.timestamp_ms" => self.start_time_ms.to_string(),
            "job.start_time.year" => start().get(..4)?.to_string(),
            "job.start_time.month" => start().get(5..7)?.trim_start_matches('0').to_string(),
            "job.start_time.day" => start().get(8..10)?.trim_start_matches('0').to_string(),
            "task.name" | "task_key" => self.task_key.to_string(),
            "task.run_id" | "run_id" => self.task_run_id.to_string(),
            "input" => self.input.clone()?,
            _ => {
                if let Some(p) = name.strip_prefix("job.parameters.") {
                    return self.parameters.get(p).cloned();
                }
                let rest = name.strip_prefix("tasks.")?;
                let (task, what) = rest.split_once('.')?;
                let (result, values) = self.tasks.get(task)?;
                if what == "result_state" {
                    return Some(result.clone());
                }
                let key = what.strip_prefix("values.")?;
                return values.get(key).map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
            }
        })
    }

    /// `text` with every `{{…}}` replaced; the first unknown reference is the error.
    pub fn resolve(&self, text: &str) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            out.push_str(&rest[..open]);
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                out.push_str(&rest[open..]);
                return Ok(out);
            };
            let name = &after[..close];
            match self.value(name) {
                Some(v) => out.push_str(&v),
                None => {
                    return Err(format!(
                        "Unknown dynamic value reference {{{{{}}}}}",
                        name.trim()
                    ))
                }
            }
            rest = &after[close + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Every string inside `value` resolved.
    pub fn resolve_json(&self, value: &Value) -> Result<Value, String> {
        Ok(match value {
            Value::String(s) => Value::String(self.resolve(s)?),
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|v| self.resolve_json(v))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| Ok((k.clone(), self.resolve_json(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_resolve_or_name_themselves() {
        let params = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        let mut tasks = BTreeMap::new();
        let mut values = serde_json::Map::new();
        values.insert("rows".into(), json!(42));
        tasks.insert("ingest".to_string(), ("SUCCESS".to_string(), values));
        let scope = Scope {
            job_id: Some(7),
            run_id: 99,
            job_name: "nightly",
            start_time_ms: 1_700_000_000_000,
            trigger: "ONE_TIME",
            parameters: &params,
            task_key: "report",
            task_run_id: 100,
            input: Some("7".into()),
            tasks,
        };
        assert_eq!(
            scope.resolve("{{job.id}}/{{job.run_id}} {{ job.parameters.env }} {{task.name}}"),
            Ok("7/99 prod report".to_string())
        );
        assert_eq!(
            scope.resolve("{{tasks.ingest.values.rows}} {{tasks.ingest.result_state}}"),
            Ok("42 SUCCESS".into())
        );
        assert_eq!(
            scope.resolve("{{job.start_time.iso_date}}"),
            Ok("2023-11-14".into())
        );
        assert_eq!(
            scope.resolve("x {{job.parameters.nope}}"),
            Err("Unknown dynamic value reference {{job.parameters.nope}}".into())
        );
        assert_eq!(
            scope.resolve_json(&json!({"a": ["{{job.id}}"]})),
            Ok(json!({"a": ["7"]}))
        );
    }
}

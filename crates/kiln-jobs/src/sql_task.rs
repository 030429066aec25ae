//! `sql_task` with a `file`: the SQL file's statements run one after another
//! on the task's SQL warehouse as the run's `run_as` (a stopped warehouse is
//! started), its `parameters` bound as named parameter markers (`:name`),
//! never pasted into the text. The first failing statement fails the task
//! with the engine's message. Saved queries, alerts and dashboards need APIs
//! Kiln does not serve and are refused when the job is saved
//! (`task_settings::check_sql_task`).

use std::sync::Arc;

use kiln_core::{Error, Result};
use kiln_sql::lifecycle::StatementState;
use kiln_sql::params::StatementParameter;
use kiln_sql::statements::Request;
use serde_json::Value;

use crate::model::{RunRecord, TaskOutput};
use crate::outcome::{Attempt, Outcome};
use crate::service::Jobs;

/// The statements of a SQL text: split at `;` outside quotes and comments.
pub(crate) fn statements(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut current = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' | '`' => {
                current.push(c);
                i += 1;
                while i < chars.len() {
                    current.push(chars[i]);
                    if chars[i] == '\\' && c != '`' && i + 1 < chars.len() {
                        current.push(chars[i + 1]);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    if chars[i - 1] == c {
                        break;
                    }
                }
                continue;
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
                continue;
            }
            ';' => out.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
        i += 1;
    }
    out.push(current);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

pub(crate) async fn run(
    jobs: &Arc<Jobs>,
    run: &RunRecord,
    spec: &Value,
    attempt: &Attempt,
) -> Result<Outcome> {
    let warehouse = spec["warehouse_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let file = spec["file"]["path"].as_str().unwrap_or_default();
    let path = file.strip_prefix("/Workspace").unwrap_or(file);
    let text = jobs
        .workspace
        .get(path)
        .map(|o| String::from_utf8_lossy(&o.bytes()).to_string())
        .map_err(|_| Error::invalid(format!("The SQL file {file} does not exist")))?;
    // run-now's `sql_params` over the task's own `parameters`
    let mut given = spec
        .get("parameters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(over) = run
        .overriding_parameters
        .get("sql_params")
        .and_then(Value::as_object)
    {
        given.extend(over.clone());
    }
    let parameters: Vec<StatementParameter> = given
        .iter()
        .map(|(name, value)| StatementParameter {
            name: name.clone(),
            value: Some(
                value
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| value.to_string()),
            ),
            type_: None,
        })
        .collect();
    let mut log = String::new();
    for (n, statement) in statements(&text).into_iter().enumerate() {
        // only the parameters a statement names are bound to it
        let bound: Vec<StatementParameter> = parameters
            .iter()
            .filter(|p| statement.contains(&format!(":{}", p.name)))
            .cloned()
            .collect();
        let request = Request {
            statement: statement.clone(),
            warehouse_id: warehouse.clone(),
            parameters: bound,
            row_limit: Some(1000),
            ..Default::default()
        };
        let s = jobs
            .statements
            .run_to_end(&run.run_as, request, &attempt.token)
            .await?;
        let rows = s.result.as_ref().map(|r| r.total_rows).unwrap_or(0);
        log.push_str(&format!(
            "statement {} ({}): {} {}\n",
            n + 1,
            s.statement_id,
            s.state.as_str(),
            if s.state == StatementState::Succeeded {
                format!("{rows} rows")
            } else {
                String::new()
            }
        ));
        if s.state != StatementState::Succeeded {
            let (_, message) = s.error.clone().unwrap_or_default();
            let output = TaskOutput {
                logs: Some(log),
                error: Some(message.clone()),
                error_trace: Some(format!("{statement}\n\n{message}")),
                ..Default::default()
            };
            return Ok(Outcome::failed(
                format!("SQL statement {} failed: {message}", n + 1),
                output,
            ));
        }
    }
    Ok(Outcome::success(TaskOutput {
        logs: Some(log),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::statements;

    #[test]
    fn splits_at_semicolons_outside_quotes_and_comments() {
        let text = "-- Databricks notebook source\nCREATE TABLE t (s STRING);\nINSERT INTO t VALUES ('a;b'); /* ; */ SELECT `x;y` FROM t -- trailing;\n;";
        assert_eq!(
            statements(text),
            vec![
                "CREATE TABLE t (s STRING)".to_string(),
                "INSERT INTO t VALUES ('a;b')".to_string(),
                "SELECT `x;y` FROM t".to_string(),
            ]
        );
    }
}

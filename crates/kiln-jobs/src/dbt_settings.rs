//! A `dbt_task`'s settings, checked when the job is saved: its `commands`
//! (each a `dbt` command line), a workspace `project_directory`, and either a
//! `warehouse_id` (Kiln writes the profile) or the project's own profiles
//! (`profiles_directory`, relative to the project), as Databricks checks them.

use kiln_core::{Error, Result};
use serde_json::Value;

fn invalid(field: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!("Invalid value for field {field}: {why}"))
}

/// The dbt package a task gets when its libraries name none: the 1.10 line
/// installs from PyPI alone (1.11 fetches a parser binary from elsewhere).
pub const DEFAULT_DBT: &str = "dbt-databricks>=1.10,<1.11";

/// The words of a dbt command line (`dbt run --select "a b"`), as a shell
/// splits them; `None` when quotes do not close.
pub fn words(command: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => w.push(c),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => w.push(chars.next()?),
                        c => w.push(c),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).push(chars.next()?),
            c if c.is_whitespace() => out.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(word);
    Some(out)
}

/// A dbt command list (the task's `commands`, or run-now's `dbt_commands`).
pub fn check_commands(commands: &Value, field: &str) -> Result<Vec<String>> {
    let list = commands
        .as_array()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| invalid(field, "required: a list of dbt commands"))?;
    if list.len() > 10 {
        return Err(invalid(field, "at most 10 dbt commands"));
    }
    list.iter()
        .map(|c| {
            let text = c
                .as_str()
                .ok_or_else(|| invalid(field, "each command is a string"))?;
            match words(text) {
                Some(w) if w.first().map(String::as_str) == Some("dbt") => Ok(text.to_string()),
                Some(_) => Err(invalid(
                    field,
                    format!("a dbt task's commands start with dbt: {text:?}"),
                )),
                None => Err(invalid(field, format!("unbalanced quotes in {text:?}"))),
            }
        })
        .collect()
}

pub(crate) fn check_dbt_task(
    spec: &Value,
    key: &str,
    warehouse_exists: impl Fn(&str) -> bool,
) -> Result<()> {
    check_commands(&spec["commands"], "tasks.dbt_task.commands")?;
    if spec.get("source").and_then(Value::as_str) == Some("GIT") {
        return Err(invalid(
            "tasks.dbt_task.source",
            "GIT sources are not supported by Kiln",
        ));
    }
    match spec.get("project_directory") {
        Some(Value::String(p)) if p.starts_with('/') => {}
        Some(Value::String(p)) if !p.is_empty() => {
            return Err(invalid(
                "tasks.dbt_task.project_directory",
                format!("an absolute workspace path is required (task {key}): {p}"),
            ))
        }
        _ => {
            return Err(invalid(
                "tasks.dbt_task.project_directory",
                format!("required: the project's workspace directory (task {key})"),
            ))
        }
    }
    for field in ["profiles_directory", "catalog", "schema", "warehouse_id"] {
        if spec
            .get(field)
            .is_some_and(|v| !v.is_string() && !v.is_null())
        {
            return Err(invalid(
                &format!("tasks.dbt_task.{field}"),
                "expected a string",
            ));
        }
    }
    let warehouse = spec.get("warehouse_id").and_then(Value::as_str);
    if let Some(id) = warehouse {
        if !warehouse_exists(id) {
            return Err(invalid(
                "tasks.dbt_task.warehouse_id",
                format!("SQL warehouse {id} does not exist"),
            ));
        }
        if spec.get("profiles_directory").is_some_and(|v| !v.is_null()) {
            return Err(invalid(
                "tasks.dbt_task.profiles_directory",
                "a task with a warehouse_id uses the profile Kiln writes for it",
            ));
        }
    }
    if let Some(p) = spec.get("profiles_directory").and_then(Value::as_str) {
        if p.starts_with('/') || p.split('/').any(|part| part == "..") {
            return Err(invalid(
                "tasks.dbt_task.profiles_directory",
                "a path relative to the project directory, inside it",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn command_lines_split_like_a_shell() {
        assert_eq!(
            words(r#"dbt run --select "tag:a b" 'x y'"#),
            Some(vec![
                "dbt".into(),
                "run".into(),
                "--select".into(),
                "tag:a b".into(),
                "x y".into()
            ])
        );
        assert_eq!(words("dbt run 'open"), None);
        assert_eq!(words("  "), Some(vec![]));
    }

    #[test]
    fn commands_start_with_dbt() {
        let ok = check_commands(&json!(["dbt deps", "dbt run --select x"]), "f");
        assert_eq!(ok.map(|c| c.len()).ok(), Some(2));
        for bad in [
            json!([]),
            json!("dbt run"),
            json!(["ls -la"]),
            json!([1]),
            json!(["dbt run \"x"]),
            json!(vec!["dbt run"; 11]),
        ] {
            assert!(check_commands(&bad, "f").is_err(), "{bad}");
        }
    }
}

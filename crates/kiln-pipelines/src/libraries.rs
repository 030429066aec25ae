//! Pipeline libraries: workspace notebooks and files, split into cells, with
//! `${key}` replaced from the pipeline configuration.

use std::collections::BTreeMap;

use kiln_core::{Error, Result};
use kiln_workspace::workspace::{Language, ObjectType, Workspace};
use serde_json::Value;

/// The workspace path of one `libraries` entry.
pub fn library_path(lib: &Value) -> Result<String> {
    for kind in ["notebook", "file"] {
        if let Some(path) = lib[kind]["path"].as_str() {
            return Ok(path.to_string());
        }
    }
    if let Some(include) = lib["glob"]["include"].as_str() {
        return Ok(include.to_string());
    }
    for kind in ["jar", "whl", "maven"] {
        if lib.get(kind).is_some() {
            return Err(Error::invalid(format!(
                "Invalid value for field libraries: {kind} libraries are not supported by pipelines on Kiln; use notebook or file"
            )));
        }
    }
    Err(Error::invalid(
        "Invalid value for field libraries: each entry needs notebook.path or file.path",
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceLanguage {
    Sql,
    Python,
}

/// One library's text.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: String,
    pub language: SourceLanguage,
    pub text: String,
}

/// Reads a notebook or file (missing → field-naming INVALID_PARAMETER_VALUE).
pub fn read(workspace: &Workspace, path: &str) -> Result<Source> {
    let missing = || {
        Error::invalid(format!(
            "Invalid value for field libraries: the notebook or file {path} does not exist"
        ))
    };
    let object = workspace.get(path).map_err(|_| missing())?;
    let language = match (object.object_type, object.language) {
        (ObjectType::Notebook, Some(Language::Python)) => SourceLanguage::Python,
        (ObjectType::Notebook, Some(Language::Sql)) => SourceLanguage::Sql,
        (ObjectType::File, _) if path.ends_with(".py") => SourceLanguage::Python,
        (ObjectType::File, _) if path.ends_with(".sql") => SourceLanguage::Sql,
        (ObjectType::Directory, _) => return Err(missing()),
        _ => {
            return Err(Error::invalid(format!(
                "Invalid value for field libraries: {path} is neither SQL nor Python"
            )))
        }
    };
    Ok(Source {
        path: object.path.clone(),
        language,
        text: String::from_utf8_lossy(&object.bytes()).to_string(),
    })
}

/// The notebook's code without its header, cell separators and markdown or
/// magic cells (`%pip` and friends are reported back as ignored).
pub fn strip_notebook(text: &str, language: SourceLanguage) -> (String, Vec<String>) {
    let comment = match language {
        SourceLanguage::Sql => "--",
        SourceLanguage::Python => "#",
    };
    let header = format!("{comment} Databricks notebook source");
    let separator = format!("{comment} COMMAND ----------");
    let magic = format!("{comment} MAGIC");
    let mut ignored = Vec::new();
    let cells: Vec<String> = text
        .split(&separator)
        .map(|cell| {
            let cell = cell.replacen(&header, "", 1);
            let first = cell.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if first.trim_start().starts_with(&magic) {
                let what = first.trim_start().trim_start_matches(&magic).trim();
                if !what.starts_with("%md") {
                    ignored.push(what.to_string());
                }
                // Keep line numbers stable: the cell's newlines only.
                cell.chars().filter(|c| *c == '\n').collect()
            } else {
                cell
            }
        })
        .collect();
    // In a SQL notebook a cell ends a statement.
    let joiner = if language == SourceLanguage::Sql {
        ";"
    } else {
        ""
    };
    let out = cells.join(joiner);
    (out, ignored)
}

/// Replaces `${key}` with configuration values (unknown keys stay as written).
pub fn substitute(text: &str, configuration: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) if configuration.contains_key(&after[..end]) => {
                out.push_str(&configuration[&after[..end]]);
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notebooks_lose_headers_and_markdown_but_keep_lines() {
        let nb = "-- Databricks notebook source\n-- MAGIC %md\n-- MAGIC # Title\n\n-- COMMAND ----------\n\nCREATE OR REFRESH LIVE TABLE t AS SELECT 1\n";
        let (code, ignored) = strip_notebook(nb, SourceLanguage::Sql);
        assert!(ignored.is_empty());
        assert!(!code.contains("MAGIC") && !code.contains("Databricks notebook source"));
        let line = code
            .lines()
            .position(|l| l.starts_with("CREATE"))
            .unwrap_or(0)
            + 1;
        assert_eq!(line, 7, "{code:?}");
        let (_, ignored) = strip_notebook("# Databricks notebook source\n# MAGIC %pip install x\n# COMMAND ----------\nimport dlt\n", SourceLanguage::Python);
        assert_eq!(ignored, vec!["%pip install x"]);
    }

    #[test]
    fn substitution() {
        let conf = BTreeMap::from([("source".to_string(), "/data".to_string())]);
        assert_eq!(
            substitute("FROM '${source}/x' ${other} ${", &conf),
            "FROM '/data/x' ${other} ${"
        );
    }
}

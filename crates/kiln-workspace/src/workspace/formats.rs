//! Notebook formats: SOURCE import with header detection, AUTO, RAW and
//! JUPYTER conversion in both directions.

use kiln_core::{Error, Result};
use serde_json::{json, Value};

use super::{detect_notebook, Format, Language, ObjectRecord, ObjectType};

/// (type, language, stored content) of an import.
pub(super) fn interpret(
    path: &str,
    format: Format,
    language: Option<Language>,
    content: &[u8],
) -> Result<(ObjectType, Option<Language>, Vec<u8>)> {
    match format {
        Format::Raw => Ok((ObjectType::File, None, content.to_vec())),
        Format::Jupyter => {
            from_jupyter(content).map(|(l, s)| (ObjectType::Notebook, Some(l), s.into_bytes()))
        }
        Format::Source => {
            let text = String::from_utf8(content.to_vec())
                .map_err(|_| Error::invalid("SOURCE content must be UTF-8 text"))?;
            let language = language
                .or_else(|| detect_notebook(&text))
                .or_else(|| Language::from_extension(path))
                .ok_or_else(|| Error::invalid("The language is required for a SOURCE import"))?;
            Ok((
                ObjectType::Notebook,
                Some(language),
                with_header(language, &text).into_bytes(),
            ))
        }
        Format::Auto => match std::str::from_utf8(content).ok().and_then(detect_notebook) {
            Some(l) => Ok((ObjectType::Notebook, Some(l), content.to_vec())),
            None if path.ends_with(".ipynb") => interpret(path, Format::Jupyter, language, content),
            None => Ok((ObjectType::File, None, content.to_vec())),
        },
    }
}

fn with_header(language: Language, text: &str) -> String {
    if detect_notebook(text).is_some() {
        text.to_string()
    } else {
        format!("{}\n{text}", language.header())
    }
}

/// The cells of a SOURCE notebook.
pub fn cells(language: Language, source: &str) -> Vec<String> {
    let body = source.strip_prefix(&language.header()).unwrap_or(source);
    body.split(&format!("\n{}\n", language.separator()))
        .map(|c| c.trim_matches('\n').to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

fn from_jupyter(content: &[u8]) -> Result<(Language, String)> {
    let notebook: Value = serde_json::from_slice(content)
        .map_err(|e| Error::invalid(format!("Invalid JUPYTER content: {e}")))?;
    let language = notebook["metadata"]["language_info"]["name"]
        .as_str()
        .or_else(|| notebook["metadata"]["kernelspec"]["language"].as_str())
        .map(|l| Language::parse(l).unwrap_or(Language::Python))
        .unwrap_or(Language::Python);
    let cells: Vec<String> = notebook["cells"]
        .as_array()
        .ok_or_else(|| Error::invalid("Invalid JUPYTER content: no cells"))?
        .iter()
        .filter(|c| c["cell_type"] == "code")
        .map(|c| match &c["source"] {
            Value::Array(lines) => lines.iter().filter_map(Value::as_str).collect::<String>(),
            Value::String(s) => s.clone(),
            _ => String::new(),
        })
        .collect();
    let source = format!(
        "{}\n{}",
        language.header(),
        cells.join(&format!("\n\n{}\n\n", language.separator()))
    );
    Ok((language, source))
}

pub(super) fn to_jupyter(object: &ObjectRecord) -> Result<Vec<u8>> {
    let language = object.language.unwrap_or(Language::Python);
    let source =
        String::from_utf8(object.bytes()).map_err(|e| Error::internal("export a notebook", e))?;
    let cells: Vec<Value> = cells(language, &source)
        .into_iter()
        .map(|c| json!({"cell_type": "code", "execution_count": null, "metadata": {}, "outputs": [], "source": c}))
        .collect();
    let name = language.as_str().to_ascii_lowercase();
    let notebook = json!({
        "cells": cells,
        "metadata": {"language_info": {"name": name}, "kernelspec": {"language": name, "name": name, "display_name": name}},
        "nbformat": 4,
        "nbformat_minor": 5
    });
    serde_json::to_vec_pretty(&notebook).map_err(|e| Error::internal("export a notebook", e))
}

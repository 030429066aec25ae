//! `DESCRIBE TABLE EXTENDED <table> AS JSON` (what dbt-databricks reads a
//! relation's columns with), which the engine's parser does not take:
//! answered from the table's Unity Catalog entry in Databricks' JSON shape
//! (`table_name`, `catalog_name`, `schema_name`, `namespace`, `type`,
//! `columns` with their `type` objects, `provider`, `location`, `owner`,
//! `comment`, `table_properties`), as the one-row `json_metadata` result the
//! engine then returns.

use kiln_catalog::Catalog;
use serde_json::{json, Map, Value};

/// Skips blanks and comments from `i`.
pub(crate) fn skip(chars: &[char], mut i: usize) -> usize {
    loop {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if chars.get(i) == Some(&'-') && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if chars.get(i) == Some(&'/') && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else {
            return i;
        }
    }
}

pub(crate) fn word_at(chars: &[char], i: usize) -> (String, usize) {
    let mut j = i;
    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
        j += 1;
    }
    (chars[i..j].iter().collect::<String>().to_uppercase(), j)
}

/// A dotted name (backquoted parts too) at `i`.
pub(crate) fn name_at(chars: &[char], mut i: usize) -> Option<(Vec<String>, usize)> {
    let mut parts = Vec::new();
    loop {
        if chars.get(i) == Some(&'`') {
            let mut part = String::new();
            i += 1;
            loop {
                match chars.get(i)? {
                    '`' if chars.get(i + 1) == Some(&'`') => {
                        part.push('`');
                        i += 2;
                    }
                    '`' => {
                        i += 1;
                        break;
                    }
                    c => {
                        part.push(*c);
                        i += 1;
                    }
                }
            }
            parts.push(part);
        } else {
            let (_, j) = word_at(chars, i);
            if j == i {
                return None;
            }
            parts.push(chars[i..j].iter().collect());
            i = j;
        }
        if chars.get(i) == Some(&'.') {
            i += 1;
        } else {
            return Some((parts, i));
        }
    }
}

/// The table `sql` describes as JSON, if it is such a statement.
pub fn target(sql: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = sql.chars().collect();
    let mut i = skip(&chars, 0);
    let (w, j) = word_at(&chars, i);
    if w != "DESCRIBE" && w != "DESC" {
        return None;
    }
    i = skip(&chars, j);
    let (mut w, mut j) = word_at(&chars, i);
    if w == "TABLE" {
        i = skip(&chars, j);
        (w, j) = word_at(&chars, i);
    }
    if w != "EXTENDED" {
        return None;
    }
    i = skip(&chars, j);
    let (parts, j) = name_at(&chars, i)?;
    i = skip(&chars, j);
    let (a, j) = word_at(&chars, i);
    i = skip(&chars, j);
    let (b, j) = word_at(&chars, i);
    i = skip(&chars, j);
    if chars.get(i) == Some(&';') {
        i = skip(&chars, i + 1);
    }
    (a == "AS" && b == "JSON" && i >= chars.len()).then_some(parts)
}

/// Databricks' JSON type object of a Spark JSON type.
fn type_object(spark: &Value) -> Value {
    match spark {
        Value::String(t) => {
            if let Some(args) = t.strip_prefix("decimal(").and_then(|r| r.strip_suffix(')')) {
                let mut it = args
                    .split(',')
                    .map(|n| n.trim().parse::<i64>().unwrap_or(0));
                return json!({"name": "decimal", "precision": it.next(), "scale": it.next()});
            }
            let name = match t.as_str() {
                "long" => "bigint",
                "integer" => "int",
                "short" => "smallint",
                "byte" => "tinyint",
                other => other,
            };
            json!({ "name": name })
        }
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("array") => json!({
                "name": "array",
                "element_type": type_object(&o["elementType"]),
                "element_nullable": o.get("containsNull").cloned().unwrap_or(json!(true)),
            }),
            Some("map") => json!({
                "name": "map",
                "key_type": type_object(&o["keyType"]),
                "value_type": type_object(&o["valueType"]),
                "value_nullable": o.get("valueContainsNull").cloned().unwrap_or(json!(true)),
            }),
            Some("struct") => json!({
                "name": "struct",
                "fields": o.get("fields").and_then(Value::as_array).into_iter().flatten().map(|f| json!({
                    "name": f["name"],
                    "type": type_object(&f["type"]),
                    "nullable": f.get("nullable").cloned().unwrap_or(json!(true)),
                })).collect::<Vec<_>>(),
            }),
            _ => json!({"name": "string"}),
        },
        _ => json!({"name": "string"}),
    }
}

/// The statement the engine runs instead: one row of the table's JSON; an
/// error for a name Unity Catalog does not hold (a temporary view), worded
/// so clients fall back to plain `DESCRIBE TABLE EXTENDED`.
pub fn rewrite(
    catalog: &Catalog,
    sql: &str,
    current: (&str, &str),
) -> Option<Result<String, String>> {
    let parts = target(sql)?;
    Some(describe(catalog, &parts, current))
}

fn describe(catalog: &Catalog, parts: &[String], current: (&str, &str)) -> Result<String, String> {
    let unsupported = || {
        Err(format!(
            "[UNSUPPORTED_FEATURE] DESCRIBE ... AS JSON is answered for Unity Catalog tables and views; {} is not one (a temporary view?): use DESCRIBE TABLE EXTENDED without AS JSON.",
            parts.join(".")
        ))
    };
    let full = match parts {
        [c, s, t] => format!("{c}.{s}.{t}"),
        [s, t] => format!("{}.{s}.{t}", current.0),
        [t] => format!("{}.{}.{t}", current.0, current.1),
        _ => return unsupported(),
    };
    let Ok(t) = catalog.get_table(&full) else {
        return unsupported();
    };
    let columns: Vec<Value> = t
        .columns
        .iter()
        .map(|c| {
            let spark: Value = c["type_json"]
                .as_str()
                .and_then(|j| serde_json::from_str::<Value>(j).ok())
                .map(|v| v["type"].clone())
                .unwrap_or_else(|| json!(c["type_text"].as_str().unwrap_or("string")));
            let mut col = Map::new();
            col.insert("name".into(), c["name"].clone());
            col.insert("type".into(), type_object(&spark));
            col.insert(
                "nullable".into(),
                json!(c["nullable"].as_bool().unwrap_or(true)),
            );
            if let Some(comment) = c["comment"].as_str() {
                col.insert("comment".into(), json!(comment));
            }
            Value::Object(col)
        })
        .collect();
    let doc = json!({
        "table_name": t.name,
        "catalog_name": t.catalog_name,
        "schema_name": t.schema_name,
        "namespace": [t.schema_name],
        "type": t.table_type,
        "columns": columns,
        "provider": t.data_source_format.to_lowercase(),
        "location": t.storage_location,
        "owner": t.owner,
        "comment": t.comment,
        "table_properties": t.properties,
        "created_time": kiln_core::time::rfc3339(t.created_at),
        "last_access": "UNKNOWN",
        "created_by": "Kiln",
        "view_text": t.view_definition,
    });
    let text = doc.to_string().replace('\\', "\\\\").replace('\'', "\\'");
    Ok(format!("SELECT '{text}' AS json_metadata"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_statement_dbt_sends() {
        let sql = "/* {\"app\": \"dbt\"} */\n  DESCRIBE TABLE EXTENDED `main`.`s`.`t` AS JSON";
        assert_eq!(
            target(sql),
            Some(vec!["main".into(), "s".into(), "t".into()])
        );
        assert_eq!(target("desc extended t as json;"), Some(vec!["t".into()]));
        assert_eq!(target("DESCRIBE TABLE EXTENDED t"), None);
        assert_eq!(target("SELECT 1"), None);
    }

    #[test]
    fn types_as_databricks_names_them() {
        assert_eq!(type_object(&json!("long")), json!({"name": "bigint"}));
        assert_eq!(
            type_object(&json!("decimal(10,2)")),
            json!({"name": "decimal", "precision": 10, "scale": 2})
        );
        let arr =
            type_object(&json!({"type": "array", "elementType": "integer", "containsNull": true}));
        assert_eq!(arr["element_type"], json!({"name": "int"}));
    }
}

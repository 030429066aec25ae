//! A Delta schema (`schemaString`, Spark's JSON form) as SQL DDL and as the
//! column list Unity Catalog keeps.

use serde_json::{json, Value};

/// The SQL DDL of a Spark JSON data type (`"long"` → `BIGINT`).
pub fn type_ddl(t: &Value) -> String {
    match t {
        Value::String(name) => match name.as_str() {
            "long" => "BIGINT".into(),
            "integer" => "INT".into(),
            "short" => "SMALLINT".into(),
            "byte" => "TINYINT".into(),
            other => other.to_uppercase(),
        },
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("array") => format!("ARRAY<{}>", type_ddl(&o["elementType"])),
            Some("map") => format!(
                "MAP<{}, {}>",
                type_ddl(&o["keyType"]),
                type_ddl(&o["valueType"])
            ),
            Some("struct") => {
                let fields: Vec<String> = o["fields"]
                    .as_array()
                    .map(|fs| {
                        fs.iter()
                            .map(|f| {
                                format!(
                                    "{}: {}",
                                    quote(f["name"].as_str().unwrap_or("")),
                                    type_ddl(&f["type"])
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                format!("STRUCT<{}>", fields.join(", "))
            }
            _ => "STRING".into(),
        },
        _ => "STRING".into(),
    }
}

fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A struct schema's fields.
pub fn fields(schema: &Value) -> Vec<Value> {
    schema["fields"].as_array().cloned().unwrap_or_default()
}

/// `name TYPE [NOT NULL] [COMMENT '…']` for each column, as `SHOW CREATE TABLE` writes them.
pub fn column_ddl(field: &Value) -> String {
    let mut out = format!(
        "{} {}",
        quote(field["name"].as_str().unwrap_or("")),
        type_ddl(&field["type"])
    );
    if field["nullable"] == json!(false) {
        out.push_str(" NOT NULL");
    }
    if let Some(comment) = field["metadata"]["comment"].as_str() {
        out.push_str(&format!(
            " COMMENT '{}'",
            comment.replace('\\', "\\\\").replace('\'', "\\'")
        ));
    }
    out
}

/// Unity Catalog's `type_name` (its `ColumnTypeName` enum) of a simple type.
fn type_name(json_name: &str) -> String {
    match json_name.split('(').next().unwrap_or(json_name) {
        "integer" => "INT".into(),
        "void" => "NULL".into(),
        other if other.starts_with("interval") => "INTERVAL".into(),
        other => other.to_uppercase(),
    }
}

/// The columns Unity Catalog keeps for a table with this schema.
pub fn catalog_columns(schema: &Value) -> Vec<Value> {
    fields(schema)
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (type_text, type_name) = match &f["type"] {
                Value::String(s) => (s.clone(), type_name(s)),
                other => (
                    type_ddl(other).to_lowercase(),
                    other["type"].as_str().unwrap_or("struct").to_uppercase(),
                ),
            };
            let mut column = json!({
                "name": f["name"],
                "type_text": type_text,
                "type_json": f.to_string(),
                "type_name": type_name,
                "position": i,
                "nullable": f["nullable"].as_bool().unwrap_or(true),
            });
            if let Some(comment) = f["metadata"]["comment"].as_str() {
                column["comment"] = json!(comment);
            }
            column
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_types_become_ddl() {
        let t = json!({"type": "struct", "fields": [
            {"name": "a", "type": "long", "nullable": true, "metadata": {}},
            {"name": "b", "type": {"type": "array", "elementType": "decimal(10,2)", "containsNull": true}, "nullable": false, "metadata": {"comment": "it's"}},
            {"name": "c", "type": {"type": "map", "keyType": "string", "valueType": {"type": "struct", "fields": [{"name": "x", "type": "integer"}]}}, "nullable": true, "metadata": {}},
        ]});
        let cols: Vec<String> = fields(&t).iter().map(column_ddl).collect();
        assert_eq!(
            cols,
            vec![
                "`a` BIGINT",
                "`b` ARRAY<DECIMAL(10,2)> NOT NULL COMMENT 'it\\'s'",
                "`c` MAP<STRING, STRUCT<`x`: INT>>"
            ]
        );
        let catalog = catalog_columns(&t);
        assert_eq!(catalog[0]["type_name"], "LONG");
        assert_eq!(catalog[1]["type_name"], "ARRAY");
        assert_eq!(catalog[1]["nullable"], false);
        assert_eq!(catalog[2]["position"], 2);
    }
}

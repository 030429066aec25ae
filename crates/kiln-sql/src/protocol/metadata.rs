//! The protocol's metadata calls, answered from Kiln's Unity Catalog with
//! the JDBC column names clients read (`TABLE_CAT`, `TABLE_SCHEM`, …).
//! Name filters are JDBC patterns (`%` any run, `_` one character; `*` too).

use kiln_catalog::Catalog;
use serde_json::Value;

use super::batches::{table, Col, Framed};

fn like(pattern: Option<&str>, name: &str) -> bool {
    let Some(p) = pattern.filter(|p| !p.is_empty() && *p != "%" && *p != "*") else {
        return true;
    };
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('%' | '*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('_'), Some(_)) => go(&p[1..], &n[1..]),
            (Some('\\'), _) if p.len() > 1 => {
                n.first().is_some_and(|c| c.eq_ignore_ascii_case(&p[1])) && go(&p[2..], &n[1..])
            }
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b) && go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = p.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

fn s(v: impl Into<String>) -> Option<String> {
    Some(v.into())
}

pub fn catalogs(catalog: &Catalog) -> Result<Framed, String> {
    let names: Vec<Option<String>> = catalog
        .catalogs()
        .map_err(|e| e.message)?
        .into_iter()
        .map(|c| s(c.name))
        .collect();
    table(vec![Col::Str("TABLE_CAT", names)])
}

pub fn schemas(
    catalog: &Catalog,
    cat: Option<&str>,
    schema: Option<&str>,
) -> Result<Framed, String> {
    let (mut names, mut cats) = (Vec::new(), Vec::new());
    for c in catalog.catalogs().map_err(|e| e.message)? {
        if !like(cat, &c.name) {
            continue;
        }
        for sc in catalog.schemas(&c.name).map_err(|e| e.message)? {
            if like(schema, &sc.name) {
                names.push(s(sc.name));
                cats.push(s(c.name.clone()));
            }
        }
    }
    table(vec![
        Col::Str("TABLE_SCHEM", names),
        Col::Str("TABLE_CATALOG", cats),
    ])
}

/// The tables a GetTables/GetColumns call names.
pub struct TableFilter {
    pub catalog: Option<String>,
    pub schema: Option<String>,
    pub table: Option<String>,
    pub types: Vec<String>,
}

fn matching(catalog: &Catalog, f: &TableFilter) -> Result<Vec<kiln_catalog::TableInfo>, String> {
    let mut out = Vec::new();
    for c in catalog.catalogs().map_err(|e| e.message)? {
        if !like(f.catalog.as_deref(), &c.name) {
            continue;
        }
        for sc in catalog.schemas(&c.name).map_err(|e| e.message)? {
            if !like(f.schema.as_deref(), &sc.name) {
                continue;
            }
            for t in catalog.tables(&c.name, &sc.name).map_err(|e| e.message)? {
                let kind = jdbc_type(&t);
                if like(f.table.as_deref(), &t.name)
                    && (f.types.is_empty() || f.types.iter().any(|x| x.eq_ignore_ascii_case(kind)))
                {
                    out.push(t);
                }
            }
        }
    }
    Ok(out)
}

fn jdbc_type(t: &kiln_catalog::TableInfo) -> &'static str {
    if t.table_type.eq_ignore_ascii_case("VIEW") {
        "VIEW"
    } else {
        "TABLE"
    }
}

pub fn tables(catalog: &Catalog, f: &TableFilter) -> Result<Framed, String> {
    let found = matching(catalog, f)?;
    let col = |g: &dyn Fn(&kiln_catalog::TableInfo) -> Option<String>| {
        found.iter().map(g).collect::<Vec<_>>()
    };
    let none = vec![None; found.len()];
    table(vec![
        Col::Str("TABLE_CAT", col(&|t| s(&t.catalog_name))),
        Col::Str("TABLE_SCHEM", col(&|t| s(&t.schema_name))),
        Col::Str("TABLE_NAME", col(&|t| s(&t.name))),
        Col::Str("TABLE_TYPE", col(&|t| s(jdbc_type(t)))),
        Col::Str(
            "REMARKS",
            col(&|t| s(t.comment.clone().unwrap_or_default())),
        ),
        Col::Str("TYPE_CAT", none.clone()),
        Col::Str("TYPE_SCHEM", none.clone()),
        Col::Str("TYPE_NAME", none.clone()),
        Col::Str("SELF_REFERENCING_COL_NAME", none.clone()),
        Col::Str("REF_GENERATION", none),
    ])
}

pub fn table_types() -> Result<Framed, String> {
    table(vec![Col::Str("TABLE_TYPE", vec![s("TABLE"), s("VIEW")])])
}

/// java.sql.Types of a Spark type name.
fn sql_type(type_name: &str) -> i32 {
    match type_name.to_uppercase().as_str() {
        "BOOLEAN" => 16,
        "BYTE" | "TINYINT" => -6,
        "SHORT" | "SMALLINT" => 5,
        "INT" | "INTEGER" => 4,
        "LONG" | "BIGINT" => -5,
        "FLOAT" => 6,
        "DOUBLE" => 8,
        "DECIMAL" => 3,
        "STRING" | "VARCHAR" | "CHAR" => 12,
        "BINARY" => -2,
        "DATE" => 91,
        "TIMESTAMP" | "TIMESTAMP_NTZ" => 93,
        "ARRAY" => 2003,
        "STRUCT" => 2002,
        "MAP" => 2000,
        "NULL" => 0,
        _ => 1111,
    }
}

/// A column's SQL type name (`BIGINT`, `DECIMAL(10,2)`, …).
fn sql_name(c: &Value, type_name: &str) -> String {
    if let Some(text) = c["type_text"].as_str().filter(|t| !t.is_empty()) {
        return text.to_uppercase();
    }
    match type_name {
        "LONG" => "BIGINT",
        "SHORT" => "SMALLINT",
        "BYTE" => "TINYINT",
        other => other,
    }
    .to_string()
}

pub fn columns(catalog: &Catalog, f: &TableFilter, column: Option<&str>) -> Result<Framed, String> {
    let mut rows: Vec<(kiln_catalog::TableInfo, Value, i32)> = Vec::new();
    for t in matching(catalog, f)? {
        for (i, c) in t.columns.clone().into_iter().enumerate() {
            if like(column, c["name"].as_str().unwrap_or_default()) {
                rows.push((t.clone(), c, i as i32));
            }
        }
    }
    let str_of = |g: &dyn Fn(&kiln_catalog::TableInfo, &Value) -> Option<String>| {
        rows.iter().map(|(t, c, _)| g(t, c)).collect::<Vec<_>>()
    };
    let int_of = |g: &dyn Fn(&Value, i32) -> Option<i32>| {
        rows.iter().map(|(_, c, i)| g(c, *i)).collect::<Vec<_>>()
    };
    let type_name = |c: &Value| {
        c["type_name"]
            .as_str()
            .or(c["type_text"].as_str())
            .unwrap_or("STRING")
            .to_uppercase()
    };
    let nullable = |c: &Value| c["nullable"].as_bool().unwrap_or(true);
    let none_s = vec![None; rows.len()];
    table(vec![
        Col::Str("TABLE_CAT", str_of(&|t, _| s(&t.catalog_name))),
        Col::Str("TABLE_SCHEM", str_of(&|t, _| s(&t.schema_name))),
        Col::Str("TABLE_NAME", str_of(&|t, _| s(&t.name))),
        Col::Str(
            "COLUMN_NAME",
            str_of(&|_, c| c["name"].as_str().map(String::from)),
        ),
        Col::Int("DATA_TYPE", int_of(&|c, _| Some(sql_type(&type_name(c))))),
        Col::Str("TYPE_NAME", str_of(&|_, c| s(sql_name(c, &type_name(c))))),
        Col::Int(
            "COLUMN_SIZE",
            int_of(&|c, _| c["type_precision"].as_i64().map(|p| p as i32)),
        ),
        Col::Str("BUFFER_LENGTH", none_s.clone()),
        Col::Int(
            "DECIMAL_DIGITS",
            int_of(&|c, _| c["type_scale"].as_i64().map(|p| p as i32)),
        ),
        Col::Int("NUM_PREC_RADIX", int_of(&|_, _| Some(10))),
        Col::Int("NULLABLE", int_of(&|c, _| Some(i32::from(nullable(c))))),
        Col::Str(
            "REMARKS",
            str_of(&|_, c| s(c["comment"].as_str().unwrap_or_default())),
        ),
        Col::Str("COLUMN_DEF", none_s.clone()),
        Col::Int("SQL_DATA_TYPE", int_of(&|_, _| None)),
        Col::Int("SQL_DATETIME_SUB", int_of(&|_, _| None)),
        Col::Int("CHAR_OCTET_LENGTH", int_of(&|_, _| None)),
        Col::Int(
            "ORDINAL_POSITION",
            int_of(&|c, i| Some(c["position"].as_i64().map(|p| p as i32).unwrap_or(i) + 1)),
        ),
        Col::Str(
            "IS_NULLABLE",
            str_of(&|_, c| s(if nullable(c) { "YES" } else { "NO" })),
        ),
        Col::Str("SCOPE_CATALOG", none_s.clone()),
        Col::Str("SCOPE_SCHEMA", none_s.clone()),
        Col::Str("SCOPE_TABLE", none_s.clone()),
        Col::Short("SOURCE_DATA_TYPE", vec![None; rows.len()]),
        Col::Str("IS_AUTO_INCREMENT", str_of(&|_, _| s("NO"))),
    ])
}

/// Kiln keeps no SQL functions in its catalog: an empty list, with the columns.
pub fn functions() -> Result<Framed, String> {
    table(vec![
        Col::Str("FUNCTION_CAT", vec![]),
        Col::Str("FUNCTION_SCHEM", vec![]),
        Col::Str("FUNCTION_NAME", vec![]),
        Col::Str("REMARKS", vec![]),
        Col::Int("FUNCTION_TYPE", vec![]),
        Col::Str("SPECIFIC_NAME", vec![]),
    ])
}

/// Unity Catalog tables here declare no keys: empty, with the columns.
pub fn primary_keys() -> Result<Framed, String> {
    table(vec![
        Col::Str("TABLE_CAT", vec![]),
        Col::Str("TABLE_SCHEM", vec![]),
        Col::Str("TABLE_NAME", vec![]),
        Col::Str("COLUMN_NAME", vec![]),
        Col::Int("KEY_SEQ", vec![]),
        Col::Str("PK_NAME", vec![]),
    ])
}

pub fn cross_reference() -> Result<Framed, String> {
    let names = [
        "PKTABLE_CAT",
        "PKTABLE_SCHEM",
        "PKTABLE_NAME",
        "PKCOLUMN_NAME",
        "FKTABLE_CAT",
        "FKTABLE_SCHEM",
        "FKTABLE_NAME",
        "FKCOLUMN_NAME",
    ];
    let mut cols: Vec<Col> = names.iter().map(|n| Col::Str(n, vec![])).collect();
    cols.push(Col::Int("KEY_SEQ", vec![]));
    cols.push(Col::Int("UPDATE_RULE", vec![]));
    cols.push(Col::Int("DELETE_RULE", vec![]));
    cols.push(Col::Str("FK_NAME", vec![]));
    cols.push(Col::Str("PK_NAME", vec![]));
    cols.push(Col::Int("DEFERRABILITY", vec![]));
    table(cols)
}

/// The engine's SQL types.
pub fn type_info() -> Result<Framed, String> {
    let types: [(&str, i32, Option<i32>); 14] = [
        ("BOOLEAN", 16, None),
        ("TINYINT", -6, Some(3)),
        ("SMALLINT", 5, Some(5)),
        ("INT", 4, Some(10)),
        ("BIGINT", -5, Some(19)),
        ("FLOAT", 6, Some(7)),
        ("DOUBLE", 8, Some(15)),
        ("DECIMAL", 3, Some(38)),
        ("STRING", 12, None),
        ("BINARY", -2, None),
        ("DATE", 91, None),
        ("TIMESTAMP", 93, None),
        ("ARRAY", 2003, None),
        ("MAP", 2000, None),
    ];
    let n = types.len();
    table(vec![
        Col::Str("TYPE_NAME", types.iter().map(|t| s(t.0)).collect()),
        Col::Int("DATA_TYPE", types.iter().map(|t| Some(t.1)).collect()),
        Col::Int("PRECISION", types.iter().map(|t| t.2).collect()),
        Col::Str("LITERAL_PREFIX", vec![None; n]),
        Col::Str("LITERAL_SUFFIX", vec![None; n]),
        Col::Str("CREATE_PARAMS", vec![None; n]),
        Col::Short("NULLABLE", vec![Some(1); n]),
        Col::Str("CASE_SENSITIVE", vec![s("false"); n]),
        Col::Short("SEARCHABLE", vec![Some(3); n]),
        Col::Str("UNSIGNED_ATTRIBUTE", vec![s("false"); n]),
        Col::Str("FIXED_PREC_SCALE", vec![s("false"); n]),
        Col::Str("AUTO_INCREMENT", vec![s("false"); n]),
        Col::Str("LOCAL_TYPE_NAME", types.iter().map(|t| s(t.0)).collect()),
        Col::Short("MINIMUM_SCALE", vec![Some(0); n]),
        Col::Short("MAXIMUM_SCALE", vec![Some(0); n]),
        Col::Int("SQL_DATA_TYPE", vec![None; n]),
        Col::Int("SQL_DATETIME_SUB", vec![None; n]),
        Col::Int(
            "NUM_PREC_RADIX",
            types.iter().map(|t| t.2.map(|_| 10)).collect(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn jdbc_patterns() {
        assert!(like(None, "x"));
        assert!(like(Some("%"), "x"));
        assert!(like(Some("ord%"), "orders"));
        assert!(like(Some("ORD_RS"), "orders"));
        assert!(!like(Some("ord"), "orders"));
        assert!(like(Some("my\\_t"), "my_t"));
        assert!(!like(Some("my\\_t"), "myxt"));
    }
}

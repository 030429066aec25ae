//! `information_schema` (`catalogs`, `schemata`, `tables`, `columns`,
//! `views`, and the tag and constraint views, empty here) in every catalog
//! and in `system`, served from Kiln's Unity Catalog: a statement naming
//! `<catalog>.information_schema.<view>` gets that view's rows from the
//! catalog as they are now, inlined as a `VALUES` relation where it names the
//! view; the engine runs the rest of the statement (filters, joins) itself.
//! `system.information_schema` spans every catalog; a catalog's own, that
//! catalog only.

use kiln_catalog::{Catalog, TableInfo};
use serde_json::Value;

const VIEWS: &[(&str, &[&str])] = &[
    (
        "catalogs",
        &[
            "catalog_name",
            "catalog_owner",
            "comment",
            "created:t",
            "created_by",
            "last_altered:t",
            "last_altered_by",
        ],
    ),
    (
        "schemata",
        &[
            "catalog_name",
            "schema_name",
            "schema_owner",
            "comment",
            "created:t",
            "created_by",
            "last_altered:t",
            "last_altered_by",
        ],
    ),
    (
        "tables",
        &[
            "table_catalog",
            "table_schema",
            "table_name",
            "table_type",
            "is_insertable_into",
            "commit_action",
            "table_owner",
            "comment",
            "created:t",
            "created_by",
            "last_altered:t",
            "last_altered_by",
            "data_source_format",
            "storage_sub_directory",
            "storage_path",
        ],
    ),
    (
        "columns",
        &[
            "table_catalog",
            "table_schema",
            "table_name",
            "column_name",
            "ordinal_position:i",
            "column_default",
            "is_nullable",
            "full_data_type",
            "data_type",
            "character_maximum_length:i",
            "numeric_precision:i",
            "numeric_scale:i",
            "is_identity",
            "is_generated",
            "is_updatable",
            "partition_index:i",
            "comment",
        ],
    ),
    (
        "views",
        &[
            "table_catalog",
            "table_schema",
            "table_name",
            "view_definition",
            "check_option",
            "is_updatable",
            "is_insertable_into",
            "sql_path",
        ],
    ),
    (
        "table_tags",
        &[
            "catalog_name",
            "schema_name",
            "table_name",
            "tag_name",
            "tag_value",
        ],
    ),
    (
        "column_tags",
        &[
            "catalog_name",
            "schema_name",
            "table_name",
            "column_name",
            "tag_name",
            "tag_value",
        ],
    ),
    (
        "column_masks",
        &[
            "table_catalog",
            "table_schema",
            "table_name",
            "column_name",
            "mask_catalog",
            "mask_schema",
            "mask_name",
            "using_columns",
        ],
    ),
    (
        "table_constraints",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "table_catalog",
            "table_schema",
            "table_name",
            "constraint_type",
            "is_deferrable",
            "initially_deferred",
            "enforced",
            "comment",
        ],
    ),
    (
        "key_column_usage",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "table_catalog",
            "table_schema",
            "table_name",
            "column_name",
            "ordinal_position:i",
            "position_in_unique_constraint:i",
        ],
    ),
    (
        "referential_constraints",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "unique_constraint_catalog",
            "unique_constraint_schema",
            "unique_constraint_name",
            "match_option",
            "update_rule",
            "delete_rule",
        ],
    ),
];

/// A value of a row.
enum V {
    S(Option<String>),
    I(Option<i64>),
    T(i64),
}

fn s(v: impl Into<String>) -> V {
    V::S(Some(v.into()))
}

fn literal(v: &V) -> String {
    match v {
        V::S(None) => "CAST(NULL AS STRING)".into(),
        V::S(Some(text)) => format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'")),
        V::I(None) => "CAST(NULL AS INT)".into(),
        V::I(Some(n)) => format!("CAST({n} AS INT)"),
        V::T(ms) => format!(
            "TIMESTAMP '{}'",
            kiln_core::time::rfc3339(*ms)
                .trim_end_matches('Z')
                .replace('T', " ")
        ),
    }
}

fn table_type(t: &TableInfo) -> &str {
    if t.table_type.eq_ignore_ascii_case("VIEW") {
        "VIEW"
    } else {
        &t.table_type
    }
}

/// The rows of `view`, within `only` (a catalog) or every catalog.
fn rows(catalog: &Catalog, view: &str, only: Option<&str>) -> Vec<Vec<V>> {
    let mut out = Vec::new();
    let catalogs = catalog.catalogs().unwrap_or_default();
    for c in catalogs
        .iter()
        .filter(|c| only.is_none_or(|o| o.eq_ignore_ascii_case(&c.name)))
    {
        if view == "catalogs" {
            out.push(vec![
                s(&c.name),
                s(&c.owner),
                V::S(c.comment.clone()),
                V::T(c.created_at),
                s(&c.owner),
                V::T(c.created_at),
                s(&c.owner),
            ]);
            continue;
        }
        for sc in catalog.schemas(&c.name).unwrap_or_default() {
            if view == "schemata" {
                out.push(vec![
                    s(&c.name),
                    s(&sc.name),
                    s(&sc.owner),
                    V::S(sc.comment.clone()),
                    V::T(sc.created_at),
                    s(&sc.owner),
                    V::T(sc.created_at),
                    s(&sc.owner),
                ]);
                continue;
            }
            for t in catalog.tables(&c.name, &sc.name).unwrap_or_default() {
                let is_view = table_type(&t) == "VIEW";
                match view {
                    "tables" => out.push(vec![
                        s(&t.catalog_name),
                        s(&t.schema_name),
                        s(&t.name),
                        s(table_type(&t)),
                        s(if is_view { "NO" } else { "YES" }),
                        s("PRESERVE"),
                        s(&t.owner),
                        V::S(t.comment.clone()),
                        V::T(t.created_at),
                        s(&t.owner),
                        V::T(t.updated_at),
                        s(&t.owner),
                        V::S((!is_view).then(|| t.data_source_format.to_uppercase())),
                        V::S(None),
                        V::S(t.storage_location.clone()),
                    ]),
                    "views" if is_view => out.push(vec![
                        s(&t.catalog_name),
                        s(&t.schema_name),
                        s(&t.name),
                        V::S(t.view_definition.clone()),
                        s("NONE"),
                        s("NO"),
                        s("NO"),
                        V::S(None),
                    ]),
                    "columns" => {
                        for (i, col) in t.columns.iter().enumerate() {
                            out.push(column_row(&t, col, i));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    out
}

fn column_row(t: &TableInfo, col: &Value, i: usize) -> Vec<V> {
    let text = |k: &str| col[k].as_str().map(String::from);
    let full = text("type_text")
        .unwrap_or_else(|| "string".into())
        .to_lowercase();
    let data_type = text("type_name").unwrap_or_else(|| full.to_uppercase());
    let nullable = col["nullable"].as_bool().unwrap_or(true);
    vec![
        s(&t.catalog_name),
        s(&t.schema_name),
        s(&t.name),
        V::S(text("name")),
        V::I(Some(col["position"].as_i64().unwrap_or(i as i64) + 1)),
        V::S(None),
        s(if nullable { "YES" } else { "NO" }),
        s(full),
        s(data_type),
        V::I(None),
        V::I(col["type_precision"].as_i64()),
        V::I(col["type_scale"].as_i64()),
        s("NO"),
        s("NEVER"),
        s("YES"),
        V::I(col["partition_index"].as_i64()),
        V::S(text("comment")),
    ]
}

/// The relation that stands for `view`.
fn relation(catalog: &Catalog, view: &str, only: Option<&str>) -> Option<String> {
    let (_, columns) = VIEWS.iter().find(|(v, _)| *v == view)?;
    let names: Vec<&str> = columns
        .iter()
        .map(|c| c.split(':').next().unwrap_or(c))
        .collect();
    let data = rows(catalog, view, only);
    if data.is_empty() {
        let nulls: Vec<String> = columns
            .iter()
            .zip(&names)
            .map(|(c, n)| {
                let t = match c.split(':').nth(1) {
                    Some("i") => "INT",
                    Some("t") => "TIMESTAMP",
                    _ => "STRING",
                };
                format!("CAST(NULL AS {t}) AS `{n}`")
            })
            .collect();
        return Some(format!("(SELECT {} WHERE 1 = 0)", nulls.join(", ")));
    }
    let values: Vec<String> = data
        .iter()
        .map(|r| format!("({})", r.iter().map(literal).collect::<Vec<_>>().join(", ")))
        .collect();
    Some(format!(
        "(SELECT * FROM VALUES {} AS t({}))",
        values.join(", "),
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// An identifier at `i`: (its text unquoted, end).
fn ident(chars: &[char], i: usize) -> Option<(String, usize)> {
    if chars.get(i) == Some(&'`') {
        let mut j = i + 1;
        let mut out = String::new();
        while j < chars.len() {
            if chars[j] == '`' {
                if chars.get(j + 1) == Some(&'`') {
                    out.push('`');
                    j += 2;
                    continue;
                }
                return Some((out, j + 1));
            }
            out.push(chars[j]);
            j += 1;
        }
        return None;
    }
    let mut j = i;
    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
        j += 1;
    }
    (j > i).then(|| (chars[i..j].iter().collect(), j))
}

/// `sql` with its `information_schema` views inlined; `None` when it names none.
pub fn rewrite(catalog: &Catalog, sql: &str) -> Option<String> {
    if !sql.to_lowercase().contains("information_schema") {
        return None;
    }
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::new();
    let mut changed = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        // strings and comments are copied as they are
        if c == '\'' || c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i = (i + 1).min(chars.len());
            out.extend(&chars[start..i]);
            continue;
        }
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            let start = i;
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            out.extend(&chars[start..i]);
            continue;
        }
        let boundary = i == 0
            || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_' || chars[i - 1] == '.');
        if boundary && (c == '`' || c.is_alphabetic() || c == '_') {
            if let Some((a, j)) = ident(&chars, i) {
                let three = (chars.get(j) == Some(&'.'))
                    .then(|| ident(&chars, j + 1))
                    .flatten()
                    .filter(|(b, _)| b.eq_ignore_ascii_case("information_schema"))
                    .and_then(|(_, k)| {
                        (chars.get(k) == Some(&'.'))
                            .then(|| ident(&chars, k + 1))
                            .flatten()
                    });
                if let Some((view, end)) = three {
                    let only = (!a.eq_ignore_ascii_case("system")).then_some(a.as_str());
                    if let Some(rel) = relation(catalog, &view.to_lowercase(), only) {
                        out.push_str(&rel);
                        changed = true;
                        i = end;
                        continue;
                    }
                }
                out.extend(&chars[i..j]);
                i = j;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_and_type() {
        assert_eq!(literal(&s("it's \\ x")), "'it\\'s \\\\ x'");
        assert_eq!(literal(&V::I(Some(3))), "CAST(3 AS INT)");
        assert_eq!(literal(&V::T(0)), "TIMESTAMP '1970-01-01 00:00:00.000'");
    }

    #[test]
    fn finds_three_part_names_only_outside_strings() {
        let chars: Vec<char> = "`system`.`information_schema`.`tables` x".chars().collect();
        let (a, j) = ident(&chars, 0).unwrap_or_default();
        assert_eq!((a.as_str(), j), ("system", 8));
    }
}

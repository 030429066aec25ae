//! Rows Kiln computed (from a table's Delta log) as a query the engine runs,
//! so the client gets them as an ordinary result: `SELECT … FROM VALUES …`
//! with every column cast to its declared type.

use super::ddl::{literal, quote};

/// A value in a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Null,
    Str(String),
    Long(i64),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Milliseconds since the epoch.
    Timestamp(i64),
    StrMap(Vec<(String, String)>),
    StrArray(Vec<String>),
    Struct(Vec<(String, Lit)>),
}

impl Lit {
    pub fn opt_str(value: Option<&str>) -> Self {
        value.map_or(Lit::Null, |s| Lit::Str(s.to_string()))
    }

    fn sql(&self) -> String {
        match self {
            Lit::Null => "NULL".into(),
            Lit::Str(s) => literal(s),
            Lit::Long(n) => format!("CAST({n} AS BIGINT)"),
            Lit::Int(n) => format!("CAST({n} AS INT)"),
            Lit::Double(x) if x.is_finite() => format!("CAST({x:?} AS DOUBLE)"),
            Lit::Double(_) => "CAST(NULL AS DOUBLE)".into(),
            Lit::Bool(b) => b.to_string().to_uppercase(),
            Lit::Timestamp(ms) => format!("TIMESTAMP_MILLIS(CAST({ms} AS BIGINT))"),
            Lit::StrMap(pairs) if pairs.is_empty() => {
                "map_from_arrays(CAST(array() AS ARRAY<STRING>), CAST(array() AS ARRAY<STRING>))"
                    .into()
            }
            Lit::StrMap(pairs) => {
                let keys: Vec<String> = pairs.iter().map(|(k, _)| literal(k)).collect();
                let values: Vec<String> = pairs.iter().map(|(_, v)| literal(v)).collect();
                format!(
                    "map_from_arrays(array({}), array({}))",
                    keys.join(", "),
                    values.join(", ")
                )
            }
            Lit::StrArray(items) if items.is_empty() => "CAST(array() AS ARRAY<STRING>)".into(),
            Lit::StrArray(items) => {
                let items: Vec<String> = items.iter().map(|s| literal(s)).collect();
                format!("array({})", items.join(", "))
            }
            Lit::Struct(fields) => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}, {}", literal(k), v.sql()))
                    .collect();
                format!("named_struct({})", fields.join(", "))
            }
        }
    }
}

/// A result column: its name and SQL type.
pub type Column = (&'static str, &'static str);

/// The query that answers `rows` under `columns`.
pub fn query(columns: &[Column], rows: &[Vec<Lit>]) -> String {
    let select: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (name, ty))| format!("CAST(`c{i}` AS {ty}) AS {}", quote(name)))
        .collect();
    if rows.is_empty() {
        let nulls: Vec<String> = columns
            .iter()
            .map(|(name, ty)| format!("CAST(NULL AS {ty}) AS {}", quote(name)))
            .collect();
        return format!("SELECT {} WHERE 1 = 0", nulls.join(", "));
    }
    let values: Vec<String> = rows
        .iter()
        .map(|row| {
            let cells: Vec<String> = row.iter().map(Lit::sql).collect();
            format!("({})", cells.join(", "))
        })
        .collect();
    let aliases: Vec<String> = (0..columns.len()).map(|i| format!("`c{i}`")).collect();
    format!(
        "SELECT {} FROM VALUES {} AS `kiln_rows`({})",
        select.join(", "),
        values.join(",\n"),
        aliases.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_a_typed_values_query() {
        let q = query(
            &[("version", "BIGINT"), ("p", "MAP<STRING, STRING>")],
            &[vec![
                Lit::Long(1),
                Lit::StrMap(vec![("a".into(), "it's".into())]),
            ]],
        );
        assert_eq!(
            q,
            "SELECT CAST(`c0` AS BIGINT) AS `version`, CAST(`c1` AS MAP<STRING, STRING>) AS `p` FROM VALUES (CAST(1 AS BIGINT), map_from_arrays(array('a'), array('it\\'s'))) AS `kiln_rows`(`c0`, `c1`)"
        );
        assert_eq!(
            query(&[("a", "INT")], &[]),
            "SELECT CAST(NULL AS INT) AS `a` WHERE 1 = 0"
        );
    }
}

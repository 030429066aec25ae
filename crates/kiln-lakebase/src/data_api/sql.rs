//! SQL for a parsed Data API request. Every name a client sends is quoted as
//! an identifier and every value as a literal (of unknown type, so Postgres
//! coerces it to the column's type as PostgREST's prepared statements do);
//! casts were checked to be type names. Each statement answers one row:
//! `(total, count, body)`.

use super::query::{Aggregate, Condition, Field, Filter, IsValue, Op, Operand, Query, SelectItem};
use crate::pg::{ident, literal};

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// The select list, and the GROUP BY it needs when it has aggregates.
fn select_list(items: &[SelectItem], aggregates: bool) -> Result<(String, String), String> {
    if items.is_empty() {
        return Ok(("*".into(), String::new()));
    }
    let has_agg = items.iter().any(|i| matches!(i.field, Field::Agg(..)));
    if has_agg && !aggregates {
        return Err("Use of aggregate functions is not allowed".into());
    }
    let (mut out, mut group) = (Vec::new(), Vec::new());
    for item in items {
        let (expr, default_name) = match &item.field {
            Field::Star => ("*".to_string(), None),
            Field::Column(c) => {
                group.push(cast(&ident(c), &item.cast));
                (cast(&ident(c), &item.cast), None)
            }
            Field::Agg(Aggregate::Count, None) => ("count(*)".into(), Some("count")),
            Field::Agg(agg, column) => {
                let arg = column.as_deref().map(ident).unwrap_or_else(|| "*".into());
                (
                    cast(&format!("{}({arg})", agg.sql()), &item.cast),
                    Some(agg.sql()),
                )
            }
        };
        if has_agg && expr == "*" {
            return Err("* cannot be combined with aggregate functions".into());
        }
        let alias = item.alias.as_deref().or(default_name);
        out.push(match alias {
            Some(a) => format!("{expr} AS {}", ident(a)),
            None => expr,
        });
    }
    let group = if has_agg && !group.is_empty() {
        format!(" GROUP BY {}", group.join(", "))
    } else {
        String::new()
    };
    Ok((out.join(", "), group))
}

fn cast(expr: &str, cast: &Option<String>) -> String {
    match cast {
        Some(t) => format!("{expr}::{t}"),
        None => expr.to_string(),
    }
}

/// ` WHERE …` for the filters (empty without any).
pub fn where_clause(filters: &[Filter]) -> String {
    if filters.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = filters.iter().map(filter).collect();
    format!(" WHERE {}", parts.join(" AND "))
}

fn filter(f: &Filter) -> String {
    match f {
        Filter::Cond(c) => condition(c),
        Filter::Tree { or, negate, items } => {
            let joiner = if *or { " OR " } else { " AND " };
            let inner: Vec<String> = items.iter().map(filter).collect();
            let inner = if inner.is_empty() {
                "true".to_string()
            } else {
                inner.join(joiner)
            };
            if *negate {
                format!("NOT ({inner})")
            } else {
                format!("({inner})")
            }
        }
    }
}

fn condition(c: &Condition) -> String {
    let col = ident(&c.column);
    let text = match &c.operand {
        Operand::Text(t) => t.clone(),
        _ => String::new(),
    };
    let pattern = |t: &str| {
        if matches!(c.op, Op::Like | Op::Ilike) {
            t.replace('*', "%")
        } else {
            t.to_string()
        }
    };
    let sql = match (c.op, c.modifier.as_deref()) {
        (Op::Is, _) => match &c.operand {
            Operand::Is(IsValue::Null) => format!("{col} IS NULL"),
            Operand::Is(IsValue::NotNull) => format!("{col} IS NOT NULL"),
            Operand::Is(IsValue::True) => format!("{col} IS TRUE"),
            Operand::Is(IsValue::False) => format!("{col} IS FALSE"),
            _ => format!("{col} IS UNKNOWN"),
        },
        (Op::In, _) => match &c.operand {
            Operand::List(items) if !items.is_empty() => {
                let values: Vec<String> = items.iter().map(|v| literal(v)).collect();
                format!("{col} IN ({})", values.join(", "))
            }
            _ => "false".to_string(),
        },
        (Op::Fts | Op::Plfts | Op::Phfts | Op::Wfts, config) => {
            let function = match c.op {
                Op::Plfts => "plainto_tsquery",
                Op::Phfts => "phraseto_tsquery",
                Op::Wfts => "websearch_to_tsquery",
                _ => "to_tsquery",
            };
            match config {
                Some(cfg) => format!("{col} @@ {function}({}, {})", literal(cfg), literal(&text)),
                None => format!("{col} @@ {function}({})", literal(&text)),
            }
        }
        (op, Some(q @ ("any" | "all"))) => format!(
            "{col} {} {}({})",
            binary(op),
            q.to_ascii_uppercase(),
            literal(&pattern(&text))
        ),
        (op, _) => format!("{col} {} {}", binary(op), literal(&pattern(&text))),
    };
    if c.negate {
        format!("NOT ({sql})")
    } else {
        sql
    }
}

fn binary(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Neq => "<>",
        Op::Gt => ">",
        Op::Gte => ">=",
        Op::Lt => "<",
        Op::Lte => "<=",
        Op::Match => "~",
        Op::Imatch => "~*",
        Op::IsDistinct => "IS DISTINCT FROM",
        Op::Contains => "@>",
        Op::ContainedIn => "<@",
        Op::Overlaps => "&&",
        Op::Like => "LIKE",
        Op::Ilike => "ILIKE",
        Op::Is | Op::In | Op::Fts | Op::Plfts | Op::Phfts | Op::Wfts => "=",
    }
}

fn order_clause(q: &Query) -> String {
    if q.order.is_empty() {
        return String::new();
    }
    let terms: Vec<String> = q
        .order
        .iter()
        .map(|t| {
            let mut s = ident(&t.column);
            s.push_str(if t.desc { " DESC" } else { " ASC" });
            match t.nulls_first {
                Some(true) => s.push_str(" NULLS FIRST"),
                Some(false) => s.push_str(" NULLS LAST"),
                None => {}
            }
            s
        })
        .collect();
    format!(" ORDER BY {}", terms.join(", "))
}

/// The rows `limit`/`offset`/`Range` ask for, within `max_rows`.
pub fn limit_clause(limit: Option<u64>, offset: u64, max_rows: Option<u64>) -> String {
    let limit = match (limit, max_rows) {
        (Some(l), Some(m)) => Some(l.min(m)),
        (l, m) => l.or(m),
    };
    let mut s = String::new();
    if let Some(l) = limit {
        s.push_str(&format!(" LIMIT {l}"));
    }
    if offset > 0 {
        s.push_str(&format!(" OFFSET {offset}"));
    }
    s
}

/// A read of `rel` (a table, or a function call): `(total, count, body)`.
pub fn read(
    rel: &str,
    q: &Query,
    count_total: bool,
    aggregates: bool,
    paging: &str,
) -> Result<String, String> {
    let (list, group) = select_list(&q.select, aggregates)?;
    let filters = where_clause(&q.filters);
    let total = if count_total {
        format!("(SELECT count(*) FROM {rel}{filters})")
    } else {
        "NULL::bigint".into()
    };
    Ok(format!(
        "WITH _src AS (SELECT {list} FROM {rel}{filters}{group}{order}{paging}) \
         SELECT {total}, count(*), coalesce(json_agg(_src), '[]')::text FROM _src",
        order = order_clause(q),
    ))
}

/// A read of a function's rows: the set is materialized once, then
/// filtered, counted and paged (so counting does not call it again).
pub fn read_materialized(
    call: &str,
    q: &Query,
    count_total: bool,
    aggregates: bool,
    paging: &str,
) -> Result<String, String> {
    let inner = read("_all", q, count_total, aggregates, paging)?;
    let inner = inner.strip_prefix("WITH ").unwrap_or(&inner);
    Ok(format!(
        "WITH _all AS MATERIALIZED (SELECT * FROM {call}), {inner}"
    ))
}

/// Wraps data-changing statements (each ending in `RETURNING *`):
/// `(NULL, count, body)`; the body only when it is asked for.
pub fn returning(
    statements: &[String],
    select: &[SelectItem],
    represent: bool,
) -> Result<String, String> {
    let ctes: Vec<String> = statements
        .iter()
        .enumerate()
        .map(|(i, st)| format!("_m{i} AS ({st})"))
        .collect();
    let union: Vec<String> = (0..statements.len())
        .map(|i| format!("SELECT * FROM _m{i}"))
        .collect();
    let with = format!(
        "WITH {}, _m AS ({})",
        ctes.join(", "),
        union.join(" UNION ALL ")
    );
    if !represent {
        return Ok(format!(
            "{with} SELECT NULL::bigint, count(*), NULL::text FROM _m"
        ));
    }
    let (list, _) = select_list(select, false)?;
    Ok(format!(
        "{with} SELECT NULL::bigint, count(*), \
         coalesce(json_agg(_t), '[]')::text FROM (SELECT {list} FROM _m) _t"
    ))
}

/// What an insert does with a row whose key exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnConflict {
    Merge(Vec<String>),
    Ignore(Vec<String>),
}

/// `INSERT … SELECT … FROM json_populate_recordset(…) [ON CONFLICT …] RETURNING *`.
pub fn insert(
    table: &str,
    columns: &[String],
    rows_json: &str,
    conflict: Option<&OnConflict>,
) -> String {
    let cols: Vec<String> = columns.iter().map(|c| ident(c)).collect();
    let cols = cols.join(", ");
    let mut sql = format!(
        "INSERT INTO {table} ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::{table}, {}::json)",
        literal(rows_json)
    );
    match conflict {
        Some(OnConflict::Merge(keys)) => {
            let keys: Vec<String> = keys.iter().map(|k| ident(k)).collect();
            let sets: Vec<String> = columns
                .iter()
                .map(|c| format!("{0} = EXCLUDED.{0}", ident(c)))
                .collect();
            sql.push_str(&format!(
                " ON CONFLICT ({}) DO UPDATE SET {}",
                keys.join(", "),
                sets.join(", ")
            ));
        }
        Some(OnConflict::Ignore(keys)) => {
            let keys: Vec<String> = keys.iter().map(|k| ident(k)).collect();
            sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", keys.join(", ")));
        }
        None => {}
    }
    sql.push_str(" RETURNING *");
    sql
}

/// `UPDATE … SET (cols) = (SELECT cols FROM json_populate_record(…)) WHERE … RETURNING *`.
pub fn update(table: &str, columns: &[String], row_json: &str, filters: &[Filter]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| ident(c)).collect();
    let cols = cols.join(", ");
    format!(
        "UPDATE {table} SET ({cols}) = (SELECT {cols} FROM json_populate_record(NULL::{table}, {}::json)){} RETURNING *",
        literal(row_json),
        where_clause(filters)
    )
}

pub fn delete(table: &str, filters: &[Filter]) -> String {
    format!("DELETE FROM {table}{} RETURNING *", where_clause(filters))
}

/// A function call with named arguments (values as unknown-typed literals;
/// JSON objects and arrays as their text).
pub fn call(function: &str, args: &[(String, Option<String>)]) -> String {
    let args: Vec<String> = args
        .iter()
        .map(|(name, value)| {
            let value = value
                .as_deref()
                .map(literal)
                .unwrap_or_else(|| "NULL".into());
            format!("{} := {value}", ident(name))
        })
        .collect();
    format!("{function}({})", args.join(", "))
}

#[cfg(test)]
mod tests {
    use super::super::query::parse;
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Query {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(&pairs, &|_| false).unwrap_or_default()
    }

    #[test]
    fn reads_quote_every_name_and_value() -> Result<(), String> {
        let q = query(&[
            ("select", "id,n:name"),
            ("name", "eq.O'Brien"),
            ("x\"y", "not.in.(1,2)"),
            ("t", "ilike.*ab*"),
            ("order", "id.desc"),
        ]);
        let sql = read(
            "\"public\".\"t\"",
            &q,
            true,
            true,
            &limit_clause(Some(5), 10, Some(3)),
        )?;
        assert_eq!(
            sql,
            "WITH _src AS (SELECT \"id\", \"name\" AS \"n\" FROM \"public\".\"t\" \
             WHERE \"name\" = 'O''Brien' AND NOT (\"x\"\"y\" IN ('1', '2')) AND \"t\" ILIKE '%ab%' \
             ORDER BY \"id\" DESC LIMIT 3 OFFSET 10) SELECT (SELECT count(*) FROM \"public\".\"t\" \
             WHERE \"name\" = 'O''Brien' AND NOT (\"x\"\"y\" IN ('1', '2')) AND \"t\" ILIKE '%ab%'), \
             count(*), coalesce(json_agg(_src), '[]')::text FROM _src"
        );
        Ok(())
    }

    #[test]
    fn text_search_and_quantifiers() -> Result<(), String> {
        let q = query(&[
            ("t", "fts(english).cat & dog"),
            ("n", "like(any).{a*,b*}"),
            ("x", "not.wfts.o'k"),
        ]);
        assert_eq!(
            where_clause(&q.filters),
            " WHERE \"t\" @@ to_tsquery('english', 'cat & dog') AND \"n\" LIKE ANY('{a%,b%}') \
             AND NOT (\"x\" @@ websearch_to_tsquery('o''k'))"
        );
        Ok(())
    }

    #[test]
    fn aggregates_group_by_the_plain_columns() -> Result<(), String> {
        let q = query(&[("select", "kind,total:amount.sum(),count()")]);
        let sql = read("t", &q, false, true, "")?;
        assert!(sql.contains(
            "SELECT \"kind\", sum(\"amount\") AS \"total\", count(*) AS \"count\" FROM t GROUP BY \"kind\""
        ));
        assert!(read("t", &q, false, false, "").is_err());
        Ok(())
    }

    #[test]
    fn writes() {
        let t = qualified("public", "items");
        let cols = vec!["id".to_string(), "name".to_string()];
        assert_eq!(
            insert(&t, &cols, "[{\"id\":1}]", Some(&OnConflict::Merge(vec!["id".into()]))),
            "INSERT INTO \"public\".\"items\" (\"id\", \"name\") SELECT \"id\", \"name\" FROM \
             json_populate_recordset(NULL::\"public\".\"items\", '[{\"id\":1}]'::json) ON CONFLICT (\"id\") \
             DO UPDATE SET \"id\" = EXCLUDED.\"id\", \"name\" = EXCLUDED.\"name\" RETURNING *"
        );
        let q = query(&[("id", "gt.3")]);
        assert_eq!(
            update(&t, &cols[1..], "{\"name\":\"x\"}", &q.filters),
            "UPDATE \"public\".\"items\" SET (\"name\") = (SELECT \"name\" FROM \
             json_populate_record(NULL::\"public\".\"items\", '{\"name\":\"x\"}'::json)) \
             WHERE \"id\" > '3' RETURNING *"
        );
        assert_eq!(
            delete(&t, &q.filters),
            "DELETE FROM \"public\".\"items\" WHERE \"id\" > '3' RETURNING *"
        );
        assert_eq!(
            call(
                "\"public\".\"f\"",
                &[("a".into(), Some("1".into())), ("b".into(), None)]
            ),
            "\"public\".\"f\"(\"a\" := '1', \"b\" := NULL)"
        );
    }
}

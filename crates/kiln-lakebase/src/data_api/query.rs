//! The PostgREST query grammar the Data API accepts, parsed into a plan
//! before any SQL is written: `select` (columns, aliases, casts, aggregates),
//! horizontal filters (`col=op.value`, `not.`, `in.(…)`, `is.…`), the logic
//! trees `or=(…)`/`and=(…)`, `order`, `limit`/`offset`, `on_conflict` and
//! `columns`. Resource embedding is refused (PGRST100).

use super::{Failure, RestError};

/// A comparison a filter makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    Ilike,
    Match,
    Imatch,
    Is,
    IsDistinct,
    In,
    Contains,
    ContainedIn,
    Overlaps,
    /// Full-text search: `fts` (to_tsquery), `plfts`, `phfts`, `wfts`.
    Fts,
    Plfts,
    Phfts,
    Wfts,
}

impl Op {
    fn parse(text: &str) -> Option<Op> {
        Some(match text {
            "eq" => Op::Eq,
            "neq" => Op::Neq,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "like" => Op::Like,
            "ilike" => Op::Ilike,
            "match" => Op::Match,
            "imatch" => Op::Imatch,
            "is" => Op::Is,
            "isdistinct" => Op::IsDistinct,
            "in" => Op::In,
            "cs" => Op::Contains,
            "cd" => Op::ContainedIn,
            "ov" => Op::Overlaps,
            "fts" => Op::Fts,
            "plfts" => Op::Plfts,
            "phfts" => Op::Phfts,
            "wfts" => Op::Wfts,
            _ => return None,
        })
    }
}

/// What `is.` compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsValue {
    Null,
    NotNull,
    True,
    False,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    Text(String),
    List(Vec<String>),
    Is(IsValue),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub column: String,
    pub negate: bool,
    pub op: Op,
    pub operand: Operand,
    /// `op(any)` / `op(all)`, or a text-search configuration (`fts(english)`).
    pub modifier: Option<String>,
}

/// A filter: one condition or a logic tree of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Cond(Condition),
    Tree {
        or: bool,
        negate: bool,
        items: Vec<Filter>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    Count,
    Sum,
    Avg,
    Max,
    Min,
}

impl Aggregate {
    pub fn sql(self) -> &'static str {
        match self {
            Aggregate::Count => "count",
            Aggregate::Sum => "sum",
            Aggregate::Avg => "avg",
            Aggregate::Max => "max",
            Aggregate::Min => "min",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Star,
    Column(String),
    /// `count()` (no column) or `col.sum()`.
    Agg(Aggregate, Option<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectItem {
    pub field: Field,
    pub alias: Option<String>,
    pub cast: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTerm {
    pub column: String,
    pub desc: bool,
    /// `Some(true)` nulls first, `Some(false)` nulls last.
    pub nulls_first: Option<bool>,
}

/// Everything a request's query string says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pub select: Vec<SelectItem>,
    pub filters: Vec<Filter>,
    pub order: Vec<OrderTerm>,
    pub limit: Option<u64>,
    pub offset: u64,
    pub on_conflict: Option<Vec<String>>,
    pub columns: Option<Vec<String>>,
    /// Parameters that name a function's arguments (GET `rpc/…`).
    pub args: Vec<(String, String)>,
}

/// The longest query string accepted.
const MAX_QUERY: usize = 16 * 1024;

pub(super) fn bad(message: impl Into<String>) -> RestError {
    RestError::new(Failure::BadRequest, "PGRST100", message)
}

/// Parses decoded query pairs; `is_arg` tells which keys are function arguments.
pub fn parse(
    pairs: &[(String, String)],
    is_arg: &dyn Fn(&str) -> bool,
) -> Result<Query, RestError> {
    let mut q = Query::default();
    if pairs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() > MAX_QUERY {
        return Err(bad(format!(
            "the query string is longer than {MAX_QUERY} bytes"
        )));
    }
    for (key, value) in pairs {
        if value.contains('\0') || key.contains('\0') {
            return Err(bad("NUL bytes are not allowed in the query string"));
        }
        match key.as_str() {
            "select" => q.select = super::select::parse_select(value)?,
            "order" => q.order = parse_order(value)?,
            "limit" => q.limit = Some(number("limit", value)?),
            "offset" => q.offset = number("offset", value)?,
            "on_conflict" => q.on_conflict = Some(names(value)?),
            "columns" => q.columns = Some(names(value)?),
            "or" | "and" | "not.or" | "not.and" => {
                let negate = key.starts_with("not.");
                let or = key.ends_with("or");
                q.filters.push(tree(or, negate, value)?);
            }
            _ if is_arg(key) => q.args.push((key.clone(), value.clone())),
            _ => q.filters.push(Filter::Cond(condition(key, value, false)?)),
        }
    }
    Ok(q)
}

fn number(what: &str, value: &str) -> Result<u64, RestError> {
    value
        .trim()
        .parse()
        .map_err(|_| bad(format!("\"failed to parse {what} parameter ({value})\"")))
}

fn names(value: &str) -> Result<Vec<String>, RestError> {
    let out: Vec<String> = split_top(value)?
        .into_iter()
        .map(|n| unquote(n.trim()))
        .filter(|n| !n.is_empty())
        .collect();
    if out.is_empty() {
        return Err(bad("an empty list of columns"));
    }
    Ok(out)
}

/// Splits on commas outside parentheses and double quotes.
pub(super) fn split_top(text: &str) -> Result<Vec<&str>, RestError> {
    let (mut depth, mut quoted, mut escaped) = (0i32, false, false);
    let (mut parts, mut start) = (Vec::new(), 0);
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(bad(format!("unbalanced parentheses in \"{text}\"")));
        }
    }
    if depth != 0 || quoted {
        return Err(bad(format!(
            "unbalanced parentheses or quotes in \"{text}\""
        )));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

/// `"a,b"` → `a,b` (with `\"` and `\\` escapes); anything else as is.
pub(super) fn unquote(text: &str) -> String {
    let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return text.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A `col=[not.]op.value` filter.
/// Values are unquoted inside logic trees and `in.(…)` lists only.
fn condition(column: &str, text: &str, in_tree: bool) -> Result<Condition, RestError> {
    let column = unquote(column.trim());
    if column.is_empty() {
        return Err(bad("a filter without a column"));
    }
    let (negate, rest) = match text.strip_prefix("not.") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (op_text, value) = rest.split_once('.').ok_or_else(|| {
        bad(format!(
            "\"failed to parse filter ({text})\" (expected operator.value)"
        ))
    })?;
    let (op_text, modifier) = match op_text.strip_suffix(')').and_then(|o| o.split_once('(')) {
        Some((name, m)) => (name, Some(m.to_string())),
        None => (op_text, None),
    };
    let op = Op::parse(op_text).ok_or_else(|| {
        bad(format!(
            "\"failed to parse filter ({text})\": unknown operator {op_text}"
        ))
    })?;
    let operand = match op {
        Op::Is => Operand::Is(match value.to_ascii_lowercase().as_str() {
            "null" => IsValue::Null,
            "not_null" => IsValue::NotNull,
            "true" => IsValue::True,
            "false" => IsValue::False,
            "unknown" => IsValue::Unknown,
            _ => return Err(bad(format!("\"failed to parse filter ({text})\": is. takes null, not_null, true, false or unknown"))),
        }),
        Op::In => {
            let inner = value
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .ok_or_else(|| bad(format!("\"failed to parse filter ({text})\": in. takes (a,b,…)")))?;
            let items = if inner.is_empty() {
                Vec::new()
            } else {
                split_top(inner)?.into_iter().map(|v| unquote(v.trim())).collect()
            };
            Operand::List(items)
        }
        _ if in_tree => Operand::Text(unquote(value)),
        _ => Operand::Text(value.to_string()),
    };
    check_modifier(op, modifier.as_deref())
        .map_err(|m| bad(format!("\"failed to parse filter ({text})\": {m}")))?;
    Ok(Condition {
        modifier,
        column,
        negate,
        op,
        operand,
    })
}

/// How deep logic trees may nest (each level is a recursion).
const MAX_DEPTH: usize = 16;

/// `any`/`all` on comparisons and patterns; a configuration name on text search.
fn check_modifier(op: Op, modifier: Option<&str>) -> Result<(), &'static str> {
    let Some(m) = modifier else {
        return Ok(());
    };
    match op {
        Op::Fts | Op::Plfts | Op::Phfts | Op::Wfts => {
            let name = !m.is_empty()
                && m.len() <= 63
                && m.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && m.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            name.then_some(())
                .ok_or("a text search configuration is a lowercase name")
        }
        Op::Eq
        | Op::Neq
        | Op::Gt
        | Op::Gte
        | Op::Lt
        | Op::Lte
        | Op::Like
        | Op::Ilike
        | Op::Match
        | Op::Imatch => matches!(m, "any" | "all")
            .then_some(())
            .ok_or("the modifier is any or all"),
        _ => Err("this operator takes no modifier"),
    }
}

/// `(a.eq.1,and(b.gt.2,c.is.null),not.or(…))`.
fn tree(or: bool, negate: bool, text: &str) -> Result<Filter, RestError> {
    nested(or, negate, text, 0)
}

fn nested(or: bool, negate: bool, text: &str, depth: usize) -> Result<Filter, RestError> {
    if depth >= MAX_DEPTH {
        return Err(bad(format!("logic trees nest at most {MAX_DEPTH} deep")));
    }
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| bad(format!("\"failed to parse logic tree ({text})\"")))?;
    let mut items = Vec::new();
    for part in split_top(inner)? {
        let part = part.trim();
        let (negate, body) = match part.strip_prefix("not.") {
            Some(rest) if rest.starts_with("and(") || rest.starts_with("or(") => (true, rest),
            _ => (false, part),
        };
        if let Some(rest) = body.strip_prefix("and") {
            if rest.starts_with('(') {
                items.push(nested(false, negate, rest, depth + 1)?);
                continue;
            }
        }
        if let Some(rest) = body.strip_prefix("or") {
            if rest.starts_with('(') {
                items.push(nested(true, negate, rest, depth + 1)?);
                continue;
            }
        }
        let (column, cond) = part
            .split_once('.')
            .ok_or_else(|| bad(format!("\"failed to parse logic tree ({text})\"")))?;
        items.push(Filter::Cond(condition(column, cond, true)?));
    }
    Ok(Filter::Tree { or, negate, items })
}

fn parse_order(text: &str) -> Result<Vec<OrderTerm>, RestError> {
    let mut out = Vec::new();
    for part in split_top(text)? {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let mut pieces = part.split('.');
        let column = unquote(pieces.next().unwrap_or_default());
        let mut term = OrderTerm {
            column,
            desc: false,
            nulls_first: None,
        };
        for modifier in pieces {
            match modifier {
                "asc" => term.desc = false,
                "desc" => term.desc = true,
                "nullsfirst" => term.nulls_first = Some(true),
                "nullslast" => term.nulls_first = Some(false),
                _ => return Err(bad(format!("\"failed to parse order ({part})\""))),
            }
        }
        out.push(term);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<Query, RestError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(&pairs, &|k| k == "n")
    }

    fn cond(column: &str, negate: bool, op: Op, operand: Operand) -> Filter {
        Filter::Cond(Condition {
            modifier: None,
            column: column.into(),
            negate,
            op,
            operand,
        })
    }

    #[test]
    fn filters_select_order_and_paging() -> Result<(), RestError> {
        let parsed = q(&[
            (
                "select",
                "id,name:title,price::text,total:amount.sum(),count()",
            ),
            ("age", "gte.18"),
            ("name", "not.like.*son"),
            ("id", "in.(1,2,\"a,b\")"),
            ("deleted", "is.null"),
            ("order", "age.desc.nullslast,name"),
            ("limit", "10"),
            ("offset", "20"),
            ("n", "5"),
        ])?;
        assert_eq!(parsed.select.len(), 5);
        assert_eq!(parsed.select[1].alias.as_deref(), Some("name"));
        assert_eq!(parsed.select[1].field, Field::Column("title".into()));
        assert_eq!(parsed.select[2].cast.as_deref(), Some("text"));
        assert_eq!(
            parsed.select[3].field,
            Field::Agg(Aggregate::Sum, Some("amount".into()))
        );
        assert_eq!(parsed.select[4].field, Field::Agg(Aggregate::Count, None));
        assert_eq!(
            parsed.filters,
            vec![
                cond("age", false, Op::Gte, Operand::Text("18".into())),
                cond("name", true, Op::Like, Operand::Text("*son".into())),
                cond(
                    "id",
                    false,
                    Op::In,
                    Operand::List(vec!["1".into(), "2".into(), "a,b".into()])
                ),
                cond("deleted", false, Op::Is, Operand::Is(IsValue::Null)),
            ]
        );
        assert!(parsed.order[0].desc);
        assert_eq!(parsed.order[0].nulls_first, Some(false));
        assert_eq!(parsed.order[1].column, "name");
        assert_eq!((parsed.limit, parsed.offset), (Some(10), 20));
        assert_eq!(parsed.args, vec![("n".to_string(), "5".to_string())]);
        Ok(())
    }

    #[test]
    fn logic_trees_nest() -> Result<(), RestError> {
        let parsed = q(&[(
            "or",
            "(age.lt.18,and(name.eq.\"x,y\",not.or(a.is.true,b.gt.2)))",
        )])?;
        let Filter::Tree { or, negate, items } = &parsed.filters[0] else {
            panic!("not a tree");
        };
        assert!(*or && !*negate);
        assert_eq!(
            items[0],
            cond("age", false, Op::Lt, Operand::Text("18".into()))
        );
        let Filter::Tree {
            or, items: inner, ..
        } = &items[1]
        else {
            panic!("not a tree");
        };
        assert!(!*or);
        assert_eq!(
            inner[0],
            cond("name", false, Op::Eq, Operand::Text("x,y".into()))
        );
        assert!(matches!(
            &inner[1],
            Filter::Tree {
                or: true,
                negate: true,
                ..
            }
        ));
        Ok(())
    }

    #[test]
    fn bad_input_is_refused_with_pgrst100() {
        let deep = format!("({}a.eq.1{})", "and(".repeat(40), ")".repeat(40));
        for pairs in [
            vec![("age", "18")],
            vec![("age", "between.1.2")],
            vec![("select", "id,orders(*)")],
            vec![("select", "id::text;drop table x")],
            vec![("or", "(a.eq.1")],
            vec![("limit", "ten")],
            vec![("order", "a.sideways")],
            vec![("id", "in.1,2")],
            vec![("a", "is.maybe")],
            vec![("select", "rolname::text from pg_roles union select name")],
            vec![("select", "a::int;")],
            vec![("a", "eq(some).{1}")],
            vec![("a", "fts(Eng').x")],
            vec![("a", "in(any).(1)")],
            vec![("or", deep.as_str())],
        ] {
            let err = q(&pairs).err();
            assert_eq!(
                err.map(|e| e.code),
                Some("PGRST100".to_string()),
                "{pairs:?}"
            );
        }
    }
}

//! The `select` parameter of the Data API: columns, `alias:column`,
//! `column::type` casts (type names only) and aggregates (`count()`,
//! `column.sum()`…); resource embedding is refused.

use super::query::{bad, split_top, unquote, Aggregate, Field, SelectItem};
use super::RestError;

pub(super) fn parse_select(text: &str) -> Result<Vec<SelectItem>, RestError> {
    let mut out = Vec::new();
    for part in split_top(text)? {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        out.push(select_item(part)?);
    }
    Ok(out)
}

fn select_item(part: &str) -> Result<SelectItem, RestError> {
    let (alias, rest) = match part.split_once(':') {
        Some((a, r)) if !r.starts_with(':') && !a.contains('(') => (Some(unquote(a.trim())), r),
        _ => (None, part),
    };
    let (field, cast) = match rest.rsplit_once("::") {
        Some((f, c)) => (f.trim(), Some(check_cast(c.trim())?)),
        None => (rest.trim(), None),
    };
    let field = if field == "*" {
        Field::Star
    } else if field == "count()" {
        Field::Agg(Aggregate::Count, None)
    } else if let Some(agg) = aggregate(field) {
        agg
    } else if field.contains('(') {
        return Err(bad(format!(
            "\"{field}\": resource embedding is not supported by this Data API"
        )));
    } else {
        Field::Column(unquote(field))
    };
    Ok(SelectItem { field, alias, cast })
}

/// `col.sum()` and friends.
fn aggregate(field: &str) -> Option<Field> {
    let (column, func) = field.strip_suffix("()")?.rsplit_once('.')?;
    let agg = match func {
        "count" => Aggregate::Count,
        "sum" => Aggregate::Sum,
        "avg" => Aggregate::Avg,
        "max" => Aggregate::Max,
        "min" => Aggregate::Min,
        _ => return None,
    };
    Some(Field::Agg(agg, Some(unquote(column))))
}

/// Type names of more than one word a cast may use.
const MULTI_WORD_TYPES: &[&str] = &[
    "double precision",
    "character varying",
    "bit varying",
    "timestamp with time zone",
    "timestamp without time zone",
    "time with time zone",
    "time without time zone",
];

/// A cast is written into SQL: only a type name — one word of letters,
/// digits and `_`, or one of [`MULTI_WORD_TYPES`] — with an optional `[]`.
fn check_cast(cast: &str) -> Result<String, RestError> {
    let body = cast.strip_suffix("[]").unwrap_or(cast);
    let word = !body.is_empty()
        && body.len() <= 63
        && body.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && body.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if word || MULTI_WORD_TYPES.contains(&body.to_ascii_lowercase().as_str()) {
        Ok(cast.to_string())
    } else {
        Err(bad(format!("\"{cast}\" is not a type name")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_are_type_names() -> Result<(), RestError> {
        for ok in [
            "int",
            "text[]",
            "double precision",
            "timestamp with time zone",
            "_int4",
        ] {
            assert_eq!(check_cast(ok)?, ok);
        }
        for bad in ["", "int from x", "text; drop", "a b", "\"x\"", "int)"] {
            assert!(check_cast(bad).is_err(), "{bad}");
        }
        Ok(())
    }
}

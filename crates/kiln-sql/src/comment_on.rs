//! `COMMENT ON TABLE|VIEW|SCHEMA|CATALOG <name> IS '<text>'|NULL` and
//! `COMMENT ON COLUMN <table>.<column> IS …` (what dbt's `persist_docs`
//! sends), which the engine's parser does not take: Kiln sets the comment in
//! its Unity Catalog, where every client reads it.

use kiln_catalog::{Catalog, SecurableUpdate};

use crate::describe_json::{name_at, skip, word_at};

/// What a COMMENT ON statement asks.
#[derive(Debug, PartialEq)]
pub struct CommentOn {
    pub kind: String,
    pub name: Vec<String>,
    pub comment: Option<String>,
}

/// A SQL string literal at `i` (`'…'` or `"…"`, backslash escapes).
fn string_at(chars: &[char], i: usize) -> Option<(String, usize)> {
    let quote = *chars.get(i)?;
    if quote != '\'' && quote != '"' {
        return None;
    }
    let mut out = String::new();
    let mut j = i + 1;
    while j < chars.len() {
        match chars[j] {
            '\\' => {
                let c = *chars.get(j + 1)?;
                out.push(match c {
                    'n' => '\n',
                    't' => '\t',
                    other => other,
                });
                j += 2;
            }
            c if c == quote => return Some((out, j + 1)),
            c => {
                out.push(c);
                j += 1;
            }
        }
    }
    None
}

pub fn parse(sql: &str) -> Option<CommentOn> {
    let chars: Vec<char> = sql.chars().collect();
    let i = skip(&chars, 0);
    let (w, j) = word_at(&chars, i);
    if w != "COMMENT" {
        return None;
    }
    let (w, j) = word_at(&chars, skip(&chars, j));
    if w != "ON" {
        return None;
    }
    let (kind, j) = word_at(&chars, skip(&chars, j));
    if !matches!(
        kind.as_str(),
        "TABLE" | "VIEW" | "SCHEMA" | "DATABASE" | "CATALOG" | "COLUMN"
    ) {
        return None;
    }
    let (name, j) = name_at(&chars, skip(&chars, j))?;
    let (w, j) = word_at(&chars, skip(&chars, j));
    if w != "IS" {
        return None;
    }
    let k = skip(&chars, j);
    let (comment, j) = match string_at(&chars, k) {
        Some((text, end)) => (Some(text), end),
        None => {
            let (w, end) = word_at(&chars, k);
            if w != "NULL" {
                return None;
            }
            (None, end)
        }
    };
    let mut end = skip(&chars, j);
    if chars.get(end) == Some(&';') {
        end = skip(&chars, end + 1);
    }
    (end >= chars.len()).then_some(CommentOn {
        kind,
        name,
        comment,
    })
}

fn qualify(parts: &[String], current: (&str, &str)) -> Option<String> {
    Some(match parts {
        [c, s, t] => format!("{c}.{s}.{t}"),
        [s, t] => format!("{}.{s}.{t}", current.0),
        [t] => format!("{}.{}.{t}", current.0, current.1),
        _ => return None,
    })
}

/// Carries out a COMMENT ON; the statement the engine then runs (none: an
/// empty result), or why it cannot be done.
pub fn apply(
    catalog: &Catalog,
    sql: &str,
    current: (&str, &str),
) -> Option<Result<String, String>> {
    let c = parse(sql)?;
    let done = match c.kind.as_str() {
        "COLUMN" => {
            let (column, table) = c.name.split_last()?;
            qualify(table, current)
                .ok_or_else(|| format!("[INVALID_IDENTIFIER] {}", c.name.join(".")))
                .and_then(|t| {
                    catalog
                        .set_column_comment(&t, column, c.comment.clone())
                        .map(|_| ())
                        .map_err(|e| e.message)
                })
        }
        "TABLE" | "VIEW" => qualify(&c.name, current)
            .ok_or_else(|| format!("[INVALID_IDENTIFIER] {}", c.name.join(".")))
            .and_then(|t| {
                let update = SecurableUpdate {
                    comment: Some(c.comment.clone().unwrap_or_default()),
                    ..Default::default()
                };
                catalog
                    .update_table(&t, update)
                    .map(|_| ())
                    .map_err(|e| e.message)
            }),
        "SCHEMA" | "DATABASE" => {
            let full = match c.name.as_slice() {
                [cat, s] => format!("{cat}.{s}"),
                [s] => format!("{}.{s}", current.0),
                _ => return Some(Err(format!("[INVALID_IDENTIFIER] {}", c.name.join(".")))),
            };
            let update = SecurableUpdate {
                comment: Some(c.comment.clone().unwrap_or_default()),
                ..Default::default()
            };
            catalog
                .update_schema(&full, update)
                .map(|_| ())
                .map_err(|e| e.message)
        }
        _ => {
            let update = SecurableUpdate {
                comment: Some(c.comment.clone().unwrap_or_default()),
                ..Default::default()
            };
            catalog
                .update_catalog(&c.name.join("."), update)
                .map(|_| ())
                .map_err(|e| e.message)
        }
    };
    Some(done.map(|()| "SELECT 1 AS done WHERE 1 = 0".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_persist_docs_sends() {
        let c = parse("/* dbt */ COMMENT ON COLUMN `main`.`s`.`t`.customer IS 'Who \\'ordered\\''");
        assert_eq!(
            c,
            Some(CommentOn {
                kind: "COLUMN".into(),
                name: vec!["main".into(), "s".into(), "t".into(), "customer".into()],
                comment: Some("Who 'ordered'".into()),
            })
        );
        assert_eq!(
            parse("comment on table t is null").map(|c| c.comment),
            Some(None)
        );
        assert_eq!(parse("COMMENT ON TABLE t IS 'x' extra"), None);
        assert_eq!(parse("SELECT 1"), None);
    }
}

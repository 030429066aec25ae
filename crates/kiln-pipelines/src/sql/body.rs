//! Scanning a query body for the references Kiln rewrites: relations after
//! FROM/JOIN (and in comma lists), `LIVE.x`, `STREAM(x)`/`STREAM x`,
//! `read_files(…)`/`cloud_files(…)`; CTE names are recorded so they are not
//! taken for datasets, and a FROM inside a function call is not a clause.

use super::lexer::{Kind, Token};
use super::model::*;
use super::parser::{Cursor, PResult};

/// Keywords that end a FROM clause (a relation list).
const FROM_END: &[&str] = &[
    "WHERE",
    "GROUP",
    "HAVING",
    "ORDER",
    "LIMIT",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "MINUS",
    "WINDOW",
    "QUALIFY",
    "CLUSTER",
    "DISTRIBUTE",
    "SORT",
    "SELECT",
    "OFFSET",
    "PIVOT",
    "UNPIVOT",
];

/// Words after a relation that are not its alias.
const NOT_ALIAS: &[&str] = &[
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "FULL",
    "CROSS",
    "NATURAL",
    "ANTI",
    "SEMI",
    "ON",
    "USING",
    "LATERAL",
    "TABLESAMPLE",
    "VERSION",
    "TIMESTAMP",
    "FOR",
    "WITH",
];

/// Walks a query body's tokens.
pub(super) struct Scan<'a> {
    pub(super) c: Cursor<'a>,
    pub(super) base: usize,
    pub(super) items: Vec<Item>,
    pub(super) ctes: Vec<String>,
    /// Paren depths at which a FROM clause is open.
    pub(super) from_depths: Vec<i32>,
    /// Paren depths at which a SELECT was seen (a FROM elsewhere is a function's).
    pub(super) selects: Vec<i32>,
    pub(super) depth: i32,
}

impl Scan<'_> {
    fn span(&self, from: usize, to: usize) -> std::ops::Range<usize> {
        self.c.toks[from].span.start - self.base..self.c.toks[to - 1].span.end - self.base
    }

    fn in_from(&self) -> bool {
        self.from_depths.last() == Some(&self.depth)
    }

    pub(super) fn run(&mut self, relation_first: bool) -> PResult<()> {
        if relation_first {
            self.from_depths.push(0);
            self.relation()?;
        }
        while let Some(t) = self.c.peek() {
            let src = self.c.src;
            if t.is_punct(src, "(") {
                self.depth += 1;
                self.c.at += 1;
            } else if t.is_punct(src, ")") {
                if self.in_from() {
                    self.from_depths.pop();
                }
                while self.selects.last().is_some_and(|d| *d >= self.depth) {
                    self.selects.pop();
                }
                self.depth -= 1;
                self.c.at += 1;
            } else if t.is(src, "SELECT") {
                if self.selects.last() != Some(&self.depth) {
                    self.selects.push(self.depth);
                }
                if self.in_from() {
                    self.from_depths.pop();
                }
                self.c.at += 1;
            } else if t.is(src, "FROM") && self.selects.last() != Some(&self.depth) {
                self.c.at += 1; // EXTRACT(x FROM y), TRIM(… FROM s)
            } else if t.is(src, "WITH") && self.c.peek_at(2).is_some_and(|n| n.is(src, "AS")) {
                self.c.at += 1;
                self.cte_names();
            } else if t.is(src, "FROM") || t.is(src, "JOIN") {
                self.c.at += 1;
                if t.is(src, "FROM") && self.in_from() {
                    self.from_depths.pop();
                }
                if !self.in_from() {
                    self.from_depths.push(self.depth);
                }
                self.relation()?;
            } else if t.is_punct(src, ",") && self.in_from() {
                self.c.at += 1;
                self.relation()?;
            } else if FROM_END.iter().any(|k| t.is(src, k)) && self.in_from() {
                self.from_depths.pop();
                self.c.at += 1;
            } else if t.is(src, "STREAM")
                || is_files_fn(src, t, self.c.peek_at(1))
                || (t.is(src, "LIVE") && self.c.peek_at(1).is_some_and(|n| n.is_punct(src, ".")))
            {
                self.relation()?;
            } else {
                self.c.at += 1;
            }
        }
        Ok(())
    }

    /// `WITH a AS (…), b AS (…)`: records the names; the bodies are scanned normally.
    fn cte_names(&mut self) {
        let src = self.c.src;
        let _ = self.c.eat("RECURSIVE");
        let mut i = self.c.at;
        loop {
            let Some(name) = self.c.toks.get(i) else {
                return;
            };
            self.ctes.push(name.ident(src));
            // Skip `name [(cols)] AS ( … )`.
            let mut j = i + 1;
            if self.c.toks.get(j).is_some_and(|t| t.is_punct(src, "(")) {
                j = skip_parens(src, self.c.toks, j);
            }
            if !self.c.toks.get(j).is_some_and(|t| t.is(src, "AS")) {
                return;
            }
            j += 1;
            if !self.c.toks.get(j).is_some_and(|t| t.is_punct(src, "(")) {
                return;
            }
            let after = skip_parens(src, self.c.toks, j);
            if self.c.toks.get(after).is_some_and(|t| t.is_punct(src, ",")) {
                i = after + 1;
            } else {
                return;
            }
        }
    }

    /// A relation at the cursor: `STREAM(x)`, `STREAM x`, `read_files(…)`,
    /// a name, or something Kiln leaves alone (a subquery, VALUES, LATERAL).
    fn relation(&mut self) -> PResult<()> {
        let src = self.c.src;
        let start = self.c.at;
        let Some(t) = self.c.peek() else {
            return Ok(());
        };
        if t.is(src, "STREAM") {
            let next = self.c.peek_at(1);
            let paren = next.is_some_and(|n| n.is_punct(src, "("));
            let next_is_name = next.is_some_and(|n| matches!(n.kind, Kind::Word | Kind::Quoted));
            if !paren && !next_is_name {
                self.c.at += 1; // a column called stream
                return Ok(());
            }
            self.c.at += 1;
            if paren {
                let close = self.c.matching_paren()?;
                let mut inner = self.c.sub(self.c.at + 1, close);
                let kind = if inner
                    .peek()
                    .is_some_and(|t| is_files_fn(src, t, inner.peek_at(1)))
                {
                    files_call(&mut inner, true)?
                } else {
                    let parts = inner.object_name()?;
                    inner.end().map_err(|e| format!("in STREAM(…): {e}"))?;
                    relation_kind(parts, true)
                };
                self.c.at = close + 1;
                self.items.push(Item {
                    span: self.span(start, self.c.at),
                    kind,
                });
                return Ok(());
            }
            let kind = if self
                .c
                .peek()
                .is_some_and(|t| is_files_fn(src, t, self.c.peek_at(1)))
            {
                let close = {
                    self.c.at += 1;
                    self.c.matching_paren()?
                };
                self.c.at -= 1;
                let mut call = self.c.sub(self.c.at, close + 1);
                let kind = files_call(&mut call, true)?;
                self.c.at = close + 1;
                kind
            } else {
                relation_kind(self.c.object_name()?, true)
            };
            self.items.push(Item {
                span: self.span(start, self.c.at),
                kind,
            });
            return Ok(());
        }
        if is_files_fn(src, t, self.c.peek_at(1)) {
            self.c.at += 1;
            let close = self.c.matching_paren()?;
            let mut call = self.c.sub(start, close + 1);
            let kind = files_call(&mut call, false)?;
            self.c.at = close + 1;
            self.items.push(Item {
                span: self.span(start, self.c.at),
                kind,
            });
            return Ok(());
        }
        if !matches!(t.kind, Kind::Word | Kind::Quoted)
            || ["LATERAL", "VALUES", "SELECT", "UNNEST"]
                .iter()
                .any(|k| t.is(src, k))
        {
            return Ok(());
        }
        let parts = self.c.object_name()?;
        if self.c.is_punct("(") {
            // A table-valued function: leave it to the engine.
            self.c.at = start + 1;
            return Ok(());
        }
        self.items.push(Item {
            span: self.span(start, self.c.at),
            kind: relation_kind(parts, false),
        });
        // Skip a plain alias so it is not taken for a relation.
        if self.c.is("AS") {
            self.c.at += 1;
        }
        if let Some(t) = self.c.peek() {
            let keyword = NOT_ALIAS.iter().chain(FROM_END).any(|k| t.is(src, k));
            if matches!(t.kind, Kind::Word | Kind::Quoted) && !keyword {
                self.c.at += 1;
            }
        }
        Ok(())
    }
}

fn skip_parens(src: &str, toks: &[Token], open: usize) -> usize {
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate().skip(open) {
        if t.is_punct(src, "(") {
            depth += 1;
        } else if t.is_punct(src, ")") {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
    }
    toks.len()
}

fn is_files_fn(src: &str, t: &Token, next: Option<&Token>) -> bool {
    (t.is(src, "read_files") || t.is(src, "cloud_files"))
        && next.is_some_and(|n| n.is_punct(src, "("))
}

fn relation_kind(mut parts: Vec<String>, streaming: bool) -> ItemKind {
    let live = parts.len() > 1 && parts[0].eq_ignore_ascii_case("live");
    if live {
        parts.remove(0);
    }
    ItemKind::Relation {
        parts,
        streaming,
        live,
    }
}

/// `read_files('path', format => 'csv', k => v)` or
/// `cloud_files('path', 'json' [, map('k', 'v', …)])`.
fn files_call(c: &mut Cursor<'_>, stream: bool) -> PResult<ItemKind> {
    let src = c.src;
    let cloud = c.is("cloud_files");
    c.at += 1;
    let args = c.paren_list()?;
    let Some(&(first_from, first_to)) = args.first() else {
        return Err("read_files needs a path".into());
    };
    let path = {
        let mut a = c.sub(first_from, first_to);
        let p = a.string().map_err(|_| {
            "the first argument of read_files/cloud_files is the path, a string literal".to_string()
        })?;
        a.end()?;
        p
    };
    let mut format = None;
    let mut options = Vec::new();
    for (i, &(from, to)) in args.iter().enumerate().skip(1) {
        let mut a = c.sub(from, to);
        if a.peek_at(1).is_some_and(|t| t.is_punct(src, "=>")) {
            let key = a.ident()?;
            a.at += 1;
            let value = a.literal()?;
            a.end()?;
            if key.eq_ignore_ascii_case("format") {
                format = Some(value.to_ascii_lowercase());
            } else {
                options.push((key, value));
            }
        } else if cloud && i == 1 {
            format = Some(a.string()?.to_ascii_lowercase());
            a.end()?;
        } else if a.eat("map") {
            let pairs = a.paren_list()?;
            if pairs.len() % 2 != 0 {
                return Err("map(…) takes key, value pairs".into());
            }
            for kv in pairs.chunks(2) {
                let key = a.sub(kv[0].0, kv[0].1).literal()?;
                let value = a.sub(kv[1].0, kv[1].1).literal()?;
                let key = key.strip_prefix("cloudFiles.").unwrap_or(&key).to_string();
                if key.eq_ignore_ascii_case("format") {
                    format = Some(value.to_ascii_lowercase());
                } else {
                    options.push((key, value));
                }
            }
        } else {
            return Err(format!(
                "unexpected argument {} to read_files/cloud_files",
                c.text(from, to)
            ));
        }
    }
    Ok(ItemKind::Files {
        streaming: stream || cloud,
        path,
        format,
        options,
    })
}

//! The DLT statement parser: splits a SQL library into statements, parses each
//! statement's header (kind, name, columns, expectations, clauses, flow and CDC
//! clauses) by hand, and scans the query body for the references Kiln rewrites
//! (`LIVE.x`, `STREAM(x)`, `STREAM x`, relations after FROM/JOIN,
//! `read_files(…)`, `cloud_files(…)`). The body text otherwise stays as written.

use super::body::Scan;
use super::lexer::{tokenize, Kind, Token};
use super::model::*;

/// Parses every statement of a SQL library.
pub fn parse(source: &str) -> Result<Vec<Statement>, ParseError> {
    let tokens = tokenize(source).map_err(|e| ParseError {
        line: e.line,
        message: e.message,
        statement: String::new(),
    })?;
    let mut statements = Vec::new();
    for range in split(source, &tokens) {
        let toks = &tokens[range];
        if toks.is_empty() {
            continue;
        }
        let text = &source[toks[0].span.start..toks[toks.len() - 1].span.end];
        let mut p = Cursor {
            src: source,
            toks,
            at: 0,
            ignored: Vec::new(),
        };
        let kind = p.statement().map_err(|message| ParseError {
            line: toks[0].line,
            message,
            statement: text.to_string(),
        })?;
        statements.push(Statement {
            kind,
            line: toks[0].line,
            text: text.to_string(),
            ignored: p.ignored,
        });
    }
    Ok(statements)
}

/// Token ranges of the statements, split at top-level `;`.
fn split(source: &str, tokens: &[Token]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, t) in tokens.iter().enumerate() {
        if t.is_punct(source, "(") {
            depth += 1;
        } else if t.is_punct(source, ")") {
            depth -= 1;
        } else if t.is_punct(source, ";") && depth <= 0 {
            out.push(start..i);
            start = i + 1;
            depth = 0;
        }
    }
    out.push(start..tokens.len());
    out
}

pub(super) type PResult<T> = Result<T, String>;

pub(super) struct Cursor<'a> {
    pub(super) src: &'a str,
    pub(super) toks: &'a [Token],
    pub(super) at: usize,
    pub(super) ignored: Vec<String>,
}

impl<'a> Cursor<'a> {
    pub(super) fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.at)
    }
    pub(super) fn peek_at(&self, n: usize) -> Option<&'a Token> {
        self.toks.get(self.at + n)
    }
    pub(super) fn is(&self, word: &str) -> bool {
        self.peek().is_some_and(|t| t.is(self.src, word))
    }
    pub(super) fn is_punct(&self, p: &str) -> bool {
        self.peek().is_some_and(|t| t.is_punct(self.src, p))
    }
    pub(super) fn eat(&mut self, word: &str) -> bool {
        if self.is(word) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    pub(super) fn eat_punct(&mut self, p: &str) -> bool {
        if self.is_punct(p) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    pub(super) fn found(&self) -> String {
        match self.peek() {
            Some(t) => format!("'{}' (line {})", t.text(self.src), t.line),
            None => "the end of the statement".into(),
        }
    }
    pub(super) fn expect(&mut self, word: &str) -> PResult<()> {
        if self.eat(word) {
            Ok(())
        } else {
            Err(format!("expected {word}, found {}", self.found()))
        }
    }
    pub(super) fn done(&self) -> bool {
        self.at >= self.toks.len()
    }

    pub(super) fn ident(&mut self) -> PResult<String> {
        match self.peek() {
            Some(t) if matches!(t.kind, Kind::Word | Kind::Quoted) => {
                self.at += 1;
                Ok(t.ident(self.src))
            }
            _ => Err(format!("expected a name, found {}", self.found())),
        }
    }

    /// `a`, `a.b`, `a.b.c`.
    pub(super) fn object_name(&mut self) -> PResult<Vec<String>> {
        let mut parts = vec![self.ident()?];
        while self.is_punct(".") {
            self.at += 1;
            parts.push(self.ident()?);
        }
        Ok(parts)
    }

    pub(super) fn string(&mut self) -> PResult<String> {
        match self.peek() {
            Some(t) if t.kind == Kind::Str => {
                self.at += 1;
                Ok(t.string_value(self.src))
            }
            _ => Err(format!("expected a string literal, found {}", self.found())),
        }
    }

    /// A literal value in TBLPROPERTIES / options: string, number, word.
    pub(super) fn literal(&mut self) -> PResult<String> {
        match self.peek() {
            Some(t) if t.kind == Kind::Str => {
                self.at += 1;
                Ok(t.string_value(self.src))
            }
            Some(t) if matches!(t.kind, Kind::Number | Kind::Word | Kind::Quoted) => {
                self.at += 1;
                Ok(t.ident(self.src))
            }
            Some(t) if t.is_punct(self.src, "-") => {
                self.at += 1;
                Ok(format!("-{}", self.literal()?))
            }
            _ => Err(format!("expected a value, found {}", self.found())),
        }
    }

    /// The index of the token closing the parenthesis at `self.at` (which must be `(`).
    pub(super) fn matching_paren(&self) -> PResult<usize> {
        let mut depth = 0;
        for (i, t) in self.toks.iter().enumerate().skip(self.at) {
            if t.is_punct(self.src, "(") {
                depth += 1;
            } else if t.is_punct(self.src, ")") {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
        }
        Err(format!("unbalanced parenthesis at {}", self.found()))
    }

    /// Source text of tokens `[from, to)`.
    pub(super) fn text(&self, from: usize, to: usize) -> String {
        if from >= to {
            return String::new();
        }
        self.src[self.toks[from].span.start..self.toks[to - 1].span.end].to_string()
    }

    /// `( item, item … )`: the token ranges of the items at depth one.
    pub(super) fn paren_list(&mut self) -> PResult<Vec<(usize, usize)>> {
        if !self.is_punct("(") {
            return Err(format!("expected '(', found {}", self.found()));
        }
        let close = self.matching_paren()?;
        let mut items = Vec::new();
        let mut depth = 0;
        let mut start = self.at + 1;
        for i in self.at + 1..close {
            let t = &self.toks[i];
            if t.is_punct(self.src, "(") {
                depth += 1;
            } else if t.is_punct(self.src, ")") {
                depth -= 1;
            } else if t.is_punct(self.src, ",") && depth == 0 {
                items.push((start, i));
                start = i + 1;
            }
        }
        if start < close {
            items.push((start, close));
        }
        self.at = close + 1;
        Ok(items)
    }

    /// `(a, b, c)` as names.
    pub(super) fn name_list(&mut self) -> PResult<Vec<String>> {
        let items = self.paren_list()?;
        let mut names = Vec::new();
        for (from, to) in items {
            let mut sub = self.sub(from, to);
            names.push(sub.object_name()?.join("."));
            if !sub.done() {
                return Err(format!("expected ',' or ')', found {}", sub.found()));
            }
        }
        Ok(names)
    }

    pub(super) fn sub(&self, from: usize, to: usize) -> Cursor<'a> {
        Cursor {
            src: self.src,
            toks: &self.toks[from..to],
            at: 0,
            ignored: Vec::new(),
        }
    }

    // ---- statements ------------------------------------------------------

    pub(super) fn statement(&mut self) -> PResult<StatementKind> {
        if self.eat("CREATE") {
            return self.create();
        }
        if self.is("APPLY") {
            self.at += 1;
            self.expect("CHANGES")?;
            self.expect("INTO")?;
            let target = self.live_name()?;
            let cdc = self.cdc()?;
            return Ok(StatementKind::Flow(Box::new(FlowDef {
                name: None,
                target,
                comment: None,
                body: FlowBody::Cdc(Box::new(cdc)),
            })));
        }
        if self.eat("SET") {
            let rest = self.text(self.at, self.toks.len());
            let (key, value) = rest.split_once('=').unwrap_or((rest.as_str(), ""));
            self.at = self.toks.len();
            return Ok(StatementKind::Set {
                key: key.trim().to_string(),
                value: value.trim().trim_matches('\'').to_string(),
            });
        }
        if self.eat("USE") {
            let level = if self.eat("CATALOG") {
                "catalog"
            } else {
                let _ = self.eat("SCHEMA") || self.eat("DATABASE") || self.eat("NAMESPACE");
                "schema"
            };
            let name = self.object_name()?;
            self.end()?;
            return Ok(match (level, name.as_slice()) {
                ("catalog", [c]) => StatementKind::Use {
                    catalog: Some(c.clone()),
                    schema: None,
                },
                (_, [c, s]) => StatementKind::Use {
                    catalog: Some(c.clone()),
                    schema: Some(s.clone()),
                },
                (_, [s]) => StatementKind::Use {
                    catalog: None,
                    schema: Some(s.clone()),
                },
                _ => return Err("USE takes a catalog or schema name".into()),
            });
        }
        Err(format!(
            "unsupported statement starting with {}: a pipeline source declares datasets \
             (CREATE OR REFRESH MATERIALIZED VIEW / STREAMING TABLE, CREATE TEMPORARY VIEW), \
             flows (CREATE FLOW, APPLY CHANGES INTO), SET and USE",
            self.found()
        ))
    }

    pub(super) fn end(&self) -> PResult<()> {
        if self.done() {
            Ok(())
        } else {
            Err(format!("unexpected {}", self.found()))
        }
    }

    /// A target name, with an optional `LIVE.` prefix.
    pub(super) fn live_name(&mut self) -> PResult<Vec<String>> {
        let mut name = self.object_name()?;
        if name.len() > 1 && name[0].eq_ignore_ascii_case("live") {
            name.remove(0);
        }
        Ok(name)
    }

    pub(super) fn create(&mut self) -> PResult<StatementKind> {
        if self.eat("OR") && !(self.eat("REFRESH") || self.eat("REPLACE")) {
            return Err(format!("expected REFRESH after OR, found {}", self.found()));
        }
        if self.eat("FLOW") {
            return self.create_flow();
        }
        let temporary = self.eat("TEMPORARY") || self.eat("TEMP");
        let _private = self.eat("PRIVATE");
        let streaming = self.eat("STREAMING");
        let live = self.eat("LIVE");
        let kind = if self.eat("TABLE") {
            if streaming {
                DatasetKind::StreamingTable
            } else {
                DatasetKind::MaterializedView
            }
        } else if self.eat("MATERIALIZED") {
            self.expect("VIEW")?;
            DatasetKind::MaterializedView
        } else if self.eat("VIEW") {
            if streaming {
                return Err("STREAMING VIEW is not a dataset type".into());
            }
            DatasetKind::View
        } else {
            return Err(format!(
                "expected TABLE, STREAMING TABLE, MATERIALIZED VIEW or VIEW, found {}",
                self.found()
            ));
        };
        if self.eat("IF") {
            self.expect("NOT")?;
            self.expect("EXISTS")?;
        }
        let name = if live {
            self.object_name()?
        } else {
            self.live_name()?
        };
        let mut def = DatasetDef {
            kind,
            name,
            temporary: temporary && kind != DatasetKind::View,
            columns: Vec::new(),
            expectations: Vec::new(),
            comment: None,
            partition_cols: Vec::new(),
            table_properties: Vec::new(),
            query: None,
        };
        if self.is_punct("(") {
            self.table_elements(&mut def)?;
        }
        self.table_clauses(&mut def)?;
        if self.eat("AS") {
            def.query = Some(self.query(self.at, self.toks.len())?);
            self.at = self.toks.len();
        } else if !self.done() {
            return Err(format!(
                "expected AS or a table clause, found {}",
                self.found()
            ));
        } else if kind != DatasetKind::StreamingTable {
            return Err(format!(
                "{} needs a query (AS SELECT …); only a streaming table may be declared without one",
                def.name.join(".")
            ));
        }
        Ok(StatementKind::Dataset(Box::new(def)))
    }

    pub(super) fn table_elements(&mut self, def: &mut DatasetDef) -> PResult<()> {
        for (from, to) in self.paren_list()? {
            let mut e = self.sub(from, to);
            if e.is("CONSTRAINT") && e.peek_at(2).is_some_and(|t| t.is(self.src, "EXPECT")) {
                e.at += 1;
                let name = e.ident()?;
                e.expect("EXPECT")?;
                if !e.is_punct("(") {
                    return Err(format!("expected '(' after EXPECT, found {}", e.found()));
                }
                let close = e.matching_paren()?;
                let expr = e.text(e.at + 1, close);
                if expr.trim().is_empty() {
                    return Err(format!("expectation {name} has an empty condition"));
                }
                e.at = close + 1;
                let action = if e.eat("ON") {
                    e.expect("VIOLATION")?;
                    if e.eat("DROP") {
                        e.expect("ROW")?;
                        Action::Drop
                    } else if e.eat("FAIL") {
                        e.expect("UPDATE")?;
                        Action::Fail
                    } else {
                        return Err(format!(
                            "expected DROP ROW or FAIL UPDATE, found {}",
                            e.found()
                        ));
                    }
                } else {
                    Action::Warn
                };
                e.end()?;
                if def.expectations.iter().any(|x| x.name == name) {
                    return Err(format!("expectation {name} is declared twice"));
                }
                def.expectations.push(Expectation { name, expr, action });
            } else if e.is("CONSTRAINT") || e.is("PRIMARY") || e.is("FOREIGN") {
                self.ignored.push("table constraint".into());
            } else {
                let name = e.ident()?;
                if e.done() {
                    return Err(format!("column {name} has no type"));
                }
                def.columns.push(ColumnDef {
                    name,
                    definition: self.text(from, to),
                });
            }
        }
        Ok(())
    }

    pub(super) fn table_clauses(&mut self, def: &mut DatasetDef) -> PResult<()> {
        loop {
            if self.eat("COMMENT") {
                def.comment = Some(self.string()?);
            } else if self.eat("PARTITIONED") {
                self.expect("BY")?;
                def.partition_cols = self.name_list()?;
            } else if self.eat("TBLPROPERTIES") {
                for (from, to) in self.paren_list()? {
                    let mut p = self.sub(from, to);
                    let key = match p.peek() {
                        Some(t) if t.kind == Kind::Str => p.string()?,
                        _ => p.object_name()?.join("."),
                    };
                    let _ = p.eat_punct("=");
                    let value = p.literal()?;
                    p.end()?;
                    def.table_properties.push((key, value));
                }
            } else if self.eat("CLUSTER") {
                self.expect("BY")?;
                if !self.eat("AUTO") && !self.eat("NONE") {
                    self.name_list()?;
                }
                self.ignored.push("CLUSTER BY".into());
            } else if self.eat("USING") {
                let format = self.ident()?;
                if !format.eq_ignore_ascii_case("delta") {
                    return Err(format!("pipeline tables are Delta tables, not {format}"));
                }
            } else if self.eat("LOCATION") {
                self.string()?;
                self.ignored.push("LOCATION".into());
            } else if self.is("SCHEDULE") || self.is("TRIGGER") || self.is("REFRESH") {
                let what = self.found();
                self.skip_clause();
                self.ignored
                    .push(format!("SCHEDULE/TRIGGER clause at {what}"));
            } else if self.eat("WITH") {
                self.expect("ROW")?;
                self.expect("FILTER")?;
                self.skip_clause();
                self.ignored.push("ROW FILTER".into());
            } else if self.eat("DEFAULT") {
                self.expect("COLLATION")?;
                self.ident()?;
            } else {
                return Ok(());
            }
        }
    }

    /// Skips tokens up to the next table clause keyword or AS at depth 0.
    pub(super) fn skip_clause(&mut self) {
        self.at += 1;
        while let Some(t) = self.peek() {
            if t.is_punct(self.src, "(") {
                match self.matching_paren() {
                    Ok(close) => self.at = close + 1,
                    Err(_) => self.at = self.toks.len(),
                }
                continue;
            }
            let stop = [
                "AS",
                "COMMENT",
                "PARTITIONED",
                "TBLPROPERTIES",
                "CLUSTER",
                "WITH",
            ]
            .iter()
            .any(|k| t.is(self.src, k));
            if stop {
                return;
            }
            self.at += 1;
        }
    }

    // ---- query bodies ----------------------------------------------------

    pub(super) fn query(&self, from: usize, to: usize) -> PResult<Query> {
        if from >= to {
            return Err("expected a query after AS".into());
        }
        self.query_from(from, to, false)
    }

    /// Scans tokens `[from, to)` for the references Kiln rewrites. With
    /// `relation_first`, the range starts with a relation (CDC sources).
    pub(super) fn query_from(
        &self,
        from: usize,
        to: usize,
        relation_first: bool,
    ) -> PResult<Query> {
        if from >= to {
            return Err(format!("expected a source, found {}", self.found()));
        }
        let base = self.toks[from].span.start;
        let text = self.src[base..self.toks[to - 1].span.end].to_string();
        let mut scan = Scan {
            c: self.sub(from, to),
            base,
            items: Vec::new(),
            ctes: Vec::new(),
            from_depths: Vec::new(),
            selects: Vec::new(),
            depth: 0,
        };
        scan.run(relation_first)?;
        let ctes = scan.ctes;
        let items = scan
            .items
            .into_iter()
            .filter(|i| match &i.kind {
                ItemKind::Relation { parts, live, .. } => {
                    *live
                        || parts.len() > 1
                        || !ctes.iter().any(|c| c.eq_ignore_ascii_case(&parts[0]))
                }
                ItemKind::Files { .. } => true,
            })
            .collect();
        Ok(Query { text, items })
    }
}

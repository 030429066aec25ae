//! The DLT statement parser: splits a SQL library into statements, parses each
//! statement's header (kind, name, columns, expectations, clauses, flow and CDC
//! clauses) by hand, and scans the query body for the references Kiln rewrites
//! (`LIVE.x`, `STREAM(x)`, `STREAM x`, relations after FROM/JOIN,
//! `read_files(…)`, `cloud_files(…)`). The body text otherwise stays as written.

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

type PResult<T> = Result<T, String>;

struct Cursor<'a> {
    src: &'a str,
    toks: &'a [Token],
    at: usize,
    ignored: Vec<String>,
}

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
/// Clause keywords of APPLY CHANGES / AUTO CDC.
const CDC_CLAUSES: &[&str] = &[
    "KEYS", "IGNORE", "APPLY", "SEQUENCE", "COLUMNS", "STORED", "TRACK", "WHERE",
];

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.at)
    }
    fn peek_at(&self, n: usize) -> Option<&'a Token> {
        self.toks.get(self.at + n)
    }
    fn is(&self, word: &str) -> bool {
        self.peek().is_some_and(|t| t.is(self.src, word))
    }
    fn is_punct(&self, p: &str) -> bool {
        self.peek().is_some_and(|t| t.is_punct(self.src, p))
    }
    fn eat(&mut self, word: &str) -> bool {
        if self.is(word) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn eat_punct(&mut self, p: &str) -> bool {
        if self.is_punct(p) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn found(&self) -> String {
        match self.peek() {
            Some(t) => format!("'{}' (line {})", t.text(self.src), t.line),
            None => "the end of the statement".into(),
        }
    }
    fn expect(&mut self, word: &str) -> PResult<()> {
        if self.eat(word) {
            Ok(())
        } else {
            Err(format!("expected {word}, found {}", self.found()))
        }
    }
    fn done(&self) -> bool {
        self.at >= self.toks.len()
    }

    fn ident(&mut self) -> PResult<String> {
        match self.peek() {
            Some(t) if matches!(t.kind, Kind::Word | Kind::Quoted) => {
                self.at += 1;
                Ok(t.ident(self.src))
            }
            _ => Err(format!("expected a name, found {}", self.found())),
        }
    }

    /// `a`, `a.b`, `a.b.c`.
    fn object_name(&mut self) -> PResult<Vec<String>> {
        let mut parts = vec![self.ident()?];
        while self.is_punct(".") {
            self.at += 1;
            parts.push(self.ident()?);
        }
        Ok(parts)
    }

    fn string(&mut self) -> PResult<String> {
        match self.peek() {
            Some(t) if t.kind == Kind::Str => {
                self.at += 1;
                Ok(t.string_value(self.src))
            }
            _ => Err(format!("expected a string literal, found {}", self.found())),
        }
    }

    /// A literal value in TBLPROPERTIES / options: string, number, word.
    fn literal(&mut self) -> PResult<String> {
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
    fn matching_paren(&self) -> PResult<usize> {
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
    fn text(&self, from: usize, to: usize) -> String {
        if from >= to {
            return String::new();
        }
        self.src[self.toks[from].span.start..self.toks[to - 1].span.end].to_string()
    }

    /// `( item, item … )`: the token ranges of the items at depth one.
    fn paren_list(&mut self) -> PResult<Vec<(usize, usize)>> {
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
    fn name_list(&mut self) -> PResult<Vec<String>> {
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

    fn sub(&self, from: usize, to: usize) -> Cursor<'a> {
        Cursor {
            src: self.src,
            toks: &self.toks[from..to],
            at: 0,
            ignored: Vec::new(),
        }
    }

    // ---- statements ------------------------------------------------------

    fn statement(&mut self) -> PResult<StatementKind> {
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

    fn end(&self) -> PResult<()> {
        if self.done() {
            Ok(())
        } else {
            Err(format!("unexpected {}", self.found()))
        }
    }

    /// A target name, with an optional `LIVE.` prefix.
    fn live_name(&mut self) -> PResult<Vec<String>> {
        let mut name = self.object_name()?;
        if name.len() > 1 && name[0].eq_ignore_ascii_case("live") {
            name.remove(0);
        }
        Ok(name)
    }

    fn create(&mut self) -> PResult<StatementKind> {
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

    fn table_elements(&mut self, def: &mut DatasetDef) -> PResult<()> {
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

    fn table_clauses(&mut self, def: &mut DatasetDef) -> PResult<()> {
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
    fn skip_clause(&mut self) {
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

    fn create_flow(&mut self) -> PResult<StatementKind> {
        let name = self.ident()?;
        let comment = if self.eat("COMMENT") {
            Some(self.string()?)
        } else {
            None
        };
        self.expect("AS")?;
        if self.eat("INSERT") {
            let mut once = self.eat("ONCE");
            self.expect("INTO")?;
            once |= self.eat("ONCE");
            let target = self.live_name()?;
            if self.eat("BY") {
                self.expect("NAME")?;
            }
            let query = self.query(self.at, self.toks.len())?;
            self.at = self.toks.len();
            return Ok(StatementKind::Flow(Box::new(FlowDef {
                name: Some(name),
                target,
                comment,
                body: FlowBody::Append { query, once },
            })));
        }
        if self.eat("AUTO") || self.eat("APPLY") {
            let _ = self.eat("CDC") || self.eat("CHANGES");
            let _ = self.eat("ONCE");
            self.expect("INTO")?;
            let target = self.live_name()?;
            let cdc = self.cdc()?;
            return Ok(StatementKind::Flow(Box::new(FlowDef {
                name: Some(name),
                target,
                comment,
                body: FlowBody::Cdc(Box::new(cdc)),
            })));
        }
        Err(format!(
            "expected INSERT INTO or AUTO CDC INTO after AS, found {}",
            self.found()
        ))
    }

    /// Tokens from `self.at` up to the next CDC clause keyword at depth 0.
    fn cdc_expr(&mut self) -> PResult<String> {
        let start = self.at;
        let mut depth = 0;
        while let Some(t) = self.peek() {
            if t.is_punct(self.src, "(") {
                depth += 1;
            } else if t.is_punct(self.src, ")") {
                depth -= 1;
            } else if depth == 0 && CDC_CLAUSES.iter().any(|k| t.is(self.src, k)) {
                break;
            }
            self.at += 1;
        }
        if start == self.at {
            return Err(format!("expected an expression, found {}", self.found()));
        }
        Ok(self.text(start, self.at))
    }

    fn cdc(&mut self) -> PResult<CdcDef> {
        self.expect("FROM")?;
        let source_start = self.at;
        while !self.done() && !self.is("KEYS") {
            self.at += 1;
        }
        let source = self.query_from(source_start, self.at, true)?;
        if source.items.len() != 1 {
            return Err("APPLY CHANGES reads exactly one source (FROM STREAM(x))".into());
        }
        self.expect("KEYS")?;
        let keys = self.name_list()?;
        let mut cdc = CdcDef {
            source,
            keys,
            sequence_by: String::new(),
            delete_when: None,
            truncate_when: None,
            ignore_null_updates: false,
            columns: None,
            except_columns: Vec::new(),
            scd_type: 1,
            track_history: None,
            where_clause: None,
        };
        while !self.done() {
            if self.eat("IGNORE") {
                self.expect("NULL")?;
                self.expect("UPDATES")?;
                cdc.ignore_null_updates = true;
            } else if self.eat("APPLY") {
                self.expect("AS")?;
                if self.eat("DELETE") {
                    self.expect("WHEN")?;
                    cdc.delete_when = Some(self.cdc_expr()?);
                } else {
                    self.expect("TRUNCATE")?;
                    self.expect("WHEN")?;
                    cdc.truncate_when = Some(self.cdc_expr()?);
                }
            } else if self.eat("SEQUENCE") {
                self.expect("BY")?;
                cdc.sequence_by = self.cdc_expr()?;
            } else if self.eat("COLUMNS") {
                if self.eat_punct("*") {
                    self.expect("EXCEPT")?;
                    cdc.except_columns = self.name_list()?;
                } else if self.is_punct("(") {
                    cdc.columns = Some(self.name_list()?);
                } else {
                    let text = self.cdc_expr()?;
                    cdc.columns = Some(text.split(',').map(|c| c.trim().to_string()).collect());
                }
            } else if self.eat("STORED") {
                self.expect("AS")?;
                self.expect("SCD")?;
                self.expect("TYPE")?;
                cdc.scd_type = match self.literal()?.as_str() {
                    "1" => 1,
                    "2" => 2,
                    other => return Err(format!("SCD TYPE {other}: use 1 or 2")),
                };
            } else if self.eat("TRACK") {
                self.expect("HISTORY")?;
                self.expect("ON")?;
                cdc.track_history = Some(self.cdc_expr()?);
            } else if self.eat("WHERE") {
                cdc.where_clause = Some(self.cdc_expr()?);
            } else {
                return Err(format!("unexpected {} in APPLY CHANGES", self.found()));
            }
        }
        if cdc.sequence_by.is_empty() {
            return Err("APPLY CHANGES needs SEQUENCE BY".into());
        }
        Ok(cdc)
    }

    // ---- query bodies ----------------------------------------------------

    fn query(&self, from: usize, to: usize) -> PResult<Query> {
        if from >= to {
            return Err("expected a query after AS".into());
        }
        self.query_from(from, to, false)
    }

    /// Scans tokens `[from, to)` for the references Kiln rewrites. With
    /// `relation_first`, the range starts with a relation (CDC sources).
    fn query_from(&self, from: usize, to: usize, relation_first: bool) -> PResult<Query> {
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

/// Walks a query body's tokens.
struct Scan<'a> {
    c: Cursor<'a>,
    base: usize,
    items: Vec<Item>,
    ctes: Vec<String>,
    /// Paren depths at which a FROM clause is open.
    from_depths: Vec<i32>,
    /// Paren depths at which a SELECT was seen (a FROM elsewhere is a function's).
    selects: Vec<i32>,
    depth: i32,
}

impl Scan<'_> {
    fn span(&self, from: usize, to: usize) -> std::ops::Range<usize> {
        self.c.toks[from].span.start - self.base..self.c.toks[to - 1].span.end - self.base
    }

    fn in_from(&self) -> bool {
        self.from_depths.last() == Some(&self.depth)
    }

    fn run(&mut self, relation_first: bool) -> PResult<()> {
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

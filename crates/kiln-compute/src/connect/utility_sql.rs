//! The Delta table utility statements Kiln serves itself (the engine's parser
//! does not take them): `DESCRIBE HISTORY|DETAIL`, `SHOW TBLPROPERTIES`,
//! `SHOW CREATE TABLE`, `ALTER TABLE … SET|UNSET TBLPROPERTIES`,
//! `ALTER TABLE … ADD COLUMNS`, `COMMENT ON TABLE`, `OPTIMIZE`, `VACUUM`,
//! `RESTORE` and `CREATE TABLE … CLONE`. Anything else is `None`.

use super::ddl::{closing, is_word, name_at, tokenize, Token, Tokens};

#[derive(Debug, Clone, PartialEq)]
pub enum TimeTravel {
    Version(i64),
    /// The timestamp expression's text (a literal, usually).
    Timestamp(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    /// The type as written.
    pub type_sql: String,
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Utility {
    History {
        table: Vec<String>,
        limit: Option<usize>,
    },
    Detail {
        table: Vec<String>,
    },
    ShowProperties {
        table: Vec<String>,
        key: Option<String>,
    },
    ShowCreate {
        table: Vec<String>,
    },
    SetProperties {
        table: Vec<String>,
        properties: Vec<(String, String)>,
    },
    UnsetProperties {
        table: Vec<String>,
        keys: Vec<String>,
        if_exists: bool,
    },
    AddColumns {
        table: Vec<String>,
        columns: Vec<ColumnDef>,
    },
    Comment {
        table: Vec<String>,
        comment: Option<String>,
    },
    Optimize {
        table: Vec<String>,
        predicate: Option<String>,
        zorder: Vec<String>,
    },
    Vacuum {
        table: Vec<String>,
        retain_hours: Option<f64>,
        dry_run: bool,
    },
    Restore {
        table: Vec<String>,
        to: TimeTravel,
    },
    Clone {
        target: Vec<String>,
        source: Vec<String>,
        shallow: bool,
        replace: bool,
        if_not_exists: bool,
        at: Option<TimeTravel>,
        properties: Vec<(String, String)>,
    },
}

struct Reader<'a> {
    sql: &'a str,
    tokens: Tokens,
    i: usize,
}

impl<'a> Reader<'a> {
    fn word(&mut self, word: &str) -> bool {
        if is_word(self.tokens.get(self.i), word) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn words(&mut self, words: &[&str]) -> bool {
        let start = self.i;
        for w in words {
            if !self.word(w) {
                self.i = start;
                return false;
            }
        }
        true
    }

    fn punct(&mut self, c: char) -> bool {
        if matches!(self.tokens.get(self.i), Some((Token::Punct(p), _, _)) if *p == c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn name(&mut self) -> Option<Vec<String>> {
        let (parts, next) = name_at(&self.tokens, self.i)?;
        self.i = next;
        Some(parts)
    }

    fn literal(&mut self) -> Option<String> {
        match self.tokens.get(self.i) {
            Some((Token::Literal, s, e)) => {
                self.i += 1;
                Some(unquote(&self.sql[*s..*e]))
            }
            _ => None,
        }
    }

    /// A number, possibly with a fractional part.
    fn number(&mut self) -> Option<f64> {
        let Some((Token::Word(w), _, _)) = self.tokens.get(self.i) else {
            return None;
        };
        let mut text = w.clone();
        self.i += 1;
        if matches!(self.tokens.get(self.i), Some((Token::Punct('.'), _, _))) {
            if let Some((Token::Word(f), _, _)) = self.tokens.get(self.i + 1) {
                text = format!("{text}.{f}");
                self.i += 2;
            }
        }
        text.parse().ok()
    }

    fn done(&mut self) -> bool {
        self.punct(';');
        self.i >= self.tokens.len()
    }

    /// The source text from token `from` to the end (or to token `to`).
    fn text(&self, from: usize, to: Option<usize>) -> String {
        let start = self.tokens.get(from).map_or(self.sql.len(), |t| t.1);
        let end = to
            .and_then(|t| self.tokens.get(t))
            .map_or(self.sql.len(), |t| t.1);
        self.sql[start..end]
            .trim()
            .trim_end_matches(';')
            .trim()
            .to_string()
    }

    /// `( 'k' = 'v', … )` or `( k = v, … )`.
    fn properties(&mut self) -> Option<Vec<(String, String)>> {
        if !self.punct('(') {
            return None;
        }
        let mut out = Vec::new();
        loop {
            let key = self.property_key()?;
            self.punct('=');
            let value = match self.literal() {
                Some(v) => v,
                None => {
                    let Some((Token::Word(w), _, _)) = self.tokens.get(self.i) else {
                        return None;
                    };
                    self.i += 1;
                    w.clone()
                }
            };
            out.push((key, value));
            if self.punct(')') {
                return Some(out);
            }
            if !self.punct(',') {
                return None;
            }
        }
    }

    fn property_key(&mut self) -> Option<String> {
        if let Some(k) = self.literal() {
            return Some(k);
        }
        self.name().map(|parts| parts.join("."))
    }

    fn time_travel(&mut self) -> Option<Option<TimeTravel>> {
        if self.words(&["VERSION", "AS", "OF"]) {
            let v = self.number()?;
            return Some(Some(TimeTravel::Version(v as i64)));
        }
        if self.words(&["TIMESTAMP", "AS", "OF"]) {
            let from = self.i;
            let end = self.clause_end(&["TBLPROPERTIES", "LOCATION"]);
            self.i = end;
            return Some(Some(TimeTravel::Timestamp(self.text(from, Some(end)))));
        }
        Some(None)
    }

    /// The first token at or after `i` that is one of `words` (or the end).
    fn clause_end(&self, words: &[&str]) -> usize {
        (self.i..self.tokens.len())
            .find(|&j| {
                words.iter().any(|w| is_word(self.tokens.get(j), w))
                    || matches!(self.tokens.get(j), Some((Token::Punct(';'), _, _)))
            })
            .unwrap_or(self.tokens.len())
    }
}

pub fn unquote(literal: &str) -> String {
    let inner = literal
        .get(1..literal.len().saturating_sub(1))
        .unwrap_or_default();
    let mut out = String::new();
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

/// Reads one utility statement; `None` when it is none of them.
pub fn parse(sql: &str) -> Option<Utility> {
    let tokens = tokenize(sql)?;
    let mut r = Reader { sql, tokens, i: 0 };
    if r.word("DESCRIBE") || r.word("DESC") {
        return describe(&mut r);
    }
    if r.word("SHOW") {
        return show(&mut r);
    }
    if r.words(&["ALTER", "TABLE"]) {
        return alter(&mut r);
    }
    if r.words(&["COMMENT", "ON", "TABLE"]) {
        let table = r.name()?;
        r.word("IS").then_some(())?;
        let comment = if r.word("NULL") {
            None
        } else {
            Some(r.literal()?)
        };
        return r.done().then_some(Utility::Comment { table, comment });
    }
    if r.word("OPTIMIZE") {
        return optimize(&mut r);
    }
    if r.word("VACUUM") {
        let table = r.name()?;
        let mut retain_hours = None;
        let mut dry_run = false;
        loop {
            if r.word("RETAIN") {
                retain_hours = Some(r.number()?);
                r.word("HOURS").then_some(())?;
            } else if r.words(&["DRY", "RUN"]) {
                dry_run = true;
            } else {
                break;
            }
        }
        return r.done().then_some(Utility::Vacuum {
            table,
            retain_hours,
            dry_run,
        });
    }
    if r.word("RESTORE") {
        r.word("TABLE");
        let table = r.name()?;
        r.word("TO");
        let to = r.time_travel()??;
        return r.done().then_some(Utility::Restore { table, to });
    }
    if r.word("CREATE") || r.word("REPLACE") {
        return clone(&mut r);
    }
    None
}

fn describe(r: &mut Reader) -> Option<Utility> {
    if r.word("HISTORY") {
        let table = r.name()?;
        let limit = if r.word("LIMIT") {
            Some(r.number()? as usize)
        } else {
            None
        };
        return r.done().then_some(Utility::History { table, limit });
    }
    if r.word("DETAIL") {
        let table = r.name()?;
        return r.done().then_some(Utility::Detail { table });
    }
    None
}

fn show(r: &mut Reader) -> Option<Utility> {
    if r.word("TBLPROPERTIES") {
        let table = r.name()?;
        let key = if r.punct('(') {
            let k = r.property_key()?;
            r.punct(')').then_some(())?;
            Some(k)
        } else {
            None
        };
        return r.done().then_some(Utility::ShowProperties { table, key });
    }
    if r.words(&["CREATE", "TABLE"]) {
        let table = r.name()?;
        return r.done().then_some(Utility::ShowCreate { table });
    }
    None
}

fn alter(r: &mut Reader) -> Option<Utility> {
    let table = r.name()?;
    if r.words(&["SET", "TBLPROPERTIES"]) {
        let properties = r.properties()?;
        return r
            .done()
            .then_some(Utility::SetProperties { table, properties });
    }
    if r.words(&["UNSET", "TBLPROPERTIES"]) {
        let if_exists = r.words(&["IF", "EXISTS"]);
        r.punct('(').then_some(())?;
        let mut keys = Vec::new();
        loop {
            keys.push(r.property_key()?);
            if r.punct(')') {
                break;
            }
            r.punct(',').then_some(())?;
        }
        return r.done().then_some(Utility::UnsetProperties {
            table,
            keys,
            if_exists,
        });
    }
    if r.word("ADD") {
        if !(r.word("COLUMNS") || r.word("COLUMN")) {
            return None;
        }
        let parenthesized = matches!(r.tokens.get(r.i), Some((Token::Punct('('), _, _)));
        let (from, to) = if parenthesized {
            let close = closing(&r.tokens, r.i)?;
            (r.i + 1, close)
        } else {
            (r.i, r.clause_end(&[]))
        };
        let columns = column_defs(r, from, to)?;
        r.i = if parenthesized { to + 1 } else { to };
        return r.done().then_some(Utility::AddColumns { table, columns });
    }
    None
}

/// `name type [NOT NULL] [COMMENT '…'], …` between tokens `from` and `to`.
fn column_defs(r: &Reader, from: usize, to: usize) -> Option<Vec<ColumnDef>> {
    let mut out = Vec::new();
    let mut start = from;
    let mut depth = 0i32;
    for j in from..=to {
        let at_end = j == to;
        match r.tokens.get(j) {
            Some((Token::Punct('(' | '<'), _, _)) if !at_end => depth += 1,
            Some((Token::Punct(')' | '>'), _, _)) if !at_end => depth -= 1,
            _ => {}
        }
        let comma = matches!(r.tokens.get(j), Some((Token::Punct(','), _, _))) && depth == 0;
        if comma || at_end {
            out.push(column_def(r, start, j)?);
            start = j + 1;
        }
    }
    Some(out)
}

fn column_def(r: &Reader, from: usize, to: usize) -> Option<ColumnDef> {
    let name = match r.tokens.get(from) {
        Some((Token::Word(w), _, _)) | Some((Token::Quoted(w), _, _)) => w.clone(),
        _ => return None,
    };
    let comment_at = (from + 1..to).find(|&j| is_word(r.tokens.get(j), "COMMENT"));
    let type_end = comment_at.unwrap_or(to);
    let comment = match comment_at {
        Some(c) => match r.tokens.get(c + 1) {
            Some((Token::Literal, s, e)) => Some(unquote(&r.sql[*s..*e])),
            _ => return None,
        },
        None => None,
    };
    let type_sql = r.text(from + 1, Some(type_end));
    if type_sql.is_empty() || type_sql.to_uppercase().contains("NOT NULL") {
        return None;
    }
    Some(ColumnDef {
        name,
        type_sql,
        comment,
    })
}

fn optimize(r: &mut Reader) -> Option<Utility> {
    let table = r.name()?;
    let mut predicate = None;
    if r.word("WHERE") {
        let from = r.i;
        let end = (r.i..r.tokens.len())
            .find(|&j| {
                is_word(r.tokens.get(j), "ZORDER")
                    || matches!(r.tokens.get(j), Some((Token::Punct(';'), _, _)))
            })
            .unwrap_or(r.tokens.len());
        predicate = Some(r.text(from, Some(end)));
        r.i = end;
    }
    let mut zorder = Vec::new();
    if r.words(&["ZORDER", "BY"]) {
        let parenthesized = r.punct('(');
        loop {
            zorder.push(r.name()?.join("."));
            if !r.punct(',') {
                break;
            }
        }
        if parenthesized {
            r.punct(')').then_some(())?;
        }
    }
    r.done().then_some(Utility::Optimize {
        table,
        predicate,
        zorder,
    })
}

fn clone(r: &mut Reader) -> Option<Utility> {
    let replace = if is_word(r.tokens.first(), "REPLACE") {
        true
    } else {
        r.words(&["OR", "REPLACE"])
    };
    r.word("TABLE").then_some(())?;
    let if_not_exists = r.words(&["IF", "NOT", "EXISTS"]);
    let target = r.name()?;
    let shallow = if r.word("SHALLOW") {
        true
    } else {
        r.word("DEEP");
        false
    };
    r.word("CLONE").then_some(())?;
    let source = r.name()?;
    let at = r.time_travel()?;
    let mut properties = Vec::new();
    if r.word("TBLPROPERTIES") {
        properties = r.properties()?;
    }
    r.done().then_some(Utility::Clone {
        target,
        source,
        shallow,
        replace,
        if_not_exists,
        at,
        properties,
    })
}

#[cfg(test)]
#[path = "utility_sql_tests.rs"]
mod tests;

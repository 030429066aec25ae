//! `CREATE FLOW … AS INSERT INTO` and `APPLY CHANGES INTO` / `AUTO CDC INTO`.

use super::model::*;
use super::parser::{Cursor, PResult};

/// Clause keywords of APPLY CHANGES / AUTO CDC.
const CDC_CLAUSES: &[&str] = &[
    "KEYS", "IGNORE", "APPLY", "SEQUENCE", "COLUMNS", "STORED", "TRACK", "WHERE",
];

impl Cursor<'_> {
    pub(super) fn create_flow(&mut self) -> PResult<StatementKind> {
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
    pub(super) fn cdc_expr(&mut self) -> PResult<String> {
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

    pub(super) fn cdc(&mut self) -> PResult<CdcDef> {
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
}

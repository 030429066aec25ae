//! The event log: event records, the list-events filter language and paging.

use base64::Engine as _;
use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One event as stored (the wire shape is built by [`Event::to_json`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub id: String,
    /// Increasing per pipeline.
    pub seq: i64,
    pub timestamp_ms: i64,
    pub level: String,
    pub event_type: String,
    pub message: String,
    pub origin: Value,
    pub details: Value,
    #[serde(default)]
    pub error: Option<Value>,
}

impl Event {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "sequence": {
                "control_plane_seq_no": self.seq,
                "data_plane_id": {"instance": "kiln", "seq_no": self.seq},
            },
            "origin": self.origin,
            "timestamp": kiln_core::time::rfc3339(self.timestamp_ms),
            "message": self.message,
            "level": self.level,
            "maturity_level": "STABLE",
            "event_type": self.event_type,
            "details": {self.event_type.clone(): self.details},
        });
        if let Some(error) = &self.error {
            v["error"] = error.clone();
        }
        v
    }
}

/// A parsed `filter`: every term must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Filter {
    pub terms: Vec<Term>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Term {
    LevelIn(Vec<String>),
    Id(String),
    /// (operator, epoch ms)
    Timestamp(String, i64),
}

const LEVELS: &[&str] = &["INFO", "WARN", "ERROR", "METRICS"];

fn bad(message: impl Into<String>) -> Error {
    Error::invalid(format!("Invalid filter: {}", message.into()))
}

/// Parses `level='INFO'`, `level in ('INFO','WARN')`, `id='…'`,
/// `timestamp > '…'` (`>`, `>=`, `<`, `<=`, `=`), joined by `AND`.
pub fn parse_filter(text: &str) -> Result<Filter> {
    let tokens = crate::sql::lexer::tokenize(text).map_err(|e| bad(e.message))?;
    let mut terms = Vec::new();
    let mut i = 0;
    let word = |i: usize| tokens.get(i).map(|t| t.text(text)).unwrap_or("");
    let string = |i: usize| -> Result<String> {
        match tokens.get(i) {
            Some(t) if t.kind == crate::sql::lexer::Kind::Str => Ok(t.string_value(text)),
            _ => Err(bad(format!(
                "expected a quoted value after '{}'",
                word(i.saturating_sub(1))
            ))),
        }
    };
    while i < tokens.len() {
        while word(i) == "(" {
            i += 1;
        }
        let field = word(i).to_ascii_lowercase();
        let op = word(i + 1).to_ascii_lowercase();
        match (field.as_str(), op.as_str()) {
            ("level", "=") => {
                terms.push(Term::LevelIn(vec![level(&string(i + 2)?)?]));
                i += 3;
            }
            ("level", "in") => {
                if word(i + 2) != "(" {
                    return Err(bad("expected '(' after level in"));
                }
                let mut levels = Vec::new();
                i += 3;
                loop {
                    levels.push(level(&string(i)?)?);
                    i += 1;
                    match word(i) {
                        "," => i += 1,
                        ")" => {
                            i += 1;
                            break;
                        }
                        other => return Err(bad(format!("unexpected '{other}' in level list"))),
                    }
                }
                terms.push(Term::LevelIn(levels));
            }
            ("id", "=") => {
                terms.push(Term::Id(string(i + 2)?));
                i += 3;
            }
            ("timestamp", ">" | ">=" | "<" | "<=" | "=") => {
                let value = string(i + 2)?;
                let ms = kiln_core::time::parse_rfc3339(&value)
                    .ok_or_else(|| bad(format!("'{value}' is not a timestamp")))?;
                terms.push(Term::Timestamp(op, ms));
                i += 3;
            }
            ("", _) => return Err(bad("empty term")),
            _ => {
                return Err(bad(format!(
                    "unsupported term starting with '{field} {op}': use level, id or timestamp"
                )))
            }
        }
        while word(i) == ")" {
            i += 1;
        }
        if i < tokens.len() {
            if !word(i).eq_ignore_ascii_case("and") {
                return Err(bad(format!("expected AND, found '{}'", word(i))));
            }
            i += 1;
            if i >= tokens.len() {
                return Err(bad("nothing after AND"));
            }
        }
    }
    Ok(Filter { terms })
}

fn level(value: &str) -> Result<String> {
    let upper = value.to_ascii_uppercase();
    if LEVELS.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(bad(format!(
            "unknown level '{value}': use one of {}",
            LEVELS.join(", ")
        )))
    }
}

impl Filter {
    pub fn matches(&self, e: &Event) -> bool {
        self.terms.iter().all(|t| match t {
            Term::LevelIn(levels) => levels.contains(&e.level),
            Term::Id(id) => &e.id == id,
            Term::Timestamp(op, ms) => match op.as_str() {
                ">" => e.timestamp_ms > *ms,
                ">=" => e.timestamp_ms >= *ms,
                "<" => e.timestamp_ms < *ms,
                "<=" => e.timestamp_ms <= *ms,
                _ => e.timestamp_ms == *ms,
            },
        })
    }
}

/// What a page token carries: the query and where the next page starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cursor {
    pub filter: Filter,
    pub ascending: bool,
    /// Sequence number of the last event returned.
    pub after_seq: i64,
}

pub fn encode_token(cursor: &Cursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(cursor).unwrap_or_default())
}

pub fn decode_token(token: &str) -> Result<Cursor> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Error::invalid("Invalid page_token"))
}

/// One page of `events` (oldest first as stored) for a cursor.
pub fn page(events: &[Event], cursor: &Cursor, max: usize) -> (Vec<Event>, Option<Cursor>) {
    let matching = events.iter().filter(|e| cursor.filter.matches(e));
    let mut selected: Vec<&Event> = if cursor.ascending {
        matching.filter(|e| e.seq > cursor.after_seq).collect()
    } else {
        let mut v: Vec<&Event> = matching.filter(|e| e.seq < cursor.after_seq).collect();
        v.reverse();
        v
    };
    let more = selected.len() > max;
    selected.truncate(max);
    let next = match (more, selected.last()) {
        (true, Some(last)) => Some(Cursor {
            after_seq: last.seq,
            ..cursor.clone()
        }),
        _ => None,
    };
    (selected.into_iter().cloned().collect(), next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: i64, level: &str, ts: i64) -> Event {
        Event {
            id: format!("e{seq}"),
            seq,
            timestamp_ms: ts,
            level: level.into(),
            event_type: "update_progress".into(),
            message: String::new(),
            origin: json!({}),
            details: json!({}),
            error: None,
        }
    }

    #[test]
    fn filters_of_the_seed() {
        let f =
            parse_filter("level in ('ERROR', 'WARN') AND timestamp> '2021-07-22T06:37:33.083Z'")
                .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(f.terms.len(), 2);
        let t = kiln_core::time::parse_rfc3339("2021-07-22T06:37:33.083Z").unwrap_or(0);
        assert!(f.matches(&ev(1, "WARN", t + 1)));
        assert!(!f.matches(&ev(1, "WARN", t)));
        assert!(!f.matches(&ev(1, "INFO", t + 1)));
        let f = parse_filter("level='INFO'").unwrap_or_default();
        assert!(f.matches(&ev(1, "INFO", 0)) && !f.matches(&ev(1, "ERROR", 0)));
        let f = parse_filter("id = 'e7'").unwrap_or_default();
        assert!(f.matches(&ev(7, "INFO", 0)) && !f.matches(&ev(8, "INFO", 0)));
        assert!(parse_filter("(level = 'warn') and (timestamp <= '2021-07-22T06:37:33Z')").is_ok());
    }

    #[test]
    fn bad_filters_are_rejected() {
        for f in [
            "level = 'LOUD'",
            "name = 'x'",
            "level =",
            "level in ('INFO'",
            "level = 'INFO' OR id = 'x'",
            "timestamp > 'yesterday'",
            "level = 'INFO' AND",
            "'",
        ] {
            assert!(parse_filter(f).is_err(), "{f}");
        }
    }

    #[test]
    fn pages_in_both_orders() {
        let all: Vec<Event> = (1..=7).map(|i| ev(i, "INFO", i * 10)).collect();
        let desc = Cursor {
            filter: Filter::default(),
            ascending: false,
            after_seq: i64::MAX,
        };
        let (p1, next) = page(&all, &desc, 3);
        assert_eq!(p1.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![7, 6, 5]);
        let next = next.unwrap_or_else(|| panic!("more"));
        let token = decode_token(&encode_token(&next)).unwrap_or_else(|e| panic!("{e:?}"));
        let (p2, _) = page(&all, &token, 3);
        assert_eq!(p2.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 3, 2]);
        let asc = Cursor {
            filter: Filter::default(),
            ascending: true,
            after_seq: i64::MIN,
        };
        let (p, next) = page(&all, &asc, 10);
        assert_eq!(p.len(), 7);
        assert!(next.is_none());
        assert!(decode_token("garbage!").is_err());
    }

    #[test]
    fn fuzz_filters_never_panic() {
        const PIECES: &[&str] = &[
            "level",
            "id",
            "timestamp",
            "=",
            "in",
            "(",
            ")",
            ",",
            "'INFO'",
            "'WARN'",
            "AND",
            "and",
            "OR",
            ">",
            ">=",
            "<",
            "'2021-07-22T06:37:33.083Z'",
            "'",
            "é",
            "x",
            "''",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 12) as usize;
            let mut s = String::new();
            let mut k = state;
            for _ in 0..len {
                k = k.rotate_left(7).wrapping_mul(0x2545_F491_4F6C_DD1D);
                s.push_str(PIECES[(k % PIECES.len() as u64) as usize]);
                s.push(' ');
            }
            let _ = parse_filter(&s);
        }
    }
}

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

/// What a page token carries: the query and where the page starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Cursor {
    pub filter: Filter,
    pub ascending: bool,
    /// Sequence number of the event the page starts after (or, going
    /// `backward`, the first event of the page after the one wanted).
    pub after_seq: i64,
    /// A `prev_page_token`: the page that ends just before `after_seq`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backward: bool,
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

/// One page of events for a cursor.
pub struct Page {
    pub events: Vec<Event>,
    pub next: Option<Cursor>,
    pub prev: Option<Cursor>,
}

/// One page of `events` (oldest first as stored) for a cursor, with the
/// cursors of the pages after and before it.
pub fn page(events: &[Event], cursor: &Cursor, max: usize) -> Page {
    let max = max.max(1);
    let mut ordered: Vec<&Event> = events.iter().filter(|e| cursor.filter.matches(e)).collect();
    if !cursor.ascending {
        ordered.reverse();
    }
    // Where `seq` stands in page order.
    let before = |seq: i64, bound: i64| {
        if cursor.ascending {
            seq < bound
        } else {
            seq > bound
        }
    };
    let start = if cursor.backward {
        let end = ordered
            .iter()
            .position(|e| !before(e.seq, cursor.after_seq))
            .unwrap_or(ordered.len());
        end.saturating_sub(max)..end
    } else {
        let first = ordered
            .iter()
            .position(|e| e.seq != cursor.after_seq && !before(e.seq, cursor.after_seq))
            .unwrap_or(ordered.len());
        first..(first + max).min(ordered.len())
    };
    let selected: Vec<Event> = ordered[start.clone()]
        .iter()
        .map(|e| (*e).clone())
        .collect();
    let at = |seq: i64, backward: bool| Cursor {
        after_seq: seq,
        backward,
        ..cursor.clone()
    };
    let next = (start.end < ordered.len())
        .then(|| selected.last().map(|e| at(e.seq, false)))
        .flatten();
    let prev = (start.start > 0)
        .then(|| selected.first().map(|e| at(e.seq, true)))
        .flatten();
    Page {
        events: selected,
        next,
        prev,
    }
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
        let seqs = |p: &Page| p.events.iter().map(|e| e.seq).collect::<Vec<_>>();
        let desc = Cursor {
            filter: Filter::default(),
            ascending: false,
            after_seq: i64::MAX,
            backward: false,
        };
        let p1 = page(&all, &desc, 3);
        assert_eq!(seqs(&p1), vec![7, 6, 5]);
        assert!(p1.prev.is_none());
        let next = p1.next.unwrap_or_else(|| panic!("more"));
        let token = decode_token(&encode_token(&next)).unwrap_or_else(|e| panic!("{e:?}"));
        let p2 = page(&all, &token, 3);
        assert_eq!(seqs(&p2), vec![4, 3, 2]);
        let p3 = page(&all, &p2.next.clone().unwrap_or_else(|| panic!("more")), 3);
        assert_eq!(seqs(&p3), vec![1]);
        assert!(p3.next.is_none());
        let back = page(&all, &p3.prev.unwrap_or_else(|| panic!("prev")), 3);
        assert_eq!(seqs(&back), vec![4, 3, 2]);
        let token = decode_token(&encode_token(&back.prev.unwrap_or_else(|| panic!("prev"))))
            .unwrap_or_else(|e| panic!("{e:?}"));
        let first = page(&all, &token, 3);
        assert_eq!(seqs(&first), vec![7, 6, 5]);
        assert!(first.prev.is_none() && first.next.is_some());
        let asc = Cursor {
            filter: Filter::default(),
            ascending: true,
            after_seq: i64::MIN,
            backward: false,
        };
        let p = page(&all, &asc, 10);
        assert_eq!(p.events.len(), 7);
        assert!(p.next.is_none() && p.prev.is_none());
        let p = page(&all, &asc, 4);
        let p = page(&all, &p.next.unwrap_or_else(|| panic!("more")), 4);
        assert_eq!(seqs(&p), vec![5, 6, 7]);
        let back = page(&all, &p.prev.unwrap_or_else(|| panic!("prev")), 4);
        assert_eq!(seqs(&back), vec![1, 2, 3, 4]);
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

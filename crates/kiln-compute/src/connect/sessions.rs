//! Each Spark session's settings that the Delta utilities read, followed from
//! its `SET key = value` statements and its `Config` calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::rows::{query, Lit};

/// What a session has set that the utilities read.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConf {
    /// `spark.databricks.delta.retentionDurationCheck.enabled` (default true).
    pub retention_check: bool,
}

impl Default for SessionConf {
    fn default() -> Self {
        Self {
            retention_check: true,
        }
    }
}

pub const RETENTION_CHECK: &str = "spark.databricks.delta.retentionDurationCheck.enabled";

impl SessionConf {
    /// Follows one setting (`None`: unset).
    pub fn set(&mut self, key: &str, value: Option<&str>) {
        if key.trim().eq_ignore_ascii_case(RETENTION_CHECK) {
            self.retention_check = value.is_none_or(|v| !v.trim().eq_ignore_ascii_case("false"));
        }
    }
}

/// Settings of a `ConfigRequest`: key and value (`None`: unset).
pub type Settings = Vec<(String, Option<String>)>;

/// The session and the settings of a `ConfigRequest`.
pub fn config_settings(message: &[u8]) -> Option<(String, Settings)> {
    use super::walk::{bytes_field, fields};
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).ok();
    let top = fields(message)?;
    let session = text(bytes_field(message, &top, 1)?)?;
    let operation = bytes_field(message, &top, 3)?;
    let op_fields = fields(operation)?;
    let mut out = Vec::new();
    if let Some(set) = bytes_field(operation, &op_fields, 1) {
        for pair in fields(set)?.iter().filter(|f| f.number == 1) {
            let bytes = &set[pair.value.0..pair.value.1];
            let pf = fields(bytes)?;
            let key = text(bytes_field(bytes, &pf, 1)?)?;
            let value = bytes_field(bytes, &pf, 2).and_then(text);
            out.push((key, value));
        }
    }
    if let Some(unset) = bytes_field(operation, &op_fields, 6) {
        for key in fields(unset)?.iter().filter(|f| f.number == 1) {
            out.push((text(&unset[key.value.0..key.value.1])?, None));
        }
    }
    Some((session, out))
}

/// A setting Kiln itself follows (the engine does not know it).
pub fn kiln_setting(key: &str) -> bool {
    key.eq_ignore_ascii_case(RETENTION_CHECK)
}

/// What `SET key = value` answers, as Spark's `SET` does.
pub fn setting_answer(key: &str, value: &str) -> String {
    query(
        &[("key", "STRING"), ("value", "STRING")],
        &[vec![Lit::Str(key.into()), Lit::Str(value.into())]],
    )
}

/// `SET key = value` (`None` for other statements).
pub fn parse_set(sql: &str) -> Option<(String, String)> {
    let trimmed = sql.trim().trim_end_matches(';').trim();
    let head = trimmed.get(..4)?;
    if !head.eq_ignore_ascii_case("SET ") {
        return None;
    }
    let (key, value) = trimmed[4..].split_once('=')?;
    let unquote = |s: &str| {
        s.trim()
            .trim_matches('`')
            .trim_matches('\'')
            .trim_matches('"')
            .to_string()
    };
    Some((unquote(key), unquote(value)))
}

/// Sessions whose settings are remembered (all are forgotten beyond this).
const MAX_SESSIONS: usize = 10_000;

#[derive(Clone, Default)]
pub struct SessionConfs(Arc<Mutex<HashMap<String, SessionConf>>>);

impl SessionConfs {
    pub fn get(&self, session: &str) -> SessionConf {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.get(session).cloned())
            .unwrap_or_default()
    }

    pub fn note(&self, session: &str, key: &str, value: Option<&str>) {
        if let Ok(mut confs) = self.0.lock() {
            if confs.len() >= MAX_SESSIONS {
                confs.clear();
            }
            confs
                .entry(session.to_string())
                .or_default()
                .set(key, value);
        }
    }

    /// Follows a `ConfigRequest` (its encoded message).
    pub fn note_config(&self, message: &[u8]) {
        if let Some((session, settings)) = config_settings(message) {
            for (key, value) in settings {
                self.note(&session, &key, value.as_deref());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(out: &mut Vec<u8>, number: u8, payload: &[u8]) {
        super::super::walk::put_bytes(out, u32::from(number), payload);
    }

    #[test]
    fn settings_are_read_from_set_statements_and_config_requests() {
        assert_eq!(
            parse_set("SET spark.databricks.delta.retentionDurationCheck.enabled = false;"),
            Some((RETENTION_CHECK.into(), "false".into()))
        );
        assert_eq!(parse_set("SELECT 1"), None);
        let mut conf = SessionConf::default();
        assert!(conf.retention_check);
        conf.set(RETENTION_CHECK, Some("FALSE"));
        assert!(!conf.retention_check);
        conf.set(RETENTION_CHECK, None);
        assert!(conf.retention_check);
        // ConfigRequest { session_id: "s", operation: { set: { pairs: [{key, value}] } } }
        let mut pair = Vec::new();
        field(&mut pair, 1, RETENTION_CHECK.as_bytes());
        field(&mut pair, 2, b"false");
        let mut set = Vec::new();
        field(&mut set, 1, &pair);
        let mut operation = Vec::new();
        field(&mut operation, 1, &set);
        let mut request = Vec::new();
        field(&mut request, 1, b"s");
        field(&mut request, 3, &operation);
        assert_eq!(
            config_settings(&request),
            Some((
                "s".into(),
                vec![(RETENTION_CHECK.into(), Some("false".into()))]
            ))
        );
    }

    #[test]
    fn settings_are_per_session() {
        let confs = SessionConfs::default();
        confs.note("a", RETENTION_CHECK, Some("false"));
        assert!(!confs.get("a").retention_check);
        assert!(confs.get("b").retention_check);
    }
}

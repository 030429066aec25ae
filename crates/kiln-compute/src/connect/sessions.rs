//! Each Spark session's settings that the Delta utilities read, followed from
//! its `SET key = value` statements and its `Config` calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::utilities::{self, SessionConf};

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
        if let Some((session, settings)) = utilities::config_settings(message) {
            for (key, value) in settings {
                self.note(&session, &key, value.as_deref());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::utilities::RETENTION_CHECK;

    #[test]
    fn settings_are_per_session() {
        let confs = SessionConfs::default();
        confs.note("a", RETENTION_CHECK, Some("false"));
        assert!(!confs.get("a").retention_check);
        assert!(confs.get("b").retention_check);
    }
}

//! Notification destinations (`/api/2.0/notification-destinations`): where
//! job webhooks go. A destination wraps exactly one config (`generic_webhook`,
//! `slack`, `microsoft_teams`, `pagerduty`, `email`); its secret fields
//! (URLs, passwords, tokens, keys) are sealed at rest with the workspace key
//! and never shown again: a read answers `<field>_set: true` instead.
//!
//! Kiln delivers to the URL types (generic webhooks, Slack and Teams incoming
//! webhooks); email and PagerDuty destinations are kept but not delivered.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use kiln_core::seal::Cipher;
use kiln_core::{ids, time::now_ms, Error, ErrorCode, Result};
use kiln_store::{Store, Write};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

const KIND: &str = "notification_destination";

/// Each config type: its `destination_type`, and which of its fields are secret.
const TYPES: &[(&str, &str, &[&str])] = &[
    (
        "generic_webhook",
        "WEBHOOK",
        &["url", "username", "password"],
    ),
    ("slack", "SLACK", &["url", "oauth_token", "channel_id"]),
    (
        "microsoft_teams",
        "MICROSOFT_TEAMS",
        &["url", "app_id", "auth_secret", "channel_url", "tenant_id"],
    ),
    ("pagerduty", "PAGERDUTY", &["integration_key"]),
    ("email", "EMAIL", &[]),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DestinationRecord {
    pub id: String,
    pub display_name: String,
    /// The config's key (`generic_webhook`, `slack`, …).
    pub kind: String,
    /// The config's fields that are not secret.
    pub public: Map<String, Value>,
    /// The secret fields, sealed (AES-GCM, the id as associated data).
    pub sealed: String,
    pub created_by: String,
    pub created_at: i64,
}

impl DestinationRecord {
    pub fn destination_type(&self) -> &'static str {
        TYPES
            .iter()
            .find(|(k, _, _)| *k == self.kind)
            .map(|(_, t, _)| *t)
            .unwrap_or("WEBHOOK")
    }
}

/// Where a delivery goes (opened from the sealed fields).
pub(crate) struct Target {
    pub kind: String,
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

pub struct Destinations {
    store: Arc<dyn Store>,
    cipher: Arc<Cipher>,
    all: RwLock<BTreeMap<String, DestinationRecord>>,
}

fn poisoned<T>(_: T) -> Error {
    Error::internal("notification destinations", "lock poisoned")
}

fn not_found(id: &str) -> Error {
    Error::new(
        ErrorCode::ResourceDoesNotExist,
        format!("Notification destination {id} does not exist."),
    )
}

/// A config's fields, split.
type Fields = Map<String, Value>;

/// `config` → (its kind, public fields, secret fields), checked.
fn split_config(config: &Value) -> Result<(String, Fields, Fields)> {
    let Value::Object(config) = config else {
        return Err(Error::invalid("config must be an object"));
    };
    let given: Vec<(&String, &Value)> = config.iter().filter(|(_, v)| !v.is_null()).collect();
    let [(kind, body)] = given.as_slice() else {
        return Err(Error::invalid(
            "config must wrap exactly one of generic_webhook, slack, microsoft_teams, pagerduty or email",
        ));
    };
    let Some((_, _, secret)) = TYPES.iter().find(|(k, _, _)| k == kind) else {
        return Err(Error::invalid(format!(
            "config.{kind} is not a destination type Kiln knows"
        )));
    };
    let Value::Object(body) = body else {
        return Err(Error::invalid(format!("config.{kind} must be an object")));
    };
    let mut public = Map::new();
    let mut sealed = Map::new();
    for (field, value) in body {
        if field.ends_with("_set") || value.is_null() {
            continue;
        }
        if secret.contains(&field.as_str()) {
            if !value.is_string() {
                return Err(Error::invalid(format!(
                    "config.{kind}.{field} must be a string"
                )));
            }
            sealed.insert(field.clone(), value.clone());
        } else {
            public.insert(field.clone(), value.clone());
        }
    }
    if secret.contains(&"url") {
        let url = sealed
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::invalid(format!(
                "config.{kind}.url must be an http:// or https:// URL"
            )));
        }
    }
    if *kind == "email" {
        let ok = public
            .get("addresses")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string));
        if !ok {
            return Err(Error::invalid(
                "config.email.addresses must be a non-empty list",
            ));
        }
    }
    Ok(((*kind).clone(), public, sealed))
}

impl Destinations {
    pub fn open(store: Arc<dyn Store>, cipher: Arc<Cipher>) -> Result<Arc<Self>> {
        let mut all = BTreeMap::new();
        for v in store.objects(KIND)? {
            let d: DestinationRecord = serde_json::from_value(v)
                .map_err(|e| Error::internal("read a notification destination", e))?;
            all.insert(d.id.clone(), d);
        }
        Ok(Arc::new(Self {
            store,
            cipher,
            all: RwLock::new(all),
        }))
    }

    fn seal(&self, id: &str, secret: &Map<String, Value>) -> Result<String> {
        let text = serde_json::to_vec(secret).map_err(|e| Error::internal("seal", e))?;
        self.cipher.seal(&format!("{KIND}:{id}"), &text)
    }

    fn secrets(&self, d: &DestinationRecord) -> Result<Map<String, Value>> {
        let text = self.cipher.open(&format!("{KIND}:{}", d.id), &d.sealed)?;
        serde_json::from_slice(&text).map_err(|e| Error::internal("open a destination", e))
    }

    fn commit(&self, d: DestinationRecord) -> Result<DestinationRecord> {
        let record =
            serde_json::to_value(&d).map_err(|e| Error::internal("encode a destination", e))?;
        self.store.commit(vec![Write::PutObject {
            kind: KIND,
            key: d.id.clone(),
            record,
        }])?;
        self.all
            .write()
            .map_err(poisoned)?
            .insert(d.id.clone(), d.clone());
        Ok(d)
    }

    pub fn create(
        &self,
        actor: &str,
        display_name: Option<String>,
        config: Option<&Value>,
    ) -> Result<DestinationRecord> {
        let display_name = display_name
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| Error::invalid("display_name is required"))?;
        let config = config.ok_or_else(|| Error::invalid("config is required"))?;
        let (kind, public, secret) = split_config(config)?;
        let id = ids::uuid4();
        let sealed = self.seal(&id, &secret)?;
        self.commit(DestinationRecord {
            id,
            display_name,
            kind,
            public,
            sealed,
            created_by: actor.into(),
            created_at: now_ms(),
        })
    }

    /// PATCH: a new name, or a config of the same type whose given fields
    /// replace the kept ones (secret fields left out stay as they were).
    pub fn update(
        &self,
        id: &str,
        display_name: Option<String>,
        config: Option<&Value>,
    ) -> Result<DestinationRecord> {
        let mut d = self.get(id)?;
        if display_name.is_none() && config.is_none() {
            return Err(Error::invalid(
                "at least one of display_name or config is required",
            ));
        }
        if let Some(name) = display_name {
            if name.trim().is_empty() {
                return Err(Error::invalid("display_name must not be empty"));
            }
            d.display_name = name;
        }
        if let Some(config) = config {
            let mut merged = self.secrets(&d)?;
            let kept = merged.clone();
            let mut body = d.public.clone();
            body.extend(kept);
            let given = config
                .get(&d.kind)
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "config must be a {} config: the type of a destination does not change",
                        d.kind
                    ))
                })?;
            body.extend(given.clone());
            let (_, public, secret) = split_config(&json!({ d.kind.clone(): body }))?;
            merged = secret;
            d.public = public;
            d.sealed = self.seal(&d.id, &merged)?;
        }
        self.commit(d)
    }

    pub fn delete(&self, id: &str) -> Result<()> {
        self.get(id)?;
        self.store.commit(vec![Write::DeleteObject {
            kind: KIND,
            key: id.into(),
        }])?;
        self.all.write().map_err(poisoned)?.remove(id);
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<DestinationRecord> {
        self.all
            .read()
            .map_err(poisoned)?
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    pub fn exists(&self, id: &str) -> bool {
        self.get(id).is_ok()
    }

    pub fn list(&self) -> Vec<DestinationRecord> {
        let mut all: Vec<DestinationRecord> = self
            .all
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        all.sort_by_key(|d| (d.created_at, d.id.clone()));
        all
    }

    /// The config as a read shows it: public fields, and `<field>_set` for secrets.
    pub fn shown_config(&self, d: &DestinationRecord) -> Value {
        let mut body = d.public.clone();
        if let Ok(secret) = self.secrets(d) {
            for field in secret.keys() {
                body.insert(format!("{field}_set"), json!(true));
            }
        }
        json!({ d.kind.clone(): body })
    }

    /// Where to deliver (URL types only).
    pub(crate) fn target(&self, id: &str) -> Result<Option<Target>> {
        let d = self.get(id)?;
        if !matches!(
            d.kind.as_str(),
            "generic_webhook" | "slack" | "microsoft_teams"
        ) {
            return Ok(None);
        }
        let secret = self.secrets(&d)?;
        let field = |k: &str| secret.get(k).and_then(Value::as_str).map(String::from);
        Ok(field("url").map(|url| Target {
            kind: d.kind.clone(),
            url,
            username: field("username"),
            password: field("password"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_config_whose_secrets_are_split_out() -> Result<()> {
        let (kind, public, secret) = split_config(&json!({"generic_webhook": {
            "url": "https://hooks.example/x", "username": "u", "password": "p", "url_set": true}}))?;
        assert_eq!(kind, "generic_webhook");
        assert!(public.is_empty());
        assert_eq!(secret.len(), 3);
        assert!(split_config(&json!({})).is_err());
        assert!(split_config(&json!({"slack": {"url": "x"}, "email": {}})).is_err());
        assert!(split_config(&json!({"slack": {"url": "ftp://x"}})).is_err());
        assert!(split_config(&json!({"email": {"addresses": []}})).is_err());
        let (_, public, _) = split_config(&json!({"email": {"addresses": ["a@b.c"]}}))?;
        assert_eq!(public["addresses"], json!(["a@b.c"]));
        Ok(())
    }
}

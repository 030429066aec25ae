//! Lakebase resources as Kiln records them (never on the wire), resource-id
//! rules, durations and timestamps.

use std::collections::BTreeMap;

use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::lifecycle::{BranchState, EndpointState};

/// Resource ids: 1–63 characters of lowercase letters, digits and hyphens,
/// starting with a letter and not ending with a hyphen.
pub fn check_id(kind: &str, id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && id.as_bytes()[0].is_ascii_lowercase()
        && !id.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "Invalid {kind} id '{id}': use 1-63 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen"
        )))
    }
}

/// Parses a protobuf JSON duration (`"3600s"`, `"1.5s"`) into whole seconds.
pub fn parse_duration(field: &str, value: &str) -> Result<u64> {
    let bad = || {
        Error::invalid(format!(
            "Invalid duration for {field}: '{value}' (expected e.g. \"3600s\")"
        ))
    };
    let number = value.strip_suffix('s').ok_or_else(bad)?;
    let secs: f64 = number.parse().map_err(|_| bad())?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    Ok(secs.round() as u64)
}

pub fn duration(secs: u64) -> String {
    format!("{secs}s")
}

/// Parses an RFC 3339 timestamp (`2026-11-21T10:00:00Z`, fractional seconds
/// and `+hh:mm` offsets accepted) into epoch milliseconds.
pub fn parse_timestamp(field: &str, value: &str) -> Result<i64> {
    let bad = || {
        Error::invalid(format!(
            "Invalid timestamp for {field}: '{value}' (expected RFC 3339)"
        ))
    };
    let v = value.trim();
    if v.len() < 20 || !v.is_char_boundary(19) {
        return Err(bad());
    }
    let (date, rest) = v.split_at(10);
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let parts: Vec<&str> = date.split('-').collect();
    if parts.len() != 3 || !rest.starts_with(['T', 't', ' ']) {
        return Err(bad());
    }
    let (y, m, d) = (num(parts[0])?, num(parts[1])?, num(parts[2])?);
    let time = &rest[1..9];
    let hms: Vec<&str> = time.split(':').collect();
    if hms.len() != 3 {
        return Err(bad());
    }
    let (hh, mm, ss) = (num(hms[0])?, num(hms[1])?, num(hms[2])?);
    let mut tail = &rest[9..];
    let mut millis = 0i64;
    if let Some(frac) = tail.strip_prefix('.') {
        let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
        let padded = format!("{:0<3}", &digits[..digits.len().min(3)]);
        millis = num(&padded)?;
        tail = &frac[digits.len()..];
    }
    let offset_min = match tail {
        "Z" | "z" => 0,
        t if (t.starts_with('+') || t.starts_with('-')) && t.len() == 6 => {
            let sign = if t.starts_with('-') { -1 } else { 1 };
            sign * (num(&t[1..3])? * 60 + num(&t[4..6])?)
        }
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return Err(bad());
    }
    let days = days_from_civil(y, m as u32, d as u32);
    Ok(((days * 86_400 + hh * 3600 + mm * 60 + ss) - offset_min * 60) * 1000 + millis)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Compute settings shared by endpoints and project defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeSettings {
    pub min_cu: f64,
    pub max_cu: f64,
    /// `None`: no suspension.
    pub suspend_secs: Option<u64>,
    pub pg_settings: BTreeMap<String, String>,
}

impl Default for ComputeSettings {
    fn default() -> Self {
        Self {
            min_cu: 1.0,
            max_cu: 1.0,
            suspend_secs: Some(300),
            pg_settings: BTreeMap::new(),
        }
    }
}

impl ComputeSettings {
    /// Checks the limits the API documents; `min_suspend` is the shortest
    /// suspend timeout accepted (60 s unless configured lower for tests).
    pub fn validate(&self, min_suspend: u64) -> Result<()> {
        if !(0.5..=64.0).contains(&self.min_cu) || !(0.5..=64.0).contains(&self.max_cu) {
            return Err(Error::invalid(
                "autoscaling limits must be between 0.5 and 64 CU",
            ));
        }
        if self.min_cu > self.max_cu {
            return Err(Error::invalid(
                "autoscaling_limit_min_cu must not exceed autoscaling_limit_max_cu",
            ));
        }
        if self.max_cu - self.min_cu > 16.0 {
            return Err(Error::invalid(
                "autoscaling_limit_max_cu - autoscaling_limit_min_cu must not exceed 16",
            ));
        }
        if let Some(s) = self.suspend_secs {
            if s < min_suspend || s > 604_800 {
                return Err(Error::invalid(format!(
                    "suspend_timeout_duration must be between {min_suspend}s and 604800s"
                )));
            }
        }
        for key in self.pg_settings.keys() {
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            {
                return Err(Error::invalid(format!("Invalid pg_settings key '{key}'")));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectRecord {
    pub project_id: String,
    pub uid: String,
    pub display_name: String,
    pub pg_version: u32,
    pub history_retention_secs: u64,
    pub defaults: ComputeSettings,
    pub enable_pg_native_login: bool,
    pub custom_tags: Vec<(String, String)>,
    pub budget_policy_id: Option<String>,
    pub default_branch: String,
    /// The creating identity (its Postgres role).
    pub owner: String,
    pub create_ms: i64,
    pub update_ms: i64,
}

impl ProjectRecord {
    pub fn name(&self) -> String {
        format!("projects/{}", self.project_id)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BranchRecord {
    pub project_id: String,
    pub branch_id: String,
    pub uid: String,
    pub source_branch: Option<String>,
    pub source_lsn: Option<String>,
    pub source_time_ms: Option<i64>,
    pub is_protected: bool,
    pub expire_ms: Option<i64>,
    pub state: BranchState,
    pub default: bool,
    /// When the branch's base backup was taken (its PITR floor).
    pub base_ms: i64,
    pub create_ms: i64,
    pub update_ms: i64,
    pub state_change_ms: i64,
}

impl BranchRecord {
    pub fn name(&self) -> String {
        format!("projects/{}/branches/{}", self.project_id, self.branch_id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointType {
    ReadWrite,
    ReadOnly,
}

impl EndpointType {
    /// Accepts `ENDPOINT_TYPE_READ_WRITE` and the older `READ_WRITE` spellings.
    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "ENDPOINT_TYPE_READ_WRITE" | "READ_WRITE" => Ok(Self::ReadWrite),
            "ENDPOINT_TYPE_READ_ONLY" | "READ_ONLY" => Ok(Self::ReadOnly),
            other => Err(Error::invalid(format!(
                "Invalid endpoint_type '{other}': use ENDPOINT_TYPE_READ_WRITE or ENDPOINT_TYPE_READ_ONLY"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWrite => "ENDPOINT_TYPE_READ_WRITE",
            Self::ReadOnly => "ENDPOINT_TYPE_READ_ONLY",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub project_id: String,
    pub branch_id: String,
    pub endpoint_id: String,
    /// `ep-…`: the first label of the endpoint's host name.
    pub uid: String,
    pub endpoint_type: EndpointType,
    pub settings: ComputeSettings,
    pub disabled: bool,
    /// The recorded (observed) state; restored on restart.
    pub state: EndpointState,
    pub last_active_ms: i64,
    pub create_ms: i64,
    pub update_ms: i64,
}

impl EndpointRecord {
    pub fn name(&self) -> String {
        format!(
            "projects/{}/branches/{}/endpoints/{}",
            self.project_id, self.branch_id, self.endpoint_id
        )
    }

    pub fn branch_name(&self) -> String {
        format!("projects/{}/branches/{}", self.project_id, self.branch_id)
    }
}

/// A finished long-running operation (Kiln completes the work before it
/// answers, so every recorded operation is done).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperationRecord {
    pub name: String,
    pub metadata_type: String,
    pub response: Option<serde_json::Value>,
    pub error: Option<(String, String)>,
    pub create_ms: i64,
}

/// A random lowercase alphanumeric suffix.
pub fn random_suffix(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_durations_and_timestamps() {
        assert!(check_id("project", "my-app").is_ok());
        assert!(check_id("project", "a").is_ok());
        for bad in ["", "-a", "a-", "My-app", "a_b", "1abc", &"a".repeat(64)] {
            assert!(check_id("project", bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("ttl", "3600s").ok(), Some(3600));
        assert_eq!(parse_duration("ttl", "1.5s").ok(), Some(2));
        assert!(parse_duration("ttl", "3600").is_err());
        assert_eq!(
            parse_timestamp("t", "1970-01-01T00:00:01.5Z").ok(),
            Some(1500)
        );
        assert_eq!(
            parse_timestamp("t", "2026-11-21T13:28:14.123Z").ok(),
            Some(1_795_267_694_123)
        );
        assert_eq!(
            parse_timestamp("t", "2026-11-21T14:28:14.123+01:00").ok(),
            Some(1_795_267_694_123)
        );
        assert!(parse_timestamp("t", "yesterday").is_err());
        assert_eq!(
            kiln_core::time::rfc3339(1_795_267_694_123),
            "2026-11-21T13:28:14.123Z"
        );
    }

    #[test]
    fn compute_settings_limits() {
        let mut s = ComputeSettings::default();
        assert!(s.validate(60).is_ok());
        s.suspend_secs = Some(10);
        assert!(s.validate(60).is_err());
        assert!(s.validate(1).is_ok());
        s.min_cu = 4.0;
        assert!(s.validate(1).is_err());
    }
}

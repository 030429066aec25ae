//! The Delta log of Kiln's managed tables, read and written by Kiln itself for
//! the table utilities the engine's parser does not take (`DESCRIBE HISTORY`,
//! `OPTIMIZE`, `VACUUM`, `RESTORE`, …):
//!
//! - [`log`] reads a table's commits (the backfilled `_delta_log/*.json` and
//!   the catalog's unbackfilled ones) and replays them into a [`log::Snapshot`];
//! - [`commit`] writes a commit the way the engines do for a catalog-managed
//!   table: a staged file, the catalog ratifies the version (optimistic
//!   concurrency: a version already taken is a conflict), then the backfill.
//!
//! Errors carry Delta's error class so the connect layer can answer them as
//! the `AnalysisException` Databricks raises.

pub mod commit;
pub mod files;
pub mod log;
pub mod schema;

use std::fmt;
use std::path::PathBuf;

/// An error with Databricks' error class and SQLSTATE.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaError {
    pub class: &'static str,
    pub sql_state: &'static str,
    pub message: String,
}

impl DeltaError {
    pub fn new(class: &'static str, sql_state: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            class,
            sql_state,
            message: format!("[{class}] {message}"),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("INTERNAL_ERROR", "XX000", message)
    }
}

impl fmt::Display for DeltaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<kiln_core::Error> for DeltaError {
    fn from(e: kiln_core::Error) -> Self {
        match e.code {
            kiln_core::ErrorCode::TableDoesNotExist
            | kiln_core::ErrorCode::NotFound
            | kiln_core::ErrorCode::ResourceDoesNotExist => {
                Self::new("TABLE_OR_VIEW_NOT_FOUND", "42P01", e.message)
            }
            kiln_core::ErrorCode::ResourceConflict => {
                Self::new("DELTA_CONCURRENT_TRANSACTION", "2D521", e.message)
            }
            _ => Self::internal(e.message),
        }
    }
}

impl From<std::io::Error> for DeltaError {
    fn from(e: std::io::Error) -> Self {
        Self::internal(format!("table storage: {e}"))
    }
}

pub type DeltaResult<T> = Result<T, DeltaError>;

/// Where a table's files are, from its storage location: the local tree
/// (`file://`, an absolute path) or below the object-store root (`s3://`).
pub fn table_files(catalog: &crate::Catalog, location: &str) -> DeltaResult<files::TableFiles> {
    if location.contains("://") && !location.starts_with("file://") {
        if let Some(root) = catalog.object_root() {
            let base = root.url("");
            if let Some(rel) = location
                .strip_prefix(&base)
                .and_then(|r| r.strip_prefix('/'))
                .filter(|r| !r.is_empty())
            {
                return Ok(files::TableFiles::Object {
                    root: root.clone(),
                    rel: rel.trim_end_matches('/').to_string(),
                });
            }
        }
        return Err(DeltaError::new(
            "DELTA_UNSUPPORTED_STORAGE",
            "0A000",
            format!("Kiln reads the Delta log of tables on its own storage only, not {location}"),
        ));
    }
    let path = location.strip_prefix("file://").unwrap_or(location);
    if !path.starts_with('/') {
        return Err(DeltaError::new(
            "DELTA_UNSUPPORTED_STORAGE",
            "0A000",
            format!("Kiln reads the Delta log of tables on its own storage only, not {location}"),
        ));
    }
    Ok(files::TableFiles::Local(PathBuf::from(path)))
}

pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A Delta interval property (`interval 7 days`, `168 hours`) in milliseconds.
pub fn interval_ms(text: &str) -> Option<i64> {
    let lower = text.trim().to_ascii_lowercase();
    let rest = lower.strip_prefix("interval").unwrap_or(&lower).trim();
    let mut words = rest.split_whitespace();
    let mut total = 0f64;
    let mut any = false;
    while let Some(number) = words.next() {
        let n: f64 = number.parse().ok()?;
        let unit = words.next()?;
        let ms = match unit.trim_end_matches('s') {
            "week" => 604_800_000.0,
            "day" => 86_400_000.0,
            "hour" => 3_600_000.0,
            "minute" => 60_000.0,
            "second" => 1_000.0,
            "millisecond" => 1.0,
            _ => return None,
        };
        total += n * ms;
        any = true;
    }
    any.then_some(total as i64)
}

/// A timestamp literal (`'2026-01-02'`, `'2026-01-02 03:04:05[.678]'`,
/// an ISO `T` and a trailing `Z` allowed), read as UTC, in milliseconds.
pub fn timestamp_ms(text: &str) -> Option<i64> {
    let t = text.trim().trim_matches('\'').trim_matches('"').trim();
    let t = t.strip_suffix('Z').unwrap_or(t);
    let (date, time) = match t.split_once([' ', 'T']) {
        Some((d, tm)) => (d, tm),
        None => (t, "00:00:00"),
    };
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || d.next().is_some() {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut parts = hms.split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let mi: i64 = parts.next().unwrap_or("0").parse().ok()?;
    let s: i64 = parts.next().unwrap_or("0").parse().ok()?;
    let ms: i64 = format!("{:0<3}", frac).get(..3)?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_timestamps() {
        assert_eq!(interval_ms("interval 7 days"), Some(604_800_000));
        assert_eq!(interval_ms("168 hours"), Some(604_800_000));
        assert_eq!(interval_ms("interval 1 week 1 hour"), Some(608_400_000));
        assert_eq!(interval_ms("seven days"), None);
        assert_eq!(timestamp_ms("'1970-01-01'"), Some(0));
        assert_eq!(
            timestamp_ms("'2026-12-06 17:38:12.5'"),
            Some(1_796_578_692_500)
        );
        assert_eq!(
            timestamp_ms("2026-12-06T17:38:12Z"),
            Some(1_796_578_692_000)
        );
        assert_eq!(timestamp_ms("'yesterday'"), None);
    }
}

//! Quartz cron schedules (`schedule.quartz_cron_expression` with
//! `timezone_id`): six or seven fields (seconds first, an optional year),
//! `?` in day-of-month or day-of-week, weekdays 1–7 = SUN–SAT, `L`, `W`, `#`.
//! Evaluated by `croner` in its Quartz modes; its `?` means `*`, so the two
//! day fields are combined with AND (the `?` one then matches every day).

use chrono::TimeZone;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use kiln_core::{Error, Result};
use serde_json::Value;

pub struct Schedule {
    cron: Cron,
    tz: chrono_tz::Tz,
}

fn invalid(field: &str, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!("Invalid value for field schedule.{field}: {why}"))
}

impl Schedule {
    /// A `CronSchedule` object as the API takes it.
    pub fn parse(schedule: &Value) -> Result<Self> {
        let expression = schedule
            .get("quartz_cron_expression")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("quartz_cron_expression", "required"))?;
        let zone = schedule
            .get("timezone_id")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("timezone_id", "required"))?;
        let tz: chrono_tz::Tz = zone
            .parse()
            .map_err(|_| invalid("timezone_id", format!("unknown time zone {zone}")))?;
        Ok(Self {
            cron: quartz(expression)?,
            tz,
        })
    }

    /// The first instant after `after_ms` (epoch ms) the schedule fires at.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        // Quartz fires on whole seconds (the evaluator keeps a start's milliseconds)
        let after_ms = after_ms - after_ms.rem_euclid(1000);
        let start = self.tz.timestamp_millis_opt(after_ms).single()?;
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|t| t.timestamp_millis())
    }
}

fn quartz(expression: &str) -> Result<Cron> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if !(6..=7).contains(&fields.len()) {
        return Err(invalid(
            "quartz_cron_expression",
            format!("'{expression}': 6 or 7 fields (seconds minutes hours day-of-month month day-of-week [year])"),
        ));
    }
    match (fields[3] == "?", fields[5] == "?") {
        (true, true) => {
            return Err(invalid(
                "quartz_cron_expression",
                format!("'{expression}': only one of day-of-month and day-of-week may be '?'"),
            ))
        }
        (false, false) => {
            return Err(invalid(
                "quartz_cron_expression",
                format!("'{expression}': day-of-month or day-of-week must be '?'"),
            ))
        }
        _ => {}
    }
    CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .alternative_weekdays(true)
        .build()
        .parse(expression)
        .map_err(|e| invalid("quartz_cron_expression", format!("'{expression}': {e}")))
}

/// Checks a `schedule` object (expression, zone, `pause_status`).
pub fn check_schedule(schedule: &Value) -> Result<()> {
    Schedule::parse(schedule)?;
    match schedule.get("pause_status") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s == "PAUSED" || s == "UNPAUSED" => Ok(()),
        Some(other) => Err(invalid(
            "pause_status",
            format!("{other}: PAUSED or UNPAUSED"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn next(expr: &str, zone: &str, after: &str) -> Option<String> {
        let s =
            Schedule::parse(&json!({"quartz_cron_expression": expr, "timezone_id": zone})).ok()?;
        let after = kiln_core::time::parse_rfc3339(after)?;
        s.next_after(after).map(kiln_core::time::rfc3339)
    }

    #[test]
    fn quartz_expressions_in_their_zone() {
        // every 10 seconds
        assert_eq!(
            next("*/10 * * * * ?", "UTC", "2026-01-01T00:00:05Z").as_deref(),
            Some("2026-01-01T00:00:10.000Z")
        );
        // 09:30 on Mondays (Quartz: 2 = MON), New York time
        assert_eq!(
            next("0 30 9 ? * 2", "America/New_York", "2026-01-01T00:00:00Z").as_deref(),
            Some("2026-01-05T14:30:00.000Z")
        );
        // the last day of the month at noon
        assert_eq!(
            next("0 0 12 L * ?", "UTC", "2026-02-01T00:00:00Z").as_deref(),
            Some("2026-02-28T12:00:00.000Z")
        );
        // the third Friday (6#3)
        assert_eq!(
            next("0 0 8 ? * 6#3", "UTC", "2026-03-01T00:00:00Z").as_deref(),
            Some("2026-03-20T08:00:00.000Z")
        );
        // DST: 02:30 local does not exist on 2026-03-08 in New York
        assert!(next("0 30 2 * * ?", "America/New_York", "2026-03-08T00:00:00Z").is_some());
    }

    #[test]
    fn bad_schedules_name_their_field() {
        for (schedule, field) in [
            (
                json!({"quartz_cron_expression": "0 0 * * *", "timezone_id": "UTC"}),
                "quartz_cron_expression",
            ),
            (
                json!({"quartz_cron_expression": "0 0 0 * * 1", "timezone_id": "UTC"}),
                "quartz_cron_expression",
            ),
            (
                json!({"quartz_cron_expression": "0 0 0 * * ?", "timezone_id": "Mars/Olympus"}),
                "timezone_id",
            ),
            (
                json!({"quartz_cron_expression": "0 0 0 * * ?", "timezone_id": "UTC", "pause_status": "x"}),
                "pause_status",
            ),
            (
                json!({"quartz_cron_expression": "0 99 0 * * ?", "timezone_id": "UTC"}),
                "quartz_cron_expression",
            ),
        ] {
            let err = check_schedule(&schedule).err();
            assert!(
                err.as_ref().is_some_and(|e| e.message.contains(field)),
                "{schedule}: {err:?}"
            );
        }
    }
}

//! Snapshot schedules of a branch (`get_snapshot_schedule`,
//! `update_snapshot_schedule`): daily, weekly or monthly cadences (UTC hours)
//! with a retention. The reconciler takes one snapshot per cadence and period
//! — at once for a period already due when the schedule is set — and the
//! snapshot expires after the cadence's retention.

use std::sync::Arc;

use kiln_core::time::{civil_from_days, days_from_civil, now_ms};
use kiln_core::{Error, Result};

pub(crate) use crate::records::SCHEDULE;
use crate::records::{read, write};
pub use crate::records::{Cadence, ScheduleEntry, ScheduleRecord};
use crate::service::Lakebase;
use crate::snapshots::NewSnapshot;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

impl Cadence {
    pub fn check(&self) -> Result<()> {
        let (hour, ok) = match *self {
            Cadence::Daily { hour } => (hour, true),
            Cadence::Weekly { day_of_week, hour } => (hour, day_of_week < 7),
            Cadence::Monthly { day, hour } => (hour, (1..=31).contains(&day)),
        };
        if hour > 23 || !ok {
            return Err(Error::invalid(format!(
                "Invalid schedule cadence {self:?}: hours 0-23, days of the month 1-31"
            )));
        }
        Ok(())
    }

    /// The latest instant at or before `now` when this cadence is due.
    pub fn last_due(&self, now: i64) -> i64 {
        let day = now.div_euclid(DAY_MS);
        match *self {
            Cadence::Daily { hour } => {
                let due = day * DAY_MS + hour as i64 * HOUR_MS;
                if due > now {
                    due - DAY_MS
                } else {
                    due
                }
            }
            Cadence::Weekly { day_of_week, hour } => {
                let weekday = (day + 3).rem_euclid(7); // 1970-01-01 was a Thursday
                let back = (weekday - day_of_week as i64).rem_euclid(7);
                let due = (day - back) * DAY_MS + hour as i64 * HOUR_MS;
                if due > now {
                    due - 7 * DAY_MS
                } else {
                    due
                }
            }
            Cadence::Monthly { day: dom, hour } => {
                let (y, m, _) = civil_from_days(day);
                let at = |y: i64, m: u32| {
                    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                    let last = (days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)) as u32;
                    days_from_civil(y, m, dom.min(last)) * DAY_MS + hour as i64 * HOUR_MS
                };
                let due = at(y, m);
                if due <= now {
                    due
                } else if m == 1 {
                    at(y - 1, 12)
                } else {
                    at(y, m - 1)
                }
            }
        }
    }
}

impl Lakebase {
    /// A branch's schedule (empty when none was set).
    pub fn snapshot_schedule(&self, project_id: &str, branch_id: &str) -> Result<ScheduleRecord> {
        let branch = self.branch(project_id, branch_id)?;
        Ok(read(&self.objects.schedules)?
            .get(&format!("{}/snapshot-schedule", branch.name()))
            .cloned()
            .unwrap_or(ScheduleRecord {
                project_id: project_id.into(),
                branch_id: branch_id.into(),
                entries: Vec::new(),
            }))
    }

    /// Replaces a branch's schedule (an empty list disables it).
    pub async fn set_snapshot_schedule(
        &self,
        project_id: &str,
        branch_id: &str,
        entries: Vec<ScheduleEntry>,
    ) -> Result<ScheduleRecord> {
        for e in &entries {
            e.cadence.check()?;
            if e.retention_secs < 3600 {
                return Err(Error::invalid(
                    "A schedule's retention must be at least 1 hour",
                ));
            }
        }
        let _lock = self.lock_project(project_id).await;
        self.branch(project_id, branch_id)?;
        crate::operations::accepted();
        let record = ScheduleRecord {
            project_id: project_id.into(),
            branch_id: branch_id.into(),
            entries,
        };
        self.save_schedule(&record)?;
        Ok(record)
    }

    fn save_schedule(&self, record: &ScheduleRecord) -> Result<()> {
        self.store
            .commit(vec![Lakebase::put(SCHEDULE, record.name(), record)?])?;
        write(&self.objects.schedules)?.insert(record.name(), record.clone());
        Ok(())
    }

    /// Takes the snapshots schedules owe (the reconciler; each in an operation task).
    pub(crate) async fn run_schedules(self: &Arc<Self>) {
        let now = now_ms();
        let schedules: Vec<ScheduleRecord> = match read(&self.objects.schedules) {
            Ok(s) => s.values().cloned().collect(),
            Err(_) => return,
        };
        for mut schedule in schedules {
            let mut owed = Vec::new();
            for (i, entry) in schedule.entries.iter_mut().enumerate() {
                let due = entry.cadence.last_due(now);
                if due > entry.last_due_ms {
                    entry.last_due_ms = due;
                    owed.push((i, due, entry.retention_secs));
                }
            }
            if owed.is_empty()
                || self
                    .branch(&schedule.project_id, &schedule.branch_id)
                    .is_err()
            {
                continue;
            }
            // Recorded first: a period is attempted once, even if Kiln stops meanwhile.
            if let Err(e) = self.save_schedule(&schedule) {
                tracing::warn!(schedule = %schedule.name(), error = %e.message, "record a scheduled snapshot");
                continue;
            }
            for (i, due, retention) in owed {
                self.take_scheduled(&schedule, i, due, retention).await;
            }
        }
    }

    async fn take_scheduled(
        self: &Arc<Self>,
        schedule: &ScheduleRecord,
        index: usize,
        due: i64,
        retention: u64,
    ) {
        let stamp = kiln_core::time::rfc3339(due)
            .replace([':', '.'], "-")
            .to_ascii_lowercase();
        let id: String = format!("auto-{}-{index}-{}", schedule.branch_id, &stamp[..13])
            .chars()
            .take(63)
            .collect();
        let id = id.trim_end_matches('-').to_string();
        let new = NewSnapshot {
            source_branch: format!(
                "projects/{}/branches/{}",
                schedule.project_id, schedule.branch_id
            ),
            expire_ms: Some(now_ms() + retention as i64 * 1000),
            ..Default::default()
        };
        let (lakebase, project) = (self.clone(), schedule.project_id.clone());
        let snapshot_id = id.clone();
        let work = async move {
            let record = lakebase
                .create_snapshot(&project, &snapshot_id, new)
                .await?;
            Ok(serde_json::json!({ "name": record.name() }))
        };
        let name = format!("projects/{}/snapshots/{id}", schedule.project_id);
        tracing::info!(snapshot = %name, "taking a scheduled snapshot");
        if let Err(e) = self.run_operation(&name, "Snapshot", "system", work).await {
            tracing::warn!(snapshot = %name, error = %e.message, "take a scheduled snapshot");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, m: u32, d: u32, h: i64) -> i64 {
        days_from_civil(y, m, d) * DAY_MS + h * HOUR_MS
    }

    #[test]
    fn due_instants_of_each_cadence() {
        let now = at(2026, 11, 26, 4) + 30 * 60_000; // Thursday 04:30 UTC
        assert_eq!(
            Cadence::Daily { hour: 3 }.last_due(now),
            at(2026, 11, 26, 3)
        );
        assert_eq!(
            Cadence::Daily { hour: 5 }.last_due(now),
            at(2026, 11, 25, 5)
        );
        assert_eq!(
            Cadence::Weekly {
                day_of_week: 3,
                hour: 4
            }
            .last_due(now),
            at(2026, 11, 26, 4)
        ); // Thursday
        assert_eq!(
            Cadence::Weekly {
                day_of_week: 0,
                hour: 0
            }
            .last_due(now),
            at(2026, 11, 23, 0)
        ); // Monday
        assert_eq!(
            Cadence::Weekly {
                day_of_week: 3,
                hour: 5
            }
            .last_due(now),
            at(2026, 11, 19, 5)
        );
        assert_eq!(
            Cadence::Monthly { day: 1, hour: 0 }.last_due(now),
            at(2026, 11, 1, 0)
        );
        assert_eq!(
            Cadence::Monthly { day: 31, hour: 0 }.last_due(now),
            at(2026, 10, 31, 0)
        );
        let march = at(2027, 3, 2, 0);
        assert_eq!(
            Cadence::Monthly { day: 31, hour: 0 }.last_due(march),
            at(2027, 2, 28, 0)
        ); // clamped
        let january = at(2027, 1, 5, 0);
        assert_eq!(
            Cadence::Monthly { day: 10, hour: 0 }.last_due(january),
            at(2026, 12, 10, 0)
        );
        assert!(Cadence::Daily { hour: 24 }.check().is_err());
        assert!(Cadence::Monthly { day: 0, hour: 1 }.check().is_err());
        assert!(Cadence::Weekly {
            day_of_week: 7,
            hour: 1
        }
        .check()
        .is_err());
    }
}

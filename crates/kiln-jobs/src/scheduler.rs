//! The jobs' background work: job clusters of runs that ended with an
//! earlier Kiln are terminated, and the scheduler starts runs of jobs with an
//! unpaused `schedule` (Quartz cron in its time zone) or `trigger.periodic`.
//!
//! Exactly once: a scheduled instant is recorded on the job (durably) before
//! its run starts, so it fires at most once, across restarts too. Instants
//! missed while Kiln was down are not replayed one by one: at most one
//! catch-up run, as Databricks does.

use std::sync::Arc;
use std::time::Duration;

use kiln_core::time::now_ms;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::cron::Schedule;
use crate::lifecycle::RunLifeCycleState;
use crate::model::JobRecord;
use crate::model::RunNow;
use crate::service::Jobs;

/// The longest the scheduler sleeps between looks (job changes wake it too).
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// How long a continuous job waits after a run that did not succeed.
const CONTINUOUS_BACKOFF_MS: i64 = 10_000;
/// The least time between the starts of two runs of a continuous job.
const CONTINUOUS_MIN_MS: i64 = 1_000;

/// Starts the background work (owned by the service, cancelled at shutdown).
pub fn start(jobs: &Arc<Jobs>) {
    let me = jobs.clone();
    jobs.tasks
        .spawn(async move { terminate_orphans(&me).await });
    let me = jobs.clone();
    let cancel = jobs.shutdown.clone();
    jobs.tasks.spawn(async move { run(me, cancel).await });
    let me = jobs.clone();
    let cancel = jobs.shutdown.clone();
    jobs.tasks
        .spawn(async move { crate::triggers::run(me, cancel).await });
}

async fn terminate_orphans(jobs: &Jobs) {
    let orphans: Vec<(String, String)> = jobs
        .runs()
        .into_iter()
        .filter(|r| r.state.life_cycle_state == RunLifeCycleState::InternalError)
        .flat_map(|r| {
            let run_as = r.run_as.clone();
            r.job_clusters
                .into_values()
                .map(move |c| (run_as.clone(), c))
        })
        .collect();
    for (run_as, cluster_id) in orphans {
        if let Ok(c) = jobs.clusters.get(&cluster_id) {
            if c.state.as_str() != "TERMINATED" {
                let _ = jobs.clusters.terminate(&run_as, &cluster_id).await;
            }
        }
    }
}

/// When a job is owed a run next (`None`: never), and its trigger's name.
fn next_due(job: &JobRecord) -> Option<(i64, &'static str)> {
    let since = job.schedule_since_ms.max(job.schedule_fired_ms);
    if let Some(schedule) = job.settings.get("schedule").filter(|s| !s.is_null()) {
        if paused(schedule) {
            return None;
        }
        let parsed = Schedule::parse(schedule).ok()?;
        return parsed.next_after(since).map(|t| (t, "PERIODIC"));
    }
    let trigger = job.settings.get("trigger").filter(|t| !t.is_null())?;
    if paused(trigger) {
        return None;
    }
    let periodic = trigger.get("periodic")?;
    let interval = periodic
        .get("interval")
        .and_then(Value::as_i64)
        .filter(|i| *i > 0)?;
    let unit = match periodic.get("unit").and_then(Value::as_str)? {
        "HOURS" => 3_600_000,
        "DAYS" => 86_400_000,
        "WEEKS" => 7 * 86_400_000,
        _ => return None,
    };
    Some((since + interval * unit, "PERIODIC"))
}

/// A continuous job that is owed a new run now: unpaused, no live run, and
/// (after a run that did not succeed) past its back-off. `Err` is how long
/// to wait for the back-off.
fn continuous_due(jobs: &Jobs, job: &JobRecord, now: i64) -> Option<std::result::Result<(), i64>> {
    let continuous = job.settings.get("continuous").filter(|c| !c.is_null())?;
    if paused(continuous) {
        return None;
    }
    if jobs.count_runs(|r| r.job_id == Some(job.job_id) && !r.is_done()) > 0 {
        return None;
    }
    let Some(last) = jobs.find_run(false, |r| r.job_id == Some(job.job_id)) else {
        return Some(Ok(()));
    };
    let failed = !last.state.result_state.is_some_and(|s| s.succeeded());
    let not_before = if failed {
        last.end_time + CONTINUOUS_BACKOFF_MS
    } else {
        last.start_time + CONTINUOUS_MIN_MS
    };
    Some(if now < not_before {
        Err(not_before - now)
    } else {
        Ok(())
    })
}

fn paused(v: &Value) -> bool {
    v.get("pause_status").and_then(Value::as_str) == Some("PAUSED")
}

/// The last instant due at or before `now` (missed ones collapse into it).
fn latest_due(job: &JobRecord, first: i64, now: i64) -> i64 {
    let Some(schedule) = job
        .settings
        .get("schedule")
        .filter(|s| !s.is_null())
        .and_then(|s| Schedule::parse(s).ok())
    else {
        return first;
    };
    let mut at = first;
    for _ in 0..100_000 {
        match schedule.next_after(at) {
            Some(next) if next <= now => at = next,
            _ => break,
        }
    }
    at
}

pub(crate) async fn run(jobs: Arc<Jobs>, cancel: CancellationToken) {
    let mut changes = jobs.subscribe_jobs();
    let mut run_changes = jobs.subscribe();
    loop {
        let now = now_ms();
        let mut sleep = MAX_SLEEP;
        let mut due_now = Vec::new();
        // continuous jobs restart when their run ends (runs' changes wake us)
        let mut any_continuous = false;
        for job in jobs.list() {
            match continuous_due(&jobs, &job, now) {
                None => {}
                Some(Ok(())) => {
                    any_continuous = true;
                    due_now.push((job.job_id, job.run_as.clone(), now, "CONTINUOUS"));
                }
                Some(Err(wait)) => {
                    any_continuous = true;
                    sleep = sleep.min(Duration::from_millis(wait.max(1) as u64));
                }
            }
            any_continuous |= job
                .settings
                .get("continuous")
                .is_some_and(|c| !c.is_null() && !paused(c));
        }
        for job in jobs.list() {
            let Some((due, trigger)) = next_due(&job) else {
                continue;
            };
            if due > now {
                let wait = Duration::from_millis((due - now) as u64);
                sleep = sleep.min(wait);
                continue;
            }
            due_now.push((
                job.job_id,
                job.run_as.clone(),
                latest_due(&job, due, now),
                trigger,
            ));
        }
        let scheduled: Vec<(i64, i64)> = due_now
            .iter()
            .filter(|(_, _, _, trigger)| *trigger != "CONTINUOUS")
            .map(|(id, _, at, _)| (*id, *at))
            .collect();
        if !scheduled.is_empty() {
            let fired = scheduled;
            if let Err(e) = jobs.mark_fired(&fired) {
                tracing::error!(error = %e.message, "record scheduled instants");
                due_now.clear();
            }
        }
        // a continuous job's next run is saved before we look again (no doubles)
        let (continuous, due_now): (Vec<_>, Vec<_>) = due_now
            .into_iter()
            .partition(|(_, _, _, t)| *t == "CONTINUOUS");
        for (job_id, run_as, _, trigger) in continuous {
            let request = RunNow {
                trigger: trigger.into(),
                ..Default::default()
            };
            if let Err(e) = jobs.run_now(&run_as, job_id, request).await {
                tracing::warn!(job_id, error = %e.message, "a continuous job's run could not start");
            }
        }
        // scheduled runs start side by side, each in a task the service owns
        for (job_id, run_as, instant, trigger) in due_now {
            let me = jobs.clone();
            jobs.tasks.spawn(async move {
                let request = RunNow {
                    trigger: trigger.into(),
                    ..Default::default()
                };
                match me.run_now(&run_as, job_id, request).await {
                    Ok(run) => tracing::info!(
                        job_id,
                        run_id = run.run_id,
                        lateness_ms = now_ms() - instant,
                        "scheduled run started"
                    ),
                    Err(e) => {
                        tracing::warn!(job_id, error = %e.message, "a scheduled run could not start")
                    }
                }
            });
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(sleep) => {}
            _ = changes.changed() => {}
            _ = run_changes.changed(), if any_continuous => {}
        }
    }
}

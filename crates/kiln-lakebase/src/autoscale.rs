//! Autoscaling: a running endpoint's compute units follow its load between
//! `autoscaling_limit_min_cu` and `_max_cu`. Once a second the reconciler
//! samples the CPU its processes used (`/proc`), and its cgroup's memory and
//! CPU throttling; busy (> 70 % of its CPU, > 80 % of its memory, or
//! throttled in > 25 % of periods) doubles the CU, quiet
//! for 5 s in a row (< 30 %) halves it. A change sets the cgroup limits
//! (`cpu_per_cu` cores per CU; 2 GiB per CU where memory reclaim starts, the maximum CU's as the hard limit) and reloads `work_mem` and
//! `effective_cache_size` without a restart. A new postmaster starts at the
//! minimum.

use std::time::Instant;

use kiln_core::Result;

use crate::cgroups::tree_cpu_seconds;
use crate::model::EndpointRecord;
use crate::pg;
pub use crate::scale::{next_cu, settings_for, Load, Scale, MEMORY_PER_CU};
use crate::scale::{APPLY_TIMEOUT, RETRY_AFTER, SAMPLE_EVERY_MS};
use crate::service::{Lakebase, Runtime};

impl Lakebase {
    /// The cgroup an endpoint's postmaster starts in: at the minimum CU.
    pub(crate) fn cgroup_target(&self, ep: &EndpointRecord) -> Option<crate::cgroups::Target> {
        Some(crate::cgroups::Target {
            cgroups: self.cgroups.clone()?,
            uid: ep.uid.clone(),
            cpus: ep.settings.min_cu * self.config.cpu_per_cu,
            memory: (ep.settings.min_cu * MEMORY_PER_CU as f64) as u64,
            memory_max: (ep.settings.max_cu * MEMORY_PER_CU as f64) as u64,
        })
    }

    /// The CU an endpoint runs with now (`None` when it is not running).
    pub fn current_cu(&self, uid: &str) -> Option<f64> {
        let runtime = self.runtime(uid);
        let pid = runtime.process.try_lock().ok()?.as_ref()?.pid;
        let scale = runtime.scale.lock().ok()?;
        (scale.pid == pid).then_some(scale.cu)
    }

    /// One autoscaling step for a running endpoint (at most once a second).
    pub(crate) async fn autoscale(
        &self,
        ep: &EndpointRecord,
        runtime: &std::sync::Arc<Runtime>,
        pid: u32,
    ) -> Result<()> {
        let now = Instant::now();
        let Some(cpu) = tree_cpu_seconds(pid) else {
            return Ok(());
        };
        let (min, max) = (ep.settings.min_cu, ep.settings.max_cu);
        let change = {
            let Ok(mut scale) = runtime.scale.lock() else {
                return Ok(());
            };
            if scale.pid != pid {
                *scale = Scale {
                    pid,
                    cu: min,
                    last: Some((now, cpu)),
                    periods: None,
                    quiet: 0,
                    dirty: true,
                    retry_at: None,
                    applying: false,
                };
            }
            let (at, used) = scale.last.unwrap_or((now, cpu));
            let elapsed = now.duration_since(at);
            if elapsed.as_millis() >= SAMPLE_EVERY_MS {
                let periods = self.cgroups.as_ref().and_then(|c| c.cpu_periods(&ep.uid));
                let throttled = match (scale.periods, periods) {
                    (Some((p0, t0)), Some((p1, t1))) if p1 > p0 => {
                        Some(t1.saturating_sub(t0) as f64 / (p1 - p0) as f64)
                    }
                    _ => None,
                };
                scale.periods = periods;
                let load = Load {
                    cores: (cpu - used).max(0.0) / elapsed.as_secs_f64(),
                    memory_fraction: self.cgroups.as_ref().and_then(|c| {
                        c.memory_usage(&ep.uid)
                            .map(|m| m as f64 / (scale.cu * MEMORY_PER_CU as f64))
                    }),
                    throttled,
                };
                tracing::debug!(endpoint = %ep.name(), cu = scale.cu, cores = load.cores,
                    throttled = ?load.throttled, memory = ?load.memory_fraction, "load sample");
                scale.last = Some((now, cpu));
                let mut quiet = scale.quiet;
                let next = next_cu(scale.cu, load, min, max, self.config.cpu_per_cu, &mut quiet);
                scale.quiet = quiet;
                if next != scale.cu {
                    tracing::info!(endpoint = %ep.name(), from = scale.cu, to = next,
                        cores = format!("{:.2}", load.cores), "autoscaling");
                    scale.cu = next;
                    scale.dirty = true;
                    scale.retry_at = None;
                }
            }
            let due = scale.retry_at.is_none_or(|t| now >= t) && !scale.applying;
            if scale.dirty && due {
                scale.applying = true;
                Some(scale.cu)
            } else {
                None
            }
        };
        if let Some(cu) = change {
            // Limits at once (file writes); settings by a task of their own,
            // bounded by a timeout, so a starved endpoint never holds up the
            // reconciler, which serves every endpoint from one loop.
            let limits = self.set_limits(ep, cu);
            let (runtime, name) = (runtime.clone(), ep.name());
            let (socket, pinned) = (
                self.layout.socket_dir(&ep.uid),
                ep.settings.pg_settings.clone(),
            );
            tokio::spawn(async move {
                let applied = match limits {
                    Ok(()) => {
                        tokio::time::timeout(APPLY_TIMEOUT, apply_settings(&socket, &pinned, cu))
                            .await
                            .unwrap_or_else(|_| Err(kiln_core::Error::invalid("timed out")))
                    }
                    Err(e) => Err(e),
                };
                if let Ok(mut scale) = runtime.scale.lock() {
                    scale.applying = false;
                    if scale.pid == pid && scale.cu == cu {
                        match &applied {
                            Ok(()) => scale.dirty = false,
                            // Tried again later, not on every tick.
                            Err(_) => scale.retry_at = Some(Instant::now() + RETRY_AFTER),
                        }
                    }
                }
                if let Err(e) = applied {
                    tracing::warn!(endpoint = %name, cu, error = %e.message, "apply a compute size");
                }
            });
        }
        Ok(())
    }

    fn set_limits(&self, ep: &EndpointRecord, cu: f64) -> Result<()> {
        match &self.cgroups {
            Some(cgroups) => {
                let memory = (cu * MEMORY_PER_CU as f64) as u64;
                let max = (ep.settings.max_cu * MEMORY_PER_CU as f64) as u64;
                cgroups.set_limits(&ep.uid, cu * self.config.cpu_per_cu, memory, max)
            }
            None => Ok(()),
        }
    }
}

/// The settings of `cu`, reloaded without a restart; settings the endpoint
/// pins in `pg_settings` are left alone.
async fn apply_settings(
    socket: &std::path::Path,
    pinned: &std::collections::BTreeMap<String, String>,
    cu: f64,
) -> Result<()> {
    let statements: Vec<String> = settings_for(cu)
        .into_iter()
        .filter(|(key, _)| !pinned.contains_key(*key))
        .map(|(key, value)| format!("ALTER SYSTEM SET {key} = {}", pg::literal(&value)))
        .collect();
    if statements.is_empty() {
        return Ok(());
    }
    let client = pg::connect(socket, "postgres").await?;
    // One statement per query: ALTER SYSTEM cannot run in a transaction block.
    for sql in statements
        .iter()
        .map(String::as_str)
        .chain(["SELECT pg_reload_conf()"])
    {
        pg::execute(&client, sql).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(cores: f64) -> Load {
        Load {
            cores,
            memory_fraction: None,
            throttled: None,
        }
    }

    #[test]
    fn busy_doubles_quiet_halves_within_limits() {
        let mut quiet = 0;
        // 1 CU = 0.5 cores here: 0.45 cores is busy
        assert_eq!(next_cu(1.0, load(0.45), 0.5, 4.0, 0.5, &mut quiet), 2.0);
        assert_eq!(next_cu(2.0, load(0.9), 0.5, 4.0, 0.5, &mut quiet), 4.0);
        assert_eq!(next_cu(4.0, load(2.0), 0.5, 4.0, 0.5, &mut quiet), 4.0);
        assert_eq!(next_cu(0.5, load(0.3), 0.5, 4.0, 0.5, &mut quiet), 1.0);
        // between the thresholds: stays
        assert_eq!(next_cu(2.0, load(0.5), 0.5, 4.0, 0.5, &mut quiet), 2.0);
        // quiet: halves after five quiet samples in a row, never below the minimum
        let mut cu = 4.0;
        for i in 1..=4 {
            cu = next_cu(cu, load(0.01), 0.5, 4.0, 0.5, &mut quiet);
            assert_eq!((cu, quiet), (4.0, i));
        }
        assert_eq!(next_cu(cu, load(0.01), 0.5, 4.0, 0.5, &mut quiet), 2.0);
        assert_eq!(quiet, 0);
        quiet = 10;
        assert_eq!(next_cu(0.5, load(0.0), 0.5, 4.0, 0.5, &mut quiet), 0.5);
        // memory pressure scales up too
        let full = Load {
            cores: 0.0,
            memory_fraction: Some(0.9),
            throttled: None,
        };
        assert_eq!(next_cu(1.0, full, 0.5, 4.0, 0.5, &mut quiet), 2.0);
        // throttled by its quota (it wants more than it gets, e.g. on a crowded machine)
        let held = Load {
            cores: 0.2,
            memory_fraction: None,
            throttled: Some(0.6),
        };
        assert_eq!(next_cu(1.0, held, 0.5, 4.0, 0.5, &mut quiet), 2.0);
        // a fixed size never moves
        assert_eq!(next_cu(2.0, load(5.0), 2.0, 2.0, 0.5, &mut quiet), 2.0);
    }

    #[test]
    fn settings_follow_the_cu() {
        assert_eq!(settings_for(0.5)[0].1, "4MB");
        assert_eq!(settings_for(4.0)[0].1, "16MB");
        assert_eq!(settings_for(1.0)[1].1, "1536MB");
        assert_eq!(settings_for(8.0)[1].1, "12288MB");
    }
}

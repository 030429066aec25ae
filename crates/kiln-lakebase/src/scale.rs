//! The autoscaler's arithmetic: the next compute units for a measured load,
//! the Postgres settings for a size, and each endpoint's scaling state.
//! The loop that samples and applies them is the `autoscale` module.

use std::time::Instant;

/// Lakebase's memory per compute unit.
pub const MEMORY_PER_CU: u64 = 2 << 30;
pub(crate) const SAMPLE_EVERY_MS: u128 = 1000;
pub(crate) const QUIET_SAMPLES: u32 = 5;
pub(crate) const APPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
pub(crate) const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// The autoscaler's view of one endpoint's running postmaster.
#[derive(Debug, Clone, Default)]
pub struct Scale {
    /// The postmaster this state is about (a new one starts at the minimum).
    pub(crate) pid: u32,
    pub cu: f64,
    pub(crate) last: Option<(Instant, f64)>,
    /// The cgroup's CPU periods and throttled periods at the last sample.
    pub(crate) periods: Option<(u64, u64)>,
    pub(crate) quiet: u32,
    /// Limits and settings still to apply for `cu`, and when to try again
    /// after a failure.
    pub(crate) dirty: bool,
    pub(crate) retry_at: Option<Instant>,
    /// A task is applying a change now.
    pub(crate) applying: bool,
}

/// What one sample saw.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub cores: f64,
    pub memory_fraction: Option<f64>,
    /// The share of CPU periods in which the cgroup's quota throttled it
    /// (it wanted more than its CU gives).
    pub throttled: Option<f64>,
}

/// The next CU for `load` (0.5 steps, within `[min, max]`); `quiet` counts
/// the quiet samples in a row.
pub fn next_cu(cu: f64, load: Load, min: f64, max: f64, cpu_per_cu: f64, quiet: &mut u32) -> f64 {
    let cores = cu * cpu_per_cu;
    let busy = load.cores > 0.7 * cores
        || load.memory_fraction.is_some_and(|m| m > 0.8)
        || load.throttled.is_some_and(|t| t > 0.25);
    let next = if busy {
        *quiet = 0;
        (cu * 2.0).max(cu + 0.5)
    } else if load.cores < 0.3 * cores
        && load.memory_fraction.is_none_or(|m| m < 0.4)
        && load.throttled.is_none_or(|t| t < 0.05)
    {
        *quiet += 1;
        if *quiet >= QUIET_SAMPLES {
            *quiet = 0;
            cu / 2.0
        } else {
            cu
        }
    } else {
        *quiet = 0;
        cu
    };
    ((next * 2.0).round() / 2.0).clamp(min, max.max(min))
}

/// `work_mem` and `effective_cache_size` for a CU.
pub fn settings_for(cu: f64) -> [(&'static str, String); 2] {
    let work_mem = (4.0 * cu).clamp(4.0, 256.0) as u64;
    let cache = (cu * 0.75 * (MEMORY_PER_CU >> 20) as f64) as u64;
    [
        ("work_mem", format!("{work_mem}MB")),
        ("effective_cache_size", format!("{}MB", cache.max(128))),
    ]
}

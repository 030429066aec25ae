//! CPU and memory limits of endpoints with Linux control groups: v1 (`cpu`
//! and `memory` hierarchies) or v2 (one hierarchy with the `cpu` and
//! `memory` controllers). Each Kiln gets `kiln-lakebase-<instance>` in them
//! and each running endpoint a group below it, which its postmaster joins as
//! soon as it is spawned (its backends inherit the group). Without usable
//! cgroups (not root, read-only mounts) endpoints run unlimited and
//! autoscaling only adjusts settings.

use std::path::{Path, PathBuf};

use kiln_core::{Error, Result};

/// CFS period of v1 `cpu.cfs_period_us` and v2 `cpu.max`.
const PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone)]
enum Flavor {
    V1 { cpu: PathBuf, memory: PathBuf },
    V2 { base: PathBuf },
}

#[derive(Debug, Clone)]
pub struct Cgroups {
    flavor: Flavor,
}

/// The group a postmaster joins and the limits it starts with.
#[derive(Debug, Clone)]
pub struct Target {
    pub cgroups: Cgroups,
    pub uid: String,
    pub cpus: f64,
    pub memory: u64,
    pub memory_max: u64,
}

impl Target {
    /// The group, its limits, then the process: joined as soon as it is spawned.
    pub fn enter(&self, pid: u32) {
        let joined = self
            .cgroups
            .create(&self.uid)
            .and_then(|()| {
                self.cgroups
                    .set_limits(&self.uid, self.cpus, self.memory, self.memory_max)
            })
            .and_then(|()| self.cgroups.join(&self.uid, pid));
        if let Err(e) = joined {
            tracing::warn!(endpoint = %self.uid, error = %e.message, "join the endpoint's cgroup");
        }
    }

    /// Children the postmaster forked before it joined (startup processes).
    pub fn enter_children(&self, pid: u32) {
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"));
        for child in children.unwrap_or_default().split_whitespace() {
            if let Ok(child) = child.parse() {
                let _ = self.cgroups.join(&self.uid, child);
            }
        }
    }
}

/// Kiln's cgroups for the Lakebase data under `root` (groups left by an
/// earlier run removed), unless switched off.
pub fn for_root(root: &Path, enabled: bool) -> Option<Cgroups> {
    if !enabled {
        return None;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(root.display().to_string().as_bytes());
    let instance = hex::encode(&digest[..4]);
    let cgroups = Cgroups::detect(Path::new("/sys/fs/cgroup"), &instance)?;
    cgroups.sweep();
    tracing::info!(
        kind = cgroups.describe(),
        "Lakebase endpoints run in cgroups"
    );
    Some(cgroups)
}

impl Cgroups {
    /// The hierarchies under `root` (`/sys/fs/cgroup`) with Kiln's group made
    /// in them, or `None` (logged) when they cannot be used.
    pub fn detect(root: &Path, instance: &str) -> Option<Self> {
        let name = format!("kiln-lakebase-{instance}");
        let found = if root.join("cpu/cpu.cfs_quota_us").is_file()
            && root.join("memory/memory.limit_in_bytes").is_file()
        {
            Self::make_v1(root, &name)
        } else if has_v2_controllers(root) {
            Self::make_v2(root, &name)
        } else {
            Err(Error::invalid("no cgroup v1 cpu+memory or v2 hierarchy"))
        };
        match found {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::info!(reason = %e.message, "Lakebase endpoints run without cgroup limits");
                None
            }
        }
    }

    fn make_v1(root: &Path, name: &str) -> Result<Self> {
        let (cpu, memory) = (root.join("cpu").join(name), root.join("memory").join(name));
        for dir in [&cpu, &memory] {
            make_dir(dir)?;
        }
        Ok(Self {
            flavor: Flavor::V1 { cpu, memory },
        })
    }

    fn make_v2(root: &Path, name: &str) -> Result<Self> {
        write(&root.join("cgroup.subtree_control"), "+cpu +memory")?;
        let base = root.join(name);
        make_dir(&base)?;
        write(&base.join("cgroup.subtree_control"), "+cpu +memory")?;
        Ok(Self {
            flavor: Flavor::V2 { base },
        })
    }

    fn dirs(&self, uid: &str) -> Vec<PathBuf> {
        match &self.flavor {
            Flavor::V1 { cpu, memory } => vec![cpu.join(uid), memory.join(uid)],
            Flavor::V2 { base } => vec![base.join(uid)],
        }
    }

    /// Makes the endpoint's group.
    pub fn create(&self, uid: &str) -> Result<()> {
        self.dirs(uid).iter().try_for_each(|d| make_dir(d))
    }

    /// Moves `pid` (never 0: that would be Kiln itself) into the endpoint's group.
    pub fn join(&self, uid: &str, pid: u32) -> Result<()> {
        if pid == 0 {
            return Err(Error::invalid("no process to put in a cgroup"));
        }
        for dir in self.dirs(uid) {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Sets the CPU (in cores, at least a tenth of one) and memory limits of
    /// an existing group: `memory` is where reclaim starts (v1 soft limit, v2
    /// `memory.high`); `hard` is the most it may ever use (the endpoint's
    /// maximum CU: connections are sized for it, so a storm of sessions is
    /// reclaimed and seen by the autoscaler rather than killed).
    pub fn set_limits(&self, uid: &str, cpus: f64, memory: u64, hard: u64) -> Result<()> {
        let quota = ((cpus * PERIOD_US as f64) as u64).max(PERIOD_US / 10);
        let hard = hard.max(memory);
        match &self.flavor {
            Flavor::V1 { cpu, memory: mem } => {
                let dir = cpu.join(uid);
                write(&dir.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                let mem = mem.join(uid);
                write(&mem.join("memory.limit_in_bytes"), &hard.to_string())?;
                write(&mem.join("memory.soft_limit_in_bytes"), &memory.to_string())
            }
            Flavor::V2 { base } => {
                let dir = base.join(uid);
                write(&dir.join("cpu.max"), &format!("{quota} {PERIOD_US}"))?;
                write(&dir.join("memory.max"), &hard.to_string())?;
                write(&dir.join("memory.high"), &memory.to_string())
            }
        }
    }

    /// Memory the endpoint's processes use themselves (bytes): anonymous
    /// memory, not the page cache (which fills any limit and is reclaimable).
    pub fn memory_usage(&self, uid: &str) -> Option<u64> {
        let (file, key) = match &self.flavor {
            Flavor::V1 { memory, .. } => (memory.join(uid).join("memory.stat"), "total_rss "),
            Flavor::V2 { base } => (base.join(uid).join("memory.stat"), "anon "),
        };
        let stat = std::fs::read_to_string(file).ok()?;
        stat.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
    }

    /// CPU periods so far and those in which the quota throttled the group.
    pub fn cpu_periods(&self, uid: &str) -> Option<(u64, u64)> {
        let file = match &self.flavor {
            Flavor::V1 { cpu, .. } => cpu.join(uid).join("cpu.stat"),
            Flavor::V2 { base } => base.join(uid).join("cpu.stat"),
        };
        let stat = std::fs::read_to_string(file).ok()?;
        let get = |key: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        };
        Some((get("nr_periods")?, get("nr_throttled")?))
    }

    /// Removes the endpoint's group (once its processes are gone).
    pub fn remove(&self, uid: &str) {
        for dir in self.dirs(uid) {
            let _ = std::fs::remove_dir(dir);
        }
    }

    fn bases(&self) -> Vec<PathBuf> {
        match &self.flavor {
            Flavor::V1 { cpu, memory } => vec![cpu.clone(), memory.clone()],
            Flavor::V2 { base } => vec![base.clone()],
        }
    }

    /// Removes Kiln's groups at shutdown (its postmasters have stopped).
    pub fn remove_all(&self) {
        self.sweep();
        for base in self.bases() {
            let _ = std::fs::remove_dir(base);
        }
    }

    /// Removes groups left by an earlier run (empty ones: their processes died with it).
    pub fn sweep(&self) {
        for base in self.bases() {
            if let Ok(entries) = std::fs::read_dir(base) {
                for e in entries.flatten().filter(|e| e.path().is_dir()) {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
    }

    pub fn describe(&self) -> &'static str {
        match self.flavor {
            Flavor::V1 { .. } => "cgroup v1 (cpu, memory)",
            Flavor::V2 { .. } => "cgroup v2 (cpu, memory)",
        }
    }
}

fn has_v2_controllers(root: &Path) -> bool {
    std::fs::read_to_string(root.join("cgroup.controllers")).is_ok_and(|c| {
        let c: Vec<&str> = c.split_whitespace().collect();
        c.contains(&"cpu") && c.contains(&"memory")
    })
}

fn make_dir(dir: &Path) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::invalid(format!("create {}: {e}", dir.display()))),
    }
}

fn write(file: &Path, value: &str) -> Result<()> {
    std::fs::write(file, value)
        .map_err(|e| Error::invalid(format!("write {} to {}: {e}", value, file.display())))
}

/// CPU seconds used by a process and its children (live ones, and those it
/// has reaped), from `/proc`.
pub fn tree_cpu_seconds(pid: u32) -> Option<f64> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut total = cpu_ticks(pid, true)?;
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
        total += cpu_ticks(child, true).unwrap_or(0);
    }
    Some(total as f64 / ticks)
}

/// utime + stime (+ cutime + cstime) of a process, in clock ticks.
fn cpu_ticks(pid: u32, with_children: bool) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat, with_children)
}

fn parse_stat_ticks(stat: &str, with_children: bool) -> Option<u64> {
    // Fields after the command name (which may hold spaces and parentheses).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is the state (field 3): utime is field 14 → index 11.
    let get = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let own = get(11)? + get(12)?;
    if with_children {
        Some(own + get(13)? + get(14)?)
    } else {
        Some(own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_names() {
        let stat =
            "4242 (postgres: a) b (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 5 2 20 0 1 0";
        assert_eq!(parse_stat_ticks(stat, false), Some(10));
        assert_eq!(parse_stat_ticks(stat, true), Some(17));
        assert_eq!(parse_stat_ticks("garbage", true), None);
        let me = std::process::id();
        assert!(tree_cpu_seconds(me).is_some());
    }

    #[test]
    fn v1_groups_get_limits_and_members() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::internal("tempdir", e))?;
        for (sub, file) in [
            ("cpu", "cpu.cfs_quota_us"),
            ("memory", "memory.limit_in_bytes"),
        ] {
            std::fs::create_dir_all(dir.path().join(sub))
                .map_err(|e| Error::internal("mkdir", e))?;
            std::fs::write(dir.path().join(sub).join(file), "-1")
                .map_err(|e| Error::internal("w", e))?;
        }
        let cg = Cgroups::detect(dir.path(), "t").ok_or_else(|| Error::invalid("not detected"))?;
        cg.create("ep-a")?;
        cg.join("ep-a", 42)?;
        assert!(cg.join("ep-a", 0).is_err());
        cg.set_limits("ep-a", 1.5, 4 << 30, 5 << 30)?;
        let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap_or_default();
        assert_eq!(read("cpu/kiln-lakebase-t/ep-a/cgroup.procs"), "42");
        assert_eq!(read("cpu/kiln-lakebase-t/ep-a/cpu.cfs_quota_us"), "150000");
        let mem = "memory/kiln-lakebase-t/ep-a/";
        assert_eq!(
            read(&format!("{mem}memory.limit_in_bytes")),
            (5u64 << 30).to_string()
        );
        assert_eq!(
            read(&format!("{mem}memory.soft_limit_in_bytes")),
            (4u64 << 30).to_string()
        );
        let stat = "cache 900\nrss 5\ntotal_cache 900\ntotal_rss 123\n";
        std::fs::write(dir.path().join(mem).join("memory.stat"), stat)
            .map_err(|e| Error::internal("w", e))?;
        assert_eq!(cg.memory_usage("ep-a"), Some(123));
        cg.set_limits("ep-a", 0.0, 1 << 30, 1 << 30)?;
        assert_eq!(read("cpu/kiln-lakebase-t/ep-a/cpu.cfs_quota_us"), "10000");
        assert_eq!(cg.describe(), "cgroup v1 (cpu, memory)");
        Ok(())
    }
}

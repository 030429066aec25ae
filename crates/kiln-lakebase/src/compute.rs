//! One endpoint's postmaster: started as a child of Kiln (it dies with Kiln,
//! `PR_SET_PDEATHSIG`), listening only on a private Unix socket directory,
//! ready once a real query answers, stopped with a fast shutdown.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use kiln_core::{Error, Result};
use tokio::process::Child;

use kiln_core::process::signal;

use crate::pg::{self, Postgres};

/// How a postmaster is started.
#[derive(Debug, Clone)]
pub struct Launch {
    pub pgdata: PathBuf,
    pub socket_dir: PathBuf,
    pub log: PathBuf,
    /// The branch's WAL archive (primaries archive into it; everyone restores from it).
    pub archive: PathBuf,
    /// Extra settings (`-c key=value`): recovery targets, primary_conninfo, pg_settings.
    pub settings: BTreeMap<String, String>,
    pub min_cu: f64,
    pub max_cu: f64,
    pub replica: bool,
    /// The cgroup the postmaster runs in (when Kiln can use cgroups).
    pub cgroup: Option<crate::cgroups::Target>,
}

impl Launch {
    fn args(&self) -> Vec<String> {
        let archive = self.archive.display().to_string();
        // Scaled-down sizing (Lakebase gives ~2 GB per CU; a dev box cannot).
        let shared_buffers_mb = (32.0 * self.min_cu).clamp(16.0, 1024.0) as u64;
        let max_connections = if self.replica {
            840
        } else {
            (210.0 * self.max_cu).clamp(105.0, 840.0) as u64
        };
        let mut settings: BTreeMap<String, String> = [
            ("listen_addresses", String::new()),
            (
                "unix_socket_directories",
                self.socket_dir.display().to_string(),
            ),
            ("unix_socket_permissions", "0700".into()),
            ("port", pg::SOCKET_PORT.to_string()),
            ("wal_level", "replica".into()),
            ("max_wal_senders", "10".into()),
            ("hot_standby", "on".into()),
            ("archive_mode", "on".into()),
            (
                "archive_command",
                format!("test ! -f '{archive}/%f' && cp %p '{archive}/%f'"),
            ),
            ("restore_command", format!("cp '{archive}/%f' %p")),
            ("recovery_init_sync_method", "syncfs".into()),
            ("shared_buffers", format!("{shared_buffers_mb}MB")),
            ("max_connections", max_connections.to_string()),
            ("logging_collector", "off".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        settings.extend(self.settings.clone());
        let mut args = vec!["-D".to_string(), self.pgdata.display().to_string()];
        for (k, v) in settings {
            args.push("-c".into());
            args.push(format!("{k}={v}"));
        }
        args
    }
}

/// A running postmaster.
pub struct Postmaster {
    child: Child,
    pub pid: u32,
    pub socket_dir: PathBuf,
    cgroup: Option<crate::cgroups::Target>,
}

impl Postmaster {
    /// Starts postgres and waits until it answers a query (or exits).
    pub async fn start(pg: &Postgres, launch: &Launch, timeout: Duration) -> Result<Self> {
        kill_leftover(&launch.pgdata).await;
        pg.make_dir(&launch.socket_dir)?;
        // The socket dir is private to this endpoint: a lock left by a dead
        // postmaster would stop the new one.
        for stale in [".s.PGSQL.5432", ".s.PGSQL.5432.lock"] {
            let _ = tokio::fs::remove_file(launch.socket_dir.join(stale)).await;
        }
        let log = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)
            .await
            .map_err(|e| Error::internal("open the postgres log", e))?
            .into_std()
            .await;
        let log_err = log
            .try_clone()
            .map_err(|e| Error::internal("open the postgres log", e))?;
        let mut command = pg.command("postgres");
        command
            .args(launch.args())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true);
        kiln_core::process::die_with_parent(command.as_std_mut());
        let child =
            kiln_core::process::spawn(command).map_err(|e| Error::internal("start postgres", e))?;
        let pid = child.id().unwrap_or(0);
        if let (Some(cgroup), true) = (&launch.cgroup, pid != 0) {
            cgroup.enter(pid);
        }
        let mut postmaster = Self {
            child,
            pid,
            socket_dir: launch.socket_dir.clone(),
            cgroup: launch.cgroup.clone(),
        };
        if let Err(e) = postmaster.wait_ready(&launch.log, timeout).await {
            postmaster.stop(Duration::from_secs(5)).await;
            return Err(e);
        }
        if let Some(cgroup) = &launch.cgroup {
            cgroup.enter_children(pid);
        }
        Ok(postmaster)
    }

    async fn wait_ready(&mut self, log: &Path, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::internal(
                    "start postgres",
                    format!(
                        "postgres exited ({status}): {}",
                        kiln_core::blocking::run(|| log_tail(log))
                    ),
                ));
            }
            if let Some(client) = pg::try_connect(&self.socket_dir).await {
                if client.simple_query("SELECT 1").await.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::internal(
                    "start postgres",
                    format!(
                        "not ready after {timeout:?}: {}",
                        kiln_core::blocking::run(|| log_tail(log))
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether the postmaster has exited (without being stopped).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Fast shutdown (SIGINT), SIGKILL after `deadline`; reaps the process.
    pub async fn stop(&mut self, deadline: Duration) {
        if !self.exited() {
            signal(self.pid, libc::SIGINT);
            if tokio::time::timeout(deadline, self.child.wait())
                .await
                .is_err()
            {
                signal(self.pid, libc::SIGKILL);
                let _ = self.child.wait().await;
            }
        }
        if let Some(cgroup) = &self.cgroup {
            cgroup.cgroups.remove(&cgroup.uid);
        }
    }
}

/// A postmaster left behind by an earlier Kiln (it should have died with it;
/// this covers the window before PDEATHSIG was set) is killed before a start,
/// and a lock file whose process is gone (or a zombie nobody reaped) is removed.
async fn kill_leftover(pgdata: &Path) {
    let lock = pgdata.join("postmaster.pid");
    let Ok(text) = tokio::fs::read_to_string(&lock).await else {
        return;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<u32>().ok())
    else {
        let _ = tokio::fs::remove_file(&lock).await;
        return;
    };
    if live_postgres_on(pid, pgdata) {
        tracing::warn!(pid, pgdata = %pgdata.display(), "killing a leftover postgres");
        signal(pid, libc::SIGKILL);
        for _ in 0..500 {
            if !live_postgres_on(pid, pgdata) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    if !live_postgres_on(pid, pgdata) {
        let _ = tokio::fs::remove_file(&lock).await;
    }
}

/// Whether `pid` is a running (not zombie) postgres on `pgdata`.
fn live_postgres_on(pid: u32, pgdata: &Path) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next());
    if matches!(state, None | Some("Z") | Some("X")) {
        return false;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains(&pgdata.display().to_string())
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_arguments() {
        let launch = Launch {
            pgdata: "/d".into(),
            socket_dir: "/s".into(),
            log: "/l".into(),
            archive: "/a".into(),
            settings: [("work_mem".to_string(), "8MB".to_string())].into(),
            min_cu: 1.0,
            max_cu: 2.0,
            replica: false,
            cgroup: None,
        };
        let args = launch.args();
        assert!(args.contains(&"listen_addresses=".to_string()));
        assert!(args.contains(&"max_connections=420".to_string()));
        assert!(args.contains(&"work_mem=8MB".to_string()));
        assert!(args.contains(&"archive_command=test ! -f '/a/%f' && cp %p '/a/%f'".to_string()));
    }
}

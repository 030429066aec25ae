//! The FUSE mount through which user code opens files below the object-store
//! root with the operating system's file calls (`open('/Volumes/…')`, pandas,
//! pyarrow, C libraries): `s3fs`, a child of Kiln (it dies with Kiln),
//! unmounted when Kiln stops; a mount a killed Kiln left is cleared at start.
//!
//! s3fs, not rclone: a file written through it is stored when `close()`
//! returns (rclone's write cache uploads after close, so a file a command
//! just wrote could be missing from the Files API), and it takes random
//! writes. Empty directories are s3fs's `dir/` marker objects, so Kiln makes
//! and removes directories through the mount; file bytes go through
//! `object_store`.
//!
//! s3fs gets the credentials in its environment, never on its command line.
//! As root the mount is reached only through DBFS's directory (group `gid`,
//! mode 2770), which keeps out every process not in that group; otherwise
//! the mount is Kiln's user's alone.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use kiln_core::{Error, Result};
use tokio::io::AsyncBufReadExt as _;

use crate::object::ObjectRoot;

pub struct FuseMount {
    at: PathBuf,
    child: tokio::sync::Mutex<Option<tokio::process::Child>>,
}

/// Whether `at` is a mount point (from `/proc/self/mountinfo`).
pub fn is_mounted(at: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = at.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
}

/// Lazily unmounts whatever is mounted at `at` (a mount left by a killed Kiln
/// answers "Transport endpoint is not connected").
pub fn clear_stale(at: &Path) {
    if !is_mounted(at) {
        return;
    }
    tracing::info!(path = %at.display(), "unmounting a FUSE mount left by an earlier run");
    let _ = std::process::Command::new("fusermount3")
        .arg("-uz")
        .arg(at)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if is_mounted(at) && kiln_core::process::is_root() {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(at)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn s3fs_env(root: &ObjectRoot) -> Vec<(String, String)> {
    root.engine_env()
        .into_iter()
        .filter_map(|(name, value)| {
            let var = match name.as_str() {
                "AWS_ACCESS_KEY_ID" => "AWSACCESSKEYID",
                "AWS_SECRET_ACCESS_KEY" => "AWSSECRETACCESSKEY",
                "AWS_SESSION_TOKEN" => "AWSSESSIONTOKEN",
                _ => return None,
            };
            Some((var.to_string(), value))
        })
        .collect()
}

fn s3fs_options(root: &ObjectRoot, gid: Option<u32>) -> String {
    let config = root.config();
    let url = config
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", root.region()));
    let mut options = vec![
        format!("url={url}"),
        format!("endpoint={}", root.region()),
        "stat_cache_expire=1".to_string(),
        "complement_stat".to_string(),
        "dbglevel=warn".to_string(),
    ];
    if !config.virtual_hosted_style {
        options.push("use_path_request_style".into());
    }
    match gid {
        // s3fs checks a caller's groups against /etc/group, not the
        // process's supplementary groups, so the data group's members would
        // be refused: the mount is open to all, and the directory it is in
        // (DBFS, mode 2770, group `gid`) keeps out everyone else.
        Some(gid) => options.push(format!(
            "allow_other,default_permissions,uid=0,gid={gid},umask=000,mp_umask=000"
        )),
        None => options.push("umask=077".into()),
    }
    options.join(",")
}

impl FuseMount {
    /// Mounts `<root>/<rel>` at `at`; `cache` is s3fs's home.
    pub async fn mount(
        root: &ObjectRoot,
        rel: &str,
        at: &Path,
        cache: &Path,
        gid: Option<u32>,
    ) -> Result<Self> {
        clear_stale(at);
        for dir in [at, cache] {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::internal("create a directory for the FUSE mount", e))?;
        }
        let prefix = root.key(rel);
        let remote = format!("{}:/{prefix}", root.bucket());
        let mut command = tokio::process::Command::new("s3fs");
        command
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", cache)
            .envs(s3fs_env(root))
            .arg(&remote)
            .arg(at)
            .args(["-f", "-o"])
            .arg(s3fs_options(root, gid))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        kiln_core::process::die_with_parent(command.as_std_mut());
        let mut child = kiln_core::process::spawn(command).map_err(|e| {
            Error::invalid(format!(
                "[storage] root needs s3fs and FUSE (Debian: apt install s3fs fuse3): {e}"
            ))
        })?;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::warn!(target: "s3fs", "{line}");
                }
            });
        }
        let started = Instant::now();
        while !is_mounted(at) {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::invalid(format!(
                    "[storage] the FUSE mount of {remote} at {} failed: s3fs exited with {status}",
                    at.display()
                )));
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.start_kill();
                return Err(Error::invalid(format!(
                    "[storage] the FUSE mount of {remote} at {} did not appear within 20 s",
                    at.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(path = %at.display(), remote, "object storage mounted for user code");
        Ok(Self {
            at: at.to_path_buf(),
            child: tokio::sync::Mutex::new(Some(child)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.at
    }

    /// Unmounts, then waits up to `deadline` for s3fs to exit (it finishes the
    /// writes in flight), and kills it after that.
    pub async fn unmount(&self, deadline: Duration) {
        let Some(mut child) = self.child.lock().await.take() else {
            return;
        };
        let at = self.at.clone();
        let unmounted = tokio::task::spawn_blocking(move || {
            std::process::Command::new("fusermount3")
                .arg("-u")
                .arg(&at)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .await
        .unwrap_or(false);
        if !unmounted {
            if let Some(pid) = child.id() {
                kiln_core::process::signal(pid, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(deadline, child.wait()).await.is_err() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        clear_stale(&self.at);
    }
}

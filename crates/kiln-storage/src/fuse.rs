//! The FUSE mount through which user code opens files below the object-store
//! root with the operating system's file calls (`open('/Volumes/…')`, pandas,
//! pyarrow, C libraries): `s3fs`, a child of Kiln (it dies with Kiln),
//! restarted if it dies, unmounted when Kiln stops; a mount a killed Kiln left
//! is cleared at start.
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
use tokio_util::sync::CancellationToken;

use crate::object::ObjectRoot;

const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct FuseMount {
    at: PathBuf,
    stop: CancellationToken,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// `at` with its parent resolved (as `/proc/self/mountinfo` shows it); `at`
/// itself may be a dead mount, which cannot be resolved.
pub fn mount_path(at: &Path) -> PathBuf {
    match (at.parent().map(Path::canonicalize), at.file_name()) {
        (Some(Ok(parent)), Some(name)) => parent.join(name),
        _ => at.to_path_buf(),
    }
}

/// mountinfo's octal escapes (`\040` for a space, `\134` for `\`…).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `at` is a mount point (from `/proc/self/mountinfo`).
pub fn is_mounted(at: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = mount_path(at);
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|point| Path::new(&unescape(point)) == wanted)
}

/// Lazily unmounts whatever is mounted at `at` (a mount left by a killed Kiln
/// answers "Transport endpoint is not connected").
pub fn clear_stale(at: &Path) {
    if !is_mounted(at) {
        return;
    }
    tracing::info!(path = %at.display(), "unmounting a FUSE mount that is no longer served");
    let at = mount_path(at);
    for (program, flag) in [
        ("fusermount3", "-uz"),
        ("fusermount", "-uz"),
        ("umount", "-l"),
    ] {
        let _ = std::process::Command::new(program)
            .arg(flag)
            .arg(&at)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !is_mounted(&at) {
            return;
        }
    }
}

/// s3fs's version as (major, minor), from `s3fs --version`.
fn s3fs_version() -> Option<(u32, u32)> {
    let out = std::process::Command::new("s3fs")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = text.split_whitespace().find_map(|w| w.strip_prefix('V'))?;
    let mut parts = version.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// What starts s3fs (built once, run again after a crash).
struct Spec {
    args: Vec<String>,
    env: Vec<(String, String)>,
    home: PathBuf,
    at: PathBuf,
}

impl Spec {
    fn new(root: &ObjectRoot, rel: &str, at: &Path, home: &Path, gid: Option<u32>) -> Result<Self> {
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
        // From 1.91 s3fs sees directories without a `dir/` marker (what the
        // Files API and engines write) only with compat_dir; 1.90 refuses it.
        if s3fs_version().is_some_and(|v| v >= (1, 91)) {
            options.push("compat_dir".into());
        }
        if !config.virtual_hosted_style {
            options.push("use_path_request_style".into());
        }
        match gid {
            // s3fs checks a caller's groups against /etc/group, not the
            // process's supplementary groups, so the data group's members
            // would be refused: the mount is open to all, and the directory it
            // is in (DBFS, mode 2770, group `gid`) keeps out everyone else.
            Some(gid) => options.push(format!(
                "allow_other,default_permissions,uid=0,gid={gid},umask=000,mp_umask=000"
            )),
            None => options.push("umask=077".into()),
        }
        let env = root
            .engine_env()
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
            .collect();
        let at = mount_path(at);
        Ok(Self {
            args: vec![
                format!("{}:/{}", root.bucket(), root.key(rel)?),
                at.display().to_string(),
                "-f".into(),
                "-o".into(),
                options.join(","),
            ],
            env,
            home: home.to_path_buf(),
            at,
        })
    }

    /// Starts s3fs and waits for the mount to appear.
    async fn start(&self) -> Result<tokio::process::Child> {
        let mut command = tokio::process::Command::new("s3fs");
        command
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", &self.home)
            .envs(self.env.iter().cloned())
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
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
        while !is_mounted(&self.at) {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::invalid(format!(
                    "[storage] the FUSE mount at {} failed: s3fs exited with {status}",
                    self.at.display()
                )));
            }
            if started.elapsed() > MOUNT_TIMEOUT {
                let _ = child.start_kill();
                return Err(Error::invalid(format!(
                    "[storage] the FUSE mount at {} did not appear within 20 s",
                    self.at.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(child)
    }
}

/// Keeps s3fs serving the mount until `stop`: a crashed s3fs leaves a dead
/// mount, which is cleared and mounted again (backing off up to 30 s).
async fn supervise(spec: Spec, mut child: tokio::process::Child, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                let at = spec.at.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    std::process::Command::new("fusermount3")
                        .arg("-u")
                        .arg(&at)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                })
                .await;
                // s3fs exits once unmounted (after the writes in flight).
                if tokio::time::timeout(Duration::from_secs(30), child.wait()).await.is_err() {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
                clear_stale(&spec.at);
                return;
            }
            status = child.wait() => {
                tracing::error!(path = %spec.at.display(), status = ?status, "s3fs exited; mounting again");
                clear_stale(&spec.at);
                let mut delay = Duration::from_millis(500);
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    match spec.start().await {
                        Ok(started) => {
                            tracing::info!(path = %spec.at.display(), "object storage mounted again");
                            child = started;
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "mounting object storage failed; retrying");
                            delay = (delay * 2).min(MAX_BACKOFF);
                        }
                    }
                }
            }
        }
    }
}

impl FuseMount {
    /// Mounts `<root>/<rel>` at `at`; `home` is s3fs's home directory.
    pub async fn mount(
        root: &ObjectRoot,
        rel: &str,
        at: &Path,
        home: &Path,
        gid: Option<u32>,
    ) -> Result<Self> {
        clear_stale(at);
        for dir in [at, home] {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::internal("create a directory for the FUSE mount", e))?;
        }
        let spec = Spec::new(root, rel, at, home, gid)?;
        let child = spec.start().await?;
        tracing::info!(path = %spec.at.display(), remote = %spec.args[0], "object storage mounted for user code");
        let stop = CancellationToken::new();
        let at = spec.at.clone();
        let task = tokio::spawn(supervise(spec, child, stop.clone()));
        Ok(Self {
            at,
            stop,
            task: tokio::sync::Mutex::new(Some(task)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.at
    }

    /// Unmounts and waits for s3fs to exit (it finishes the writes in flight;
    /// killed after 30 s).
    pub async fn unmount(&self) {
        self.stop.cancel();
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FuseMount {
    /// A mount dropped without `unmount` (Kiln failing to start after it):
    /// s3fs is killed with its task, and the mount is cleared.
    fn drop(&mut self) {
        self.stop.cancel();
        if let Ok(mut task) = self.task.try_lock() {
            if let Some(task) = task.take() {
                task.abort();
                clear_stale(&self.at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/a\\040b/c\\134d"), "/a b/c\\d");
        assert_eq!(unescape("/plain/path"), "/plain/path");
        assert_eq!(unescape("/odd\\9x"), "/odd\\9x");
    }

    #[test]
    fn mount_paths_resolve_their_parent() {
        let dir = std::env::temp_dir();
        let relative = Path::new(".").join("not-mounted-here");
        assert!(mount_path(&relative).is_absolute());
        assert!(!is_mounted(&dir.join("kiln-surely-not-a-mount")));
    }
}

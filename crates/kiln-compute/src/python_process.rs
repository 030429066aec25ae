//! Kiln's own Python processes — execution-context kernels and pipeline
//! workers. Each crate embeds its Python package in the binary; [`install`]
//! unpacks one into the cache (once per content hash), so a `kiln` binary is
//! self-contained. [`PythonProcess::spawn`] starts a module of them the one way
//! Kiln starts user-facing Python: in the sandbox view, as the process's
//! identity, with a private scratch home, line-delimited JSON on its pipes,
//! stderr to its log, and `PR_SET_PDEATHSIG = SIGKILL` so it dies with Kiln;
//! [`handshake`] waits for the first message it sends when it is ready.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use kiln_core::process::OsIdentity;
use kiln_core::{Error, ErrorCode, Result};
use sha2::{Digest, Sha256};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::oneshot;

pub use crate::isolation::remove_scratch;
use crate::isolation::{Isolation, View};

/// How long a process may take to say it is ready (its Spark session is up).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Writes embedded Python `files` (`(path, text)`) under `cache`, in a
/// directory named after `name` and their content hash, and returns it (the
/// directory to put on `PYTHONPATH`).
pub fn install(cache: &Path, name: &str, files: &[(&str, &str)]) -> Result<PathBuf> {
    let mut hasher = Sha256::new();
    for (path, text) in files {
        hasher.update(path.as_bytes());
        hasher.update(text.as_bytes());
    }
    let root = cache.join(format!("{name}-{}", &hex::encode(hasher.finalize())[..12]));
    let failed = |e: std::io::Error| Error::internal(&format!("unpack the {name} sources"), e);
    if !root.join(".complete").exists() {
        // Several Kiln processes may unpack at once: unique temp names, atomic renames.
        let suffix = kiln_core::ids::random_hex(4);
        for (path, text) in files {
            let target = root.join(path);
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir).map_err(failed)?;
            }
            let tmp = root.join(format!("{path}.{suffix}.tmp"));
            std::fs::write(&tmp, text).map_err(failed)?;
            std::fs::rename(&tmp, target).map_err(failed)?;
        }
        std::fs::write(root.join(".complete"), b"").map_err(failed)?;
    }
    Ok(root)
}

/// One Python process to start.
pub struct PythonProcess<'a> {
    /// What it is, for errors: "a kernel", "the pipeline worker".
    pub what: &'static str,
    pub python: &'a Path,
    /// The module run with `python -m`.
    pub module: &'a str,
    /// The unpacked sources it imports, in order (its `PYTHONPATH`).
    pub sources: Vec<&'a Path>,
    pub spark_url: &'a str,
    pub dbfs_root: &'a Path,
    pub log: &'a Path,
    pub isolation: &'a Isolation,
    /// Who it runs as (`None`: as Kiln, without user isolation).
    pub identity: Option<&'a OsIdentity>,
    /// What it may read besides its sources, DBFS and the warehouse.
    pub read: Vec<&'a Path>,
    /// Further environment variables.
    pub env: Vec<(&'static str, OsString)>,
    /// Whether it reads managed tables' Delta logs on the object-store root
    /// itself (the pipeline worker: `Some(cluster id)`), and so gets the
    /// store's `AWS_*` settings as engines do. Kernels get only the URL.
    pub reads_table_logs: Option<&'a str>,
}

/// A started process: its pipes and its private scratch directory (its home,
/// which the owner removes with [`remove_scratch`] when the process ends).
pub struct Started {
    pub child: Child,
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
    pub pid: u32,
    pub scratch: PathBuf,
    /// Its credentials lease (scoped engine credentials), kept while it runs.
    pub lease: Option<kiln_storage::Lease>,
}

impl PythonProcess<'_> {
    pub fn spawn(self) -> Result<Started> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log)
            .map_err(|e| Error::internal(&format!("open the log of {}", self.what), e))?;
        let scratch = self.isolation.scratch(self.identity)?;
        let (dbfs, warehouse) = (self.isolation.dbfs(), self.isolation.warehouse());
        let mut ro = self.read.clone();
        ro.extend(self.sources.iter().copied());
        let view = View {
            rw: vec![&scratch, &dbfs, &warehouse],
            ro,
            cwd: &scratch,
        };
        let mut command = self.isolation.command(self.python, &view);
        Isolation::base_env(&mut command, &scratch);
        let python_path = std::env::join_paths(&self.sources)
            .map_err(|e| Error::internal("join the Python sources' paths", e))?;
        command
            .args(["-u", "-m", self.module])
            .env("PYTHONPATH", python_path)
            .env("KILN_SPARK_URL", self.spark_url)
            .env("KILN_DBFS_ROOT", self.dbfs_root)
            .env("KILN_EXTERNAL_LOCATIONS", self.isolation.external_env())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .envs(self.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        let mut lease = None;
        if let Some(access) = self.isolation.object_store() {
            command.env("KILN_DBFS_URL", &access.dbfs_url);
            if let Some(session) = self.reads_table_logs {
                let (env, held) = access.process_env(session);
                command.envs(env);
                lease = held;
            }
        }
        kiln_core::process::spawn_as(command.as_std_mut(), self.identity);
        let mut child = kiln_core::process::spawn(command).map_err(|e| {
            remove_scratch(scratch.clone());
            Error::new(
                ErrorCode::TemporarilyUnavailable,
                format!("cannot start {}: {e}", self.what),
            )
        })?;
        let pid = child.id().unwrap_or(0);
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            remove_scratch(scratch);
            return Err(Error::internal(&format!("start {}", self.what), "no pipes"));
        };
        Ok(Started {
            child,
            stdin,
            stdout,
            pid,
            scratch,
            lease,
        })
    }
}

/// The first message a process sends when it is ready, or `None` when it
/// exited or stayed silent for [`READY_TIMEOUT`].
pub async fn handshake<T>(ready: oneshot::Receiver<T>) -> Option<T> {
    tokio::time::timeout(READY_TIMEOUT, ready).await.ok()?.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_unpack_once_per_content() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::internal("tempdir", e))?;
        let files = [("pkg/__init__.py", ""), ("pkg/m.py", "X = 1\n")];
        let a = install(dir.path(), "pkg", &files)?;
        assert_eq!(install(dir.path(), "pkg", &files)?, a);
        assert_eq!(
            std::fs::read_to_string(a.join("pkg/m.py")).map_err(|e| Error::internal("read", e))?,
            "X = 1\n"
        );
        let b = install(dir.path(), "pkg", &[("pkg/m.py", "X = 2\n")])?;
        assert_ne!(a, b);
        Ok(())
    }
}

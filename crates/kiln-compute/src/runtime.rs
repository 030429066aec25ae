//! The engine runtime: a Python venv holding `pysail`, `pyspark-client` and the
//! packages kernels need, installed once into a per-user cache and shared by
//! every data dir. The venv's directory name carries a hash of the pinned
//! requirements, so a changed pin installs a new runtime beside the old one.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kiln_core::{Error, ErrorCode, Result};
use sha2::{Digest, Sha256};

/// Pinned requirements of the runtime venv (`crates/kiln-compute/python/`).
pub const REQUIREMENTS: &str = include_str!("../python/requirements-runtime.txt");
const READY_MARKER: &str = ".kiln-ready";
const MIN_PYTHON: (u32, u32) = (3, 9);

/// An installed runtime.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub root: PathBuf,
    pub python: PathBuf,
    pub sail: PathBuf,
}

/// Where the runtime lives when Kiln runs as root: user code runs as
/// unprivileged users that must reach it, and root's home usually is 0700.
pub const ROOT_CACHE_DIR: &str = "/var/cache/kiln";

/// `$KILN_CACHE_DIR`, else `/var/cache/kiln` for root, else
/// `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KILN_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if kiln_core::process::is_root() {
        return PathBuf::from(ROOT_CACHE_DIR);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("kiln");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache").join("kiln")
}

fn runtime_dir(cache: &Path) -> PathBuf {
    let digest = Sha256::digest(REQUIREMENTS.as_bytes());
    cache.join(format!("runtime-{}", &hex::encode(digest)[..12]))
}

impl Runtime {
    fn at(root: PathBuf) -> Self {
        Self {
            python: root.join("bin/python"),
            sail: root.join("bin/sail"),
            root,
        }
    }

    /// The runtime if it is installed and complete.
    pub fn find(cache: &Path) -> Option<Self> {
        let root = runtime_dir(cache);
        root.join(READY_MARKER).exists().then(|| Self::at(root))
    }

    /// Installs the runtime if needed (blocking; minutes on a fresh machine) and
    /// returns it. Concurrent installers wait on a lock file.
    pub fn ensure(cache: &Path) -> Result<Self> {
        if let Some(found) = Self::find(cache) {
            return Ok(found);
        }
        fs::create_dir_all(cache)
            .map_err(|e| setup_error(format!("cannot create {}: {e}", cache.display())))?;
        let lock = File::create(cache.join("runtime.lock"))
            .map_err(|e| setup_error(format!("cannot create the install lock: {e}")))?;
        let _guard = FileLock::acquire(&lock)?;
        if let Some(found) = Self::find(cache) {
            return Ok(found);
        }
        install(&runtime_dir(cache), &find_python()?)?;
        Self::find(cache).ok_or_else(|| setup_error("runtime install did not complete".into()))
    }

    /// The runtime built on `python` (an interpreter of `minor` that the
    /// engine's users can run), installed beside the default one if needed.
    pub fn ensure_for(cache: &Path, python: &Path, minor: crate::pythons::Minor) -> Result<Self> {
        let root = PathBuf::from(format!(
            "{}-py{}",
            runtime_dir(cache).display(),
            crate::pythons::show(minor)
        ));
        if root.join(READY_MARKER).exists() {
            return Ok(Self::at(root));
        }
        fs::create_dir_all(cache)
            .map_err(|e| setup_error(format!("cannot create {}: {e}", cache.display())))?;
        let lock = File::create(cache.join("runtime.lock"))
            .map_err(|e| setup_error(format!("cannot create the install lock: {e}")))?;
        let _guard = FileLock::acquire(&lock)?;
        if !root.join(READY_MARKER).exists() {
            install(&root, python)?;
        }
        Ok(Self::at(root))
    }

    /// The Python minor the runtime runs (from its `pyvenv.cfg`).
    pub fn minor(&self) -> Option<crate::pythons::Minor> {
        let cfg = fs::read_to_string(self.root.join("pyvenv.cfg")).ok()?;
        let version = cfg.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            matches!(key.trim(), "version" | "version_info").then(|| value.trim().to_string())
        })?;
        let mut parts = version.split('.');
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }
}

fn setup_error(message: String) -> Error {
    Error::new(ErrorCode::TemporarilyUnavailable, message)
}

fn install(root: &Path, python: &Path) -> Result<()> {
    if root.exists() {
        fs::remove_dir_all(root)
            .map_err(|e| setup_error(format!("cannot clear {}: {e}", root.display())))?;
    }
    eprintln!(
        "kiln: installing the engine runtime into {} (first run only)",
        root.display()
    );
    run(
        Command::new(python).arg("-m").arg("venv").arg(root),
        "create the runtime venv",
        "install Python's venv module (Debian/Ubuntu: apt-get install python3-venv)",
    )?;
    let requirements = root.join("requirements.txt");
    fs::write(&requirements, REQUIREMENTS)
        .map_err(|e| setup_error(format!("cannot write requirements: {e}")))?;
    let pip = root.join("bin/pip");
    run(
        Command::new(&pip)
            .args([
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "-q",
                "-r",
            ])
            .arg(&requirements),
        "install the engine packages (pysail, pyspark-client, pandas, pyarrow)",
        "check that PyPI is reachable, or set PIP_INDEX_URL to a mirror",
    )?;
    fs::write(root.join(READY_MARKER), REQUIREMENTS)
        .map_err(|e| setup_error(format!("cannot mark runtime ready: {e}")))?;
    Ok(())
}

/// `$KILN_PYTHON`, else `python3`, checked for version and the venv module.
/// As root, the interpreter must be reachable by unprivileged users (a venv
/// links to it): a `python3` under an unreachable home falls back to
/// `/usr/bin/python3`.
fn find_python() -> Result<PathBuf> {
    let python = match std::env::var_os("KILN_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => default_python(),
    };
    let probe = Command::new(&python)
        .args(["-c", "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .map_err(|_| setup_error(format!(
            "{} not found: install Python {}.{}+ (Debian/Ubuntu: apt-get install python3 python3-venv)",
            python.display(), MIN_PYTHON.0, MIN_PYTHON.1
        )))?;
    if !probe.status.success() {
        return Err(setup_error(format!(
            "{} lacks the venv/ensurepip modules: install them (Debian/Ubuntu: apt-get install python3-venv)",
            python.display()
        )));
    }
    let version = String::from_utf8_lossy(&probe.stdout).trim().to_string();
    let mut parts = version.split('.').filter_map(|p| p.parse::<u32>().ok());
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found < MIN_PYTHON {
        return Err(setup_error(format!(
            "Python {version} is too old: Kiln's engine runtime needs Python {}.{}+",
            MIN_PYTHON.0, MIN_PYTHON.1
        )));
    }
    Ok(python)
}

fn default_python() -> PathBuf {
    let plain = PathBuf::from("python3");
    if !kiln_core::process::is_root() {
        return plain;
    }
    let resolved = Command::new("python3")
        .args([
            "-c",
            "import os, sys; print(os.path.realpath(sys.executable))",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    match resolved {
        Some(path) if reachable(&path) => plain,
        _ if Path::new("/usr/bin/python3").exists() => PathBuf::from("/usr/bin/python3"),
        _ => plain,
    }
}

/// A file whose directories unprivileged users can search.
fn reachable(path: &Path) -> bool {
    path.parent()
        .is_some_and(kiln_core::process::reachable_by_others)
}

impl Runtime {
    /// The interpreter installation the venv links to (`home` in `pyvenv.cfg`,
    /// minus `bin`): sandboxed processes must see it.
    pub fn base_prefix(&self) -> Option<PathBuf> {
        let cfg = fs::read_to_string(self.root.join("pyvenv.cfg")).ok()?;
        let home = cfg.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == "home").then(|| PathBuf::from(value.trim()))
        })?;
        home.parent().map(Path::to_path_buf)
    }

    /// Read-only paths a sandboxed process needs to run the runtime's Python.
    pub fn read_paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.root.clone()];
        paths.extend(self.base_prefix());
        paths
    }

    /// As root, checks that unprivileged users can run the runtime's Python
    /// (and so the interpreter it links to); the message tells the fix.
    pub fn check_reachable(&self) -> Result<()> {
        let real = self
            .python
            .canonicalize()
            .unwrap_or_else(|_| self.python.clone());
        if reachable(&self.root.join("bin")) && reachable(&real) {
            return Ok(());
        }
        Err(setup_error(format!(
            "Kiln runs as root and runs user code as unprivileged users, which cannot reach the engine runtime {} (its Python is {}): \
             set KILN_CACHE_DIR to a directory others can search (default for root: {ROOT_CACHE_DIR}) and KILN_PYTHON to a Python outside a private home (e.g. /usr/bin/python3), then run `kiln setup`",
            self.root.display(),
            real.display()
        )))
    }
}

fn run(command: &mut Command, what: &str, hint: &str) -> Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| setup_error(format!("cannot {what}: {e}; {hint}")))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err(setup_error(format!(
        "cannot {what} ({}): {}\n{hint}",
        output.status,
        tail.join("\n")
    )))
}

/// An exclusive advisory lock on a file, released on drop.
pub(crate) struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    pub(crate) fn acquire(file: &'a File) -> Result<Self> {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a valid, open file descriptor.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(setup_error("cannot lock the runtime cache".into()));
        }
        Ok(Self(file))
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking the descriptor locked in `acquire`.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_are_pinned() {
        for line in REQUIREMENTS
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            assert!(line.contains("=="), "unpinned runtime requirement: {line}");
        }
        assert!(REQUIREMENTS.contains("pysail=="));
        assert!(REQUIREMENTS.contains("pyspark-client=="));
    }

    #[test]
    fn runtime_dir_depends_on_requirements_only() {
        let a = runtime_dir(Path::new("/c"));
        assert_eq!(a, runtime_dir(Path::new("/c")));
        assert!(a.to_string_lossy().starts_with("/c/runtime-"));
    }

    #[test]
    fn missing_runtime_is_not_found() {
        let dir = tempfile::tempdir().ok();
        let path = dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default();
        assert!(Runtime::find(&path).is_none());
    }
}

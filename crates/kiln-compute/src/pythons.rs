//! One engine runtime per Python minor. A Databricks runtime version runs a
//! given Python (13.x–14.x: 3.10, 15.x: 3.11, 16.x and newer: 3.12), and a
//! Python UDF only runs on the minor that compiled it, so each cluster's
//! engine runs on a runtime built from an interpreter of its minor, found on
//! this host: `[runtime] pythons`, `python3.X` on PATH, pyenv's versions.
//!
//! As root, user code runs as unprivileged users who cannot enter a private
//! home: an interpreter there (pyenv's under `/root`) is copied to the cache
//! first, its library path made relative (`$ORIGIN/../lib`).

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_core::{Error, ErrorCode, Result};

/// A Python minor version, e.g. `(3, 12)`.
pub type Minor = (u32, u32);

pub fn show(minor: Minor) -> String {
    format!("{}.{}", minor.0, minor.1)
}

/// The Python minor a Databricks runtime version (`16.4.x-scala2.12`) runs.
pub fn for_spark_version(spark_version: &str) -> Minor {
    let major: u32 = spark_version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(16);
    match major {
        0..=10 => (3, 8),
        11..=12 => (3, 9),
        13..=14 => (3, 10),
        15 => (3, 11),
        _ => (3, 12),
    }
}

/// A minor asked for explicitly: `PYSPARK_PYTHON` in the cluster's
/// `spark_env_vars` naming `python3.X` (a name or a path ending in one).
pub fn requested(env: &std::collections::BTreeMap<String, String>) -> Option<Minor> {
    let value = env.get("PYSPARK_PYTHON")?;
    let name = value.rsplit('/').next()?;
    let version = name.strip_prefix("python")?;
    let (major, minor) = version.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Probes an interpreter: its minor, when it runs and has `venv`/`ensurepip`.
pub fn probe(python: &Path) -> Option<Minor> {
    let out = Command::new(python)
        .args([
            "-c",
            "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2])",
        ])
        .env_remove("PYTHONPATH")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (major, minor) = text.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Interpreters that may serve `minor`, best first.
fn candidates(minor: Minor, configured: &[PathBuf]) -> Vec<PathBuf> {
    let name = format!("python{}", show(minor));
    let mut out: Vec<PathBuf> = configured.to_vec();
    if let Some(path) = std::env::var_os("PATH") {
        out.extend(std::env::split_paths(&path).map(|dir| dir.join(&name)));
    }
    out.extend(["/usr/bin", "/usr/local/bin"].map(|d| Path::new(d).join(&name)));
    let pyenv_root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    if let Some(root) = pyenv_root {
        if let Ok(entries) = std::fs::read_dir(root.join("versions")) {
            let mut versions: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{}.", show(minor)))
                })
                .map(|e| e.path().join("bin").join(&name))
                .collect();
            versions.sort();
            versions.reverse();
            out.extend(versions);
        }
    }
    out
}

/// An interpreter of `minor` on this host, if any.
pub fn find(minor: Minor, configured: &[PathBuf]) -> Option<PathBuf> {
    candidates(minor, configured)
        .into_iter()
        .filter(|p| p.is_file())
        .find(|p| probe(p) == Some(minor))
}

/// An interpreter others can run: `python` itself, or (as root, when it lives
/// where unprivileged users cannot reach) a copy of its installation in
/// `<cache>/pythons/`.
pub fn reachable_copy(python: &Path, cache: &Path, minor: Minor) -> Result<PathBuf> {
    let real = python
        .canonicalize()
        .unwrap_or_else(|_| python.to_path_buf());
    if !kiln_core::process::is_root()
        || real
            .parent()
            .is_some_and(kiln_core::process::reachable_by_others)
    {
        return Ok(python.to_path_buf());
    }
    let prefix = prefix_of(python)?;
    let name = format!("python{}", show(minor));
    let target = cache
        .join("pythons")
        .join(format!("cpython-{}", show(minor)));
    let copied = target.join("bin").join(&name);
    if target.join(".kiln-ready").exists() && probe(&copied) == Some(minor) {
        return Ok(copied);
    }
    let staging = cache
        .join("pythons")
        .join(format!(".copy-{}", kiln_core::ids::random_hex(4)));
    std::fs::create_dir_all(staging.parent().unwrap_or(cache))
        .map_err(|e| setup_error(format!("cannot create {}: {e}", cache.display())))?;
    tracing::info!(from = %prefix.display(), to = %target.display(), "copying a Python installation where user code can run it");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&prefix)
        .arg(&staging)
        .status()
        .map_err(|e| setup_error(format!("cannot copy {}: {e}", prefix.display())))?;
    if !status.success() {
        return Err(setup_error(format!("cannot copy {}", prefix.display())));
    }
    let lib = staging.join("lib").join(&name);
    let _ = std::fs::remove_dir_all(lib.join("test"));
    if let Ok(entries) = std::fs::read_dir(lib.join("site-packages")) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_dir_all(entry.path());
            let _ = std::fs::remove_file(entry.path());
        }
    }
    relative_runpath(&staging.join("bin").join(&name), &prefix)?;
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&staging)
        .status();
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&staging, &target)
        .map_err(|e| setup_error(format!("cannot place {}: {e}", target.display())))?;
    if probe(&copied) != Some(minor) {
        return Err(setup_error(format!(
            "the copy of {} in {} does not run",
            python.display(),
            target.display()
        )));
    }
    std::fs::write(target.join(".kiln-ready"), prefix.display().to_string())
        .map_err(|e| setup_error(format!("cannot mark {}: {e}", target.display())))?;
    Ok(copied)
}

/// `sys.prefix` of an interpreter.
fn prefix_of(python: &Path) -> Result<PathBuf> {
    let out = Command::new(python)
        .args(["-c", "import sys; print(sys.prefix)"])
        .output()
        .map_err(|e| setup_error(format!("cannot run {}: {e}", python.display())))?;
    let prefix = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() || !prefix.is_absolute() {
        return Err(setup_error(format!(
            "cannot find the installation of {}",
            python.display()
        )));
    }
    Ok(prefix)
}

/// A copied interpreter links its `libpython` through an absolute RUNPATH
/// into the original prefix: rewrite it (in place, NUL-padded) to
/// `$ORIGIN/../lib`, which is shorter.
fn relative_runpath(binary: &Path, prefix: &Path) -> Result<()> {
    let mut bytes = std::fs::read(binary)
        .map_err(|e| setup_error(format!("cannot read {}: {e}", binary.display())))?;
    let old = format!("{}\0", prefix.join("lib").display());
    let hits: Vec<usize> = bytes
        .windows(old.len())
        .enumerate()
        .filter(|(_, w)| *w == old.as_bytes())
        .map(|(i, _)| i)
        .collect();
    match hits.as_slice() {
        [] => Ok(()), // a static build: nothing to rewrite
        [at] => {
            let new = b"$ORIGIN/../lib";
            if new.len() >= old.len() {
                return Err(setup_error(format!(
                    "cannot relocate {}: its library path is too short",
                    binary.display()
                )));
            }
            let slot = &mut bytes[*at..*at + old.len()];
            slot.fill(0);
            slot[..new.len()].copy_from_slice(new);
            std::fs::write(binary, &bytes)
                .map_err(|e| setup_error(format!("cannot write {}: {e}", binary.display())))
        }
        _ => Err(setup_error(format!(
            "cannot relocate {}: its prefix appears more than once",
            binary.display()
        ))),
    }
}

fn setup_error(message: String) -> Error {
    Error::new(ErrorCode::TemporarilyUnavailable, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn runtimes_map_to_databricks_python_minors() {
        assert_eq!(for_spark_version("13.3.x-scala2.12"), (3, 10));
        assert_eq!(for_spark_version("14.3.x-scala2.12"), (3, 10));
        assert_eq!(for_spark_version("15.4.x-scala2.12"), (3, 11));
        assert_eq!(for_spark_version("16.4.x-scala2.12"), (3, 12));
        assert_eq!(for_spark_version("19.3.x-scala2.13"), (3, 12));
    }

    #[test]
    fn pyspark_python_names_a_minor() {
        let env = |v: &str| BTreeMap::from([("PYSPARK_PYTHON".to_string(), v.to_string())]);
        assert_eq!(requested(&env("python3.11")), Some((3, 11)));
        assert_eq!(
            requested(&env("/databricks/python3/bin/python3.12")),
            Some((3, 12))
        );
        assert_eq!(requested(&env("/usr/bin/python3")), None);
        assert_eq!(requested(&BTreeMap::new()), None);
    }

    #[test]
    fn a_runpath_is_rewritten_in_place() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let binary = dir.path().join("python3.12");
        let mut bytes = b"\x7fELF....".to_vec();
        bytes.extend_from_slice(b"/root/.pyenv/versions/3.12.1/lib\0tail");
        std::fs::write(&binary, &bytes)?;
        relative_runpath(&binary, Path::new("/root/.pyenv/versions/3.12.1"))?;
        let after = std::fs::read(&binary)?;
        assert_eq!(after.len(), bytes.len());
        assert!(after.windows(15).any(|w| w == b"$ORIGIN/../lib\0"));
        assert!(after.ends_with(b"\0tail"));
        Ok(())
    }
}

//! Each cluster's Python environment: a venv (without pip) layered over the
//! engine runtime through a `.pth` file, so libraries installed on one cluster
//! never reach another, while the runtime's packages stay shared. pip runs from
//! the runtime (`pip --python <cluster env>`) and sees runtime packages as
//! already installed.

use std::path::{Path, PathBuf};

use kiln_core::{Error, Result};
use tokio::process::Command;

use crate::runtime::Runtime;

const RUNTIME_PTH: &str = "kiln-runtime.pth";

/// The environment's directory for a cluster's engine directory.
pub fn env_dir(engine_dir: &Path) -> PathBuf {
    engine_dir.join("pyenv")
}

pub fn python(engine_dir: &Path) -> PathBuf {
    env_dir(engine_dir).join("bin/python")
}

/// `lib/python3.X/site-packages` under `root`, mirroring the runtime's layout.
fn site_packages(runtime: &Runtime, root: &Path) -> Result<PathBuf> {
    let lib = runtime.root.join("lib");
    let entries = std::fs::read_dir(&lib).map_err(|e| Error::internal("inspect the runtime", e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("python3") {
            return Ok(root.join("lib").join(name).join("site-packages"));
        }
    }
    Err(Error::internal(
        "inspect the runtime",
        "no lib/python3.* directory",
    ))
}

/// The cluster environment's site-packages (where libraries go).
pub fn libs_dir(runtime: &Runtime, engine_dir: &Path) -> Result<PathBuf> {
    site_packages(runtime, &env_dir(engine_dir))
}

/// Creates the environment if missing (atomically: built aside, then renamed).
/// With an identity (the cluster's), the environment belongs to it.
pub async fn ensure(
    runtime: &Runtime,
    engine_dir: &Path,
    identity: Option<&kiln_core::process::OsIdentity>,
) -> Result<PathBuf> {
    let target = env_dir(engine_dir);
    let runtime_site = site_packages(runtime, &runtime.root)?;
    if target.join("bin/python").exists() {
        if linked_runtime(&target).as_deref() == Some(runtime_site.as_path()) {
            return Ok(python(engine_dir));
        }
        // Built on another runtime (the cluster's Python changed): its
        // libraries were for that Python, so it starts over.
        let stale = target.clone();
        kiln_core::blocking::run(move || std::fs::remove_dir_all(stale))
            .map_err(|e| Error::internal("replace a cluster environment", e))?;
    }
    crate::isolation::own_dir(engine_dir, identity, 0o750)?;
    let staging = engine_dir.join(format!("pyenv.{}", kiln_core::ids::random_hex(4)));
    let status = Command::new(&runtime.python)
        .args(["-m", "venv", "--without-pip"])
        .arg(&staging)
        .status()
        .await
        .map_err(|e| Error::internal("create a cluster environment", e))?;
    if !status.success() {
        return Err(Error::internal("create a cluster environment", status));
    }
    let own_site = site_packages(runtime, &staging)?;
    kiln_core::blocking::run(|| {
        std::fs::create_dir_all(&own_site)
            .and_then(|()| {
                std::fs::write(
                    own_site.join(RUNTIME_PTH),
                    format!("{}\n", runtime_site.display()),
                )
            })
            .map_err(|e| Error::internal("create a cluster environment", e))?;
        crate::isolation::give_tree(&staging, identity)
    })?;
    kiln_core::blocking::run(|| {
        if std::fs::rename(&staging, &target).is_err() {
            let _ = std::fs::remove_dir_all(&staging); // another task created it first
        }
    });
    Ok(python(engine_dir))
}

/// The runtime site-packages an environment links to (its `.pth`).
fn linked_runtime(env: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(env.join("lib")).ok()?;
    lib.flatten().find_map(|entry| {
        let pth = entry.path().join("site-packages").join(RUNTIME_PTH);
        let text = std::fs::read_to_string(pth).ok()?;
        Some(PathBuf::from(text.trim()))
    })
}

/// Removes every installed library, keeping the link to the runtime.
pub fn clear(runtime: &Runtime, engine_dir: &Path) -> Result<()> {
    let site = libs_dir(runtime, engine_dir)?;
    let Ok(entries) = std::fs::read_dir(&site) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if entry.file_name() == RUNTIME_PTH {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() {
            kiln_core::blocking::run(|| std::fs::remove_dir_all(&path))
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| Error::internal("clear a cluster environment", e))?;
    }
    Ok(())
}

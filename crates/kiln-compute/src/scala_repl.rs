//! Spark Connect's Scala REPL for Scala execution contexts: the jars of the
//! full `pyspark` distribution from PyPI (`deps/jars`, with `connect-repl/`:
//! Ammonite and the Scala Spark Connect client) and Kiln's driver
//! (`crates/kiln-compute/python/kiln_kernel/scala/KilnScalaRepl.java`) compiled by the host's
//! JDK. Installed into the cache the first time a Scala context is asked for
//! (minutes on a fresh machine: a 434 MB download), with progress in the log.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_core::{Error, ErrorCode, Result};
use sha2::{Digest, Sha256};

use crate::runtime::{FileLock, Runtime};

/// The pyspark release whose jars (Spark 4.0's Scala client) Kiln runs.
pub const PYSPARK_VERSION: &str = "4.0.1";
const DRIVER: &str = include_str!("../python/kiln_kernel/scala/KilnScalaRepl.java");
const READY: &str = ".kiln-ready";

/// An installed REPL: `home` holds `jars/` and `driver/`.
#[derive(Debug, Clone)]
pub struct ScalaRepl {
    pub home: PathBuf,
    pub java: PathBuf,
}

fn unavailable(message: String) -> Error {
    Error::new(ErrorCode::TemporarilyUnavailable, message)
}

/// A JDK tool (`java`, `javac`) from `JAVA_HOME` or PATH.
fn jdk_tool(name: &str) -> Option<PathBuf> {
    let from_home = std::env::var_os("JAVA_HOME").map(|h| PathBuf::from(h).join("bin").join(name));
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    from_home
        .into_iter()
        .chain(on_path)
        .find(|p| p.is_file())
        .map(|p| p.canonicalize().unwrap_or(p))
}

fn run(command: &mut Command, what: &str) -> Result<()> {
    let out = command
        .output()
        .map_err(|e| unavailable(format!("cannot {what}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
    Err(unavailable(format!(
        "cannot {what} ({}): {}",
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )))
}

/// The REPL, installed if needed (blocking).
pub fn ensure(cache: &Path, runtime: &Runtime) -> Result<ScalaRepl> {
    let (java, javac) = match (jdk_tool("java"), jdk_tool("javac")) {
        (Some(java), Some(javac)) => (java, javac),
        _ => {
            return Err(unavailable(
                "Scala contexts need a JDK 17 on Kiln's host (Debian/Ubuntu: apt-get install openjdk-17-jdk-headless)".into(),
            ))
        }
    };
    let digest = Sha256::digest(format!("{PYSPARK_VERSION}\n{DRIVER}").as_bytes());
    let home = cache.join(format!("scala-repl-{}", &hex::encode(digest)[..12]));
    if home.join(READY).exists() {
        return Ok(ScalaRepl { home, java });
    }
    fs::create_dir_all(cache)
        .map_err(|e| unavailable(format!("cannot create {}: {e}", cache.display())))?;
    let lock = File::create(cache.join("scala-repl.lock"))
        .map_err(|e| unavailable(format!("cannot create the install lock: {e}")))?;
    let _guard = FileLock::acquire(&lock)?;
    if home.join(READY).exists() {
        return Ok(ScalaRepl { home, java });
    }
    let work = cache.join(format!(".scala-repl-{}", kiln_core::ids::random_hex(4)));
    let result = install(&work, &home, runtime, &javac);
    let _ = fs::remove_dir_all(&work);
    result?;
    Ok(ScalaRepl { home, java })
}

fn install(work: &Path, home: &Path, runtime: &Runtime, javac: &Path) -> Result<()> {
    let download = work.join("download");
    fs::create_dir_all(&download)
        .map_err(|e| unavailable(format!("cannot create {}: {e}", download.display())))?;
    eprintln!("kiln: installing the Scala REPL for Scala contexts (pyspark {PYSPARK_VERSION}'s jars, about 430 MB, first time only)");
    tracing::info!(
        version = PYSPARK_VERSION,
        "downloading pyspark for the Scala REPL (first time only)"
    );
    run(
        Command::new(&runtime.python)
            .args([
                "-m",
                "pip",
                "download",
                "--disable-pip-version-check",
                "--no-input",
                "-q",
                "--no-deps",
                "--no-binary",
                ":all:",
            ])
            .arg(format!("pyspark=={PYSPARK_VERSION}"))
            .arg("-d")
            .arg(&download),
        "download pyspark (check that PyPI is reachable, or set PIP_INDEX_URL)",
    )?;
    let archive = download.join(format!("pyspark-{PYSPARK_VERSION}.tar.gz"));
    tracing::info!("unpacking the Scala REPL's jars");
    run(
        Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(work)
            .arg(format!("pyspark-{PYSPARK_VERSION}/deps/jars")),
        "unpack pyspark's jars",
    )?;
    let staging = work.join("home");
    fs::create_dir_all(staging.join("src"))
        .map_err(|e| unavailable(format!("cannot create {}: {e}", staging.display())))?;
    fs::rename(
        work.join(format!("pyspark-{PYSPARK_VERSION}/deps/jars")),
        staging.join("jars"),
    )
    .map_err(|e| unavailable(format!("cannot place the jars: {e}")))?;
    let source = staging.join("src/KilnScalaRepl.java");
    fs::write(&source, DRIVER).map_err(|e| unavailable(format!("cannot write the driver: {e}")))?;
    let jars = staging.join("jars");
    tracing::info!("compiling the Scala REPL driver");
    run(
        Command::new(javac)
            .arg("-cp")
            .arg(format!(
                "{}/connect-repl/*:{}/*",
                jars.display(),
                jars.display()
            ))
            .arg("-d")
            .arg(staging.join("driver"))
            .arg(&source),
        "compile the Scala REPL driver",
    )?;
    let _ = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&staging)
        .status();
    let _ = fs::remove_dir_all(home);
    fs::rename(&staging, home)
        .map_err(|e| unavailable(format!("cannot place {}: {e}", home.display())))?;
    fs::write(home.join(READY), PYSPARK_VERSION)
        .map_err(|e| unavailable(format!("cannot mark {}: {e}", home.display())))?;
    tracing::info!(home = %home.display(), "the Scala REPL is installed");
    Ok(())
}

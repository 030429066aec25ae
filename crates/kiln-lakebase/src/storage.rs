//! Where branch and endpoint data live, and how data directories are cloned:
//! offline (a stopped cluster, copied as is) or online (inside
//! `pg_backup_start`/`pg_backup_stop` on the running parent, so the copy is
//! consistent at the backup's stop LSN). Copies use reflinks where the
//! filesystem has them (`cp --reflink=auto`), a full copy otherwise.

use std::path::{Path, PathBuf};

use kiln_core::{Error, Result};

use crate::pg::{self, Postgres};

/// The on-disk layout under the Lakebase root (short names keep socket
/// paths under the 107-byte limit).
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn branch_dir(&self, branch_uid: &str) -> PathBuf {
        self.root.join("b").join(branch_uid)
    }
    /// The data directory of the branch's read-write endpoint.
    pub fn pgdata(&self, branch_uid: &str) -> PathBuf {
        self.branch_dir(branch_uid).join("pgdata")
    }
    pub fn archive(&self, branch_uid: &str) -> PathBuf {
        self.branch_dir(branch_uid).join("archive")
    }
    /// Where base backups are copied before they are renamed into their branch
    /// (outside it, so removing a branch never races with a copy into it).
    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }
    /// The branch's base backup (its point-in-time restore floor).
    pub fn base(&self, branch_uid: &str) -> PathBuf {
        self.branch_dir(branch_uid).join("base")
    }
    pub fn endpoint_dir(&self, endpoint_uid: &str) -> PathBuf {
        self.root.join("e").join(endpoint_uid)
    }
    pub fn socket_dir(&self, endpoint_uid: &str) -> PathBuf {
        self.endpoint_dir(endpoint_uid).join("s")
    }
    /// The data directory of a read replica (its own hot-standby clone).
    pub fn replica_pgdata(&self, endpoint_uid: &str) -> PathBuf {
        self.endpoint_dir(endpoint_uid).join("pgdata")
    }
    pub fn log(&self, endpoint_uid: &str) -> PathBuf {
        self.endpoint_dir(endpoint_uid).join("postgres.log")
    }
}

/// Removes a directory tree if it exists (again if an entry appeared while
/// it was being removed, e.g. a base backup renamed in).
pub fn remove(path: &Path) -> Result<()> {
    let mut attempt = 1;
    loop {
        match kiln_core::blocking::run(|| std::fs::remove_dir_all(path)) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && attempt < 3 => {
                attempt += 1
            }
            Err(e) => return Err(Error::internal(&format!("remove {}", path.display()), e)),
        }
    }
}

fn remove_runtime_files(pgdata: &Path) {
    for f in [
        "postmaster.pid",
        "postmaster.opts",
        "standby.signal",
        "recovery.signal",
    ] {
        let _ = std::fs::remove_file(pgdata.join(f));
    }
}

/// Copies a stopped cluster; returns its latest checkpoint LSN.
pub async fn clone_offline(pg: &Postgres, from: &Path, to: &Path) -> Result<String> {
    pg.copy_tree(from, to).await?;
    remove_runtime_files(to);
    checkpoint_lsn(pg, to).await
}

/// "Latest checkpoint location" of a stopped cluster (`pg_controldata`).
pub async fn checkpoint_lsn(pg: &Postgres, pgdata: &Path) -> Result<String> {
    let mut command = pg.command("pg_controldata");
    command.arg("-D").arg(pgdata);
    let out = pg.run(command, "pg_controldata").await?;
    out.lines()
        .find_map(|l| l.strip_prefix("Latest checkpoint location:"))
        .map(|l| l.trim().to_string())
        .ok_or_else(|| Error::internal("pg_controldata", "no checkpoint location"))
}

/// Copies a running cluster inside a non-exclusive backup (both calls on one
/// session); returns the backup's stop LSN. The copy carries `backup_label`,
/// so starting it replays to a consistent point.
pub async fn clone_online(
    pg: &Postgres,
    socket_dir: &Path,
    from: &Path,
    to: &Path,
) -> Result<String> {
    let client = pg::connect(socket_dir, "postgres").await?;
    let (start, stop) = if pg.install.major >= 15 {
        (
            "SELECT pg_backup_start('kiln-branch', true)",
            "SELECT lsn::text, labelfile FROM pg_backup_stop(false)",
        )
    } else {
        (
            "SELECT pg_start_backup('kiln-branch', true, false)",
            "SELECT lsn::text, labelfile FROM pg_stop_backup(false, false)",
        )
    };
    client
        .simple_query(start)
        .await
        .map_err(|e| Error::internal("start an online backup", pg::sql_error(&e)))?;
    let copied = copy_live(pg, from, to).await;
    let row = client
        .query_one(stop, &[])
        .await
        .map_err(|e| Error::internal("stop an online backup", pg::sql_error(&e)))?;
    copied?;
    let lsn: String = row.get(0);
    let label: String = row.get(1);
    // The WAL written up to the stop point, copied now rather than waited for
    // in the archive (pg_backup_stop polls archiving once a second): a segment
    // archived and recycled meanwhile is still found by restore_command.
    remove(&to.join("pg_wal"))?;
    copy_live(pg, &from.join("pg_wal"), &to.join("pg_wal")).await?;
    // The source's archiving state is not the copy's: its archiver starts clean.
    remove(&to.join("pg_wal").join("archive_status"))?;
    pg.make_dir(&to.join("pg_wal").join("archive_status"))?;
    remove_runtime_files(to);
    let _ = std::fs::remove_file(to.join("backup_label.old"));
    pg.write_file(&to.join("backup_label"), &label)?;
    Ok(lsn)
}

/// Copies a directory a running postgres keeps changing: files it removes
/// meanwhile (archive status flags, recycled segments, temporary files)
/// make `cp` fail, so the copy is tried again from scratch (three times).
/// What recovery needs is still there: backup files stay until the backup
/// stops, and WAL is also in the archive.
async fn copy_live(pg: &Postgres, from: &Path, to: &Path) -> Result<()> {
    let mut attempt = 1;
    loop {
        let mut command = pg.as_user("cp");
        command.args(["-a", "--reflink=auto"]).arg(from).arg(to);
        let output = command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .await
            .map_err(|e| Error::internal("copy a data directory", e))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        match output.status.success() {
            true => return Ok(()),
            false if attempt < 3 && stderr.contains("No such file") => {
                tracing::debug!(error = %stderr.trim(), "a file vanished during a live copy; again");
                remove(to)?;
                attempt += 1;
            }
            false => return Err(Error::internal("copy a data directory", stderr.trim())),
        }
    }
}

/// Marks a cloned directory to recover (to `target` settings) and promote.
pub fn prepare_recovery(pg: &Postgres, pgdata: &Path) -> Result<()> {
    pg.write_file(&pgdata.join("recovery.signal"), "")
}

/// Marks a cloned directory as a hot standby.
pub fn prepare_standby(pg: &Postgres, pgdata: &Path) -> Result<()> {
    pg.write_file(&pgdata.join("standby.signal"), "")
}

/// Bytes under a directory (a branch's logical size, roughly).
pub fn size_of(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => size_of(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Removes branch and endpoint data no record (live or deleted) names.
pub(crate) fn remove_unreferenced(root: &Path, branches: &[&str], endpoints: &[&str]) {
    for (dir, known) in [("b", branches), ("e", endpoints)] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !known.contains(&name.as_str()) {
                tracing::warn!(path = %entry.path().display(), "removing Lakebase data no record names");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_keeps_socket_paths_short() {
        let layout = Layout {
            root: PathBuf::from("/tmp/kiln-lakebase-0123456789/lakebase"),
        };
        let socket = layout.socket_dir("ep-abcdefghijkl").join(".s.PGSQL.5432");
        assert!(socket.as_os_str().len() < 100, "{}", socket.display());
        assert_eq!(
            layout.pgdata("br-x"),
            PathBuf::from("/tmp/kiln-lakebase-0123456789/lakebase/b/br-x/pgdata")
        );
    }
}

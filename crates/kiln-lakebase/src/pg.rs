//! The PostgreSQL installation Kiln drives: which majors exist, the
//! unprivileged OS user postgres runs as (postgres refuses to run as root),
//! tool invocations, and control connections over an endpoint's Unix socket.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use kiln_core::{Error, Result};
use tokio::process::Command;

/// The superuser Kiln creates in every cluster (never reachable through the proxy).
pub const SUPERUSER: &str = "kiln_admin";
/// Every endpoint's postmaster listens on `<socket dir>/.s.PGSQL.5432`.
pub const SOCKET_PORT: u16 = 5432;

/// One installed PostgreSQL major version.
#[derive(Debug, Clone)]
pub struct Install {
    pub major: u32,
    pub bin: PathBuf,
}

/// The OS identity postgres runs as (when Kiln runs as root).
#[derive(Debug, Clone, Copy)]
pub struct OsUser {
    pub uid: u32,
    pub gid: u32,
}

/// Installed majors under the given roots (`<root>/<major>/bin`), newest first.
pub fn installations(roots: &[PathBuf]) -> Vec<Install> {
    let mut found = Vec::new();
    for root in roots {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            let Some(major) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let bin = entry.path().join("bin");
            if bin.join("postgres").is_file() && bin.join("initdb").is_file() {
                found.push(Install { major, bin });
            }
        }
    }
    found.sort_by_key(|b| std::cmp::Reverse(b.major));
    found.dedup_by(|a, b| a.major == b.major);
    found
}

/// The user postgres runs as: `None` when Kiln is not root (postgres then runs
/// as Kiln's own user); otherwise `name` from /etc/passwd.
pub fn os_user(name: &str) -> Result<Option<OsUser>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| Error::internal("read /etc/passwd", e))?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 3 && fields[0] == name {
            let uid = fields[2]
                .parse()
                .map_err(|e| Error::internal("parse /etc/passwd", e))?;
            let gid = fields[3]
                .parse()
                .map_err(|e| Error::internal("parse /etc/passwd", e))?;
            return Ok(Some(OsUser { uid, gid }));
        }
    }
    Err(Error::invalid(format!(
        "Kiln runs as root and PostgreSQL refuses to: create the OS user '{name}' (Debian's postgresql package does) or set lakebase.os_user"
    )))
}

/// Postgres, the tools and the OS user they run as.
#[derive(Debug, Clone)]
pub struct Postgres {
    pub install: Install,
    pub user: Option<OsUser>,
}

impl Postgres {
    /// A command for one of the installation's programs, run as the OS user,
    /// with no PG* variables inherited.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.install.bin.join(program));
        self.prepare(&mut command);
        command
    }

    /// A plain program (e.g. `cp`) run as the OS user.
    pub fn as_user(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        self.prepare(&mut command);
        command
    }

    fn prepare(&self, command: &mut Command) {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                command.env_remove(&key);
            }
        }
        command.env("LC_ALL", "C.UTF-8").stdin(Stdio::null());
        if let Some(user) = self.user {
            command.uid(user.uid).gid(user.gid);
        }
    }

    /// Gives a path Kiln created to the OS user.
    pub fn own(&self, path: &Path) -> Result<()> {
        if let Some(user) = self.user {
            std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                .map_err(|e| Error::internal(&format!("chown {}", path.display()), e))?;
        }
        Ok(())
    }

    /// Creates a directory (and parents) owned by the OS user, mode 0700.
    pub fn make_dir(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(path)
            .map_err(|e| Error::internal(&format!("create {}", path.display()), e))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::internal(&format!("chmod {}", path.display()), e))?;
        self.own(path)
    }

    /// Writes a file owned by the OS user (config files inside a data directory).
    pub fn write_file(&self, path: &Path, content: &str) -> Result<()> {
        std::fs::write(path, content)
            .map_err(|e| Error::internal(&format!("write {}", path.display()), e))?;
        self.own(path)
    }

    /// Runs a command to completion; fails with its stderr.
    pub async fn run(&self, mut command: Command, what: &str) -> Result<String> {
        let output = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| Error::internal(what, e))?;
        if !output.status.success() {
            return Err(Error::internal(
                what,
                String::from_utf8_lossy(&output.stderr).trim().to_string(),
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `initdb` with Kiln's superuser, trust on the local socket only and
    /// 1 MB WAL segments (cheap archiving and branching).
    pub async fn initdb(&self, pgdata: &Path) -> Result<()> {
        let mut command = self.command("initdb");
        command
            .arg("-D")
            .arg(pgdata)
            .args([
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ])
            .arg("--wal-segsize=1");
        self.run(command, "initdb").await?;
        self.write_file(
            &pgdata.join("pg_hba.conf"),
            "# Kiln: only the endpoint's private socket; the proxy authenticates.\nlocal all all trust\nlocal replication all trust\n",
        )
    }

    /// Copies a directory tree as the OS user, with copy-on-write clones where
    /// the filesystem supports them (`cp --reflink=auto`).
    pub async fn copy_tree(&self, from: &Path, to: &Path) -> Result<()> {
        let mut command = self.as_user("cp");
        command.args(["-a", "--reflink=auto"]).arg(from).arg(to);
        self.run(command, "copy a data directory").await.map(|_| ())
    }

    /// Whether `cp --reflink=always` works in `dir` (the clone strategy).
    pub async fn reflink_supported(&self, dir: &Path) -> bool {
        let a = dir.join(".reflink-probe-a");
        let b = dir.join(".reflink-probe-b");
        if self.write_file(&a, "probe").is_err() {
            return false;
        }
        let mut command = self.as_user("cp");
        command.arg("--reflink=always").arg(&a).arg(&b);
        let ok = self.run(command, "probe reflink").await.is_ok();
        let _ = std::fs::remove_file(&a);
        let _ = std::fs::remove_file(&b);
        ok
    }
}

/// A control connection, or `None` while the postmaster is not accepting
/// connections yet (readiness polling; nothing is logged).
pub async fn try_connect(socket_dir: &Path) -> Option<tokio_postgres::Client> {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(SOCKET_PORT)
        .user(SUPERUSER)
        .dbname("postgres")
        .connect_timeout(std::time::Duration::from_secs(2));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.ok()?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Some(client)
}

/// A control connection to an endpoint's postmaster as the superuser.
pub async fn connect(socket_dir: &Path, dbname: &str) -> Result<tokio_postgres::Client> {
    connect_as(socket_dir, dbname, SUPERUSER)
        .await
        .map_err(|e| Error::internal("connect to an endpoint", e))
}

/// A connection as `user` over the endpoint's private socket (which trusts
/// its callers: only Kiln reaches it, after authenticating the user).
pub async fn connect_as(
    socket_dir: &Path,
    dbname: &str,
    user: &str,
) -> std::result::Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(socket_dir)
        .port(SOCKET_PORT)
        .user(user)
        .dbname(dbname)
        .application_name("kiln")
        .connect_timeout(std::time::Duration::from_secs(5));
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Runs SQL on a control connection.
pub async fn execute(client: &tokio_postgres::Client, sql: &str) -> Result<()> {
    client
        .batch_execute(sql)
        .await
        .map_err(|e| Error::internal("run SQL on an endpoint", sql_error(&e)))
}

pub fn sql_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// Quotes an identifier (`"a""b"`).
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal (`'it''s'`).
pub fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_discovery() {
        assert_eq!(ident("a\"b@x.com"), "\"a\"\"b@x.com\"");
        assert_eq!(literal("it's"), "'it''s'");
        let dir = tempfile::tempdir().map_err(|e| e.to_string());
        if let Ok(dir) = dir {
            let bin = dir.path().join("16").join("bin");
            let _ = std::fs::create_dir_all(&bin);
            let _ = std::fs::write(bin.join("postgres"), "");
            let _ = std::fs::write(bin.join("initdb"), "");
            let _ = std::fs::create_dir_all(dir.path().join("17").join("bin"));
            let found = installations(&[dir.path().to_path_buf()]);
            assert_eq!(found.iter().map(|i| i.major).collect::<Vec<_>>(), vec![16]);
        }
    }
}

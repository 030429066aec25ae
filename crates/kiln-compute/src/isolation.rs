//! The trust boundary around user code: which OS identity engines, kernels,
//! pipeline workers and pip run as, where the files they may touch live, and
//! the environment they start with.
//!
//! When Kiln runs as root ("users" mode) every cluster has its own uid and gid
//! (its engine, pip and its environment's files), every kernel and pipeline
//! worker a fresh uid of its own in its cluster's group, and all of them share
//! only the `kiln-data` group that owns DBFS and the warehouse. Kiln's private
//! state (`kiln.db`, `admin.token`, `secrets.key`, TLS keys, logs) stays
//! root-only. When Kiln is not root but bubblewrap works ("sandbox" mode),
//! every such process runs in its own namespaces (`bwrap`: user, pid, mount,
//! ipc, uts) that show only the system directories, the runtime and the paths
//! it needs. Otherwise ("none" mode, or `KILN_ISOLATION=none`) user code would
//! run as Kiln itself, so only admins may run code (see
//! `routes::access::require_code_execution`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use kiln_core::process::{reachable_by_others, OsIdentity};
use kiln_core::{Error, Result};
use sha2::{Digest, Sha256};

/// The group that owns DBFS and the warehouse (shared by every engine and kernel).
pub const DATA_GID: u32 = 0x0FFF_FFFF;
const CLUSTER_UID_BASE: u32 = 0x1000_0000;
const PROCESS_UID_BASE: u32 = 0x2000_0000;
const UID_SPAN: u32 = 1 << 24;
/// Where the shared tree goes when the data dir cannot be reached by others.
const FALLBACK_ROOT: &str = "/var/lib/kiln/shared";
/// Environment variables a child inherits from Kiln; everything else is dropped.
const INHERITED: &[&str] = &["PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ"];

#[derive(Debug)]
pub struct Isolation {
    users: bool,
    /// `bwrap`, when Kiln is not root and a sandbox works.
    sandbox: Option<PathBuf>,
    shared: PathBuf,
    /// `[catalog] external_locations`: EXTERNAL volumes live there, and all
    /// user code may reach them (as DBFS).
    external: Vec<PathBuf>,
    next_uid: AtomicU32,
    /// DBFS is an object store's, mounted at `<shared>/object-store/dbfs`.
    dbfs_mounted: bool,
    /// DBFS on the object-store root (`[storage] root`): how engines reach it.
    object_store: std::sync::OnceLock<ObjectStoreAccess>,
}

/// What user code is given to reach DBFS (volumes included) kept on an object
/// store: its URL (Spark paths `dbfs:/x`, `/x`, `/Volumes/…` become
/// `<dbfs_url>/…`, since Delta cannot commit through the FUSE mount `open()`
/// uses) and, for engines and pipeline workers (which read `s3://` Delta logs), the
/// store's settings and credentials (`AWS_*`). Kernels do not get the
/// credentials, but Python UDFs run inside the engine and can read its
/// environment: user code on any cluster can obtain the root's credentials,
/// as it can read and write every volume through the mount (so give Kiln a
/// key limited to its root). Kiln's private state is never on the object store.
pub struct ObjectStoreAccess {
    pub dbfs_url: String,
    /// The store's settings and Kiln's own key (`AWS_*`).
    pub engine_env: Vec<(String, String)>,
    /// With `[storage] engine_role_arn`: engines and pipeline workers get a
    /// lease on credentials scoped to the root instead of Kiln's key.
    pub credentials: Option<std::sync::Arc<kiln_storage::EngineCredentials>>,
}

impl ObjectStoreAccess {
    /// What a process that reads the root itself is started with, and the
    /// lease (if any) its owner keeps while it runs.
    pub fn process_env(
        &self,
        session: &str,
    ) -> (Vec<(String, String)>, Option<kiln_storage::Lease>) {
        match &self.credentials {
            Some(credentials) => {
                let lease = credentials.lease(session);
                (lease.env(), Some(lease))
            }
            None => (self.engine_env.clone(), None),
        }
    }
}

impl std::fmt::Debug for ObjectStoreAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreAccess")
            .field("dbfs_url", &self.dbfs_url)
            .finish_non_exhaustive()
    }
}

/// What a sandboxed process sees besides the system directories: paths it may
/// write, paths it may read, and its working directory.
pub struct View<'a> {
    pub rw: Vec<&'a Path>,
    pub ro: Vec<&'a Path>,
    pub cwd: &'a Path,
}

/// System directories a sandbox shows read-only (those that exist).
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/opt",
];

impl Isolation {
    /// Detects the mode (root → users), chooses and prepares the shared tree.
    /// `shared` overrides the choice (config `shared_dir`).
    /// `dbfs_mounted`: DBFS lives on an object store, mounted (FUSE) inside
    /// `<shared>/object-store` (mode 2770, the data group), which keeps out
    /// everyone else (the mount itself is open to all; see `kiln-storage`).
    pub fn open(
        data_dir: &Path,
        shared: Option<PathBuf>,
        external: &[PathBuf],
        dbfs_mounted: bool,
    ) -> Result<Self> {
        let users = kiln_core::process::is_root();
        let wanted = std::env::var("KILN_ISOLATION").unwrap_or_default() != "none";
        let sandbox = if users || !wanted {
            None
        } else {
            find_sandbox()
        };
        let users = users && wanted;
        let shared = match shared {
            Some(dir) => dir,
            None => choose_shared(data_dir, users)?,
        };
        let isolation = Self {
            users,
            sandbox,
            shared,
            external: external.to_vec(),
            next_uid: AtomicU32::new(rand::random::<u32>() % UID_SPAN),
            dbfs_mounted,
            object_store: std::sync::OnceLock::new(),
        };
        isolation.prepare(data_dir)?;
        Ok(isolation)
    }

    /// No identities, everything under `dir` (unit tests).
    pub fn unisolated(dir: &Path) -> Self {
        Self {
            users: false,
            sandbox: None,
            shared: dir.to_path_buf(),
            external: Vec::new(),
            next_uid: AtomicU32::new(0),
            dbfs_mounted: false,
            object_store: std::sync::OnceLock::new(),
        }
    }

    /// DBFS lives on an object store (set once, at start).
    pub fn use_object_store(&self, access: ObjectStoreAccess) {
        let _ = self.object_store.set(access);
    }

    pub fn object_store(&self) -> Option<&ObjectStoreAccess> {
        self.object_store.get()
    }

    /// Whether user code runs under identities of its own.
    pub fn users(&self) -> bool {
        self.users
    }

    /// Whether user code is kept from Kiln's private state (users or sandbox).
    pub fn isolates(&self) -> bool {
        self.users || self.sandbox.is_some()
    }

    pub fn mode(&self) -> &'static str {
        match (self.users, &self.sandbox) {
            (true, _) => "users",
            (false, Some(_)) => "sandbox",
            (false, None) => "none",
        }
    }

    /// A command for `program`: the program itself, or in sandbox mode
    /// `bwrap … -- program` showing only the system directories and `view`.
    pub fn command(&self, program: &Path, view: &View<'_>) -> tokio::process::Command {
        let Some(bwrap) = &self.sandbox else {
            let mut command = tokio::process::Command::new(program);
            command.current_dir(view.cwd);
            return command;
        };
        let mut command = tokio::process::Command::new(bwrap);
        command.args([
            "--unshare-all",
            "--share-net",
            "--die-with-parent",
            "--cap-drop",
            "ALL",
        ]);
        for dir in SYSTEM_DIRS {
            command.arg("--ro-bind-try").arg(dir).arg(dir);
        }
        command.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
        for path in &view.ro {
            command.arg("--ro-bind-try").arg(path).arg(path);
        }
        for path in view
            .rw
            .iter()
            .copied()
            .chain(self.external.iter().map(|p| p.as_path()))
        {
            command.arg("--bind-try").arg(path).arg(path);
        }
        command.arg("--chdir").arg(view.cwd).arg("--").arg(program);
        command
    }

    /// The tree user code may reach: `dbfs`, `warehouse`, `engines`, `scratch`.
    pub fn shared(&self) -> &Path {
        &self.shared
    }

    pub fn dbfs(&self) -> PathBuf {
        if self.dbfs_mounted {
            self.shared.join("object-store").join("dbfs")
        } else {
            self.shared.join("dbfs")
        }
    }

    pub fn warehouse(&self) -> PathBuf {
        self.shared.join("warehouse")
    }

    /// `KILN_EXTERNAL_LOCATIONS` for a kernel or worker: where the real
    /// directories of EXTERNAL volumes may be (`:`-separated).
    pub fn external_env(&self) -> std::ffi::OsString {
        std::env::join_paths(&self.external).unwrap_or_default()
    }

    pub fn engines(&self) -> PathBuf {
        self.shared.join("engines")
    }

    /// A cluster's identity: engine, pip and its environment's files.
    pub fn cluster_identity(&self, cluster_id: &str) -> Option<OsIdentity> {
        if !self.users {
            return None;
        }
        let digest = Sha256::digest(cluster_id.as_bytes());
        let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % UID_SPAN;
        let id = CLUSTER_UID_BASE + n;
        Some(OsIdentity {
            uid: id,
            gid: id,
            groups: vec![id, DATA_GID],
        })
    }

    /// A fresh identity for one process (kernel, pipeline worker) on a cluster:
    /// its own uid, the cluster's group (to read its environment) and the data group.
    pub fn process_identity(&self, cluster_id: &str) -> Option<OsIdentity> {
        let cluster = self.cluster_identity(cluster_id)?;
        let n = self.next_uid.fetch_add(1, Ordering::Relaxed) % UID_SPAN;
        Some(OsIdentity {
            uid: PROCESS_UID_BASE + n,
            gid: cluster.gid,
            groups: vec![cluster.gid, DATA_GID],
        })
    }

    /// Creates `dir` (and parents) for `identity`, with `mode`.
    pub fn own_dir(&self, dir: &Path, identity: Option<&OsIdentity>, mode: u32) -> Result<()> {
        own_dir(dir, identity, mode)
    }

    /// Gives a tree Kiln created to `identity` (e.g. a cluster environment).
    pub fn give_tree(&self, dir: &Path, identity: Option<&OsIdentity>) -> Result<()> {
        give_tree(dir, identity)
    }

    /// A private scratch working directory for a process (mode 0700).
    pub fn scratch(&self, identity: Option<&OsIdentity>) -> Result<PathBuf> {
        let name = match identity {
            Some(id) => format!("{}", id.uid),
            None => kiln_core::ids::random_hex(8),
        };
        let dir = self.shared.join("scratch").join(name);
        if dir.exists() {
            // A former process's home, written by user code (arbitrarily
            // large): moved aside at once, removed off the async workers.
            let aside = dir.with_extension(format!("old-{}", kiln_core::ids::random_hex(4)));
            match std::fs::rename(&dir, &aside) {
                Ok(()) => remove_scratch(aside),
                Err(_) => kiln_core::blocking::run(|| {
                    let _ = std::fs::remove_dir_all(&dir);
                }),
            }
        }
        self.own_dir(&dir, identity, 0o700)?;
        Ok(dir)
    }

    /// Clears a child's environment down to the few variables it needs.
    pub fn base_env(command: &mut tokio::process::Command, home: &Path) {
        command.env_clear();
        for key in INHERITED {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        if std::env::var_os("PATH").is_none() {
            command.env("PATH", "/usr/local/bin:/usr/bin:/bin");
        }
        command.env("HOME", home).env("USER", "kiln-compute");
    }

    /// Modes and owners of the shared tree, and of Kiln's private files.
    fn prepare(&self, data_dir: &Path) -> Result<()> {
        // Scratch dirs of processes from an earlier run (they died with it).
        if let Ok(entries) = std::fs::read_dir(self.shared.join("scratch")) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        if !self.users {
            return Ok(());
        }
        chmod(data_dir, 0o711)?;
        self.own_dir(&self.shared, None, 0o711)?;
        chmod(&self.shared, 0o711)?;
        for dir in ["engines", "scratch"] {
            let path = self.shared.join(dir);
            std::fs::create_dir_all(&path).map_err(|e| Error::internal("create a directory", e))?;
            chmod(&path, 0o711)?;
        }
        if self.dbfs_mounted {
            // Only the directory that holds the mount: never walk into it.
            let holder = self.shared.join("object-store");
            std::fs::create_dir_all(&holder)
                .map_err(|e| Error::internal("create a directory", e))?;
            std::os::unix::fs::lchown(&holder, Some(0), Some(DATA_GID))
                .map_err(|e| Error::internal("share a directory", e))?;
            chmod(&holder, 0o2770)?;
            share_with_data_group(&self.shared.join("warehouse"))?;
        } else {
            for dir in ["dbfs", "warehouse"] {
                share_with_data_group(&self.shared.join(dir))?;
            }
        }
        for dir in &self.external {
            share_with_data_group(dir)?;
        }
        Ok(())
    }
}

/// `bwrap` from PATH, if a sandbox can actually be made here (user namespaces
/// may be disabled).
fn find_sandbox() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let bwrap = std::env::split_paths(&path)
        .map(|dir| dir.join("bwrap"))
        .find(|p| p.is_file())?;
    let ok = std::process::Command::new(&bwrap)
        .args(["--unshare-all", "--share-net", "--die-with-parent"])
        .args(["--ro-bind", "/", "/", "true"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(bwrap)
}

/// The data dir when others can reach it; otherwise a directory under
/// `/var/lib/kiln/shared` named after it. An existing install whose DBFS or
/// warehouse already lives in an unreachable data dir is refused with the fix.
fn choose_shared(data_dir: &Path, users: bool) -> Result<PathBuf> {
    if !users {
        return Ok(data_dir.to_path_buf());
    }
    chmod(data_dir, 0o711)?;
    if reachable_by_others(data_dir) {
        return Ok(data_dir.to_path_buf());
    }
    let canonical = data_dir
        .canonicalize()
        .map_err(|e| Error::internal("resolve the data dir", e))?;
    if canonical.join("warehouse").exists() || canonical.join("dbfs").exists() {
        return Err(Error::invalid(format!(
            "Kiln runs as root and user code runs as unprivileged users, which cannot reach {}: \
             make its parent directories searchable (chmod o+x) or move DBFS and the warehouse \
             to a reachable directory and set shared_dir (KILN_SHARED_DIR) to it",
            canonical.display()
        )));
    }
    let name = canonical
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "data".into());
    let digest = hex::encode(Sha256::digest(canonical.to_string_lossy().as_bytes()));
    Ok(PathBuf::from(FALLBACK_ROOT).join(format!("{name}-{}", &digest[..12])))
}

/// `root:kiln-data`, mode 2770 (new entries inherit the group), fixed
/// recursively the first time (an install from before isolation).
fn share_with_data_group(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(dir).map_err(|e| Error::internal("create a directory", e))?;
    let meta = std::fs::metadata(dir).map_err(|e| Error::internal("read a directory", e))?;
    if meta.gid() == DATA_GID {
        return Ok(());
    }
    walk(dir, &mut |path| {
        std::os::unix::fs::lchown(path, None, Some(DATA_GID))
            .map_err(|e| Error::internal("share a directory", e))?;
        let meta = std::fs::symlink_metadata(path).map_err(|e| Error::internal("stat", e))?;
        if meta.is_dir() {
            chmod(path, 0o2770)
        } else if meta.is_file() {
            chmod(path, 0o660)
        } else {
            Ok(())
        }
    })
}

/// Gives a tree Kiln created to `identity` (nothing without one).
pub fn give_tree(dir: &Path, identity: Option<&OsIdentity>) -> Result<()> {
    let Some(id) = identity else {
        return Ok(());
    };
    walk(dir, &mut |path| {
        std::os::unix::fs::lchown(path, Some(id.uid), Some(id.gid))
            .map_err(|e| Error::internal("give a tree to its user", e))
    })
}

/// Creates `dir` (and parents); with an identity, gives it to it with `mode`.
pub fn own_dir(dir: &Path, identity: Option<&OsIdentity>, mode: u32) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::internal("create a directory", e))?;
    if let Some(id) = identity {
        std::os::unix::fs::chown(dir, Some(id.uid), Some(id.gid))
            .map_err(|e| Error::internal("give a directory to its user", e))?;
        chmod(dir, mode)?;
    }
    Ok(())
}

fn chmod(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::internal(&format!("chmod {}", path.display()), e))
}

/// Calls `f` on `dir` and everything below it (symlinks are not followed).
fn walk(dir: &Path, f: &mut dyn FnMut(&Path) -> Result<()>) -> Result<()> {
    f(dir)?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| Error::internal("stat", e))?;
    if !meta.is_dir() {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::internal("read a directory", e))?;
    for entry in entries.flatten() {
        walk(&entry.path(), f)?;
    }
    Ok(())
}

/// Removes a process's scratch directory off the async workers (it is
/// user-writable, so it may be arbitrarily large or deep).
pub fn remove_scratch(dir: PathBuf) {
    if dir.as_os_str().is_empty() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(move || std::fs::remove_dir_all(dir));
        }
        Err(_) => {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_stable_per_cluster_and_fresh_per_process() {
        let iso = Isolation {
            users: true,
            sandbox: None,
            shared: PathBuf::from("/x"),
            external: Vec::new(),
            next_uid: AtomicU32::new(5),
            dbfs_mounted: false,
            object_store: std::sync::OnceLock::new(),
        };
        let a = iso.cluster_identity("c-1");
        assert_eq!(a, iso.cluster_identity("c-1"));
        assert_ne!(a, iso.cluster_identity("c-2"));
        let (Some(a), Some(p), Some(q)) =
            (a, iso.process_identity("c-1"), iso.process_identity("c-1"))
        else {
            panic!("users mode gives identities");
        };
        assert_ne!(p.uid, q.uid);
        assert_eq!(p.gid, a.gid);
        assert!(p.groups.contains(&DATA_GID));
        assert!(p.uid != a.uid && p.uid >= PROCESS_UID_BASE);
        assert!(a.uid >= CLUSTER_UID_BASE && a.uid < PROCESS_UID_BASE);
    }

    #[test]
    fn sandboxes_bind_external_locations_like_dbfs() {
        let iso = Isolation {
            users: false,
            sandbox: Some(PathBuf::from("/usr/bin/bwrap")),
            shared: PathBuf::from("/x"),
            external: vec![PathBuf::from("/srv/landing")],
            next_uid: AtomicU32::new(0),
            dbfs_mounted: false,
            object_store: std::sync::OnceLock::new(),
        };
        let dbfs = iso.dbfs();
        let view = View {
            rw: vec![&dbfs],
            ro: Vec::new(),
            cwd: Path::new("/x/scratch"),
        };
        let command = iso.command(Path::new("/usr/bin/python3"), &view);
        let args: Vec<String> = command
            .as_std()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let binds: Vec<&[String]> = args.windows(3).filter(|w| w[0] == "--bind-try").collect();
        assert_eq!(binds.len(), 2, "{args:?}");
        assert_eq!(binds[1][1], "/srv/landing");
        assert_eq!(iso.external_env(), "/srv/landing");
    }

    #[test]
    fn unisolated_gives_no_identity() {
        let iso = Isolation::unisolated(Path::new("/x"));
        assert!(iso.cluster_identity("c").is_none());
        assert!(iso.process_identity("c").is_none());
        assert_eq!(iso.dbfs(), PathBuf::from("/x/dbfs"));
    }
}

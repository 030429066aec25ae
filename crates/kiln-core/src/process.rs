//! Child processes that die with Kiln, the OS identity they run as, and
//! signals to them.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;
use std::path::Path;

/// The OS identity a child runs as when Kiln is root: its uid, primary gid
/// and supplementary groups (no passwd entry is needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsIdentity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// The child gets SIGKILL when the thread that spawned it dies
/// (`PR_SET_PDEATHSIG`, set after any uid switch, which would clear it; spawn
/// with [`spawn`], whose thread lives as long as Kiln) and its own process
/// group, so a terminal's Ctrl-C reaches Kiln, which stops children in order.
/// A child whose parent is already gone exits at once.
pub fn die_with_parent(command: &mut std::process::Command) {
    spawn_as(command, None);
}

/// [`die_with_parent`], and when `identity` is given the child drops to it
/// (supplementary groups, gid, uid, in that order) with `no_new_privs`, so
/// no setuid program can raise it again.
pub fn spawn_as(command: &mut std::process::Command, identity: Option<&OsIdentity>) {
    let parent = std::process::id() as libc::pid_t;
    let identity = identity.cloned();
    let groups: Vec<libc::gid_t> = identity
        .as_ref()
        .map(|i| i.groups.clone())
        .unwrap_or_default();
    // SAFETY: only async-signal-safe calls (setgroups, setgid, setuid, prctl,
    // getppid, setpgid, _exit) between fork and exec; the group vector is
    // allocated before fork.
    unsafe {
        command.pre_exec(move || {
            if let Some(id) = &identity {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(id.gid) != 0
                    || libc::setuid(id.uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            libc::setpgid(0, 0);
            Ok(())
        });
    }
}

type Job = Box<dyn FnOnce() + Send>;

static SPAWNER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> =
    std::sync::OnceLock::new();

/// Spawns `command` from Kiln's spawner thread, which lives as long as Kiln.
/// `PR_SET_PDEATHSIG` follows the spawning *thread*: a child spawned from a
/// Tokio worker would be killed when that thread leaves the pool (which
/// `block_in_place` and idle blocking threads do).
pub fn spawn(mut command: tokio::process::Command) -> std::io::Result<tokio::process::Child> {
    let handle = tokio::runtime::Handle::try_current().ok();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _guard = handle.as_ref().map(|h| h.enter());
        let _ = tx.send(command.spawn());
    });
    let sender = SPAWNER.get_or_init(|| {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let started = std::thread::Builder::new()
            .name("kiln-spawner".into())
            .spawn(move || {
                for job in queue {
                    job();
                }
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the spawner thread");
        }
        std::sync::Mutex::new(jobs)
    });
    let sent = sender
        .lock()
        .map_err(|_| std::io::Error::other("spawner lock poisoned"))?
        .send(job);
    sent.map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

/// Whether Kiln runs as root (and so can give children identities of their own).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The size in GB of the filesystem holding `path` (0 when it cannot be read).
pub fn disk_size_gb(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs writes only into the zeroed struct we own; the path is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return 0;
    }
    (stat.f_blocks as u64).saturating_mul(stat.f_frsize as u64) / 1_000_000_000
}

/// Sets the process umask (returns the previous one).
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// Whether every directory above `path` (and `path` itself) can be searched by
/// a user that is neither its owner nor in its group.
pub fn reachable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Ok(path) = path.canonicalize() else {
        return false;
    };
    path.ancestors().all(|dir| {
        std::fs::metadata(dir)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}

/// The process a signal meant for `pid` should reach: `pid` itself, or when
/// `pid` is a sandbox (`bwrap`, which does not forward signals) the program
/// running inside it.
pub fn signal_target(pid: u32) -> u32 {
    let mut current = pid;
    for _ in 0..4 {
        let comm = std::fs::read_to_string(format!("/proc/{current}/comm")).unwrap_or_default();
        if comm.trim() != "bwrap" {
            return current;
        }
        let children = std::fs::read_to_string(format!("/proc/{current}/task/{current}/children"))
            .unwrap_or_default();
        match children
            .split_whitespace()
            .next()
            .and_then(|c| c.parse().ok())
        {
            Some(child) => current = child,
            None => return current,
        }
    }
    current
}

/// Sends `sig` to a process Kiln started (nothing for pid 0).
pub fn signal(pid: u32, sig: libc::c_int) {
    if pid > 0 {
        // SAFETY: kill(2) with a pid we started.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }
}

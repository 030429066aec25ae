//! Child processes that die with Kiln, and signals to them.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt;

/// The child gets SIGKILL when the thread that spawned it dies
/// (`PR_SET_PDEATHSIG`; spawn from a runtime worker thread, alive as long as
/// Kiln; set after any uid switch, which would clear it) and its own process
/// group, so a terminal's Ctrl-C reaches Kiln, which stops children in order.
/// A child whose parent is already gone exits at once.
pub fn die_with_parent(command: &mut std::process::Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls (prctl, getppid, setpgid, _exit)
    // between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            libc::setpgid(0, 0);
            Ok(())
        });
    }
}

/// Sends `sig` to a process Kiln started (nothing for pid 0).
pub fn signal(pid: u32, sig: libc::c_int) {
    if pid > 0 {
        // SAFETY: kill(2) with a pid we started.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }
}

//! Child processes: spawned in their own process group with the stop
//! signals unblocked (the comparison blocks them for its signal thread), so
//! a terminal's Ctrl-C reaches only `spp-bench`, which then stops what it
//! started; and killing by PID.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

/// How often a wait polls.
pub const POLL: Duration = Duration::from_millis(10);

/// Prepares `cmd` so the child has its own process group and an empty
/// signal mask.
pub fn detach(cmd: &mut Command) -> &mut Command {
    cmd.process_group(0);
    // SAFETY: the closure only calls sigemptyset and pthread_sigmask, which
    // are async-signal-safe and allocate nothing.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    cmd
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name's closing parenthesis.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// Sends `signal` to `pid` (a process this program started).
pub fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(raw) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory effects; `raw` is a positive pid.
        unsafe {
            libc::kill(raw, signal);
        }
    }
}

/// Waits until `pid` is gone or `timeout` passes; true if gone.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

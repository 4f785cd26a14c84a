//! Starting a child already pinned to a set of CPUs. The mask is set between fork and exec, so
//! the server's first instruction, and every thread and process it later starts (a process
//! backend's workers, a prefork supervisor's children), run only there: affinity is inherited.

use nix::sched::{sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Makes `cmd` pin its child to `set` before exec.
pub(super) fn pin_child(cmd: &mut Command, set: CpuSet) {
    // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe
    // work is allowed. It makes one system call (sched_setaffinity) on a mask built before the
    // fork and moved in by value: no allocation, no lock.
    unsafe {
        cmd.pre_exec(move || {
            sched_setaffinity(Pid::from_raw(0), &set).map_err(std::io::Error::from)
        });
    }
}

//! The process backend's child: `threadcenter-bench worker`.
//!
//! A deliberately plain, single-threaded loop over blocking stdin/stdout: read a job frame, run
//! the kernel, write the result. One thread means the worker's address space is its own, which
//! is the whole point of the process design (no shootdowns, no shared allocator arenas, its
//! own `gil` lock).

use crate::backend::{mono_ns, run_caught, PipeJob, PipeReply, MAX_PIPE_FRAME};
use crate::connection::BlockingFrameReader;
use crate::kernel::Kernel;
use anyhow::{bail, Context};
use std::io::{BufWriter, Write};

/// Serves jobs from stdin until it closes, after building the per-process state of the
/// `preload` kernels (by name). With `shm`, jobs come through shared rings instead
/// ([`crate::backend::shm::worker`]), polled for up to `spin` before sleeping.
pub fn run(preload: &[String], shm: Option<std::time::Duration>) -> anyhow::Result<()> {
    die_with_parent()?;
    for name in preload {
        let k = Kernel::parse(name).with_context(|| format!("unknown kernel {name:?}"))?;
        k.prepare();
    }
    if let Some(spin) = shm {
        return crate::backend::shm::worker::run(spin, answer);
    }
    let mut input = BlockingFrameReader::new(std::io::stdin().lock(), MAX_PIPE_FRAME);
    let mut output = BufWriter::new(std::io::stdout().lock());
    let mut frame = Vec::with_capacity(64);
    PipeReply::Ready {
        pid: std::process::id(),
    }
    .encode(&mut frame);
    output.write_all(&frame)?;
    output.flush()?;
    // End of input between frames: the server is done with us.
    while let Some(payload) = input.read_frame().context("reading a job")? {
        let Some(job) = PipeJob::decode(payload) else {
            bail!("undecodable job frame");
        };
        let reply = answer(job);
        frame.clear();
        reply.encode(&mut frame);
        output.write_all(&frame)?;
        output.flush()?;
    }
    Ok(())
}

/// Runs one job and says how it went, with its start on the clock shared with the server.
fn answer(job: PipeJob) -> PipeReply {
    let started_ns = mono_ns();
    match run_caught(job.kernel, job.n) {
        Ok((result, compute_us)) => PipeReply::Done {
            result,
            started_ns,
            compute_ns: (compute_us * 1e3) as u64,
        },
        Err(f) => PipeReply::Panicked(f.detail),
    }
}

/// Asks the kernel to SIGKILL this process when the server dies, so a killed server leaves
/// no orphans. The server spawns workers from its long-lived runtime threads: the death signal
/// follows the parent *thread*, so it must not be a short-lived blocking-pool thread.
pub fn die_with_parent() -> anyhow::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets a flag on this process.
    let rc = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if rc != 0 {
        bail!(
            "prctl(PR_SET_PDEATHSIG) failed: {}",
            std::io::Error::last_os_error()
        );
    }
    // The parent may have died before the flag was set.
    if nix::unistd::getppid() == nix::unistd::Pid::from_raw(1) {
        bail!("the process that started this one exited before it was ready");
    }
    Ok(())
}

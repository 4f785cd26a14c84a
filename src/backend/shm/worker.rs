//! The worker process's side of the shared-memory transport (`threadcenter-bench worker
//! --shm`): take a job off the ring, run it, put the reply on the other ring; spin a little
//! when there is none, then sleep on the eventfd until the server pushes one or closes stdin.

use super::{drain, ring, wake, WorkerRings, SENT_FDS};
use crate::backend::pipe::{PipeJob, PipeReply};
use anyhow::{bail, Context};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Serves jobs from the rings until the server closes our stdin, spinning up to `spin` for the
/// next job before sleeping. The caller has built the preloaded kernels' state.
pub fn run(spin: Duration, answer: impl Fn(PipeJob) -> PipeReply) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let fds = ring::receive_fds(stdin.as_fd(), SENT_FDS).context("receiving the rings")?;
    let mut rings = WorkerRings::open(fds).context("mapping the rings")?;
    let mut frame = Vec::with_capacity(64);
    PipeReply::Ready {
        pid: std::process::id(),
    }
    .encode(&mut frame);
    let mut out = std::io::stdout().lock();
    out.write_all(&frame)?;
    out.flush()?;
    let mut job = Vec::with_capacity(64);
    // Spin only while spinning pays: when the last wait for a job was longer than the budget
    // (a client's round trip at depth 1, say), the next wait sleeps at once. On 2 cores a spin
    // that finds nothing takes the CPU the server needs to send the next job.
    let mut last_wait = Duration::ZERO;
    loop {
        let budget = if last_wait < spin {
            spin
        } else {
            Duration::ZERO
        };
        match next_job(&mut rings, &mut job, budget)? {
            Some(waited) => last_wait = waited,
            None => return Ok(()), // the server closed our stdin: it is done with us
        }
        let Some(j) = super::decode(&job, PipeJob::decode) else {
            bail!("undecodable job on the ring");
        };
        frame.clear();
        bounded(answer(j)).encode(&mut frame);
        match rings
            .replies
            .push(&frame)
            .map_err(|c| anyhow::anyhow!(c.0))?
        {
            ring::Push::Sent => {}
            ring::Push::SentWake => wake(&rings.reply_wake)?,
            ring::Push::Full => bail!("reply ring full: the server sent more jobs than slots"),
        }
    }
}

/// Waits for the next job into `job`, spinning up to `spin` before sleeping; how long it
/// waited, or `None` when the server closed our stdin instead.
fn next_job(
    rings: &mut WorkerRings,
    job: &mut Vec<u8>,
    spin: Duration,
) -> anyhow::Result<Option<Duration>> {
    let pop =
        |r: &mut WorkerRings, j: &mut Vec<u8>| r.jobs.pop(j).map_err(|c| anyhow::anyhow!(c.0));
    if pop(rings, job)? {
        return Ok(Some(Duration::ZERO));
    }
    let start = Instant::now();
    while start.elapsed() < spin {
        for _ in 0..64 {
            std::hint::spin_loop();
        }
        if pop(rings, job)? {
            return Ok(Some(start.elapsed()));
        }
    }
    loop {
        if rings.jobs.prepare_sleep() {
            let stdin = std::io::stdin();
            let mut fds = [
                PollFd::new(rings.job_wake.as_fd(), PollFlags::POLLIN),
                PollFd::new(stdin.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            // The server sends nothing on stdin after the descriptors: readable means closed.
            if fds[1].any().unwrap_or(true) {
                return Ok(None);
            }
            drain(&rings.job_wake)?;
            rings.jobs.woke();
        }
        if pop(rings, job)? {
            return Ok(Some(start.elapsed()));
        }
    }
}

/// A reply that fits one slot: a panic message is cut to what a slot holds.
fn bounded(reply: PipeReply) -> PipeReply {
    match reply {
        PipeReply::Panicked(mut msg) => {
            let mut end = msg.len().min(ring::PAYLOAD - crate::connection::HEADER - 1);
            while !msg.is_char_boundary(end) {
                end -= 1;
            }
            msg.truncate(end);
            PipeReply::Panicked(msg)
        }
        other => other,
    }
}

//! The shared-memory transport of the process pool (`--backend shm`): the same worker
//! processes and supervisor as [`super::process`], with jobs and replies passed through two
//! rings in a shared mapping instead of pipes.
//!
//! Per worker: one memfd holding a job ring (server → worker) and a reply ring (worker →
//! server), see [`ring`], and two eventfds, one per direction, for wake-ups. All three are sent
//! to the worker over its stdin, a Unix socket (`SCM_RIGHTS`). A side that finds its ring empty
//! spins (the worker, up to `--spin-us`) and then raises its ring's `sleeping` flag and waits on
//! its eventfd; the other side writes the eventfd only when it sees that flag, so a busy pair
//! makes no system call per job. The server side, a task on the I/O runtime, must not hold up
//! the connections on its thread: it "spins" by yielding (see [`ServerRings::recv`]), and only
//! when the job in flight is expected back within the budget.
//!
//! Liveness stays on the pipes: the worker's stdout carries only its ready message, so end of
//! file there means it died; end of file on its stdin socket tells it to exit. Everything
//! else — replacing dead workers, `worker_crashed` for the running job, timeouts — is the
//! process backend's supervisor, unchanged.

pub mod ring;
pub mod worker;

use crate::backend::pipe::{PipeJob, PipeReply};
use crate::connection::peek_frame;
use ring::{Consumer, Mapping, Producer, Push, Which};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use tokio::io::unix::AsyncFd;

/// Default `--spin-us`: how long an idle worker polls its job ring before it sleeps. 20 µs
/// covers the server's turnaround (a reply read, the next job pushed: a few µs when the
/// dispatcher is awake) with room to spare, and no more: on a 2-core machine the time a worker
/// spins is taken from the server's I/O thread or the other worker.
pub const DEFAULT_SPIN_US: u64 = 20;

/// `--spin-us` when none is given: [`DEFAULT_SPIN_US`] where the server has a core to spare
/// beyond one per worker and one for its I/O thread, else 0. A spin is CPU taken from
/// whoever else wanted that core: on 2 cores with 2 workers, `fib` at 10–50 µs over 4
/// connections at depth 1, `shm` with a 20 µs spin did worse than without one, which was level
/// with the pipes (`results/2026-11-27-xeon-2c-shm` against `-shm-spin0`).
pub fn auto_spin_us(cores: usize, workers: usize) -> u64 {
    if cores > workers + 1 {
        DEFAULT_SPIN_US
    } else {
        0
    }
}

/// Descriptors sent to each worker, in this order: the rings, the job eventfd, the reply one.
pub const SENT_FDS: usize = 3;

/// Slots per ring for a pool writing up to `write_ahead` jobs ahead: every job in flight
/// always has a slot, and so does its reply.
pub fn ring_capacity(write_ahead: usize) -> usize {
    write_ahead.max(1).next_power_of_two()
}

fn eventfd() -> std::io::Result<OwnedFd> {
    use nix::sys::eventfd::{EfdFlags, EventFd};
    let fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
    Ok(OwnedFd::from(fd))
}

/// Adds one to an eventfd's counter: wakes whoever polls it.
pub fn wake(fd: impl AsFd) -> std::io::Result<()> {
    nix::unistd::write(fd, &1u64.to_ne_bytes())?;
    Ok(())
}

/// Resets an eventfd's counter; `false` when it was already zero.
pub fn drain(fd: &impl AsRawFd) -> std::io::Result<bool> {
    match nix::unistd::read(fd.as_raw_fd(), &mut [0u8; 8]) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EAGAIN) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The server's end of one worker's rings.
pub struct ServerRings {
    jobs: Producer,
    replies: Consumer,
    job_wake: OwnedFd,
    reply_wake: AsyncFd<OwnedFd>,
    frame: Vec<u8>,
}

impl ServerRings {
    /// Fresh rings of `cap` slots, and the descriptors to hand to the worker.
    pub fn create(cap: usize) -> std::io::Result<(ServerRings, [OwnedFd; SENT_FDS])> {
        let (map, memfd) = Mapping::create(cap)?;
        let (job_wake, reply_wake) = (eventfd()?, eventfd()?);
        let theirs = [memfd, job_wake.try_clone()?, reply_wake.try_clone()?];
        Ok((
            ServerRings {
                jobs: Producer::new(map.clone(), Which::Jobs),
                replies: Consumer::new(map, Which::Replies),
                job_wake,
                reply_wake: ring::register_readable(reply_wake)?,
                frame: Vec::with_capacity(64),
            },
            theirs,
        ))
    }

    /// Publishes a job, waking the worker if it sleeps. Fails only when the worker broke the
    /// ring (or the caller overfilled it): either way the worker is treated as crashed.
    pub fn send(&mut self, job: &PipeJob) -> Result<(), String> {
        self.frame.clear();
        job.encode(&mut self.frame);
        match self.jobs.push(&self.frame).map_err(|c| c.0)? {
            Push::Sent => Ok(()),
            Push::SentWake => wake(&self.job_wake).map_err(|e| format!("cannot wake worker: {e}")),
            Push::Full => Err("job ring full".into()),
        }
    }

    /// The next reply. Cancel-safe: a reply is taken off the ring only when it is returned.
    ///
    /// With a `spin` budget, an empty ring is polled again after each `yield_now` for up to
    /// that long before the task sleeps on the eventfd: the I/O thread keeps serving every
    /// other task in between (a yield lets the runtime run what is ready and poll its sockets
    /// without blocking), but does not go to sleep, so a reply due within the budget costs
    /// neither the worker's eventfd write nor this thread's wake-up.
    pub async fn recv(&mut self, spin: std::time::Duration) -> Result<PipeReply, String> {
        let mut spin_from = None;
        loop {
            if let Some(r) = self.try_recv()? {
                return Ok(r);
            }
            if !spin.is_zero()
                && spin_from
                    .get_or_insert_with(crate::clock::Stamp::now)
                    .elapsed()
                    < spin
            {
                tokio::task::yield_now().await;
                continue;
            }
            if !self.replies.prepare_sleep() {
                continue;
            }
            let mut ready = self
                .reply_wake
                .readable()
                .await
                .map_err(|e| e.to_string())?;
            if !drain(ready.get_inner()).map_err(|e| e.to_string())? {
                ready.clear_ready();
            }
            self.replies.woke();
        }
    }

    /// A reply already on the ring, if any.
    pub fn try_recv(&mut self) -> Result<Option<PipeReply>, String> {
        if !self.replies.pop(&mut self.frame).map_err(|c| c.0)? {
            return Ok(None);
        }
        decode::<PipeReply>(&self.frame, PipeReply::decode)
            .map(Some)
            .ok_or_else(|| "worker wrote garbage on its reply ring".into())
    }
}

/// A slot's message: one frame of the pipe protocol.
pub fn decode<T>(frame: &[u8], f: impl FnOnce(&[u8]) -> Option<T>) -> Option<T> {
    match peek_frame(frame, ring::PAYLOAD) {
        Ok(Some(p)) if p.len() + crate::connection::HEADER == frame.len() => f(p),
        _ => None,
    }
}

/// Sends the worker its descriptors over its stdin socket.
pub fn send_fds(sock: &std::os::unix::net::UnixStream, fds: &[OwnedFd]) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    sendmsg::<UnixAddr>(
        sock.as_raw_fd(),
        &[std::io::IoSlice::new(b"S")],
        &[ControlMessage::ScmRights(&raw)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(())
}

/// The rings as the worker process sees them.
pub struct WorkerRings {
    pub jobs: Consumer,
    pub replies: Producer,
    pub job_wake: OwnedFd,
    pub reply_wake: OwnedFd,
}

impl WorkerRings {
    /// Maps the rings from the descriptors the server sent.
    pub fn open(fds: Vec<OwnedFd>) -> std::io::Result<WorkerRings> {
        let [memfd, job_wake, reply_wake]: [OwnedFd; SENT_FDS] = fds
            .try_into()
            .map_err(|_| std::io::Error::other("wrong number of descriptors"))?;
        let map: Arc<Mapping> = Mapping::open(&memfd)?;
        Ok(WorkerRings {
            jobs: Consumer::new(map.clone(), Which::Jobs),
            replies: Producer::new(map, Which::Replies),
            job_wake,
            reply_wake,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_spin_needs_a_core_beyond_the_workers_and_the_io_thread() {
        assert_eq!(auto_spin_us(2, 2), 0);
        assert_eq!(auto_spin_us(2, 1), 0);
        assert_eq!(auto_spin_us(16, 16), 0);
        assert_eq!(auto_spin_us(16, 14), DEFAULT_SPIN_US);
        assert_eq!(auto_spin_us(4, 2), DEFAULT_SPIN_US);
    }
}

//! Feeding one worker: jobs written ahead into its pipe, replies matched in order, the running
//! job's timeout.

use super::worker::Worker;
use super::{Pending, Shared};
use crate::backend::pipe::{PipeJob, PipeReply};
use crate::backend::{dropped_unstarted, micros_between, Done, Failure, Transport};
use crate::clock::Stamp;
use crate::protocol::ErrorCode;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// Work written ahead into a worker's pipe when its jobs are short: enough to cover the pipe
/// round trip (30–55 µs in virtual machines) several times over, so the worker never waits
/// for the supervisor, yet short enough that a job stuck behind it waits no longer than
/// that when another worker frees up.
const WRITE_AHEAD_BUDGET_NS: u64 = 100_000;
/// The worker's own cost per job beyond the kernel (a pipe read, two clock reads, a pipe
/// write), added to each job's compute time when estimating how many fit the budget.
const PER_JOB_OVERHEAD_NS: u64 = 5_000;
/// Most jobs written ahead into one pipe, however short they are.
pub(super) const MAX_WRITE_AHEAD: usize = 64;

/// Why a worker's run ended.
pub(super) enum Ended {
    /// The queue is closed and empty and nothing is in flight.
    Drained,
    /// The worker died or broke the pipe protocol.
    Crashed(String),
    /// The executing job ran past the timeout.
    TimedOut,
    /// Drain time is over.
    Aborted,
}

/// Feeds one worker until it ends, for whatever reason.
pub(super) async fn serve(
    w: &mut Worker,
    in_flight: &mut VecDeque<Pending>,
    carry: &mut VecDeque<Pending>,
    shared: &Shared,
) -> Ended {
    // When the oldest job in flight started executing (the worker runs them in order): read
    // once per reply, so on the request clock, not `clock_gettime`.
    let mut running_since = Stamp::now();
    let mut queue_closed = false;
    // Recent jobs' cost on this worker (ns), which sets how many to write ahead.
    let mut job_ns: Option<u64> = None;
    let mut depth = shared.worker_queue;
    let spin_ns = match shared.transport {
        Transport::Shm { spin_us } => spin_us.saturating_mul(1000),
        Transport::Pipe => 0,
    };
    // Write ahead only while no other worker is idle.
    let room = |in_flight: &VecDeque<Pending>, depth: usize| {
        in_flight.is_empty()
            || (in_flight.len() < depth && shared.idle.load(Ordering::Acquire) == 0)
    };
    // Since when, and for how long, this dispatcher, its worker just emptied, polls the queue
    // for the next job (shm, tiny jobs) instead of listening: its worker is still spinning.
    let mut hot: Option<(Stamp, Duration)> = None;
    // One timer and one cancellation wait for the worker's whole life. The timer is re-armed
    // lazily, when it fires early for a job that finished: moving it on every reply would
    // cost a timer-wheel update per job.
    let timer = tokio::time::sleep(shared.timeout);
    tokio::pin!(timer);
    let abort = shared.abort.cancelled();
    tokio::pin!(abort);
    loop {
        // Top up the pipe: carried-over jobs first, then whatever is already queued. Each reply
        // is followed by its own top-up write: batching the top-ups of several replies into one
        // write saves syscalls but lets the worker run dry (3x fewer tiny jobs per second in
        // `throughput/process`).
        while room(in_flight, depth) {
            let next = match carry.pop_front() {
                Some(p) => p,
                None => match shared.queue.try_recv() {
                    Ok(p) => p,
                    Err(async_channel::TryRecvError::Closed) => {
                        queue_closed = true;
                        break;
                    }
                    Err(async_channel::TryRecvError::Empty) => break,
                },
            };
            if next.job.is_abandoned() {
                (next.done)(Err(dropped_unstarted()));
                continue;
            }
            if in_flight.is_empty() {
                running_since = Stamp::now();
                shared.idle.fetch_sub(1, Ordering::AcqRel);
            }
            let sent = w.send(&PipeJob {
                kernel: next.job.kernel,
                n: next.job.n,
                submitted_ns: next.job.submitted_ns,
            });
            in_flight.push_back(next);
            if let Err(why) = sent {
                return Ended::Crashed(why);
            }
        }
        if let Err(why) = w.flush().await {
            return Ended::Crashed(why);
        }
        if queue_closed && in_flight.is_empty() && carry.is_empty() {
            return Ended::Drained;
        }
        // On shm, wait for a reply by polling the ring while the job in flight is expected
        // back within the spin budget: tiny jobs then come back without a wake-up.
        let spin = match (in_flight.is_empty(), job_ns) {
            (false, Some(ns)) if ns <= spin_ns => Duration::from_nanos(spin_ns),
            _ => Duration::ZERO,
        };
        // A reply already there (on the ring, or read from the pipe with an earlier one) is
        // taken without setting up the wait below; the top-up above still follows each one.
        let ready = if in_flight.is_empty() {
            None
        } else {
            w.try_recv().transpose()
        };
        let reply = match ready {
            Some(reply) => {
                // A worker that keeps answering must not keep this thread from its sockets:
                // counts against the task's budget, and yields when it is spent.
                tokio::task::consume_budget().await;
                reply
            }
            None => {
                let room = room(in_flight, depth) && !queue_closed;
                if let Some((since, spin)) = hot.take() {
                    if room && in_flight.is_empty() && carry.is_empty() {
                        match poll_queue(shared, since, spin).await {
                            Polled::Job(p) => carry.push_back(p),
                            Polled::Closed => queue_closed = true,
                            Polled::Nothing => {}
                        }
                        continue;
                    }
                }
                // An idle dispatcher leaves the next job to one that is polling the queue, and looks
                // again whenever a poll starts or stops (only with a spin budget: otherwise none
                // polls). The wake-up is enabled before the check: a change between the two still
                // wakes it.
                let mut polling_changed = None;
                let mut listen = room;
                if room && in_flight.is_empty() && spin_ns > 0 {
                    let mut n = Box::pin(shared.polling_changed.notified());
                    n.as_mut().enable();
                    listen = shared.polling.load(Ordering::Acquire) == 0;
                    polling_changed = Some(n);
                }
                let look_again = async {
                    match polling_changed.as_mut() {
                        Some(n) => n.await,
                        None => std::future::pending().await,
                    }
                };
                let waited = tokio::select! {
                    // Replies first: they free the worker's pipe for more work.
                    biased;
                    reply = w.recv(spin) => Some(reply),
                    next = shared.queue.recv(), if listen => {
                        match next {
                            Ok(p) => carry.push_back(p),
                            Err(_) => queue_closed = true,
                        }
                        None
                    }
                    _ = look_again => None,
                    _ = &mut timer, if !in_flight.is_empty() => {
                        let ran = running_since.elapsed();
                        if ran >= shared.timeout {
                            return Ended::TimedOut;
                        }
                        timer.as_mut().reset(Instant::now() + (shared.timeout - ran));
                        None
                    }
                    _ = &mut abort => return Ended::Aborted,
                };
                match waited {
                    Some(reply) => reply,
                    None => continue,
                }
            }
        };
        let reply = match reply {
            Ok(r) => r,
            Err(why) => return Ended::Crashed(why),
        };
        if let Err(ended) = on_reply(reply, in_flight, &mut job_ns, &mut depth, shared) {
            return ended;
        }
        running_since = Stamp::now();
        if in_flight.is_empty() {
            shared.idle.fetch_add(1, Ordering::AcqRel);
            if !spin.is_zero() {
                hot = Some((running_since, spin));
            }
        }
    }
}

/// Answers the oldest job in flight with `reply` (a worker runs its jobs in order), and
/// updates the job cost estimate and the write-ahead depth it sets.
fn on_reply(
    reply: PipeReply,
    in_flight: &mut VecDeque<Pending>,
    job_ns: &mut Option<u64>,
    depth: &mut usize,
    shared: &Shared,
) -> Result<(), Ended> {
    let Some(p) = in_flight.pop_front() else {
        return Err(Ended::Crashed(
            "worker replied with no job in flight".into(),
        ));
    };
    match reply {
        PipeReply::Done {
            result,
            started_ns,
            compute_ns,
        } => {
            let cost = compute_ns.saturating_add(PER_JOB_OVERHEAD_NS);
            let avg = job_ns.map_or(cost, |a| a - a / 8 + cost / 8);
            *job_ns = Some(avg);
            *depth = write_ahead(shared.worker_queue, avg);
            (p.done)(Ok(Done {
                result,
                queue_us: micros_between(p.job.submitted_ns, started_ns),
                compute_us: compute_ns as f64 / 1e3,
            }));
        }
        PipeReply::Panicked(msg) => {
            (p.done)(Err(Failure::new(ErrorCode::JobPanicked, msg)));
        }
        PipeReply::Ready { .. } => {
            in_flight.push_front(p);
            return Err(Ended::Crashed("worker wrote garbage on its pipe".into()));
        }
    }
    Ok(())
}

enum Polled {
    Job(Pending),
    Closed,
    Nothing,
}

/// An idle dispatcher whose worker has just finished a tiny job looks for the next one for
/// `spin` from `since`, re-checking the queue after each yield (the I/O thread keeps serving
/// its other tasks). Other idle dispatchers hold back meanwhile (`Shared::polling`); they are
/// told when this starts and when it stops, however it stops.
async fn poll_queue(shared: &Shared, since: Stamp, spin: Duration) -> Polled {
    struct Polling<'a>(&'a Shared);
    impl Drop for Polling<'_> {
        fn drop(&mut self) {
            self.0.polling.fetch_sub(1, Ordering::AcqRel);
            self.0.polling_changed.notify_waiters();
        }
    }
    shared.polling.fetch_add(1, Ordering::AcqRel);
    let _polling = Polling(shared);
    // Idle dispatchers listening on the queue stop, so that they do not take the job first.
    shared.polling_changed.notify_waiters();
    loop {
        match shared.queue.try_recv() {
            Ok(p) => return Polled::Job(p),
            Err(async_channel::TryRecvError::Closed) => return Polled::Closed,
            Err(async_channel::TryRecvError::Empty) => {}
        }
        if since.elapsed() >= spin || shared.abort.is_cancelled() {
            return Polled::Nothing;
        }
        tokio::task::yield_now().await;
    }
}

/// How many jobs to keep in a worker's pipe when each costs about `job_ns`: `worker_queue`
/// for long jobs, more for short ones, up to [`WRITE_AHEAD_BUDGET_NS`] of work. A
/// `worker_queue` of 1 turns writing ahead off altogether.
fn write_ahead(worker_queue: usize, job_ns: u64) -> usize {
    if worker_queue <= 1 {
        return 1;
    }
    let by_time = (WRITE_AHEAD_BUDGET_NS / job_ns.max(1)) as usize;
    by_time.clamp(worker_queue, MAX_WRITE_AHEAD.max(worker_queue))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_ahead_covers_the_budget_for_short_jobs_only() {
        // Off stays off.
        assert_eq!(write_ahead(1, 1), 1);
        // Long jobs: the configured depth.
        assert_eq!(write_ahead(2, 1_000_000), 2);
        assert_eq!(write_ahead(2, WRITE_AHEAD_BUDGET_NS), 2);
        // Short jobs: as many as fit the budget, never more than the cap.
        assert_eq!(write_ahead(2, 5_000), 20);
        assert_eq!(write_ahead(2, 0), MAX_WRITE_AHEAD);
        // An explicit depth above the cap is honoured.
        assert_eq!(write_ahead(100, 1), 100);
    }
}

//! The process backend: W worker processes, each the binary re-executed as the hidden
//! `worker` subcommand, fed jobs over its stdin and answering on its stdout.
//!
//! One supervisor task owns each worker slot. It pulls jobs from the shared bounded queue,
//! keeps some of them written ahead into the pipe (hiding the round trip: `worker_queue` jobs
//! when they are long, up to about 100 µs of work when they are short), and matches replies
//! in order: a worker runs its jobs one at a time, first in first out, so the oldest job in
//! flight is always the one executing. That makes faults precise: when a worker dies, only
//! that oldest job gets `worker_crashed`; the jobs behind it never started and go to the
//! replacement worker. A job past the timeout gets `timeout` and its worker is killed and
//! replaced. `docs/PERFORMANCE.md` has the measurements behind the write-ahead rule.
//!
//! Workers die with the server: each asks the kernel for SIGKILL when its parent dies
//! (`PR_SET_PDEATHSIG`) and exits on end of input, and every child is waited for, so neither
//! orphans nor zombies remain.

use super::pipe::{instant_to_ns, PipeJob, PipeReply, MAX_PIPE_FRAME};
use super::{Backend, BoxFuture, Completion, Done, Failure, Job, PoolConfig};
use crate::connection::{FrameReader, ReadLimits};
use crate::protocol::ErrorCode;
use anyhow::Context;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a new worker may take to say it is ready (building `table` included).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Consecutive failed starts of one slot before the backend gives up.
const MAX_START_FAILURES: u32 = 3;
/// Work written ahead into a worker's pipe when its jobs are short: enough to cover the pipe
/// round trip (30–55 µs in virtual machines) several times over, so the worker never waits
/// for the supervisor, yet short enough that a job stuck behind it waits no longer than
/// that when another worker frees up.
const WRITE_AHEAD_BUDGET_NS: u64 = 100_000;
/// The worker's own cost per job beyond the kernel (a pipe read, two clock reads, a pipe
/// write), added to each job's compute time when estimating how many fit the budget.
const PER_JOB_OVERHEAD_NS: u64 = 5_000;
/// Most jobs written ahead into one pipe, however short they are.
const MAX_WRITE_AHEAD: usize = 64;

struct Pending {
    job: Job,
    /// `job.submitted` on the clock shared with the workers, converted once.
    submitted_ns: u64,
    done: Completion,
}

struct Shared {
    exe: PathBuf,
    preload: Vec<String>,
    timeout: Duration,
    worker_queue: usize,
    queue: async_channel::Receiver<Pending>,
    /// Drain time is over: kill workers, answer what is left with `shutting_down`.
    abort: CancellationToken,
    fatal: CancellationToken,
    fatal_reason: Mutex<Option<String>>,
    live: AtomicUsize,
    /// Workers with nothing in flight. A job is written ahead to a busy worker only when
    /// none is idle: otherwise one worker could take two long jobs while another sits idle.
    idle: AtomicUsize,
    pids: Mutex<Vec<Option<u32>>>,
}

pub struct ProcessBackend {
    queue: async_channel::Sender<Pending>,
    shared: Arc<Shared>,
    tracker: TaskTracker,
}

impl ProcessBackend {
    /// Starts W workers and waits until every one of them is ready.
    pub async fn start(config: PoolConfig) -> anyhow::Result<Self> {
        let exe = match &config.worker_exe {
            Some(p) => p.clone(),
            None => std::env::current_exe().context("cannot find this program to start workers")?,
        };
        let (tx, rx) = async_channel::bounded(config.queue.max(1));
        let shared = Arc::new(Shared {
            exe,
            preload: config
                .preload
                .iter()
                .map(|k| k.name().to_string())
                .collect(),
            timeout: config.job_timeout,
            worker_queue: config.worker_queue.max(1),
            queue: rx,
            abort: CancellationToken::new(),
            fatal: CancellationToken::new(),
            fatal_reason: Mutex::new(None),
            live: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            pids: Mutex::new(vec![None; config.workers]),
        });
        // Start every worker before serving, so start-up cost is not measured as latency.
        let mut first = Vec::with_capacity(config.workers);
        for _ in 0..config.workers {
            first.push(tokio::spawn(Worker::spawn(shared.clone())));
        }
        let tracker = TaskTracker::new();
        for (slot, handle) in first.into_iter().enumerate() {
            let worker = handle.await.context("worker start task failed")??;
            tracker.spawn(supervise(slot, worker, shared.clone()));
        }
        tracker.close();
        Ok(ProcessBackend {
            queue: tx,
            shared,
            tracker,
        })
    }

    /// Process ids of the live workers (for tests and resource accounting).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.shared.pids.lock().iter().flatten().copied().collect()
    }

    pub fn live_workers(&self) -> usize {
        self.shared.live.load(Ordering::Acquire)
    }
}

impl Backend for ProcessBackend {
    fn name(&self) -> &'static str {
        "process"
    }

    fn submit(&self, job: Job, done: Completion) -> Result<(), Failure> {
        let submitted_ns = instant_to_ns(job.submitted);
        match self.queue.try_send(Pending {
            job,
            submitted_ns,
            done,
        }) {
            Ok(()) => Ok(()),
            Err(async_channel::TrySendError::Full(_)) => Err(Failure::new(
                ErrorCode::Overloaded,
                format!(
                    "job queue full ({} waiting)",
                    self.queue.capacity().unwrap_or(0)
                ),
            )),
            Err(async_channel::TrySendError::Closed(_)) => Err(Failure::new(
                ErrorCode::ShuttingDown,
                "server is shutting down",
            )),
        }
    }

    fn shutdown(&self, drain: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Closing lets supervisors empty the queue, then their workers see end of input.
            self.queue.close();
            if tokio::time::timeout(drain, self.tracker.wait())
                .await
                .is_err()
            {
                self.shared.abort.cancel();
                self.tracker.wait().await;
            }
        })
    }

    fn fatal(&self) -> BoxFuture<'_, String> {
        Box::pin(async move {
            self.shared.fatal.cancelled().await;
            self.shared
                .fatal_reason
                .lock()
                .clone()
                .unwrap_or_else(|| "worker pool failed".into())
        })
    }
}

struct Worker {
    child: Child,
    pid: u32,
    stdin: ChildStdin,
    stdout: FrameReader<ChildStdout>,
}

impl Worker {
    async fn spawn(shared: Arc<Shared>) -> anyhow::Result<Worker> {
        let mut cmd = Command::new(&shared.exe);
        cmd.arg("worker");
        if !shared.preload.is_empty() {
            cmd.arg("--preload").arg(shared.preload.join(","));
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start worker {}", shared.exe.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            anyhow::bail!("worker started without pipes");
        };
        let mut stdout = FrameReader::new(stdout, MAX_PIPE_FRAME);
        let hello = tokio::time::timeout(START_TIMEOUT, stdout.read_frame(ReadLimits::NONE)).await;
        let pid = match hello {
            Ok(Ok(Some(frame))) => match PipeReply::decode(&frame) {
                Some(PipeReply::Ready { pid }) => pid,
                other => {
                    let _ = child.kill().await;
                    anyhow::bail!("worker sent {other:?} instead of ready");
                }
            },
            Ok(Ok(None)) | Ok(Err(_)) => {
                let status = child.wait().await.ok();
                anyhow::bail!(
                    "worker exited before it was ready ({})",
                    status.map_or("status unknown".into(), |s| s.to_string())
                );
            }
            Err(_) => {
                let _ = child.kill().await;
                anyhow::bail!("worker not ready after {START_TIMEOUT:?}");
            }
        };
        Ok(Worker {
            child,
            pid,
            stdin,
            stdout,
        })
    }
}

/// Why a worker's run ended.
enum Ended {
    /// The queue is closed and empty and nothing is in flight.
    Drained,
    /// The worker died or broke the pipe protocol.
    Crashed(String),
    /// The executing job ran past the timeout.
    TimedOut,
    /// Drain time is over.
    Aborted,
}

/// Owns one worker slot for the backend's lifetime: runs a worker, replaces it when it dies.
async fn supervise(slot: usize, first: Worker, shared: Arc<Shared>) {
    // Jobs that were written to a dead worker but never started: they go first to the next.
    let mut carry: VecDeque<Pending> = VecDeque::new();
    let mut next = Some(first);
    let mut failures = 0;
    loop {
        let mut worker = match next.take() {
            Some(w) => w,
            None => match Worker::spawn(shared.clone()).await {
                Ok(w) => {
                    failures = 0;
                    w
                }
                Err(e) => {
                    failures += 1;
                    tracing::error!(slot, "worker start failed ({failures}): {e:#}");
                    if failures >= MAX_START_FAILURES {
                        *shared.fatal_reason.lock() = Some(format!(
                            "a worker process failed to start {failures} times in a row: {e:#}"
                        ));
                        shared.fatal.cancel();
                        fail_all(
                            &mut carry,
                            ErrorCode::WorkerCrashed,
                            "no worker could start",
                        );
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100 << failures)).await;
                    continue;
                }
            },
        };
        shared.pids.lock()[slot] = Some(worker.pid);
        shared.live.fetch_add(1, Ordering::AcqRel);
        shared.idle.fetch_add(1, Ordering::AcqRel);
        let mut in_flight: VecDeque<Pending> = VecDeque::new();
        let ended = serve(&mut worker, &mut in_flight, &mut carry, &shared).await;
        if in_flight.is_empty() {
            shared.idle.fetch_sub(1, Ordering::AcqRel);
        }
        shared.live.fetch_sub(1, Ordering::AcqRel);
        shared.pids.lock()[slot] = None;
        let pid = worker.pid;
        match &ended {
            Ended::Drained => {
                // End of input tells the worker to exit; give it a moment, then insist.
                drop(worker.stdin);
                if tokio::time::timeout(Duration::from_secs(5), worker.child.wait())
                    .await
                    .is_err()
                {
                    let _ = worker.child.kill().await;
                }
                return;
            }
            Ended::Crashed(why) => {
                let _ = worker.child.kill().await; // also reaps it
                if let Some(p) = in_flight.pop_front() {
                    (p.done)(Err(Failure::new(
                        ErrorCode::WorkerCrashed,
                        format!("worker process {pid} died while running this job: {why}"),
                    )));
                }
            }
            Ended::TimedOut => {
                let _ = worker.child.kill().await;
                if let Some(p) = in_flight.pop_front() {
                    (p.done)(Err(Failure::new(
                        ErrorCode::Timeout,
                        format!(
                            "job ran longer than {:?}; worker {pid} was killed and replaced",
                            shared.timeout
                        ),
                    )));
                }
            }
            Ended::Aborted => {
                let _ = worker.child.kill().await;
                fail_all(
                    &mut in_flight,
                    ErrorCode::ShuttingDown,
                    "drain time exceeded",
                );
                fail_all(&mut carry, ErrorCode::ShuttingDown, "drain time exceeded");
                while let Ok(p) = shared.queue.try_recv() {
                    (p.done)(Err(Failure::new(
                        ErrorCode::ShuttingDown,
                        "drain time exceeded",
                    )));
                }
                return;
            }
        }
        // Jobs behind the failed one never started: they keep their order, ahead of new work.
        while let Some(p) = in_flight.pop_back() {
            carry.push_front(p);
        }
        if let Ended::Crashed(why) = &ended {
            tracing::warn!(slot, pid, "worker died: {why}; starting a replacement");
        }
    }
}

fn fail_all(jobs: &mut VecDeque<Pending>, code: ErrorCode, detail: &str) {
    for p in jobs.drain(..) {
        (p.done)(Err(Failure::new(code, detail)));
    }
}

/// Feeds one worker until it ends, for whatever reason.
async fn serve(
    w: &mut Worker,
    in_flight: &mut VecDeque<Pending>,
    carry: &mut VecDeque<Pending>,
    shared: &Shared,
) -> Ended {
    let mut out = Vec::with_capacity(256);
    // When the oldest job in flight started executing (the worker runs them in order).
    let mut running_since = Instant::now();
    let mut queue_closed = false;
    // Recent jobs' cost on this worker (ns), which sets how many to write ahead.
    let mut job_ns: Option<u64> = None;
    let mut depth = shared.worker_queue;
    // Write ahead only while no other worker is idle.
    let room = |in_flight: &VecDeque<Pending>, depth: usize| {
        in_flight.is_empty()
            || (in_flight.len() < depth && shared.idle.load(Ordering::Acquire) == 0)
    };
    // One timer and one cancellation wait for the worker's whole life. The timer is re-armed
    // lazily, when it fires early for a job that finished: moving it on every reply would
    // cost a timer-wheel update per job.
    let timer = tokio::time::sleep_until(running_since + shared.timeout);
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
                (next.done)(Err(super::dropped_unstarted()));
                continue;
            }
            if in_flight.is_empty() {
                running_since = Instant::now();
                shared.idle.fetch_sub(1, Ordering::AcqRel);
            }
            PipeJob {
                kernel: next.job.kernel,
                n: next.job.n,
                submitted_ns: next.submitted_ns,
            }
            .encode(&mut out);
            in_flight.push_back(next);
        }
        if !out.is_empty() {
            if let Err(e) = w.stdin.write_all(&out).await {
                return Ended::Crashed(format!("pipe write failed: {e}"));
            }
            out.clear();
        }
        if queue_closed && in_flight.is_empty() && carry.is_empty() {
            return Ended::Drained;
        }
        let room = room(in_flight, depth) && !queue_closed;
        tokio::select! {
            // Replies first: they free the worker's pipe for more work.
            biased;
            frame = w.stdout.read_frame(ReadLimits::NONE) => {
                let frame = match frame {
                    Ok(Some(f)) => f,
                    Ok(None) => return Ended::Crashed("worker exited".into()),
                    Err(e) => return Ended::Crashed(e.to_string()),
                };
                let Some(p) = in_flight.pop_front() else {
                    return Ended::Crashed("worker replied with no job in flight".into());
                };
                running_since = Instant::now();
                match PipeReply::decode(&frame) {
                    Some(PipeReply::Done { result, started_ns, compute_ns }) => {
                        let cost = compute_ns.saturating_add(PER_JOB_OVERHEAD_NS);
                        let avg = job_ns.map_or(cost, |a| a - a / 8 + cost / 8);
                        job_ns = Some(avg);
                        depth = write_ahead(shared.worker_queue, avg);
                        (p.done)(Ok(Done {
                            result,
                            queue_us: started_ns.saturating_sub(p.submitted_ns) as f64 / 1e3,
                            compute_us: compute_ns as f64 / 1e3,
                        }));
                    }
                    Some(PipeReply::Panicked(msg)) => {
                        (p.done)(Err(Failure::new(ErrorCode::JobPanicked, msg)));
                    }
                    Some(PipeReply::Ready { .. }) | None => {
                        in_flight.push_front(p);
                        return Ended::Crashed("worker wrote garbage on its pipe".into());
                    }
                }
                if in_flight.is_empty() {
                    shared.idle.fetch_add(1, Ordering::AcqRel);
                }
            }
            next = shared.queue.recv(), if room => {
                match next {
                    Ok(p) => carry.push_back(p),
                    Err(_) => queue_closed = true,
                }
            }
            _ = &mut timer, if !in_flight.is_empty() => {
                let deadline = running_since + shared.timeout;
                if Instant::now() >= deadline {
                    return Ended::TimedOut;
                }
                timer.as_mut().reset(deadline);
            }
            _ = &mut abort => return Ended::Aborted,
        }
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

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
//!
//! The same pool runs over shared memory instead of pipes as `--backend shm`
//! ([`crate::backend::shm`]): only how a job reaches a worker and its reply comes back differs.
//!
//! Here: the queue and the [`Backend`] face. `worker` starts one process and waits until it is
//! ready, `supervise` owns a slot and replaces dead workers, `dispatch` feeds one worker.

mod dispatch;
mod supervise;
mod worker;

use super::{Backend, BoxFuture, Completion, Failure, Job, PoolConfig, Transport};
use crate::protocol::ErrorCode;
use anyhow::Context;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use supervise::supervise;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use worker::Worker;

struct Pending {
    job: Job,
    done: Completion,
}

struct Shared {
    exe: PathBuf,
    preload: Vec<String>,
    timeout: Duration,
    worker_queue: usize,
    transport: Transport,
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
    /// Idle dispatchers polling the queue (see `dispatch::serve`). While one is, the other idle
    /// ones do not listen on the queue, so a lone job goes to the worker that has just
    /// finished one and is still spinning. Left to itself the queue would wake the dispatcher
    /// that has waited longest, whose worker sleeps: with one job at a time the workers would
    /// take turns, and every job would pay a wake-up.
    polling: AtomicUsize,
    /// Told when a dispatcher starts or stops polling, so that the idle ones stop or start
    /// listening.
    polling_changed: tokio::sync::Notify,
}

impl Shared {
    /// Most jobs ever in flight on one worker (see `dispatch::write_ahead`).
    fn write_ahead_cap(&self) -> usize {
        dispatch::MAX_WRITE_AHEAD.max(self.worker_queue)
    }
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
            transport: config.transport,
            queue: rx,
            abort: CancellationToken::new(),
            fatal: CancellationToken::new(),
            fatal_reason: Mutex::new(None),
            live: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            pids: Mutex::new(vec![None; config.workers]),
            polling: AtomicUsize::new(0),
            polling_changed: tokio::sync::Notify::new(),
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
        match self.shared.transport {
            Transport::Pipe => "process",
            Transport::Shm { .. } => "shm",
        }
    }

    fn submit(&self, job: Job, done: Completion) -> Result<(), Failure> {
        match self.queue.try_send(Pending { job, done }) {
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

//! The thread-pool core, shared by the two thread backends: admission against a bounded
//! queue, one running-job slot per worker thread that a watchdog scans for timeouts, and
//! draining.
//!
//! A thread cannot be killed, so a job that runs past the timeout gets its `timeout` reply from
//! the watchdog and keeps its thread until it ends on its own; its late result is dropped.
//! Exactly one of the two, the job or the watchdog, takes the completion out of the slot.

use super::{run_caught, Completion, Done, Failure, Job};
use crate::protocol::ErrorCode;
use parking_lot::Mutex;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct ThreadPoolCore {
    id: usize,
    queue_cap: usize,
    timeout: Duration,
    /// Accepted, not yet started.
    queued: AtomicUsize,
    /// Accepted, completion not yet called.
    active: AtomicUsize,
    /// No new jobs accepted.
    closed: AtomicBool,
    /// Drain time is over: queued jobs are answered `shutting_down` instead of run.
    abandoned: AtomicBool,
    idle: tokio::sync::Notify,
    slots: Mutex<Vec<Arc<Slot>>>,
    stop_watchdog: tokio_util::sync::CancellationToken,
}

#[derive(Default)]
struct Slot {
    running: Mutex<Option<Running>>,
}

struct Running {
    /// [`mono_ns`](super::mono_ns) when the job started.
    started_ns: u64,
    done: Completion,
}

static NEXT_CORE_ID: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This worker thread's slot, registered with the pool that owns the thread.
    static SLOT: RefCell<Option<(usize, Arc<Slot>)>> = const { RefCell::new(None) };
}

impl ThreadPoolCore {
    /// What both thread backends do at start: build preloaded per-process state, then start
    /// the bookkeeping and its watchdog. Must be called inside a tokio runtime.
    pub fn start(config: &super::PoolConfig) -> Arc<Self> {
        for k in &config.preload {
            k.prepare();
        }
        let core = Self::new(config.queue, config.job_timeout);
        tokio::spawn(core.clone().watchdog(core.stop_watchdog.clone()));
        core
    }

    /// Drains (see [`ThreadPoolCore::drain`]), then stops the watchdog.
    pub async fn shutdown(&self, drain: Duration) {
        self.drain(drain).await;
        self.stop_watchdog.cancel();
    }

    pub fn new(queue_cap: usize, timeout: Duration) -> Arc<Self> {
        Arc::new(ThreadPoolCore {
            id: NEXT_CORE_ID.fetch_add(1, Ordering::Relaxed),
            queue_cap: queue_cap.max(1),
            timeout,
            queued: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            abandoned: AtomicBool::new(false),
            idle: tokio::sync::Notify::new(),
            slots: Mutex::new(Vec::new()),
            stop_watchdog: tokio_util::sync::CancellationToken::new(),
        })
    }

    /// Reserves a queue place for a job, or says why not.
    pub fn admit(&self) -> Result<(), Failure> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Failure::new(
                ErrorCode::ShuttingDown,
                "server is shutting down",
            ));
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.queue_cap {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Failure::new(
                ErrorCode::Overloaded,
                format!("job queue full ({} waiting)", self.queue_cap),
            ));
        }
        self.active.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Runs an admitted job on the calling worker thread.
    pub fn execute(self: &Arc<Self>, job: Job, done: Completion) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        if self.abandoned.load(Ordering::Acquire) {
            done(Err(Failure::new(
                ErrorCode::ShuttingDown,
                "server shut down before the job started",
            )));
            self.finish();
            return;
        }
        if job.is_abandoned() {
            done(Err(super::dropped_unstarted()));
            self.finish();
            return;
        }
        let slot = self.my_slot();
        let started_ns = super::mono_ns();
        *slot.running.lock() = Some(Running { started_ns, done });
        let outcome = run_caught(job.kernel, job.n).map(|(result, compute_us)| Done {
            result,
            queue_us: super::micros_between(job.submitted_ns, started_ns),
            compute_us,
        });
        let taken = slot.running.lock().take();
        if let Some(running) = taken {
            (running.done)(outcome);
        }
        self.finish();
    }

    fn finish(&self) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    fn my_slot(&self) -> Arc<Slot> {
        SLOT.with(|cell| {
            let mut cell = cell.borrow_mut();
            match &*cell {
                Some((id, slot)) if *id == self.id => slot.clone(),
                _ => {
                    let slot = Arc::new(Slot::default());
                    self.slots.lock().push(slot.clone());
                    *cell = Some((self.id, slot.clone()));
                    slot
                }
            }
        })
    }

    /// Answers `timeout` for every job running longer than the limit. Runs until `stop`.
    pub async fn watchdog(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let tick = (self.timeout / 10).clamp(Duration::from_millis(5), Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.cancelled() => return,
            }
            let slots: Vec<Arc<Slot>> = self.slots.lock().clone();
            let now_ns = super::mono_ns();
            let timeout_ns = self.timeout.as_nanos() as u64;
            for slot in slots {
                let expired = {
                    let mut running = slot.running.lock();
                    match &*running {
                        Some(r) if now_ns.saturating_sub(r.started_ns) > timeout_ns => {
                            running.take()
                        }
                        _ => None,
                    }
                };
                if let Some(r) = expired {
                    (r.done)(Err(Failure::new(
                        ErrorCode::Timeout,
                        format!(
                            "job ran longer than {:?}; its thread cannot be stopped and its result will be dropped",
                            self.timeout
                        ),
                    )));
                }
            }
        }
    }

    /// Stops admitting, waits up to `drain` for accepted jobs, then abandons the rest.
    pub async fn drain(&self, drain: Duration) {
        self.closed.store(true, Ordering::Release);
        let deadline = tokio::time::Instant::now() + drain;
        loop {
            let notified = self.idle.notified();
            if self.active.load(Ordering::Acquire) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
        }
        self.abandoned.store(true, Ordering::Release);
    }
}

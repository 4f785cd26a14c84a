//! One worker slot's lifetime: run a worker, and when it dies, answer the job it was running
//! and start a replacement that takes the jobs behind it.

use super::dispatch::{serve, Ended};
use super::worker::Worker;
use super::{Pending, Shared};
use crate::backend::Failure;
use crate::protocol::ErrorCode;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Consecutive failed starts of one slot before the backend gives up.
const MAX_START_FAILURES: u32 = 3;

/// Owns one worker slot for the backend's lifetime: runs a worker, replaces it when it dies.
pub(super) async fn supervise(slot: usize, first: Worker, shared: Arc<Shared>) {
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
                worker.close();
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

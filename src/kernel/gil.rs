//! A global interpreter lock in miniature: [`fib`](super::fib) computed while holding one
//! process-wide lock that is handed over every [`SWITCH_INTERVAL`], as CPython's GIL is.
//!
//! In a thread backend every job of this kind contends for the same lock, so W threads make as
//! much progress as one; each worker process has its own lock, so W processes make W times as
//! much. That is the whole argument for `multiprocessing` in Python, reproduced without Python.
//!
//! The lock is a ticket lock: jobs hold it in the order they asked for it, and a job waiting
//! for it sleeps at once, as a CPython thread waits on the GIL's condition variable. A general
//! purpose mutex would spin and `sched_yield` first, and on a machine with more runnable
//! threads than cores those yields hand whole time slices to other processes: the waiting
//! would show up as CPU contention rather than as the lock it is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot_core::{FilterOp, ParkToken, DEFAULT_UNPARK_TOKEN};

use super::fib::FibState;

/// Same work per step as `fib`, plus a clock read every [`CHECK_EVERY`] steps (under 1%).
pub const MAX_N: u64 = super::fib::MAX_N;

/// CPython's default `sys.getswitchinterval()`.
pub const SWITCH_INTERVAL: Duration = Duration::from_millis(5);

/// Steps between clock reads: about 4 µs of work, so a hand-off is at most that late, while
/// `Instant::now` (~25 ns) stays negligible. CPython's eval loop checks at a similar grain.
pub const CHECK_EVERY: u64 = 4_096;

/// The lock. What it protects is the right to compute, as with the real GIL.
static GIL: TicketLock = TicketLock::new();

/// A fair lock: each `acquire` draws the next ticket and waits, parked, until it is served.
struct TicketLock {
    /// The next ticket to hand out.
    next: AtomicU64,
    /// The ticket that holds the lock (equal to `next` when nobody does).
    serving: AtomicU64,
}

/// Holding the lock; releases it on drop.
struct Held<'a>(&'a TicketLock);

impl TicketLock {
    const fn new() -> Self {
        TicketLock {
            next: AtomicU64::new(0),
            serving: AtomicU64::new(0),
        }
    }

    /// Where parked waiters queue: this lock's own address, which nothing else parks on.
    fn key(&self) -> usize {
        &self.serving as *const AtomicU64 as usize
    }

    fn acquire(&self) -> Held<'_> {
        self.wait_turn();
        Held(self)
    }

    /// Draws a ticket and sleeps until it is served.
    fn wait_turn(&self) {
        let mine = self.next.fetch_add(1, Ordering::Relaxed);
        while self.serving.load(Ordering::Acquire) != mine {
            // SAFETY: the key is this lock's own address, used for nothing else; the
            // callbacks neither panic nor call into parking_lot. `validate` runs under the
            // queue's lock, which `release` also takes after advancing `serving`, so a
            // wake-up between the check above and the park is not lost.
            unsafe {
                parking_lot_core::park(
                    self.key(),
                    || self.serving.load(Ordering::Acquire) != mine,
                    || {},
                    |_, _| {},
                    ParkToken(mine as usize),
                    None,
                );
            }
        }
    }

    /// Serves the next ticket and wakes its holder if it is parked.
    fn release(&self) {
        let next = self.serving.fetch_add(1, Ordering::Release) + 1;
        // SAFETY: as in `wait_turn`; the filter wakes only the holder of the next ticket.
        unsafe {
            parking_lot_core::unpark_filter(
                self.key(),
                |t| {
                    if t.0 == next as usize {
                        FilterOp::Unpark
                    } else {
                        FilterOp::Skip
                    }
                },
                |_| DEFAULT_UNPARK_TOKEN,
            );
        }
    }

    /// Whether a job is waiting for the lock.
    fn contended(&self) -> bool {
        self.next.load(Ordering::Relaxed) - self.serving.load(Ordering::Relaxed) > 1
    }

    /// Whether anyone holds the lock.
    #[cfg(test)]
    fn is_held(&self) -> bool {
        self.next.load(Ordering::Relaxed) != self.serving.load(Ordering::Relaxed)
    }
}

impl Held<'_> {
    /// Hands the lock to the next waiter, if there is one, and queues again behind it.
    fn yield_if_contended(&mut self) {
        if self.0.contended() {
            self.0.release();
            self.0.wait_turn();
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// The `gil` kernel. Result: exactly `fib(n)`.
///
/// The job takes the lock, computes in slices of [`CHECK_EVERY`] steps, and once it has held
/// the lock for [`SWITCH_INTERVAL`] hands it to the job that has waited longest, if any, and
/// queues behind it. CPython since 3.2 forces the same switch, so a running thread cannot
/// barge back in before the woken one runs.
pub fn run(n: u64) -> u64 {
    let mut state = FibState::new();
    let mut left = n.max(1);
    let mut held = GIL.acquire();
    let mut held_since = Instant::now();
    while left > 0 {
        let slice = left.min(CHECK_EVERY);
        state.advance(slice);
        left -= slice;
        if left > 0 && held_since.elapsed() >= SWITCH_INTERVAL {
            held.yield_if_contended();
            held_since = Instant::now();
        }
    }
    drop(held);
    state.result()
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::kernel::fib;

    /// A job waiting for the lock gets it within a switch interval, not after the holder's
    /// whole job: the waiter's short job finishes first although it started second.
    #[test]
    fn holder_hands_the_lock_to_a_waiter() {
        // Far longer than one switch interval even in an optimized build.
        let (long, short) = (30_000_000, 100_000);
        let (done, finished) = mpsc::channel();
        let holder = {
            let done = done.clone();
            thread::spawn(move || {
                let result = run(long);
                let _ = done.send("holder");
                result
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !GIL.is_held() {
            assert!(!holder.is_finished(), "the holder finished unseen");
            assert!(Instant::now() < deadline, "the holder never took the lock");
            thread::yield_now();
        }
        assert_eq!(run(short), fib(short));
        let _ = done.send("waiter");
        assert_eq!(
            finished.recv().ok(),
            Some("waiter"),
            "the holder never handed over"
        );
        assert_eq!(holder.join().ok(), Some(fib(long)));
    }

    /// One holder at a time, however many threads hand the lock around.
    #[test]
    fn ticket_lock_excludes() {
        use std::sync::atomic::AtomicBool;
        static LOCK: TicketLock = TicketLock::new();
        static INSIDE: AtomicBool = AtomicBool::new(false);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                thread::spawn(|| {
                    for i in 0..2_000 {
                        let mut held = LOCK.acquire();
                        assert!(!INSIDE.swap(true, Ordering::SeqCst), "two holders");
                        if i % 7 == 0 {
                            INSIDE.store(false, Ordering::SeqCst);
                            held.yield_if_contended();
                            assert!(!INSIDE.swap(true, Ordering::SeqCst), "two holders");
                        }
                        INSIDE.store(false, Ordering::SeqCst);
                        drop(held);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(!LOCK.is_held());
        assert_eq!(
            LOCK.next.load(Ordering::Relaxed),
            LOCK.serving.load(Ordering::Relaxed)
        );
    }
}

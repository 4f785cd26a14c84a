//! A global interpreter lock in miniature: [`fib`](super::fib) computed while holding one
//! process-wide lock that is handed over every [`SWITCH_INTERVAL`], as CPython's GIL is.
//!
//! In a thread backend every job of this kind contends for the same lock, so W threads make as
//! much progress as one; each worker process has its own lock, so W processes make W times as
//! much. That is the whole argument for `multiprocessing` in Python, reproduced without Python.
//!
//! The lock behaves as CPython's GIL does (`Python/ceval_gil.c`, 3.2 and later), because the
//! `pyfib` kernel measures the real one and this model is checked against it (the report's
//! model section, `report::model`):
//!
//! - **Taking it**: a free lock is taken at once, even if others are waiting (no queue: a
//!   thread that just released it may take it straight back).
//! - **Asking for it**: a waiter sleeps on a condition variable for up to [`SWITCH_INTERVAL`];
//!   if the same holder still has it then, the waiter sets a drop request.
//! - **Handing it over**: the holder checks for a drop request every [`CHECK_EVERY`] steps (as
//!   the eval loop checks its eval breaker); on one, it releases the lock and, as CPython's
//!   `FORCE_SWITCHING` does, waits until another thread has taken it before asking again.
//! - **Job ends**: the holder just releases it and signals one waiter; no forced switch.
//!
//! An earlier version was a fair ticket lock handed over after every job: each hand-off then
//! waited for the next holder to wake up while the lock sat idle, so threads lost time to
//! wake-ups that CPython's barging avoids, and the model overstated the process advantage (the
//! committed `results/2026-11-27-xeon-2c-python` run shows it).

use parking_lot::{Condvar, Mutex, MutexGuard};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::fib::FibState;

/// Same work per step as `fib`, plus a flag read every [`CHECK_EVERY`] steps.
pub const MAX_N: u64 = super::fib::MAX_N;

/// CPython's default `sys.getswitchinterval()`: how long a waiter waits before it asks.
pub const SWITCH_INTERVAL: Duration = Duration::from_millis(5);

/// Steps between checks for a drop request: about 4 µs of work, so a hand-off is at most that
/// late. CPython's eval loop checks at a similar grain.
pub const CHECK_EVERY: u64 = 4_096;

/// The lock. What it protects is the right to compute, as with the real GIL.
static GIL: Gil = Gil::new();

/// CPython's GIL: a flag under a mutex, a condition variable for waiters, a drop request, and
/// a switch counter with its own condition variable for forced switches. The condition
/// variables are parking_lot's, which, like the pthread ones CPython signals, make no system
/// call when no thread waits; std's wakes through the kernel on every notify, which cost this
/// model two futex calls per job that the real GIL does not pay.
struct Gil {
    state: Mutex<State>,
    /// Signalled (one waiter) when the lock is released.
    released: Condvar,
    /// Signalled (every forced-switch waiter) when a thread takes the lock.
    switched: Condvar,
    /// A waiter has waited a whole interval: the holder should hand the lock over.
    drop_request: AtomicBool,
}

struct State {
    locked: bool,
    /// How many times the lock has been taken: a waiter that sees it unchanged after an
    /// interval knows the same holder still has it.
    switches: u64,
}

impl Gil {
    const fn new() -> Self {
        Gil {
            state: Mutex::new(State {
                locked: false,
                switches: 0,
            }),
            released: Condvar::new(),
            switched: Condvar::new(),
            drop_request: AtomicBool::new(false),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Takes the lock, waiting (and after an interval asking) for it. Returns the switch
    /// number this holding has, for [`Gil::release`].
    fn take(&self) -> u64 {
        let mut s = self.state();
        while s.locked {
            let seen = s.switches;
            let waited = self.released.wait_for(&mut s, SWITCH_INTERVAL);
            if waited.timed_out() && s.locked && s.switches == seen {
                self.drop_request.store(true, Ordering::Relaxed);
            }
        }
        s.locked = true;
        s.switches += 1;
        // The lock changed hands: whatever asked for that has it now.
        self.drop_request.store(false, Ordering::Relaxed);
        self.switched.notify_all();
        s.switches
    }

    /// Releases the holding numbered `mine`; `forced`: then waits until another thread has
    /// taken the lock, so the releasing thread cannot barge straight back in.
    fn release(&self, mine: u64, forced: bool) {
        let mut s = self.state();
        s.locked = false;
        self.released.notify_one();
        if forced {
            while s.switches == mine {
                self.switched.wait(&mut s);
            }
        }
    }

    fn drop_requested(&self) -> bool {
        self.drop_request.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    fn is_held(&self) -> bool {
        self.state().locked
    }
}

/// The `gil` kernel. Result: exactly `fib(n)`.
///
/// The job takes the lock, computes in slices of [`CHECK_EVERY`] steps, and after each slice
/// hands the lock over if a waiter has asked for it (after waiting [`SWITCH_INTERVAL`]), then
/// takes it again; at the end it releases it.
pub fn run(n: u64) -> u64 {
    let mut state = FibState::new();
    let mut left = n.max(1);
    let mut mine = GIL.take();
    while left > 0 {
        let slice = left.min(CHECK_EVERY);
        state.advance(slice);
        left -= slice;
        if left > 0 && GIL.drop_requested() {
            GIL.release(mine, true);
            mine = GIL.take();
        }
    }
    GIL.release(mine, false);
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

    /// One holder at a time, however many threads take the lock and force switches.
    #[test]
    fn the_lock_excludes_and_forced_switches_complete() {
        static LOCK: Gil = Gil::new();
        static INSIDE: AtomicBool = AtomicBool::new(false);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                thread::spawn(|| {
                    for i in 0..2_000 {
                        let mut mine = LOCK.take();
                        assert!(!INSIDE.swap(true, Ordering::SeqCst), "two holders");
                        if i % 7 == 0 {
                            INSIDE.store(false, Ordering::SeqCst);
                            // A forced switch returns once someone else took the lock; with
                            // nobody else left it would wait forever, so force only when
                            // another thread has asked.
                            let forced = LOCK.drop_requested();
                            LOCK.release(mine, forced);
                            mine = LOCK.take();
                            assert!(!INSIDE.swap(true, Ordering::SeqCst), "two holders");
                        }
                        INSIDE.store(false, Ordering::SeqCst);
                        LOCK.release(mine, false);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(!LOCK.is_held());
    }
}

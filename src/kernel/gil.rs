//! A global interpreter lock in miniature: [`fib`](super::fib) computed while holding one
//! process-wide lock that is handed over every [`SWITCH_INTERVAL`], as CPython's GIL is.
//!
//! In a thread backend every job of this kind contends for the same lock, so W threads make as
//! much progress as one; each worker process has its own lock, so W processes make W times as
//! much. That is the whole argument for `multiprocessing` in Python, reproduced without Python.

use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use super::fib::FibState;

/// Same work per step as `fib`, plus a clock read every [`CHECK_EVERY`] steps (under 1%).
pub const MAX_N: u64 = super::fib::MAX_N;

/// CPython's default `sys.getswitchinterval()`.
pub const SWITCH_INTERVAL: Duration = Duration::from_millis(5);

/// Steps between clock reads: about 4 µs of work, so a hand-off is at most that late, while
/// `Instant::now` (~25 ns) stays negligible. CPython's eval loop checks at a similar grain.
pub const CHECK_EVERY: u64 = 4_096;

/// The lock. `()` because what it protects is the right to compute, as with the real GIL.
static GIL: Mutex<()> = parking_lot::const_mutex(());

/// The `gil` kernel. Result: exactly `fib(n)`.
///
/// The job takes the lock, computes in slices of [`CHECK_EVERY`] steps, and once it has held
/// the lock for [`SWITCH_INTERVAL`] yields it with [`MutexGuard::bump`]: a *fair* unlock that
/// hands the lock straight to a waiting thread (and re-locks at once if none waits). A plain
/// unlock/lock would let the running thread barge back in before the woken one runs, which
/// CPython since 3.2 prevents by forcing the switch.
pub fn run(n: u64) -> u64 {
    let mut state = FibState::new();
    let mut left = n.max(1);
    let mut guard = GIL.lock();
    let mut held_since = Instant::now();
    while left > 0 {
        let slice = left.min(CHECK_EVERY);
        state.advance(slice);
        left -= slice;
        if left > 0 && held_since.elapsed() >= SWITCH_INTERVAL {
            MutexGuard::bump(&mut guard);
            held_since = Instant::now();
        }
    }
    drop(guard);
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
        while !GIL.is_locked() {
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
}

//! Shared mutable state: one process-wide atomic counter that every job increments, and
//! nothing else.
//!
//! Every increment needs the counter's cache line in exclusive state, so threads on different
//! cores bounce it between them; in separate processes each has its own counter and line. No
//! lock, no syscall, no sleep: the cost is pure coherence traffic, which the CSV shows only as
//! longer `server_user_s` and compute time (`server_vcsw` stays flat, unlike `gil`).

use std::sync::atomic::{AtomicU64, Ordering};

use super::mix64;

/// Measured 2.3 ns per increment alone (release, one core of the development VM): 3·10⁹
/// ≈ 7 s. Contended across cores an increment costs 10–50× more, so large `n` with many
/// threads runs far longer; that slowdown is the effect being measured.
pub const MAX_N: u64 = 3_000_000_000;

/// Seed salt of the result.
pub const SEED: u64 = 0x5AA2_ED00_0000_0004;

/// The contended counter. Its value is never part of a result: it depends on every other job.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Total increments by all jobs in this process so far (for tests and diagnostics).
pub fn counter() -> u64 {
    COUNTER.load(Ordering::Relaxed)
}

/// The `shared` kernel.
///
/// `n` times `fetch_add(1)` on the process-wide counter. Result: `n + mix64(SEED ^ n)`
/// (wrapping): the counter's value depends on every other job, so the result cannot, and the
/// salted hash keeps it from agreeing with another kernel's for the same `n`.
pub fn run(n: u64) -> u64 {
    for _ in 0..n {
        // Relaxed: the contention is the cache line, which every ordering pays (`lock xadd`).
        COUNTER.fetch_add(1, Ordering::Relaxed);
    }
    expected(n)
}

/// [`run`]'s result from the formula: no counter.
pub fn expected(n: u64) -> u64 {
    n.wrapping_add(mix64(SEED ^ n))
}

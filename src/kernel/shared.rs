//! Shared mutable state: one process-wide atomic counter that every job increments, plus a
//! small process-wide map behind a lock, as a server's cache would be.
//!
//! Every increment needs the counter's cache line in exclusive state, so threads on different
//! cores bounce it between them; in separate processes each has its own counter and line.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{mix64, SplitMix64};

/// Measured 2.3 ns per increment alone (release, one core of the development VM): 3·10⁹
/// ≈ 7 s. Contended across cores an increment costs 10–50× more, so large `n` with many
/// threads runs far longer; that slowdown is the effect being measured.
pub const MAX_N: u64 = 3_000_000_000;

/// Seed salt: the cache keys come from `SplitMix64::new(SEED ^ n)`.
pub const SEED: u64 = 0x5AA2_ED00_0000_0004;

/// One cache operation per this many increments.
pub const CACHE_EVERY: u64 = 64;
/// Distinct cache keys, which bounds the map.
pub const CACHE_KEYS: u64 = 1024;

/// The contended counter. Its value is never part of a result: it depends on every other job.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The cache: key → `mix64(key)`. Whoever misses inserts; the value never depends on who did,
/// so a lookup returns the same value whatever ran before.
static CACHE: Mutex<BTreeMap<u64, u64>> = parking_lot::const_mutex(BTreeMap::new());

/// Total increments by all jobs in this process so far (for tests and diagnostics).
pub fn counter() -> u64 {
    COUNTER.load(Ordering::Relaxed)
}

/// The `shared` kernel.
///
/// `n` times `fetch_add(1)` on the process-wide counter; after every [`CACHE_EVERY`]-th
/// increment, one cache operation: key `k_j = r_j mod 1024` (`r_j` the j-th output of
/// `SplitMix64::new(SEED ^ n)`), look it up under the lock, inserting `mix64(k_j)` on a miss.
/// Result: `n + Σ_j mix64(k_j)` over the `⌊n / 64⌋` cache operations (wrapping).
pub fn run(n: u64) -> u64 {
    let mut rng = SplitMix64::new(SEED ^ n);
    let mut sum = n;
    for i in 1..=n {
        // Relaxed: the contention is the cache line, which every ordering pays (`lock xadd`).
        COUNTER.fetch_add(1, Ordering::Relaxed);
        if i % CACHE_EVERY == 0 {
            let key = rng.next() % CACHE_KEYS;
            let value = *CACHE.lock().entry(key).or_insert_with(|| mix64(key));
            sum = sum.wrapping_add(value);
        }
    }
    sum
}

/// [`run`]'s result from the formula: no counter, no lock.
pub fn expected(n: u64) -> u64 {
    let mut rng = SplitMix64::new(SEED ^ n);
    (0..n / CACHE_EVERY).fold(n, |sum, _| sum.wrapping_add(mix64(rng.next() % CACHE_KEYS)))
}

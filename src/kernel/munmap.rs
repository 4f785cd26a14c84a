//! Map and unmap without touching: `n` rounds of `mmap` of a small private region and its
//! `munmap`, no page ever faulted in.
//!
//! Both calls take the process's memory-map lock for writing, so threads of one process queue
//! on it (and on the kernel's address-space bookkeeping) where separate processes each have
//! their own. No page is present, so there is nothing to zero or flush: the cost is system time
//! and the lock, shown in the CSV as `server_sys_s` and, where the lock sleeps, `server_vcsw`
//! (compare `fault`, which touches every page, and `tlb`, which flushes one).

use super::mapping::Mapping;
use super::{sum_of_draws, SplitMix64};

/// Measured 1.8 µs per round (release calibration on the 2-core development VM): 5·10⁶ rounds
/// ≈ 9 s.
pub const MAX_N: u64 = 5_000_000;

/// Seed salt: the region sizes come from `SplitMix64::new(SEED ^ n)`.
pub const SEED: u64 = 0x3B30_0000_0000_0006;

/// Largest region, in pages.
pub const MAX_PAGES: u64 = 16;

/// The `munmap` kernel.
///
/// With `v_i` the i-th output of `SplitMix64::new(SEED ^ n)`, round `i` (of `n`) maps
/// `1 + v_i mod 16` pages and unmaps them untouched. Result: `Σ v_i` (wrapping), which only
/// says the rounds ran with the right draws: an untouched mapping has nothing to read.
///
/// Panics (with the reason) if a mapping is refused; see `Mapping::new`.
pub fn run(n: u64) -> u64 {
    let mut rng = SplitMix64::new(SEED ^ n);
    let mut sum = 0u64;
    for _ in 0..n {
        let v = rng.next();
        drop(Mapping::new("munmap", 1 + v % MAX_PAGES));
        sum = sum.wrapping_add(v);
    }
    sum
}

/// [`run`]'s result from the formula: `Σ v_i`, no mapping.
pub fn expected(n: u64) -> u64 {
    sum_of_draws(SEED, n)
}

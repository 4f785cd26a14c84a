//! Permission flips: `n` rounds of making a touched private page read-only and writable again,
//! with `mprotect`.
//!
//! Taking write permission away from a present page means no CPU may keep a writable
//! translation for it, so the kernel sends a TLB-shootdown IPI to every other core running a
//! thread of the same process, exactly as `tlb` does, but nothing is freed: no page faults, no
//! zeroing, only the shootdown and the memory-map lock. The CSV shows it as `tlb_shootdowns`
//! (and `server_sys_s`); a single-threaded worker process interrupts no one.

use super::mapping::Mapping;
use super::{sum_of_draws, SplitMix64};

/// Measured 2.8 µs per round (two `mprotect` calls; release calibration on the 2-core
/// development VM, no sibling threads): 3·10⁶ rounds ≈ 8.5 s.
pub const MAX_N: u64 = 3_000_000;

/// Seed salt: the values written come from `SplitMix64::new(SEED ^ n)`.
pub const SEED: u64 = 0x3907_EC70_0000_0005;

/// The `mprotect` kernel.
///
/// The job maps one private page and writes `v_0` to its word 0 (the one page fault), with
/// `v_i` the i-th output (from 0) of `SplitMix64::new(SEED ^ n)`. Round `i` (of `n`) makes the
/// page read-only, reads word 0 (which holds `v_i`), makes it read-write again and writes
/// `v_{i+1}`. Result: `Σ_{i<n} v_i` (wrapping), the values read; a flip that lost the page's
/// contents would read zero and break it.
pub fn run(n: u64) -> u64 {
    let mut map = Mapping::new("mprotect", 1);
    let mut rng = SplitMix64::new(SEED ^ n);
    map.write(0, 0, rng.next());
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(map.read_only("mprotect").read(0, 0));
        map.write(0, 0, rng.next());
    }
    sum
}

/// [`run`]'s result from the formula: `Σ_{i<n} v_i`, no mapping.
pub fn expected(n: u64) -> u64 {
    sum_of_draws(SEED, n)
}

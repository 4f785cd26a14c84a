//! TLB shootdowns: `n` rounds of writing to a private page and discarding it with
//! `madvise(MADV_DONTNEED)`.
//!
//! Discarding a page means no CPU may keep a stale translation for it, so the kernel sends an
//! inter-processor interrupt to every other core currently running a thread of the same process
//! and waits for each to flush. In a multithreaded server every round therefore stalls all its
//! busy siblings (the noisy neighbour); in a single-threaded worker process it interrupts no one.

use super::mapping::Mapping;
use super::{sum_of_draws, SplitMix64};

/// Measured 2.7–2.9 µs per round (release, one core of the development VM, no sibling
/// threads): 3·10⁶ rounds ≈ 8.7 s.
pub const MAX_N: u64 = 3_000_000;

/// Seed salt: the values written come from `SplitMix64::new(SEED ^ n)`.
pub const SEED: u64 = 0x71B0_0000_0000_0003;

/// The `tlb` kernel.
///
/// The job maps one private page. With `v_i` the i-th output of `SplitMix64::new(SEED ^ n)`,
/// round `i` writes `v_i` to word `i mod W` (`W` = words per page, so the first write of a
/// round faults in a fresh zero page), reads back that word plus the previous round's word `(i - 1) mod W` —
/// zero if the previous round's discard really dropped the page — and discards the page.
/// Result: `Σ v_i` (wrapping); a discard that kept the page would add a previous round's value
/// and break the result.
pub fn run(n: u64) -> u64 {
    let mut map = Mapping::new("tlb", 1);
    let words = map.words_per_page();
    let mut rng = SplitMix64::new(SEED ^ n);
    let mut sum = 0u64;
    for i in 0..n {
        let word = (i % words as u64) as usize;
        map.write(0, word, rng.next());
        let written = map.read(0, word);
        let previous = map.read(0, (word + words - 1) % words);
        sum = sum.wrapping_add(written).wrapping_add(previous);
        map.discard("tlb");
    }
    sum
}

/// [`run`]'s result from the formula: `Σ v_i`, no mapping.
pub fn expected(n: u64) -> u64 {
    sum_of_draws(SEED, n)
}

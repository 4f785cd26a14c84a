//! Map/unmap pressure: a fresh anonymous region of `n` pages, every page written (one page
//! fault each), read back, unmapped.
//!
//! Page faults and `munmap` take the process's memory-map lock and, on unmap, flush TLBs on
//! every core running one of its threads; separate processes have separate memory maps.

use super::mapping::{page_size, Mapping};
use super::{sum_of_draws, SplitMix64};

/// At most this much memory mapped by one job.
pub const MAX_BYTES: u64 = 1 << 30;

/// Seed salt: the values written come from `SplitMix64::new(SEED ^ n)`.
pub const SEED: u64 = 0xFA17_0000_0000_0002;

/// The largest `n`: 1 GiB of pages (262 144 with 4 KiB pages). Memory, not time, is the limit:
/// measured 1.4 µs per page for small regions and 9.6 µs per page at the full 1 GiB (release,
/// one core of the development VM), so a job at `max_n` takes about 2.5 s.
pub fn max_n() -> u64 {
    MAX_BYTES / page_size() as u64
}

/// The `fault` kernel.
///
/// With `v_i` the i-th output of `SplitMix64::new(SEED ^ n)`, page `i` (of `n`) gets `v_i`
/// written to its word `i mod (page_size / 8)`; then every page's word is read back. Result:
/// `Σ v_i` (wrapping); `n = 0` maps nothing and returns 0.
///
/// Panics (with the reason) if the mapping is refused; see `Mapping::new`.
pub fn run(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let mut map = Mapping::new("fault", n);
    let words = map.words_per_page();
    let mut rng = SplitMix64::new(SEED ^ n);
    for page in 0..n as usize {
        map.write(page, page % words, rng.next());
    }
    let mut sum = 0u64;
    for page in 0..n as usize {
        sum = sum.wrapping_add(map.read(page, page % words));
    }
    sum
}

/// [`run`]'s result from the formula: `Σ v_i`, no mapping.
pub fn expected(n: u64) -> u64 {
    sum_of_draws(SEED, n)
}

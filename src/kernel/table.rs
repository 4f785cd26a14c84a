//! The counter-example: random lookups in a large read-only table built once per process.
//!
//! Threads share one copy; every worker process builds and holds its own, so processes pay in
//! memory (`W × TABLE_BYTES`) and start-up time, while lookups cost the same either way. The
//! sweep reports it through RSS and start time.

use std::sync::OnceLock;

use super::{mix64, SplitMix64};

/// Size of the table: 256 MiB of `u64`.
pub const TABLE_BYTES: usize = 256 << 20;

/// Entries in the table, a power of two so an index is a mask of a random draw.
pub const ENTRIES: usize = TABLE_BYTES / std::mem::size_of::<u64>();

/// Measured 15–28 ns per lookup (release, one core of the development VM; nearly every lookup
/// misses cache and TLB): 3·10⁸ ≈ 8.4 s at the slower figure.
pub const MAX_N: u64 = 300_000_000;

/// Seed salt: the lookup indices come from `SplitMix64::new(SEED ^ n)`.
pub const SEED: u64 = 0x7AB1_E000_0000_0005;

static TABLE: OnceLock<Box<[u64; ENTRIES]>> = OnceLock::new();

/// Entry `i` of the table: `mix64(i)`, so [`expected`] needs no table.
#[inline]
pub fn entry(i: usize) -> u64 {
    mix64(i as u64)
}

/// Build the table now unless it exists; returns it.
///
/// Building takes 0.17 s (release, development VM): 256 MiB of page faults plus one hash per
/// entry. After the first call this is one atomic load (40 ns measured).
pub fn prepare() -> &'static [u64; ENTRIES] {
    TABLE.get_or_init(|| {
        let table: Box<[u64]> = (0..ENTRIES).map(entry).collect();
        match table.try_into() {
            Ok(table) => table,
            Err(_) => unreachable!("the table is built with exactly ENTRIES entries"),
        }
    })
}

#[inline]
fn index(r: u64) -> usize {
    (r as usize) & (ENTRIES - 1)
}

/// The `table` kernel.
///
/// With `r_i` the i-th output of `SplitMix64::new(SEED ^ n)`, look up entry `r_i mod 2²⁵`.
/// Result: `Σ mix64(r_i mod 2²⁵)` over `n` lookups (wrapping). The first job in a process
/// builds the table unless [`prepare`] ran already.
pub fn run(n: u64) -> u64 {
    let table = prepare();
    let mut rng = SplitMix64::new(SEED ^ n);
    (0..n).fold(0u64, |sum, _| sum.wrapping_add(table[index(rng.next())]))
}

/// [`run`]'s result from the formula: each entry recomputed, no table.
pub fn expected(n: u64) -> u64 {
    let mut rng = SplitMix64::new(SEED ^ n);
    (0..n).fold(0u64, |sum, _| sum.wrapping_add(entry(index(rng.next()))))
}

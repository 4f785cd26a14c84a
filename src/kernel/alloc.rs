//! Allocator churn: many small heap objects of varying size, a bounded window of live ones,
//! freed in a different order than allocated, all by the job that allocated them.
//!
//! Each job keeps its own window and shares no structure with any other job, so the only thing
//! threads of one process have in common is the allocator itself (glibc's per-thread arenas
//! and caches, and the `brk`/`mmap` calls behind them); a worker process has an allocator of its
//! own. The CSV shows the mechanism in `server_user_s`/`server_sys_s` and, when arenas grow,
//! `server_minflt`. Frees by another thread are not part of it.

use super::SplitMix64;

/// Measured 26.5 ns per step alone (release, one core of the development VM): 3·10⁸ steps
/// ≈ 8 s.
pub const MAX_N: u64 = 300_000_000;

/// Seed salt: the job's generator is `SplitMix64::new(SEED ^ n)`.
pub const SEED: u64 = 0xA110_C000_0000_0001;

/// Live objects per job: a ring of slots overwritten in random order.
pub const WINDOW: usize = 256;
/// Smallest object, bytes.
pub const MIN_SIZE: usize = 16;
/// Largest object, bytes.
pub const MAX_SIZE: usize = 1024;
/// 64-bit FNV-1a parameters, used to fold released objects into the result.
const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01B3;

/// What step `i`'s random draw `r` decides: which slot to reuse, how big the new object is
/// and which byte fills it.
#[inline]
fn decode(r: u64) -> (usize, usize, u8) {
    let slot = (r as usize) % WINDOW;
    let size = MIN_SIZE + ((r >> 8) as usize) % (MAX_SIZE - MIN_SIZE + 1);
    let fill = (r >> 32) as u8;
    (slot, size, fill)
}

/// How one released object enters the result: `len`, its first and its last byte.
#[inline]
fn fold(h: u64, len: usize, first: u8, last: u8) -> u64 {
    let token = ((len as u64) << 16) | (u64::from(first) << 8) | u64::from(last);
    (h ^ token).wrapping_mul(FNV_PRIME)
}

/// The `alloc` kernel.
///
/// With `r_i` the i-th output of `SplitMix64::new(SEED ^ n)`, step `i` (of `n`) picks slot
/// `r_i mod 256`, size `16 + (r_i >> 8) mod 1009` and fill byte `(r_i >> 32) mod 256`. If the
/// slot holds an object it is released: folded into `h` (64-bit FNV-1a over the token
/// `len << 16 | first << 8 | last`, read back from the object) and freed. Then a new object of
/// the chosen size is allocated, filled with the byte and put in the slot. At the end the
/// remaining objects are released in slot order. Result: `h`, starting from the FNV offset
/// basis.
pub fn run(n: u64) -> u64 {
    let mut rng = SplitMix64::new(SEED ^ n);
    let mut window: Vec<Option<Box<[u8]>>> = (0..WINDOW).map(|_| None).collect();
    let mut h = FNV_OFFSET;
    for _ in 0..n {
        let (slot, size, fill) = decode(rng.next());
        if let Some(old) = window[slot].take() {
            h = fold(h, old.len(), old[0], old[old.len() - 1]);
        }
        window[slot] = Some(vec![fill; size].into_boxed_slice());
    }
    for old in window.into_iter().flatten() {
        h = fold(h, old.len(), old[0], old[old.len() - 1]);
    }
    h
}

/// [`run`]'s result from the formula: the same draws over a window of `(len, fill)` pairs,
/// without allocating.
pub fn expected(n: u64) -> u64 {
    let mut rng = SplitMix64::new(SEED ^ n);
    let mut window = [None::<(usize, u8)>; WINDOW];
    let mut h = FNV_OFFSET;
    for _ in 0..n {
        let (slot, size, fill) = decode(rng.next());
        if let Some((len, byte)) = window[slot] {
            h = fold(h, len, byte, byte);
        }
        window[slot] = Some((size, fill));
    }
    for (len, byte) in window.into_iter().flatten() {
        h = fold(h, len, byte, byte);
    }
    h
}

//! Blocking without using the CPU: the I/O-bound stand-in, where more workers than cores help
//! and a thread costs less to park than a process.

use std::time::Duration;

use super::SplitMix64;

/// 10 s of sleep.
pub const MAX_N: u64 = 10_000_000;

/// Seed salt of the result.
pub const SEED: u64 = 0x51EE_9000_0000_0006;

/// The `sleep` kernel: block the calling thread for `n` µs (at least; the OS may oversleep).
/// Result: the first output of `SplitMix64::new(SEED ^ n)`.
pub fn run(n: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(n));
    expected(n)
}

/// [`run`]'s result from the formula, without sleeping.
pub fn expected(n: u64) -> u64 {
    SplitMix64::new(SEED ^ n).next()
}

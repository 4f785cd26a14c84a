//! Example `lib:` kernels for threadcenter: C-ABI functions `uint64_t f(uint64_t n)`.
//!
//! ```text
//! cargo build --release --manifest-path examples/native/Cargo.toml
//! threadcenter-bench serve --library examples/native/target/release/libthreadcenter_example_native.so \
//!     --symbols friendly,unfriendly
//! ```
//!
//! - `friendly(n)`: `n` steps of pure arithmetic on local variables. Threads share nothing
//!   while it runs, so threads and processes should tie.
//! - `unfriendly(n)`: the same steps, holding one process-wide lock for the whole call: threads
//!   serialize on it (a GIL of its own), each worker process has its own.
//! - `fragile(n)`: `friendly(n)`, except that an odd `n` aborts the process: what a crashing
//!   native function does to each backend (a worker process is replaced; a thread backend's
//!   whole server dies).
//!
//! All three are deterministic: the same `n` gives the same result, which the driver checks.

use std::sync::Mutex;

/// `n` rounds of the SplitMix64 step folded into a sum: a few ns of ALU work per step.
fn compute(n: u64) -> u64 {
    let mut state = n;
    let mut sum = 0u64;
    for _ in 0..n.max(1) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        sum = sum.wrapping_add(z ^ (z >> 31));
    }
    sum
}

/// Pure compute on local state: thread-friendly.
#[no_mangle]
pub extern "C" fn friendly(n: u64) -> u64 {
    compute(n)
}

/// The lock every call of `unfriendly` in one process holds while it computes.
static WHOLE_PROCESS: Mutex<()> = Mutex::new(());

/// The same compute under one process-wide lock: threads wait for each other, processes don't.
#[no_mangle]
pub extern "C" fn unfriendly(n: u64) -> u64 {
    let _held = WHOLE_PROCESS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    compute(n)
}

/// `friendly(n)` for an even `n`; an odd `n` aborts the whole process.
#[no_mangle]
pub extern "C" fn fragile(n: u64) -> u64 {
    if n % 2 == 1 {
        std::process::abort();
    }
    compute(n)
}

//! The workloads: fourteen kernels, each a deterministic function of its work size `n`, each built
//! to expose one mechanism that separates threads from processes (SPEC §3), and the user's own
//! functions ([`user`]: `lib:f`, `py:f`), whose mechanism is whatever they do.
//!
//! A kernel runs *for real* in [`Kernel::run`] (it allocates, maps, locks, sleeps), while
//! [`Kernel::expected`] computes the same `u64` from the formula alone, so the load driver can
//! verify every reply without repeating the mechanism.
//!
//! | kernel | one step | mechanism it exposes | ns/step | `max_n` | result |
//! |---|---|---|---|---|---|
//! | `fib` | one modular Fibonacci iteration | none: pure ALU, the control | 1.3 | 5·10⁹ | [`fib`] |
//! | `alloc` | one malloc + fill + free | allocator churn, nothing shared between jobs | 27 | 3·10⁸ | [`alloc`] |
//! | `fault` | one page mapped, written, read | page faults, mmap/munmap | 1 400–9 600 | 1 GiB of pages | [`fault`] |
//! | `tlb` | one write + `MADV_DONTNEED` | TLB-shootdown IPIs (and page faults) | 2 800 | 3·10⁶ | [`tlb`] |
//! | `mprotect` | read-only, read, read-write, write | TLB-shootdown IPIs, nothing freed | 2 800 | 3·10⁶ | [`mprotect`] |
//! | `munmap` | `mmap` + `munmap`, untouched | the memory-map lock, no faults | 1 800 | 5·10⁶ | [`munmap`] |
//! | `shared` | one atomic increment | one contended cache line | 2.3 | 3·10⁹ | [`shared`] |
//! | `gil` | one fib iteration under a global lock | a GIL: threads serialize | 1.3 | 5·10⁹ | [`gil`] |
//! | `table` | one random read of a 256 MiB table | memory per process (counter-example) | 15–28 | 3·10⁸ | [`table`] |
//! | `sleep` | one microsecond blocked | none: I/O stand-in | 1 000 | 10⁷ | [`sleep`] |
//! | `crash` | — | fault injection: panic (0) or abort (1) | — | 1 | never returns |
//! | `pyfib` | one `fib` step in pure Python | the real GIL (cargo feature `python`) | ~200 | 3·10⁷ | [`fib`] |
//! | `pyfib-sub` | the same, in a sub-interpreter per thread | a GIL per interpreter (3.12+) | ~200 | 3·10⁷ | [`fib`] |
//! | `pyfib-ft` | the same, free-threaded CPython | no GIL at all (3.13t+) | ~200 | 3·10⁷ | [`fib`] |
//! | `lib:f`, `py:f` | the user's function | whatever it does: [`user`] | — | any | consistent |
//!
//! The ns/step and `max_n` figures come from single-thread release runs on the development
//! machine (a 2-core VM; details beside each constant); one job at `max_n` takes at most about
//! 10 s there, alone. Under contention the mechanism kernels take longer: that is the effect.
//! Measure a new machine with `cargo bench --bench kernels` (criterion reports ns per step).
//!
//! Random choices come from [`SplitMix64`] seeded with `SEED ^ n`, where `SEED` is a constant of
//! each kernel, so two kernels given the same `n` return different results and a reply from the
//! wrong kernel does not verify.

use serde::{Deserialize, Serialize};

pub mod alloc;
mod calibrate;
pub mod fault;
mod fib;
pub mod gil;
mod mapping;
pub mod mprotect;
pub mod munmap;
pub mod pyfib;
pub mod shared;
pub mod sleep;
pub mod table;
pub mod tlb;
pub mod user;

pub use calibrate::{calibrate, calibrate_in_child};
pub use fib::{fib, ACC_MOD, FIB_MOD};
pub use table::TABLE_BYTES;

#[cfg(test)]
mod tests;

/// A workload, named on the wire by [`Kernel::name`] (and serialized as that name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kernel {
    Fib,
    Alloc,
    Fault,
    Tlb,
    Mprotect,
    Munmap,
    Shared,
    Gil,
    Table,
    Sleep,
    Crash,
    Pyfib,
    PyfibSub,
    PyfibFt,
    /// A function of the user's own (`lib:NAME`, `py:NAME`): see [`user`].
    User(user::UserId),
}

impl Kernel {
    /// Every built-in kernel, in contract order (user kernels are not listed).
    pub const ALL: [Kernel; 14] = [
        Kernel::Fib,
        Kernel::Alloc,
        Kernel::Fault,
        Kernel::Tlb,
        Kernel::Mprotect,
        Kernel::Munmap,
        Kernel::Shared,
        Kernel::Gil,
        Kernel::Table,
        Kernel::Sleep,
        Kernel::Crash,
        Kernel::Pyfib,
        Kernel::PyfibSub,
        Kernel::PyfibFt,
    ];

    /// The contract name, as sent in a request's `kernel` field.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Fib => "fib",
            Kernel::Alloc => "alloc",
            Kernel::Fault => "fault",
            Kernel::Tlb => "tlb",
            Kernel::Mprotect => "mprotect",
            Kernel::Munmap => "munmap",
            Kernel::Shared => "shared",
            Kernel::Gil => "gil",
            Kernel::Table => "table",
            Kernel::Sleep => "sleep",
            Kernel::Crash => "crash",
            Kernel::Pyfib => "pyfib",
            Kernel::PyfibSub => "pyfib-sub",
            Kernel::PyfibFt => "pyfib-ft",
            Kernel::User(id) => user::name(id),
        }
    }

    /// The kernel with this name, if any (exact, case-sensitive): a built-in one, or a user
    /// kernel this process has registered. Never registers a new name: what a server does
    /// with a request's kernel field.
    pub fn parse(name: &str) -> Option<Kernel> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .or_else(|| user::lookup(name))
    }

    /// Like [`Kernel::parse`], but a user kernel name (`py:f`, `lib:f`) is registered by name
    /// if it is new: what the driver does with `--kernel py:f`, naming a function it never
    /// runs. `Err` lists the valid names.
    pub fn named(name: &str) -> Result<Kernel, String> {
        if let Some(k) = Kernel::parse(name) {
            return Ok(k);
        }
        if user::is_user_name(name) {
            return user::intern(name).map_err(|e| format!("{e:#}"));
        }
        Err(format!(
            "unknown kernel {name:?}; valid kernels: {}, or lib:NAME / py:NAME for your own",
            Kernel::builtin_names().join(", ")
        ))
    }

    /// Every built-in kernel's name, in [`Kernel::ALL`]'s order: what "unknown kernel" lists.
    pub fn builtin_names() -> Vec<&'static str> {
        Kernel::ALL.iter().map(|k| k.name()).collect()
    }

    /// True for `lib:` and `py:` kernels, whose results have no formula: the driver checks
    /// them for consistency (the same `n` always gives the same result) instead.
    pub fn is_user(self) -> bool {
        matches!(self, Kernel::User(_))
    }

    /// False for a user kernel this process knows only by name, and so cannot run.
    pub fn is_runnable(self) -> bool {
        match self {
            Kernel::User(id) => user::is_loaded(id),
            _ => true,
        }
    }

    /// One line for reports: what mechanism the kernel exposes.
    pub fn description(self) -> &'static str {
        match self {
            Kernel::Fib => "pure ALU work with no sharing: the control, where processes and threads should tie",
            Kernel::Alloc => "allocator churn: small mallocs and frees, each job its own objects",
            Kernel::Fault => "map/unmap pressure: page faults on a fresh mmap region, then munmap",
            Kernel::Tlb => "TLB shootdowns: madvise(MADV_DONTNEED) interrupts every core running a sibling thread",
            Kernel::Mprotect => "permission flips: mprotect read-only and back shoots down TLBs without freeing memory",
            Kernel::Munmap => "map and unmap without touching: the memory-map lock, no page faults",
            Kernel::Shared => "shared mutable state: one contended atomic counter, nothing else",
            Kernel::Gil => "a global interpreter lock in miniature: threads serialize, processes don't",
            Kernel::Table => "a large read-only table: threads share one copy, each process pays for its own",
            Kernel::Sleep => "blocking without CPU: an I/O stand-in, where more workers than cores help",
            Kernel::Crash => "fault injection: n = 0 panics inside the job, n = 1 aborts the process",
            Kernel::Pyfib => "fib in pure Python under CPython's real GIL: threads take turns, each process has its own",
            Kernel::PyfibSub => "fib in pure Python, a sub-interpreter with its own GIL per thread (CPython 3.12+)",
            Kernel::PyfibFt => "fib in pure Python on a free-threaded CPython (3.13t+): no GIL at all",
            Kernel::User(_) => "your own function: checked for consistency, not against a formula",
        }
    }

    /// The largest accepted `n`: one job at this size takes at most about 10 s on one core
    /// (and, for `fault`, maps at most 1 GiB).
    pub fn max_n(self) -> u64 {
        match self {
            Kernel::Fib => fib::MAX_N,
            Kernel::Alloc => alloc::MAX_N,
            Kernel::Fault => fault::max_n(),
            Kernel::Tlb => tlb::MAX_N,
            Kernel::Mprotect => mprotect::MAX_N,
            Kernel::Munmap => munmap::MAX_N,
            Kernel::Shared => shared::MAX_N,
            Kernel::Gil => gil::MAX_N,
            Kernel::Table => table::MAX_N,
            Kernel::Sleep => sleep::MAX_N,
            Kernel::Crash => 1,
            Kernel::Pyfib | Kernel::PyfibSub | Kernel::PyfibFt => pyfib::MAX_N,
            // What n means is the function's business; the job timeout bounds a job.
            Kernel::User(_) => u64::MAX,
        }
    }

    /// Why this build cannot run the kernel, or `None` if it can: the `pyfib` kernels need
    /// the `python` cargo feature and, for `pyfib-sub` and `pyfib-ft`, a CPython that has
    /// sub-interpreter GILs or no GIL. The server answers such a request `unknown_kernel` with
    /// this reason, and `serve` and `sweep` refuse to start with it. `load` asks the server
    /// instead (`load::probe`): the driver only checks results, which needs no Python.
    pub fn why_unavailable(self) -> Option<String> {
        match self {
            Kernel::Pyfib | Kernel::PyfibSub | Kernel::PyfibFt => pyfib::why_unavailable(self),
            _ => None,
        }
    }

    /// The kernel itself if this build can run it, else the reason it cannot: what `serve
    /// --preload` and `sweep` (whose servers are this build) check before they start, rather
    /// than collect a grid of error replies.
    pub fn ensure_available(self) -> Result<Kernel, String> {
        match self.why_unavailable() {
            Some(why) => Err(why),
            None => Ok(self),
        }
    }

    /// Execute the workload for real and return its deterministic result.
    ///
    /// Callers check `n <= self.max_n()` first. `crash` never returns: `n = 0` panics and any
    /// other `n` aborts the process. `fault` panics (with the reason) if the kernel refuses the
    /// mapping; the backends turn a panic into `job_panicked`.
    pub fn run(self, n: u64) -> u64 {
        match self {
            Kernel::Fib => fib(n),
            Kernel::Alloc => alloc::run(n),
            Kernel::Fault => fault::run(n),
            Kernel::Tlb => tlb::run(n),
            Kernel::Mprotect => mprotect::run(n),
            Kernel::Munmap => munmap::run(n),
            Kernel::Shared => shared::run(n),
            Kernel::Gil => gil::run(n),
            Kernel::Table => table::run(n),
            Kernel::Sleep => sleep::run(n),
            Kernel::Crash => crash(n),
            Kernel::Pyfib | Kernel::PyfibSub | Kernel::PyfibFt => pyfib::run(self, n),
            Kernel::User(id) => user::run(id, n),
        }
    }

    /// The value [`Kernel::run`] returns for `n`, computed from the formula without exercising
    /// the mechanism (no allocation churn, mapping, locking, table or sleeping).
    ///
    /// Cost: O(1) for `sleep` and `crash`; at most O(n) ALU steps (a few ns each) otherwise:
    /// `fib` and `gil` have no closed form, the others replay their random draws. A load
    /// driver that verifies many replies of the same size should compute it once per `n`.
    /// `crash` returns 0: it never replies. A user kernel has no formula and returns 0: the
    /// driver checks its replies for consistency instead (`load::consistency`).
    pub fn expected(self, n: u64) -> u64 {
        match self {
            Kernel::Fib | Kernel::Gil | Kernel::Pyfib | Kernel::PyfibSub | Kernel::PyfibFt => {
                fib(n)
            }
            Kernel::Alloc => alloc::expected(n),
            Kernel::Fault => fault::expected(n),
            Kernel::Tlb => tlb::expected(n),
            Kernel::Mprotect => mprotect::expected(n),
            Kernel::Munmap => munmap::expected(n),
            Kernel::Shared => shared::expected(n),
            Kernel::Table => table::expected(n),
            Kernel::Sleep => sleep::expected(n),
            Kernel::Crash | Kernel::User(_) => 0,
        }
    }

    /// What builds the kernel's per-process state, for the kernels that keep some: `table`'s
    /// table, the `pyfib` kernels' interpreter. The one list of such kernels.
    fn state_builder(self) -> Option<fn()> {
        match self {
            Kernel::Table => Some(|| {
                table::prepare();
            }),
            Kernel::Pyfib | Kernel::PyfibSub | Kernel::PyfibFt => Some(pyfib::prepare),
            _ => None,
        }
    }

    /// Whether the kernel keeps per-process state that [`Kernel::prepare`] builds. A server
    /// given such kernels in `--preload` builds it in every process before it listens;
    /// otherwise the first job in each process pays for it, and a process that never runs one
    /// never builds it (its memory is the server's own).
    pub fn has_process_state(self) -> bool {
        self.state_builder().is_some()
    }

    /// Build per-process state ahead of time so the first job doesn't pay for it: `table`
    /// builds its table here, the `pyfib` kernels start the interpreter. Idempotent and cheap
    /// after the first call; a no-op for the rest.
    pub fn prepare(self) {
        if let Some(build) = self.state_builder() {
            build();
        }
    }
}

impl Serialize for Kernel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Kernel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Kernel::named(&name).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Fault injection: `n = 0` panics inside the job (the backend must survive it and reply
/// `job_panicked`); any other `n` aborts the executing process (the process backend must reap
/// and replace the worker and reply `worker_crashed`; a thread backend dies with it).
fn crash(n: u64) -> u64 {
    if n == 0 {
        panic!("crash kernel: injected panic (n = 0)");
    }
    std::process::abort()
}

/// `Σ v_i` (wrapping) over the first `n` outputs of `SplitMix64::new(seed ^ n)`: the result
/// of every kernel whose work writes or chooses by one draw per step (`fault`, `tlb`,
/// `mprotect`, `munmap`), each with its own seed.
pub(crate) fn sum_of_draws(seed: u64, n: u64) -> u64 {
    let mut rng = SplitMix64::new(seed ^ n);
    (0..n).fold(0u64, |sum, _| sum.wrapping_add(rng.next()))
}

/// The SplitMix64 finalizer (Steele, Lea & Flood 2014): a cheap bijective hash of a `u64`.
///
/// Defined here rather than taken from `rand` because its exact output is part of every
/// kernel's result formula and must never change with a dependency upgrade.
pub const fn mix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The SplitMix64 generator: state advances by the golden-ratio increment, output is
/// [`mix64`] of the state. Small, fast and fixed forever, which is what a result formula needs.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

    pub const fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next output: `state += 0x9E3779B97F4A7C15; mix64(state)`.
    #[inline]
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Self::GOLDEN);
        mix64(self.state)
    }
}

//! `pyfib`, `pyfib-sub`, `pyfib-ft`: [`super::fib`]'s recurrence in pure Python, run by an
//! embedded CPython (`crate::python`, with the cargo feature `python`). Same result as `fib`; the
//! mechanism is the interpreter's GIL: held by every job (`pyfib`), one per worker thread
//! (`pyfib-sub`), or none (`pyfib-ft`). The CSV shows it as process ÷ thread throughput and
//! as `server_vcsw`: threads waiting for a shared GIL block about every 10 ms each.
//!
//! This file is compiled with or without the feature, so the kernels always have names and
//! a build without Python refuses them with the reason instead of not knowing them.

use super::Kernel;

/// A pure-Python step costs about 200 ns against `fib`'s 1.3 (190 ns on CPython 3.11, 230 on
/// 3.12, one core of the 2-core development VM), so 3·10⁷ steps take about 7 s: room for slower
/// interpreters under the ~10 s cap that every kernel keeps.
pub const MAX_N: u64 = 30_000_000;

/// Why this build cannot run a `pyfib` kernel, or `None` if it can.
pub(super) fn why_unavailable(kernel: Kernel) -> Option<String> {
    #[cfg(feature = "python")]
    {
        crate::python::why_unavailable(kernel)
    }
    #[cfg(not(feature = "python"))]
    {
        Some(format!(
            "{kernel} needs the `python` cargo feature: cargo build --release --features python"
        ))
    }
}

/// Runs a `pyfib` kernel on the calling thread (panics with the reason if it is unavailable).
pub(super) fn run(kernel: Kernel, n: u64) -> u64 {
    #[cfg(feature = "python")]
    {
        crate::python::run(kernel, n)
    }
    #[cfg(not(feature = "python"))]
    {
        let _ = n;
        panic!("{}", why_unavailable(kernel).unwrap_or_default())
    }
}

/// Starts this process's interpreter (idempotent), so a preload or a calibration pays for it
/// before the first timed job.
pub(super) fn prepare() {
    #[cfg(feature = "python")]
    crate::python::start();
}

//! The embedded CPython (cargo feature `python`): the `pyfib` kernels run the original
//! project's `cpu_bound_task` in pure Python, so the question "threads or processes?" is asked
//! of the real GIL rather than of [`crate::kernel::gil`]'s imitation.
//!
//! Each process that runs Python has one interpreter, started by [`start`]: before the server
//! says it is listening (and by a worker process before it says it is ready) when a `pyfib`
//! kernel is in `--preload`, as the sweep does for its `pyfib` cells, or by a `--python` file's
//! loading; otherwise by the first job that needs it, which then pays for it. A process that
//! runs no Python never starts one, so a `fib` server's memory is the same with or without the
//! `python` feature. The three kernels differ only in which interpreter runs the function:
//!
//! - `pyfib`: the process's main interpreter. Every job holds its GIL while it computes, so on
//!   the thread backends the workers take turns (CPython hands the GIL over every 5 ms of
//!   holding), and each worker process (process, prefork) has its own interpreter and GIL.
//! - `pyfib-sub`: a sub-interpreter per worker thread, each with its own GIL (PEP 684, CPython
//!   3.12+), built through the C API in [`sub`]: threads that share an address space but not a
//!   lock.
//! - `pyfib-ft`: the main interpreter of a free-threaded CPython (3.13t+, `Py_GIL_DISABLED`),
//!   which has no GIL to hold; refused where the linked CPython has one.
//!
//! All three return exactly [`crate::kernel::fib`]'s result, so the driver verifies them with
//! `fib`'s formula and vectors.

use crate::kernel::Kernel;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use std::ffi::CStr;
use std::sync::OnceLock;

#[cfg(tc_py312)]
mod sub;

/// The original `cpu_bound_task`, verbatim in spirit: the same recurrence as
/// [`crate::kernel::fib`] (SPEC §3), written the way the original Python server wrote it.
pub const PYFIB_SOURCE: &CStr = c"
def pyfib(n):
    acc = 0
    a, b = 0, 1
    for _ in range(max(1, n)):
        a, b = b, (a + b) % 10000019
        acc = (acc + 31 * a + 17 * b) % 1000000007
    return acc
";

/// The CPython this binary was built against, `MAJOR.MINOR` (from the build script).
pub const BUILT_FOR: &str = env!("TC_PYTHON_VERSION");

/// Starts this process's interpreter, once; later calls return at once. Leaves the GIL
/// released, so any thread may take it, and compiles `pyfib` so the first job does not pay for
/// it. Safe to call from any thread, at any time.
pub fn start() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        // Initializes without Python's signal handlers (the server keeps SIGINT and SIGTERM)
        // and releases the GIL from this thread.
        pyo3::prepare_freethreaded_python();
        Python::with_gil(|py| {
            main_pyfib(py);
        });
    });
}

/// `pyfib` compiled in the main interpreter, once per process.
fn main_pyfib(py: Python<'_>) -> &Py<PyAny> {
    static PYFIB: GILOnceCell<Py<PyAny>> = GILOnceCell::new();
    PYFIB.get_or_init(py, || {
        PyModule::from_code(py, PYFIB_SOURCE, c"pyfib.py", c"threadcenter_pyfib")
            .and_then(|m| m.getattr("pyfib"))
            .map(Bound::unbind)
            .unwrap_or_else(|e| panic!("cannot compile pyfib: {e}"))
    })
}

/// Whether the running interpreter has its GIL on: always for CPython before 3.13, and for a
/// free-threaded build unless it was started with `PYTHON_GIL=1` (or imported a module that
/// needs the GIL). Asked once per process.
pub fn gil_enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        start();
        Python::with_gil(|py| {
            py.import("sys")
                .and_then(|sys| sys.getattr("_is_gil_enabled"))
                .and_then(|f| f.call0())
                .and_then(|on| on.extract::<bool>())
                .unwrap_or(true)
        })
    })
}

/// Why this build cannot run `kernel` (one of the `pyfib` kernels), or `None` if it can.
pub fn why_unavailable(kernel: Kernel) -> Option<String> {
    let free_threaded = cfg!(tc_gil_disabled);
    match kernel {
        Kernel::Pyfib if free_threaded && !gil_enabled() => Some(format!(
            "pyfib measures the GIL, and this build links a free-threaded CPython {BUILT_FOR} \
             running without one: ask for pyfib-ft, or start the server with PYTHON_GIL=1"
        )),
        Kernel::PyfibSub if !cfg!(tc_py312) => Some(format!(
            "pyfib-sub needs CPython 3.12 or newer (a GIL per sub-interpreter, PEP 684); this \
             build links CPython {BUILT_FOR}: rebuild with \
             PYO3_PYTHON=/path/to/python3.12 cargo build --release --features python"
        )),
        Kernel::PyfibFt if !free_threaded => Some(format!(
            "pyfib-ft needs a free-threaded CPython (3.13t or newer, Py_GIL_DISABLED); this \
             build links CPython {BUILT_FOR}, which has a GIL: rebuild with \
             PYO3_PYTHON=/path/to/python3.13t cargo build --release --features python"
        )),
        Kernel::PyfibFt if gil_enabled() => Some(format!(
            "pyfib-ft needs the GIL off, but this free-threaded CPython {BUILT_FOR} runs with it \
             on (PYTHON_GIL=1, or a module that needs it)"
        )),
        _ => None,
    }
}

/// Runs one `pyfib` job on the calling thread. Panics (the backends turn it into
/// `job_panicked`) if the kernel is unavailable or the Python code raises.
pub fn run(kernel: Kernel, n: u64) -> u64 {
    if let Some(why) = why_unavailable(kernel) {
        panic!("{why}");
    }
    start();
    match kernel {
        Kernel::PyfibSub => sub_pyfib(n),
        _ => Python::with_gil(|py| {
            main_pyfib(py)
                .call1(py, (n,))
                .and_then(|r| r.extract::<u64>(py))
                .unwrap_or_else(|e| panic!("pyfib raised {e}"))
        }),
    }
}

#[cfg(tc_py312)]
fn sub_pyfib(n: u64) -> u64 {
    sub::pyfib(n).unwrap_or_else(|e| panic!("pyfib-sub: {e}"))
}

#[cfg(not(tc_py312))]
fn sub_pyfib(_n: u64) -> u64 {
    unreachable!("why_unavailable refuses pyfib-sub before 3.12")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::fib;

    #[test]
    fn pyfib_equals_fib_in_the_main_interpreter() {
        for n in [0, 1, 2, 3, 10, 1_000, 12_345] {
            assert_eq!(run(Kernel::Pyfib, n), fib(n), "n = {n}");
        }
    }

    #[test]
    fn start_is_idempotent_and_leaves_the_gil_free() {
        start();
        start();
        // Another thread can take the GIL: the starting thread did not keep it.
        let got = std::thread::spawn(|| run(Kernel::Pyfib, 100))
            .join()
            .unwrap();
        assert_eq!(got, fib(100));
    }

    #[test]
    fn refusals_say_why_and_what_to_do() {
        match why_unavailable(Kernel::PyfibFt) {
            Some(why) => assert!(why.contains("free-threaded"), "{why}"),
            None => assert!(cfg!(tc_gil_disabled) && !gil_enabled()),
        }
        let sub_refused = why_unavailable(Kernel::PyfibSub);
        assert_eq!(sub_refused.is_none(), cfg!(tc_py312), "{sub_refused:?}");
        if let Some(why) = sub_refused {
            assert!(why.contains("3.12") && why.contains(BUILT_FOR), "{why}");
        }
        assert_eq!(why_unavailable(Kernel::Fib), None);
    }
}

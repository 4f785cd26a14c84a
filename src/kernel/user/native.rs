//! `lib:` kernels: functions of a shared library, loaded with `dlopen` once per process and
//! called through a plain C function pointer. The only `unsafe` of user kernels is here.
//!
//! # The contract a library must keep
//!
//! Each symbol named with `--symbols` must be a function with exactly this C signature:
//!
//! ```c
//! uint64_t NAME(uint64_t n);
//! ```
//!
//! and it must be **well-behaved C ABI code**: return for every `n` (no `longjmp` out of it, no
//! C++ exception or Rust panic unwinding across it), be safe to call from several threads at
//! once (the thread backends do), and not touch this program's memory. Its result should
//! depend on `n` only: the driver checks that every reply for the same `n` is the same.
//!
//! Nothing can check this from the outside. Resolving a symbol only proves that the name
//! exists, not that it is a function of that type. A function that breaks the contract is
//! undefined behaviour in this process; in practice:
//!
//! - it **crashes** (`abort()`, a null dereference, a stack overflow): the process dies. On the
//!   `process` backend that is one worker, reaped and replaced, and the job gets
//!   `worker_crashed`; a prefork child dies as it does for the `crash` kernel; on the thread
//!   backends (`rayon`, `tokio`) it is the whole server. That difference is a finding, and the
//!   sweep records such a cell as `server_crashed`.
//! - it **loops forever**: the job gets `timeout`; the process backend kills and replaces the
//!   worker; a prefork child whose job runs a drain time past the timeout exits and is
//!   replaced; a thread backend's thread stays busy for good, and once every thread is held
//!   so, the jobs queued behind them wait for a thread that never frees (answered only
//!   `shutting_down` at the drain deadline). Threads cannot be killed: that, too, is a finding.
//! - it **unwinds** (a C++ exception): `extern "C"` calls abort on unwinding, so it crashes.
//! - it has **another signature**: garbage results (a mismatch) or a crash.
//!
//! # Invariants kept here
//!
//! - A [`Library`] is opened with `RTLD_NOW` (an unresolved dependency fails at start, not at
//!   the first call) and is never closed: it is leaked, so every function pointer taken from
//!   it stays valid for the life of the process.
//! - A [`Function`] is only made from a symbol of such a library, and only `call` calls it.

use anyhow::Context;
use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
use std::path::Path;

/// The one signature `lib:` kernels have.
type RawFn = extern "C" fn(u64) -> u64;

/// A resolved `uint64_t f(uint64_t)` of a library that stays loaded for the whole process.
#[derive(Debug, Clone, Copy)]
pub struct Function(RawFn);

impl Function {
    /// Calls the function. Safe to call from any thread under the library's contract (module
    /// docs); a function that breaks it can crash the process.
    pub fn call(self, n: u64) -> u64 {
        (self.0)(n)
    }
}

/// Opens `path` and resolves every symbol of `symbols`, in order. A missing symbol or a library
/// that cannot be loaded is an error naming it.
pub fn open(path: &Path, symbols: &[String]) -> anyhow::Result<Vec<Function>> {
    // SAFETY: loading a library runs its initializers: the user vouches for them by naming
    // the library (module docs). The handle is leaked so it is never unloaded, which keeps
    // the function pointers taken below valid for the life of the process.
    let library: &'static Library = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) }
        .map(|l| &*Box::leak(Box::new(l)))
        .with_context(|| format!("cannot load --library {}", path.display()))?;
    symbols
        .iter()
        .map(|name| {
            // SAFETY: the symbol is only used as the contract's `uint64_t f(uint64_t)` (module
            // docs); the library outlives it (leaked above).
            let symbol = unsafe { library.get::<RawFn>(name.as_bytes()) }.with_context(|| {
                format!(
                    "--library {} has no symbol {name:?} (is it exported with C linkage: \
                     extern \"C\" / #[no_mangle]?)",
                    path.display()
                )
            })?;
            Ok(Function(*symbol))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The C library every Linux process has: `labs` is a `long labs(long)`, the same ABI as
    /// the contract's `uint64_t f(uint64_t)` on x86-64 and aarch64.
    #[test]
    fn resolves_and_calls_a_c_function_and_names_a_missing_one() {
        let libc = Path::new("libc.so.6");
        let f = open(libc, &["labs".into()]).unwrap();
        assert_eq!(f[0].call((-5i64) as u64), 5);
        let missing = open(libc, &["no_such_function_here".into()]).unwrap_err();
        assert!(format!("{missing:#}").contains("no_such_function_here"));
        let nolib = open(Path::new("/no/such.so"), &["f".into()]).unwrap_err();
        assert!(format!("{nolib:#}").contains("/no/such.so"));
    }
}

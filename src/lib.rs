//! threadcenter: for CPU-bound requests served over TCP, where does process parallelism beat
//! thread parallelism, and by how much?
//!
//! # Layout
//!
//! Data flows one way: CLI → spec → backend started → server → load → record → CSV → report.
//!
//! - [`cli`]: the command line, one file per subcommand, turning flags into the plain configs
//!   below; nothing in the library depends on it or on clap.
//! - [`protocol`]: requests, replies, error codes (the wire contract).
//! - [`connection`]: length-prefixed framing, parsed in one place: sockets, pipes, the driver.
//! - [`clock`]: the server's clock for request timings (the TSC where the kernel trusts it).
//! - [`kernel`]: the workloads, each deterministic, each exposing one mechanism; the user's own
//!   functions (`lib:f`, `py:f`) in [`kernel::user`].
//! - [`backend`]: where the CPU work runs: worker processes, rayon, tokio's blocking pool.
//! - [`server`]: the socket side, the same code for every backend; [`server::serve`] is where
//!   a backend kind decides how the server starts (a pool, or prefork's W whole servers).
//! - [`server::child`]: a server run as a child process and stopped with a deadline: the
//!   sweep's cells, prefork's workers, and the servers of the tests and benches.
//! - [`worker`]: the process backend's child, `threadcenter-bench worker`.
//! - `python` (cargo feature `python`): the embedded CPython behind the `pyfib` kernels.
//! - [`load`]: the load driver: closed/open loop, verified replies, HdrHistogram latencies.
//! - [`sweep`]: the grid, one cell at a time, each on a fresh server process.
//! - [`record`]: one CSV row per cell and repetition.
//! - [`report`]: statistics, charts and the self-contained HTML report.
//! - [`runtime`]: tokio runtimes, built one way for the server, the driver and the sweep.
//! - [`units`]: durations as written on the command line (`500ms`, `3s`, `2m`).
//! - [`machine`]: what the machine is (`env.json`) and what processes on it used.

pub mod backend;
pub mod cli;
pub mod clock;
pub mod connection;
pub mod kernel;
pub mod load;
pub mod machine;
pub mod protocol;
#[cfg(feature = "python")]
pub mod python;
pub mod record;
pub mod report;
pub mod runtime;
pub mod server;
pub mod sweep;
pub mod units;
pub mod worker;

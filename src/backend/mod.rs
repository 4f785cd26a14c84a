//! Where the CPU work runs.
//!
//! A [`Backend`] accepts a [`Job`] and calls its completion exactly once with the outcome. The
//! socket side ([`crate::server`]) is the same for every backend; only this choice differs:
//!
//! - [`process`]: worker processes, the binary re-executed as `threadcenter-bench worker`, fed
//!   over pipes (the original Python design, `multiprocessing.Pool`).
//! - [`shm`]: the same worker processes fed through shared-memory rings (`--backend shm`).
//! - [`rayon_pool`]: a rayon thread pool.
//! - [`tokio_pool`]: `spawn_blocking` on a blocking pool capped at W threads.
//!
//! The fourth design, `prefork`, is not a backend: it is W whole servers sharing a port, so it
//! lives in [`crate::server::prefork`]. Which design a `--backend` value starts is decided in
//! one place, [`crate::server::serve`].

mod pipe;
pub mod process;
pub mod rayon_pool;
pub mod shm;
mod thread_pool;
pub mod tokio_pool;

use crate::kernel::Kernel;
use crate::protocol::ErrorCode;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One unit of CPU work.
#[derive(Debug, Clone)]
pub struct Job {
    pub kernel: Kernel,
    pub n: u64,
    /// When the server handed the job to the backend, in [`mono_ns`] (the clock every process
    /// shares, so a worker process measures `queue_us` from here without a conversion).
    pub submitted_ns: u64,
    /// Set when no one is left to read the result (the client vanished): a job that has not
    /// started by then is dropped instead of run. A running job cannot be stopped.
    pub abandoned: Option<Arc<AtomicBool>>,
}

impl Job {
    pub fn is_abandoned(&self) -> bool {
        self.abandoned
            .as_ref()
            .is_some_and(|a| a.load(std::sync::atomic::Ordering::Acquire))
    }
}

/// The outcome given to a job dropped before it started because its client is gone. No one
/// reads it; it exists so that every completion is still called exactly once.
pub fn dropped_unstarted() -> Failure {
    Failure::new(
        ErrorCode::ShuttingDown,
        "the client disconnected before the job started; it was not run",
    )
}

/// A finished job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Done {
    pub result: u64,
    /// From submission until the kernel started, µs.
    pub queue_us: f64,
    /// Inside the kernel, µs.
    pub compute_us: f64,
}

/// A job that did not produce a result.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: ErrorCode,
    pub detail: String,
}

impl Failure {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Failure {
            code,
            detail: detail.into(),
        }
    }
}

/// What a job came to: its result, or why there is none.
pub type JobResult = Result<Done, Failure>;

/// Called exactly once per accepted job, from whatever thread finished it.
pub type Completion = Box<dyn FnOnce(JobResult) + Send + 'static>;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A pool that runs jobs. Implementations must call each accepted job's completion exactly
/// once, and must never block the caller of `submit`.
pub trait Backend: Send + Sync + 'static {
    /// The contract name: `process`, `shm`, `rayon` or `tokio`.
    fn name(&self) -> &'static str;

    /// Queues a job, or refuses it at once (`overloaded` when the queue is full,
    /// `shutting_down` after [`Backend::shutdown`] began).
    fn submit(&self, job: Job, done: Completion) -> Result<(), Failure>;

    /// Lets queued and running jobs finish (up to `drain`), then stops the workers. Jobs still
    /// unfinished after `drain` get `shutting_down`.
    fn shutdown(&self, drain: Duration) -> BoxFuture<'_, ()>;

    /// Resolves if the backend can no longer serve (a worker process that cannot start): the
    /// server then exits with this message rather than fail every request.
    fn fatal(&self) -> BoxFuture<'_, String> {
        Box::pin(std::future::pending())
    }
}

/// `--backend` values (contract names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Process,
    Rayon,
    Tokio,
    Prefork,
    Shm,
}

impl BackendKind {
    pub const ALL: [BackendKind; 5] = [
        BackendKind::Process,
        BackendKind::Rayon,
        BackendKind::Tokio,
        BackendKind::Prefork,
        BackendKind::Shm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Process => "process",
            BackendKind::Rayon => "rayon",
            BackendKind::Tokio => "tokio",
            BackendKind::Prefork => "prefork",
            BackendKind::Shm => "shm",
        }
    }

    pub fn parse(s: &str) -> Option<BackendKind> {
        Self::ALL.into_iter().find(|b| b.name() == s)
    }
}

/// How a pool is sized and limited.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub workers: usize,
    /// Jobs accepted but not yet started; beyond it, `overloaded`.
    pub queue: usize,
    /// A job running longer than this gets `timeout` (the process backend also kills it).
    pub job_timeout: Duration,
    /// Process backend: jobs written ahead to each worker's pipe, to hide its round trip.
    pub worker_queue: usize,
    /// Kernels whose per-process state is built before the pool reports ready.
    pub preload: Vec<Kernel>,
    /// Process backend: the program to run as `worker` (default: this executable).
    pub worker_exe: Option<std::path::PathBuf>,
    /// Process backend: how jobs reach the workers.
    pub transport: Transport,
}

/// How the process pool talks to its workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Length-prefixed frames over each worker's stdin and stdout (`--backend process`).
    Pipe,
    /// Shared-memory rings (`--backend shm`); an idle worker polls for `spin_us` µs before it
    /// sleeps.
    Shm { spin_us: u64 },
}

/// Runs a job on the calling thread, turning a panic into `job_panicked`. Shared by the thread
/// backends and the worker process.
pub fn run_caught(kernel: Kernel, n: u64) -> Result<(u64, f64), Failure> {
    let start = Instant::now();
    match std::panic::catch_unwind(|| kernel.run(n)) {
        Ok(result) => Ok((result, micros(start.elapsed()))),
        Err(payload) => Err(Failure::new(
            ErrorCode::JobPanicked,
            panic_message(&*payload),
        )),
    }
}

pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("job panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("job panicked: {s}")
    } else {
        "job panicked".to_string()
    }
}

/// Microseconds from `from_ns` to `to_ns` on [`mono_ns`]; 0 when `to_ns` is earlier.
pub fn micros_between(from_ns: u64, to_ns: u64) -> f64 {
    to_ns.saturating_sub(from_ns) as f64 / 1e3
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub use pipe::{mono_ns, PipeJob, PipeReply, MAX_PIPE_FRAME};
pub(crate) use thread_pool::ThreadPoolCore;

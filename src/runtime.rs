//! Tokio runtimes, built one way for the server, the load driver and the sweep.

use tokio::runtime::{Builder, Runtime};

/// The threads a runtime runs its tasks on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// Only the thread that calls `block_on`: no wake-ups across threads, nothing to steal.
    Caller,
    /// A pool of this many worker threads beside the caller. The server asks for a pool even
    /// of one: its accept loop then runs on the caller and its connections on the pool.
    Pool(usize),
}

impl Threads {
    /// The caller alone for one thread, a pool for more.
    pub fn count(n: usize) -> Threads {
        if n <= 1 {
            Threads::Caller
        } else {
            Threads::Pool(n)
        }
    }
}

/// A runtime with every driver (I/O, time) enabled.
pub fn build(threads: Threads) -> std::io::Result<Runtime> {
    build_on(threads, None)
}

/// [`build`], its threads (the caller's included, which `block_on` runs on) kept to `cpus`:
/// the sweep's load driver on cores of its own, away from the server it measures.
pub fn build_on(threads: Threads, cpus: Option<&[usize]>) -> std::io::Result<Runtime> {
    let mut builder = match threads {
        Threads::Caller => Builder::new_current_thread(),
        Threads::Pool(n) => {
            let mut b = Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    if let Some(cpus) = cpus {
        crate::machine::pin_current_thread(cpus)?;
        let cpus = cpus.to_vec();
        // Threads inherit the caller's mask already; pinning each again on start keeps a
        // thread started from elsewhere (a blocking-pool thread) on the same cores.
        builder.on_thread_start(move || {
            let _ = crate::machine::pin_current_thread(&cpus);
        });
    }
    builder.enable_all().build()
}

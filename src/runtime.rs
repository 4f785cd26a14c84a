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
    match threads {
        Threads::Caller => Builder::new_current_thread().enable_all().build(),
        Threads::Pool(n) => Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
}

//! The tokio backend: `spawn_blocking` on a runtime of its own whose blocking pool is capped at
//! W threads. A separate runtime keeps the cap exact: the server's runtime may use its own
//! blocking pool for other things, and those threads must not count as compute workers.

use super::{Backend, BoxFuture, Completion, Failure, Job, PoolConfig, ThreadPoolCore};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

pub struct TokioBackend {
    /// Dropped (in the background) at shutdown; a runtime cannot be dropped in async context.
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    core: Arc<ThreadPoolCore>,
}

impl TokioBackend {
    pub fn start(config: PoolConfig) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(config.workers)
            // Keep idle blocking threads: re-creating them would be measured as dispatch cost.
            .thread_keep_alive(Duration::from_secs(3600))
            .thread_name("tokio-blocking")
            .build()?;
        let core = ThreadPoolCore::start(&config);
        Ok(TokioBackend {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            core,
        })
    }
}

impl Backend for TokioBackend {
    fn name(&self) -> &'static str {
        "tokio"
    }

    fn submit(&self, job: Job, done: Completion) -> Result<(), Failure> {
        self.core.admit()?;
        let core = self.core.clone();
        // The JoinHandle is dropped: the completion reports the outcome, panics included
        // (caught inside `execute`).
        drop(self.handle.spawn_blocking(move || core.execute(job, done)));
        Ok(())
    }

    fn shutdown(&self, drain: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.core.shutdown(drain).await;
            if let Some(rt) = self.runtime.lock().take() {
                rt.shutdown_background();
            }
        })
    }
}

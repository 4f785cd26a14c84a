//! The rayon backend: a `rayon::ThreadPool` of W threads. Jobs are handed over with
//! `ThreadPool::spawn`, which pushes onto the pool's global injector queue; any idle thread
//! picks them up.

use super::{Backend, BoxFuture, Completion, Failure, Job, PoolConfig, ThreadPoolCore};
use std::sync::Arc;
use std::time::Duration;

pub struct RayonBackend {
    pool: rayon::ThreadPool,
    core: Arc<ThreadPoolCore>,
}

impl RayonBackend {
    /// Builds the pool; must be called inside a tokio runtime (for the watchdog).
    pub fn start(config: PoolConfig) -> anyhow::Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.workers)
            .thread_name(|i| format!("rayon-worker-{i}"))
            .build()?;
        let core = ThreadPoolCore::start(&config);
        Ok(RayonBackend { pool, core })
    }
}

impl Backend for RayonBackend {
    fn name(&self) -> &'static str {
        "rayon"
    }

    fn submit(&self, job: Job, done: Completion) -> Result<(), Failure> {
        self.core.admit()?;
        let core = self.core.clone();
        self.pool.spawn(move || core.execute(job, done));
        Ok(())
    }

    fn shutdown(&self, drain: Duration) -> BoxFuture<'_, ()> {
        Box::pin(self.core.shutdown(drain))
    }
}

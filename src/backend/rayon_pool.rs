//! The rayon backend: a `rayon::ThreadPool` of W threads. Jobs are handed over with
//! `ThreadPool::spawn`, which pushes onto the pool's global injector queue; any idle thread
//! picks them up.

use super::{Backend, BoxFuture, Completion, Failure, Job, PoolConfig, ThreadPoolCore};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct RayonBackend {
    pool: rayon::ThreadPool,
    core: Arc<ThreadPoolCore>,
    stop_watchdog: CancellationToken,
}

impl RayonBackend {
    /// Builds the pool; must be called inside a tokio runtime (for the watchdog).
    pub fn start(config: PoolConfig) -> anyhow::Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.workers)
            .thread_name(|i| format!("rayon-worker-{i}"))
            .build()?;
        for k in &config.preload {
            k.prepare();
        }
        let core = ThreadPoolCore::new(config.queue, config.job_timeout);
        let stop_watchdog = CancellationToken::new();
        tokio::spawn(core.clone().watchdog(stop_watchdog.clone()));
        Ok(RayonBackend {
            pool,
            core,
            stop_watchdog,
        })
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
        Box::pin(async move {
            self.core.drain(drain).await;
            self.stop_watchdog.cancel();
        })
    }
}

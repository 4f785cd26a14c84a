//! What each backend costs per job, in-process, with no sockets: the hand-off from the caller
//! to a worker and back.
//!
//! - `dispatch/<backend>`: submit one tiny job (`fib` with `n = 1`, a few nanoseconds of
//!   compute) and wait for its completion. This is the round trip one request pays on top of
//!   its compute: a thread wake-up for `rayon` and `tokio`, two pipe hops and a worker process
//!   wake-up for `process`; two ring hand-offs (and an eventfd wake-up where a side sleeps)
//!   for `shm`.
//! - `throughput/<backend>`: submit a burst of tiny jobs at once and wait for all of them, in
//!   jobs per second. Here the process backend can batch pipe writes and keep jobs written
//!   ahead, so its per-job cost falls well below its round trip.
//! - `lock/<kernel>/<backend>/<k>`: `k` jobs of about 10 ms submitted at once, wall time until
//!   the last completes. With the `gil` kernel, 2 jobs take about twice as long as 1 on `rayon`
//!   and `tokio` (one lock for the whole process) and about as long on `process` (a lock per
//!   worker). `fib` is the same work without the lock: the control, where 2 jobs take as
//!   long as 1 wherever there are two free cores.
//!
//! Every backend runs with W = 2 workers (this machine's cores) under the runtime shape the
//! server uses (one I/O thread), and jobs are submitted and awaited from a task on that
//! runtime, exactly as a connection task does: for `process`, the supervisor tasks that feed
//! the pipes share that thread with the submitter, as they do in the server.
//!
//! The process backend's workers are this package's real binary (`threadcenter-bench worker`).

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use threadcenter::backend::process::ProcessBackend;
use threadcenter::backend::rayon_pool::RayonBackend;
use threadcenter::backend::tokio_pool::TokioBackend;
use threadcenter::backend::{Backend, BackendKind, Job, JobResult, PoolConfig, Transport};
use threadcenter::kernel::Kernel;
use tokio::sync::oneshot;

const WORKERS: usize = 2;
/// Jobs per burst in `throughput/*`.
const BURST: usize = 1_000;
/// A job that is all dispatch and no compute.
const TINY_N: u64 = 1;
/// About 10 ms of `fib` or `gil` (1.2–1.3 ns per step): two switch intervals of the `gil` lock.
const LOCK_N: u64 = 8_000_000;

/// The backends that are pools; `prefork` has no in-process pool (see `benches/e2e.rs`).
const POOLS: [BackendKind; 4] = [
    BackendKind::Process,
    BackendKind::Shm,
    BackendKind::Rayon,
    BackendKind::Tokio,
];

fn pool_config() -> PoolConfig {
    pool_config_for(Transport::Pipe)
}

fn pool_config_for(transport: Transport) -> PoolConfig {
    PoolConfig {
        workers: WORKERS,
        queue: 4 * BURST,
        job_timeout: Duration::from_secs(30),
        worker_queue: 2,
        preload: Vec::new(),
        worker_exe: Some(env!("CARGO_BIN_EXE_threadcenter-bench").into()),
        transport,
    }
}

/// The pool alone, without the server around it (which starts it the same way).
async fn start_pool(kind: BackendKind) -> anyhow::Result<Arc<dyn Backend>> {
    Ok(match kind {
        BackendKind::Process => Arc::new(ProcessBackend::start(pool_config()).await?),
        BackendKind::Shm => {
            let shm = Transport::Shm {
                spin_us: threadcenter::backend::shm::DEFAULT_SPIN_US,
            };
            Arc::new(ProcessBackend::start(pool_config_for(shm)).await?)
        }
        BackendKind::Rayon => Arc::new(RayonBackend::start(pool_config())?),
        BackendKind::Tokio => Arc::new(TokioBackend::start(pool_config())?),
        BackendKind::Prefork => anyhow::bail!("prefork is W whole servers, not a pool"),
    })
}

/// A backend with the runtime it needs (the server's shape: one I/O thread).
struct Running {
    rt: tokio::runtime::Runtime,
    backend: Arc<dyn Backend>,
}

impl Running {
    fn start(kind: BackendKind) -> Running {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let backend = rt
            .block_on(start_pool(kind))
            .unwrap_or_else(|e| panic!("cannot start the {} backend: {e:#}", kind.name()));
        Running { rt, backend }
    }

    fn stop(self) {
        self.rt
            .block_on(self.backend.shutdown(Duration::from_secs(5)));
    }
}

/// Hands one job to the backend; `done` gets its outcome.
fn submit(
    backend: &dyn Backend,
    kernel: Kernel,
    n: u64,
    done: impl FnOnce(JobResult) + Send + 'static,
) {
    let job = Job {
        kernel,
        n,
        submitted_ns: threadcenter::backend::mono_ns(),
        abandoned: None,
    };
    if let Err(f) = backend.submit(job, Box::new(done)) {
        panic!("{} refused a job: {f:?}", backend.name());
    }
}

/// Submits `count` jobs at once and waits for the last to complete. Returns how many failed.
async fn burst(backend: &dyn Backend, kernel: Kernel, n: u64, count: usize) -> usize {
    let (tx, rx) = oneshot::channel();
    let last = Arc::new(Mutex::new(Some(tx)));
    let left = Arc::new(AtomicUsize::new(count));
    let failed = Arc::new(AtomicUsize::new(0));
    for _ in 0..count {
        let (left, last, failed) = (left.clone(), last.clone(), failed.clone());
        submit(backend, kernel, n, move |o| {
            if o.is_err() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            if left.fetch_sub(1, Ordering::AcqRel) == 1 {
                if let Some(tx) = last.lock().take() {
                    let _ = tx.send(());
                }
            }
        });
    }
    rx.await.expect("the burst's last completion");
    failed.load(Ordering::Relaxed)
}

/// Times `iters` runs of `body` inside a task on the backend's runtime, as the server's
/// connection tasks submit and await jobs.
fn on_runtime<F, Fut>(running: &Running, iters: u64, body: F) -> Duration
where
    F: Fn(Arc<dyn Backend>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let backend = running.backend.clone();
    let task = running.rt.spawn(async move {
        let started = Instant::now();
        for _ in 0..iters {
            body(backend.clone()).await;
        }
        started.elapsed()
    });
    running
        .rt
        .block_on(task)
        .expect("the benchmark task ran to the end")
}

fn dispatch(c: &mut Criterion) {
    let mut group = c.benchmark_group("dispatch");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));
    for kind in POOLS {
        let running = Running::start(kind);
        group.bench_function(kind.name(), |b| {
            b.iter_custom(|iters| {
                on_runtime(&running, iters, |backend| async move {
                    let (tx, rx) = oneshot::channel();
                    submit(&*backend, Kernel::Fib, TINY_N, move |o| {
                        let _ = tx.send(o);
                    });
                    if let Err(f) = rx.await.expect("a completion") {
                        panic!("a tiny job failed: {f:?}");
                    }
                })
            })
        });
        running.stop();
    }
    group.finish();
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("throughput");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(BURST as u64));
    for kind in POOLS {
        let running = Running::start(kind);
        let failed = Arc::new(AtomicUsize::new(0));
        let counted = failed.clone();
        group.bench_function(kind.name(), |b| {
            b.iter_custom(|iters| {
                let failed = counted.clone();
                on_runtime(&running, iters, move |backend| {
                    let failed = failed.clone();
                    async move {
                        let lost = burst(&*backend, Kernel::Fib, TINY_N, BURST).await;
                        failed.fetch_add(lost, Ordering::Relaxed);
                    }
                })
            })
        });
        assert_eq!(failed.load(Ordering::Relaxed), 0, "tiny jobs failed");
        running.stop();
    }
    group.finish();
}

fn lock(c: &mut Criterion) {
    let mut group = c.benchmark_group("lock");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for kind in POOLS {
        let running = Running::start(kind);
        for kernel in [Kernel::Gil, Kernel::Fib] {
            for jobs in [1, 2] {
                let id = BenchmarkId::new(format!("{}/{}", kernel.name(), kind.name()), jobs);
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| {
                        on_runtime(&running, iters, move |backend| async move {
                            let failed = burst(&*backend, kernel, LOCK_N, jobs).await;
                            assert_eq!(failed, 0, "{} jobs failed", kernel.name());
                        })
                    })
                });
            }
        }
        running.stop();
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = dispatch, throughput, lock
}
criterion_main!(benches);

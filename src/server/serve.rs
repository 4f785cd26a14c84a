//! `serve` as one call: a [`ServeConfig`] (plain data, which the command line builds) becomes
//! a running server. The backend kind decides, in [`serve`]'s one `match`, how the server
//! starts: a pool of this process's own plus a listener, or prefork's supervisor of W whole
//! servers, each of them started again through this same `match`.

use super::admission::Admission;
use super::prefork::{self, InlineBackend};
use crate::backend::process::ProcessBackend;
use crate::backend::rayon_pool::RayonBackend;
use crate::backend::tokio_pool::TokioBackend;
use crate::backend::{Backend, BackendKind, PoolConfig};
use crate::runtime::{self, Threads};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Server limits (SPEC §5).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub max_frame: usize,
    pub max_connections: usize,
    pub frame_deadline: Duration,
    pub idle_timeout: Duration,
    pub max_in_flight: usize,
    /// How long in-flight work may take to finish after a shutdown signal.
    pub drain: Duration,
    pub allow_crash: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_frame: crate::protocol::DEFAULT_MAX_FRAME,
            max_connections: 1024,
            frame_deadline: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_in_flight: 64,
            drain: Duration::from_secs(10),
            allow_crash: false,
        }
    }
}

/// Everything `threadcenter-bench serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where to listen; port 0 picks a free one.
    pub addr: SocketAddr,
    pub backend: BackendKind,
    pub pool: PoolConfig,
    /// The server's limits. `max_connections` is the number asked for: serving clamps it below
    /// the open-file limit.
    pub server: ServerConfig,
    /// Threads for socket I/O (a prefork child always uses one).
    pub io_threads: usize,
    /// This process is one of prefork's single-threaded servers, started by its supervisor;
    /// only with [`BackendKind::Prefork`].
    pub prefork_child: bool,
}

impl ServeConfig {
    /// The flags that make a prefork child serve as this config asks; the supervisor adds the
    /// address and `--prefork-child`.
    fn prefork_child_args(&self) -> Vec<String> {
        let d = |d: Duration| format!("{}ms", d.as_millis());
        let s = &self.server;
        let mut a = vec![
            format!("--backend={}", BackendKind::Prefork.name()),
            format!("--max-frame={}", s.max_frame),
            format!("--max-connections={}", s.max_connections),
            format!("--frame-deadline={}", d(s.frame_deadline)),
            format!("--idle-timeout={}", d(s.idle_timeout)),
            format!("--max-in-flight={}", s.max_in_flight),
            format!("--drain={}", d(s.drain)),
            format!("--job-timeout={}", d(self.pool.job_timeout)),
        ];
        if s.allow_crash {
            a.push("--allow-crash".into());
        }
        if !self.pool.preload.is_empty() {
            let names: Vec<&str> = self.pool.preload.iter().map(|k| k.name()).collect();
            a.push(format!("--preload={}", names.join(",")));
        }
        a.extend(crate::kernel::user::flags());
        a
    }
}

/// Serves in this process until SIGINT or SIGTERM, on a runtime of its own; `ready` gets the
/// address once connections are accepted.
pub fn serve_until_signalled(
    config: ServeConfig,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let threads = if config.prefork_child {
        crate::worker::die_with_parent()?;
        Threads::Caller
    } else {
        Threads::Pool(config.io_threads)
    };
    runtime::build(threads)?.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(watch_signals(shutdown.clone()));
        serve(config, shutdown, ready).await
    })
}

/// Serves until `shutdown` is cancelled. Must be called inside a tokio runtime.
///
/// Returns an error when the server cannot start (the port is taken, workers cannot start) or
/// can no longer serve.
pub async fn serve(
    config: ServeConfig,
    shutdown: CancellationToken,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    anyhow::ensure!(config.pool.workers >= 1, "--workers must be at least 1");
    anyhow::ensure!(
        !config.prefork_child || config.backend == BackendKind::Prefork,
        "a prefork child serves with --backend prefork"
    );
    let addr = config.addr;
    let pool = config.pool.clone();
    // Each pool starts before the port is bound, so no connection waits on a pool that is
    // still starting.
    let (backend, listener): (Arc<dyn Backend>, TcpListener) = match config.backend {
        BackendKind::Process | BackendKind::Shm => (
            Arc::new(ProcessBackend::start(pool).await?),
            bind(addr).await?,
        ),
        BackendKind::Rayon => (Arc::new(RayonBackend::start(pool)?), bind(addr).await?),
        BackendKind::Tokio => (Arc::new(TokioBackend::start(pool)?), bind(addr).await?),
        BackendKind::Prefork if config.prefork_child => {
            // Each prefork process builds its own per-process state before it listens, as a
            // worker process does, so its start-up cost is measured as start-up.
            for k in &pool.preload {
                k.prepare();
            }
            let listener = prefork::reuseport_listener(addr)?;
            let inline = InlineBackend::start(pool.job_timeout, config.server.drain)?;
            (Arc::new(inline), TcpListener::from_std(listener)?)
        }
        BackendKind::Prefork => return supervise_prefork(&config, shutdown, ready).await,
    };
    ready(listener.local_addr()?);
    let mut limits = config.server;
    limits.max_connections = clamp_connections(limits.max_connections, config.pool.workers);
    let admission = if config.prefork_child {
        Admission::supervised(limits.max_connections, prefork::supervisor_link()?)?
    } else {
        Admission::local(limits.max_connections)
    };
    super::run(listener, backend, limits, admission, shutdown).await
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind {addr}"))
}

/// The prefork parent: holds the port (bound, not listening) so that every child binds the
/// same one, and supervises W children until `shutdown`.
async fn supervise_prefork(
    config: &ServeConfig,
    shutdown: CancellationToken,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let holder = prefork::hold_port(config.addr)?;
    let addr = holder.local_addr()?;
    let child_args = config.prefork_child_args();
    let ledger = super::admission::Ledger::new(config.server.max_connections);
    prefork::supervise(
        addr,
        config.pool.workers,
        child_args,
        ledger,
        shutdown,
        || ready(addr),
    )
    .await?;
    drop(holder);
    Ok(())
}

/// Keeps the connection limit below the open-file limit (raising the soft limit to the hard
/// one first), leaving room for the listener, worker pipes and the like.
fn clamp_connections(wanted: usize, workers: usize) -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return wanted;
    };
    let limit = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    // Per worker: its pipes (or, on shm, its stdin socket, stdout pipe and two eventfds) and
    // the descriptors a replacement holds while it starts.
    let reserve = 32 + 6 * workers as u64;
    let room = limit.saturating_sub(reserve).max(1);
    wanted.min(room as usize)
}

/// First SIGINT/SIGTERM: graceful shutdown. Second: exit at once.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    for count in 0.. {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if count == 0 {
            tracing::info!("shutting down: finishing in-flight requests");
            shutdown.cancel();
        } else {
            eprintln!("threadcenter-bench: second signal, exiting now");
            std::process::exit(130);
        }
    }
}

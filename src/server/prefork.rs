//! `prefork`: W complete single-threaded servers sharing one port through `SO_REUSEPORT`, as
//! nginx and gunicorn's sync workers do. Process parallelism with no IPC at all: the kernel
//! spreads incoming connections over the W listening sockets, and each process reads, computes
//! and replies on one thread. Set beside `process`, it separates what processes cost from what
//! pipes cost.
//!
//! The parent binds the port (so port 0 resolves once), starts W children as
//! `threadcenter-bench serve --prefork-child`, waits until each is listening, then supervises:
//! a child that dies is replaced; SIGTERM is passed on and the children drain. It also keeps
//! the server's count of connections against `--max-connections`, which each child asks
//! before it serves one (`src/server/admission.rs`).

use super::admission::Ledger;
use super::child::{ServerCommand, StderrTo};
use crate::backend::{
    micros_between, mono_ns, run_caught, Backend, BoxFuture, Completion, Done, Failure, Job,
};
use crate::protocol::ErrorCode;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs each job at once on the calling thread: inside a prefork child that is the thread that
/// also reads and writes the sockets, so nothing else happens while a job runs.
///
/// Nothing can stop a job from outside its thread, and here that thread is the child's only
/// one. So a job past the job timeout gets `timeout` when it returns (its result is dropped),
/// and one that is still running a drain time after that (only a user kernel can run that long:
/// a built-in one stops within about 10 s) makes its child exit, as a gunicorn sync worker past
/// its timeout is killed. That child's connections close and the supervisor starts a fresh one.
pub struct InlineBackend {
    timeout: Duration,
    /// When the running job started (`mono_ns`), 0 while none runs: read by the watchdog.
    running: Arc<AtomicU64>,
}

impl InlineBackend {
    /// The backend, with its watchdog thread: a job still running `timeout + runaway_after`
    /// after it started ends the process.
    pub fn start(timeout: Duration, runaway_after: Duration) -> anyhow::Result<InlineBackend> {
        let running = Arc::new(AtomicU64::new(0));
        let limit = timeout.saturating_add(runaway_after);
        std::thread::Builder::new()
            .name("prefork-watchdog".into())
            .spawn({
                let running = running.clone();
                move || watchdog(&running, limit)
            })
            .context("cannot start the prefork child's watchdog thread")?;
        Ok(InlineBackend { timeout, running })
    }
}

impl Backend for InlineBackend {
    fn name(&self) -> &'static str {
        "prefork"
    }

    fn submit(&self, job: Job, done: Completion) -> Result<(), Failure> {
        let started_ns = mono_ns();
        let queue_us = micros_between(job.submitted_ns, started_ns);
        self.running.store(started_ns, Ordering::Relaxed);
        let ran = run_caught(job.kernel, job.n);
        self.running.store(0, Ordering::Relaxed);
        done(match ran {
            Ok((_, compute_us)) if compute_us > self.timeout.as_secs_f64() * 1e6 => {
                Err(Failure::new(
                    ErrorCode::Timeout,
                    format!(
                        "job ran {:.3} s, longer than {:?}; prefork runs it on the server's \
                         own thread, which could not be interrupted, so its result was dropped",
                        compute_us / 1e6,
                        self.timeout
                    ),
                ))
            }
            Ok((result, compute_us)) => Ok(Done {
                result,
                queue_us,
                compute_us,
            }),
            Err(failure) => Err(failure),
        });
        Ok(())
    }

    fn shutdown(&self, _drain: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// Ends the process once one job has run longer than `limit`. Looks a few times per `limit`
/// (at most once a second), so an idle child costs next to nothing.
fn watchdog(running: &AtomicU64, limit: Duration) {
    let period = (limit / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
    let limit_ns = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
    loop {
        std::thread::sleep(period);
        let since = running.load(Ordering::Relaxed);
        if since != 0 && mono_ns().saturating_sub(since) > limit_ns {
            eprintln!(
                "threadcenter-bench: prefork child {}: a job has run longer than {limit:?} \
                 (job timeout plus drain time); exiting so that a fresh child serves",
                std::process::id()
            );
            std::process::exit(RUNAWAY_EXIT);
        }
    }
}

/// A prefork child's exit status when its watchdog ended it.
pub const RUNAWAY_EXIT: i32 = 75;

/// A child's listening socket, one of several on the port (`SO_REUSEPORT`).
pub fn reuseport_listener(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let socket = bound(addr, true)?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The parent's hold on the port: bound (not listening) so that port 0 resolves once and
/// every child binds the same port. It binds *without* `SO_REUSEPORT`, which it only sets
/// afterwards for the children's sake: a port that another server already listens on, a
/// prefork server's children included, is refused here with "address in use" instead of being
/// silently shared with it.
pub fn hold_port(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let socket = bound(addr, false)?;
    socket.set_reuse_port(true)?;
    Ok(socket.into())
}

/// A TCP socket bound to `addr` with `SO_REUSEADDR`, and `SO_REUSEPORT` set before the bind
/// when `reuse_port`.
fn bound(addr: SocketAddr, reuse_port: bool) -> anyhow::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot bind {addr}"))?;
    Ok(socket)
}

/// A prefork child's link to its supervisor's ledger of connections: its stdin.
pub fn supervisor_link() -> anyhow::Result<std::os::unix::net::UnixStream> {
    use std::os::fd::AsFd;
    let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
    let stat = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&fd))?;
    anyhow::ensure!(
        stat.st_mode & libc::S_IFMT == libc::S_IFSOCK,
        "a prefork child takes its supervisor's socket as stdin; it is started by `serve \
         --backend prefork`, not by hand"
    );
    Ok(fd.into())
}

/// How long a prefork child may take to say `listening on` (a `table` preload included).
const CHILD_START_LIMIT: Duration = Duration::from_secs(60);
/// Children drain within their own drain time; this bound only guards against a stuck one.
const CHILD_STOP_LIMIT: Duration = Duration::from_secs(15);

/// The parent's side: start W children on `addr` (already bound by `holder`), report
/// readiness through `ready`, supervise until `shutdown`, then pass the signal on and wait.
pub async fn supervise(
    addr: SocketAddr,
    workers: usize,
    child_args: Vec<String>,
    ledger: Arc<Ledger>,
    shutdown: CancellationToken,
    ready: impl FnOnce(),
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find this program to start children")?;
    let mut born = 0u64;
    // Each child's stdin is its link to the ledger of connections (`admission`).
    let mut spawn_child = || {
        born += 1;
        let child = born;
        let ledger = ledger.clone();
        let exe = &exe;
        let child_args = &child_args;
        async move {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
            ours.set_nonblocking(true)?;
            tokio::spawn(ledger.serve_child(child, tokio::net::UnixStream::from_std(ours)?));
            ServerCommand::serve(exe)
                .arg("--prefork-child")
                .args(["--host", &addr.ip().to_string()])
                .args(["--port", &addr.port().to_string()])
                .args(child_args)
                .named("prefork child")
                .stderr(StderrTo::Inherit)
                .stdin(theirs.into())
                .start_async(CHILD_START_LIMIT)
                .await
        }
    };
    let mut children = Vec::with_capacity(workers);
    for _ in 0..workers {
        children.push(spawn_child().await?);
    }
    ready();
    let mut failures = 0u32;
    loop {
        // Poll for dead children; a prefork pool replaces them like any supervisor would.
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        for slot in children.iter_mut() {
            if let Ok(Some(status)) = slot.try_wait() {
                tracing::warn!("prefork child exited ({status}); starting a replacement");
                match spawn_child().await {
                    Ok(c) => {
                        *slot = c;
                        failures = 0;
                    }
                    Err(e) => {
                        failures += 1;
                        if failures >= 3 {
                            return Err(e.context("prefork children keep failing to start"));
                        }
                    }
                }
            }
        }
    }
    // Every child hears the signal before the first is waited for, so they drain together.
    for c in &children {
        let _ = c.signal(nix::sys::signal::Signal::SIGTERM);
    }
    for c in children {
        c.reap_async(CHILD_STOP_LIMIT).await;
    }
    Ok(())
}

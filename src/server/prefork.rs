//! `prefork`: W complete single-threaded servers sharing one port through `SO_REUSEPORT`, as
//! nginx and gunicorn's sync workers do. Process parallelism with no IPC at all: the kernel
//! spreads incoming connections over the W listening sockets, and each process reads, computes
//! and replies on one thread. Set beside `process`, it separates what processes cost from what
//! pipes cost.
//!
//! The parent binds the port (so port 0 resolves once), starts W children as
//! `threadcenter-bench serve --prefork-child`, waits until each is listening, then supervises:
//! a child that dies is replaced; SIGTERM is passed on and the children drain.

use super::child::{ServerCommand, StderrTo};
use crate::backend::{
    micros_between, mono_ns, run_caught, Backend, BoxFuture, Completion, Done, Failure, Job,
};
use anyhow::Context;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs each job at once on the calling thread: inside a prefork child that is the thread that
/// also reads and writes the sockets, so nothing else happens while a job runs.
pub struct InlineBackend;

impl Backend for InlineBackend {
    fn name(&self) -> &'static str {
        "prefork"
    }

    fn submit(&self, job: Job, done: Completion) -> Result<(), Failure> {
        let queue_us = micros_between(job.submitted_ns, mono_ns());
        done(
            run_caught(job.kernel, job.n).map(|(result, compute_us)| Done {
                result,
                queue_us,
                compute_us,
            }),
        );
        Ok(())
    }

    fn shutdown(&self, _drain: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// A listening socket that other processes may also bind (`SO_REUSEPORT`).
pub fn reuseport_listener(addr: SocketAddr, listen: bool) -> anyhow::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot bind {addr}"))?;
    if listen {
        socket.listen(1024)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket.into())
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
    shutdown: CancellationToken,
    ready: impl FnOnce(),
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find this program to start children")?;
    let spawn_child = || {
        ServerCommand::serve(&exe)
            .arg("--prefork-child")
            .args(["--host", &addr.ip().to_string()])
            .args(["--port", &addr.port().to_string()])
            .args(&child_args)
            .named("prefork child")
            .stderr(StderrTo::Inherit)
            .start_async(CHILD_START_LIMIT)
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

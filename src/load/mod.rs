//! The load driver: drives any server that speaks the protocol and verifies every reply.
//!
//! A [`LoadSpec`] says how many connections, how deep each pipelines, when to stop and how to
//! pace; [`run`] connects, runs one loop per connection (`conn`) on the caller's tokio
//! runtime, and returns a [`LoadReport`]. Closed loop measures capacity; open loop (`rate`)
//! sends on a fixed schedule and measures latency from each request's intended send time, so
//! a server that stalls is charged for the requests that piled up behind the stall (no
//! coordinated omission). Every reply is matched by id and checked against the kernel's
//! expected result. The driver's own CPU use is measured so a saturated driver is flagged
//! rather than mistaken for a slow server.
//!
//! - [`spec`]: the spec and its validation.
//! - `schedule`: the open loop's intended send times.
//! - `conn`: the per-connection loop.
//! - [`verify`]: request encoding, reply parsing and checking.
//! - [`histogram`]: the run's HdrHistograms and the percentile summaries drawn from them.
//! - `timer`: sub-millisecond wake-ups for the open loop's sends.
//! - [`histlog`]: HdrHistogram interval logs and merging them.
//! - [`outcome`]: what a run measured ([`LoadReport`]) and whether to trust it.

mod conn;
pub mod histlog;
pub mod histogram;
pub mod ids;
pub mod outcome;
mod schedule;
pub mod spec;
mod timer;
pub mod verify;

pub use histogram::Summary;
pub use outcome::LoadReport;
pub use spec::{Arrival, Cmd, LoadSpec, Pace, Stop};

use anyhow::Context;
use conn::{Plan, Tally};
use parking_lot::Mutex;
use rand::distributions::WeightedIndex;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::net::TcpStream;

/// Length of each interval of the latency log.
pub const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Runs the load described by `spec` on the current tokio runtime.
///
/// Returns `Err` only when nothing could be measured at all: an invalid spec, or no connection
/// could be opened. Everything else (refused requests, wrong results, dropped connections,
/// timeouts) is counted in the report, by kind.
pub async fn run(spec: &LoadSpec) -> anyhow::Result<LoadReport> {
    spec.validate()?;
    let expected = {
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || verify::expected_results(&spec))
            .await
            .context("computing the expected results failed")?
    };
    let streams = connect_all(spec).await;
    if let Some(Err(first)) = streams.iter().find(|s| s.is_err()) {
        if streams.iter().all(Result::is_err) {
            anyhow::bail!("{first}");
        }
    }

    let threads = tokio::runtime::Handle::current().metrics().num_workers();
    let cpu_before = crate::machine::process_cpu_seconds();
    let start = Instant::now();
    let measure_start = start + spec.warmup;
    let started = SystemTime::now() + spec.warmup;
    let end = match spec.stop {
        Stop::Duration(d) => Some(measure_start + d),
        Stop::Requests(_) => None,
    };
    let weights = match (spec.cmd, spec.mix.len()) {
        (Cmd::Compute, 2..) => Some(
            WeightedIndex::new(spec.mix.iter().map(|(_, w)| *w))
                .context("invalid kernel mix weights")?,
        ),
        _ => None,
    };
    let plan = Arc::new(Plan {
        spec: spec.clone(),
        encoder: verify::Encoder::new(spec),
        expected,
        weights,
        start,
        measure_start,
        end,
        ids: ids::RunIds::random(),
        recorder: Mutex::new(histogram::Recorder::new(
            spec.mix.len(),
            measure_start,
            LOG_INTERVAL,
        )),
    });

    let mut tallies = Vec::with_capacity(streams.len());
    let mut tasks = Vec::with_capacity(streams.len());
    for (i, stream) in streams.into_iter().enumerate() {
        match stream {
            Ok(s) => tasks.push(tokio::spawn(conn::drive(s, i as u32, plan.clone()))),
            Err(reason) => tallies.push(failed(reason)),
        }
    }
    for task in tasks {
        match task.await {
            Ok(t) => tallies.push(t),
            Err(e) => tallies.push(failed(format!("connection task failed: {e}"))),
        }
    }
    let finished = Instant::now();
    let cpu_s = cpu_before.and_then(|b| crate::machine::process_cpu_seconds().map(|a| a - b));
    let timing = outcome::Timing {
        finished,
        cpu_s,
        threads,
        started,
    };
    Ok(outcome::assemble(&plan, tallies, timing))
}

/// A connection that never ran: one `connection` error with the reason.
fn failed(reason: String) -> Tally {
    let mut t = Tally::default();
    t.errors.insert(verify::kind::CONNECTION, 1);
    t.notes
        .push(format!("{}: {reason}", verify::kind::CONNECTION));
    t
}

/// Opens every connection at once, each within the spec's timeout.
async fn connect_all(spec: &LoadSpec) -> Vec<Result<TcpStream, String>> {
    let tasks: Vec<_> = (0..spec.connections)
        .map(|_| tokio::spawn(connect(spec.addr, spec.timeout)))
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(match t.await {
            Ok(r) => r,
            Err(e) => Err(format!("connect task failed: {e}")),
        });
    }
    out
}

async fn connect(addr: std::net::SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(format!(
                "cannot connect to {addr}: connection refused — is the server running?"
            ))
        }
        Ok(Err(e)) => return Err(format!("cannot connect to {addr}: {e}")),
        Err(_) => {
            return Err(format!(
                "cannot connect to {addr}: no answer within {}",
                humantime::format_duration(timeout)
            ))
        }
    };
    // Requests are tiny and latency is the measurement: never let Nagle hold one back.
    stream
        .set_nodelay(true)
        .map_err(|e| format!("cannot set TCP_NODELAY on a connection to {addr}: {e}"))?;
    Ok(stream)
}

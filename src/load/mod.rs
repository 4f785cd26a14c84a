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
//! - [`consistency`]: checking user kernels, which have no formula, for consistency.
//! - [`histogram`]: the run's HdrHistograms and the percentile summaries drawn from them.
//! - `timer`: sub-millisecond wake-ups for the open loop's sends.
//! - [`histlog`]: HdrHistogram interval logs and merging them.
//! - [`threads`]: how many threads the driver needs for a load.
//! - [`merge`]: several hosts' logs added into one report.
//! - [`outcome`]: what a run measured ([`LoadReport`]) and whether to trust it.

mod conn;
pub mod consistency;
pub mod histlog;
pub mod histogram;
pub mod ids;
pub mod merge;
pub mod outcome;
pub mod probe;
mod schedule;
pub mod spec;
pub mod threads;
mod timer;
pub mod verify;
mod window;

pub use consistency::Consistency;
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
    run_at(spec, None).await
}

/// Like [`run`], but when `start_at` is given the driver connects and prepares first, then
/// sends its first request at that wall-clock instant, so drivers on several hosts (with
/// synchronised clocks) load the server together and their logs add up to one run. A start
/// time that has passed by the time the connections are open is an error: a late driver
/// would measure a different load from its peers'.
pub async fn run_at(spec: &LoadSpec, start_at: Option<SystemTime>) -> anyhow::Result<LoadReport> {
    run_checked(spec, start_at, Arc::default()).await
}

/// How long before `--start-at` a driver probes the server and opens its connections.
const CONNECT_LEAD: Duration = Duration::from_secs(2);

/// Like [`run_at`], checking user kernels' replies against `seen`, the first results seen by
/// this run and by every earlier run that shared it (a sweep's cells), and adding to it.
pub async fn run_checked(
    spec: &LoadSpec,
    start_at: Option<SystemTime>,
    seen: Arc<Consistency>,
) -> anyhow::Result<LoadReport> {
    spec.validate()?;
    let expected = {
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || verify::expected_results(&spec))
            .await
            .context("computing the expected results failed")?
    };
    let expected = consistency::Expected::new(spec, expected, seen);
    let ids = ids::RunIds::random(spec.connections);
    // Connections opened long before the start would sit idle past the server's idle timeout
    // (120 s by default) and be closed: probe and connect shortly before it.
    if let Some(at) = start_at {
        if let Ok(ahead) = at.duration_since(SystemTime::now()) {
            tokio::time::sleep(ahead.saturating_sub(CONNECT_LEAD)).await;
        }
    }
    probe::check_kernels(spec, &ids).await?;
    let streams = connect_all(spec).await;
    if let Some(Err(first)) = streams.iter().find(|s| s.is_err()) {
        if streams.iter().all(Result::is_err) {
            anyhow::bail!("{first}");
        }
    }

    if let Some(at) = start_at {
        wait_until(at).await?;
    }
    let metrics = tokio::runtime::Handle::current().metrics();
    let threads = metrics.num_workers();
    let busy_before = busy_times(&metrics);
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
        ids,
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
    let wall = finished.saturating_duration_since(start).as_secs_f64();
    let busy = busy_times(&metrics)
        .iter()
        .zip(&busy_before)
        .map(|(after, before)| {
            if wall > 0.0 {
                (after.saturating_sub(*before).as_secs_f64() / wall).min(1.0)
            } else {
                0.0
            }
        })
        .collect();
    let timing = outcome::Timing {
        finished,
        cpu_s,
        threads,
        busy,
        started,
    };
    Ok(outcome::assemble(&plan, tallies, timing))
}

/// How long each runtime worker has spent running tasks so far.
fn busy_times(metrics: &tokio::runtime::RuntimeMetrics) -> Vec<Duration> {
    (0..metrics.num_workers())
        .map(|w| metrics.worker_total_busy_duration(w))
        .collect()
}

/// Sleeps until the wall-clock instant `at`, or fails when it has already passed.
async fn wait_until(at: SystemTime) -> anyhow::Result<()> {
    match at.duration_since(SystemTime::now()) {
        Ok(wait) => {
            tokio::time::sleep(wait).await;
            Ok(())
        }
        Err(late) => anyhow::bail!(
            "the start time {} passed {} ago, before the driver was ready (connections open, expected results computed); give a later start time",
            humantime::format_rfc3339_millis(at),
            humantime::format_duration(Duration::from_millis(late.duration().as_millis() as u64))
        ),
    }
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

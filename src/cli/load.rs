//! `threadcenter-bench load`: flags turned into a validated [`LoadSpec`], the run on its own
//! runtime, the printed summary and the files asked for.

use super::{one_of, summary};
use crate::kernel::Kernel;
use crate::load::merge::HostRecord;
use crate::load::{self, histlog, Arrival, Cmd, LoadReport, LoadSpec, Pace, Stop};
use crate::runtime::{self, Threads};
use crate::units::{parse_duration, parse_positive_duration};
use anyhow::Context;
use serde::Serialize;
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// `threadcenter-bench load`: defaults mirror the original Python client (4 connections,
/// 5 requests each, `fib(500000)`, one request in flight per connection).
///
/// Exit status (SPEC §6): 0 when at least one reply verified and every request, warmup
/// included, got its one correct reply or an error reply from the server; 1 when nothing valid
/// was measured, the server was unreachable, a reply failed verification (mismatch, bad reply,
/// unmatched or duplicate id), a request timed out, or a connection was lost (its requests
/// unanswered). Error replies from the server (`overloaded`, `shutting_down`, …) are
/// measurements, not failures. See [`LoadReport::failures`].
#[derive(Debug, clap::Args)]
#[command(after_help = EXIT_STATUS)]
pub struct LoadArgs {
    /// Server host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Server port.
    #[arg(long, default_value_t = 5050)]
    pub port: u16,
    /// TCP connections.
    #[arg(long, short = 'c', default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub connections: u32,
    /// Requests each connection keeps in flight (pipelining depth).
    #[arg(long, short = 'd', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub depth: u32,
    /// Measured requests per connection [default: 5, unless --duration is given].
    #[arg(long, short = 'r', conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Send for this long instead of a fixed count (e.g. 500ms, 3s, 2m).
    #[arg(long, value_parser = parse_positive_duration)]
    pub duration: Option<Duration>,
    /// Load sent first and verified but not recorded.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Open loop: send at this many requests per second in total, on a fixed schedule, and
    /// measure latency from each request's intended send time.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Gaps between the open loop's intended send times [default: poisson].
    #[arg(long, requires = "rate", value_parser = one_of(Arrival::ALL, Arrival::name, arrival_help))]
    pub arrival: Option<Arrival>,
    /// Work size `n` of every compute request.
    #[arg(long, default_value_t = 500_000)]
    pub size: u64,
    /// Kernel, or a weighted mix such as fib:9,tlb:1.
    #[arg(long, default_value = "fib", value_parser = parse_mix)]
    pub kernel: Mix,
    /// Write the spec, the report and the environment as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the latency histogram as an HdrHistogram interval log (one interval per second).
    #[arg(long, value_name = "FILE")]
    pub hist_log: Option<PathBuf>,
    /// What each request asks for.
    #[arg(long, default_value = Cmd::Compute.name(), value_parser = one_of(Cmd::ALL, Cmd::name, cmd_help))]
    pub cmd: Cmd,
    /// Wait this long for each reply (and to connect) before counting a timeout.
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    pub timeout: Duration,
    /// Seed of the arrival schedule and the kernel choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Don't ask the server for its timings.
    #[arg(long)]
    pub no_timing: bool,
    /// Threads driving the load [default: from the cores and the offered load: the open
    /// loop's rate, or the closed loop's connections × depth].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub driver_threads: Option<u16>,
    /// Connect first, then start sending at this wall-clock time, so drivers on several hosts
    /// start together: UTC as 2026-11-27T18:00:00Z, or +10s from now.
    #[arg(long, value_name = "TIME", value_parser = parse_start_at)]
    pub start_at: Option<SystemTime>,
    /// This driver's name in its --hist-log, for `merge` [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub label: Option<String>,
}

/// A `--start-at` value: an RFC 3339 UTC time or `+DURATION` from now, refused when past.
fn parse_start_at(s: &str) -> Result<SystemTime, String> {
    let now = SystemTime::now();
    let at = match s.strip_prefix('+') {
        Some(after) => now + parse_positive_duration(after)?,
        None => humantime::parse_rfc3339_weak(s).map_err(|e| {
            format!("{e}: give a UTC time such as 2026-11-27T18:00:00Z, or +10s from now")
        })?,
    };
    match now.duration_since(at) {
        Ok(ago) => Err(format!(
            "{s} is in the past ({} ago; the time here is {}): give a time to come, such as +10s",
            humantime::format_duration(Duration::from_secs(ago.as_secs())),
            humantime::format_rfc3339_seconds(now)
        )),
        Err(_) => Ok(at),
    }
}

const EXIT_STATUS: &str = "Exit status: 0 when at least one reply verified and every request \
(warmup included) got its reply; 1 when nothing valid was measured, the server was unreachable, \
a reply failed verification (mismatch, bad reply, unmatched or duplicate id), a request timed \
out, or a connection was lost with requests unanswered. Error replies from the server \
(overloaded, shutting_down, ...) are counted, not fatal.";

/// A parsed `--kernel` value.
#[derive(Debug, Clone)]
pub struct Mix(pub Vec<(Kernel, u32)>);

/// A mix of kernels this driver knows by name. Whether the server runs them is the server's
/// to say: a kernel this build cannot run itself (a `pyfib` kernel without the `python`
/// feature) is asked about before the run (`load::probe`).
fn parse_mix(s: &str) -> Result<Mix, String> {
    LoadSpec::parse_mix(s)
        .map(Mix)
        .map_err(|e| format!("{e:#}"))
}

fn arrival_help(a: Arrival) -> Option<&'static str> {
    Some(match a {
        Arrival::Uniform => "Evenly spaced",
        Arrival::Poisson => {
            "Exponential gaps: independent arrivals, as from many unrelated clients"
        }
    })
}

fn cmd_help(c: Cmd) -> Option<&'static str> {
    Some(match c {
        Cmd::Compute => {
            "Run a kernel on the server; every result is checked against the kernel's formula \
             (user kernels: for consistency)"
        }
        Cmd::Ping => "No work: measures the protocol and transport alone",
    })
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        Ok(r) => Err(format!(
            "{r} is not a positive number of requests per second"
        )),
        Err(e) => Err(format!("{e}: give requests per second, e.g. 200 or 12.5")),
    }
}

impl LoadArgs {
    /// The validated spec these flags describe.
    pub fn to_spec(&self) -> anyhow::Result<LoadSpec> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve host {:?}", self.host))?
            .next()
            .with_context(|| format!("host {:?} has no address", self.host))?;
        let stop = match (self.requests, self.duration) {
            (_, Some(d)) => Stop::Duration(d),
            (Some(r), None) => Stop::Requests(r),
            (None, None) => Stop::Requests(5),
        };
        let pace = match self.rate {
            None => Pace::Closed,
            Some(rate) => Pace::Open {
                rate,
                arrival: self.arrival.unwrap_or(Arrival::Poisson),
            },
        };
        let spec = LoadSpec {
            addr,
            connections: self.connections,
            depth: self.depth,
            stop,
            warmup: self.warmup,
            pace,
            cmd: self.cmd,
            mix: self.kernel.0.clone(),
            size: self.size,
            sizes: Vec::new(),
            timing: !self.no_timing,
            timeout: self.timeout,
            seed: self.seed,
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// Runs `load`: builds its own runtime, prints the summary, writes the files asked for.
pub fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let spec = args.to_spec()?;
    let threads = args.driver_threads.map_or_else(
        || load::threads::driver_threads(crate::machine::cores(), &spec),
        usize::from,
    );
    let runtime =
        runtime::build(Threads::count(threads)).context("cannot start the driver's runtime")?;
    let report = runtime.block_on(load::run_at(&spec, args.start_at))?;
    print!("{}", summary::summary(&spec, &report));
    if let Some(path) = &args.json {
        super::write_json(
            path,
            &JsonReport {
                checked: crate::load::consistency::methods(&spec.mix),
                spec: &spec,
                report: &report,
                environment: crate::machine::Environment::here(),
            },
        )?;
    }
    if let Some(path) = &args.hist_log {
        let host = args
            .label
            .clone()
            .or_else(sysinfo::System::host_name)
            .unwrap_or_else(|| "driver".to_string());
        let comments = HostRecord::comments(&host, &spec.describe(), &report)?;
        write_hist_log(path, &comments, &report)?;
    }
    let failures = report.failures();
    if failures.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "threadcenter-bench load: the run failed: {}",
        failures.join("; ")
    );
    Ok(ExitCode::FAILURE)
}

/// What `--json` writes.
#[derive(Serialize)]
struct JsonReport<'a> {
    /// How each kernel's replies were verified: `formula`, or `consistency` for user kernels.
    checked: std::collections::BTreeMap<&'static str, &'static str>,
    spec: &'a LoadSpec,
    report: &'a LoadReport,
    environment: crate::machine::Environment,
}

/// Writes the latency log with what `merge` needs: the host's record and its other histograms.
fn write_hist_log(path: &Path, comments: &[String], report: &LoadReport) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let log = histlog::Log {
        intervals: &report.intervals,
        started: report.started,
        comments,
        parts: &report.parts,
    };
    histlog::write_full(&mut out, &log)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::flush(&mut out).with_context(|| format!("cannot write {}", path.display()))
}

//! Many drivers, one result: the logs of several `load` processes (on one host or many, started
//! together with `--start-at`) added into the report one driver would have made.
//!
//! Each driver's `--hist-log` holds its latency intervals, its other whole-run histograms as
//! tagged intervals, and a [`HostRecord`] comment with its counts. Merging sums the counts,
//! adds the histograms (percentiles of the union, never averages of percentiles), and takes
//! the run's window from the earliest start to the latest end.

use super::histlog::{self, LogRead};
use super::histogram::{new_histogram, KERNEL_TAG};
use super::outcome::busy_warning;
use super::{LoadReport, Summary};
use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Starts the comment line that holds a driver's [`HostRecord`] as JSON.
pub const RECORD_PREFIX: &str = "threadcenter-host ";

/// What a driver's log says about its run beside the histograms: the counts a merge sums.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostRecord {
    /// The driver's name (`load --label`, by default its host name).
    pub host: String,
    /// The load it sent, as `load` describes it.
    pub load: String,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub sent: u64,
    pub late_sends: u64,
    pub unsent: u64,
    pub late_replies: u64,
    pub duration_s: f64,
    pub target_rps: Option<f64>,
    pub achieved_rps: f64,
    pub warmup_sent: u64,
    pub warmup_ok: u64,
    pub warmup_errors: BTreeMap<String, u64>,
    pub wall_s: f64,
    pub client_cpu_s: f64,
    pub driver_threads: usize,
    pub driver_saturated: bool,
    pub driver_busy: Vec<f64>,
    pub shortfall: Option<String>,
    pub notes: Vec<String>,
}

impl HostRecord {
    /// The record of one driver's run.
    pub fn of(host: &str, load: &str, r: &LoadReport) -> HostRecord {
        HostRecord {
            host: host.to_string(),
            load: load.to_string(),
            ok: r.ok,
            errors: r.errors.clone(),
            sent: r.sent,
            late_sends: r.late_sends,
            unsent: r.unsent,
            late_replies: r.late_replies,
            duration_s: r.duration_s,
            target_rps: r.target_rps,
            achieved_rps: r.achieved_rps,
            warmup_sent: r.warmup_sent,
            warmup_ok: r.warmup_ok,
            warmup_errors: r.warmup_errors.clone(),
            wall_s: r.wall_s,
            client_cpu_s: r.client_cpu_s,
            driver_threads: r.driver_threads,
            driver_saturated: r.driver_saturated,
            driver_busy: r.driver_busy.clone(),
            shortfall: r.shortfall.clone(),
            notes: r.notes.clone(),
        }
    }

    /// The comment lines a driver's log starts with: what wrote it, then this record.
    pub fn comments(&self) -> anyhow::Result<Vec<String>> {
        let json = serde_json::to_string(self).context("cannot encode the host record")?;
        Ok(vec![
            format!("threadcenter-bench load: {}", self.load),
            format!("{RECORD_PREFIX}{json}"),
        ])
    }
}

/// One driver's log, read back.
pub struct HostLog {
    pub file: PathBuf,
    pub record: HostRecord,
    /// Untagged intervals in the file.
    pub intervals: usize,
    /// The report this driver alone made, rebuilt from its log.
    pub report: LoadReport,
}

/// Reads one driver's log. A log from another HdrHistogram tool (no record) counts each
/// sample as one correct reply and is named after its file.
pub fn read_host(path: &Path) -> anyhow::Result<HostLog> {
    let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let log = histlog::read_full(&text).with_context(|| format!("in {}", path.display()))?;
    let record = match log
        .comments
        .iter()
        .find_map(|c| c.strip_prefix(RECORD_PREFIX))
    {
        Some(json) => serde_json::from_str(json)
            .with_context(|| format!("the host record in {} does not parse", path.display()))?,
        None => HostRecord {
            host: path
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
            ok: log.latency.len(),
            sent: log.latency.len(),
            ..HostRecord::default()
        },
    };
    let intervals = log.intervals;
    Ok(HostLog {
        file: path.to_path_buf(),
        report: report_of(&record, log),
        record,
        intervals,
    })
}

/// The report all `hosts` together made: counts summed, histograms added, the window from the
/// earliest start to the latest end.
pub fn combine(hosts: &[HostLog]) -> anyhow::Result<LoadReport> {
    let mut total = HostRecord::default();
    let mut latency = new_histogram();
    let mut parts: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    // A log without a StartTime (from another tool) reads as starting at the epoch; it
    // takes no part in placing the window.
    let first = hosts
        .iter()
        .map(|h| h.report.started)
        .filter(|s| *s != SystemTime::UNIX_EPOCH)
        .min();
    let mut end = Duration::ZERO;
    for h in hosts {
        let r = &h.record;
        let add = |into: &mut Histogram<u64>, from: &Histogram<u64>| {
            into.add(from)
                .map_err(|e| anyhow::anyhow!("cannot add {}: {e:?}", h.file.display()))
        };
        add(&mut latency, &h.report.hist)?;
        for (name, part) in &h.report.parts {
            add(
                parts.entry(name.clone()).or_insert_with(new_histogram),
                part,
            )?;
        }
        let offset = first
            .and_then(|f| h.report.started.duration_since(f).ok())
            .unwrap_or_default();
        end = end.max(offset + Duration::from_secs_f64(r.duration_s.max(0.0)));
        sum_into(&mut total, r);
    }
    let loads: Vec<&str> = hosts.iter().map(|h| h.record.load.as_str()).collect();
    total.host = format!("{} hosts", hosts.len());
    total.load = if loads.windows(2).all(|w| w[0] == w[1]) {
        loads.first().copied().unwrap_or_default().to_string()
    } else {
        "differing loads".to_string()
    };
    total.duration_s = end.as_secs_f64();
    let log = LogRead {
        latency,
        intervals: hosts.iter().map(|h| h.intervals).sum(),
        parts,
        started: first,
        comments: Vec::new(),
    };
    Ok(report_of(&total, log))
}

/// Adds one host's counts into `total`; notes and shortfalls keep the host's name.
fn sum_into(total: &mut HostRecord, r: &HostRecord) {
    let add = |into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>| {
        for (k, v) in from {
            *into.entry(k.clone()).or_insert(0) += v;
        }
    };
    total.ok += r.ok;
    total.sent += r.sent;
    total.late_sends += r.late_sends;
    total.unsent += r.unsent;
    total.late_replies += r.late_replies;
    total.warmup_sent += r.warmup_sent;
    total.warmup_ok += r.warmup_ok;
    add(&mut total.errors, &r.errors);
    add(&mut total.warmup_errors, &r.warmup_errors);
    total.target_rps = match (total.target_rps, r.target_rps) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
    total.achieved_rps += r.achieved_rps;
    total.wall_s = total.wall_s.max(r.wall_s);
    total.client_cpu_s += r.client_cpu_s;
    total.driver_threads += r.driver_threads;
    total.driver_saturated |= r.driver_saturated;
    total.driver_busy.extend(&r.driver_busy);
    if let Some(s) = &r.shortfall {
        let joined = match total.shortfall.take() {
            Some(before) => format!("{before}; {}: {s}", r.host),
            None => format!("{}: {s}", r.host),
        };
        total.shortfall = Some(joined);
    }
    let host = &r.host;
    total
        .notes
        .extend(r.notes.iter().map(|n| format!("{host}: {n}")));
}

/// A report from a record and the histograms that go with it.
fn report_of(r: &HostRecord, log: LogRead) -> LoadReport {
    let part = |name: &str| log.parts.get(name).map(Summary::of);
    let per_kernel = log
        .parts
        .iter()
        .filter_map(|(name, h)| Some((name.strip_prefix(KERNEL_TAG)?.to_string(), Summary::of(h))))
        .collect();
    let throughput_rps = if r.duration_s > 0.0 {
        r.ok as f64 / r.duration_s
    } else {
        0.0
    };
    LoadReport {
        ok: r.ok,
        errors: r.errors.clone(),
        sent: r.sent,
        late_sends: r.late_sends,
        unsent: r.unsent,
        late_replies: r.late_replies,
        duration_s: r.duration_s,
        throughput_rps,
        target_rps: r.target_rps,
        achieved_rps: r.achieved_rps,
        latency: Summary::of(&log.latency),
        service: part("service").unwrap_or_default(),
        send_lag: r.target_rps.map(|_| part("send_lag").unwrap_or_default()),
        queue: part("queue"),
        compute: part("compute"),
        server: part("server"),
        transport: part("transport"),
        network: part("network"),
        per_kernel,
        warmup_sent: r.warmup_sent,
        warmup_ok: r.warmup_ok,
        warmup_errors: r.warmup_errors.clone(),
        wall_s: r.wall_s,
        client_cpu_s: r.client_cpu_s,
        driver_threads: r.driver_threads,
        driver_saturated: r.driver_saturated,
        driver_busy_warning: busy_warning(&r.driver_busy),
        driver_busy: r.driver_busy.clone(),
        shortfall: r.shortfall.clone(),
        notes: r.notes.clone(),
        hist: log.latency,
        parts: log.parts,
        intervals: Vec::new(),
        started: log.started.unwrap_or(SystemTime::UNIX_EPOCH),
    }
}

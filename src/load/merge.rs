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

/// What a driver's log says about its run beside the histograms: its name, its load, and its
/// report as `load --json` writes it (the counts a merge sums).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostRecord {
    /// The driver's name (`load --label`, by default its host name).
    pub host: String,
    /// The load it sent, as `load` describes it.
    pub load: String,
    pub report: LoadReport,
}

impl HostRecord {
    /// The comment lines a driver's log starts with: what wrote it, then the record.
    pub fn comments(host: &str, load: &str, report: &LoadReport) -> anyhow::Result<Vec<String>> {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            host: &'a str,
            load: &'a str,
            report: &'a LoadReport,
        }
        let record = Borrowed { host, load, report };
        let json = serde_json::to_string(&record).context("cannot encode the host record")?;
        Ok(vec![
            format!("threadcenter-bench load: {load}"),
            format!("{RECORD_PREFIX}{json}"),
        ])
    }
}

/// One driver's log, read back.
pub struct HostLog {
    pub file: PathBuf,
    pub host: String,
    pub load: String,
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
    let record: Option<HostRecord> = log
        .comments
        .iter()
        .find_map(|c| c.strip_prefix(RECORD_PREFIX))
        .map(serde_json::from_str)
        .transpose()
        .with_context(|| format!("the host record in {} does not parse", path.display()))?;
    let has_record = record.is_some();
    let HostRecord {
        host,
        load,
        mut report,
    } = record.unwrap_or_else(|| {
        let mut report = LoadReport::empty();
        report.ok = log.latency.len();
        report.sent = log.latency.len();
        HostRecord {
            host: path
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned()),
            load: String::new(),
            report,
        }
    });
    let intervals = log.intervals;
    // A log cut at a line boundary still parses: its record, written first, says how many
    // replies the intervals must hold.
    if has_record && log.latency.len() != report.ok {
        anyhow::bail!(
            "{} is cut short or altered: its record counts {} correct replies, its latency \
             intervals hold {} samples",
            path.display(),
            report.ok,
            log.latency.len()
        );
    }
    with_histograms(&mut report, log);
    Ok(HostLog {
        file: path.to_path_buf(),
        host,
        load,
        intervals,
        report,
    })
}

/// Why `hosts` must not be added into one run's report: the same driver's log twice, logs of
/// different loads (unless `mixed_loads`), or drivers whose windows never overlapped. Empty
/// when they may.
pub fn refusals(hosts: &[HostLog], mixed_loads: bool) -> Vec<String> {
    let mut why = Vec::new();
    for (i, a) in hosts.iter().enumerate() {
        for b in &hosts[i + 1..] {
            let same_file = match (a.file.canonicalize(), b.file.canonicalize()) {
                (Ok(x), Ok(y)) => x == y,
                _ => a.file == b.file,
            };
            let r = |h: &HostLog| (h.host.clone(), h.report.started, h.report.ok, h.report.sent);
            if same_file || (a.report.started != SystemTime::UNIX_EPOCH && r(a) == r(b)) {
                why.push(format!(
                    "{} and {} are the same driver's log: its counts would be added twice",
                    a.file.display(),
                    b.file.display()
                ));
            }
        }
    }
    let loads: Vec<&HostLog> = hosts.iter().filter(|h| !h.load.is_empty()).collect();
    if !mixed_loads {
        if let Some(first) = loads.first() {
            for h in &loads[1..] {
                if h.load != first.load {
                    why.push(format!(
                        "{} and {} come from different loads ({:?} and {:?}); pass \
                         --mixed-loads to add them anyway",
                        first.file.display(),
                        h.file.display(),
                        first.load,
                        h.load
                    ));
                }
            }
        }
    }
    let windows = windows(hosts);
    if let (Some(last_start), Some(first_end)) = (
        windows.iter().map(|w| w.1).max(),
        windows.iter().map(|w| w.2).min(),
    ) {
        if last_start >= first_end {
            let (late, _, _) = windows.iter().find(|w| w.1 == last_start).expect("the max");
            let (early, _, _) = windows.iter().find(|w| w.2 == first_end).expect("the min");
            why.push(format!(
                "the drivers never ran together: {early} had finished before {late} started \
                 (were they started with one --start-at?)"
            ));
        }
    }
    why
}

/// Drivers that started apart (by more than a twentieth of the shortest window, and at least
/// 100 ms): the merged window is their union, so its throughput is lower than a run that
/// started together would give.
pub fn warnings(hosts: &[HostLog]) -> Vec<String> {
    let windows = windows(hosts);
    let (Some(first), Some(last), Some(shortest)) = (
        windows.iter().map(|w| w.1).min(),
        windows.iter().map(|w| w.1).max(),
        windows
            .iter()
            .map(|w| w.2.duration_since(w.1).unwrap_or_default())
            .min(),
    ) else {
        return Vec::new();
    };
    let apart = last.duration_since(first).unwrap_or_default();
    let tolerated = (shortest.as_secs_f64() / 20.0).max(0.1);
    if apart.as_secs_f64() <= tolerated {
        return Vec::new();
    }
    vec![format!(
        "the drivers started {:.3} s apart; the merged window runs from the first start to the \
         last end, so its throughput is below what drivers started together would show",
        apart.as_secs_f64()
    )]
}

/// Each host's name and window (start, end), for the logs that record both (a log from
/// another HdrHistogram tool has no window length).
fn windows(hosts: &[HostLog]) -> Vec<(String, SystemTime, SystemTime)> {
    hosts
        .iter()
        .filter(|h| h.report.started != SystemTime::UNIX_EPOCH && h.report.duration_s > 0.0)
        .map(|h| {
            let start = h.report.started;
            let end = start + Duration::from_secs_f64(h.report.duration_s.max(0.0));
            (h.host.clone(), start, end)
        })
        .collect()
}

/// The report all `hosts` together made: counts summed, histograms added, the window from the
/// earliest start to the latest end.
pub fn combine(hosts: &[HostLog]) -> anyhow::Result<LoadReport> {
    let mut total = LoadReport::empty();
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
        let r = &h.report;
        let add = |into: &mut Histogram<u64>, from: &Histogram<u64>| {
            into.add(from)
                .map_err(|e| anyhow::anyhow!("cannot add {}: {e:?}", h.file.display()))
        };
        add(&mut latency, &r.hist)?;
        for (name, part) in &r.parts {
            add(
                parts.entry(name.clone()).or_insert_with(new_histogram),
                part,
            )?;
        }
        let offset = first
            .and_then(|f| r.started.duration_since(f).ok())
            .unwrap_or_default();
        end = end.max(offset + Duration::from_secs_f64(r.duration_s.max(0.0)));
        sum_into(&mut total, r, &h.host);
    }
    total.duration_s = end.as_secs_f64();
    total.driver_busy_warning = busy_warning(&total.driver_busy);
    let log = LogRead {
        latency,
        intervals: hosts.iter().map(|h| h.intervals).sum(),
        parts,
        started: first,
        comments: Vec::new(),
    };
    with_histograms(&mut total, log);
    Ok(total)
}

/// Adds one host's counts into `total`; notes and shortfalls keep the host's name.
fn sum_into(total: &mut LoadReport, r: &LoadReport, host: &str) {
    let add = |into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>| {
        for (k, v) in from {
            *into.entry(k.clone()).or_insert(0) += v;
        }
    };
    total.ok += r.ok;
    // Older records had no window count: all their replies counted, as they did then.
    total.in_window = Some(total.in_window.unwrap_or(0) + r.in_window.unwrap_or(r.ok));
    total.tail_s = total.tail_s.max(r.tail_s);
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
            Some(before) => format!("{before}; {host}: {s}"),
            None => format!("{host}: {s}"),
        };
        total.shortfall = Some(joined);
    }
    total
        .notes
        .extend(r.notes.iter().map(|n| format!("{host}: {n}")));
}

/// Fills what `report` draws from histograms (its percentiles, the throughput: replies inside
/// the windows over their span) from `log`, and keeps the histograms for a later merge.
fn with_histograms(r: &mut LoadReport, log: LogRead) {
    let part = |name: &str| log.parts.get(name).map(Summary::of);
    r.per_kernel = log
        .parts
        .iter()
        .filter_map(|(name, h)| Some((name.strip_prefix(KERNEL_TAG)?.to_string(), Summary::of(h))))
        .collect();
    r.throughput_rps = if r.duration_s > 0.0 {
        r.in_window.unwrap_or(r.ok) as f64 / r.duration_s
    } else {
        0.0
    };
    r.latency = Summary::of(&log.latency);
    r.service = part("service").unwrap_or_default();
    r.send_lag = r.target_rps.map(|_| part("send_lag").unwrap_or_default());
    r.queue = part("queue");
    r.compute = part("compute");
    r.server = part("server");
    r.transport = part("transport");
    r.network = part("network");
    r.hist = log.latency;
    r.parts = log.parts;
    r.started = log.started.unwrap_or(SystemTime::UNIX_EPOCH);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::histlog::{write_full, Log};
    use crate::load::histogram::put;

    /// A driver's log: `ok` replies of `latency` µs, measured for `duration_s` from `started`.
    fn host_log(dir: &Path, host: &str, started: SystemTime, ok: u64, latency: u64) -> HostLog {
        let mut h = new_histogram();
        for _ in 0..ok {
            put(&mut h, latency);
        }
        let origin = std::time::Instant::now();
        let mut rec = crate::load::histlog::IntervalRecorder::new(origin, Duration::from_secs(1));
        for _ in 0..ok {
            rec.record(origin, latency);
        }
        let (intervals, _) = rec.finish(origin + Duration::from_secs(2));
        let mut report = LoadReport::empty();
        report.ok = ok;
        report.sent = ok + 1;
        report.errors = BTreeMap::from([("timeout".to_string(), 1)]);
        report.duration_s = 2.0;
        report.driver_busy = vec![0.8];
        let parts = BTreeMap::from([("service".to_string(), h)]);
        let path = dir.join(format!("{host}.hlog"));
        let mut out = Vec::new();
        let log = Log {
            intervals: &intervals,
            started,
            comments: &HostRecord::comments(host, "the same load", &report).unwrap(),
            parts: &parts,
        };
        write_full(&mut out, &log).unwrap();
        std::fs::write(&path, out).unwrap();
        read_host(&path).unwrap()
    }

    #[test]
    fn a_log_twice_different_loads_and_windows_apart_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let a = host_log(dir.path(), "a", t0, 300, 100);
        let b = host_log(dir.path(), "b", t0, 100, 900);
        assert!(refusals(&[a, b], false).is_empty());
        assert!(warnings(&[
            host_log(dir.path(), "a", t0, 300, 100),
            host_log(dir.path(), "b", t0, 100, 900)
        ])
        .is_empty());

        // The same file twice, or a copy of it.
        let a = host_log(dir.path(), "a", t0, 300, 100);
        let again = read_host(&a.file).unwrap();
        let why = refusals(&[a, again], false);
        assert!(why[0].contains("same driver's log"), "{why:?}");
        let a = host_log(dir.path(), "a", t0, 300, 100);
        let copy = dir.path().join("copy.hlog");
        std::fs::copy(&a.file, &copy).unwrap();
        let why = refusals(&[a, read_host(&copy).unwrap()], false);
        assert!(why[0].contains("same driver's log"), "{why:?}");

        // Different loads: refused unless asked for.
        let a = host_log(dir.path(), "a", t0, 300, 100);
        let mut other = host_log(dir.path(), "b", t0, 100, 900);
        other.load = "another load".into();
        let why = refusals(&[a, other], false);
        assert!(why[0].contains("different loads"), "{why:?}");
        let a = host_log(dir.path(), "a", t0, 300, 100);
        let mut other = host_log(dir.path(), "b", t0, 100, 900);
        other.load = "another load".into();
        assert!(refusals(&[a, other], true).is_empty());

        // Windows (2 s each) 1 s apart: a warning; 3 s apart: never together, refused.
        let a = host_log(dir.path(), "a", t0, 300, 100);
        let b = host_log(dir.path(), "b", t0 + Duration::from_secs(1), 100, 900);
        let hosts = [a, b];
        assert!(refusals(&hosts, false).is_empty());
        assert!(
            warnings(&hosts)[0].contains("1.000 s apart"),
            "{:?}",
            warnings(&hosts)
        );
        let a = host_log(dir.path(), "a", t0, 300, 100);
        let b = host_log(dir.path(), "b", t0 + Duration::from_secs(3), 100, 900);
        let why = refusals(&[a, b], false);
        assert!(why[0].contains("never ran together"), "{why:?}");
    }

    #[test]
    fn a_log_cut_at_a_line_boundary_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let a = host_log(dir.path(), "a", t0, 300, 100);
        let text = std::fs::read_to_string(&a.file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // Drop the first latency interval line, the one holding the samples.
        let cut_at = lines
            .iter()
            .position(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .expect("an untagged interval line");
        let cut: String = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != cut_at)
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        let path = dir.path().join("cut.hlog");
        std::fs::write(&path, cut).unwrap();
        let err = format!("{:#}", read_host(&path).err().expect("refused"));
        assert!(err.contains("cut short"), "{err}");
    }

    #[test]
    fn hosts_add_up_over_the_window_from_first_start_to_last_end() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let a = host_log(dir.path(), "a", t0, 300, 100);
        let b = host_log(dir.path(), "b", t0 + Duration::from_secs(1), 100, 900);
        assert_eq!((a.host.as_str(), a.load.as_str()), ("a", "the same load"));
        assert_eq!(a.report.ok, 300);
        assert_eq!(a.report.started, t0);
        let total = combine(&[a, b]).unwrap();
        assert_eq!((total.ok, total.sent), (400, 402));
        assert_eq!(total.errors["timeout"], 2);
        assert!(
            (total.duration_s - 3.0).abs() < 1e-9,
            "{}",
            total.duration_s
        );
        assert!((total.throughput_rps - 400.0 / 3.0).abs() < 1e-6);
        assert_eq!(total.latency.count, 400);
        assert_eq!(total.service.count, 400);
        assert_eq!(total.latency.p50_us, 100.0);
        assert_eq!(total.driver_busy, [0.8, 0.8]);
        assert!(total.driver_busy_warning.is_some());
    }
}

//! Every comparison a sweep supports: at each grid point, each challenger (a backend that
//! runs its compute in processes: `process`, `prefork`, and any later one) against each thread
//! backend on its own, and against the best thread backend. One [`Comparison`] is one row of
//! `verdicts.csv` (SPEC §7).
//!
//! The per-pair rows answer "is process faster than rayon here?" at 95 %. The best-thread row
//! answers the sweep's question, "is process faster than threads?", with the choice of the best
//! thread backend accounted for (see [`verdict::against_best`]): it is the row the report's
//! overview and the sweep's printed lines show.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::data::{order_backends, Dataset, Point, THREAD_BACKENDS};
use super::verdict::{self, Estimate, LogSample, Verdict, CONFIDENCE};

/// The comparator name of the challenger-versus-best-thread row.
pub const BEST_THREAD: &str = "best thread";

/// Whether `backend` runs its compute on threads of the server process.
pub fn is_thread_backend(backend: &str) -> bool {
    THREAD_BACKENDS.contains(&backend)
}

/// One row of verdicts.csv: a challenger against one comparator at one grid point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub kernel: String,
    pub workers: u32,
    pub connections: u32,
    pub depth: u32,
    /// The work size n.
    pub size: u64,
    /// The target service time n was calibrated for, µs; empty when n was given directly.
    pub target_us: Option<f64>,
    /// `process`, `prefork`, …: the backend whose compute runs in processes.
    pub challenger: String,
    /// A thread backend (`rayon`, `tokio`) or [`BEST_THREAD`].
    pub comparator: String,
    /// Geometric mean throughput of the challenger ÷ the comparator's (for the best thread:
    /// ÷ the faster thread backend's).
    pub ratio: f64,
    /// Lower end of the 95 % interval; empty with fewer than two repetitions a side (or a
    /// side without spread, see [`verdict::contrast`]).
    pub lo: Option<f64>,
    /// Upper end of the 95 % interval; empty when `lo` is.
    pub hi: Option<f64>,
    pub verdict: Verdict,
    /// Valid repetitions of the challenger.
    pub reps_challenger: usize,
    /// Valid repetitions of the comparator; for the best thread, the fewest of any thread
    /// backend run at the point (0 when one had no valid repetition), since each one's
    /// interval enters the result: under 2, the row has no interval and is inconclusive.
    pub reps_comparator: usize,
}

impl Comparison {
    pub fn point(&self) -> Point {
        Point {
            kernel: self.kernel.clone(),
            size: self.size,
            connections: self.connections,
            depth: self.depth,
            workers: self.workers,
        }
    }

    pub fn interval(&self) -> Option<(f64, f64)> {
        self.lo.zip(self.hi)
    }

    pub fn is_best_thread(&self) -> bool {
        self.comparator == BEST_THREAD
    }
}

/// Every comparison in the data, ordered by grid point, challenger (canonical backend order),
/// then comparator (the thread backends, then the best thread); a mix is compared on what
/// [`Dataset::judging`] chose for it. A backend without valid, positive throughput at a point
/// takes no part there, except that a thread backend run there with fewer than two valid
/// repetitions leaves the best-thread row without an interval (inconclusive): the best of the
/// others is not the best thread backend.
pub fn comparisons(data: &Dataset<'_>, margin: f64) -> Vec<Comparison> {
    let mut out = Vec::new();
    for (point, by_backend) in &data.cells {
        let sample = |b: &str| by_backend.get(b).and_then(|a| a.sample());
        let threads: Vec<(&str, LogSample)> = THREAD_BACKENDS
            .iter()
            .filter_map(|&t| Some((t, sample(t)?)))
            .collect();
        if threads.is_empty() {
            continue;
        }
        // A thread backend run here whose repetitions were all invalid would silently leave
        // "best thread" to the others, and the invalid cells are the fast ones
        // (`driver_saturated`): the best-thread row claims no winner without it. (One with a
        // single valid repetition already gives no interval: `welch` needs two.)
        let missing = THREAD_BACKENDS
            .iter()
            .any(|t| data.ran.get(point).is_some_and(|r| r.contains(*t)) && sample(t).is_none());
        // A mix without per-kernel data has only its pooled throughput, and a mix is judged
        // on its majority kernel, not on the whole (SPEC §3): ratios, but no verdict.
        let unjudged = data.unjudged(&point.kernel);
        let target_us = by_backend.values().find_map(|a| a.target_us);
        let challengers =
            order_backends(by_backend.keys().filter(|b| !is_thread_backend(b)).cloned());
        for challenger in challengers {
            let Some(c) = sample(&challenger) else {
                continue;
            };
            let row = |comparator: &str, e: Estimate, reps_comparator: usize| {
                let interval = e.interval.filter(|_| !unjudged);
                Comparison {
                    kernel: point.kernel.clone(),
                    workers: point.workers,
                    connections: point.connections,
                    depth: point.depth,
                    size: point.size,
                    target_us,
                    challenger: challenger.clone(),
                    comparator: comparator.to_string(),
                    ratio: e.ratio,
                    lo: interval.map(|i| i.0),
                    hi: interval.map(|i| i.1),
                    verdict: verdict::judge(interval, margin),
                    reps_challenger: c.n,
                    reps_comparator,
                }
            };
            for (name, t) in &threads {
                out.push(row(name, verdict::welch(&c, t, CONFIDENCE), t.n));
            }
            let samples: Vec<LogSample> = threads.iter().map(|(_, t)| *t).collect();
            let mut best = verdict::against_best(&c, &samples, CONFIDENCE);
            let fewest = if missing {
                best.interval = None;
                0
            } else {
                samples.iter().map(|t| t.n).min().unwrap_or(0)
            };
            out.push(row(BEST_THREAD, best, fewest));
        }
    }
    out
}

/// The thread backend the challenger fares worst against at the best-thread row's point,
/// i.e. the one that looked fastest: named in sentences, never used to compute the verdict.
pub fn fastest_thread<'c>(all: &'c [Comparison], best: &Comparison) -> Option<&'c str> {
    all.iter()
        .filter(|c| {
            !c.is_best_thread()
                && c.challenger == best.challenger
                && c.kernel == best.kernel
                && c.workers == best.workers
                && c.size == best.size
                && c.connections == best.connections
                && c.depth == best.depth
        })
        .min_by(|a, b| a.ratio.total_cmp(&b.ratio))
        .map(|c| c.comparator.as_str())
}

/// Why `c` has no interval, in words for the report ("tokio has 0 valid repetitions
/// (driver_saturated ×5)"); None when it has one. verdicts.csv says the same through
/// `reps_challenger` and `reps_comparator` (under 2: no interval).
pub fn why_no_interval(data: &Dataset<'_>, c: &Comparison) -> Option<String> {
    if c.interval().is_some() {
        return None;
    }
    if data.unjudged(&c.kernel) {
        return Some(
            "no per-kernel data (kernels.csv): a mix is judged on its majority kernel, not \
             on the whole"
                .to_string(),
        );
    }
    let point = c.point();
    let comparators: Vec<&str> = if c.is_best_thread() {
        THREAD_BACKENDS
            .iter()
            .copied()
            .filter(|t| data.ran.get(&point).is_some_and(|r| r.contains(*t)))
            .collect()
    } else {
        vec![c.comparator.as_str()]
    };
    let short: Vec<String> = std::iter::once(c.challenger.as_str())
        .chain(comparators)
        .filter_map(|b| data.short_of_reps(&point, b))
        .collect();
    Some(if short.is_empty() {
        "no spread: the repetitions tie and their resolution is unknown".to_string()
    } else {
        short.join("; ")
    })
}

/// Writes verdicts.csv atomically (a temporary file renamed over the old one).
pub fn write_csv(path: &Path, comparisons: &[Comparison]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    if comparisons.is_empty() {
        // serde writes the header with the first row; an empty file still names its columns.
        w.write_record(COLUMNS)?;
    }
    for c in comparisons {
        w.serialize(c)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    super::write_atomic(path, &bytes)
}

/// The columns of verdicts.csv, in order (SPEC §7).
pub const COLUMNS: [&str; 14] = [
    "kernel",
    "workers",
    "connections",
    "depth",
    "size",
    "target_us",
    "challenger",
    "comparator",
    "ratio",
    "lo",
    "hi",
    "verdict",
    "reps_challenger",
    "reps_comparator",
];

/// Reads a verdicts.csv written by [`write_csv`].
pub fn read_csv(path: &Path) -> anyhow::Result<Vec<Comparison>> {
    let mut rdr =
        csv::Reader::from_path(path).with_context(|| format!("cannot open {}", path.display()))?;
    rdr.deserialize()
        .enumerate()
        .map(|(i, r)| r.with_context(|| format!("{}: bad row {}", path.display(), i + 2)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_the_contract_columns() {
        let c = Comparison {
            kernel: "fib".into(),
            workers: 2,
            connections: 4,
            depth: 1,
            size: 100,
            target_us: None,
            challenger: "process".into(),
            comparator: BEST_THREAD.into(),
            ratio: 1.0,
            lo: None,
            hi: None,
            verdict: Verdict::Inconclusive,
            reps_challenger: 1,
            reps_comparator: 3,
        };
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(&c).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(COLUMNS.join(",").as_str()));
        assert_eq!(
            lines.next(),
            Some("fib,2,4,1,100,,process,best thread,1.0,,,inconclusive,1,3")
        );
    }
}

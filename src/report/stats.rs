//! Verdicts: at each grid point, is the process backend faster than the best thread backend,
//! and is the difference bigger than the run-to-run noise?
//!
//! The ratio compared is mean throughput of the challenger (`process`, or `prefork`) over mean
//! throughput of the better of `rayon` and `tokio`. Its uncertainty comes from a percentile
//! bootstrap over the repetitions: each backend's repetition throughputs are resampled with
//! replacement, the ratio of the resampled means is recorded, and the central 95 % of those
//! ratios is the interval. The RNG is seeded from the grid point, so the same CSV always gives
//! the same intervals (and the same HTML).

use std::collections::BTreeMap;
use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::data::{Agg, Dataset, Point, THREAD_BACKENDS};
use crate::record::Row;

/// Bootstrap resamples per interval: enough that the 2.5 % and 97.5 % percentiles move by
/// well under the precision the report prints.
pub const RESAMPLES: usize = 2000;

/// Which side won at one grid point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The whole interval lies above 1 (or, with one repetition, the point estimate does).
    ProcessWins,
    /// The interval includes 1.
    Tie,
    /// The whole interval lies below 1.
    ThreadWins,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::ProcessWins => "process wins",
            Outcome::Tie => "tie",
            Outcome::ThreadWins => "threads win",
        })
    }
}

/// A challenger ÷ best-thread throughput ratio with its bootstrap interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Ratio {
    pub ratio: f64,
    /// Lower end of the 95 % interval; equals `ratio` when there is no interval.
    pub lo: f64,
    /// Upper end of the 95 % interval; equals `ratio` when there is no interval.
    pub hi: f64,
    /// False when either side has a single repetition, so nothing could be resampled.
    pub has_interval: bool,
    pub outcome: Outcome,
    /// Valid repetitions of the challenger.
    pub n_num: usize,
    /// Valid repetitions of the best thread backend.
    pub n_den: usize,
}

/// The process-vs-threads comparison at one grid point (the report's and the sweep's headline).
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub kernel: String,
    pub workers: u32,
    pub size: u64,
    pub connections: u32,
    pub depth: u32,
    /// `rayon` or `tokio`, whichever had the higher mean throughput here.
    pub best_thread: String,
    /// Mean process throughput ÷ mean best-thread throughput.
    pub ratio: f64,
    pub lo: f64,
    pub hi: f64,
    pub outcome: Outcome,
    pub n_process: usize,
    pub n_thread: usize,
    /// `prefork` ÷ the same best thread backend, where prefork was measured here.
    pub prefork: Option<Ratio>,
}

impl Verdict {
    /// Whether `lo`/`hi` come from a bootstrap (both sides had at least two repetitions).
    pub fn has_interval(&self) -> bool {
        self.n_process >= 2 && self.n_thread >= 2
    }

    /// One plain sentence, e.g. "gil: process beats the best thread backend (rayon) by 1.90x
    /// [1.70, 2.10] at 2 workers, size 20000 (4 connections, depth 1)."
    pub fn sentence(&self) -> String {
        let at = format!(
            "at {} worker{}, size {} ({} connection{}, depth {})",
            self.workers,
            plural(self.workers),
            self.size,
            self.connections,
            plural(self.connections),
            self.depth
        );
        let interval = |lo: f64, hi: f64| {
            if self.has_interval() {
                format!("[{lo:.2}, {hi:.2}]")
            } else {
                "(1 rep, no interval)".to_string()
            }
        };
        let bt = &self.best_thread;
        match self.outcome {
            Outcome::ProcessWins => format!(
                "{}: process beats the best thread backend ({bt}) by {:.2}x {} {at}.",
                self.kernel,
                self.ratio,
                interval(self.lo, self.hi)
            ),
            Outcome::ThreadWins => format!(
                "{}: the best thread backend ({bt}) beats process by {:.2}x {} {at}.",
                self.kernel,
                1.0 / self.ratio,
                interval(1.0 / self.hi, 1.0 / self.lo)
            ),
            Outcome::Tie => format!(
                "{}: process and the best thread backend ({bt}) tie {at}: ratio {:.2}x {}{}.",
                self.kernel,
                self.ratio,
                interval(self.lo, self.hi),
                if self.has_interval() {
                    " includes 1"
                } else {
                    ""
                }
            ),
        }
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Process ÷ best-thread verdicts for every grid point where both were measured validly,
/// ordered by kernel, size, connections, depth, workers.
pub fn verdicts(rows: &[Row]) -> Vec<Verdict> {
    verdicts_of(&Dataset::new(rows))
}

pub(crate) fn verdicts_of(data: &Dataset<'_>) -> Vec<Verdict> {
    data.cells
        .iter()
        .filter_map(|(point, by_backend)| {
            let samples = samples_of(by_backend);
            let (best_thread, den) = best_thread(&samples)?;
            let process = compare(samples.get("process")?, den, point, "process")?;
            let prefork = samples
                .get("prefork")
                .and_then(|num| compare(num, den, point, "prefork"));
            Some(Verdict {
                kernel: point.kernel.clone(),
                workers: point.workers,
                size: point.size,
                connections: point.connections,
                depth: point.depth,
                best_thread: best_thread.to_string(),
                ratio: process.ratio,
                lo: process.lo,
                hi: process.hi,
                outcome: process.outcome,
                n_process: process.n_num,
                n_thread: process.n_den,
                prefork,
            })
        })
        .collect()
}

/// Prefork ÷ best-thread ratios at every grid point where both were measured, including
/// points without a process measurement.
pub(crate) fn prefork_ratios(data: &Dataset<'_>) -> Vec<(Point, String, Ratio)> {
    data.cells
        .iter()
        .filter_map(|(point, by_backend)| {
            let samples = samples_of(by_backend);
            let (best_thread, den) = best_thread(&samples)?;
            let r = compare(samples.get("prefork")?, den, point, "prefork")?;
            Some((point.clone(), best_thread.to_string(), r))
        })
        .collect()
}

/// Each backend's repetition throughputs at one grid point.
fn samples_of(by_backend: &BTreeMap<String, Agg>) -> BTreeMap<&str, &[f64]> {
    by_backend
        .iter()
        .map(|(b, a)| (b.as_str(), a.throughput.as_slice()))
        .collect()
}

/// The thread backend with the higher mean throughput; rayon wins an exact tie (it comes
/// first), so the choice never depends on map order.
fn best_thread<'s>(samples: &BTreeMap<&'s str, &'s [f64]>) -> Option<(&'s str, &'s [f64])> {
    let mut best: Option<(&str, &[f64], f64)> = None;
    for name in THREAD_BACKENDS {
        if let Some((&key, &s)) = samples.get_key_value(name) {
            let m = mean(s);
            if m.is_finite() && best.map_or(true, |(_, _, bm)| m > bm) {
                best = Some((key, s, m));
            }
        }
    }
    best.map(|(k, s, _)| (k, s))
}

/// Compares `num` with `den`; None when a side is empty or the denominator's mean is not
/// positive (no ratio exists).
fn compare(num: &[f64], den: &[f64], point: &Point, challenger: &str) -> Option<Ratio> {
    let (mn, md) = (mean(num), mean(den));
    if num.is_empty() || !md.is_finite() || md <= 0.0 || !mn.is_finite() {
        return None;
    }
    let ratio = mn / md;
    let seed = seed_for(point, challenger);
    let (lo, hi, has_interval) = match bootstrap_ratio(num, den, RESAMPLES, seed) {
        Some((lo, hi)) => (lo, hi, true),
        None => (ratio, ratio, false),
    };
    Some(Ratio {
        ratio,
        lo,
        hi,
        has_interval,
        outcome: outcome(lo, hi),
        n_num: num.len(),
        n_den: den.len(),
    })
}

/// "process wins" only when the whole interval clears 1, "threads win" only when it is all
/// below; anything straddling 1 is a tie. Without an interval lo = hi = the point estimate.
fn outcome(lo: f64, hi: f64) -> Outcome {
    if lo > 1.0 {
        Outcome::ProcessWins
    } else if hi < 1.0 {
        Outcome::ThreadWins
    } else {
        Outcome::Tie
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// 95 % percentile-bootstrap interval of mean(num) ÷ mean(den). None when either side has
/// fewer than two samples: one value resampled is always itself, which would fake certainty.
pub fn bootstrap_ratio(
    num: &[f64],
    den: &[f64],
    resamples: usize,
    seed: u64,
) -> Option<(f64, f64)> {
    if num.len() < 2 || den.len() < 2 || resamples == 0 {
        return None;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let resampled_mean = |v: &[f64], rng: &mut StdRng| {
        (0..v.len())
            .map(|_| v[rng.gen_range(0..v.len())])
            .sum::<f64>()
            / v.len() as f64
    };
    let mut ratios: Vec<f64> = (0..resamples)
        .map(|_| {
            let n = resampled_mean(num, &mut rng);
            let d = resampled_mean(den, &mut rng);
            n / d
        })
        .filter(|r| !r.is_nan())
        .collect();
    if ratios.is_empty() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    Some((quantile(&ratios, 0.025), quantile(&ratios, 0.975)))
}

/// Linear-interpolated quantile of sorted data.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    match sorted.get(i + 1) {
        Some(next) => sorted[i] + (next - sorted[i]) * frac,
        None => sorted[i],
    }
}

/// A stable seed from the grid point (FNV-1a), so each interval is reproducible on its own and
/// does not shift when other cells are added to the sweep.
fn seed_for(point: &Point, challenger: &str) -> u64 {
    let key = format!(
        "{}|{}|{}|{}|{}|{}",
        point.kernel, point.size, point.connections, point.depth, point.workers, challenger
    );
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// What one kernel's verdicts add up to.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelSummary {
    pub kernel: String,
    pub points: usize,
    pub process_wins: usize,
    pub ties: usize,
    pub thread_wins: usize,
    /// Sentences for the strongest process win and the strongest thread win (or, when every
    /// point is a tie, the point furthest from parity).
    pub highlights: Vec<String>,
}

impl KernelSummary {
    /// "gil: process wins at 23 of 30 grid points, ties at 1, threads win at 6."
    pub fn counts(&self) -> String {
        format!(
            "{}: process wins at {} of {} grid points, ties at {}, threads win at {}.",
            self.kernel, self.process_wins, self.points, self.ties, self.thread_wins
        )
    }

    /// The headline: the strongest result, then the counts without repeating the kernel.
    pub fn headline(&self) -> String {
        let counts = format!(
            "Overall: process wins at {} of {} grid points, ties at {}, threads win at {}.",
            self.process_wins, self.points, self.ties, self.thread_wins
        );
        match self.highlights.first() {
            Some(h) => format!("{h} {counts}"),
            None => format!("{}: {counts}", self.kernel),
        }
    }
}

/// Per kernel: how many grid points each side won, and the strongest result each way.
pub fn kernel_summaries(verdicts: &[Verdict]) -> Vec<KernelSummary> {
    let mut by_kernel: BTreeMap<&str, Vec<&Verdict>> = BTreeMap::new();
    for v in verdicts {
        by_kernel.entry(&v.kernel).or_default().push(v);
    }
    by_kernel
        .into_iter()
        .map(|(kernel, vs)| {
            let count = |o: Outcome| vs.iter().filter(|v| v.outcome == o).count();
            let strongest = |o: Outcome, key: fn(&Verdict) -> f64| {
                vs.iter()
                    .filter(|v| v.outcome == o)
                    .max_by(|a, b| key(a).total_cmp(&key(b)))
                    .map(|v| v.sentence())
            };
            let mut highlights: Vec<String> = strongest(Outcome::ProcessWins, |v| v.ratio)
                .into_iter()
                .chain(strongest(Outcome::ThreadWins, |v| 1.0 / v.ratio))
                .collect();
            if highlights.is_empty() {
                // All ties: show the point furthest from parity so the reader sees the spread.
                highlights.extend(
                    vs.iter()
                        .max_by(|a, b| a.ratio.ln().abs().total_cmp(&b.ratio.ln().abs()))
                        .map(|v| v.sentence()),
                );
            }
            KernelSummary {
                kernel: kernel.to_string(),
                points: vs.len(),
                process_wins: count(Outcome::ProcessWins),
                ties: count(Outcome::Tie),
                thread_wins: count(Outcome::ThreadWins),
                highlights,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_interpolates() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 5.0);
        assert!((quantile(&v, 0.5) - 3.0).abs() < 1e-12);
        assert!((quantile(&v, 0.125) - 1.5).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_needs_two_samples_per_side() {
        assert_eq!(bootstrap_ratio(&[1.0], &[1.0, 2.0], 100, 1), None);
        assert_eq!(bootstrap_ratio(&[1.0, 2.0], &[3.0], 100, 1), None);
    }

    #[test]
    fn bootstrap_is_reproducible_and_brackets_the_ratio() {
        let num = [200.0, 204.0, 198.0, 202.0, 201.0];
        let den = [100.0, 99.0, 101.0, 100.5, 99.5];
        let a = bootstrap_ratio(&num, &den, RESAMPLES, 7).expect("interval");
        let b = bootstrap_ratio(&num, &den, RESAMPLES, 7).expect("interval");
        assert_eq!(a, b);
        assert!(a.0 < 2.01 && a.1 > 2.0 && a.0 > 1.9 && a.1 < 2.1, "{a:?}");
    }

    #[test]
    fn outcome_follows_the_interval() {
        assert_eq!(outcome(1.1, 1.3), Outcome::ProcessWins);
        assert_eq!(outcome(0.7, 0.9), Outcome::ThreadWins);
        assert_eq!(outcome(0.9, 1.1), Outcome::Tie);
        assert_eq!(outcome(1.0, 1.0), Outcome::Tie);
    }

    #[test]
    fn seeds_differ_between_points() {
        let p = Point {
            kernel: "fib".into(),
            size: 1,
            connections: 1,
            depth: 1,
            workers: 1,
        };
        let q = Point {
            workers: 2,
            ..p.clone()
        };
        assert_ne!(seed_for(&p, "process"), seed_for(&q, "process"));
        assert_ne!(seed_for(&p, "process"), seed_for(&p, "prefork"));
    }
}

//! The sweep's rows regrouped for reporting: one [`Agg`] per grid point and backend, holding
//! the means over that point's valid repetitions; and how sizes are named (by service time).
//!
//! Everything here is keyed by ordered maps so the report iterates in the same order on every
//! run: the HTML must be byte-identical when regenerated from the same CSV.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::verdict::LogSample;
use crate::record::{CellKey, Row};
use crate::sweep::kernels::{majority_rows, KernelRow};

/// The thread backends a process backend is compared against (SPEC §4).
pub const THREAD_BACKENDS: [&str; 2] = ["rayon", "tokio"];

/// The order backends appear in tables, legends and charts; unknown names follow, sorted.
const BACKEND_ORDER: [&str; 5] = ["process", "shm", "prefork", "rayon", "tokio"];

/// A grid point without its backend and repetition: the unit backends are compared on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Point {
    pub kernel: String,
    pub size: u64,
    pub connections: u32,
    pub depth: u32,
    pub workers: u32,
}

impl Point {
    pub fn of(row: &Row) -> Self {
        Point {
            kernel: row.kernel.clone(),
            size: row.size,
            connections: row.connections,
            depth: row.depth,
            workers: row.workers,
        }
    }
}

/// Means over the valid repetitions of one grid point and backend.
#[derive(Debug, Clone, Default)]
pub struct Agg {
    /// Each valid repetition's throughput, in CSV order: the whole cell's, for a mix too.
    pub throughput: Vec<f64>,
    /// The per-repetition throughputs the verdicts compare, in CSV order: `throughput`, except
    /// that a mix is judged on its majority kernel's own (SPEC §3; see [`Dataset::judging`]).
    pub judged: Vec<f64>,
    /// The replies behind each judged throughput (throughput × window): its counting
    /// resolution. NaN where no count is known.
    pub counts: Vec<f64>,
    pub tput_mean: f64,
    pub lat_p50: f64,
    pub lat_p99: f64,
    pub efficiency: f64,
    pub queue_p50: f64,
    pub transport_p50: f64,
    pub compute_p50: f64,
    pub server_p50: f64,
    pub single_job_us: f64,
    /// The target service time the size was calibrated for, if it was given as one.
    pub target_us: Option<f64>,
    pub cores: u32,
}

impl Agg {
    fn of(rows: &[&Row]) -> Self {
        let mean = |f: fn(&Row) -> f64| finite_mean(rows.iter().map(|r| f(r)));
        Agg {
            throughput: rows.iter().map(|r| r.throughput_rps).collect(),
            judged: rows.iter().map(|r| r.throughput_rps).collect(),
            counts: rows
                .iter()
                .map(|r| r.throughput_rps * r.duration_s)
                .collect(),
            tput_mean: mean(|r| r.throughput_rps),
            lat_p50: mean(|r| r.lat_p50_us),
            lat_p99: mean(|r| r.lat_p99_us),
            efficiency: mean(|r| r.efficiency),
            queue_p50: mean(|r| r.queue_p50_us),
            transport_p50: mean(|r| r.transport_p50_us),
            compute_p50: mean(|r| r.compute_p50_us),
            server_p50: mean(|r| r.server_p50_us),
            single_job_us: mean(|r| r.single_job_us),
            target_us: rows.iter().find_map(|r| r.target_us),
            cores: rows.iter().map(|r| r.cores).max().unwrap_or(0),
        }
    }

    /// The repetitions as the verdicts see them: log judged throughputs, floored at their
    /// counting resolution. None without a valid, positive throughput.
    pub fn sample(&self) -> Option<LogSample> {
        LogSample::counted(&self.judged, &self.counts)
    }

    /// Requests per second a perfectly parallel server would reach:
    /// min(workers, cores) ÷ single-thread job time (SPEC §7's "ideal").
    pub fn ideal(&self, workers: u32) -> Option<f64> {
        (self.single_job_us > 0.0 && self.cores > 0)
            .then(|| f64::from(workers.min(self.cores)) / self.single_job_us * 1e6)
    }
}

/// Mean of the finite values; NaN when there are none, so a missing metric stays visibly
/// missing instead of turning into a zero.
pub fn finite_mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

/// The valid rows of a sweep, grouped by grid point and backend.
pub struct Dataset<'a> {
    pub rows: &'a [Row],
    pub cells: BTreeMap<Point, BTreeMap<String, Agg>>,
    /// Every backend run at each grid point, valid or not: a backend whose every repetition
    /// was invalid is absent from `cells` but not from here.
    pub ran: BTreeMap<Point, BTreeSet<String>>,
    /// Each mix in the rows and the kernel it is judged on: its majority kernel, or `None`
    /// when there is no per-kernel data for it (then it gets no verdict). Empty unless built
    /// by [`Dataset::judging`].
    pub mixes: BTreeMap<String, Option<String>>,
}

/// Whether a results.csv `kernel` is a mix of several kernels (`fib:9,tlb:1`): kernel names
/// never hold a comma, the separator of a mix's entries.
pub fn is_mix(kernel: &str) -> bool {
    kernel.contains(',')
}

impl<'a> Dataset<'a> {
    pub fn new(rows: &'a [Row]) -> Self {
        let mut ran: BTreeMap<Point, BTreeSet<String>> = BTreeMap::new();
        for row in rows {
            ran.entry(Point::of(row))
                .or_default()
                .insert(row.backend.clone());
        }
        let mut grouped: BTreeMap<Point, BTreeMap<String, Vec<&Row>>> = BTreeMap::new();
        for row in rows
            .iter()
            .filter(|r| r.valid && r.throughput_rps.is_finite())
        {
            grouped
                .entry(Point::of(row))
                .or_default()
                .entry(row.backend.clone())
                .or_default()
                .push(row);
        }
        let cells = grouped
            .into_iter()
            .map(|(p, by_backend)| {
                let aggs = by_backend
                    .into_iter()
                    .map(|(b, rs)| (b, Agg::of(&rs)))
                    .collect();
                (p, aggs)
            })
            .collect();
        Dataset {
            rows,
            cells,
            ran,
            mixes: BTreeMap::new(),
        }
    }

    /// The rows of a sweep as its verdicts judge them: [`Dataset::new`], except that a mix is
    /// judged on its majority kernel's own per-repetition throughput from kernels.csv (SPEC
    /// §3: the pooled cell is mostly the majority kernel's work, and hides what the minority
    /// does to it). A mix repetition without its majority kernel's row takes no part; a mix
    /// without per-kernel data (`kernels` is `None`, or holds no row of it) keeps its pooled
    /// throughput for the ratio but gets no verdict (see [`Dataset::mixes`]).
    pub fn judging(rows: &'a [Row], kernels: Option<&[KernelRow]>) -> Self {
        let mut data = Dataset::new(rows);
        let mixes: BTreeSet<String> = data
            .cells
            .keys()
            .filter(|p| is_mix(&p.kernel))
            .map(|p| p.kernel.clone())
            .collect();
        for mix in mixes {
            let major = kernels.and_then(|k| majority_rows(k, &mix));
            if let Some((_, own)) = &major {
                let own: HashMap<CellKey, &KernelRow> =
                    own.iter().map(|k| (k.cell_key(), *k)).collect();
                // (value, count) per valid repetition of each grid point and backend.
                let mut judged: BTreeMap<(Point, &str), Vec<(f64, f64)>> = BTreeMap::new();
                for r in rows
                    .iter()
                    .filter(|r| r.kernel == mix && r.valid && r.throughput_rps.is_finite())
                {
                    let reps = judged
                        .entry((Point::of(r), r.backend.as_str()))
                        .or_default();
                    if let Some(k) = own.get(&r.cell_key()) {
                        reps.push((k.throughput_rps, k.throughput_rps * r.duration_s));
                    }
                }
                for ((point, backend), reps) in judged {
                    if let Some(agg) = data.cells.get_mut(&point).and_then(|m| m.get_mut(backend)) {
                        (agg.judged, agg.counts) = reps.into_iter().unzip();
                    }
                }
            }
            data.mixes.insert(mix, major.map(|(m, _)| m));
        }
        data
    }

    /// What `kernel`'s verdicts are judged on, for a mix: "judged on fib, its majority
    /// kernel" or why it has none; None for a single kernel (judged on its own throughput).
    pub fn judged_on(&self, kernel: &str) -> Option<String> {
        match self.mixes.get(kernel)? {
            Some(major) => Some(format!("judged on {major}, its majority kernel")),
            None => Some("not judged: no per-kernel data".to_string()),
        }
    }

    /// `kernel` as the verdict tables name it: a mix says what it was judged on,
    /// "fib:9,tlb:1 (judged on fib, its majority kernel)".
    pub fn kernel_label(&self, kernel: &str) -> String {
        match self.judged_on(kernel) {
            Some(on) => format!("{kernel} ({on})"),
            None => kernel.to_string(),
        }
    }

    /// Whether `kernel` is a mix without per-kernel data, which gets no verdict.
    pub fn unjudged(&self, kernel: &str) -> bool {
        matches!(self.mixes.get(kernel), Some(None))
    }

    /// The valid repetitions of `backend` at `point` that the verdicts use.
    pub fn valid_reps(&self, point: &Point, backend: &str) -> usize {
        self.cells
            .get(point)
            .and_then(|m| m.get(backend))
            .and_then(Agg::sample)
            .map_or(0, |s| s.n)
    }

    /// Why `backend` at `point` has fewer than two valid repetitions, in words ("tokio has 0
    /// valid repetitions (driver_saturated ×5)"); None when it has two or more.
    pub fn short_of_reps(&self, point: &Point, backend: &str) -> Option<String> {
        let n = self.valid_reps(point, backend);
        if n >= 2 {
            return None;
        }
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for r in self
            .rows
            .iter()
            .filter(|r| !r.valid && r.backend == backend && Point::of(r) == *point)
        {
            *reasons.entry(r.reason.as_str()).or_default() += 1;
        }
        let why: Vec<String> = reasons
            .iter()
            .map(|(reason, k)| {
                let reason = if reason.is_empty() { "invalid" } else { reason };
                format!("{reason} ×{k}")
            })
            .collect();
        let plural = if n == 1 { "" } else { "s" };
        let mut text = format!("{backend} has {n} valid repetition{plural}");
        if !why.is_empty() {
            text.push_str(&format!(" ({})", why.join(", ")));
        }
        Some(text)
    }

    /// Kernels with at least one valid cell, sorted.
    pub fn kernels(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.cells.keys().map(|p| &p.kernel).collect();
        set.into_iter().cloned().collect()
    }

    /// Sizes measured for `kernel`, ascending.
    pub fn sizes(&self, kernel: &str) -> Vec<u64> {
        let set: BTreeSet<u64> = self
            .cells
            .keys()
            .filter(|p| p.kernel == kernel)
            .map(|p| p.size)
            .collect();
        set.into_iter().collect()
    }

    /// The target service time and the mean single-job time measured for `kernel` at `size`.
    pub fn service(&self, kernel: &str, size: u64) -> (Option<f64>, f64) {
        let aggs: Vec<&Agg> = self
            .cells
            .iter()
            .filter(|(p, _)| p.kernel == kernel && p.size == size)
            .flat_map(|(_, m)| m.values())
            .collect();
        let target = aggs.iter().find_map(|a| a.target_us);
        (target, finite_mean(aggs.iter().map(|a| a.single_job_us)))
    }

    /// `size_label` for a size of `kernel`.
    pub fn size_label(&self, kernel: &str, size: u64) -> String {
        let (target, single) = self.service(kernel, size);
        size_label(target, single, size)
    }

    /// Backends with valid data, in the report's canonical order.
    pub fn backends(&self) -> Vec<String> {
        let set: BTreeSet<&String> = self.cells.values().flat_map(|m| m.keys()).collect();
        order_backends(set.into_iter().cloned())
    }

    /// The offered load (connections, depth) charts use for `kernel` at `size`: the heaviest
    /// one measured, because throughput-vs-workers is about what the server can do when it is
    /// kept busy. Ties go to more connections.
    pub fn load(&self, kernel: &str, size: u64) -> Option<(u32, u32)> {
        self.cells
            .keys()
            .filter(|p| p.kernel == kernel && p.size == size)
            .map(|p| (p.connections, p.depth))
            .max_by_key(|&(c, d)| (u64::from(c) * u64::from(d), c))
    }

    /// Per-backend series over workers at one kernel, size and load, workers ascending.
    pub fn series(
        &self,
        kernel: &str,
        size: u64,
        (connections, depth): (u32, u32),
    ) -> BTreeMap<String, Vec<(u32, &Agg)>> {
        let mut out: BTreeMap<String, Vec<(u32, &Agg)>> = BTreeMap::new();
        for (p, aggs) in &self.cells {
            if p.kernel == kernel
                && p.size == size
                && p.connections == connections
                && p.depth == depth
            {
                for (b, a) in aggs {
                    out.entry(b.clone()).or_default().push((p.workers, a));
                }
            }
        }
        out
    }

    /// The worker count single-point charts use: the largest measured count that does not
    /// oversubscribe the cores (so efficiency is not diluted by idle-by-design workers), else
    /// the smallest.
    pub fn reference_workers(&self, kernel: &str, size: u64, load: (u32, u32)) -> Option<u32> {
        let series = self.series(kernel, size, load);
        let cores = series
            .values()
            .flatten()
            .map(|(_, a)| a.cores)
            .max()
            .unwrap_or(0);
        let workers: BTreeSet<u32> = series.values().flatten().map(|(w, _)| *w).collect();
        workers
            .iter()
            .rev()
            .find(|&&w| w <= cores)
            .or_else(|| workers.iter().next())
            .copied()
    }
}

/// A duration in µs as people say it, to three significant digits: 50 µs, 2 ms, 1.5 s.
pub fn fmt_us(us: f64) -> String {
    let (v, unit) = if us >= 1e6 {
        (us / 1e6, "s")
    } else if us >= 1e3 {
        (us / 1e3, "ms")
    } else {
        (us, "µs")
    };
    if !v.is_finite() {
        return "–".to_string();
    }
    let decimals = if v > 0.0 {
        (2 - v.log10().floor() as i32).clamp(0, 6) as usize
    } else {
        0
    };
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s} {unit}")
}

/// A work size as the report names it: its service time first, n beside it. The target the
/// sweep calibrated for where there is one ("2 ms (n=1455752)"), else the measured
/// single-job time ("n=2000 (≈19 µs)").
pub fn size_label(target_us: Option<f64>, single_job_us: f64, n: u64) -> String {
    match target_us {
        Some(t) => format!("{} (n={n})", fmt_us(t)),
        None if single_job_us.is_finite() && single_job_us > 0.0 => {
            format!("n={n} (≈{})", fmt_us(single_job_us))
        }
        None => format!("n={n}"),
    }
}

/// Sorts backend names into the canonical order.
pub fn order_backends(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = names.collect();
    v.sort_by_key(|b| {
        let rank = BACKEND_ORDER
            .iter()
            .position(|k| k == b)
            .unwrap_or(BACKEND_ORDER.len());
        (rank, b.clone())
    });
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_times_read_as_people_say_them() {
        assert_eq!(fmt_us(50.0), "50 µs");
        assert_eq!(fmt_us(10.0), "10 µs");
        assert_eq!(fmt_us(2000.0), "2 ms");
        assert_eq!(fmt_us(1500.0), "1.5 ms");
        assert_eq!(fmt_us(18.912), "18.9 µs");
        assert_eq!(fmt_us(5_000_000.0), "5 s");
        assert_eq!(size_label(Some(1000.0), 990.0, 77), "1 ms (n=77)");
        assert_eq!(size_label(None, 18.9, 2000), "n=2000 (≈18.9 µs)");
        assert_eq!(size_label(None, f64::NAN, 2000), "n=2000");
    }
}

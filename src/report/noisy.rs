//! The noisy-neighbour verdicts: in each mix, the majority kernel judged on its own.
//!
//! A mix's pooled row is dominated by whichever kernel does most of the work, so it cannot
//! show what the minority kernel does to its neighbour. Here the majority kernel (the one with
//! the most replies in kernels.csv) is compared process ÷ thread on its own throughput and on
//! its own p99 latency, with the same Welch intervals and verdicts as the whole-cell
//! comparisons: its per-kernel rows stand in for the cells' rows and go through
//! [`compare::comparisons`] unchanged. The throughput comparisons are the ones verdicts.csv
//! holds for the mix itself ([`Dataset::judging`] judges a mix on its majority kernel too);
//! here they sit beside the p99 latency ones, under the `MAJORITY in MIX` label.

use std::collections::HashMap;

use super::compare::{self, Comparison};
use super::data::{order_backends, Dataset};
use super::html::{para, Html};
use super::sections::challenger_table;
use crate::record::{CellKey, Row};
pub use crate::sweep::kernels::majority;
use crate::sweep::kernels::{majority_rows, KernelRow};

/// What a noisy-neighbour comparison is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// The majority kernel's replies per second: higher is better.
    Throughput,
    /// The majority kernel's p99 latency, compared as its inverse so that a ratio above 1
    /// still means the challenger did better (thread p99 ÷ process p99).
    P99Latency,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Throughput => "throughput",
            Metric::P99Latency => "p99 latency",
        }
    }

    /// The per-kernel value in the role of a throughput: larger is better.
    fn score(self, k: &KernelRow) -> f64 {
        match self {
            Metric::Throughput => k.throughput_rps,
            Metric::P99Latency => 1e6 / k.lat_p99_us,
        }
    }
}

/// The label a mix's majority kernel goes by in the comparisons: `fib in fib:15,tlb:1`.
fn label(kernel: &str, mix: &str) -> String {
    format!("{kernel} in {mix}")
}

/// The cells' rows with the majority kernels' own figures in place of the pooled ones: each
/// keeps its cell's validity, and its kernel is the [`label`].
fn stand_ins(rows: &[Row], kernels: &[KernelRow], metric: Metric) -> Vec<Row> {
    let cells: HashMap<CellKey, &Row> = rows.iter().map(|r| (r.cell_key(), r)).collect();
    let mut mixes: Vec<&str> = kernels.iter().map(|k| k.mix.as_str()).collect();
    mixes.sort_unstable();
    mixes.dedup();
    let mut out = Vec::new();
    for mix in mixes {
        let Some((major, own)) = majority_rows(kernels, mix) else {
            continue;
        };
        for k in own {
            if let Some(cell) = cells.get(&k.cell_key()) {
                let mut r = (*cell).clone();
                r.kernel = label(&major, mix);
                r.throughput_rps = metric.score(k);
                if metric == Metric::P99Latency {
                    // A latency is not a count of replies: it has no counting resolution to
                    // floor its spread at, so tied repetitions give no interval.
                    r.duration_s = f64::NAN;
                }
                out.push(r);
            }
        }
    }
    out
}

/// Every challenger ÷ thread comparison of the majority kernels on `metric`, in verdicts.csv
/// order; the comparisons' `kernel` is `MAJORITY in MIX`.
pub fn comparisons(
    rows: &[Row],
    kernels: &[KernelRow],
    metric: Metric,
    margin: f64,
) -> Vec<Comparison> {
    judge_on(rows, kernels, metric, margin).comparisons
}

/// The file beside verdicts.csv that holds the majority kernels' comparisons: verdicts.csv's
/// columns (SPEC §7) then `metric` (`throughput` or `p99 latency`), with `kernel` written as
/// `MAJORITY in MIX`. Its rows are the figures of the report's noisy-neighbour section, for
/// scripts (scripts/findings.py) to quote without recomputing a statistic.
pub const FILE: &str = "noisy.csv";

/// The majority kernels judged on one metric: their stand-in rows and the comparisons.
pub struct Judged {
    pub metric: Metric,
    pub stand_ins: Vec<Row>,
    pub comparisons: Vec<Comparison>,
}

/// Both metrics, throughput first, computed once for the report's section and noisy.csv.
pub fn judge(rows: &[Row], kernels: &[KernelRow], margin: f64) -> Vec<Judged> {
    [Metric::Throughput, Metric::P99Latency]
        .into_iter()
        .map(|metric| judge_on(rows, kernels, metric, margin))
        .collect()
}

fn judge_on(rows: &[Row], kernels: &[KernelRow], metric: Metric, margin: f64) -> Judged {
    let stand_ins = stand_ins(rows, kernels, metric);
    let comparisons = compare::comparisons(&Dataset::new(&stand_ins), margin);
    Judged {
        metric,
        stand_ins,
        comparisons,
    }
}

/// noisy.csv's bytes: the header even when there is no row. Written field by field, since
/// the csv crate cannot flatten a [`Comparison`] beside the extra column.
pub fn csv_bytes(judged: &[Judged]) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<&str> = compare::COLUMNS.to_vec();
    header.push("metric");
    w.write_record(&header)?;
    let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    for j in judged {
        for c in &j.comparisons {
            w.write_record([
                c.kernel.clone(),
                c.workers.to_string(),
                c.connections.to_string(),
                c.depth.to_string(),
                c.size.to_string(),
                opt(c.target_us),
                c.challenger.clone(),
                c.comparator.clone(),
                c.ratio.to_string(),
                opt(c.lo),
                opt(c.hi),
                c.verdict.as_str().to_string(),
                c.reps_challenger.to_string(),
                c.reps_comparator.to_string(),
                j.metric.as_str().to_string(),
            ])?;
        }
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

/// The report's noisy-neighbour section; `judged` is `None` for a run without kernels.csv.
pub fn section(judged: Option<&[Judged]>) -> Html {
    let Some(judged) = judged else {
        return para(
            "No per-kernel data: this run has no kernels.csv (it predates it, or it has no \
             mix), so no mix's majority kernel can be judged on its own.",
        );
    };
    let mut out = Html::default();
    for j in judged {
        let data = Dataset::new(&j.stand_ins);
        out.push(Html::tagged(
            "h3",
            "",
            Html::text(&format!("Majority kernel's {}", j.metric.as_str())),
        ));
        if j.comparisons.is_empty() {
            out.push(para(
                "No mix has valid per-kernel rows of both a process and a thread backend.",
            ));
        }
        for challenger in order_backends(j.comparisons.iter().map(|c| c.challenger.clone())) {
            out.push(challenger_table(&data, &j.comparisons, &challenger));
        }
    }
    out
}

//! The model against the real thing: does the `gil` kernel (a Rust imitation of the GIL)
//! predict the process ÷ thread ratio of `pyfib` (the original task under CPython's real GIL)?
//!
//! At every grid point where both were measured at the same target service time, workers,
//! connections and depth, and for each thread backend on its own, the check compares the two
//! kernels' process ÷ thread throughput ratios: the quantity is
//!
//! ```text
//! ρ = (gil's process ÷ thread) ÷ (pyfib's process ÷ thread)
//! ```
//!
//! estimated from the four backends' log throughputs (a contrast of four independent means)
//! with a Welch interval, as the verdicts are. ρ within the equivalence margin means the model
//! predicts the real ratio (`agrees`); an interval wholly above it means the model overstates
//! the process advantage, wholly below, understates it; otherwise `inconclusive`. Each thread
//! backend is compared on its own, so no backend is chosen after seeing the data.

use std::collections::BTreeMap;

use super::compare::is_thread_backend;
use super::data::{Agg, Dataset};
use super::html::{para, table, Html, TableRow};
use super::verdict::{self, Verdict, CONFIDENCE};

/// (model, real) kernel pairs the check looks for.
pub const PAIRS: [(&str, &str); 1] = [("gil", "pyfib")];

/// The process-side backend whose ratio is compared.
const CHALLENGER: &str = "process";

/// The file beside verdicts.csv that holds the checks, one [`ModelCheck`] a row.
pub const FILE: &str = "model.csv";

/// One comparison of a model kernel's process ÷ thread ratio against the real kernel's.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelCheck {
    pub model: String,
    pub real: String,
    pub workers: u32,
    pub connections: u32,
    pub depth: u32,
    pub target_us: f64,
    pub challenger: String,
    pub comparator: String,
    /// The model kernel's process ÷ comparator ratio of geometric means.
    pub model_ratio: f64,
    /// The real kernel's.
    pub real_ratio: f64,
    /// model_ratio ÷ real_ratio.
    pub ratio: f64,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    /// `agrees`, `overstates`, `understates` or `inconclusive`.
    pub verdict: String,
    /// The fewest valid repetitions of the four backends × kernels.
    pub reps: usize,
}

/// What a ρ interval says, in the model's terms.
fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Equivalent => "agrees",
        Verdict::ProcessWins => "overstates",
        Verdict::ThreadsWin => "understates",
        Verdict::Inconclusive => "inconclusive",
    }
}

/// A grid point as the check pairs kernels on: workers, connections, depth and the target
/// service time (integer ns), since the two kernels reach one target at different sizes.
type Key = (u32, u32, u32, u64);

/// `kernel`'s cells in `data` that were calibrated to a target service time, by [`Key`].
fn cells<'d>(data: &'d Dataset<'_>, kernel: &str) -> BTreeMap<Key, &'d BTreeMap<String, Agg>> {
    data.cells
        .iter()
        .filter(|(point, _)| point.kernel == kernel)
        .filter_map(|(point, by_backend)| {
            let target = by_backend.values().find_map(|a| a.target_us)?;
            let key = (
                point.workers,
                point.connections,
                point.depth,
                (target * 1e3).round() as u64,
            );
            Some((key, by_backend))
        })
        .collect()
}

/// Every model check the data supports, ordered by pair, grid point and comparator.
pub fn checks(data: &Dataset<'_>, margin: f64) -> Vec<ModelCheck> {
    let mut out = Vec::new();
    for (model, real) in PAIRS {
        let (m, r) = (cells(data, model), cells(data, real));
        for (key, model_by_backend) in &m {
            let Some(real_by_backend) = r.get(key) else {
                continue;
            };
            let of = |by: &BTreeMap<String, Agg>, b: &str| by.get(b).and_then(Agg::sample);
            let (Some(mp), Some(rp)) = (
                of(model_by_backend, CHALLENGER),
                of(real_by_backend, CHALLENGER),
            ) else {
                continue;
            };
            for comparator in model_by_backend.keys().filter(|b| is_thread_backend(b)) {
                let (Some(mt), Some(rt)) = (
                    of(model_by_backend, comparator),
                    of(real_by_backend, comparator),
                ) else {
                    continue;
                };
                let est = verdict::contrast(
                    &[(&mp, 1.0), (&mt, -1.0), (&rp, -1.0), (&rt, 1.0)],
                    CONFIDENCE,
                );
                let (workers, connections, depth, target_ns) = *key;
                out.push(ModelCheck {
                    model: model.to_string(),
                    real: real.to_string(),
                    workers,
                    connections,
                    depth,
                    target_us: target_ns as f64 / 1e3,
                    challenger: CHALLENGER.to_string(),
                    comparator: comparator.clone(),
                    model_ratio: (mp.mean - mt.mean).exp(),
                    real_ratio: (rp.mean - rt.mean).exp(),
                    ratio: est.ratio,
                    lo: est.interval.map(|i| i.0),
                    hi: est.interval.map(|i| i.1),
                    verdict: verdict_word(verdict::judge(est.interval, margin)).to_string(),
                    reps: [mp.n, mt.n, rp.n, rt.n].into_iter().min().unwrap_or(0),
                });
            }
        }
    }
    out
}

/// model.csv's bytes. Written only for a run with a check, so serde's header (which comes
/// with the first row) is always there.
pub fn csv_bytes(checks: &[ModelCheck]) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for c in checks {
        w.serialize(c)?;
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
}

/// The report's section from [`checks`]; a note when the run has no pair to check.
pub fn section(checks: &[ModelCheck]) -> Html {
    if checks.is_empty() {
        return para(
            "This run has no model to check: it needs both `gil` and `pyfib` (the `python` \
             feature) at the same target service times, on `process` and a thread backend.",
        );
    }
    let fmt = |c: &ModelCheck| match (c.lo, c.hi) {
        (Some(lo), Some(hi)) => format!("{:.2} [{lo:.2}, {hi:.2}]", c.ratio),
        _ => format!("{:.2} (no interval)", c.ratio),
    };
    let rows = checks.iter().map(|c| TableRow {
        class: "",
        cells: vec![
            Html::text(&format!("{} vs {}", c.model, c.real)),
            Html::text(&c.workers.to_string()),
            Html::text(&super::data::fmt_us(c.target_us)),
            Html::text(&format!("{} ÷ {}", c.challenger, c.comparator)),
            Html::text(&format!("{:.2}", c.model_ratio)),
            Html::text(&format!("{:.2}", c.real_ratio)),
            Html::text(&fmt(c)),
            Html::text(&c.verdict),
        ],
    });
    let mut out = Html::default();
    out.push(table(
        "num",
        &[
            "model vs real",
            "workers",
            "service time",
            "ratio",
            "model's ratio",
            "real ratio",
            "model ÷ real, 95 % interval",
            "verdict",
        ],
        rows,
    ));
    out
}

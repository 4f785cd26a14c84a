//! The report's first screen, which answers the question before anything else: the overview
//! map (kernels × service times, one panel per worker count), the verdict counts and list for
//! the headline comparison (the first challenger against the best thread backend), and how
//! the verdicts were computed, with the error rates the simulation measured.

use std::collections::{BTreeMap, BTreeSet};

use super::categorical::{self, MapCell};
use super::compare::{fastest_thread, why_no_interval, Comparison};
use super::data::{fmt_us, order_backends, Dataset};
use super::html::{figure, num, para, table, Html, TableRow};
use super::service;
use super::simulate::{Simulation, EFFECT, NOISE, NOISE_RATIO, QUIET_NOISE};
use super::verdict::{band, Verdict};

/// The challenger the first screen is about: `process` when it was measured, else the first
/// other process-like backend in the canonical order.
pub fn headline_challenger(comparisons: &[Comparison]) -> Option<String> {
    challengers(comparisons).into_iter().next()
}

/// Every challenger in the data, in the canonical order (the headline one first).
pub fn challengers(comparisons: &[Comparison]) -> Vec<String> {
    order_backends(comparisons.iter().map(|c| c.challenger.clone()))
}

/// The headline rows: `challenger` against the best thread backend.
fn best_rows<'c>(comparisons: &'c [Comparison], challenger: &str) -> Vec<&'c Comparison> {
    comparisons
        .iter()
        .filter(|c| c.is_best_thread() && c.challenger == challenger)
        .collect()
}

/// A verdict as a coloured word.
pub fn verdict_cell(v: Verdict) -> Html {
    let class = match v {
        Verdict::ProcessWins => "verdict-process",
        Verdict::ThreadsWin => "verdict-threads",
        Verdict::Equivalent => "verdict-equivalent",
        Verdict::Inconclusive => "verdict-inconclusive",
    };
    Html::tagged("span", class, Html::text(v.as_str()))
}

/// The row shading for a verdict.
pub fn row_class(v: Verdict) -> &'static str {
    match v {
        Verdict::ProcessWins => "win-process",
        Verdict::ThreadsWin => "win-threads",
        Verdict::Equivalent => "equivalent",
        Verdict::Inconclusive => "",
    }
}

/// "[1.80, 2.05]", or why there is none: "none (rayon has 1 valid repetition)".
pub fn interval_text(data: &Dataset<'_>, c: &Comparison) -> String {
    match (c.interval(), why_no_interval(data, c)) {
        (Some((lo, hi)), _) => format!("[{lo:.2}, {hi:.2}]"),
        (None, why) => format!("none ({})", why.unwrap_or_default()),
    }
}

/// The overview map's column for a size: its service time, so that kernels calibrated to
/// different n for the same target share a column. Sorts by that time.
fn column(data: &Dataset<'_>, kernel: &str, size: u64) -> (u64, String) {
    let (target, single) = data.service(kernel, size);
    match target {
        Some(t) => ((t * 1000.0).round() as u64, fmt_us(t)),
        None => {
            let at = if single.is_finite() { single } else { 0.0 };
            ((at * 1000.0).round() as u64, format!("n={size}"))
        }
    }
}

/// The overview map for `challenger` ÷ best thread, at each kernel and size's heaviest load
/// (the one the other charts use too).
pub fn map(data: &Dataset<'_>, comparisons: &[Comparison], challenger: &str) -> Html {
    let rows: Vec<&Comparison> = best_rows(comparisons, challenger)
        .into_iter()
        .filter(|c| data.load(&c.kernel, c.size) == Some((c.connections, c.depth)))
        .collect();
    let mut cells: BTreeMap<(u32, String, String), MapCell> = BTreeMap::new();
    let mut columns: BTreeSet<(u64, String)> = BTreeSet::new();
    for c in &rows {
        let col = column(data, &c.kernel, c.size);
        cells.insert(
            (c.workers, c.kernel.clone(), col.1.clone()),
            MapCell {
                ratio: c.ratio,
                verdict: c.verdict,
            },
        );
        columns.insert(col);
    }
    let mut labels: Vec<String> = Vec::new();
    for (_, label) in columns {
        if !labels.contains(&label) {
            labels.push(label);
        }
    }
    let kernels: Vec<String> = rows
        .iter()
        .map(|c| c.kernel.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let workers: Vec<u32> = rows
        .iter()
        .map(|c| c.workers)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let chart = categorical::overview_map(
        &format!("{challenger} ÷ best thread backend (throughput ratio)"),
        &workers,
        &kernels,
        &labels,
        |w, k, c| {
            cells
                .get(&(w, kernels[k].clone(), labels[c].clone()))
                .copied()
        },
    );
    figure(
        "heatmap",
        chart,
        &format!(
            "Geometric mean throughput of {challenger} ÷ that of the faster thread backend, per \
             kernel (rows) and service time of one job (columns), one panel per worker count, \
             at each size's heaviest load. Red: {challenger} faster; blue: threads faster; \
             white: parity. The mark is the verdict (bold when the interval decides it); see \
             the list below for every interval."
        ),
    )
}

/// Per kernel: how many grid points got each verdict.
pub fn counts(comparisons: &[Comparison], challenger: &str) -> Html {
    let mut by_kernel: BTreeMap<&str, [usize; 4]> = BTreeMap::new();
    for c in best_rows(comparisons, challenger) {
        let i = Verdict::ALL
            .iter()
            .position(|v| *v == c.verdict)
            .unwrap_or(3);
        by_kernel.entry(&c.kernel).or_default()[i] += 1;
    }
    let mut headers = vec!["kernel", "grid points"];
    headers.extend(Verdict::ALL.iter().map(|v| v.as_str()));
    table(
        "num",
        &headers,
        by_kernel.iter().map(|(k, n)| {
            let mut cells = vec![
                Html::text(k),
                Html::text(&n.iter().sum::<usize>().to_string()),
            ];
            cells.extend(n.iter().map(|x| Html::text(&x.to_string())));
            TableRow::plain(cells)
        }),
    )
}

/// Every headline verdict, one row per grid point.
pub fn list(data: &Dataset<'_>, comparisons: &[Comparison], challenger: &str) -> Html {
    let header = format!("{challenger} ÷ best thread");
    let checks = service::checks(data.rows);
    table(
        "num",
        &[
            "kernel",
            "service time (n)",
            "workers",
            "connections×depth",
            &header,
            "95% interval",
            "verdict",
            "fastest thread backend",
            "reps",
        ],
        best_rows(comparisons, challenger)
            .into_iter()
            .map(|c| TableRow {
                class: row_class(c.verdict),
                cells: vec![
                    Html::text(&data.kernel_label(&c.kernel)),
                    Html::text(&format!(
                        "{}{}",
                        data.size_label(&c.kernel, c.size),
                        service::off_note(&checks, &c.kernel, c.size)
                    )),
                    Html::text(&c.workers.to_string()),
                    Html::text(&format!("{}×{}", c.connections, c.depth)),
                    num(c.ratio, 3),
                    Html::text(&interval_text(data, c)),
                    verdict_cell(c.verdict),
                    Html::text(fastest_thread(comparisons, c).unwrap_or("")),
                    Html::text(&format!("{}/{}", c.reps_challenger, c.reps_comparator)),
                ],
            }),
    )
}

fn pct(v: f64) -> Html {
    if v.is_finite() {
        Html::text(&format!("{:.1} %", v * 100.0))
    } else {
        Html::text("–")
    }
}

/// How intervals and verdicts are computed, with the rates measured by simulating this very
/// code at the repetition counts in the data.
pub fn methods(margin: f64, sims: &[Simulation]) -> Html {
    let (below, above) = band(margin);
    let mut out = para(&format!(
        "Each challenger (a backend whose compute runs in processes) is compared at every grid \
         point with each thread backend on its own and with the best of them. The ratio is of \
         geometric mean throughputs over the valid repetitions, and its 95 % interval is \
         Welch's t-interval on the difference of mean log throughputs: each backend's own \
         variance, Student's t quantile at the Welch–Satterthwaite degrees of freedom when \
         both sides have as many valid repetitions, else at the smaller side's count less one \
         (Hsu's conservative choice: with 2 repetitions against 15, Welch–Satterthwaite's \
         interval holds the true ratio only 89 % of the time). A throughput \
         is a whole count of replies over the window, so repetitions can tie: each variance \
         is floored at that counting resolution (1/(4c²) on the log scale for c replies, the \
         most a count read at a random phase can vary), and an interval never shrinks to a \
         point. Against the \
         best thread backend, the interval runs from the smallest lower end of the k thread \
         backends' 95 % intervals to the smallest upper end of their 1 − 0.05/k (Bonferroni) \
         intervals: the process side wins only by beating every thread backend, threads win \
         when any one of them wins after the correction for k chances, and the interval \
         holds whichever backend looks best, so picking the best after seeing the data does \
         not bias the verdict. A verdict is equivalent when the whole interval lies within \
         ±{m} % ([{below:.3}, {above:.3}], two one-sided tests at 2.5 % each); otherwise the \
         process side wins when the interval lies above 1 and threads win when it lies below \
         1; anything else is inconclusive, as is every comparison with a single repetition on \
         either side. Welch rather than a bootstrap: with 2 to 5 repetitions a percentile \
         bootstrap sees only a handful of distinct resamples and its nominal 95 % interval \
         covers far less often.",
        // Rounded to 0.1 %: 0.07 × 100 is 7.000000000000001 in binary floating point.
        m = (margin * 1000.0).round() / 10.0
    ));
    if sims.is_empty() {
        out.push(para(
            "No comparison here has two repetitions on both sides, so every verdict is \
             inconclusive and there is nothing to simulate.",
        ));
        return out;
    }
    out.push(para(&format!(
        "Measured by simulation, not assumed: {} synthetic grid points per scenario at each \
         of the commonest pairs of repetition counts in these comparisons (process/thread \
         backend: invalid repetitions are dropped, so the two sides often differ), process, \
         rayon and tokio drawn with normal noise on the raw throughput, run through the code \
         that made this report. False wins: all three equal at {noise} % noise, a win for \
         either side called. Coverage: how often the interval holds the true ratio in that \
         case; with unequal noise, when one side is {ratio}x as noisy as the other \
         ({loud} % against {noise} %, the worse of the two ways round). Power: process truly \
         {EFFECT}x at {noise} % noise, \"process wins\" called. Equivalence: all equal at \
         {quiet} % noise, \"equivalent\" called.",
        sims[0].points,
        noise = NOISE * 100.0,
        ratio = NOISE_RATIO,
        loud = NOISE * NOISE_RATIO * 100.0,
        quiet = QUIET_NOISE * 100.0,
    )));
    out.push(table(
        "num",
        &[
            "repetitions (process/thread)",
            "false wins, per thread backend",
            "false wins, best thread",
            "coverage, per thread backend",
            "coverage, best thread",
            "coverage with unequal noise, per thread backend",
            "coverage with unequal noise, best thread",
            "power at 1.5x, best thread",
            "equivalent at 0.5 % noise, best thread",
        ],
        sims.iter().map(|s| {
            TableRow::plain(vec![
                Html::text(&format!("{}/{}", s.reps.0, s.reps.1)),
                pct(s.pair.false_win),
                pct(s.headline.false_win),
                pct(s.pair.coverage),
                pct(s.headline.coverage),
                pct(s.pair.coverage_unequal),
                pct(s.headline.coverage_unequal),
                pct(s.headline.power),
                pct(s.headline.equivalent),
            ])
        }),
    ));
    out
}

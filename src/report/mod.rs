//! The HTML report: a sweep's CSV turned into one self-contained page that answers "where
//! does process parallelism beat thread parallelism, and by how much?" (SPEC §7), and the
//! verdicts.csv beside it.
//!
//! - [`data`]: valid rows grouped per grid point and backend; sizes named by service time.
//! - [`verdict`]: one comparison's interval (Welch, on log throughput) and its [`Verdict`].
//! - [`compare`]: every challenger against every thread backend and the best of them: the
//!   [`Comparison`] rows of verdicts.csv.
//! - [`simulate`]: the verdicts' error rates, measured on synthetic sweeps with a known truth.
//! - [`usl`]: Universal Scalability Law fits of throughput against workers.
//! - `student`: Student's t quantiles.
//! - `service`: calibrated service times checked against their targets.
//! - `crashes`: kernels that crashed a server, and which backends survived them.
//! - `overview`, `measured`, `sections`: the page's text and tables; `charts`, `categorical`,
//!   `figures`: plotters SVG charts; `html`, `template.html`: the page.
//!
//! The output is a pure function of the rows, env.json and the options: no clock, fixed
//! simulation seeds, ordered maps throughout, so `report` regenerates a byte-identical file.

mod categorical;
mod charts;
pub mod compare;
mod crashes;
pub mod data;
mod figures;
mod html;
pub mod inputs;
mod measured;
pub mod model;
pub mod noisy;
mod overview;
mod sections;
mod service;
pub mod simulate;
mod student;
pub mod usl;
pub mod verdict;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::record::{self, Row};
use crate::sweep::kernels::{self, KernelRow};
pub use compare::{Comparison, BEST_THREAD};
pub use verdict::{parse_equivalence, Verdict, DEFAULT_EQUIVALENCE};

/// The name of the verdicts file written beside the report (SPEC §7).
pub const VERDICTS_CSV: &str = "verdicts.csv";

/// Synthetic grid points per scenario in the simulation the methods paragraph quotes: enough
/// that a 5 % rate is known to about ±0.7 %, cheap enough to run at every render.
const SIMULATED_POINTS: usize = 1000;
/// The simulation's seed: fixed, so the same CSV gives the same report.
const SIMULATION_SEED: u64 = 0x7c3d_a11e;
/// At most this many pairs of repetition counts are simulated (the most common ones).
const SIMULATED_REP_COUNTS: usize = 4;

/// What the report is computed with, beyond the rows.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReportOptions {
    /// Equivalence margin as a fraction (0.05: ±5 %, the band [1/1.05, 1.05]). `None`: the
    /// margin the sweep recorded in env.json, else [`DEFAULT_EQUIVALENCE`].
    pub equivalence: Option<f64>,
}

impl ReportOptions {
    /// The margin in force: the one asked for, else the sweep's own (env.json's
    /// `equivalence`), else the default, so re-rendering a sweep keeps its verdicts.
    pub fn margin(&self, env: Option<&serde_json::Value>) -> f64 {
        self.equivalence
            .or_else(|| env.and_then(|e| e["equivalence"].as_f64()))
            .filter(|m| m.is_finite() && *m > 0.0 && *m < 1.0)
            .unwrap_or(DEFAULT_EQUIVALENCE)
    }
}

/// Every comparison in these rows (valid rows only), in verdicts.csv order. Without
/// per-kernel data a mix gets ratios but no verdict: see [`verdicts_with`].
pub fn verdicts(rows: &[Row], equivalence: f64) -> Vec<Comparison> {
    verdicts_with(rows, None, equivalence)
}

/// [`verdicts`] with the run's kernels.csv rows, so that each mix is judged on its majority
/// kernel (SPEC §3).
pub fn verdicts_with(
    rows: &[Row],
    kernels: Option<&[KernelRow]>,
    equivalence: f64,
) -> Vec<Comparison> {
    compare::comparisons(&data::Dataset::judging(rows, kernels), equivalence)
}

/// Renders the whole self-contained HTML for these rows. Deterministic: the same rows, env and
/// options give byte-identical HTML.
pub fn render(
    rows: &[Row],
    env: Option<&serde_json::Value>,
    options: &ReportOptions,
) -> anyhow::Result<String> {
    let data = data::Dataset::judging(rows, None);
    let margin = options.margin(env);
    let comparisons = compare::comparisons(&data, margin);
    let extras = Extras::new(&data, None, margin);
    page(&data, &comparisons, env, margin, &extras)
}

/// The repetition counts worth simulating: each comparison's own pair (challenger,
/// comparator), both two or more, the most common first-served up to
/// [`SIMULATED_REP_COUNTS`], returned ascending. The pair, not the smaller side alone: 2
/// repetitions against 15 do not behave as 2 against 2.
fn rep_counts(comparisons: &[Comparison]) -> Vec<(usize, usize)> {
    let mut freq: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for c in comparisons {
        let pair = (c.reps_challenger, c.reps_comparator);
        if pair.0.min(pair.1) >= 2 {
            *freq.entry(pair).or_default() += 1;
        }
    }
    let mut by_freq: Vec<((usize, usize), usize)> = freq.into_iter().collect();
    by_freq.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let kept: BTreeSet<(usize, usize)> = by_freq
        .into_iter()
        .take(SIMULATED_REP_COUNTS)
        .map(|(n, _)| n)
        .collect();
    kept.into_iter().collect()
}

/// What the report computes beyond the verdicts, once for the page and the CSVs beside it.
struct Extras {
    /// The mixes' majority kernels; `None` without kernels.csv (or with an empty one).
    noisy: Option<Vec<noisy::Judged>>,
    checks: Vec<model::ModelCheck>,
}

impl Extras {
    fn new(data: &data::Dataset<'_>, kernels: Option<&[KernelRow]>, margin: f64) -> Extras {
        Extras {
            noisy: kernels
                .filter(|k| !k.is_empty())
                .map(|k| noisy::judge(data.rows, k, margin)),
            checks: model::checks(data, margin),
        }
    }
}

fn page(
    data: &data::Dataset<'_>,
    comparisons: &[Comparison],
    env: Option<&serde_json::Value>,
    margin: f64,
    extras: &Extras,
) -> anyhow::Result<String> {
    let mut slots = dataset_slots(data, comparisons, env)?;
    slots.insert("noisy", noisy::section(extras.noisy.as_deref()));
    slots.insert("model", model::section(&extras.checks));
    slots.insert("version", html::Html::text(env!("CARGO_PKG_VERSION")));
    slots.insert("rows", html::Html::text(&data.rows.len().to_string()));
    slots.insert("methods", methods(comparisons, margin));
    html::fill(html::TEMPLATE, &slots)
}

/// The methods paragraph, with the simulated error rates at these comparisons' repetitions.
fn methods(comparisons: &[Comparison], margin: f64) -> html::Html {
    let sims: Vec<simulate::Simulation> = rep_counts(comparisons)
        .into_iter()
        .map(|n| simulate::simulate(n, SIMULATED_POINTS, margin, SIMULATION_SEED))
        .collect();
    overview::methods(margin, &sims)
}

/// The slots that describe one dataset (one machine's rows): all but `version`, `rows` and
/// `methods`, so a several-machine report can show each machine's beside the others'.
fn dataset_slots(
    data: &data::Dataset<'_>,
    comparisons: &[Comparison],
    env: Option<&serde_json::Value>,
) -> anyhow::Result<BTreeMap<&'static str, html::Html>> {
    let fits = figures::fit_all(data);
    let mut slots = BTreeMap::new();
    // Missing shards are said on the first screen as well as beside the machine.
    let mut overview = measured::coverage(env);
    overview.push(overview_section(data, comparisons));
    slots.insert("overview", overview);
    slots.insert("comparisons", sections::comparisons(data, comparisons));
    slots.insert("measured", measured::measured(data.rows, env));
    slots.insert("charts", figures::charts(data, &fits));
    slots.insert("usl", sections::usl(&fits));
    slots.insert("resources", sections::resources(data.rows));
    slots.insert("data", sections::data(data.rows)?);
    Ok(slots)
}

/// The first screen: the map, the counts per kernel, the verdict list.
fn overview_section(data: &data::Dataset<'_>, comparisons: &[Comparison]) -> html::Html {
    // A server that crashed is a finding of its own, shown first, verdict or not.
    let mut out = crashes::section(data.rows);
    let Some(challenger) = overview::headline_challenger(comparisons) else {
        out.push(html::Html::tagged(
            "p",
            "warn",
            html::Html::text(
                "No grid point has valid measurements of both a process backend and a thread \
                 backend, so there is no verdict.",
            ),
        ));
        return out;
    };
    out.push(overview::map(data, comparisons, &challenger));
    out.push(html::Html::raw(format!(
        "<h2>1. Verdicts: {} ÷ best thread backend</h2>",
        html::escape(&challenger)
    )));
    out.push(overview::counts(comparisons, &challenger));
    out.push(overview::list(data, comparisons, &challenger));
    // The other process designs (`shm`, `prefork`) get their own map and counts: each answers
    // a different question (is it the pipe? is it the dispatcher?), so none hides another.
    for other in overview::challengers(comparisons) {
        if other != challenger {
            out.push(html::Html::raw(format!(
                "<h3>{} ÷ best thread backend</h3>",
                html::escape(&other)
            )));
            out.push(overview::map(data, comparisons, &other));
            out.push(overview::counts(comparisons, &other));
        }
    }
    out
}

/// [`write_report_with`] with the default options (the sweep's equivalence margin, else ±5 %).
pub fn write_report(csv: &Path, env: Option<&Path>, out: &Path) -> anyhow::Result<()> {
    write_report_with(csv, env, out, &ReportOptions::default())
}

/// Reads `csv` (and env.json: `env`, or else the file of that name beside the CSV when it
/// exists), renders, and writes `verdicts.csv` and the report `out` beside each other, each
/// atomically: a temporary file in the same directory renamed over the old one, so a failure
/// never leaves a partial file over a good one. Everything is computed before anything is
/// written, so a CSV that cannot be reported on leaves both old files in place.
pub fn write_report_with(
    csv: &Path,
    env: Option<&Path>,
    out: &Path,
    options: &ReportOptions,
) -> anyhow::Result<()> {
    let rows = record::read_csv(csv)?;
    let env_path = match env {
        Some(p) => Some(p.to_path_buf()),
        None => {
            let beside = csv.parent().unwrap_or(Path::new(".")).join("env.json");
            beside.is_file().then_some(beside)
        }
    };
    let env_value = match &env_path {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read machine metadata {}", p.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", p.display()))?;
            Some(v)
        }
        None => None,
    };
    let kernels = kernels::read(&csv.with_file_name(kernels::FILE))?;
    let data = data::Dataset::judging(&rows, kernels.as_deref());
    let margin = options.margin(env_value.as_ref());
    let comparisons = compare::comparisons(&data, margin);
    let extras = Extras::new(&data, kernels.as_deref(), margin);
    let page = page(&data, &comparisons, env_value.as_ref(), margin, &extras)
        .with_context(|| format!("cannot render a report from {}", csv.display()))?;
    write_all(out, &page, &comparisons, &extras)
}

/// Writes one machine's report `out` and the CSVs beside it: verdicts.csv always, noisy.csv
/// when the run has per-kernel data, model.csv when it has a model to check. Every file's
/// bytes are made before the first is written.
fn write_all(
    out: &Path,
    page: &str,
    comparisons: &[Comparison],
    extras: &Extras,
) -> anyhow::Result<()> {
    let noisy_csv = match &extras.noisy {
        Some(judged) => Some(noisy::csv_bytes(judged)?),
        None => None,
    };
    let model_csv = if extras.checks.is_empty() {
        None
    } else {
        Some(model::csv_bytes(&extras.checks)?)
    };
    compare::write_csv(&verdicts_path(out), comparisons)?;
    if let Some(bytes) = model_csv {
        write_atomic(&verdicts_path(out).with_file_name(model::FILE), &bytes)?;
    }
    if let Some(bytes) = noisy_csv {
        write_atomic(&verdicts_path(out).with_file_name(noisy::FILE), &bytes)?;
    }
    write_atomic(out, page.as_bytes())
}

/// Where verdicts.csv goes for a report written to `out`: the same folder.
pub fn verdicts_path(out: &Path) -> PathBuf {
    match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.join(VERDICTS_CSV),
        _ => PathBuf::from(VERDICTS_CSV),
    }
}

pub(crate) fn write_atomic(out: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = out
        .file_name()
        .with_context(|| format!("{} is not a file path", out.display()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, out).with_context(|| {
            format!(
                "cannot move {} into place at {}",
                tmp.display(),
                out.display()
            )
        })
    })();
    if result.is_err() {
        // Best effort: the error being returned matters more than a leftover temp file.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

//! The HTML report: a sweep's CSV turned into one self-contained page that answers "where
//! does process parallelism beat thread parallelism, and by how much?" (SPEC §7).
//!
//! - [`data`]: valid rows grouped per grid point and backend.
//! - [`stats`]: process ÷ best-thread ratios with bootstrap intervals, and the verdicts.
//! - [`usl`]: Universal Scalability Law fits of throughput against workers.
//! - `charts`, `categorical`, `figures`: plotters SVG charts and what each one shows.
//! - `html`, `sections`, `template.html`: the page.
//!
//! The output is a pure function of the rows and env.json: no clock, fixed bootstrap seeds,
//! ordered maps throughout, so `report` regenerates a byte-identical file from the CSV.

mod categorical;
mod charts;
pub mod data;
mod figures;
mod html;
mod sections;
pub mod stats;
pub mod usl;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::record::{self, Row};
pub use stats::{kernel_summaries, verdicts, KernelSummary, Outcome, Ratio, Verdict};

/// Renders the whole self-contained HTML for these rows. Deterministic: the same rows and env
/// give byte-identical HTML.
pub fn render(rows: &[Row], env: Option<&serde_json::Value>) -> anyhow::Result<String> {
    let data = data::Dataset::new(rows);
    let verdicts = stats::verdicts_of(&data);
    let prefork = stats::prefork_ratios(&data);
    let fits = figures::fit_all(&data);

    let mut slots = BTreeMap::new();
    slots.insert("version", html::Html::text(env!("CARGO_PKG_VERSION")));
    slots.insert("rows", html::Html::text(&rows.len().to_string()));
    slots.insert("resamples", html::Html::text(&stats::RESAMPLES.to_string()));
    slots.insert("lede", sections::lede(&verdicts));
    slots.insert("measured", sections::measured(rows, env));
    slots.insert("verdicts", sections::verdicts(&verdicts, &prefork));
    slots.insert("charts", figures::charts(&data, &verdicts, &fits));
    slots.insert("usl", sections::usl(&fits));
    slots.insert("resources", sections::resources(rows));
    slots.insert("data", sections::data(rows)?);
    html::fill(html::TEMPLATE, &slots)
}

/// Reads `csv` (and env.json: `env`, or else the file of that name beside the CSV when it
/// exists), renders, and replaces `out` atomically: the HTML goes to a temporary file in the
/// same directory that is renamed over `out`, so a failure never leaves a partial report over
/// a good one.
pub fn write_report(csv: &Path, env: Option<&Path>, out: &Path) -> anyhow::Result<()> {
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
    let page = render(&rows, env_value.as_ref())
        .with_context(|| format!("cannot render a report from {}", csv.display()))?;
    write_atomic(out, page.as_bytes())
}

fn write_atomic(out: &Path, bytes: &[u8]) -> anyhow::Result<()> {
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
        std::fs::rename(&tmp, out)
            .with_context(|| format!("cannot move the report into place at {}", out.display()))
    })();
    if result.is_err() {
        // Best effort: the error being returned matters more than a leftover temp file.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

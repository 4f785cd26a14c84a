//! `kernels.csv`: one tidy row per cell × repetition × kernel of a mix, beside results.csv.
//!
//! A mix's row in results.csv pools every kernel, so when one kernel is most of the work the
//! pooled numbers are that kernel's, and a noisy neighbour's effect on the other one is
//! invisible. These rows keep each kernel's own count, throughput, latency and compute time so
//! the report can judge the majority kernel on its own. Cells of a single kernel write none.

use crate::load::LoadReport;
use crate::record::CellKey;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The file's name in a sweep folder.
pub const FILE: &str = "kernels.csv";

/// One kernel of a mix in one cell and repetition. Latencies in microseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelRow {
    /// The kernel of the mix this row is about.
    pub kernel: String,
    pub backend: String,
    pub workers: u32,
    pub connections: u32,
    pub depth: u32,
    /// The cell's size (results.csv's `size`), so a row joins its cell.
    pub size: u64,
    pub repetition: u32,
    /// The whole mix, as results.csv's `kernel` names it.
    pub mix: String,
    /// Correct replies of this kernel.
    pub requests: u64,
    /// The cell's in-window throughput times this kernel's share of the replies.
    pub throughput_rps: f64,
    pub lat_p50_us: f64,
    pub lat_p99_us: f64,
    /// NaN when no reply carried the server's timings.
    pub compute_p50_us: f64,
}

impl KernelRow {
    /// The results.csv cell this row belongs to.
    pub fn cell_key(&self) -> CellKey {
        CellKey {
            kernel: self.mix.clone(),
            backend: self.backend.clone(),
            workers: self.workers,
            connections: self.connections,
            depth: self.depth,
            size: self.size,
            repetition: self.repetition,
        }
    }
}

/// The per-kernel rows of one measured cell: one per kernel when the cell is a mix, none
/// otherwise. The driver counts each kernel's replies over the whole run, not only the
/// window, so a kernel's throughput is the cell's window throughput split by those counts.
pub fn rows(cell: &CellKey, report: &LoadReport) -> Vec<KernelRow> {
    if report.per_kernel.len() < 2 {
        return Vec::new();
    }
    let total: u64 = report.per_kernel.values().map(|s| s.count).sum();
    report
        .per_kernel
        .iter()
        .map(|(name, lat)| KernelRow {
            kernel: name.clone(),
            backend: cell.backend.clone(),
            workers: cell.workers,
            connections: cell.connections,
            depth: cell.depth,
            size: cell.size,
            repetition: cell.repetition,
            mix: cell.kernel.clone(),
            requests: lat.count,
            throughput_rps: if total > 0 {
                report.throughput_rps * lat.count as f64 / total as f64
            } else {
                0.0
            },
            lat_p50_us: if lat.count > 0 { lat.p50_us } else { f64::NAN },
            lat_p99_us: if lat.count > 0 { lat.p99_us } else { f64::NAN },
            compute_p50_us: report
                .per_kernel_compute
                .get(name)
                .map_or(f64::NAN, |s| s.p50_us),
        })
        .collect()
}

/// The kernel of `mix` with the most replies over all its rows: the one the mix is judged on
/// (SPEC §3).
pub fn majority(kernels: &[KernelRow], mix: &str) -> Option<String> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for k in kernels.iter().filter(|k| k.mix == mix) {
        *counts.entry(&k.kernel).or_default() += k.requests;
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(k, _)| k.to_string())
}

/// A mix's majority kernel and its rows of `kernels`, in file order: what the mix is judged on
/// (SPEC §3). `None` when `kernels` holds no row of the mix.
pub fn majority_rows<'k>(
    kernels: &'k [KernelRow],
    mix: &str,
) -> Option<(String, Vec<&'k KernelRow>)> {
    let major = majority(kernels, mix)?;
    let rows = kernels
        .iter()
        .filter(|k| k.mix == mix && k.kernel == major)
        .collect();
    Some((major, rows))
}

/// Appends rows to `path`, writing the header only when the file is new or empty.
pub fn append(path: &Path, rows: &[KernelRow]) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut w = csv::WriterBuilder::new()
        .has_headers(fresh)
        .from_writer(file);
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    Ok(())
}

/// The rows of `path`; `None` when the folder has no kernels.csv (runs from before it).
pub fn read(path: &Path) -> anyhow::Result<Option<Vec<KernelRow>>> {
    if !path.exists() {
        return Ok(None);
    }
    let mut rdr =
        csv::Reader::from_path(path).with_context(|| format!("cannot open {}", path.display()))?;
    let rows = rdr
        .deserialize()
        .enumerate()
        .map(|(i, r)| r.with_context(|| format!("{}: bad row {}", path.display(), i + 2)))
        .collect::<anyhow::Result<Vec<KernelRow>>>()?;
    Ok(Some(rows))
}

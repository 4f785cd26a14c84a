//! Section 3: which data each chart gets, and the USL fits the throughput charts draw.

use std::collections::{BTreeMap, BTreeSet};

use super::categorical::{self, Split};
use super::charts;
use super::data::Dataset;
use super::html::{figure, Html};
use super::usl::{self, UslFit};

/// One USL fit attempt: a backend's throughput against workers at one kernel, size and load.
#[derive(Debug, Clone)]
pub struct UslRow {
    pub kernel: String,
    pub size: u64,
    /// The size as the report names it: service time, then n.
    pub size_label: String,
    pub backend: String,
    /// (connections, depth) of the points fitted.
    pub load: (u32, u32),
    /// Distinct worker counts available.
    pub distinct: usize,
    /// None when there were fewer than four distinct worker counts.
    pub fit: Option<UslFit>,
}

/// Fits every (kernel, size, backend) series at the load its throughput chart shows.
pub fn fit_all(data: &Dataset<'_>) -> Vec<UslRow> {
    let mut out = Vec::new();
    for kernel in data.kernels() {
        for size in data.sizes(&kernel) {
            let Some(load) = data.load(&kernel, size) else {
                continue;
            };
            let series = data.series(&kernel, size, load);
            for backend in data.backends() {
                let Some(points) = series.get(&backend) else {
                    continue;
                };
                let xy: Vec<(f64, f64)> = points
                    .iter()
                    .flat_map(|(w, a)| a.throughput.iter().map(move |&x| (f64::from(*w), x)))
                    .collect();
                out.push(UslRow {
                    kernel: kernel.clone(),
                    size,
                    size_label: data.size_label(&kernel, size),
                    backend: backend.clone(),
                    load,
                    distinct: points.iter().map(|p| p.0).collect::<BTreeSet<_>>().len(),
                    fit: usl::fit(&xy),
                });
            }
        }
    }
    out
}

/// All charts but the overview map, grouped per kernel: the efficiency chart, then per size the
/// throughput, latency and latency-split charts.
pub fn charts(data: &Dataset<'_>, fits: &[UslRow]) -> Html {
    let order = data.backends();
    let mut out = Html::default();
    if data.cells.is_empty() {
        out.push(Html::tagged(
            "p",
            "warn",
            Html::text("No valid rows: nothing to chart."),
        ));
        return out;
    }
    for kernel in data.kernels() {
        out.push(Html::tagged("h3", "", Html::text(&kernel)));
        let sizes = data.sizes(&kernel);
        out.push(Html::tagged(
            "div",
            "charts",
            efficiency(data, &kernel, &sizes, &order),
        ));
        // Throughput and latency pair up per size; the splits follow together so that no
        // row is left half empty.
        let mut splits = Html::default();
        for &size in &sizes {
            let Some(load) = data.load(&kernel, size) else {
                continue;
            };
            let series = data.series(&kernel, size, load);
            let label = data.size_label(&kernel, size);
            let at = format!("{kernel}, {label}, {}×{} load", load.0, load.1);
            let fitted: BTreeMap<String, UslFit> = fits
                .iter()
                .filter(|u| u.kernel == kernel && u.size == size)
                .filter_map(|u| u.fit.map(|f| (u.backend.clone(), f)))
                .collect();
            let mut row = Html::default();
            row.push(figure(
                "throughput",
                charts::throughput(&format!("Throughput: {at}"), &series, &order, &fitted),
                &format!(
                    "Throughput against workers at {at} (connections×depth). Lines join the \
                     means, faint dots are repetitions, the thick dashed line is the ideal \
                     min(workers, cores) ÷ single-thread job time, and thin pale lines are \
                     each backend's USL fit (section 4)."
                ),
            ));
            let mut by_backend: BTreeMap<String, Vec<&super::data::Agg>> = BTreeMap::new();
            for (p, aggs) in data.cells.range(..) {
                if p.kernel == kernel && p.size == size {
                    for (b, a) in aggs {
                        by_backend.entry(b.clone()).or_default().push(a);
                    }
                }
            }
            row.push(figure(
                "latency",
                charts::latency(
                    &format!("Latency vs throughput: {kernel}, {label}"),
                    &by_backend,
                    &order,
                ),
                &format!(
                    "Median (dots) and 99th-percentile (triangles) latency against \
                     throughput for every measured cell of {kernel} at {label}, all \
                     worker counts and loads."
                ),
            ));
            out.push(Html::tagged("div", "charts", row));
            splits.push(split(data, &kernel, size, load, &order));
        }
        out.push(Html::tagged("div", "charts", splits));
    }
    out
}

fn efficiency(data: &Dataset<'_>, kernel: &str, sizes: &[u64], order: &[String]) -> Html {
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut used_workers = BTreeSet::new();
    for &size in sizes {
        let Some(load) = data.load(kernel, size) else {
            continue;
        };
        let Some(w) = data.reference_workers(kernel, size, load) else {
            continue;
        };
        used_workers.insert(w);
        for (backend, points) in data.series(kernel, size, load) {
            if let Some((_, a)) = points.iter().find(|(pw, _)| *pw == w) {
                series
                    .entry(backend)
                    .or_default()
                    .push((a.single_job_us, a.efficiency));
            }
        }
    }
    let workers = used_workers
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join("/");
    figure(
        "efficiency",
        charts::efficiency(&format!("Efficiency vs job size: {kernel}"), &series, order),
        &format!(
            "Throughput ÷ ideal against the single-thread time of one job, at {workers} \
             worker(s). A backend's per-request overhead (for process, the pipe round trip) \
             is amortized where its line approaches the others and 1."
        ),
    )
}

fn split(data: &Dataset<'_>, kernel: &str, size: u64, load: (u32, u32), order: &[String]) -> Html {
    let Some(w) = data.reference_workers(kernel, size, load) else {
        return figure("split", Err(anyhow::anyhow!("no data")), "Latency split");
    };
    let series = data.series(kernel, size, load);
    let splits: Vec<Split> = order
        .iter()
        .filter_map(|b| {
            let (_, a) = series.get(b)?.iter().find(|(pw, _)| *pw == w)?;
            Some(Split {
                backend: b.clone(),
                queue: a.queue_p50,
                transport: a.transport_p50,
                compute: a.compute_p50,
                client: a.lat_p50 - a.server_p50,
            })
        })
        .collect();
    figure(
        "split",
        categorical::latency_split(
            &format!(
                "Median latency split: {kernel}, {}, {w} workers",
                data.size_label(kernel, size)
            ),
            &splits,
        ),
        &format!(
            "Where a median request's time goes at {w} workers, {}×{} load: compute in the \
             kernel, queue waiting for a worker, transport/IPC inside the server (for process, \
             the pipe round trip), and the rest of the end-to-end median (client, network \
             stack). Medians of different stages do not add exactly.",
            load.0, load.1
        ),
    )
}

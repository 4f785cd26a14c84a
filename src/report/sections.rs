//! The report's tables after the first screen: every comparison per challenger, the USL fits,
//! resource use per request and the full data table.

use std::collections::BTreeMap;

use super::compare::{Comparison, BEST_THREAD};
use super::data::{order_backends, Dataset, Point, THREAD_BACKENDS};
use super::figures::UslRow;
use super::html::{escape, num, para, sig, table, Html, TableRow};
use super::overview::{interval_text, row_class, verdict_cell};
use super::usl::MIN_DISTINCT_N;
use crate::record::Row;

/// One table for any challenger: a row per grid point, a column per thread backend and one
/// for the best of them, each cell the ratio, its interval and the verdict.
pub fn challenger_table(data: &Dataset<'_>, comparisons: &[Comparison], challenger: &str) -> Html {
    let mine: Vec<&Comparison> = comparisons
        .iter()
        .filter(|c| c.challenger == challenger)
        .collect();
    let comparators: Vec<&str> = THREAD_BACKENDS
        .iter()
        .copied()
        .filter(|t| mine.iter().any(|c| c.comparator == *t))
        .chain([BEST_THREAD])
        .collect();
    let mut points: BTreeMap<Point, BTreeMap<&str, &Comparison>> = BTreeMap::new();
    for c in &mine {
        points
            .entry(c.point())
            .or_default()
            .insert(c.comparator.as_str(), c);
    }
    let mut headers = vec![
        "kernel".to_string(),
        "service time (n)".to_string(),
        "workers".to_string(),
        "connections×depth".to_string(),
    ];
    headers.extend(comparators.iter().map(|t| format!("{challenger} ÷ {t}")));
    headers.push(format!(
        "reps ({challenger}/{})",
        comparators[..comparators.len() - 1].join("/")
    ));
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let rows = points.iter().map(|(p, by)| {
        let mut cells = vec![
            Html::text(&data.kernel_label(&p.kernel)),
            Html::text(&data.size_label(&p.kernel, p.size)),
            Html::text(&p.workers.to_string()),
            Html::text(&format!("{}×{}", p.connections, p.depth)),
        ];
        for t in &comparators {
            cells.push(match by.get(t) {
                Some(c) => {
                    let mut cell =
                        Html::text(&format!("{:.3} {} ", c.ratio, interval_text(data, c)));
                    cell.push(verdict_cell(c.verdict));
                    cell
                }
                None => Html::text("–"),
            });
        }
        let reps_of = |t: &str| {
            by.get(t)
                .map_or("–".to_string(), |c| c.reps_comparator.to_string())
        };
        let reps: Vec<String> = std::iter::once(
            by.values()
                .next()
                .map_or(0, |c| c.reps_challenger)
                .to_string(),
        )
        .chain(
            comparators[..comparators.len() - 1]
                .iter()
                .map(|t| reps_of(t)),
        )
        .collect();
        cells.push(Html::text(&reps.join("/")));
        let class = by.get(BEST_THREAD).map_or("", |c| row_class(c.verdict));
        TableRow { class, cells }
    });
    let mut out = Html::raw(format!(
        "<details><summary>{} ÷ each thread backend ({} grid points)</summary>",
        escape(challenger),
        points.len()
    ));
    out.push(table("num", &header_refs, rows));
    out.push(Html::raw("</details>".into()));
    out
}

/// Section 2: every challenger's comparisons, one table each.
pub fn comparisons(data: &Dataset<'_>, comparisons: &[Comparison]) -> Html {
    let challengers = order_backends(comparisons.iter().map(|c| c.challenger.clone()));
    if challengers.is_empty() {
        return Html::tagged(
            "p",
            "warn",
            Html::text(
                "No grid point has valid measurements of both a process backend (process, \
                 shm, prefork) and a thread backend (rayon, tokio): run the sweep with \
                 --backends process,rayon,tokio.",
            ),
        );
    }
    let mut out = Html::default();
    for challenger in challengers {
        out.push(Html::tagged(
            "h3",
            "",
            Html::text(&format!("{challenger} ÷ thread backends")),
        ));
        if challenger == "prefork" {
            out.push(para(
                "prefork runs W complete single-threaded servers sharing the port: process \
                 parallelism without pipes. Where it beats the thread backends but process \
                 does not, the pipe round trip is what costs, not being a process.",
            ));
        }
        if challenger == "shm" {
            out.push(para(
                "shm is the process backend fed through shared-memory rings instead of pipes: \
                 the same worker processes and supervisor. Where it matches the thread \
                 backends but process does not, the pipe is what costs.",
            ));
        }
        out.push(challenger_table(data, comparisons, &challenger));
    }
    out
}

/// A coefficient and its interval: "0.120 [0.050, 0.200]".
fn with_interval(v: f64, interval: Option<(f64, f64)>, decimals: usize) -> Html {
    match interval {
        Some((lo, hi)) => Html::text(&format!(
            "{v:.decimals$} [{lo:.decimals$}, {hi:.decimals$}]"
        )),
        None => num(v, decimals),
    }
}

/// Section 4: the USL coefficients per kernel, size and backend, where there are enough
/// worker counts to fit them.
pub fn usl(fits: &[UslRow]) -> Html {
    if fits.is_empty() {
        return para("No valid throughput data to fit.");
    }
    let fitted: Vec<&UslRow> = fits.iter().filter(|u| u.fit.is_some()).collect();
    let most = fits.iter().map(|u| u.distinct).max().unwrap_or(0);
    if fitted.is_empty() {
        return Html::tagged(
            "p",
            "note",
            Html::text(&format!(
                "Not enough worker counts to fit: the USL has three parameters, so a fit needs \
                 at least {MIN_DISTINCT_N} distinct worker counts, and this sweep has at most \
                 {most} per series."
            )),
        );
    }
    let mut out = table(
        "num",
        &[
            "kernel",
            "service time (n)",
            "backend",
            "connections×depth",
            "worker counts",
            "λ (req/s) [95 %]",
            "σ [95 %]",
            "κ [95 %]",
            "peak N*",
            "R²",
        ],
        fitted.iter().filter_map(|u| {
            let f = u.fit.as_ref()?;
            let ci = |i: usize| f.intervals.map(|v| v[i]);
            Some(TableRow::plain(vec![
                Html::text(&u.kernel),
                Html::text(&u.size_label),
                Html::text(&u.backend),
                Html::text(&format!("{}×{}", u.load.0, u.load.1)),
                Html::text(&u.distinct.to_string()),
                with_interval(f.lambda, ci(0), 1),
                with_interval(f.sigma, ci(1), 4),
                with_interval(f.kappa, ci(2), 5),
                f.peak().map_or_else(|| Html::text("none"), |n| num(n, 1)),
                num(f.r2, 3),
            ]))
        }),
    );
    let skipped = fits.len() - fitted.len();
    if skipped > 0 {
        out.push(Html::tagged(
            "p",
            "note",
            Html::text(&format!(
                "{skipped} series with fewer than {MIN_DISTINCT_N} worker counts are not \
                 fitted: not enough worker counts to fit."
            )),
        ));
    }
    out
}

/// Section 5: CPU, memory, faults, context switches and TLB shootdowns per request, and the
/// share of the machine's cores the server and the driver kept busy: a backend can lead by
/// costing less per request or by leaving fewer cores idle, and only the two together say which.
pub fn resources(rows: &[Row]) -> Html {
    #[derive(Default)]
    struct Sums {
        cells: usize,
        requests: u64,
        server_cpu: f64,
        client_cpu: f64,
        /// Core-seconds the load runs lasted: the CPU figures were sampled over the window and
        /// its drain tail.
        core_s: f64,
        rss: Vec<u64>,
        minflt: u64,
        csw: u64,
        tlb: Option<u64>,
        start_ms: Vec<f64>,
    }
    let mut groups: BTreeMap<(String, u64), BTreeMap<String, Sums>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.valid) {
        let s = groups
            .entry((r.kernel.clone(), r.size))
            .or_default()
            .entry(r.backend.clone())
            .or_default();
        s.cells += 1;
        s.requests += r.requests;
        s.server_cpu += r.server_cpu_s;
        s.client_cpu += r.client_cpu_s;
        s.core_s += (r.duration_s + r.tail_s) * f64::from(r.cores);
        s.rss.push(r.server_rss_kib);
        s.minflt += r.server_minflt;
        s.csw += r.server_vcsw + r.server_ivcsw;
        if let Some(t) = r.tlb_shootdowns {
            s.tlb = Some(s.tlb.unwrap_or(0) + t);
        }
        s.start_ms.push(r.server_start_ms);
    }
    if groups.is_empty() {
        return para("No valid rows.");
    }
    let mut body = Vec::new();
    for ((kernel, size), by_backend) in &groups {
        let names = order_backends(by_backend.keys().cloned());
        for b in names {
            let Some(s) = by_backend.get(&b) else {
                continue;
            };
            let per = |v: f64| {
                if s.requests > 0 {
                    v / s.requests as f64
                } else {
                    f64::NAN
                }
            };
            let rss_mib = s.rss.iter().sum::<u64>() as f64 / s.rss.len().max(1) as f64 / 1024.0;
            let start = s.start_ms.iter().sum::<f64>() / s.start_ms.len().max(1) as f64;
            body.push(TableRow::plain(vec![
                Html::text(kernel),
                Html::text(&size.to_string()),
                Html::text(&b),
                Html::text(&s.cells.to_string()),
                sig(per(s.server_cpu * 1e6), 3),
                sig(per(s.client_cpu * 1e6), 3),
                sig((s.server_cpu + s.client_cpu) / s.core_s * 100.0, 3),
                sig(rss_mib, 3),
                sig(per(s.minflt as f64), 3),
                sig(per(s.csw as f64), 3),
                s.tlb
                    .map_or_else(|| Html::text("n/a"), |t| sig(per(t as f64), 3)),
                sig(start, 3),
            ]));
        }
    }
    table(
        "num",
        &[
            "kernel",
            "size",
            "backend",
            "rows",
            "server CPU µs/req",
            "client CPU µs/req",
            "cores busy %",
            "peak RSS MiB (mean)",
            "minor faults/req",
            "context switches/req",
            "TLB shootdowns/req",
            "server start ms",
        ],
        body,
    )
}

/// Section 6: every CSV row, in CSV column order, invalid rows marked.
pub fn data(rows: &[Row]) -> anyhow::Result<Html> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut rdr = csv::Reader::from_reader(bytes.as_slice());
    let headers: Vec<String> = rdr.headers()?.iter().map(str::to_string).collect();
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut body = Vec::with_capacity(rows.len());
    for (rec, row) in rdr.records().zip(rows) {
        let rec = rec?;
        body.push(TableRow {
            class: if row.valid { "" } else { "invalid" },
            cells: rec.iter().map(Html::text).collect(),
        });
    }
    let mut out = Html::raw(format!(
        "<details><summary>Show all {} rows ({} invalid)</summary>",
        rows.len(),
        rows.iter().filter(|r| !r.valid).count()
    ));
    out.push(table("data", &header_refs, body));
    out.push(Html::raw("</details>".into()));
    Ok(out)
}

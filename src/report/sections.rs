//! The report's text and table sections: what was measured, the verdicts, the USL fits,
//! resource use per request and the full data table.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::data::{order_backends, Point};
use super::figures::UslRow;
use super::html::{num, para, sig, table, Html, TableRow};
use super::stats::{kernel_summaries, Outcome, Ratio, Verdict};
use super::usl::MIN_DISTINCT_N;
use crate::record::Row;

fn joined<T: ToString>(values: impl IntoIterator<Item = T>) -> String {
    values
        .into_iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn distinct<T: Ord + ToString>(values: impl Iterator<Item = T>) -> String {
    joined(values.collect::<BTreeSet<T>>())
}

/// Section 1: the machine (env.json as a key/value table), the grid and the invalid cells.
pub fn measured(rows: &[Row], env: Option<&Value>) -> Html {
    let mut out = Html::raw("<h3>Machine and build</h3>".into());
    match env {
        Some(Value::Object(map)) => {
            out.push(table(
                "",
                &["key", "value"],
                map.iter().map(|(k, v)| {
                    let shown = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    TableRow::plain(vec![Html::text(k), Html::text(&shown)])
                }),
            ));
        }
        Some(other) => out.push(table(
            "",
            &["env.json"],
            [TableRow::plain(vec![Html::text(&other.to_string())])],
        )),
        None => out.push(Html::tagged(
            "p",
            "warn",
            Html::text(
                "No env.json was found beside the CSV, so the machine and build are unknown: \
                 the numbers below cannot be tied to a CPU, kernel or commit.",
            ),
        )),
    }

    let mut cells: BTreeMap<_, usize> = BTreeMap::new();
    for r in rows {
        let mut k = r.cell_key();
        k.repetition = 0;
        *cells.entry(k).or_default() += 1;
    }
    let open_loop = rows.iter().filter(|r| r.rate > 0.0).count();
    let grid = [
        ("kernels", distinct(rows.iter().map(|r| r.kernel.clone()))),
        (
            "backends",
            joined(order_backends(rows.iter().map(|r| r.backend.clone()))),
        ),
        ("workers", distinct(rows.iter().map(|r| r.workers))),
        ("connections", distinct(rows.iter().map(|r| r.connections))),
        ("depth", distinct(rows.iter().map(|r| r.depth))),
        ("sizes (n)", distinct(rows.iter().map(|r| r.size))),
        ("cores", distinct(rows.iter().map(|r| r.cores))),
        ("repetitions per cell", distinct(cells.values().copied())),
        ("cells (grid points × backends)", cells.len().to_string()),
        ("rows", rows.len().to_string()),
        (
            "load",
            if open_loop == 0 {
                "closed loop".to_string()
            } else {
                format!("{open_loop} open-loop rows")
            },
        ),
    ];
    out.push(Html::raw("<h3>Grid</h3>".into()));
    out.push(table(
        "",
        &["dimension", "values"],
        grid.iter()
            .map(|(k, v)| TableRow::plain(vec![Html::text(k), Html::text(v)])),
    ));

    let invalid: Vec<&Row> = rows.iter().filter(|r| !r.valid).collect();
    out.push(Html::raw("<h3>Validity</h3>".into()));
    if invalid.is_empty() {
        out.push(para(&format!("All {} rows are valid.", rows.len())));
        return out;
    }
    out.push(Html::tagged(
        "p",
        "warn",
        Html::text(&format!(
            "{} of {} rows are invalid and left out of every statistic and chart.",
            invalid.len(),
            rows.len()
        )),
    ));
    let mut by_reason: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in &invalid {
        let reason = if r.reason.is_empty() {
            "(no reason given)"
        } else {
            &r.reason
        };
        by_reason.entry(reason).or_default().push(r);
    }
    out.push(table(
        "",
        &[
            "reason",
            "rows",
            "cells (kernel/backend/workers/size/connections×depth/rep)",
        ],
        by_reason.iter().map(|(reason, rs)| {
            let mut shown: Vec<String> = rs
                .iter()
                .take(12)
                .map(|r| {
                    format!(
                        "{}/{}/{}w/n={}/{}×{}/#{}",
                        r.kernel,
                        r.backend,
                        r.workers,
                        r.size,
                        r.connections,
                        r.depth,
                        r.repetition
                    )
                })
                .collect();
            if rs.len() > 12 {
                shown.push(format!("… and {} more", rs.len() - 12));
            }
            TableRow::plain(vec![
                Html::text(reason),
                Html::text(&rs.len().to_string()),
                Html::text(&shown.join("; ")),
            ])
        }),
    ));
    out
}

/// The top-of-page summary: one line per kernel.
pub fn lede(verdicts: &[Verdict]) -> Html {
    let summaries = kernel_summaries(verdicts);
    if summaries.is_empty() {
        return para(
            "No grid point has valid measurements of both the process backend and a thread \
             backend, so there is no verdict.",
        );
    }
    summaries.iter().map(|k| para(&k.headline())).collect()
}

fn outcome_cell(outcome: Outcome, challenger: &str) -> Html {
    let (class, text) = match outcome {
        Outcome::ProcessWins => ("outcome-process", format!("{challenger} wins")),
        Outcome::ThreadWins => ("outcome-threads", "threads win".to_string()),
        Outcome::Tie => ("outcome-tie", "tie".to_string()),
    };
    Html::tagged("span", class, Html::text(&text))
}

fn interval(lo: f64, hi: f64, has_interval: bool) -> Html {
    if has_interval {
        Html::text(&format!("[{lo:.2}, {hi:.2}]"))
    } else {
        Html::text("(1 rep, no interval)")
    }
}

fn row_class(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::ProcessWins => "win-process",
        Outcome::ThreadWins => "win-threads",
        Outcome::Tie => "",
    }
}

/// Section 2: per-kernel sentences, the verdict table and the prefork table.
pub fn verdicts(verdicts: &[Verdict], prefork: &[(Point, String, Ratio)]) -> Html {
    let mut out = Html::default();
    if verdicts.is_empty() {
        out.push(Html::tagged(
            "p",
            "warn",
            Html::text(
                "No grid point has valid measurements of both process and rayon or tokio: \
                 run the sweep with --backends process,rayon,tokio.",
            ),
        ));
    }
    for k in kernel_summaries(verdicts) {
        out.push(Html::tagged("h3", "", Html::text(&k.kernel)));
        out.push(para(&k.counts()));
        k.highlights.iter().for_each(|h| out.push(para(h)));
    }
    if !verdicts.is_empty() {
        out.push(Html::raw(format!(
            "<details><summary>Every grid point ({} rows)</summary>",
            verdicts.len()
        )));
        out.push(table(
            "num",
            &[
                "kernel",
                "size",
                "connections",
                "depth",
                "workers",
                "best thread",
                "process ÷ best thread",
                "95% interval",
                "outcome",
                "reps (process/thread)",
            ],
            verdicts.iter().map(|v| TableRow {
                class: row_class(v.outcome),
                cells: vec![
                    Html::text(&v.kernel),
                    Html::text(&v.size.to_string()),
                    Html::text(&v.connections.to_string()),
                    Html::text(&v.depth.to_string()),
                    Html::text(&v.workers.to_string()),
                    Html::text(&v.best_thread),
                    num(v.ratio, 3),
                    interval(v.lo, v.hi, v.has_interval()),
                    outcome_cell(v.outcome, "process"),
                    Html::text(&format!("{}/{}", v.n_process, v.n_thread)),
                ],
            }),
        ));
        out.push(Html::raw("</details>".into()));
    }
    if !prefork.is_empty() {
        out.push(Html::raw("<h3>Prefork ÷ best thread backend</h3>".into()));
        out.push(para(
            "prefork runs W complete single-threaded servers sharing the port: process \
             parallelism without pipes. Where it beats the thread backends but process does \
             not, the pipe round trip is what costs, not being a process.",
        ));
        out.push(Html::raw(format!(
            "<details><summary>Every grid point with prefork ({} rows)</summary>",
            prefork.len()
        )));
        out.push(table(
            "num",
            &[
                "kernel",
                "size",
                "connections",
                "depth",
                "workers",
                "best thread",
                "prefork ÷ best thread",
                "95% interval",
                "outcome",
                "reps (prefork/thread)",
            ],
            prefork.iter().map(|(p, bt, r)| TableRow {
                class: row_class(r.outcome),
                cells: vec![
                    Html::text(&p.kernel),
                    Html::text(&p.size.to_string()),
                    Html::text(&p.connections.to_string()),
                    Html::text(&p.depth.to_string()),
                    Html::text(&p.workers.to_string()),
                    Html::text(bt),
                    num(r.ratio, 3),
                    interval(r.lo, r.hi, r.has_interval),
                    outcome_cell(r.outcome, "prefork"),
                    Html::text(&format!("{}/{}", r.n_num, r.n_den)),
                ],
            }),
        ));
        out.push(Html::raw("</details>".into()));
    }
    out
}

/// Section 4: the USL coefficients per kernel, size and backend.
pub fn usl(fits: &[UslRow]) -> Html {
    if fits.is_empty() {
        return para("No valid throughput data to fit.");
    }
    table(
        "num",
        &[
            "kernel",
            "size",
            "backend",
            "connections×depth",
            "worker counts",
            "λ (req/s)",
            "σ",
            "κ",
            "peak N*",
            "R²",
        ],
        fits.iter().map(|u| {
            let mut cells = vec![
                Html::text(&u.kernel),
                Html::text(&u.size.to_string()),
                Html::text(&u.backend),
                Html::text(&format!("{}×{}", u.load.0, u.load.1)),
                Html::text(&u.distinct.to_string()),
            ];
            match &u.fit {
                Some(f) => cells.extend([
                    num(f.lambda, 1),
                    num(f.sigma, 4),
                    num(f.kappa, 5),
                    f.peak().map_or_else(|| Html::text("none"), |n| num(n, 1)),
                    num(f.r2, 3),
                ]),
                None => {
                    cells.push(Html::tagged(
                        "span",
                        "note",
                        Html::text(&format!(
                            "fit needs ≥{MIN_DISTINCT_N} worker counts (have {})",
                            u.distinct
                        )),
                    ));
                    cells.extend((0..4).map(|_| num(f64::NAN, 0)));
                }
            }
            TableRow::plain(cells)
        }),
    )
}

/// Section 5: CPU, memory, faults, context switches and TLB shootdowns per request.
pub fn resources(rows: &[Row]) -> Html {
    #[derive(Default)]
    struct Sums {
        cells: usize,
        requests: u64,
        server_cpu: f64,
        client_cpu: f64,
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

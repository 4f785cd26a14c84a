//! The report's "what was measured, and on what" section: the machine and build, the
//! calibration of sizes to service times, the grid, and the cells that could not be trusted.
//! env.json's nested values become tables of their own, never raw JSON.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::data::{fmt_us, order_backends};
use super::html::{para, table, Html, TableRow};
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

/// A scalar as a table shows it; None for objects and arrays.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some("unknown".to_string()),
        Value::Bool(_) | Value::Number(_) => Some(v.to_string()),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// Flattens a value into (key path, text) rows: objects by `a.b`, lists of scalars joined by
/// commas, other lists by index.
fn flatten(key: String, v: &Value, out: &mut Vec<(String, String)>) {
    if let Some(s) = scalar(v) {
        out.push((key, s));
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                flatten(format!("{key}.{k}"), v, out);
            }
        }
        Value::Array(items) => match items.iter().map(scalar).collect::<Option<Vec<_>>>() {
            Some(all) => out.push((key, all.join(", "))),
            None => {
                for (i, v) in items.iter().enumerate() {
                    flatten(format!("{key}[{i}]"), v, out);
                }
            }
        },
        _ => {}
    }
}

/// env.json's keys that get tables of their own.
const OWN_TABLES: [&str; 2] = ["grid", "calibration"];

fn machine(env: Option<&Value>) -> Html {
    let mut out = Html::raw("<h3>Machine and build</h3>".into());
    out.push(coverage(env));
    match env {
        Some(Value::Object(map)) => {
            let mut entries = Vec::new();
            for (k, v) in map
                .iter()
                .filter(|(k, _)| !OWN_TABLES.contains(&k.as_str()))
            {
                flatten(k.clone(), v, &mut entries);
            }
            out.push(table(
                "",
                &["key", "value"],
                entries
                    .iter()
                    .map(|(k, v)| TableRow::plain(vec![Html::text(k), Html::text(v)])),
            ));
        }
        Some(_) => out.push(Html::tagged(
            "p",
            "warn",
            Html::text("env.json is not a JSON object, so the machine and build are unknown."),
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
    out
}

/// A loud warning when the rows are some shards of a sweep, not all (a merged report whose
/// inputs lack a shard); nothing otherwise.
pub fn coverage(env: Option<&Value>) -> Html {
    match env.and_then(super::inputs::coverage_note) {
        Some(note) => Html::tagged("p", "warn", Html::text(&note)),
        None => Html::default(),
    }
}

/// env.json's `calibration`: for each kernel and size asked for, the n chosen and the
/// single-job time measured at it.
fn calibration(env: Option<&Value>) -> Html {
    let Some(Value::Object(cal)) = env.and_then(|e| e.get("calibration")) else {
        return Html::default();
    };
    let number = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    let rows = cal.iter().map(|(key, v)| {
        let (kernel, asked) = key.split_once('|').unwrap_or((key.as_str(), ""));
        let target = number(v, "target_us");
        let mix = v
            .get("mix_sizes")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
            .map_or_else(String::new, |a| joined(a.iter().filter_map(scalar)));
        TableRow::plain(vec![
            Html::text(kernel),
            Html::text(&target.map_or_else(|| format!("n={asked}"), fmt_us)),
            Html::text(&v.get("n").and_then(scalar).unwrap_or_default()),
            Html::text(&number(v, "single_us").map_or_else(|| "–".into(), fmt_us)),
            Html::text(&mix),
        ])
    });
    let mut out = Html::raw("<h3>Calibration</h3>".into());
    out.push(para(
        "Each size asked for as a service time was turned into a work size n per kernel at the \
         start of the sweep, on one thread of this machine; the single-job time is the median \
         of repeated runs at that n.",
    ));
    out.push(table(
        "num",
        &[
            "kernel",
            "size asked",
            "n",
            "single-job time measured",
            "n per kernel of a mix",
        ],
        rows,
    ));
    out
}

/// The grid as measured (from the rows) and as asked for (env.json's `grid`).
fn grid(rows: &[Row], env: Option<&Value>) -> Html {
    let mut cells: BTreeMap<_, usize> = BTreeMap::new();
    for r in rows {
        let mut k = r.cell_key();
        k.repetition = 0;
        *cells.entry(k).or_default() += 1;
    }
    let open_loop = rows.iter().filter(|r| r.rate > 0.0).count();
    let targets: BTreeSet<u64> = rows
        .iter()
        .filter_map(|r| r.target_us.map(|t| (t * 1000.0).round() as u64))
        .collect();
    let given: BTreeSet<u64> = rows
        .iter()
        .filter(|r| r.target_us.is_none())
        .map(|r| r.size)
        .collect();
    let sizes = targets
        .iter()
        .map(|&t| fmt_us(t as f64 / 1000.0))
        .chain(given.iter().map(|n| format!("n={n}")));
    let mut grid = vec![
        ("kernels", distinct(rows.iter().map(|r| r.kernel.clone()))),
        (
            "backends",
            joined(order_backends(rows.iter().map(|r| r.backend.clone()))),
        ),
        ("workers", distinct(rows.iter().map(|r| r.workers))),
        ("connections", distinct(rows.iter().map(|r| r.connections))),
        ("depth", distinct(rows.iter().map(|r| r.depth))),
        ("service times", joined(sizes)),
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
    if let Some(g) = env.and_then(|e| e.get("grid")) {
        let secs = |k: &str| g.get(k).and_then(Value::as_f64).map(|s| fmt_us(s * 1e6));
        let extra = [
            ("repetitions asked", g.get("repeat").and_then(scalar)),
            ("measured time per cell", secs("duration")),
            ("warmup per cell", secs("warmup")),
            ("seed", g.get("seed").and_then(scalar)),
        ];
        grid.extend(extra.into_iter().filter_map(|(k, v)| Some((k, v?))));
    }
    let mut out = Html::raw("<h3>Grid</h3>".into());
    out.push(table(
        "",
        &["dimension", "values"],
        grid.iter()
            .map(|(k, v)| TableRow::plain(vec![Html::text(k), Html::text(v)])),
    ));
    out
}

/// The invalid rows, grouped by reason.
fn validity(rows: &[Row]) -> Html {
    let invalid: Vec<&Row> = rows.iter().filter(|r| !r.valid).collect();
    let mut out = Html::raw("<h3>Validity</h3>".into());
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

/// The whole section.
pub fn measured(rows: &[Row], env: Option<&Value>) -> Html {
    [
        machine(env),
        calibration(env),
        super::service::section(rows),
        grid(rows, env),
        validity(rows),
    ]
    .into_iter()
    .collect()
}

//! Several inputs to one report: results.csv files or run folders (results.csv + env.json).
//!
//! Shards of one sweep (the same grid and seed in env.json) merge into one dataset, wherever
//! they ran: a grid point and all its backends are in one shard, so no comparison crosses
//! machines, and where the shards' env.json differ the page shows each shard's value. Missing
//! shards are said on stderr and on the page. Whole runs from different machines (hostname, CPU model, core
//! count) stay apart: the page shows each machine's sections one after the other and
//! verdicts.csv gains a last column, `machine`, so no ratio is ever taken across machines.
//! Mixed grids or seeds on one machine, a shard given twice, a grid point or cell in two inputs
//! and inputs without env.json are refused, naming the files.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context};
use serde_json::Value;

use super::{compare, data, html, Comparison, ReportOptions};
use crate::record::{self, Row};
use crate::sweep::kernels::{read as read_kernels, KernelRow, FILE as KERNELS_FILE};

/// One input: its rows, its env.json and its kernels.csv rows.
pub struct Input {
    /// The results.csv read.
    pub csv: PathBuf,
    pub env: Value,
    pub rows: Vec<Row>,
    /// kernels.csv beside it (mixes' per-kernel rows); `None` when there is none.
    pub kernels: Option<Vec<KernelRow>>,
}

impl Input {
    /// Reads a run folder (its results.csv and env.json) or a results.csv (and the env.json
    /// beside it, which a merge needs to know the grid and machine).
    pub fn load(path: &Path) -> anyhow::Result<Input> {
        let csv = if path.is_dir() {
            path.join("results.csv")
        } else {
            path.to_path_buf()
        };
        let env_path = csv.parent().unwrap_or(Path::new(".")).join("env.json");
        let text = std::fs::read_to_string(&env_path).with_context(|| {
            format!(
                "{} has no readable env.json beside it: several inputs are merged by their grid, \
                 seed and machine",
                csv.display()
            )
        })?;
        let env = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", env_path.display()))?;
        let rows = record::read_csv(&csv)?;
        let kernels = read_kernels(&csv.with_file_name(KERNELS_FILE))?;
        Ok(Input {
            csv,
            env,
            rows,
            kernels,
        })
    }

    /// The machine that ran it: hostname, CPU model and core count.
    pub fn machine(&self) -> String {
        let host = self.env["hostname"].as_str().unwrap_or("unknown host");
        let cpu = self.env["cpu_model"].as_str().unwrap_or("unknown CPU");
        let cores = self.env["cores"].as_u64().unwrap_or(0);
        format!("{host} ({cpu}, {cores} cores)")
    }

    fn sweep(&self) -> (&Value, &Value) {
        (&self.env["grid"], &self.env["seed"])
    }
}

/// Rows from one machine, or from the shards of one sweep, merged.
pub struct Group {
    /// `None` when the whole report is one group.
    pub machine: Option<String>,
    pub env: Value,
    pub rows: Vec<Row>,
    /// The inputs' kernels.csv rows together; `None` when none had one.
    pub kernels: Option<Vec<KernelRow>>,
}

/// Groups inputs: all shards of one sweep → one group; otherwise one group per machine, each
/// holding one grid and seed.
pub fn group(inputs: Vec<Input>) -> anyhow::Result<Vec<Group>> {
    ensure!(!inputs.is_empty(), "report needs at least one --input");
    let shards_of_one = inputs.iter().all(|i| {
        !i.env["shard"].is_null()
            && i.sweep() == inputs[0].sweep()
            && i.env["shard"]["count"] == inputs[0].env["shard"]["count"]
    });
    let mut by_machine: Vec<(String, Vec<Input>)> = Vec::new();
    for input in inputs {
        let key = if shards_of_one {
            String::new()
        } else {
            input.machine()
        };
        match by_machine.iter_mut().find(|(m, _)| *m == key) {
            Some((_, v)) => v.push(input),
            None => by_machine.push((key, vec![input])),
        }
    }
    let several = by_machine.len() > 1;
    by_machine
        .into_iter()
        .map(|(machine, inputs)| {
            let (env, rows, kernels) = merge(inputs)?;
            Ok(Group {
                machine: several.then_some(machine),
                env,
                rows,
                kernels,
            })
        })
        .collect()
}

/// The shard an input says it is, `(index, count)`; `None` for an unsharded run.
fn shard_of(input: &Input) -> Option<(u64, u64)> {
    let s = &input.env["shard"];
    Some((s["index"].as_u64()?, s["count"].as_u64()?))
}

/// A grid point as the sweep asked for it (kernel, workers, connections, depth, and the size
/// asked: its target in ns when it has one, else its n). Each shard calibrates its own n for a
/// target, so the same point run by two shards differs in n but not in this.
type AskedPoint = (String, u32, u32, u32, Option<u64>, u64);

fn asked_point(row: &Row) -> AskedPoint {
    let target = row.target_us.map(|t| (t * 1000.0).round() as u64);
    let n = if target.is_some() { 0 } else { row.size };
    (
        row.kernel.clone(),
        row.workers,
        row.connections,
        row.depth,
        target,
        n,
    )
}

fn joined(values: &[u64]) -> String {
    values
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses inputs that overlap: two claiming one shard, shards of different splits, or one
/// grid point (whatever its calibrated n) given by two inputs.
fn refuse_overlaps(inputs: &[Input]) -> anyhow::Result<()> {
    for (i, a) in inputs.iter().enumerate() {
        for b in &inputs[i + 1..] {
            let (Some(sa), Some(sb)) = (shard_of(a), shard_of(b)) else {
                continue;
            };
            if sa.1 != sb.1 {
                bail!(
                    "{} is shard {}/{} and {} is shard {}/{}: shards of different splits of the \
                     grid overlap and do not merge",
                    a.csv.display(),
                    sa.0,
                    sa.1,
                    b.csv.display(),
                    sb.0,
                    sb.1
                );
            }
            if sa.0 == sb.0 {
                bail!(
                    "shard {}/{} is in both {} and {}: the same shard run twice (or given \
                     twice); give each shard once",
                    sa.0,
                    sa.1,
                    a.csv.display(),
                    b.csv.display()
                );
            }
        }
    }
    let mut seen: HashMap<AskedPoint, (usize, u64)> = HashMap::new();
    for (i, input) in inputs.iter().enumerate() {
        for row in &input.rows {
            let point = asked_point(row);
            match seen.get(&point) {
                Some(&(j, n)) if j != i => {
                    let size = match point.4 {
                        Some(ns) => super::data::fmt_us(ns as f64 / 1000.0),
                        None => format!("n={}", point.5),
                    };
                    bail!(
                        "the grid point {} w={} c={} d={} size {size} is in both {} (n={n}) and \
                         {} (n={}): overlapping shards or the same run given twice",
                        point.0,
                        point.1,
                        point.2,
                        point.3,
                        inputs[j].csv.display(),
                        input.csv.display(),
                        row.size
                    );
                }
                Some(_) => {}
                None => {
                    seen.insert(point, (i, row.size));
                }
            }
        }
    }
    Ok(())
}

/// env.json's keys that describe the sweep rather than where one input ran: kept from the first
/// input when shards merge.
const SWEEP_KEYS: [&str; 5] = ["grid", "seed", "shard", "calibration", "equivalence"];

/// One dataset from inputs of one grid and seed; a cell in two inputs is refused.
fn merge(inputs: Vec<Input>) -> anyhow::Result<(Value, Vec<Row>, Option<Vec<KernelRow>>)> {
    let first = &inputs[0];
    for other in &inputs[1..] {
        if other.sweep() != first.sweep() {
            bail!(
                "{} and {} are different sweeps (their env.json differ in grid or seed) on the \
                 same machine; only shards of one sweep merge",
                first.csv.display(),
                other.csv.display()
            );
        }
    }
    refuse_overlaps(&inputs)?;
    let mut seen: HashMap<record::CellKey, &Path> = HashMap::new();
    for input in &inputs {
        for row in &input.rows {
            if let Some(earlier) = seen.insert(row.cell_key(), &input.csv) {
                bail!(
                    "the cell {} {} w={} c={} d={} n={} rep {} is in both {} and {}: overlapping \
                     shards or the same run given twice",
                    row.kernel,
                    row.backend,
                    row.workers,
                    row.connections,
                    row.depth,
                    row.size,
                    row.repetition,
                    earlier.display(),
                    input.csv.display()
                );
            }
        }
    }
    let mut env = first.env.clone();
    if inputs.len() > 1 {
        env["shard"] = coverage(&inputs);
        describe_each(&inputs, &mut env);
        calibration_each(&inputs, &mut env);
    }
    // Shards of one sweep each wrote their own kernels.csv; the merged dataset reads them all.
    let mut kernels: Option<Vec<KernelRow>> = None;
    let mut rows = Vec::new();
    for input in inputs {
        if let Some(k) = input.kernels {
            kernels.get_or_insert_with(Vec::new).extend(k);
        }
        rows.extend(input.rows);
    }
    Ok((env, rows, kernels))
}

/// The merged dataset's `shard`: null when it is the whole sweep (every shard, or unsharded
/// inputs), else `{"count": N, "merged": [...], "missing": [...]}` so that the page and stderr
/// can say that part of the sweep is absent.
fn coverage(inputs: &[Input]) -> Value {
    let shards: Option<Vec<(u64, u64)>> = inputs.iter().map(shard_of).collect();
    let Some(shards) = shards else {
        return Value::Null;
    };
    let count = shards[0].1;
    let mut merged: Vec<u64> = shards.iter().map(|s| s.0).collect();
    merged.sort_unstable();
    let missing: Vec<u64> = (1..=count).filter(|k| !merged.contains(k)).collect();
    if missing.is_empty() {
        return Value::Null;
    }
    serde_json::json!({"count": count, "merged": merged, "missing": missing})
}

/// How the page names one of several merged inputs: its shard, else its CSV.
fn input_name(input: &Input) -> String {
    match shard_of(input) {
        Some((k, _)) => format!("shard {k}"),
        None => input.csv.display().to_string(),
    }
}

/// Where the merged inputs ran differently (another machine, another start time, another
/// build), env.json's value names each input's: `shard 1: vm; shard 2: epyc-1`, so the page
/// never credits the first input's machine with the others' rows.
fn describe_each(inputs: &[Input], env: &mut Value) {
    let Some(map) = env.as_object_mut() else {
        return;
    };
    for (key, value) in map.iter_mut() {
        if SWEEP_KEYS.contains(&key.as_str()) {
            continue;
        }
        if inputs
            .iter()
            .all(|i| i.env[key.as_str()] == inputs[0].env[key.as_str()])
        {
            continue;
        }
        let each: Vec<String> = inputs
            .iter()
            .map(|i| {
                let v = &i.env[key.as_str()];
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                format!("{}: {text}", input_name(i))
            })
            .collect();
        *value = Value::String(each.join("; "));
    }
}

/// Where the merged inputs calibrated differently (each shard sizes its targets on its own
/// machine), the calibration table lists every input's, its kernel named with the shard:
/// `fib (shard 2)`, so no shard's n is shown as the whole sweep's.
fn calibration_each(inputs: &[Input], env: &mut Value) {
    if inputs
        .iter()
        .all(|i| i.env["calibration"] == inputs[0].env["calibration"])
    {
        return;
    }
    let mut each = serde_json::Map::new();
    for input in inputs {
        let name = input_name(input);
        for (key, v) in input.env["calibration"].as_object().into_iter().flatten() {
            let key = match key.split_once('|') {
                Some((kernel, asked)) => format!("{kernel} ({name})|{asked}"),
                None => format!("{key} ({name})"),
            };
            each.insert(key, v.clone());
        }
    }
    env["calibration"] = Value::Object(each);
}

/// What a merged dataset's env says about missing shards, as one sentence; `None` when it is
/// the whole sweep.
pub(crate) fn coverage_note(env: &Value) -> Option<String> {
    let shard = &env["shard"];
    let missing: Vec<u64> = shard["missing"]
        .as_array()?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    if missing.is_empty() {
        return None;
    }
    let merged: Vec<u64> = shard["merged"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let count = shard["count"].as_u64().unwrap_or(0);
    Some(format!(
        "This report covers shards {} of {count} only: shard{} {} {} missing, so {} grid \
         points are absent from every verdict, table and chart. It is not the whole sweep.",
        joined(&merged),
        if missing.len() == 1 { "" } else { "s" },
        joined(&missing),
        if missing.len() == 1 { "is" } else { "are" },
        if missing.len() == 1 { "its" } else { "their" },
    ))
}

/// `report --input A B …`: the merged (or per-machine) page at `out` and verdicts.csv beside
/// it, written only after everything is computed.
pub fn write_report_inputs(
    paths: &[PathBuf],
    out: &Path,
    options: &ReportOptions,
) -> anyhow::Result<()> {
    let inputs = paths
        .iter()
        .map(|p| Input::load(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let groups = group(inputs)?;
    for g in &groups {
        if let Some(note) = coverage_note(&g.env) {
            match &g.machine {
                Some(m) => eprintln!("report: warning: {m}: {note}"),
                None => eprintln!("report: warning: {note}"),
            }
        }
    }
    // Each machine is judged with its own sweep's margin (env.json's `equivalence`) unless
    // --equivalence overrides them all.
    let margins: Vec<f64> = groups
        .iter()
        .map(|g| options.margin(Some(&g.env)))
        .collect();
    // Each machine's mixes are judged on that machine's own kernels.csv rows.
    let datasets: Vec<data::Dataset<'_>> = groups
        .iter()
        .map(|g| data::Dataset::judging(&g.rows, g.kernels.as_deref()))
        .collect();
    let comparisons: Vec<Vec<Comparison>> = datasets
        .iter()
        .zip(&margins)
        .map(|(d, &m)| compare::comparisons(d, m))
        .collect();
    if let [only] = &groups[..] {
        let margin = margins[0];
        let extras = super::Extras::new(&datasets[0], only.kernels.as_deref(), margin);
        let page = super::page(
            &datasets[0],
            &comparisons[0],
            Some(&only.env),
            margin,
            &extras,
        )?;
        return super::write_all(out, &page, &comparisons[0], &extras);
    }
    let page = per_machine_page(&groups, &datasets, &comparisons, &margins)?;
    write_verdicts_per_machine(&super::verdicts_path(out), &groups, &comparisons)?;
    super::write_atomic(out, page.as_bytes())
}

/// One page, each machine's sections under its own heading, in the order the inputs named them.
fn per_machine_page(
    groups: &[Group],
    datasets: &[data::Dataset<'_>],
    comparisons: &[Vec<Comparison>],
    margins: &[f64],
) -> anyhow::Result<String> {
    let mut slots: BTreeMap<&str, html::Html> = BTreeMap::new();
    for ((g, d), c) in groups.iter().zip(datasets).zip(comparisons) {
        let label = g.machine.as_deref().unwrap_or("one machine");
        for (name, section) in super::dataset_slots(d, c, Some(&g.env))? {
            let slot = slots
                .entry(name)
                .or_insert_with(|| html::Html::raw(String::new()));
            slot.push(html::Html::raw(format!(
                "<h2 class=\"machine\">Machine: {}</h2>",
                html::escape(label)
            )));
            slot.push(section);
        }
    }
    let rows: usize = groups.iter().map(|g| g.rows.len()).sum();
    let methods = if margins.iter().all(|m| *m == margins[0]) {
        let all: Vec<Comparison> = comparisons.iter().flatten().cloned().collect();
        super::methods(&all, margins[0])
    } else {
        // Machines judged with different margins: each one's methods, under its heading.
        let mut out = html::Html::default();
        for ((g, c), &m) in groups.iter().zip(comparisons).zip(margins) {
            let label = g.machine.as_deref().unwrap_or("one machine");
            out.push(html::Html::raw(format!(
                "<h3 class=\"machine\">Machine: {}</h3>",
                html::escape(label)
            )));
            out.push(super::methods(c, m));
        }
        out
    };
    slots.insert("version", html::Html::text(env!("CARGO_PKG_VERSION")));
    slots.insert("rows", html::Html::text(&rows.to_string()));
    slots.insert("methods", methods);
    slots.insert("noisy", super::noisy::section(None));
    slots.insert("model", super::model::section(&[]));
    html::fill(html::TEMPLATE, &slots)
}

/// verdicts.csv with SPEC §7's columns, in order, then `machine`: the machine the comparison
/// was measured on. Written only for a several-machine report; one machine's has no such column.
fn write_verdicts_per_machine(
    path: &Path,
    groups: &[Group],
    comparisons: &[Vec<Comparison>],
) -> anyhow::Result<()> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let mut header: Vec<&str> = compare::COLUMNS.to_vec();
    header.push("machine");
    w.write_record(&header)?;
    for (g, cs) in groups.iter().zip(comparisons) {
        let machine = g.machine.as_deref().unwrap_or("");
        for c in cs {
            w.serialize((c, machine))?;
        }
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    super::write_atomic(path, &bytes)
}

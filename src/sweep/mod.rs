//! The sweep: the grid of backends × workers × connections × depths × sizes × kernels, each
//! cell on a fresh server process, repeated, written to `results.csv` as it goes, then
//! `env.json` and `report.html` beside it.
//!
//! Repetitions are the outer loop and the cell order within each is shuffled with a recorded
//! seed, so slow drift of the machine (thermal, background load) spreads over every
//! configuration instead of biasing whichever ran last.

pub mod cell;
pub mod folder;
pub mod grid;
pub mod kernels;
pub mod shard;

use crate::kernel;
use crate::machine::CpuSplit;
use crate::record::{read_csv, CellKey, Row};
use anyhow::{bail, ensure, Context};
use grid::{Grid, SizeSpec, Workload};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// How a sweep runs, apart from its grid.
#[derive(Debug, Clone, Default)]
pub struct SweepOptions {
    /// Folder for results.csv, env.json and report.html.
    pub out: PathBuf,
    /// Keep the cells already in `out`'s results.csv and run only the missing ones.
    pub resume: bool,
    /// Replace a different sweep already in `out`.
    pub force: bool,
    /// Stop after this many cells; the CSV keeps what ran.
    pub max_cells: Option<usize>,
    /// Threads for the load driver. `None`: one per driver CPU of the CPU split (at most 4),
    /// else 1 up to 8 cores, then one per 8 cores (at most 4), so a many-core server is not
    /// measured through a saturated driver.
    pub driver_threads: Option<usize>,
    /// Equivalence margin of the verdicts as a fraction; `None`: ±5 %, or on `--resume` the
    /// run's recorded margin. Recorded in env.json, so a later `report` gives the same
    /// verdicts; a resume that gives a different one is refused.
    pub equivalence: Option<f64>,
    /// Run only this slice of the grid points (recorded in env.json); `None`: all of them.
    pub shard: Option<shard::Shard>,
    /// The driver's and the server's CPUs as the flags gave them; `None`: the sweep decides
    /// ([`CpuSplit::auto`]).
    pub cpus: Option<CpuSplit>,
    /// `--spin-us` for the `shm` servers (recorded in env.json); `None`: the server's default.
    pub spin_us: Option<u64>,
}

impl SweepOptions {
    fn margin(&self) -> f64 {
        self.equivalence
            .unwrap_or(crate::report::DEFAULT_EQUIVALENCE)
    }
}

/// Runs the grid into `options.out` on a runtime of its own, then writes the report.
///
/// The CPU split is decided here, once for the whole sweep: the driver's runtime is pinned to
/// its CPUs and every cell's server tree to the rest, so they never compete for a core.
pub fn run(grid: &Grid, options: &SweepOptions) -> anyhow::Result<SweepResult> {
    let cores = crate::machine::cores();
    let split = options
        .cpus
        .clone()
        .or_else(|| CpuSplit::auto(&crate::machine::allowed_cpus()));
    // With a split, one driver thread per driver CPU: fewer would leave a driver CPU idle
    // while the driver saturates, more would time-share them.
    let threads = options.driver_threads.unwrap_or_else(|| match &split {
        Some(s) => s.driver.len().clamp(1, 4),
        None => cores.div_ceil(8).clamp(1, 4),
    });
    let driver = split.as_ref().map(|s| s.driver.as_slice());
    let runtime = crate::runtime::build_on(crate::runtime::Threads::count(threads), driver)
        .context("cannot start the load driver on its CPUs")?;
    // The cores a cell's server may use: its ideal throughput (`efficiency`) and its default
    // spin count them.
    let server_cores = split.as_ref().map_or(cores, |s| s.server.len());
    runtime.block_on(run_cells(grid, options, server_cores, split.as_ref()))
}

/// What a finished sweep wrote: rows in results.csv and the headline lines.
pub struct SweepResult {
    pub rows: usize,
    pub invalid: usize,
    pub headline: Vec<String>,
}

async fn run_cells(
    grid: &Grid,
    options: &SweepOptions,
    server_cores: usize,
    split: Option<&CpuSplit>,
) -> anyhow::Result<SweepResult> {
    let out = &options.out;
    let csv_path = out.join("results.csv");
    let env_path = out.join("env.json");
    if let Some(s) = options.shard {
        s.check_points(grid.cells_per_rep() / grid.backends.len())?;
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let Prepared {
        done,
        calibration,
        margin,
    } = prepare_folder(options, grid, split, server_cores, &csv_path, &env_path)?;

    let exe = std::env::current_exe().context("cannot find this program to start servers")?;
    let plan = plan(grid, &calibration, options.shard);
    let todo: Vec<&cell::Cell> = plan
        .iter()
        .filter(|c| !done.contains(&key_of(c)))
        .take(options.max_cells.unwrap_or(usize::MAX))
        .collect();

    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&csv_path)
        .with_context(|| format!("cannot open {}", csv_path.display()))?;
    // The header goes in only where none is yet: a file left empty by a sweep interrupted
    // before its first row gets one, a resumed file (header only, or with rows) does not.
    let empty = is_empty(&csv_path)?;
    let mut writer = csv::WriterBuilder::new()
        .has_headers(empty)
        .from_writer(file);

    // User kernels' first results, kept across every cell (and, through the folder, across
    // `--resume`): a backend that returns something else than another is a mismatch.
    let seen_path = out.join(crate::load::consistency::FILE);
    let bench = cell::Bench {
        exe: &exe,
        cores: server_cores,
        server_cpus: split.map(|s| s.server.as_slice()),
        spin_us: options.spin_us,
        seen: std::sync::Arc::new(crate::load::Consistency::read(&seen_path)?),
    };
    let bar = progress_bar(todo.len() as u64, grid);
    for c in &todo {
        bar.set_message(format!(
            "{} {} w={} c={} n={} rep {}",
            c.workload.name,
            c.backend.name(),
            c.workers,
            c.connections,
            c.size,
            c.repetition
        ));
        let known = bench.seen.len();
        let (row, per_kernel) = cell::run(&bench, c).await;
        // Entries are only ever added: a record that did not grow is the file as it stands.
        if bench.seen.len() != known {
            bench.seen.write(&seen_path)?;
        }
        if !row.valid {
            bar.println(format!(
                "invalid: {} {} w={} n={} rep {}: {}",
                row.kernel, row.backend, row.workers, row.size, row.repetition, row.reason
            ));
        }
        writer.serialize(&row)?;
        // Flushed per cell: an interrupted sweep keeps every finished cell.
        writer.flush()?;
        kernels::append(&out.join(kernels::FILE), &per_kernel)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    drop(writer);

    let rows = read_csv(&csv_path)?;
    let report = crate::report::ReportOptions {
        equivalence: Some(margin),
    };
    crate::report::write_report_with(
        &csv_path,
        Some(&env_path),
        &out.join("report.html"),
        &report,
    )?;
    Ok(SweepResult {
        rows: rows.len(),
        invalid: rows.iter().filter(|r| !r.valid).count(),
        headline: headline(
            &rows,
            kernels::read(&out.join(kernels::FILE))?.as_deref(),
            margin,
        ),
    })
}

fn progress_bar(len: u64, grid: &Grid) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} cells, ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.println(format!(
        "sweep: {} cells × {} repetitions, {:?} each (+{:?} warmup)",
        grid.cells_per_rep(),
        grid.repeat,
        grid.duration,
        grid.warmup
    ));
    bar
}

/// What the output folder holds for the sweep about to run.
struct Prepared {
    /// The cells already done (for `--resume`).
    done: HashSet<CellKey>,
    calibration: Calibration,
    /// The equivalence margin, as env.json records it.
    margin: f64,
}

/// A margin as a percentage, as `--equivalence` takes it.
fn percent(margin: f64) -> String {
    format!("{}%", (margin * 1e5).round() / 1e3)
}

/// Checks the output folder and returns the cells already done (for `--resume`).
/// A folder holding a different sweep is refused unless `--force`; nothing is overwritten
/// before that check.
fn prepare_folder(
    options: &SweepOptions,
    grid: &Grid,
    split: Option<&CpuSplit>,
    server_cores: usize,
    csv_path: &Path,
    env_path: &Path,
) -> anyhow::Result<Prepared> {
    let existing_env: Option<serde_json::Value> = match std::fs::read_to_string(env_path) {
        Ok(text) => Some(
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", env_path.display()))?,
        ),
        Err(_) => None,
    };
    let has_csv = csv_path.exists();
    let mut done = HashSet::new();
    let mut margin = options.margin();
    if options.force {
        let kernels_path = csv_path.with_file_name(kernels::FILE);
        let seen_path = csv_path.with_file_name(crate::load::consistency::FILE);
        for p in [csv_path, env_path, &kernels_path, &seen_path] {
            if p.exists() {
                std::fs::remove_file(p)
                    .with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
    } else if has_csv || existing_env.is_some() {
        let same_grid = existing_env
            .as_ref()
            .and_then(|e| serde_json::from_value::<Grid>(e["grid"].clone()).ok())
            .is_some_and(|g| &g == grid);
        if !options.resume {
            bail!(
                "{} already holds a sweep; use --resume to finish it or --force to replace it",
                csv_path.parent().unwrap_or(csv_path).display()
            );
        }
        ensure!(
            same_grid,
            "{} holds a sweep of a different grid; --resume needs the same flags (or use --force)",
            csv_path.parent().unwrap_or(csv_path).display()
        );
        // A run folder holds one shard: another shard's cells go to a folder of their own.
        let recorded_shard: Option<shard::Shard> = existing_env
            .as_ref()
            .and_then(|e| serde_json::from_value(e["shard"].clone()).ok().flatten());
        let slice = |s: Option<shard::Shard>| {
            s.map_or_else(|| "the whole grid".to_string(), |s| format!("shard {s}"))
        };
        ensure!(
            recorded_shard == options.shard,
            "{} holds {} of this grid, not {}; each shard needs a run folder of its own \
             (or use --force)",
            csv_path.parent().unwrap_or(csv_path).display(),
            slice(recorded_shard),
            slice(options.shard)
        );
        // The verdicts of one run are judged at one margin: a resume keeps the recorded one.
        if let Some(recorded) = existing_env
            .as_ref()
            .and_then(|e| e["equivalence"].as_f64())
        {
            if let Some(given) = options.equivalence {
                ensure!(
                    (given - recorded).abs() < 1e-9,
                    "{} was swept with --equivalence {}, not {}: --resume keeps the run's \
                     margin (leave --equivalence out, or re-render with `report --equivalence`)",
                    csv_path.parent().unwrap_or(csv_path).display(),
                    percent(recorded),
                    percent(given)
                );
            }
            margin = recorded;
        }
        // An empty results.csv is a sweep interrupted before its first row: nothing done.
        if has_csv && !is_empty(csv_path)? {
            crate::record::check_appendable(csv_path)?;
            done = read_csv(csv_path)?.iter().map(Row::cell_key).collect();
        }
    }
    // A resumed sweep reuses the first run's calibration, so its cells have the same sizes.
    let kept: Option<Calibration> = existing_env
        .as_ref()
        .filter(|_| !options.force)
        .and_then(|e| serde_json::from_value(e["calibration"].clone()).ok());
    if let Some(calibration) = kept {
        return Ok(Prepared {
            done,
            calibration,
            margin,
        });
    }
    let calibration = calibrate_on_server_cpus(grid, split)?;
    check_distinct_sizes(grid, &calibration)?;
    {
        let mut env = serde_json::to_value(crate::machine::Environment::here())?;
        env["started_at"] = serde_json::json!(humantime::format_rfc3339_seconds(
            std::time::SystemTime::now()
        )
        .to_string());
        env["grid"] = serde_json::to_value(grid)?;
        env["seed"] = serde_json::json!(grid.seed);
        env["command"] = serde_json::json!(std::env::args().collect::<Vec<_>>().join(" "));
        env["calibration"] = serde_json::to_value(&calibration)?;
        env["equivalence"] = serde_json::json!(margin);
        env["shard"] = serde_json::to_value(options.shard)?;
        env["cpu_split"] = serde_json::to_value(split)?;
        // The value given, or the one each worker count gets by default (see `cell::Bench`).
        env["spin_us"] = match options.spin_us {
            Some(us) => serde_json::json!(us),
            None => {
                let by_workers: serde_json::Map<String, serde_json::Value> = grid
                    .workers
                    .iter()
                    .map(|&w| {
                        let us = cell::shm_spin_us(None, server_cores, w);
                        (w.to_string(), serde_json::json!(us))
                    })
                    .collect();
                serde_json::json!({ "auto_by_workers": by_workers })
            }
        };
        let tmp = env_path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&env)?)?;
        std::fs::rename(&tmp, env_path)?;
    }
    Ok(Prepared {
        done,
        calibration,
        margin,
    })
}

/// Whether the file at `path` holds no bytes.
fn is_empty(path: &Path) -> anyhow::Result<bool> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(meta.len() == 0)
}

/// A calibrated size: the `n` that gives the target service time, and the measured
/// single-thread time of one job at that `n`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Calibrated {
    pub n: u64,
    pub target_us: Option<f64>,
    pub single_us: f64,
    /// For a mix sized by service time: each kernel's own `n` for the target, in mix order.
    #[serde(default)]
    pub mix_sizes: Vec<u64>,
}

/// Keyed by `workload|size label`.
pub type Calibration = BTreeMap<String, Calibrated>;

fn calibration_key(w: &Workload, s: &SizeSpec) -> String {
    format!("{}|{}", w.name, s.label())
}

/// Refuses two sizes of one workload that calibrated to the same `n`: a cell is keyed by `n`,
/// not by the size asked for (results.csv, `--resume`, the report), so their cells would be
/// taken for one another and one size would vanish from the report.
fn check_distinct_sizes(grid: &Grid, calibration: &Calibration) -> anyhow::Result<()> {
    for w in &grid.kernels {
        let mut by_n: BTreeMap<u64, &SizeSpec> = BTreeMap::new();
        for s in &grid.sizes {
            let Some(c) = calibration.get(&calibration_key(w, s)) else {
                continue;
            };
            if let Some(first) = by_n.get(&c.n) {
                bail!(
                    "{}: {} and {} both calibrate to n = {}; give sizes further apart",
                    w.name,
                    first.label(),
                    s.label(),
                    c.n
                );
            }
            by_n.insert(c.n, s);
        }
    }
    Ok(())
}

/// [`calibrate`] on a thread of its own kept to the server's CPUs, where the cells will run
/// (the caller is the driver's runtime, pinned to the driver's CPUs).
fn calibrate_on_server_cpus(grid: &Grid, split: Option<&CpuSplit>) -> anyhow::Result<Calibration> {
    let Some(split) = split else {
        return Ok(calibrate(grid));
    };
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                crate::machine::pin_current_thread(&split.server)
                    .context("cannot move calibration onto the server's CPUs")?;
                Ok(calibrate(grid))
            })
            .join()
            .map_err(|_| anyhow::anyhow!("calibration panicked"))?
    })
}

/// Calibrates each (workload, size) once, on one thread of this machine.
pub fn calibrate(grid: &Grid) -> Calibration {
    let mut out = Calibration::new();
    for w in &grid.kernels {
        for s in &grid.sizes {
            let (given, target) = match *s {
                SizeSpec::N(n) => (Some(n), None),
                SizeSpec::TargetUs(t) => (None, Some(t)),
            };
            let (n, single_us) = calibrate_one(w.main_kernel(), target, given);
            // In a mix, every kernel gets its own n for the same service time: one `tlb` round
            // costs as much as thousands of `fib` steps.
            let mix_sizes = match target {
                Some(_) if w.mix.len() > 1 => w
                    .mix
                    .iter()
                    .map(|(k, _)| {
                        if *k == w.main_kernel() {
                            n
                        } else {
                            calibrate_one(*k, target, None).0
                        }
                    })
                    .collect(),
                _ => Vec::new(),
            };
            out.insert(
                calibration_key(w, s),
                Calibrated {
                    n,
                    target_us: target,
                    single_us,
                    mix_sizes,
                },
            );
        }
    }
    out
}

/// One kernel's size and single-job time: in this process, or in a child for a user kernel,
/// whose function may crash. A calibration that fails keeps the size given (1 for a target
/// time) with no service time, and says so: the cells then show what the function does.
fn calibrate_one(k: kernel::Kernel, target: Option<f64>, given: Option<u64>) -> (u64, f64) {
    if !k.is_user() {
        return kernel::calibrate(k, target, given);
    }
    kernel::calibrate_in_child(k, target, given).unwrap_or_else(|e| {
        let n = given.unwrap_or(1);
        eprintln!("sweep: {k} could not be calibrated ({e:#}); its cells run at n = {n}");
        (n, f64::NAN)
    })
}

fn key_of(c: &cell::Cell) -> CellKey {
    CellKey {
        kernel: c.workload.name.clone(),
        backend: c.backend.name().to_string(),
        workers: c.workers,
        connections: c.connections,
        depth: c.depth,
        size: c.size,
        repetition: c.repetition,
    }
}

/// Every cell of every repetition, in run order: repetitions outermost, cells shuffled within
/// each with a seed derived from the grid's. With a shard, only its grid points' cells (every
/// backend of each); the shuffle is over the same seed, so a shard's order does not depend on
/// which machine runs it.
pub fn plan(
    grid: &Grid,
    calibration: &Calibration,
    shard: Option<shard::Shard>,
) -> Vec<cell::Cell> {
    let lens = [
        grid.kernels.len(),
        grid.sizes.len(),
        grid.workers.len(),
        grid.connections.len(),
        grid.depths.len(),
    ];
    let mut all = Vec::new();
    for rep in 0..grid.repeat {
        let mut cells = Vec::with_capacity(grid.cells_per_rep());
        for (ki, w) in grid.kernels.iter().enumerate() {
            for (si, s) in grid.sizes.iter().enumerate() {
                let Some(c) = calibration.get(&calibration_key(w, s)) else {
                    continue;
                };
                // Backends outside workers, as before sharding existed: the same seed gives
                // the same run order.
                for &b in &grid.backends {
                    for (wi, &workers) in grid.workers.iter().enumerate() {
                        for (ci, &connections) in grid.connections.iter().enumerate() {
                            for (di, &depth) in grid.depths.iter().enumerate() {
                                let point = shard::point_index([ki, si, wi, ci, di], lens);
                                if shard.is_some_and(|sh| !sh.holds(point)) {
                                    continue;
                                }
                                cells.push(cell::Cell {
                                    workload: w.clone(),
                                    backend: b,
                                    workers,
                                    connections,
                                    depth,
                                    size: c.n,
                                    mix_sizes: c.mix_sizes.clone(),
                                    target_us: c.target_us,
                                    single_us: c.single_us,
                                    repetition: rep,
                                    duration: grid.duration,
                                    warmup: grid.warmup,
                                    seed: grid.seed.wrapping_add(rep as u64),
                                });
                            }
                        }
                    }
                }
            }
        }
        let mut rng =
            rand::rngs::StdRng::seed_from_u64(grid.seed ^ (rep as u64).wrapping_mul(0x9E37_79B9));
        cells.shuffle(&mut rng);
        all.extend(cells);
    }
    all
}

/// One line per grid point and process-side backend: its throughput ÷ the best thread
/// backend's, the 95 % interval and the verdict, as verdicts.csv has them; a mix's line says
/// which kernel it was judged on.
fn headline(
    rows: &[Row],
    per_kernel: Option<&[kernels::KernelRow]>,
    equivalence: f64,
) -> Vec<String> {
    let data = crate::report::data::Dataset::judging(rows, per_kernel);
    crate::report::compare::comparisons(&data, equivalence)
        .iter()
        .filter(|c| c.is_best_thread())
        .map(|c| {
            let interval = c.interval().map_or_else(
                || {
                    format!(
                        "no interval ({}/{} valid reps)",
                        c.reps_challenger, c.reps_comparator
                    )
                },
                |(lo, hi)| format!("[{lo:.2}, {hi:.2}]"),
            );
            let at = c
                .target_us
                .map_or_else(|| format!("n={}", c.size), crate::report::data::fmt_us);
            let judged = data
                .judged_on(&c.kernel)
                .map(|on| format!(" ({on})"))
                .unwrap_or_default();
            format!(
                "{:<12} w={:<3} {:<9} {} ÷ best thread = {:.2} {interval} → {}{judged}",
                c.kernel, c.workers, at, c.challenger, c.ratio, c.verdict
            )
        })
        .collect()
}

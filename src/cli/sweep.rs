//! `threadcenter-bench sweep`: a preset grid with any list flags replacing its lists, run into
//! a results folder.

use crate::backend::BackendKind;
use crate::machine::CpuSplit;
use crate::sweep::folder::{self, Landing};
use crate::sweep::grid::{parse_list, Grid, Preset, SizeSpec, Workload};
use crate::sweep::shard::Shard;
use crate::sweep::{self, SweepOptions};
use crate::units::parse_duration;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// Results root: the sweep makes its own run folder inside it,
    /// DIR/<date>-<host>-<cores>c[-<preset>]/ (printed), for results.csv, env.json and
    /// report.html. A DIR holding env.json is a run folder and is used as it is.
    // The text is clap's help, shown as written: the angle brackets are not HTML.
    #[allow(rustdoc::invalid_html_tags)]
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The small grid: under 2 minutes on 2 cores (the README's main job).
    #[arg(long, conflicts_with_all = ["standard", "full"])]
    pub quick: bool,
    /// The standard grid: about 30 minutes on 2 cores.
    #[arg(long, conflicts_with = "full")]
    pub standard: bool,
    /// The full grid for many-core machines (the default when no preset is named).
    #[arg(long)]
    pub full: bool,
    /// Backends, comma-separated: process, rayon, tokio, prefork, shm.
    #[arg(long)]
    pub backends: Option<String>,
    /// Worker counts, comma-separated.
    #[arg(long)]
    pub workers: Option<String>,
    /// Connection counts, comma-separated.
    #[arg(long)]
    pub connections: Option<String>,
    /// Pipelining depths, comma-separated.
    #[arg(long)]
    pub depth: Option<String>,
    /// Sizes: work sizes (500000) or target service times (50us, 1ms), comma-separated.
    #[arg(long)]
    pub sizes: Option<String>,
    /// Kernels, comma-separated; a mix is written with `+`: fib:9+tlb:1. Your own functions are
    /// `py:f` (with --python) and `lib:f` (with --library and --symbols).
    #[arg(long)]
    pub kernels: Option<String>,
    #[command(flatten)]
    pub user: super::UserKernelArgs,
    /// Repetitions of every cell.
    #[arg(long)]
    pub repeat: Option<u32>,
    /// Measured time per cell.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Unrecorded load before each cell's measurement.
    #[arg(long, value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Seed for the cell order and the load's choices.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue the newest unfinished run of the same grid and --shard in DIR (or DIR itself
    /// when it is a run folder): keep the cells already in its results.csv and run only the
    /// missing ones.
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Replace a different sweep already in the run folder the sweep lands on.
    #[arg(long)]
    pub force: bool,
    /// Use DIR itself as the run folder, with no dated folder inside it.
    #[arg(long)]
    pub exact: bool,
    /// Threads for the load driver; default one per driver CPU (at most 4), so a many-core
    /// server is not measured through a saturated driver; without a CPU split, 1 up to 8
    /// cores, then one per 8 cores (at most 4).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub driver_threads: Option<u16>,
    /// Equivalence margin: a comparison whose whole 95 % interval lies within ±PCT is
    /// `equivalent` (recorded in env.json, so `report` re-renders with it). Default 5%;
    /// --resume keeps the run's recorded margin and refuses a different one.
    #[arg(long, value_name = "PCT", value_parser = parse_margin)]
    pub equivalence: Option<f64>,
    /// `shm` servers: µs an idle worker polls for its next job before it sleeps (recorded in
    /// env.json); default: the server's.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub spin_us: Option<u64>,
    /// Run only the K-th of N slices of the grid points, K counting from 1 (1/4 … 4/4); every
    /// backend and repetition of a grid point stays in one slice. `auto`: K and N from a Slurm
    /// array job or a Kubernetes Indexed Job (with --shards).
    #[arg(long, value_name = "K/N|auto")]
    pub shard: Option<String>,
    /// The number of shards for `--shard auto` under a Kubernetes Indexed Job (its completions).
    #[arg(long, value_name = "N", requires = "shard")]
    pub shards: Option<u32>,
    /// CPUs for the load driver, as `0-3,8`; with --server-cpus, disjoint from it. Default: on
    /// 8 or more CPUs the last max(1, CPUs/8) go to the driver, the rest to the server; on
    /// fewer, no pinning. What was used is recorded in env.json as `cpu_split`.
    #[arg(long, value_name = "LIST", requires = "server_cpus")]
    pub driver_cpus: Option<String>,
    /// CPUs for every cell's server and its workers, as `0-3,8`; needs --driver-cpus.
    #[arg(long, value_name = "LIST", requires = "driver_cpus")]
    pub server_cpus: Option<String>,
    /// Stop after this many cells (to test --resume; the CSV keeps what ran).
    #[arg(long, hide = true)]
    pub max_cells: Option<usize>,
}

impl SweepArgs {
    /// The grid: the preset, with any list flags replacing its lists.
    pub fn grid(&self, cores: usize) -> anyhow::Result<Grid> {
        let preset = match self.preset_named() {
            Some("quick") => Preset::Quick,
            Some("standard") => Preset::Standard,
            _ => Preset::Full,
        };
        let mut g = Grid::preset(preset, cores);
        let num = |flag: &str, s: &str| -> anyhow::Result<Vec<u32>> {
            parse_list(flag, s, |p| {
                p.parse::<u32>()
                    .map_err(|_| anyhow::anyhow!("{p:?} is not a whole number"))
            })
        };
        if let Some(s) = &self.backends {
            g.backends = parse_list("--backends", s, |p| {
                BackendKind::parse(p).with_context(|| {
                    let known = BackendKind::ALL.map(BackendKind::name).join(", ");
                    format!("unknown backend {p:?}; known: {known}")
                })
            })?;
        }
        if let Some(s) = &self.workers {
            g.workers = num("--workers", s)?;
        }
        if let Some(s) = &self.connections {
            g.connections = num("--connections", s)?;
        }
        if let Some(s) = &self.depth {
            g.depths = num("--depth", s)?;
        }
        if let Some(s) = &self.sizes {
            g.sizes = parse_list("--sizes", s, SizeSpec::parse)?;
        }
        if let Some(s) = &self.kernels {
            g.kernels = parse_list("--kernels", s, Workload::parse)?;
        }
        if let Some(r) = self.repeat {
            g.repeat = r;
        }
        if let Some(d) = self.duration {
            g.duration = d;
        }
        if let Some(w) = self.warmup {
            g.warmup = w;
        }
        if let Some(s) = self.seed {
            g.seed = s;
        }
        g.validate()?;
        Ok(g)
    }
}

impl SweepArgs {
    /// The preset named on the command line, as the run folder's name ends; `None` when the
    /// full grid is the default rather than asked for.
    fn preset_named(&self) -> Option<&'static str> {
        [
            (self.quick, "quick"),
            (self.standard, "standard"),
            (self.full, "full"),
        ]
        .into_iter()
        .find_map(|(named, name)| named.then_some(name))
    }
}

/// `5%` or `5` as a fraction, with the library's message on a bad value.
pub(super) fn parse_margin(s: &str) -> Result<f64, String> {
    crate::report::parse_equivalence(s).map_err(|e| format!("{e:#}"))
}

/// Runs the sweep, then says where its rows and report went and prints the headline.
pub fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    // Before the grid: `--kernels py:f` names a kernel these flags load.
    args.user.load()?;
    let grid = args.grid(crate::machine::cores())?;
    for (k, _) in grid.kernels.iter().flat_map(|w| &w.mix) {
        // A kernel this build cannot run, or no flag loads, would only fill the grid with
        // error replies.
        k.ensure_available().map_err(anyhow::Error::msg)?;
        anyhow::ensure!(
            k.is_runnable(),
            "--kernels names {k}, which no flag loads: give --python FILE.py for py: kernels, \
             --library FILE.so --symbols NAME,… for lib: ones"
        );
    }
    let cpus = CpuSplit::from_flags(
        args.driver_cpus.as_deref(),
        args.server_cpus.as_deref(),
        &crate::machine::allowed_cpus(),
    )?;
    let shard = match &args.shard {
        Some(spec) => {
            let (shard, found) = Shard::resolve(spec, args.shards, |k| std::env::var(k).ok())?;
            if let Some(line) = found {
                eprintln!("{line}");
            }
            // Before a run folder is chosen, so a shard with nothing to run leaves no folder.
            shard.check_points(grid.cells_per_rep() / grid.backends.len())?;
            Some(shard)
        }
        None => None,
    };
    let choice = folder::Choice {
        exact: args.exact,
        resume: args.resume,
        shard,
        preset: args.preset_named(),
    };
    // Held until the sweep ends: no other sweep writes into this folder meanwhile.
    let (landing, _lock) = folder::choose(&args.out, &grid, choice)?;
    match &landing {
        Landing::Resumed(dir) => println!("resuming run folder: {}", dir.display()),
        other => println!("run folder: {}", other.dir().display()),
    }
    let options = SweepOptions {
        out: landing.dir().to_path_buf(),
        resume: args.resume,
        force: args.force,
        max_cells: args.max_cells,
        driver_threads: args.driver_threads.map(usize::from),
        equivalence: args.equivalence,
        shard,
        cpus,
        spin_us: args.spin_us,
    };
    let result = sweep::run(&grid, &options)?;
    eprintln!(
        "wrote {} rows ({} invalid) to {}",
        result.rows,
        result.invalid,
        options.out.join("results.csv").display()
    );
    for line in &result.headline {
        println!("{line}");
    }
    println!("report: {}", options.out.join("report.html").display());
    Ok(ExitCode::SUCCESS)
}

//! The command line: the `Cli` and its subcommands, one file each, every one a clap `Args`
//! type and the thin function that turns parsed flags into plain library calls. Nothing in the
//! library depends on this module or on clap.

mod calibrate;
mod load;
mod merge;
mod report;
mod serve;
mod summary;
mod sweep;
mod user;
mod worker;

use anyhow::Context;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;

pub use calibrate::CalibrateArgs;
pub use load::LoadArgs;
pub use merge::MergeArgs;
pub use report::ReportArgs;
pub use serve::ServeArgs;
pub use sweep::SweepArgs;
pub use user::UserKernelArgs;
pub use worker::WorkerArgs;

#[derive(Debug, Parser)]
#[command(
    name = "threadcenter-bench",
    version,
    about = "Where does process parallelism beat thread parallelism for CPU-bound requests over TCP?"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Serve the protocol on a TCP port, with CPU work on the chosen backend.
    Serve(ServeArgs),
    /// Drive load against any server that speaks the protocol and verify every reply.
    Load(LoadArgs),
    /// Run the grid of backends × workers × connections × sizes × kernels.
    Sweep(SweepArgs),
    /// Render the HTML report from a sweep's CSV.
    Report(ReportArgs),
    /// Combine HdrHistogram interval logs from several load processes or hosts.
    Merge(MergeArgs),
    /// The process backend's child (internal).
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// One kernel calibrated in a process of its own (internal: the sweep's user kernels).
    #[command(hide = true)]
    Calibrate(CalibrateArgs),
}

/// Runs the subcommand; `Err` is printed by `main` as one error chain, with exit status 1.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    init_tracing();
    if matches!(
        cli.command,
        Commands::Serve(_) | Commands::Worker(_) | Commands::Calibrate(_)
    ) {
        quiet_panics();
    }
    match cli.command {
        Commands::Serve(args) => serve::run(args),
        Commands::Load(args) => load::run(args),
        Commands::Sweep(args) => sweep::run(args),
        Commands::Report(args) => report::run(args),
        Commands::Merge(args) => merge::run(args),
        Commands::Worker(args) => worker::run(args),
        Commands::Calibrate(args) => calibrate::run(args),
    }
}

/// A panicking job is an expected event here (it becomes a `job_panicked` reply): report it
/// in one line instead of a backtrace per job.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let msg = crate::backend::panic_message(info.payload());
        let at = info
            .location()
            .map(|l| format!(" at {l}"))
            .unwrap_or_default();
        eprintln!("threadcenter-bench[{}]: {msg}{at}", std::process::id());
    }));
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("THREADCENTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A flag whose values are a library enum's own names (`BackendKind::name`, ...), so the
/// library needs no clap derive and each value is named in one place. `help` gives a value
/// its line in `--help`.
fn one_of<T: Copy + Send + Sync + 'static>(
    all: impl IntoIterator<Item = T>,
    name: fn(T) -> &'static str,
    help: fn(T) -> Option<&'static str>,
) -> impl TypedValueParser<Value = T> {
    let all: Vec<T> = all.into_iter().collect();
    let values = all.iter().map(move |&v| {
        let value = PossibleValue::new(name(v));
        match help(v) {
            Some(h) => value.help(h),
            None => value,
        }
    });
    PossibleValuesParser::new(values).map(move |chosen| {
        *all.iter()
            .find(|&&v| name(v) == chosen)
            .expect("clap accepts only the listed names")
    })
}

/// Writes `value` as pretty JSON with a final newline (`load --json`, `merge --json`).
fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("cannot encode the JSON report")?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

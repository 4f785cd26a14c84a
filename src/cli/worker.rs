//! `threadcenter-bench worker` (hidden): the process backend's child.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Kernels whose per-process state to build before reporting ready (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub preload: Vec<String>,
}

pub fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    crate::worker::run(&args.preload).map(|()| ExitCode::SUCCESS)
}

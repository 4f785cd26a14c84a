//! `threadcenter-bench worker` (hidden): the process backend's child.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Kernels whose per-process state to build before reporting ready (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub preload: Vec<String>,
    #[command(flatten)]
    pub user: super::UserKernelArgs,
}

pub fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    args.user.load()?;
    crate::worker::run(&args.preload).map(|()| ExitCode::SUCCESS)
}

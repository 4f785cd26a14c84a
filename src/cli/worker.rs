//! `threadcenter-bench worker` (hidden): the process backend's child.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Kernels whose per-process state to build before reporting ready (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub preload: Vec<String>,
    #[command(flatten)]
    pub user: super::UserKernelArgs,
    /// Take jobs from shared-memory rings whose descriptors arrive on stdin (`--backend shm`).
    #[arg(long)]
    pub shm: bool,
    /// With `--shm`: µs to poll for the next job before sleeping.
    #[arg(long, default_value_t = crate::backend::shm::DEFAULT_SPIN_US)]
    pub spin_us: u64,
}

pub fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    args.user.load()?;
    crate::worker::run(
        &args.preload,
        args.shm
            .then(|| std::time::Duration::from_micros(args.spin_us)),
    )
    .map(|()| ExitCode::SUCCESS)
}

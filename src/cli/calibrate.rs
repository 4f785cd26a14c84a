//! `threadcenter-bench calibrate` (hidden): one kernel calibrated in a process of its own, for
//! the sweep's user kernels (see [`crate::kernel::calibrate_in_child`]). Prints `N MICROSECONDS`.

use crate::kernel::Kernel;
use anyhow::Context;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// The kernel to size.
    #[arg(long)]
    pub kernel: String,
    /// The single-job service time to size it for, µs.
    #[arg(long)]
    pub target_us: Option<f64>,
    /// Time this work size instead of searching for one.
    #[arg(long)]
    pub n: Option<u64>,
    #[command(flatten)]
    pub user: super::UserKernelArgs,
}

pub fn run(args: CalibrateArgs) -> anyhow::Result<ExitCode> {
    args.user.load()?;
    let kernel = Kernel::parse(&args.kernel)
        .filter(|k| k.is_runnable())
        .with_context(|| format!("kernel {:?} is not loaded here", args.kernel))?;
    let (n, us) = crate::kernel::calibrate(kernel, args.target_us, args.n);
    println!("{n} {us}");
    Ok(ExitCode::SUCCESS)
}

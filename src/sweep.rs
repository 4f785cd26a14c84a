//! PLACEHOLDER — sweep comes after the server and driver.
use std::process::ExitCode;
#[derive(Debug, clap::Args)]
pub struct SweepArgs {}
pub fn run_cli(_a: SweepArgs) -> anyhow::Result<ExitCode> { anyhow::bail!("sweep: not built yet") }

//! `threadcenter-bench report`: a sweep's CSV rendered as one self-contained HTML file.

use std::path::PathBuf;
use std::process::ExitCode;

/// `threadcenter-bench report`: render a sweep's CSV as a self-contained HTML file.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The sweep's results.csv.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the HTML report.
    #[arg(long)]
    pub out: PathBuf,
    /// Machine metadata to show; defaults to env.json beside the input, if it exists.
    #[arg(long)]
    pub env: Option<PathBuf>,
}

/// Runs the `report` subcommand.
pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    crate::report::write_report(&args.input, args.env.as_deref(), &args.out)?;
    println!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

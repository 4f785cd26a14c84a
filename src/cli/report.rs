//! `threadcenter-bench report`: a sweep's CSV rendered as one self-contained HTML file.

use std::path::PathBuf;
use std::process::ExitCode;

/// `threadcenter-bench report`: render a sweep's CSV as a self-contained HTML file, with
/// verdicts.csv beside it.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The sweep's results.csv or run folder. Several: shards of one sweep merge into one
    /// report; runs from different machines are shown side by side, one section per machine.
    #[arg(long, required = true, num_args = 1.., value_name = "CSV_OR_RUN_FOLDER")]
    pub input: Vec<PathBuf>,
    /// Where to write the HTML report.
    #[arg(long)]
    pub out: PathBuf,
    /// Machine metadata to show; defaults to env.json beside the input, if it exists. One
    /// input only: several inputs use each one's own env.json.
    #[arg(long)]
    pub env: Option<PathBuf>,
    /// Equivalence margin: a comparison whose whole 95 % interval lies within ±PCT is
    /// `equivalent`. Default: the sweep's own margin from env.json (in a several-machine
    /// report, each machine's own), else 5%. Given, it applies to every machine.
    #[arg(long, value_name = "PCT", value_parser = super::sweep::parse_margin)]
    pub equivalence: Option<f64>,
}

/// Runs the `report` subcommand.
pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let options = crate::report::ReportOptions {
        equivalence: args.equivalence,
    };
    match &args.input[..] {
        [one] => {
            let csv = if one.is_dir() {
                one.join("results.csv")
            } else {
                one.clone()
            };
            crate::report::write_report_with(&csv, args.env.as_deref(), &args.out, &options)?;
        }
        several => {
            anyhow::ensure!(
                args.env.is_none(),
                "--env goes with one --input; with several, each input's own env.json is used"
            );
            crate::report::inputs::write_report_inputs(several, &args.out, &options)?;
        }
    }
    println!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

//! `threadcenter-bench merge`: interval logs from several load processes or hosts, added into
//! the summary one driver would print.

use super::summary;
use crate::load::{histlog, Summary};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

/// `threadcenter-bench merge`: adds the latency histograms of interval logs written by
/// `load --hist-log` (or any HdrHistogram tool) and prints the percentiles of the union.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Interval log files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Write the merged summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// What `merge --json` writes.
#[derive(Serialize)]
struct MergeReport<'a> {
    files: &'a [PathBuf],
    intervals: usize,
    latency: Summary,
}

pub fn run(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let (hist, intervals) = histlog::merge_files(&args.files)?;
    let latency = Summary::of(&hist);
    println!(
        "merged {} interval{} from {} file{}: {} samples",
        intervals,
        if intervals == 1 { "" } else { "s" },
        args.files.len(),
        if args.files.len() == 1 { "" } else { "s" },
        latency.count
    );
    println!("  latency      {}", summary::percentiles(&latency));
    if let Some(path) = &args.json {
        super::write_json(
            path,
            &MergeReport {
                files: &args.files,
                intervals,
                latency,
            },
        )?;
    }
    if latency.count == 0 {
        eprintln!("merge: the logs hold no samples");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

//! `threadcenter-bench merge`: the interval logs of several load processes or hosts, added into
//! the summary one driver would print, with each host's own line beside the total.

use super::summary;
use crate::load::merge::{self, HostLog};
use crate::load::LoadReport;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `threadcenter-bench merge`: adds the logs written by `load --hist-log` (or the latency
/// intervals of any HdrHistogram log): requests and errors summed, percentiles of the union.
///
/// Refused: the same driver's log twice, a log cut short, logs of different loads (unless
/// `--mixed-loads`), drivers that never ran at the same time. Exit status 1 when any driver's
/// own run failed, as `load` exits for one driver.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Interval log files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Write the merged report (the shape of `load --json`'s `report`) and each host's as JSON
    /// to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Add logs whose drivers sent different loads (by default refused: their sum is not one
    /// run's report).
    #[arg(long)]
    pub mixed_loads: bool,
}

/// What `merge --json` writes.
#[derive(Serialize)]
struct MergeReport<'a> {
    files: &'a [PathBuf],
    intervals: usize,
    report: &'a LoadReport,
    hosts: Vec<HostEntry<'a>>,
}

/// One host's part of `merge --json`.
#[derive(Serialize)]
struct HostEntry<'a> {
    host: &'a str,
    file: &'a Path,
    load: &'a str,
    report: &'a LoadReport,
}

pub fn run(args: MergeArgs) -> anyhow::Result<ExitCode> {
    let hosts: Vec<HostLog> = args
        .files
        .iter()
        .map(|f| merge::read_host(f))
        .collect::<anyhow::Result<_>>()?;
    let refused = merge::refusals(&hosts, args.mixed_loads);
    if !refused.is_empty() {
        anyhow::bail!(
            "these logs do not add up to one run: {}",
            refused.join("; ")
        );
    }
    for w in merge::warnings(&hosts) {
        eprintln!("merge: warning: {w}");
    }
    let total = merge::combine(&hosts)?;
    let intervals: usize = hosts.iter().map(|h| h.intervals).sum();
    println!(
        "merged {} interval{} from {} file{}: {} samples",
        intervals,
        if intervals == 1 { "" } else { "s" },
        args.files.len(),
        if args.files.len() == 1 { "" } else { "s" },
        total.latency.count
    );
    let load = hosts
        .first()
        .map(|h| h.load.as_str())
        .filter(|l| hosts.iter().all(|h| h.load == *l) && !l.is_empty())
        .unwrap_or("(the hosts' loads differ or are not recorded)");
    let header = format!("load: {load}, from {} hosts together", hosts.len());
    print!(
        "{}",
        summary::body(&header, total.target_rps.is_some(), &total)
    );
    println!("  per host:");
    for h in &hosts {
        println!("    {}", summary::host_line(&h.host, &h.report));
    }
    if let Some(path) = &args.json {
        let entries = hosts
            .iter()
            .map(|h| HostEntry {
                host: &h.host,
                file: &h.file,
                load: &h.load,
                report: &h.report,
            })
            .collect();
        super::write_json(
            path,
            &MergeReport {
                files: &args.files,
                intervals,
                report: &total,
                hosts: entries,
            },
        )?;
    }
    if total.latency.count == 0 {
        eprintln!("merge: the logs hold no samples");
        return Ok(ExitCode::FAILURE);
    }
    // As `load` would exit for one driver (SPEC §6): any driver whose own run failed fails the
    // whole, and says why.
    let mut failed = false;
    for h in &hosts {
        let why = h.report.failures();
        if !why.is_empty() {
            eprintln!("merge: {}'s run failed: {}", h.host, why.join("; "));
            failed = true;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

//! One cell of the grid: a fresh server process, warmup, measured load, resource accounting,
//! SIGTERM and a check that the server exited cleanly.

use super::grid::Workload;
use super::kernels::{self, KernelRow};
use crate::backend::BackendKind;
use crate::kernel::Kernel;
use crate::load::{self, Consistency, LoadReport, LoadSpec, Pace, Stop};
use crate::machine::{sample_tree, tlb_shootdowns};
use crate::record::Row;
use crate::server::child::{ServerChild, ServerCommand, Stopped};
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to measure in one cell.
#[derive(Debug, Clone)]
pub struct Cell {
    pub workload: Workload,
    pub backend: BackendKind,
    pub workers: u32,
    pub connections: u32,
    pub depth: u32,
    /// Work size of the main kernel: the CSV's `size`.
    pub size: u64,
    /// Per-kernel sizes of a mix, in mix order (empty: `size` for all).
    pub mix_sizes: Vec<u64>,
    pub target_us: Option<f64>,
    /// Single-thread time of one job of the main kernel at `size`, µs.
    pub single_us: f64,
    pub repetition: u32,
    pub duration: Duration,
    pub warmup: Duration,
    pub seed: u64,
}

/// How long a server may take to say `listening on` (a `table` preload in every process
/// included) and to exit after SIGTERM.
const START_LIMIT: Duration = Duration::from_secs(90);
const STOP_LIMIT: Duration = Duration::from_secs(20);
/// The fewest single-job service times a window must hold: each worker then finishes about
/// this many jobs in it, so the in-flight work at its end is a small part of what it measured.
pub const MIN_SERVICE_TIMES: f64 = 50.0;
/// The longest window the sweep lengthens a cell to; a cell that needs more is refused.
pub const MAX_WINDOW: Duration = Duration::from_secs(60);
/// A drain tail longer than this share of the window makes the cell invalid (`overrun`): the
/// server was still working off a backlog the window did not see it finish.
pub const MAX_TAIL_SHARE: f64 = 0.25;

/// The window the cell is measured over: its duration, lengthened to hold
/// [`MIN_SERVICE_TIMES`] single-job service times; `Err` (why) when that would exceed
/// [`MAX_WINDOW`].
pub fn window(cell: &Cell) -> Result<Duration, String> {
    let needed = MIN_SERVICE_TIMES * cell.single_us / 1e6;
    // An unknown (NaN) service time keeps the duration asked for.
    if needed.is_nan() || needed <= cell.duration.as_secs_f64() {
        Ok(cell.duration)
    } else if needed <= MAX_WINDOW.as_secs_f64() {
        Ok(Duration::from_secs_f64(needed))
    } else {
        Err(format!(
            "window too short: {MIN_SERVICE_TIMES:.0} service times of {:.0} µs need {needed:.1} s, over the {} s limit (give a smaller size)",
            cell.single_us,
            MAX_WINDOW.as_secs()
        ))
    }
}

/// Why the cell's drain tail makes it invalid, if it does.
pub fn overrun(tail_s: f64, window_s: f64) -> Option<String> {
    (tail_s > MAX_TAIL_SHARE * window_s).then(|| {
        format!(
            "overrun: the last reply came {tail_s:.3} s after the {window_s:.3} s window ended (over {:.0}% of it)",
            MAX_TAIL_SHARE * 100.0
        )
    })
}

/// The busiest a driver thread may be for the cell to count: beyond it the driver's own
/// queueing shows up in the latencies and may cap the throughput (`driver_saturated`).
pub const MAX_DRIVER_BUSY: f64 = 0.75;

/// Why the load driver makes the cell invalid, if it does: its busiest thread over
/// [`MAX_DRIVER_BUSY`], or (as before per-thread shares existed) its process CPU over 90 % of
/// its threads' wall time.
pub fn driver_saturated(report: &LoadReport) -> Option<String> {
    let busiest = report.driver_busy.iter().copied().fold(f64::NAN, f64::max);
    if busiest > MAX_DRIVER_BUSY {
        Some(format!(
            "driver_saturated: a driver thread was {:.0}% busy (over {:.0}%)",
            busiest * 100.0,
            MAX_DRIVER_BUSY * 100.0
        ))
    } else if report.driver_saturated {
        Some(format!(
            "driver_saturated: {:.2} CPU-s in {:.2} s on {} thread(s)",
            report.client_cpu_s, report.wall_s, report.driver_threads
        ))
    } else {
        None
    }
}

/// Starts the cell's server, pinned to the bench's server CPUs when given, and measures how long
/// it took to say where it listens.
async fn start_server(cell: &Cell, bench: &Bench<'_>) -> anyhow::Result<(ServerChild, Duration)> {
    // A sweep killed mid-cell (SIGINT to its pid alone, `timeout`, SIGKILL) takes the server
    // with it; the server's own workers and children die with the server.
    let mut cmd = ServerCommand::serve(bench.exe)
        .arg("--die-with-parent")
        .args(["--port", "0", "--backend", cell.backend.name()])
        .args(["--workers", &cell.workers.to_string()]);
    if cell.backend == BackendKind::Shm {
        // Always explicit, so the value env.json records is the one the server used.
        let spin = shm_spin_us(bench.spin_us, bench.cores, cell.workers);
        cmd = cmd.args(["--spin-us".to_string(), spin.to_string()]);
    }
    if let Some(cpus) = bench.server_cpus {
        cmd = cmd.cpus(cpus);
    }
    if let Some(kernels) = preload(&cell.workload.mix) {
        cmd = cmd.args(["--preload".to_string(), kernels]);
    }
    // The sweep's own user kernels (`lib:`, `py:`), loaded by the same flags.
    cmd = cmd.args(crate::kernel::user::flags());
    let started = Instant::now();
    let server = cmd.start_async(START_LIMIT).await?;
    Ok((server, started.elapsed()))
}

/// The `--preload` list of a cell running `mix`: its kernels with per-process state (the
/// table, the interpreter), built before the server listens so that no measured job pays for
/// it, and only those, so that a server's memory holds no interpreter a `fib` cell never uses.
fn preload(mix: &[(Kernel, u32)]) -> Option<String> {
    let names: Vec<&str> = mix
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| k.has_process_state())
        .map(Kernel::name)
        .collect();
    (!names.is_empty()).then(|| names.join(","))
}

/// The `--spin-us` an `shm` server of `workers` gets: the one given, else the server's default
/// for the cores it may use. env.json records the same.
pub fn shm_spin_us(given: Option<u64>, server_cores: usize, workers: u32) -> u64 {
    given.unwrap_or_else(|| crate::backend::shm::auto_spin_us(server_cores, workers as usize))
}

/// Where a cell runs, and what it checks user kernels' replies against.
pub struct Bench<'a> {
    pub exe: &'a Path,
    /// The cores the server may use: a cell's ideal throughput counts them.
    pub cores: usize,
    /// The server's CPUs, when the sweep pins it.
    pub server_cpus: Option<&'a [usize]>,
    /// `--spin-us` for `shm` servers; `None`: [`crate::backend::shm::auto_spin_us`] for the
    /// cell's workers on `cores`.
    pub spin_us: Option<u64>,
    /// The first result seen for each user kernel and `n`, over the whole sweep.
    pub seen: Arc<Consistency>,
}

/// Runs one cell end to end. Never fails: a cell that cannot be measured becomes an invalid
/// row with its reason, and the sweep goes on. A mix's cell also gives its per-kernel rows.
pub async fn run(bench: &Bench<'_>, cell: &Cell) -> (Row, Vec<KernelRow>) {
    let mut row = empty_row(cell, bench.cores);
    let mut per_kernel = Vec::new();
    if let Err(e) = measure(bench, cell, &mut row, &mut per_kernel).await {
        row.valid = false;
        row.reason = format!("{e:#}");
    }
    (row, per_kernel)
}

async fn measure(
    bench: &Bench<'_>,
    cell: &Cell,
    row: &mut Row,
    per_kernel: &mut Vec<KernelRow>,
) -> anyhow::Result<()> {
    let cores = bench.cores;
    let window = window(cell).map_err(anyhow::Error::msg)?;
    let (server, start_time) = start_server(cell, bench).await?;
    row.server_start_ms = start_time.as_secs_f64() * 1e3;
    let mut spec = LoadSpec {
        addr: server.addr(),
        connections: cell.connections,
        depth: cell.depth,
        stop: Stop::Duration(cell.warmup),
        warmup: Duration::ZERO,
        pace: Pace::Closed,
        mix: cell.workload.mix.clone(),
        size: cell.size,
        sizes: cell.mix_sizes.clone(),
        seed: cell.seed,
        ..LoadSpec::default()
    };
    // Warm-up on the same server, not recorded: first-touch faults, thread creation, the
    // allocator's first arenas.
    let warm = match cell.warmup.is_zero() {
        true => Ok(()),
        false => load::run_checked(&spec, None, bench.seen.clone())
            .await
            .map(drop)
            .context("warmup failed"),
    };
    spec.stop = Stop::Duration(window);
    let tlb0 = tlb_shootdowns();
    let before = sample_tree(server.pid());
    let report = match warm {
        Ok(()) => load::run_checked(&spec, None, bench.seen.clone())
            .await
            .context("load failed"),
        Err(e) => Err(e),
    };
    let after = sample_tree(server.pid());
    let tlb1 = tlb_shootdowns();
    let stopped = server.stop_async(STOP_LIMIT).await;
    // A server that died under the load (a user kernel that crashed a thread backend) is the
    // cell's finding, whatever the driver saw of it.
    if let Some(why) = crashed(&stopped) {
        row.reason = why;
        return Ok(());
    }
    let stopped = stopped.clean();
    let report = report?;
    let used = after.since(&before);
    fill(row, &report, cell, cores);
    *per_kernel = kernels::rows(&row.cell_key(), &report);
    row.server_user_s = used.user_s;
    row.server_sys_s = used.sys_s;
    row.server_cpu_s = used.user_s + used.sys_s;
    row.server_rss_kib = used.peak_rss_kib;
    row.server_minflt = used.minflt;
    row.server_vcsw = used.vcsw;
    row.server_ivcsw = used.ivcsw;
    row.tlb_shootdowns = match (tlb0, tlb1) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let mut reasons = Vec::new();
    if report.ok == 0 {
        reasons.push("no correct reply".to_string());
    }
    if report.total_errors() > 0 {
        let kinds: Vec<String> = report
            .errors
            .iter()
            .map(|(k, n)| format!("{k}×{n}"))
            .collect();
        reasons.push(format!(
            "{} errors ({})",
            report.total_errors(),
            kinds.join(", ")
        ));
    }
    // A wrong result is worth its detail: for a user kernel, the first result it contradicts.
    let mismatch = report
        .notes
        .iter()
        .find(|n| n.starts_with(load::verify::kind::MISMATCH));
    reasons.extend(mismatch.cloned());
    reasons.extend(driver_saturated(&report));
    reasons.extend(overrun(report.tail_s, report.duration_s));
    if let Err(why) = stopped {
        reasons.push(why);
    }
    row.valid = reasons.is_empty();
    row.reason = reasons.join("; ");
    Ok(())
}

/// The reason a cell's server crashed, if it did: it died of a signal (`abort()`, a null
/// dereference in a user's library) instead of exiting on the SIGTERM that stopped it. On a
/// thread backend one crashing job is the whole server; only process backends survive it.
pub fn crashed(stopped: &Stopped) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    let signal = stopped.status()?.signal()?;
    let name = nix::sys::signal::Signal::try_from(signal).map_or("?", |s| s.as_str());
    (signal != libc::SIGTERM).then(|| {
        format!(
            "{SERVER_CRASHED}: the server died of signal {signal} ({name}) during the cell: a \
             crashing job takes a thread backend's whole server down"
        )
    })
}

/// How the reason of a cell whose server crashed starts.
pub const SERVER_CRASHED: &str = "server_crashed";

fn fill(row: &mut Row, r: &LoadReport, cell: &Cell, cores: usize) {
    row.requests = r.ok;
    row.errors = r.total_errors();
    row.duration_s = r.duration_s;
    row.tail_s = r.tail_s;
    row.throughput_rps = r.throughput_rps;
    row.achieved_rps = r.achieved_rps;
    row.lat_p50_us = r.latency.p50_us;
    row.lat_p90_us = r.latency.p90_us;
    row.lat_p99_us = r.latency.p99_us;
    row.lat_p999_us = r.latency.p999_us;
    row.lat_max_us = r.latency.max_us;
    row.lat_mean_us = r.latency.mean_us;
    let p50 = |s: &Option<load::Summary>| s.as_ref().map_or(f64::NAN, |s| s.p50_us);
    row.queue_p50_us = p50(&r.queue);
    row.compute_p50_us = p50(&r.compute);
    row.server_p50_us = p50(&r.server);
    row.transport_p50_us = p50(&r.transport);
    row.client_cpu_s = r.client_cpu_s;
    let ideal = cell.workers.min(cores as u32) as f64 / cell.single_us * 1e6;
    row.efficiency = if ideal > 0.0 {
        r.throughput_rps / ideal
    } else {
        f64::NAN
    };
}

fn empty_row(cell: &Cell, cores: usize) -> Row {
    Row {
        kernel: cell.workload.name.clone(),
        backend: cell.backend.name().to_string(),
        workers: cell.workers,
        connections: cell.connections,
        depth: cell.depth,
        size: cell.size,
        repetition: cell.repetition,
        requests: 0,
        errors: 0,
        duration_s: 0.0,
        throughput_rps: 0.0,
        lat_p50_us: f64::NAN,
        lat_p90_us: f64::NAN,
        lat_p99_us: f64::NAN,
        lat_p999_us: f64::NAN,
        lat_max_us: f64::NAN,
        queue_p50_us: f64::NAN,
        compute_p50_us: f64::NAN,
        server_cpu_s: 0.0,
        server_rss_kib: 0,
        client_cpu_s: 0.0,
        efficiency: f64::NAN,
        valid: false,
        reason: String::new(),
        lat_mean_us: f64::NAN,
        server_p50_us: f64::NAN,
        transport_p50_us: f64::NAN,
        server_user_s: 0.0,
        server_sys_s: 0.0,
        server_minflt: 0,
        server_vcsw: 0,
        server_ivcsw: 0,
        tlb_shootdowns: None,
        single_job_us: cell.single_us,
        target_us: cell.target_us,
        service_us: cell.single_us,
        cores: cores as u32,
        rate: 0.0,
        achieved_rps: 0.0,
        server_start_ms: f64::NAN,
        started_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        tail_s: f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::grid::Workload;

    fn cell(single_us: f64, duration: Duration) -> Cell {
        Cell {
            workload: Workload::parse("fib").unwrap(),
            backend: BackendKind::Rayon,
            workers: 1,
            connections: 1,
            depth: 1,
            size: 1,
            mix_sizes: Vec::new(),
            target_us: None,
            single_us,
            repetition: 0,
            duration,
            warmup: Duration::ZERO,
            seed: 0,
        }
    }

    #[test]
    fn a_server_preloads_only_the_per_process_state_its_cell_runs() {
        assert_eq!(preload(&[(Kernel::Fib, 1)]), None);
        assert_eq!(preload(&[(Kernel::Fib, 9), (Kernel::Tlb, 1)]), None);
        assert_eq!(
            preload(&[(Kernel::Fib, 9), (Kernel::Table, 1)]).as_deref(),
            Some("table")
        );
        assert_eq!(
            preload(&[(Kernel::Pyfib, 1), (Kernel::Table, 1)]).as_deref(),
            Some("pyfib,table")
        );
        assert_eq!(
            preload(&[(Kernel::PyfibSub, 1)]).as_deref(),
            Some("pyfib-sub")
        );
    }

    #[test]
    fn a_window_is_lengthened_to_fifty_service_times_or_refused() {
        let asked = Duration::from_millis(700);
        assert_eq!(window(&cell(1_000.0, asked)), Ok(asked));
        assert_eq!(window(&cell(f64::NAN, asked)), Ok(asked));
        assert_eq!(window(&cell(20_000.0, asked)), Ok(Duration::from_secs(1)));
        let why = window(&cell(2e6, asked)).unwrap_err();
        assert!(why.starts_with("window too short"), "{why}");
        assert!(why.contains("100.0 s"), "{why}");
    }

    #[test]
    fn a_tail_over_a_quarter_of_the_window_is_an_overrun() {
        assert_eq!(overrun(0.0, 1.0), None);
        assert_eq!(overrun(0.25, 1.0), None);
        let why = overrun(0.4, 1.0).unwrap();
        assert!(why.starts_with("overrun: "), "{why}");
    }

    #[test]
    fn a_driver_thread_over_three_quarters_busy_saturates_the_driver() {
        let mut report = LoadReport::empty();
        assert_eq!(driver_saturated(&report), None);
        report.driver_busy = vec![0.2, 0.75];
        assert_eq!(driver_saturated(&report), None);
        report.driver_busy = vec![0.2, 0.8];
        let why = driver_saturated(&report).unwrap();
        assert!(why.starts_with("driver_saturated: "), "{why}");
        assert!(why.contains("80% busy"), "{why}");
        // The process-CPU flag still counts where per-thread shares are quiet or missing.
        report.driver_busy = Vec::new();
        report.driver_saturated = true;
        assert!(driver_saturated(&report)
            .unwrap()
            .starts_with("driver_saturated: "));
    }
}

//! Calibration: the work size `n` at which one job of a kernel takes a given service time on
//! one thread of this machine, and the measured single-job time at that size. Kernels and
//! machines differ by orders of magnitude per step, so a sweep names sizes by service time and
//! calibrates them here before it starts.

use super::Kernel;
use std::time::{Duration, Instant};

/// Finds `n` for a kernel so that one job takes about `target_us` on one thread of this
/// machine, and measures the single-job time at that `n` (median of several runs).
///
/// Jobs are timed in this thread's CPU time, not wall time: on a busy machine a job that is
/// preempted would otherwise look longer than it is, and calibrate to too small an `n`. The
/// `sleep` kernel does no CPU work, so it is sized directly.
pub fn calibrate(kernel: Kernel, target_us: Option<f64>, given_n: Option<u64>) -> (u64, f64) {
    kernel.prepare();
    let time = |n: u64| {
        if kernel == Kernel::Sleep {
            let t = Instant::now();
            std::hint::black_box(kernel.run(n));
            return t.elapsed().as_secs_f64() * 1e6;
        }
        let t = thread_cpu_us();
        std::hint::black_box(kernel.run(n));
        thread_cpu_us() - t
    };
    let n = match (given_n, target_us) {
        (Some(n), _) => n,
        (None, Some(target)) if kernel == Kernel::Sleep => target.round().max(1.0) as u64,
        (None, Some(target)) => {
            // Grow n until one run is long enough to time well, then scale linearly from
            // several timed runs at that n: one sample can land on a cache miss storm or a
            // frequency step and size the whole sweep wrong.
            let mut n = 16u64;
            let mut t = time(n);
            while t < 2000.0 && n < kernel.max_n() / 4 {
                n *= 4;
                t = time(n);
            }
            let mut times = vec![t];
            times.extend((1..ESTIMATES).map(|_| time(n)));
            let n = scaled_median(n, target, &times).clamp(1, kernel.max_n());
            // Scale once more from runs at that n: a kernel whose cost per step changes with n
            // (`table` leaving a cache level) lands far off after one linear step.
            let times: Vec<f64> = (0..ESTIMATES).map(|_| time(n)).collect();
            let n = scaled_median(n, target, &times).clamp(1, kernel.max_n());
            // Check the size the way the sweep will report it, and scale again while it is
            // off (see `settle`).
            return settle(n, target, kernel.max_n(), |n| single_job_us(&time, n));
        }
        (None, None) => 1,
    };
    (n, single_job_us(&time, n))
}

/// The single-job time the sweep records for a size: the median of at least 5 timed runs, and
/// of as many as 100 ms allows (up to 200).
fn single_job_us(time: &impl Fn(u64) -> f64, n: u64) -> f64 {
    let mut samples: Vec<f64> = Vec::new();
    let budget = Instant::now();
    while samples.len() < 5
        || (samples.len() < 200 && budget.elapsed() < Duration::from_millis(100))
    {
        samples.push(time(n));
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// How far the checked single-job time may be from the target before the size is scaled
/// again: well inside the report's 25 % mark (`report::service::TOLERANCE`), so a size that
/// settles is on target there with room to spare.
pub const SETTLE_TOLERANCE: f64 = 0.05;

/// Scalings after the first check before the size is kept as it is.
const SETTLE_ROUNDS: usize = 3;

/// Measures the single-job time at `n` with `measure`; while it is more than
/// [`SETTLE_TOLERANCE`] off `target_us`, sizes again and measures again, at most
/// [`SETTLE_ROUNDS`] times. Returns the size and its measured time: the last one tried if it
/// settled, else whichever came closest. The estimates before this are short runs; on a
/// machine whose speed changed between them and the check (a frequency step, a neighbour's
/// burst), a size sized from them alone can miss by a third (`results/2026-11-28-xeon-2c-shm-4`
/// did, at 50 µs), and the sweep would then run every backend at a service time other than its
/// label.
///
/// The first new size assumes time linear in `n`. After that the time is taken to grow as
/// `n^e`, with `e` from the last two sizes tried (kept within 0.5..=2, so that one noisy
/// reading cannot send the size far), which brings a kernel whose cost per step changes with
/// `n` (`table` leaving a cache level) in where linear steps would overshoot back and forth.
pub(crate) fn settle(
    n: u64,
    target_us: f64,
    max_n: u64,
    mut measure: impl FnMut(u64) -> f64,
) -> (u64, f64) {
    let off = |t: f64| (t / target_us - 1.0).abs();
    let mut tried = (n, measure(n));
    let mut best = tried;
    let mut before: Option<(u64, f64)> = None;
    for _ in 0..SETTLE_ROUNDS {
        let (n, t) = tried;
        if off(t) <= SETTLE_TOLERANCE || t.is_nan() || t <= 0.0 {
            return tried;
        }
        let e = before
            .map(|(n0, t0)| (t / t0).ln() / (n as f64 / n0 as f64).ln())
            .filter(|e| e.is_finite() && *e > 0.0)
            .map_or(1.0, |e| e.clamp(0.5, 2.0));
        let next = ((n as f64) * (target_us / t).powf(1.0 / e)).round() as u64;
        let next = next.clamp(1, max_n);
        if next == n {
            return tried;
        }
        before = Some(tried);
        tried = (next, measure(next));
        if off(tried.1) < off(best.1) {
            best = tried;
        }
    }
    if off(tried.1) <= SETTLE_TOLERANCE {
        tried
    } else {
        best
    }
}

/// Timed runs the size is estimated from; odd, so the median is one of them.
const ESTIMATES: usize = 5;

/// The median of the sizes that each timed run at `n` scales to for `target_us` (a run that
/// took `t` µs suggests `n × target ÷ t`). A run that timed as zero (below the clock's
/// resolution) counts as a tenth of a microsecond rather than dividing by zero.
pub(crate) fn scaled_median(n: u64, target_us: f64, times_us: &[f64]) -> u64 {
    let mut estimates: Vec<f64> = times_us
        .iter()
        .map(|t| n as f64 * target_us / t.max(0.1))
        .collect();
    estimates.sort_by(f64::total_cmp);
    estimates
        .get(estimates.len() / 2)
        .map_or(n, |e| e.round() as u64)
}

/// CPU time of the calling thread, µs.
fn thread_cpu_us() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as f64 * 1e6 + t.tv_nsec() as f64 / 1e3)
        .unwrap_or(0.0)
}

/// [`calibrate`] in a child process (`threadcenter-bench calibrate`, loading the same user
/// kernels): for user kernels, whose function may crash or raise. In-process, that would take
/// the sweep down before its first cell; here it only costs the calibration, and the cells
/// still run and record what the function does to each backend.
///
/// `Err` says why the child gave no sizes (it crashed, or could not start).
pub fn calibrate_in_child(
    kernel: Kernel,
    target_us: Option<f64>,
    given_n: Option<u64>,
) -> anyhow::Result<(u64, f64)> {
    use anyhow::Context;
    let exe = std::env::current_exe().context("cannot find this program")?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["calibrate", "--kernel", kernel.name()])
        .args(super::user::flags())
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    if let Some(t) = target_us {
        cmd.arg(format!("--target-us={t}"));
    }
    if let Some(n) = given_n {
        cmd.arg(format!("--n={n}"));
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    anyhow::ensure!(out.status.success(), "calibrating it {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut words = text.split_whitespace();
    let n = words.next().and_then(|w| w.parse().ok());
    let us = words.next().and_then(|w| w.parse().ok());
    n.zip(us)
        .with_context(|| format!("calibration printed {text:?}, not `N MICROSECONDS`"))
}

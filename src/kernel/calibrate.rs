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
            scaled_median(n, target, &times).clamp(1, kernel.max_n())
        }
        (None, None) => 1,
    };
    let mut samples: Vec<f64> = Vec::new();
    let budget = Instant::now();
    while samples.len() < 5
        || (samples.len() < 200 && budget.elapsed() < Duration::from_millis(100))
    {
        samples.push(time(n));
    }
    samples.sort_by(f64::total_cmp);
    (n, samples[samples.len() / 2])
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

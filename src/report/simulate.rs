//! What the verdicts are worth, measured rather than asserted: synthetic sweeps with a known
//! truth, fed through the same code as real ones (rows → [`Dataset`] → [`comparisons`]).
//!
//! Each scenario draws `points` grid points with a `process`, a `rayon` and a `tokio` backend,
//! at the repetition counts of a real comparison (process `reps.0`, each thread backend
//! `reps.1`: invalid repetitions are dropped, so the two often differ), throughput = mean ×
//! (1 + noise × z) with z standard normal (noise on the raw scale, not the log scale the
//! intervals assume, so the check is not circular):
//!
//! - null: all three equal, 5 % noise. Any win is false; the interval should cover 1.
//! - null with unequal noise: all three equal, one side 3x as noisy as the other (15 % against
//!   5 %), each way round; the interval should still cover 1, the backends need not be
//!   equally noisy.
//! - power: process 1.5x both thread backends, 5 % noise. "process wins" is the right call.
//! - equivalence: all equal, 0.5 % noise. "equivalent" is the right call.
//!
//! Seeds are fixed, so the figures the report prints are reproducible.

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use super::compare::{comparisons, Comparison};
use super::data::Dataset;
use super::verdict::Verdict;
use crate::record::Row;

/// The noise of the null and power scenarios, and the true ratio the power scenario hides.
pub const NOISE: f64 = 0.05;
pub const EFFECT: f64 = 1.5;
/// The noise of the equivalence scenario.
pub const QUIET_NOISE: f64 = 0.005;
/// How many times noisier one side is than the other in the unequal-noise null scenarios.
pub const NOISE_RATIO: f64 = 3.0;

/// Rates measured over one kind of comparison (per thread backend, or against the best).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    /// Null: the share of comparisons called a win for either side.
    pub false_win: f64,
    /// Null: the share called "process wins" (one direction of `false_win`).
    pub false_process_win: f64,
    /// Null: the share called "threads win" (the other direction).
    pub false_threads_win: f64,
    /// Null: the share of intervals that contain the true ratio, 1.
    pub coverage: f64,
    /// Null with one side [`NOISE_RATIO`] times as noisy as the other: the smaller share of
    /// intervals that contain 1, of the two ways round.
    pub coverage_unequal: f64,
    /// 1.5x: the share called "process wins".
    pub power: f64,
    /// 0.5 % noise, no difference: the share called "equivalent".
    pub equivalent: f64,
}

/// The measured rates at one pair of repetition counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Simulation {
    /// Valid repetitions of the challenger (process) and of each thread backend.
    pub reps: (usize, usize),
    /// Grid points drawn per scenario.
    pub points: usize,
    /// Process against one thread backend (rayon and tokio rows pooled).
    pub pair: Rates,
    /// Process against the best thread backend: the headline.
    pub headline: Rates,
}

/// A valid row with the given throughput and neutral values elsewhere.
pub fn synthetic_row(
    kernel: &str,
    backend: &str,
    workers: u32,
    size: u64,
    repetition: u32,
    throughput: f64,
) -> Row {
    let duration_s = 1.0;
    Row {
        kernel: kernel.into(),
        backend: backend.into(),
        workers,
        connections: 4,
        depth: 1,
        size,
        repetition,
        requests: throughput.max(0.0).round() as u64,
        errors: 0,
        duration_s,
        throughput_rps: throughput,
        lat_p50_us: 1e6 / throughput,
        lat_p90_us: 1.2e6 / throughput,
        lat_p99_us: 1.5e6 / throughput,
        lat_p999_us: 2e6 / throughput,
        lat_max_us: 3e6 / throughput,
        queue_p50_us: 0.0,
        compute_p50_us: 1e6 / throughput,
        server_cpu_s: duration_s,
        server_rss_kib: 4096,
        client_cpu_s: 0.1,
        efficiency: 1.0,
        valid: true,
        reason: String::new(),
        lat_mean_us: 1e6 / throughput,
        server_p50_us: 1e6 / throughput,
        transport_p50_us: 0.0,
        server_user_s: duration_s,
        server_sys_s: 0.0,
        server_minflt: 0,
        server_vcsw: 0,
        server_ivcsw: 0,
        tlb_shootdowns: None,
        single_job_us: 1e6 / throughput,
        target_us: None,
        cores: workers,
        rate: 0.0,
        achieved_rps: throughput,
        server_start_ms: 1.0,
        started_at: 0,
        tail_s: 0.0,
        service_us: 1e6 / throughput,
    }
}

/// One scenario: the process side's mean (the thread backends' is 1000) and the noise of
/// each side.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    effect: f64,
    process_noise: f64,
    thread_noise: f64,
}

/// Draws one scenario's rows: `points` grid points (told apart by `size`), process with
/// `reps.0` repetitions, each thread backend with `reps.1`.
fn draw(reps: (usize, usize), points: usize, s: Scenario, rng: &mut StdRng) -> Vec<Row> {
    let z = Normal::new(0.0, 1.0).expect("unit normal");
    let mut rows = Vec::with_capacity(points * (reps.0 + 2 * reps.1));
    for point in 0..points as u64 {
        for (backend, mean, noise, n) in [
            ("process", 1000.0 * s.effect, s.process_noise, reps.0),
            ("rayon", 1000.0, s.thread_noise, reps.1),
            ("tokio", 1000.0, s.thread_noise, reps.1),
        ] {
            for rep in 0..n as u32 {
                let t = mean * (1.0 + noise * z.sample(rng));
                rows.push(synthetic_row("sim", backend, 2, point, rep, t));
            }
        }
    }
    rows
}

fn share(cs: &[Comparison], hit: impl Fn(&Comparison) -> bool) -> f64 {
    if cs.is_empty() {
        return f64::NAN;
    }
    cs.iter().filter(|c| hit(c)).count() as f64 / cs.len() as f64
}

/// Runs the scenarios at `reps` (process, each thread backend) repetitions over `points` grid
/// points each.
pub fn simulate(reps: (usize, usize), points: usize, margin: f64, seed: u64) -> Simulation {
    let mix = (reps.0 as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (reps.1 as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    let mut rng = StdRng::seed_from_u64(seed ^ mix);
    let mut run = |effect: f64, process_noise: f64, thread_noise: f64| {
        let scenario = Scenario {
            effect,
            process_noise,
            thread_noise,
        };
        let rows = draw(reps, points, scenario, &mut rng);
        comparisons(&Dataset::new(&rows), margin)
    };
    let null = run(1.0, NOISE, NOISE);
    let noisy_process = run(1.0, NOISE * NOISE_RATIO, NOISE);
    let noisy_threads = run(1.0, NOISE, NOISE * NOISE_RATIO);
    let power = run(EFFECT, NOISE, NOISE);
    let quiet = run(1.0, QUIET_NOISE, QUIET_NOISE);
    let covers = |c: &Comparison| c.interval().is_some_and(|(lo, hi)| lo <= 1.0 && 1.0 <= hi);
    let rates = |best: bool| {
        let pick = |all: &[Comparison]| -> Vec<Comparison> {
            all.iter()
                .filter(|c| c.is_best_thread() == best)
                .cloned()
                .collect()
        };
        let (null, power, quiet) = (pick(&null), pick(&power), pick(&quiet));
        Rates {
            false_win: share(&null, |c| c.verdict.is_win()),
            false_process_win: share(&null, |c| c.verdict == Verdict::ProcessWins),
            false_threads_win: share(&null, |c| c.verdict == Verdict::ThreadsWin),
            coverage: share(&null, covers),
            coverage_unequal: share(&pick(&noisy_process), covers)
                .min(share(&pick(&noisy_threads), covers)),
            power: share(&power, |c| c.verdict == Verdict::ProcessWins),
            equivalent: share(&quiet, |c| c.verdict == Verdict::Equivalent),
        }
    };
    Simulation {
        reps,
        points,
        pair: rates(false),
        headline: rates(true),
    }
}

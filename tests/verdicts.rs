//! The verdicts on synthetic grid points with known answers: each challenger against each
//! thread backend and against the best of them, the four verdicts, and what counts.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use threadcenter::record::Row;
use threadcenter::report::compare::fastest_thread;
use threadcenter::report::noisy::{self, Metric};
use threadcenter::report::simulate::synthetic_row;
use threadcenter::report::{self, Comparison, ReportOptions, Verdict, DEFAULT_EQUIVALENCE};
use threadcenter::sweep::kernels::KernelRow;

/// Repetitions of one backend at one grid point with the given throughputs.
fn reps(kernel: &str, backend: &str, workers: u32, size: u64, tputs: &[f64]) -> Vec<Row> {
    tputs
        .iter()
        .enumerate()
        .map(|(i, &t)| synthetic_row(kernel, backend, workers, size, i as u32, t))
        .collect()
}

/// One grid point (4 workers, size 20000) with each backend's repetition throughputs.
fn point(kernel: &str, backends: &[(&str, &[f64])]) -> Vec<Row> {
    backends
        .iter()
        .flat_map(|(b, t)| reps(kernel, b, 4, 20_000, t))
        .collect()
}

/// A valid row of one repetition.
fn row(kernel: &str, backend: &str, workers: u32, size: u64, rep: u32, throughput: f64) -> Row {
    synthetic_row(kernel, backend, workers, size, rep, throughput)
}

/// The comparisons at the default margin.
fn verdicts(rows: &[Row]) -> Vec<Comparison> {
    report::verdicts(rows, DEFAULT_EQUIVALENCE)
}

/// The row of `challenger` against `comparator` (a thread backend or the best thread).
fn find<'c>(all: &'c [Comparison], challenger: &str, comparator: &str) -> &'c Comparison {
    all.iter()
        .find(|c| c.challenger == challenger && c.comparator == comparator)
        .unwrap_or_else(|| panic!("no {challenger} ÷ {comparator} in {all:?}"))
}

#[test]
fn process_clearly_faster_wins_with_an_interval_above_one() {
    let rows = point(
        "gil",
        &[
            ("process", &[400.0, 402.0, 398.0, 401.0, 399.0]),
            ("rayon", &[200.0, 201.0, 199.0, 200.5, 199.5]),
            ("tokio", &[150.0, 151.0, 149.0, 150.0, 150.0]),
        ],
    );
    let all = verdicts(&rows);
    // process ÷ rayon, ÷ tokio, ÷ the best thread backend.
    assert_eq!(all.len(), 3);
    let v = find(&all, "process", report::BEST_THREAD);
    assert_eq!(v.verdict, Verdict::ProcessWins);
    assert_eq!(fastest_thread(&all, v), Some("rayon"));
    let (lo, hi) = v.interval().expect("interval");
    assert!(lo > 1.0 && lo <= v.ratio && v.ratio <= hi, "{v:?}");
    assert!((v.ratio - 2.0).abs() < 0.01, "{v:?}");
    assert_eq!((v.reps_challenger, v.reps_comparator), (5, 5));
    assert_eq!(find(&all, "process", "tokio").verdict, Verdict::ProcessWins);
    assert!((find(&all, "process", "tokio").ratio - 8.0 / 3.0).abs() < 0.01);
}

#[test]
fn overlapping_throughputs_are_inconclusive() {
    let rows = point(
        "fib",
        &[
            ("process", &[100.0, 110.0, 90.0, 105.0, 95.0]),
            ("rayon", &[102.0, 92.0, 108.0, 97.0, 103.0]),
        ],
    );
    let all = verdicts(&rows);
    let v = find(&all, "process", report::BEST_THREAD);
    assert_eq!(v.verdict, Verdict::Inconclusive);
    let (lo, hi) = v.interval().expect("interval");
    assert!(lo < 1.0 && hi > 1.0, "{v:?}");
    // With one thread backend, the best of them is that one.
    assert_eq!(find(&all, "process", "rayon").interval(), v.interval());
}

#[test]
fn close_and_quiet_throughputs_are_equivalent() {
    let mut rows = reps("fib", "process", 2, 1000, &[100.0, 100.4, 99.7, 100.1]);
    rows.extend(reps("fib", "rayon", 2, 1000, &[101.0, 100.6, 101.3, 100.9]));
    rows.extend(reps("fib", "tokio", 2, 1000, &[99.0, 99.5, 98.8, 99.2]));
    let all = verdicts(&rows);
    for c in &all {
        assert_eq!(c.verdict, Verdict::Equivalent, "{c:?}");
    }
    // A margin narrower than the difference to rayon (about 0.9 %) takes that back.
    let strict = report::verdicts(&rows, 0.002);
    assert_ne!(
        find(&strict, "process", "rayon").verdict,
        Verdict::Equivalent
    );
}

#[test]
fn thread_clearly_faster_wins_and_the_best_thread_backend_is_named() {
    let mut rows = reps("shared", "process", 2, 1000, &[50.0, 51.0, 49.0]);
    rows.extend(reps("shared", "rayon", 2, 1000, &[80.0, 81.0, 79.0]));
    rows.extend(reps("shared", "tokio", 2, 1000, &[100.0, 101.0, 99.0]));
    let all = verdicts(&rows);
    let v = find(&all, "process", report::BEST_THREAD);
    assert_eq!(v.verdict, Verdict::ThreadsWin);
    assert_eq!(fastest_thread(&all, v), Some("tokio"));
    assert!(v.interval().expect("interval").1 < 1.0, "{v:?}");
    assert!((1.0 / v.ratio - 2.0).abs() < 0.01, "{v:?}");
}

#[test]
fn interval_contains_the_true_ratio() {
    // Process is exactly 1.5x rayon; each side carries the same ±0.5 % jitter.
    let jitter = [1.0, 1.005, 0.995, 1.002, 0.998, 1.003, 0.997];
    let p: Vec<f64> = jitter.iter().map(|j| 300.0 * j).collect();
    let t: Vec<f64> = jitter.iter().rev().map(|j| 200.0 * j).collect();
    let mut rows = reps("tlb", "process", 3, 500, &p);
    rows.extend(reps("tlb", "rayon", 3, 500, &t));
    let all = verdicts(&rows);
    let v = find(&all, "process", report::BEST_THREAD);
    let (lo, hi) = v.interval().expect("interval");
    assert!(lo <= 1.5 && 1.5 <= hi, "{v:?}");
    assert!(hi - lo < 0.05, "interval too wide for 0.5% noise: {v:?}");
}

#[test]
fn one_repetition_is_always_inconclusive_without_an_interval() {
    let mut rows = reps("fault", "process", 2, 100, &[130.0]);
    rows.extend(reps("fault", "rayon", 2, 100, &[100.0, 101.0]));
    rows.extend(reps("fault", "tokio", 2, 100, &[100.0]));
    for c in verdicts(&rows) {
        assert_eq!(c.verdict, Verdict::Inconclusive, "{c:?}");
        assert_eq!(c.interval(), None, "{c:?}");
    }
    let html = report::render(&rows, None, &ReportOptions::default()).expect("render");
    assert!(
        html.contains("none (process has 1 valid repetition)"),
        "the list says why"
    );
}

/// A thread backend run at a grid point whose every repetition was invalid (the fast cells
/// are the ones marked `driver_saturated`) must not silently leave "best thread" to the
/// slower one: the best-thread row claims no winner, and says why.
#[test]
fn a_thread_backend_without_valid_repetitions_leaves_the_best_thread_row_inconclusive() {
    let mut rows = Vec::new();
    for rep in 0..5u32 {
        let r = f64::from(rep);
        rows.push(row("fib", "process", 2, 100, rep, 1200.0 + r));
        rows.push(row("fib", "rayon", 2, 100, rep, 1000.0 + r));
        let mut fast = row("fib", "tokio", 2, 100, rep, 1500.0 + r);
        fast.valid = false;
        fast.reason = "driver_saturated".into();
        rows.push(fast);
    }
    let all = verdicts(&rows);
    // Against rayon alone the verdict stands; against the best thread it cannot.
    assert_eq!(find(&all, "process", "rayon").verdict, Verdict::ProcessWins);
    let best = find(&all, "process", report::BEST_THREAD);
    assert_eq!(best.verdict, Verdict::Inconclusive, "{best:?}");
    assert_eq!(best.interval(), None, "{best:?}");
    assert_eq!((best.reps_challenger, best.reps_comparator), (5, 0));
    let html = report::render(&rows, None, &ReportOptions::default()).expect("render");
    assert!(
        html.contains("none (tokio has 0 valid repetitions (driver_saturated ×5))"),
        "the report says why"
    );

    // One valid repetition of tokio is not enough either.
    rows[2].valid = true;
    let all = verdicts(&rows);
    let best = find(&all, "process", report::BEST_THREAD);
    assert_eq!(
        (best.verdict, best.interval()),
        (Verdict::Inconclusive, None)
    );
    assert_eq!(best.reps_comparator, 1);

    // A thread backend that was never run at the point is not missing: rayon is the best.
    rows.retain(|r| r.backend != "tokio");
    let all = verdicts(&rows);
    let best = find(&all, "process", report::BEST_THREAD);
    assert_eq!(best.verdict, Verdict::ProcessWins);
    assert_eq!(best.interval(), find(&all, "process", "rayon").interval());
}

#[test]
fn invalid_rows_do_not_count() {
    let mut rows = reps("fib", "process", 2, 100, &[100.0, 101.0]);
    rows.extend(reps("fib", "rayon", 2, 100, &[100.0, 99.0]));
    let mut bogus = row("fib", "process", 2, 100, 2, 1e9);
    bogus.valid = false;
    bogus.reason = "driver saturated".into();
    rows.push(bogus);
    let all = verdicts(&rows);
    let v = find(&all, "process", report::BEST_THREAD);
    assert_eq!(v.reps_challenger, 2);
    assert!(v.ratio < 1.1, "{v:?}");
}

#[test]
fn prefork_gets_its_own_comparisons() {
    let mut rows = reps("tlb", "process", 2, 100, &[100.0, 101.0]);
    rows.extend(reps("tlb", "rayon", 2, 100, &[100.0, 99.0]));
    rows.extend(reps("tlb", "prefork", 2, 100, &[300.0, 301.0]));
    let all = verdicts(&rows);
    let p = find(&all, "prefork", report::BEST_THREAD);
    let (lo, _) = p.interval().expect("interval");
    assert!((p.ratio - 3.0).abs() < 0.05 && lo > 1.0, "{p:?}");
    assert_eq!(p.verdict, Verdict::ProcessWins);
    let v = find(&all, "process", report::BEST_THREAD);
    assert!((v.ratio - 1.0).abs() < 0.05, "{v:?}");
    // Grid point, then challenger in the canonical order (process before prefork).
    let order: Vec<(&str, &str)> = all
        .iter()
        .map(|c| (c.challenger.as_str(), c.comparator.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            ("process", "rayon"),
            ("process", "best thread"),
            ("prefork", "rayon"),
            ("prefork", "best thread")
        ]
    );
}

#[test]
fn the_margin_is_the_one_asked_for_else_the_sweeps_else_five_percent() {
    let env = serde_json::json!({"equivalence": 0.1});
    assert_eq!(ReportOptions::default().margin(None), DEFAULT_EQUIVALENCE);
    assert_eq!(ReportOptions::default().margin(Some(&env)), 0.1);
    let asked = ReportOptions {
        equivalence: Some(0.02),
    };
    assert_eq!(asked.margin(Some(&env)), 0.02);
    let odd = serde_json::json!({"equivalence": "wide"});
    assert_eq!(
        ReportOptions::default().margin(Some(&odd)),
        DEFAULT_EQUIVALENCE
    );
}

/// One kernel's row of kernels.csv for the synthetic mix cell of `backend` and `rep`.
fn kernel_row(
    kernel: &str,
    backend: &str,
    rep: u32,
    requests: u64,
    tput: f64,
    p99: f64,
) -> KernelRow {
    KernelRow {
        kernel: kernel.into(),
        backend: backend.into(),
        workers: 4,
        connections: 4,
        depth: 1,
        size: 20_000,
        repetition: rep,
        mix: MIX.into(),
        requests,
        throughput_rps: tput,
        lat_p50_us: p99 / 2.0,
        lat_p99_us: p99,
        compute_p50_us: 100.0,
    }
}

const MIX: &str = "fib:15,tlb:1";

#[test]
fn a_mix_is_judged_on_its_majority_kernel_not_on_the_pooled_cell() {
    // Pooled, threads look faster; the majority kernel (fib: most replies) is faster and has
    // the lower p99 in processes; the minority kernel (tlb) points the other way.
    let mut rows = Vec::new();
    let mut kernels = Vec::new();
    for (backend, pooled, fib_tput, fib_p99, tlb_tput) in [
        ("process", 100.0, 400.0, 1_000.0, 5.0),
        ("rayon", 300.0, 200.0, 5_000.0, 10.0),
        ("tokio", 280.0, 150.0, 6_000.0, 11.0),
    ] {
        for rep in 0..4u32 {
            let jitter = 1.0 + 0.002 * rep as f64;
            rows.push(row(MIX, backend, 4, 20_000, rep, pooled * jitter));
            kernels.push(kernel_row(
                "fib",
                backend,
                rep,
                1_000,
                fib_tput * jitter,
                fib_p99 / jitter,
            ));
            kernels.push(kernel_row(
                "tlb",
                backend,
                rep,
                10,
                tlb_tput * jitter,
                50_000.0,
            ));
        }
    }
    assert_eq!(noisy::majority(&kernels, MIX).as_deref(), Some("fib"));
    // Pooled, threads would win; without per-kernel data the mix gets its pooled ratio but no
    // verdict, since a mix is not judged on the whole (SPEC §3).
    let pooled = find(&verdicts(&rows), "process", report::BEST_THREAD).clone();
    assert!((pooled.ratio - 100.0 / 300.0).abs() < 1e-9, "{pooled:?}");
    assert_eq!(
        (pooled.verdict, pooled.interval()),
        (Verdict::Inconclusive, None)
    );
    // With kernels.csv, verdicts.csv judges the mix on fib's own throughput: 400 ÷ 200.
    let judged = report::verdicts_with(&rows, Some(&kernels), DEFAULT_EQUIVALENCE);
    let best = find(&judged, "process", report::BEST_THREAD);
    assert_eq!(best.kernel, MIX);
    assert_eq!(best.verdict, Verdict::ProcessWins);
    assert!((best.ratio - 2.0).abs() < 1e-9, "{best:?}");
    assert_eq!(
        find(&judged, "process", "tokio").verdict,
        Verdict::ProcessWins
    );

    let tput = noisy::comparisons(&rows, &kernels, Metric::Throughput, DEFAULT_EQUIVALENCE);
    // process ÷ rayon, ÷ tokio, ÷ the best thread backend.
    assert_eq!(tput.len(), 3, "{tput:?}");
    let best = find(&tput, "process", report::BEST_THREAD);
    assert_eq!(best.kernel, "fib in fib:15,tlb:1");
    assert_eq!(best.verdict, Verdict::ProcessWins);
    assert!((best.ratio - 2.0).abs() < 1e-9, "{best:?}");

    let p99 = noisy::comparisons(&rows, &kernels, Metric::P99Latency, DEFAULT_EQUIVALENCE);
    let best = find(&p99, "process", report::BEST_THREAD);
    assert_eq!(best.verdict, Verdict::ProcessWins);
    // thread p99 ÷ process p99 against the best (lowest-p99) thread backend: 5000 ÷ 1000.
    assert!((best.ratio - 5.0).abs() < 1e-9, "{best:?}");
    let (lo, hi) = best.interval().expect("interval");
    assert!(lo > 1.0 && lo <= best.ratio && best.ratio <= hi, "{best:?}");

    // The report writes the same comparisons to noisy.csv beside verdicts.csv.
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("results.csv");
    let mut w = csv::Writer::from_path(&csv_path).unwrap();
    rows.iter().for_each(|r| w.serialize(r).unwrap());
    w.flush().unwrap();
    threadcenter::sweep::kernels::append(&dir.path().join("kernels.csv"), &kernels).unwrap();
    report::write_report(&csv_path, None, &dir.path().join("report.html")).unwrap();
    let written = std::fs::read_to_string(dir.path().join(noisy::FILE)).unwrap();
    let mut lines = written.lines();
    assert!(lines.next().unwrap().ends_with(",reps_comparator,metric"));
    let best_p99 = lines
        .find(|l| l.contains("best thread") && l.ends_with("p99 latency"))
        .expect("a best-thread p99 row");
    assert!(
        best_p99.starts_with("\"fib in fib:15,tlb:1\",4,") && best_p99.contains(",5.0"),
        "{best_p99}"
    );
    assert!(best_p99.contains("process wins"), "{best_p99}");
    // verdicts.csv beside it holds the mix judged on fib, and the report says so.
    let kept = report::compare::read_csv(&dir.path().join("verdicts.csv")).unwrap();
    assert_eq!(kept, judged);
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(
        html.contains("fib:15,tlb:1 (judged on fib, its majority kernel)"),
        "the report names the kernel the mix was judged on"
    );
    let html = report::render(&rows, None, &ReportOptions::default()).expect("render");
    assert!(html.contains("fib:15,tlb:1 (not judged: no per-kernel data)"));

    // A cell marked invalid takes its kernels' rows out too.
    rows.iter_mut()
        .filter(|r| r.backend == "process")
        .for_each(|r| r.valid = false);
    assert!(
        noisy::comparisons(&rows, &kernels, Metric::Throughput, DEFAULT_EQUIVALENCE).is_empty()
    );
}

#[test]
fn a_report_without_kernels_csv_says_there_is_no_per_kernel_data() {
    let rows = point(
        "fib",
        &[("process", &[400.0, 402.0]), ("rayon", &[200.0, 201.0])],
    );
    let html = report::render(&rows, None, &ReportOptions::default()).expect("render");
    assert!(html.contains("No per-kernel data"), "{html}");
}

/// Throughput is a whole count of replies over a fixed window, so repetitions can tie exactly.
/// Here each repetition counts the replies of a perfectly steady server over a 0.8 s window
/// that starts at a random phase (the count is ⌊c + U⌋, its mean c): the coarsest case, where
/// the repetitions of a side often all agree. The interval must still hold c_process ÷
/// c_rayon at least 95 % of the time, never shrink to a point, and the known truth decides.
#[test]
fn tied_reply_counts_still_give_intervals_that_cover_the_truth() {
    const WINDOW: f64 = 0.8;
    const POINTS: u64 = 1000;
    let mut rng = StdRng::seed_from_u64(0x71ed);
    for reps in [2u32, 3, 5] {
        for (cp, ct) in [
            (164.3, 160.7),
            (164.3, 156.2),
            (100.4, 96.6),
            (100.5, 100.5),
        ] {
            let mut rows = Vec::new();
            for point in 0..POINTS {
                for (backend, c) in [("process", cp), ("rayon", ct)] {
                    for rep in 0..reps {
                        let count = (c + rng.gen::<f64>()).floor();
                        let mut r = row("sleep", backend, 2, point, rep, count / WINDOW);
                        r.duration_s = WINDOW;
                        rows.push(r);
                    }
                }
            }
            let truth: f64 = cp / ct;
            let pairs: Vec<Comparison> = verdicts(&rows)
                .into_iter()
                .filter(|c| c.comparator == "rayon")
                .collect();
            assert_eq!(pairs.len() as u64, POINTS);
            let share = |hit: &dyn Fn(f64, f64) -> bool| {
                pairs
                    .iter()
                    .filter(|c| c.interval().is_some_and(|(lo, hi)| hit(lo, hi)))
                    .count() as f64
                    / POINTS as f64
            };
            let covered = share(&|lo, hi| lo <= truth && truth <= hi);
            let points = share(&|lo, hi| lo == hi);
            println!("{reps} reps, counts {cp}/{ct}: coverage {covered:.3}");
            assert!(
                covered >= 0.95,
                "{reps} reps, {cp}/{ct}: coverage {covered}"
            );
            assert_eq!(points, 0.0, "{reps} reps, {cp}/{ct}: zero-width intervals");
        }
    }
}

/// The committed `sleep` cells tie at every repetition on both sides: equal counts are
/// equivalent with an interval around 1, not a point at 1.
#[test]
fn identical_counts_are_equivalent_with_an_interval_of_nonzero_width() {
    let rows = point(
        "sleep",
        &[
            ("process", &[1640.0, 1640.0, 1640.0]),
            ("rayon", &[1640.0, 1640.0, 1640.0]),
        ],
    );
    let v = find(&verdicts(&rows), "process", "rayon").clone();
    let (lo, hi) = v.interval().expect("an interval");
    assert!(lo < 1.0 && 1.0 < hi, "{v:?}");
    assert_eq!(v.verdict, Verdict::Equivalent);
}

/// Invalid repetitions are dropped, so the two sides of a comparison often have different
/// repetition counts (the committed runs have 7/15, 13/15, 55/60, 1/2). Under no difference,
/// with log-normal noise (the model the interval assumes) and the smaller side as noisy or
/// noisier, the interval must still hold 1 at least 95 % of the time (within the simulation's
/// ±0.7 %). Welch–Satterthwaite degrees of freedom gave 88–90 % here.
#[test]
fn unequal_repetition_counts_keep_the_coverage() {
    const POINTS: u64 = 4000;
    let z = Normal::new(0.0, 1.0).unwrap();
    let mut rng = StdRng::seed_from_u64(0x5eed_0002);
    for (n_process, n_rayon, noise_process, noise_rayon) in [
        (2usize, 15usize, 0.02, 0.02),
        (2, 60, 0.02, 0.02),
        (2, 5, 0.06, 0.02),
        (3, 15, 0.02, 0.02),
        (7, 15, 0.06, 0.02),
        (15, 7, 0.02, 0.06),
        (13, 15, 0.02, 0.02),
    ] {
        let mut rows = Vec::new();
        for point in 0..POINTS {
            for (backend, n, sd) in [
                ("process", n_process, noise_process),
                ("rayon", n_rayon, noise_rayon),
            ] {
                for rep in 0..n as u32 {
                    let t = 1000.0 * f64::exp(sd * z.sample(&mut rng));
                    rows.push(row("fib", backend, 2, point, rep, t));
                }
            }
        }
        let covered = verdicts(&rows)
            .iter()
            .filter(|c| c.comparator == "rayon")
            .filter(|c| c.interval().is_some_and(|(lo, hi)| lo <= 1.0 && 1.0 <= hi))
            .count() as f64
            / POINTS as f64;
        println!("{n_process}/{n_rayon} reps, noise {noise_process}/{noise_rayon}: coverage {covered:.4}");
        assert!(
            covered >= 0.943,
            "{n_process}/{n_rayon} reps, noise {noise_process}/{noise_rayon}: coverage {covered}"
        );
    }
}

//! What the verdicts are worth: synthetic sweeps with a known truth run through the verdict
//! code (`report::simulate`) at every preset's repetition count, at 2, 3 and 5 repetitions,
//! and at the unequal pairs that dropped invalid repetitions leave in the committed runs.
//! The numbers it measures are printed (`cargo test --test simulation -- --nocapture`).

use std::collections::BTreeSet;

use threadcenter::report::simulate::{simulate, Simulation};
use threadcenter::report::DEFAULT_EQUIVALENCE;
use threadcenter::sweep::grid::{Grid, Preset};

/// Grid points per scenario: a 5 % rate is then known to about ±0.35 %.
const POINTS: usize = 4000;
const SEED: u64 = 20_261_126;

/// The preset repetition counts (on a 16-core machine; they do not depend on cores).
fn preset_reps() -> BTreeSet<usize> {
    [Preset::Quick, Preset::Standard, Preset::Full]
        .into_iter()
        .map(|p| Grid::preset(p, 16).repeat as usize)
        .collect()
}

/// Process/thread repetition counts of the committed runs' comparisons where invalid
/// repetitions were dropped on one side.
const UNEQUAL: [(usize, usize); 4] = [(2, 5), (7, 15), (13, 15), (15, 2)];

fn show(s: &Simulation) {
    println!(
        "{}/{} reps: false wins {:.1} % per thread backend, {:.1} % best thread ({:.1} % process, \
         {:.1} % threads); coverage {:.1} % / {:.1} %, with unequal noise {:.1} % / {:.1} %; \
         power at 1.5x {:.1} % / {:.1} %; equivalent at 0.5 % noise {:.1} % / {:.1} %",
        s.reps.0,
        s.reps.1,
        100.0 * s.pair.false_win,
        100.0 * s.headline.false_win,
        100.0 * s.headline.false_process_win,
        100.0 * s.headline.false_threads_win,
        100.0 * s.pair.coverage,
        100.0 * s.headline.coverage,
        100.0 * s.pair.coverage_unequal,
        100.0 * s.headline.coverage_unequal,
        100.0 * s.pair.power,
        100.0 * s.headline.power,
        100.0 * s.pair.equivalent,
        100.0 * s.headline.equivalent,
    );
}

#[test]
fn presets_repeat_enough_for_the_verdicts_to_have_power() {
    for n in preset_reps() {
        assert!(
            n >= 3,
            "a preset with {n} repetitions cannot find a 1.5x difference"
        );
    }
}

/// Under no difference, at most 7 % of grid points get a win for either side, whether the
/// comparison is against one thread backend or against the best one (chosen with the data).
/// The interval holds the true ratio at least 94 % of the time (nominal 95 %, less the
/// simulation's ±0.7 %), with equal noise and with one side 3x as noisy as the other, at
/// equal repetition counts and at the unequal ones dropped repetitions leave.
#[test]
fn false_wins_stay_rare_at_every_repetition_count() {
    let mut pairs: BTreeSet<(usize, usize)> = preset_reps().into_iter().map(|n| (n, n)).collect();
    pairs.extend([(2, 2), (3, 3), (5, 5)]);
    pairs.extend(UNEQUAL);
    for reps in pairs {
        let s = simulate(reps, POINTS, DEFAULT_EQUIVALENCE, SEED);
        show(&s);
        for (what, r) in [("per thread backend", s.pair), ("best thread", s.headline)] {
            assert!(r.false_win <= 0.07, "{reps:?} reps, {what}: {s:?}");
            assert!(r.coverage >= 0.94, "{reps:?} reps, {what}: {s:?}");
            assert!(r.coverage_unequal >= 0.94, "{reps:?} reps, {what}: {s:?}");
        }
    }
}

/// At the presets' repetition counts (and at 3 and 5), a true 1.5x at 5 % noise is found at
/// 95 % of grid points or more, and identical backends at 0.5 % noise are called equivalent at
/// 90 % or more. Two repetitions cannot promise that, which is why no preset uses two.
#[test]
fn real_differences_are_found_and_equal_backends_called_equivalent() {
    let mut counts = preset_reps();
    counts.extend([3, 5]);
    for n in counts {
        let s = simulate((n, n), POINTS, DEFAULT_EQUIVALENCE, SEED);
        show(&s);
        assert!(s.headline.power >= 0.95, "{n} reps: {s:?}");
        assert!(s.pair.power >= 0.95, "{n} reps: {s:?}");
        assert!(s.headline.equivalent >= 0.90, "{n} reps: {s:?}");
        assert!(s.pair.equivalent >= 0.90, "{n} reps: {s:?}");
    }
    show(&simulate((2, 2), POINTS, DEFAULT_EQUIVALENCE, SEED));
}

/// The same seed gives the same figures (the report quotes them, and must be reproducible).
#[test]
fn the_simulation_is_deterministic() {
    let a = simulate((3, 5), 200, DEFAULT_EQUIVALENCE, 1);
    assert_eq!(a, simulate((3, 5), 200, DEFAULT_EQUIVALENCE, 1));
    assert_eq!((a.reps, a.points), ((3, 5), 200));
}

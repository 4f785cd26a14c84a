//! The verdict on one comparison: is a challenger (a process backend) faster than a thread
//! backend, slower, equivalent, or can the repetitions not tell?
//!
//! The quantity compared is the ratio of geometric mean throughputs, challenger ÷ comparator,
//! i.e. the difference of mean log throughputs. Throughput noise is multiplicative (a busy
//! core slows every request by a share, not by a fixed count), so on the log scale it is close
//! to normal with a spread that does not grow with the mean, and a ratio's interval is
//! symmetric in the sense that matters: 2x and 0.5x are equally far from parity.
//!
//! Its interval is a t-interval on the difference of mean log throughputs with each side's
//! own variance (Welch's standard error), so it needs no assumption that the backends are
//! equally noisy. Two rules keep its coverage where the plain Welch interval loses it:
//!
//! - **A spread is never zero.** Throughput is a whole count of replies over a fixed window,
//!   so repetitions can tie exactly (a `sleep` cell completes the same count every time), and
//!   a variance of 0 would give a zero-width interval and a confident verdict. Each side's
//!   variance of log throughput is floored at the counting resolution: a count `c` read over a
//!   window that starts at a random phase against the replies is off by a fraction of one
//!   reply, with variance p(1 − p) ≤ 1/4 replies², i.e. 1/(4c²) in log units. The floor takes
//!   that worst case, not the 1/12 of a uniform rounding error: the repetitions cannot tell
//!   p, and with counts near 100 the 1/12 floor covers only 94 % at 5 and at 15 repetitions,
//!   the 1/4 floor 96 % or more (tests/verdicts.rs). A side with no known count (a latency)
//!   and no observed spread gives no interval at all.
//! - **Unequal repetition counts take the smaller side's degrees of freedom.** With equal
//!   counts the Welch–Satterthwaite degrees of freedom keep 95 % (94 % at 2 or 3 repetitions
//!   when one side is ten times noisier); with unequal ones (2 against 15, as dropped invalid
//!   repetitions leave) the estimate is too optimistic exactly when the small side's variance
//!   happens to come out low, and coverage falls to 88 %. There the interval uses min(nᵢ) − 1
//!   degrees of freedom (Hsu's conservative choice: the standard error is a weighted mean of
//!   variances each estimated with at least that many degrees of freedom, so its t ratio is
//!   never heavier-tailed than Student's at min(nᵢ) − 1).
//!
//! So it keeps its nominal coverage at two or three repetitions (within a point when one side
//! is far noisier), where a percentile bootstrap cannot (with two values it only ever sees
//! four resamples). The report's simulation
//! (`report::simulate`) measures the coverage it reaches at the repetition counts used.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::student;

/// Two-sided level of every interval: the report's intervals are 95 %.
pub const CONFIDENCE: f64 = 0.95;

/// The equivalence margin when none is given: ±5 %, i.e. the band [1/1.05, 1.05].
pub const DEFAULT_EQUIVALENCE: f64 = 0.05;

/// The four verdicts of SPEC §7 (their spelling is contract: it is what verdicts.csv holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// The whole interval lies above 1 (and not inside the equivalence band).
    #[serde(rename = "process wins")]
    ProcessWins,
    /// The whole interval lies below 1 (and not inside the equivalence band).
    #[serde(rename = "threads win")]
    ThreadsWin,
    /// The whole interval lies inside the equivalence band: any difference is smaller than
    /// the margin, whether or not it is detectable.
    #[serde(rename = "equivalent")]
    Equivalent,
    /// None of the above, or fewer than two repetitions on either side.
    #[serde(rename = "inconclusive")]
    Inconclusive,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [
        Verdict::ProcessWins,
        Verdict::ThreadsWin,
        Verdict::Equivalent,
        Verdict::Inconclusive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::ProcessWins => "process wins",
            Verdict::ThreadsWin => "threads win",
            Verdict::Equivalent => "equivalent",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// Either side won: what a false positive is under no true difference.
    pub fn is_win(self) -> bool {
        matches!(self, Verdict::ProcessWins | Verdict::ThreadsWin)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The equivalence band for `margin` (0.05 for ±5 %): [1/(1+m), 1+m], symmetric on the log
/// scale so that "5 % faster" and "5 % slower" are the same distance from parity.
pub fn band(margin: f64) -> (f64, f64) {
    (1.0 / (1.0 + margin), 1.0 + margin)
}

/// Reads an equivalence margin written as a percentage, `5%` or `5`, into a fraction (0.05).
pub fn parse_equivalence(s: &str) -> anyhow::Result<f64> {
    let t = s.trim();
    let number = t.strip_suffix('%').unwrap_or(t).trim();
    let pct: f64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("equivalence margin {s:?} is not a percentage like 5%"))?;
    anyhow::ensure!(
        pct > 0.0 && pct < 100.0,
        "equivalence margin {s:?} must be above 0% and below 100%"
    );
    Ok(pct / 100.0)
}

/// The verdict for a ratio's interval (None: no interval, fewer than two repetitions).
/// Equivalence is checked first: a difference that is real but inside the margin is
/// "equivalent", since the margin says how large a difference must be to matter.
pub fn judge(interval: Option<(f64, f64)>, margin: f64) -> Verdict {
    let Some((lo, hi)) = interval else {
        return Verdict::Inconclusive;
    };
    let (below, above) = band(margin);
    if lo >= below && hi <= above {
        Verdict::Equivalent
    } else if lo > 1.0 {
        Verdict::ProcessWins
    } else if hi < 1.0 {
        Verdict::ThreadsWin
    } else {
        Verdict::Inconclusive
    }
}

/// One backend's valid repetitions on the log scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogSample {
    pub n: usize,
    /// Mean of ln(throughput): the log of the geometric mean.
    pub mean: f64,
    /// Sample variance (n − 1 denominator) of ln(throughput); 0 for one repetition.
    pub var: f64,
    /// The least variance of ln(throughput) its counting resolution allows, 1/(4c²) for the
    /// smallest count c of replies behind a repetition; 0 when no count is known.
    pub floor: f64,
}

impl LogSample {
    /// None when there is no repetition or a throughput is not positive and finite (it has no
    /// logarithm, and a ratio against it means nothing). No counting resolution is known.
    pub fn of(throughputs: &[f64]) -> Option<LogSample> {
        if throughputs.is_empty() || !throughputs.iter().all(|t| t.is_finite() && *t > 0.0) {
            return None;
        }
        let logs: Vec<f64> = throughputs.iter().map(|t| t.ln()).collect();
        let n = logs.len();
        let mean = logs.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Some(LogSample {
            n,
            mean,
            var,
            floor: 0.0,
        })
    }

    /// [`LogSample::of`] for throughputs that are each `counts[i]` whole replies over their
    /// window (throughput × window), so that the variance is floored at the counting
    /// resolution. Counts that are not positive and finite add no floor.
    pub fn counted(throughputs: &[f64], counts: &[f64]) -> Option<LogSample> {
        let mut s = LogSample::of(throughputs)?;
        s.floor = counts
            .iter()
            .filter(|c| c.is_finite() && **c > 0.0)
            .map(|c| 1.0 / (4.0 * c * c))
            .fold(0.0, f64::max);
        Some(s)
    }

    /// The variance an interval uses: the observed one, never below the counting resolution.
    pub fn spread(&self) -> f64 {
        self.var.max(self.floor)
    }
}

/// A ratio of geometric means and, with two or more repetitions a side, its interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub ratio: f64,
    pub interval: Option<(f64, f64)>,
}

/// The interval for challenger ÷ comparator at two-sided level `confidence` ([`contrast`]).
pub fn welch(challenger: &LogSample, comparator: &LogSample, confidence: f64) -> Estimate {
    contrast(&[(challenger, 1.0), (comparator, -1.0)], confidence)
}

/// The interval for exp(Σ cᵢ·meanᵢ), a contrast of independent log-scale means (a ratio of
/// ratios with coefficients ±1), at two-sided level `confidence`. Its variance is
/// Σ cᵢ²·spreadᵢ/nᵢ (each [`LogSample::spread`]); its degrees of freedom are
/// Welch–Satterthwaite's when every sample has the same number of repetitions and
/// min(nᵢ) − 1 otherwise (see the module doc). With two samples of equal size and
/// coefficients +1, −1 it is the two-sample Welch interval. No interval unless every sample
/// has two or more repetitions and a spread above zero (a side whose repetitions tie and whose
/// counting resolution is unknown cannot say how far off its mean may be).
pub fn contrast(terms: &[(&LogSample, f64)], confidence: f64) -> Estimate {
    let diff: f64 = terms.iter().map(|(s, c)| c * s.mean).sum();
    let ratio = diff.exp();
    let spreadless = |s: &LogSample| s.spread() <= 0.0 || s.spread().is_nan();
    if terms.iter().any(|(s, _)| s.n < 2 || spreadless(s)) {
        return Estimate {
            ratio,
            interval: None,
        };
    }
    let parts: Vec<(f64, usize)> = terms
        .iter()
        .map(|(s, c)| (c * c * s.spread() / s.n as f64, s.n))
        .collect();
    let se2: f64 = parts.iter().map(|(v, _)| v).sum();
    let fewest = parts.iter().map(|(_, n)| *n).min().unwrap_or(2);
    let df = if parts.iter().all(|(_, n)| *n == fewest) {
        se2 * se2
            / parts
                .iter()
                .map(|(v, n)| v * v / (n - 1) as f64)
                .sum::<f64>()
    } else {
        (fewest - 1) as f64
    };
    let half = student::quantile(0.5 + confidence / 2.0, df) * se2.sqrt();
    Estimate {
        ratio,
        interval: Some(((diff - half).exp(), (diff + half).exp())),
    }
}

/// The challenger against the best of several thread backends, the best chosen with the data.
///
/// The quantity is θ = min over the thread backends of the true ratio (the challenger against
/// whichever thread backend is truly fastest). Its interval takes the smallest lower end of
/// the ordinary (1 − α) Welch intervals and the smallest upper end of Bonferroni (1 − α/k)
/// ones, k being the number of thread backends:
///
/// - θ falls below the lower end only if the truly fastest backend's own interval misses low:
///   probability α/2, however the others fare. So "process wins" (lower end above 1) is the
///   intersection–union test: it needs a win against every thread backend, each at level α.
/// - θ lies above the upper end only if some backend's interval misses high: at most k·α/2k
///   = α/2 (Bonferroni). So "threads win" (upper end below 1), a win by any one thread
///   backend, is corrected for having k chances.
///
/// Together the interval covers θ with probability at least 1 − α whichever backend the data
/// make look best: choosing the best after seeing the data is paid for, not ignored.
pub fn against_best(challenger: &LogSample, threads: &[LogSample], confidence: f64) -> Estimate {
    let k = threads.len().max(1) as f64;
    let corrected = 1.0 - (1.0 - confidence) / k;
    let ratio = threads
        .iter()
        .map(|t| (challenger.mean - t.mean).exp())
        .fold(f64::INFINITY, f64::min);
    let ends: Option<Vec<(f64, f64)>> = threads
        .iter()
        .map(|t| {
            let lo = welch(challenger, t, confidence).interval?.0;
            let hi = welch(challenger, t, corrected).interval?.1;
            Some((lo, hi))
        })
        .collect();
    let interval = ends.filter(|v| !v.is_empty()).map(|v| {
        v.iter()
            .fold((f64::INFINITY, f64::INFINITY), |(lo, hi), e| {
                (lo.min(e.0), hi.min(e.1))
            })
    });
    Estimate { ratio, interval }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_checks_equivalence_first_then_each_side() {
        let m = DEFAULT_EQUIVALENCE;
        assert_eq!(judge(Some((1.01, 1.03)), m), Verdict::Equivalent);
        assert_eq!(judge(Some((0.96, 1.04)), m), Verdict::Equivalent);
        assert_eq!(judge(Some((1.10, 1.30)), m), Verdict::ProcessWins);
        assert_eq!(judge(Some((1.01, 1.06)), m), Verdict::ProcessWins);
        assert_eq!(judge(Some((0.70, 0.90)), m), Verdict::ThreadsWin);
        assert_eq!(judge(Some((0.90, 1.10)), m), Verdict::Inconclusive);
        assert_eq!(judge(None, m), Verdict::Inconclusive);
        assert_eq!(judge(Some((1.0, 1.0)), m), Verdict::Equivalent);
    }

    #[test]
    fn margins_parse_as_percentages() {
        assert_eq!(parse_equivalence("5%").unwrap(), 0.05);
        assert_eq!(parse_equivalence(" 2.5 % ").unwrap(), 0.025);
        assert_eq!(parse_equivalence("10").unwrap(), 0.1);
        assert!(parse_equivalence("0%").is_err());
        assert!(parse_equivalence("five").is_err());
        assert!(parse_equivalence("150%").is_err());
    }

    #[test]
    fn equal_counts_take_welch_satterthwaite_degrees_of_freedom() {
        // ln values 0, 0.1 (var 0.005) against 0, 0.05 (var 0.00125): se² = 0.003125,
        // df = se⁴ ÷ (0.0025² + 0.000625²) = 1.470588…
        let a = LogSample::of(&[1.0, 0.1f64.exp()]).unwrap();
        let b = LogSample::of(&[1.0, 0.05f64.exp()]).unwrap();
        let e = welch(&a, &b, 0.95);
        let (lo, hi) = e.interval.unwrap();
        let half = student::quantile(0.975, 0.003125f64.powi(2) / 6.640625e-6) * 0.003125f64.sqrt();
        assert!((e.ratio.ln() - 0.025).abs() < 1e-12);
        assert!((lo.ln() - (0.025 - half)).abs() < 1e-8, "{lo}");
        assert!((hi.ln() - (0.025 + half)).abs() < 1e-8, "{hi}");
    }

    #[test]
    fn unequal_counts_take_the_smaller_sides_degrees_of_freedom() {
        // ln values 0, 0.1 (mean 0.05, var 0.005) against 0, 0.02, 0.04 (mean 0.02, var
        // 0.0004): se² = 0.0025 + 0.0004/3, df = min(2, 3) − 1 = 1, t = 12.706.
        let a = LogSample::of(&[1.0, 0.1f64.exp()]).unwrap();
        let b = LogSample::of(&[1.0, 0.02f64.exp(), 0.04f64.exp()]).unwrap();
        let e = welch(&a, &b, 0.95);
        let (lo, hi) = e.interval.unwrap();
        let half = 12.706_204_736 * (0.0025f64 + 0.0004 / 3.0).sqrt();
        assert!((e.ratio.ln() - 0.03).abs() < 1e-12);
        assert!((lo.ln() - (0.03 - half)).abs() < 1e-8, "{lo}");
        assert!((hi.ln() - (0.03 + half)).abs() < 1e-8, "{hi}");
    }

    #[test]
    fn tied_counts_are_floored_at_the_counting_resolution() {
        // 164 and 150 replies in a 1 s window, twice each: no observed spread, but each count
        // may be off by a fraction of a reply, variance up to 1/4 reply².
        let a = LogSample::counted(&[164.0, 164.0], &[164.0, 164.0]).unwrap();
        let b = LogSample::counted(&[150.0, 150.0], &[150.0, 150.0]).unwrap();
        assert_eq!((a.var, b.var), (0.0, 0.0));
        assert!((b.spread() - 1.0 / (4.0 * 150.0 * 150.0)).abs() < 1e-15);
        let e = welch(&a, &b, 0.95);
        let (lo, hi) = e.interval.expect("an interval of non-zero width");
        assert!(lo < e.ratio && e.ratio < hi && hi / lo > 1.02, "{e:?}");
        // 9 % apart is still far more than the resolution: a win, with an honest interval.
        assert_eq!(judge(e.interval, DEFAULT_EQUIVALENCE), Verdict::ProcessWins);
        // Identical ties are equivalent within ±5 %, not a zero-width certainty.
        let e = welch(&a, &a, 0.95);
        let (lo, hi) = e.interval.unwrap();
        assert!(lo < 1.0 && hi > 1.0, "{e:?}");
        // An observed spread above the floor is used as it is.
        let c = LogSample::counted(&[100.0, 110.0], &[1e6, 1e6]).unwrap();
        assert_eq!(c.spread(), c.var);
    }

    #[test]
    fn ties_without_a_known_resolution_give_no_interval() {
        let a = LogSample::of(&[164.0, 164.0]).unwrap();
        let b = LogSample::of(&[150.0, 150.0]).unwrap();
        let e = welch(&a, &b, 0.95);
        assert_eq!(e.interval, None);
        assert!((e.ratio - 164.0 / 150.0).abs() < 1e-12);
        assert_eq!(
            judge(e.interval, DEFAULT_EQUIVALENCE),
            Verdict::Inconclusive
        );
        // One side without spread is enough: its mean's error cannot be bounded.
        let c = LogSample::of(&[150.0, 152.0]).unwrap();
        assert_eq!(welch(&a, &c, 0.95).interval, None);
        assert_eq!(against_best(&c, &[a, c], 0.95).interval, None);
    }

    #[test]
    fn one_repetition_has_no_interval_and_bad_throughput_no_sample() {
        let a = LogSample::of(&[130.0]).unwrap();
        let b = LogSample::of(&[100.0, 101.0]).unwrap();
        assert_eq!(welch(&a, &b, 0.95).interval, None);
        assert_eq!(against_best(&b, &[a, b], 0.95).interval, None);
        assert!(LogSample::of(&[100.0, 0.0]).is_none());
        assert!(LogSample::of(&[]).is_none());
    }

    #[test]
    fn the_best_thread_interval_takes_plain_lower_and_corrected_upper_ends() {
        let p = LogSample::of(&[200.0, 204.0, 198.0]).unwrap();
        let r = LogSample::of(&[100.0, 102.0, 99.0]).unwrap();
        let t = LogSample::of(&[150.0, 149.0, 152.0]).unwrap();
        let best = against_best(&p, &[r, t], 0.95);
        assert_eq!(best.ratio, welch(&p, &t, 0.95).ratio);
        let (lo, hi) = best.interval.unwrap();
        let plain = welch(&p, &t, 0.95).interval.unwrap();
        let corrected = welch(&p, &t, 0.975).interval.unwrap();
        assert_eq!(lo, plain.0);
        assert_eq!(hi, corrected.1);
        assert!(hi > plain.1, "Bonferroni widens the upper end");
        // A single thread backend is just the pair.
        assert_eq!(against_best(&p, &[t], 0.95), welch(&p, &t, 0.95));
    }
}

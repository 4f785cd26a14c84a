//! The Universal Scalability Law (Gunther): X(N) = λN / (1 + σ(N−1) + κN(N−1)).
//!
//! λ is the throughput of one worker, σ the contention (the serialized fraction: a lock, a
//! GIL, one dispatcher) and κ the coherency cost (pairwise crosstalk: TLB shootdowns, cache
//! lines bouncing between cores), which makes throughput fall again past a peak. Fitting it per
//! backend turns "threads scale worse" into numbers that say which of the two costs grew.
//!
//! The fit is weighted least squares on each worker count's mean throughput, weights from the
//! repetitions' spread, with σ in [0, 1] (a serialized fraction; σ = 1 is no scaling at all)
//! and κ ≥ 0. For fixed (σ, κ) the best λ has a closed form, so only two parameters are
//! searched: a log-spaced grid finds the basin, then Nelder–Mead polishes it. Slow but robust
//! on the handful of points a sweep has, with no starting guess to get wrong. A fit needs four
//! worker counts, and comes with approximate intervals for its parameters, because three
//! coefficients read off three or four points are otherwise taken for more than they are.

/// A fitted USL curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UslFit {
    /// Throughput of a single worker (requests/s).
    pub lambda: f64,
    /// Contention coefficient, in [0, 1].
    pub sigma: f64,
    /// Coherency coefficient, ≥ 0.
    pub kappa: f64,
    /// Approximate 95 % intervals of λ, σ and κ, clipped to their bounds; None when the
    /// fit's curvature cannot be inverted (a parameter the data do not constrain at all).
    pub intervals: Option<[(f64, f64); 3]>,
    /// Coefficient of determination of the fit over all repetitions.
    pub r2: f64,
    /// Repetitions fitted.
    pub points: usize,
    /// Whether the points were weighted by the repetitions' spread (false when no worker
    /// count had two repetitions).
    pub weighted: bool,
}

/// Distinct worker counts a fit needs: with three parameters, three counts are fitted exactly
/// by some curve whatever the data, so a fourth is the least that can contradict the model.
pub const MIN_DISTINCT_N: usize = 4;

/// z for the two-sided 95 % parameter intervals. The intervals come from the curvature of the
/// residual at the optimum (a linearization), so a t quantile would add false precision.
const Z95: f64 = 1.959_963_985;

impl UslFit {
    /// Predicted throughput at `n` workers.
    pub fn predict(&self, n: f64) -> f64 {
        self.lambda * shape(n, self.sigma, self.kappa)
    }

    /// Worker count at which throughput peaks, √((1−σ)/κ); None when it never peaks (κ = 0)
    /// or peaks before the second worker.
    pub fn peak(&self) -> Option<f64> {
        if self.kappa <= 0.0 || self.sigma >= 1.0 {
            return None;
        }
        let n = ((1.0 - self.sigma) / self.kappa).sqrt();
        (n.is_finite() && n >= 1.0).then_some(n)
    }
}

/// X(N) / λ.
fn shape(n: f64, sigma: f64, kappa: f64) -> f64 {
    n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))
}

/// One worker count: the mean of its repetitions and the weight of that mean.
#[derive(Debug, Clone, Copy)]
struct Level {
    n: f64,
    mean: f64,
    weight: f64,
}

/// Best λ for fixed (σ, κ) and its weighted sum of squared residuals.
fn solve_lambda(levels: &[Level], sigma: f64, kappa: f64) -> (f64, f64) {
    let (sxf, sff) = levels.iter().fold((0.0, 0.0), |(sxf, sff), l| {
        let f = shape(l.n, sigma, kappa);
        (sxf + l.weight * l.mean * f, sff + l.weight * f * f)
    });
    let lambda = if sff > 0.0 { (sxf / sff).max(0.0) } else { 0.0 };
    let sse = levels
        .iter()
        .map(|l| l.weight * (l.mean - lambda * shape(l.n, sigma, kappa)).powi(2))
        .sum();
    (lambda, sse)
}

/// Groups the repetitions by worker count and weighs each mean by n / variance.
///
/// Three to five repetitions give too rough a variance per worker count to weigh by alone (a
/// lucky pair of equal values would get near-infinite weight), so the spread is pooled as a
/// coefficient of variation over every count with two or more repetitions: each mean's
/// variance is CV² × mean² / n. Without any such count the fit is unweighted.
fn levels(points: &[(f64, f64)]) -> (Vec<Level>, bool) {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut groups: Vec<(f64, Vec<f64>)> = Vec::new();
    for (n, x) in sorted {
        match groups.last_mut() {
            Some((gn, xs)) if *gn == n => xs.push(x),
            _ => groups.push((n, vec![x])),
        }
    }
    let stats: Vec<(f64, f64, usize, f64)> = groups
        .iter()
        .map(|(n, xs)| {
            let k = xs.len();
            let mean = xs.iter().sum::<f64>() / k as f64;
            let var = if k > 1 {
                xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1) as f64
            } else {
                0.0
            };
            (*n, mean, k, var)
        })
        .collect();
    let (mut cv2_sum, mut dof) = (0.0, 0usize);
    for &(_, mean, k, var) in &stats {
        if k > 1 && mean > 0.0 {
            cv2_sum += (k - 1) as f64 * var / (mean * mean);
            dof += k - 1;
        }
    }
    let cv2 = if dof > 0 { cv2_sum / dof as f64 } else { 0.0 };
    let weighted = cv2 > 0.0;
    let levels = stats
        .into_iter()
        .map(|(n, mean, k, _)| {
            let var_of_mean = cv2 * mean * mean / k as f64;
            let weight = if weighted && var_of_mean > 0.0 {
                1.0 / var_of_mean
            } else {
                k as f64
            };
            Level { n, mean, weight }
        })
        .collect();
    (levels, weighted)
}

/// Fits the USL to (workers, throughput) points, one per repetition. None when there are
/// fewer than [`MIN_DISTINCT_N`] distinct worker counts or the data are not finite and
/// positive.
pub fn fit(points: &[(f64, f64)]) -> Option<UslFit> {
    let points: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(n, x)| n.is_finite() && n >= 1.0 && x.is_finite() && x >= 0.0)
        .collect();
    let (levels, weighted) = levels(&points);
    if levels.len() < MIN_DISTINCT_N || points.iter().all(|p| p.1 == 0.0) {
        return None;
    }

    let grid = |lo: i32, hi: i32| {
        std::iter::once(0.0).chain((lo * 4..=hi * 4).map(|e| 10f64.powf(f64::from(e) / 4.0)))
    };
    let mut best = (0.0, 0.0, f64::INFINITY);
    for sigma in grid(-5, 0) {
        for kappa in grid(-7, 0) {
            let (_, sse) = solve_lambda(&levels, sigma, kappa);
            if sse < best.2 {
                best = (sigma, kappa, sse);
            }
        }
    }

    let (mut sigma, mut kappa) = (best.0, best.1);
    // Restarting from the previous answer refreshes a simplex that has collapsed along the
    // narrow σ–κ valley the USL is known for.
    for _ in 0..3 {
        (sigma, kappa) = nelder_mead(&levels, sigma, kappa);
    }
    if solve_lambda(&levels, sigma, kappa).1 > best.2 {
        (sigma, kappa) = (best.0, best.1);
    }
    let (lambda, sse) = solve_lambda(&levels, sigma, kappa);
    let raw_sse: f64 = points
        .iter()
        .map(|&(n, x)| (x - lambda * shape(n, sigma, kappa)).powi(2))
        .sum();
    let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
    let sst: f64 = points.iter().map(|p| (p.1 - mean).powi(2)).sum();
    let r2 = if sst > 0.0 { 1.0 - raw_sse / sst } else { 1.0 };
    Some(UslFit {
        lambda,
        sigma,
        kappa,
        intervals: intervals(&levels, weighted, [lambda, sigma, kappa], sse),
        r2,
        points: points.len(),
        weighted,
    })
}

/// Approximate 95 % intervals from the inverse of the weighted Gauss–Newton matrix JᵀWJ.
///
/// With weights from the repetitions' spread that inverse is the covariance itself, inflated by
/// the reduced χ² when the curve misses the means by more than their noise (the model is then
/// too simple, and the intervals must say so); unweighted, the residual variance scales it and
/// needs a worker count more than there are parameters.
fn intervals(
    levels: &[Level],
    weighted: bool,
    [lambda, sigma, kappa]: [f64; 3],
    sse: f64,
) -> Option<[(f64, f64); 3]> {
    let mut m = [[0.0; 3]; 3];
    for l in levels {
        let d = 1.0 + sigma * (l.n - 1.0) + kappa * l.n * (l.n - 1.0);
        let j = [
            l.n / d,
            -lambda * l.n * (l.n - 1.0) / (d * d),
            -lambda * l.n * l.n * (l.n - 1.0) / (d * d),
        ];
        for (r, row) in m.iter_mut().enumerate() {
            for (c, cell) in row.iter_mut().enumerate() {
                *cell += l.weight * j[r] * j[c];
            }
        }
    }
    let dof = levels.len().saturating_sub(3);
    let scale = match (weighted, dof) {
        (true, 0) => 1.0,
        (true, _) => (sse / dof as f64).max(1.0),
        (false, 0) => return None,
        (false, _) => sse / dof as f64,
    };
    let cov = invert(m)?;
    let est = [lambda, sigma, kappa];
    let upper = [f64::INFINITY, 1.0, f64::INFINITY];
    let mut out = [(0.0, 0.0); 3];
    for i in 0..3 {
        let se = (cov[i][i] * scale).sqrt();
        if !se.is_finite() {
            return None;
        }
        out[i] = (
            (est[i] - Z95 * se).max(0.0),
            (est[i] + Z95 * se).min(upper[i]),
        );
    }
    Some(out)
}

/// The inverse of a symmetric 3×3 matrix by cofactors; None when it is (nearly) singular.
fn invert(m: [[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let c =
        |r0: usize, r1: usize, c0: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    let cof = [
        [c(1, 2, 1, 2), -c(1, 2, 0, 2), c(1, 2, 0, 1)],
        [-c(0, 2, 1, 2), c(0, 2, 0, 2), -c(0, 2, 0, 1)],
        [c(0, 1, 1, 2), -c(0, 1, 0, 2), c(0, 1, 0, 1)],
    ];
    let det = m[0][0] * cof[0][0] + m[0][1] * cof[0][1] + m[0][2] * cof[0][2];
    let norm = m.iter().flatten().map(|v| v.abs()).fold(0.0, f64::max);
    if !det.is_finite() || det.abs() <= 1e-14 * norm.powi(3) {
        return None;
    }
    let mut inv = [[0.0; 3]; 3];
    for (r, row) in inv.iter_mut().enumerate() {
        for (c, cell) in row.iter_mut().enumerate() {
            *cell = cof[c][r] / det;
        }
    }
    Some(inv)
}

/// Folds any real number into [0, 1] by mirroring at 0 and 1 (a triangle wave), so that a
/// simplex stepping past a bound of σ sees the objective rise again instead of a flat plateau
/// it could collapse on.
fn fold_unit(x: f64) -> f64 {
    let x = x.abs() % 2.0;
    if x > 1.0 {
        2.0 - x
    } else {
        x
    }
}

/// Minimizes the residual over σ ∈ [0, 1], κ ≥ 0 with Nelder–Mead, in coordinates scaled by the
/// starting point so both parameters move in comparable steps although κ is usually orders of
/// magnitude smaller than σ. σ is folded into its range; κ below zero is clamped to it, which
/// leaves the objective flat there and the simplex comes back.
fn nelder_mead(levels: &[Level], sigma0: f64, kappa0: f64) -> (f64, f64) {
    let scale = [sigma0.max(1e-3), kappa0.max(1e-5)];
    let unscale = |p: [f64; 2]| (fold_unit(p[0] * scale[0]), p[1].max(0.0) * scale[1]);
    let f = |p: [f64; 2]| {
        let (s, k) = unscale(p);
        solve_lambda(levels, s, k).1
    };
    let start = [sigma0 / scale[0], kappa0 / scale[1]];
    let mut simplex = [
        start,
        [start[0] + 0.5, start[1]],
        [start[0], start[1] + 0.5],
    ]
    .map(|p| (p, f(p)));
    let lerp =
        |a: [f64; 2], b: [f64; 2], t: f64| [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t];
    for _ in 0..1000 {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (best, worst) = (simplex[0], simplex[2]);
        let size = simplex
            .iter()
            .map(|(p, _)| (p[0] - best.0[0]).abs().max((p[1] - best.0[1]).abs()))
            .fold(0.0, f64::max);
        if size < 1e-10 || (worst.1 - best.1).abs() <= 1e-15 * best.1.abs() && size < 1e-6 {
            break;
        }
        let centroid = lerp(simplex[0].0, simplex[1].0, 0.5);
        let reflected = lerp(centroid, worst.0, -1.0);
        let fr = f(reflected);
        if fr < best.1 {
            let expanded = lerp(centroid, worst.0, -2.0);
            let fe = f(expanded);
            simplex[2] = if fe < fr {
                (expanded, fe)
            } else {
                (reflected, fr)
            };
        } else if fr < simplex[1].1 {
            simplex[2] = (reflected, fr);
        } else {
            let contracted = if fr < worst.1 {
                lerp(centroid, reflected, 0.5)
            } else {
                lerp(centroid, worst.0, 0.5)
            };
            let fc = f(contracted);
            if fc < worst.1.min(fr) {
                simplex[2] = (contracted, fc);
            } else {
                for v in simplex.iter_mut().skip(1) {
                    let p = lerp(best.0, v.0, 0.5);
                    *v = (p, f(p));
                }
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    unscale(simplex[0].0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic(lambda: f64, sigma: f64, kappa: f64, ns: &[f64]) -> Vec<(f64, f64)> {
        ns.iter()
            .map(|&n| (n, lambda * shape(n, sigma, kappa)))
            .collect()
    }

    #[test]
    fn recovers_known_coefficients_from_exact_data() {
        let ns = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
        let f = fit(&synthetic(1000.0, 0.05, 0.002, &ns)).expect("fit");
        assert!((f.lambda - 1000.0).abs() < 1.0, "{f:?}");
        assert!((f.sigma - 0.05).abs() < 1e-3, "{f:?}");
        assert!((f.kappa - 0.002).abs() < 1e-4, "{f:?}");
        assert!(f.r2 > 0.999, "{f:?}");
        let peak = f.peak().expect("peaks");
        assert!((peak - (0.95f64 / 0.002).sqrt()).abs() < 0.5, "{peak}");
    }

    #[test]
    fn recovers_linear_scaling_as_zero_costs() {
        let f = fit(&synthetic(500.0, 0.0, 0.0, &[1.0, 2.0, 3.0, 4.0])).expect("fit");
        assert!(f.sigma < 1e-4 && f.kappa < 1e-6, "{f:?}");
        assert!((f.lambda - 500.0).abs() < 0.5, "{f:?}");
        assert_eq!(f.peak(), None);
    }

    #[test]
    fn tolerates_noise() {
        let ns = [1.0, 2.0, 4.0, 8.0, 16.0];
        let noise = [1.01, 0.99, 1.005, 0.995, 1.0];
        let pts: Vec<_> = synthetic(2000.0, 0.2, 0.0, &ns)
            .into_iter()
            .zip(noise)
            .map(|((n, x), e)| (n, x * e))
            .collect();
        let f = fit(&pts).expect("fit");
        assert!((f.sigma - 0.2).abs() < 0.03, "{f:?}");
        assert!(f.kappa < 0.005, "{f:?}");
    }

    /// Saturation at the core count (as a real server shows) puts the optimum in a narrow,
    /// curved σ–κ valley; no nearby point may fit better than the answer.
    #[test]
    fn finds_the_optimum_in_a_narrow_valley() {
        let pts: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0, 16.0]
            .iter()
            .map(|&n: &f64| (n, 40_000.0 * shape(n.min(8.0), 0.9, 0.0)))
            .collect();
        let f = fit(&pts).expect("fit");
        let (lv, _) = levels(&pts);
        let best = solve_lambda(&lv, f.sigma, f.kappa).1;
        for i in -50..=50 {
            for j in -50..=50 {
                let s =
                    (f.sigma * (1.0 + f64::from(i) / 250.0) + f64::from(i) * 1e-6).clamp(0.0, 1.0);
                let k = (f.kappa * (1.0 + f64::from(j) / 250.0) + f64::from(j) * 1e-8).max(0.0);
                let e = solve_lambda(&lv, s, k).1;
                assert!(
                    e >= best * (1.0 - 1e-9),
                    "({s}, {k}) fits better than {f:?}"
                );
            }
        }
    }

    #[test]
    fn needs_four_distinct_worker_counts() {
        let three = [(1.0, 10.0), (2.0, 19.0), (4.0, 30.0), (4.0, 31.0)];
        assert!(fit(&three).is_none());
        assert!(fit(&[(1.0, 10.0), (2.0, 19.0), (4.0, 30.0), (8.0, f64::NAN)]).is_none());
        assert!(fit(&[(1.0, 10.0), (2.0, 19.0), (4.0, 30.0), (8.0, 38.0)]).is_some());
    }

    /// Throughput that falls as workers are added is the coherency term's job; σ may not
    /// exceed 1 to fake it.
    #[test]
    fn sigma_stays_within_zero_and_one() {
        let pts: Vec<(f64, f64)> = [1.0, 2.0, 3.0, 4.0]
            .iter()
            .map(|&n: &f64| (n, 1000.0 / n.sqrt()))
            .collect();
        let f = fit(&pts).expect("fit");
        assert!((0.0..=1.0).contains(&f.sigma) && f.kappa >= 0.0, "{f:?}");
        assert!(f.kappa > 0.0, "the fall must show as coherency: {f:?}");
    }

    /// With repetitions the fit is weighted and its intervals hold the true values; noisier
    /// repetitions give wider intervals.
    #[test]
    fn repetitions_weight_the_fit_and_give_intervals() {
        let ns = [1.0, 2.0, 4.0, 8.0, 16.0];
        let jitter = [0.98, 1.0, 1.02];
        let with = |spread: f64| {
            let pts: Vec<(f64, f64)> = synthetic(2000.0, 0.1, 0.001, &ns)
                .into_iter()
                .flat_map(|(n, x)| {
                    jitter
                        .iter()
                        .map(move |j| (n, x * (1.0 + (j - 1.0) * spread)))
                })
                .collect();
            fit(&pts).expect("fit")
        };
        let (tight, loose) = (with(0.5), with(2.0));
        assert!(tight.weighted && tight.points == 15, "{tight:?}");
        let [l, s, k] = tight.intervals.expect("intervals");
        assert!(l.0 <= 2000.0 && 2000.0 <= l.1, "{tight:?}");
        assert!(s.0 <= 0.1 && 0.1 <= s.1, "{tight:?}");
        assert!(k.0 <= 0.001 && 0.001 <= k.1, "{tight:?}");
        let width = |f: &UslFit| f.intervals.map(|i| i[1].1 - i[1].0).unwrap();
        assert!(width(&loose) > 2.0 * width(&tight), "{tight:?} {loose:?}");
        assert!(s.1 <= 1.0 && s.0 >= 0.0);
    }
}

//! The Universal Scalability Law (Gunther): X(N) = λN / (1 + σ(N−1) + κN(N−1)).
//!
//! λ is the throughput of one worker, σ the contention (the serialized fraction: a lock, a
//! GIL, one dispatcher) and κ the coherency cost (pairwise crosstalk: TLB shootdowns, cache
//! lines bouncing between cores), which makes throughput fall again past a peak. Fitting it per
//! backend turns "threads scale worse" into numbers that say which of the two costs grew.
//!
//! The fit is least squares with σ, κ ≥ 0. For fixed (σ, κ) the best λ has a closed form, so
//! only two parameters are searched: a log-spaced grid finds the basin, then Nelder–Mead
//! polishes it. Slow but robust on the handful of points a sweep has, with no starting guess
//! to get wrong.

/// A fitted USL curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UslFit {
    /// Throughput of a single worker (requests/s).
    pub lambda: f64,
    /// Contention coefficient.
    pub sigma: f64,
    /// Coherency coefficient.
    pub kappa: f64,
    /// Coefficient of determination of the fit over all points.
    pub r2: f64,
    /// Points fitted.
    pub points: usize,
}

/// Distinct worker counts a fit needs: three parameters, so fewer would fit anything exactly.
pub const MIN_DISTINCT_N: usize = 3;

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

/// Best λ for fixed (σ, κ) and its sum of squared residuals.
fn solve_lambda(points: &[(f64, f64)], sigma: f64, kappa: f64) -> (f64, f64) {
    let (sxf, sff) = points.iter().fold((0.0, 0.0), |(sxf, sff), &(n, x)| {
        let f = shape(n, sigma, kappa);
        (sxf + x * f, sff + f * f)
    });
    let lambda = if sff > 0.0 { (sxf / sff).max(0.0) } else { 0.0 };
    let sse = points
        .iter()
        .map(|&(n, x)| (x - lambda * shape(n, sigma, kappa)).powi(2))
        .sum();
    (lambda, sse)
}

/// Fits the USL to (workers, throughput) points. None when there are fewer than
/// [`MIN_DISTINCT_N`] distinct worker counts or the data are not finite and positive.
pub fn fit(points: &[(f64, f64)]) -> Option<UslFit> {
    let points: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(n, x)| n.is_finite() && n >= 1.0 && x.is_finite() && x >= 0.0)
        .collect();
    let mut distinct: Vec<f64> = points.iter().map(|p| p.0).collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() < MIN_DISTINCT_N || points.iter().all(|p| p.1 == 0.0) {
        return None;
    }

    let grid = |lo: i32, hi: i32| {
        std::iter::once(0.0).chain((lo * 4..=hi * 4).map(|e| 10f64.powf(f64::from(e) / 4.0)))
    };
    let mut best = (0.0, 0.0, f64::INFINITY);
    for sigma in grid(-5, 1) {
        for kappa in grid(-7, 0) {
            let (_, sse) = solve_lambda(&points, sigma, kappa);
            if sse < best.2 {
                best = (sigma, kappa, sse);
            }
        }
    }

    let (mut sigma, mut kappa) = (best.0, best.1);
    // Restarting from the previous answer refreshes a simplex that has collapsed along the
    // narrow σ–κ valley the USL is known for.
    for _ in 0..3 {
        (sigma, kappa) = nelder_mead(&points, sigma, kappa);
    }
    let (lambda, sse) = solve_lambda(&points, sigma, kappa);
    let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
    let sst: f64 = points.iter().map(|p| (p.1 - mean).powi(2)).sum();
    let r2 = if sst > 0.0 { 1.0 - sse / sst } else { 1.0 };
    Some(UslFit {
        lambda,
        sigma,
        kappa,
        r2,
        points: points.len(),
    })
}

/// Minimizes the residual over (σ, κ) ≥ 0 with Nelder–Mead, in coordinates scaled by the
/// starting point so both parameters move in comparable steps although κ is usually orders of
/// magnitude smaller than σ. Outside the feasible region the parameters are clamped to zero,
/// which leaves the objective flat there and the simplex comes back.
fn nelder_mead(points: &[(f64, f64)], sigma0: f64, kappa0: f64) -> (f64, f64) {
    let scale = [sigma0.max(1e-3), kappa0.max(1e-5)];
    let unscale = |p: [f64; 2]| (p[0].max(0.0) * scale[0], p[1].max(0.0) * scale[1]);
    let f = |p: [f64; 2]| {
        let (s, k) = unscale(p);
        solve_lambda(points, s, k).1
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
        let best = solve_lambda(&pts, f.sigma, f.kappa).1;
        for i in -50..=50 {
            for j in -50..=50 {
                let s = (f.sigma * (1.0 + f64::from(i) / 250.0) + f64::from(i) * 1e-6).max(0.0);
                let k = (f.kappa * (1.0 + f64::from(j) / 250.0) + f64::from(j) * 1e-8).max(0.0);
                let e = solve_lambda(&pts, s, k).1;
                assert!(
                    e >= best * (1.0 - 1e-9),
                    "({s}, {k}) fits better than {f:?}"
                );
            }
        }
    }

    #[test]
    fn needs_three_distinct_worker_counts() {
        assert!(fit(&[(1.0, 10.0), (2.0, 19.0), (2.0, 19.5)]).is_none());
        assert!(fit(&[(1.0, 10.0), (2.0, 19.0), (4.0, f64::NAN)]).is_none());
        assert!(fit(&[(1.0, 10.0), (2.0, 19.0), (4.0, 30.0)]).is_some());
    }
}

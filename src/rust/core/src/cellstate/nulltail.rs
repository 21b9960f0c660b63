//! p-values of Mahalanobis distances from a null distribution fitted to the null genes, so
//! that they resolve p far below the empirical floor `1 / (n_null + 1)`.
//!
//! A gene's squared distance is a quadratic form in its expression, so under permutation
//! it scales with the gene's variance over the cells of the two conditions: the statistic
//! is `t = D^2 / s^2`. For one gene, `t` is close to a weighted sum of chi-squares (a scaled
//! chi-square); across genes what is left of the heterogeneity (mean, sparsity) widens the
//! tail. The null is therefore a scaled F, `t / scale ~ F(df1, df2)`: a scaled chi-square
//! `chi2_df1 / df1` whose scale varies between genes as an inverse chi-square with `df2`
//! degrees of freedom. It contains the scaled chi-square (gamma) as `df2 -> inf`, and the
//! three parameters are fitted to the null genes by maximum likelihood.

use crate::dist::{f_cdf, ln_gamma, Tail};

/// Fewest null genes with a positive statistic for the fit.
pub const MIN_NULL: usize = 20;
/// `df2` is held at or below this: beyond it the F is the scaled chi-square to rounding.
const MAX_DF2: f64 = 1e6;
const NM_MAX_EVALS: usize = 4000;
const NM_TOL: f64 = 1e-12;

/// `t / scale ~ F(df1, df2)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScaledF {
    pub df1: f64,
    pub df2: f64,
    pub scale: f64,
    /// Maximised log-likelihood of the null statistics.
    pub log_lik: f64,
}

impl ScaledF {
    /// Log-density at `t > 0`.
    pub fn log_density(&self, t: f64) -> f64 {
        log_density(t, self.df1, self.df2, self.scale)
    }

    /// Natural log of the upper tail `P(T >= t)`.
    pub fn upper_log_p(&self, t: f64) -> f64 {
        if t <= 0.0 {
            return 0.0;
        }
        f_cdf(t / self.scale, self.df1, self.df2, Tail::Upper, true)
    }
}

fn log_density(t: f64, df1: f64, df2: f64, scale: f64) -> f64 {
    let (a, b) = (0.5 * df1, 0.5 * df2);
    let x = t / scale;
    // Written with ln(1 + r x) = ln(b + a x) - ln(b) so that large df2 keeps its precision.
    ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * (df1 / df2).ln() + (a - 1.0) * x.ln()
        - (a + b) * (df1 / df2 * x).ln_1p()
        - scale.ln()
}

/// Statistics `D^2 / s^2` of genes with finite distance and positive variance; NaN else.
pub fn standardised(distance: &[f64], variance: &[f64]) -> Vec<f64> {
    distance
        .iter()
        .zip(variance)
        .map(|(&d, &v)| {
            if d.is_finite() && v.is_finite() && v > 0.0 {
                d * d / v
            } else {
                f64::NAN
            }
        })
        .collect()
}

/// Maximum-likelihood scaled F of the positive, finite values of `null`.
pub fn fit_scaled_f(null: &[f64]) -> Result<ScaledF, String> {
    let x: Vec<f64> = null
        .iter()
        .copied()
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    if x.len() < MIN_NULL {
        return Err(format!(
            "the fitted null needs at least {MIN_NULL} null genes with a positive distance (got {})",
            x.len()
        ));
    }
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
    // Start from the scaled chi-square with the sample's mean and variance.
    let df1 = (2.0 * mean * mean / var).clamp(0.05, 1e4);
    let start = [df1.ln(), 30f64.ln(), mean.ln()];
    let nll = |p: &[f64; 3]| {
        let (df1, df2, scale) = (p[0].exp(), p[1].exp().min(MAX_DF2), p[2].exp());
        let v: f64 = -x
            .iter()
            .map(|&t| log_density(t, df1, df2, scale))
            .sum::<f64>();
        if v.is_finite() {
            v
        } else {
            f64::INFINITY
        }
    };
    // Nelder-Mead on the log parameters, restarted once from its answer.
    let first = nelder_mead(&nll, start, 0.5);
    let best = nelder_mead(&nll, first, 0.1);
    let fit = ScaledF {
        df1: best[0].exp(),
        df2: best[1].exp().min(MAX_DF2),
        scale: best[2].exp(),
        log_lik: -nll(&best),
    };
    if fit.log_lik.is_finite() {
        Ok(fit)
    } else {
        Err("the fitted null did not converge".into())
    }
}

fn nelder_mead(f: &dyn Fn(&[f64; 3]) -> f64, start: [f64; 3], step: f64) -> [f64; 3] {
    let mut simplex: Vec<([f64; 3], f64)> = (0..4)
        .map(|k| {
            let mut p = start;
            if k > 0 {
                p[k - 1] += step;
            }
            (p, f(&p))
        })
        .collect();
    let mut evals = 4;
    let towards = |a: &[f64; 3], b: &[f64; 3], t: f64| -> [f64; 3] {
        [
            a[0] + t * (b[0] - a[0]),
            a[1] + t * (b[1] - a[1]),
            a[2] + t * (b[2] - a[2]),
        ]
    };
    while evals < NM_MAX_EVALS {
        simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
        let (lo, hi) = (simplex[0].1, simplex[3].1);
        if (hi - lo).abs() <= NM_TOL * (lo.abs() + NM_TOL) {
            break;
        }
        let mut centroid = [0.0; 3];
        for (p, _) in &simplex[..3] {
            for j in 0..3 {
                centroid[j] += p[j] / 3.0;
            }
        }
        let worst = simplex[3].0;
        let reflected = towards(&centroid, &worst, -1.0);
        let fr = f(&reflected);
        evals += 1;
        if fr < simplex[0].1 {
            let expanded = towards(&centroid, &worst, -2.0);
            let fe = f(&expanded);
            evals += 1;
            simplex[3] = if fe < fr {
                (expanded, fe)
            } else {
                (reflected, fr)
            };
        } else if fr < simplex[2].1 {
            simplex[3] = (reflected, fr);
        } else {
            let contracted = if fr < simplex[3].1 {
                towards(&centroid, &reflected, 0.5)
            } else {
                towards(&centroid, &worst, 0.5)
            };
            let fc = f(&contracted);
            evals += 1;
            if fc < fr.min(simplex[3].1) {
                simplex[3] = (contracted, fc);
            } else {
                let best = simplex[0].0;
                for s in simplex.iter_mut().skip(1) {
                    s.0 = towards(&best, &s.0, 0.5);
                    s.1 = f(&s.0);
                }
                evals += 3;
            }
        }
    }
    simplex.sort_by(|a, b| a.1.total_cmp(&b.1));
    simplex[0].0
}

/// The fitted null and the natural-log p-values of `real` statistics under it (NaN in,
/// NaN out).
pub struct NullTail {
    pub fit: ScaledF,
    pub log_p: Vec<f64>,
}

/// Fits the null to the null genes' standardised statistics and gives the real genes'
/// log p-values.
pub fn fitted_null_tail(
    real_distance: &[f64],
    real_variance: &[f64],
    null_distance: &[f64],
    null_variance: &[f64],
) -> Result<NullTail, String> {
    if real_distance.len() != real_variance.len() || null_distance.len() != null_variance.len() {
        return Err("one variance per distance is needed".into());
    }
    let fit = fit_scaled_f(&standardised(null_distance, null_variance))?;
    let log_p = standardised(real_distance, real_variance)
        .into_iter()
        .map(|t| {
            if t.is_nan() {
                f64::NAN
            } else {
                fit.upper_log_p(t)
            }
        })
        .collect();
    Ok(NullTail { fit, log_p })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;
    use rand::Rng;

    fn chisq_draw(rng: &mut crate::rng::Stream, df: usize) -> f64 {
        (0..df)
            .map(|_| {
                let (u, v): (f64, f64) = (rng.random(), rng.random());
                let z = (-2.0 * (1.0 - u).ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
                z * z
            })
            .sum()
    }

    #[test]
    fn log_density_matches_r_df() {
        // R: sprintf("%.17g", df(2.5 / 1.7, 3.2, 11.5, log = TRUE) - log(1.7))
        let fit = ScaledF {
            df1: 3.2,
            df2: 11.5,
            scale: 1.7,
            log_lik: 0.0,
        };
        assert!((fit.log_density(2.5) - -1.8773526877795872).abs() < 1e-12);
        // R: sprintf("%.17g", pf(40 / 1.7, 3.2, 11.5, lower.tail = FALSE, log.p = TRUE))
        assert!((fit.upper_log_p(40.0) - -10.453110628328114).abs() < 1e-11);
    }

    #[test]
    fn density_integrates_to_one() {
        let fit = ScaledF {
            df1: 4.0,
            df2: 9.0,
            scale: 2.0,
            log_lik: 0.0,
        };
        // Midpoint rule on [0, 400] plus the tail beyond.
        let h = 1e-3;
        let area: f64 = (0..400_000)
            .map(|k| fit.log_density((k as f64 + 0.5) * h).exp() * h)
            .sum();
        assert!((area + fit.upper_log_p(400.0).exp() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn ml_fit_recovers_a_scaled_f_and_is_a_stationary_point() {
        let mut rng = stream(7, &[1]);
        let x: Vec<f64> = (0..4000)
            .map(|_| 2.5 * (chisq_draw(&mut rng, 6) / 6.0) / (chisq_draw(&mut rng, 14) / 14.0))
            .collect();
        let fit = fit_scaled_f(&x).unwrap();
        assert!((fit.df1 - 6.0).abs() < 1.5, "{fit:?}");
        assert!((fit.df2 - 14.0).abs() < 5.0, "{fit:?}");
        assert!((fit.scale - 2.5).abs() < 0.3, "{fit:?}");
        // A brute-force check of the maximum: no nearby point is more likely.
        let ll = |a: f64, b: f64, s: f64| x.iter().map(|&t| log_density(t, a, b, s)).sum::<f64>();
        for (da, db, ds) in [(1.01, 1.0, 1.0), (1.0, 1.01, 1.0), (1.0, 1.0, 1.01)] {
            for dir in [1.0, -1.0] {
                let f = |r: f64| if dir > 0.0 { r } else { 1.0 / r };
                let moved = ll(fit.df1 * f(da), fit.df2 * f(db), fit.scale * f(ds));
                assert!(moved <= fit.log_lik + 1e-6, "{moved} > {}", fit.log_lik);
            }
        }
    }

    #[test]
    fn scaled_chi_square_nulls_give_a_large_df2_and_pchisq_tails() {
        let mut rng = stream(3, &[2]);
        let x: Vec<f64> = (0..5000).map(|_| 0.7 * chisq_draw(&mut rng, 5)).collect();
        let fit = fit_scaled_f(&x).unwrap();
        assert!(fit.df2 > 200.0, "{fit:?}");
        assert!((fit.df1 - 5.0).abs() < 0.5, "{fit:?}");
        // Far in the tail, the fit is the scaled chi-square: log p near R's
        // pchisq(60, 5, lower.tail = FALSE, log.p = TRUE) = -25.133315903506485 at
        // t = 0.7 * 60, to the accuracy of the fitted df and scale.
        let lp = fit.upper_log_p(0.7 * 60.0);
        assert!((lp - -25.133315903506485).abs() < 3.0, "{lp}");
    }

    #[test]
    fn p_values_of_fresh_null_draws_are_uniform_and_planted_ones_are_tiny() {
        let mut rng = stream(11, &[3]);
        let mut draw = |n: usize| -> (Vec<f64>, Vec<f64>) {
            // Genes of different variance: the distance scales with it.
            (0..n)
                .map(|_| {
                    let v = 0.2 + 3.0 * rng.random::<f64>();
                    let t =
                        1.3 * (chisq_draw(&mut rng, 4) / 4.0) / (chisq_draw(&mut rng, 20) / 20.0);
                    ((t * v).sqrt(), v)
                })
                .unzip()
        };
        let (nd, nv) = draw(3000);
        let (mut rd, mut rv) = draw(4000);
        rd.push((400.0f64 * 2.0).sqrt());
        rv.push(2.0);
        let tail = fitted_null_tail(&rd, &rv, &nd, &nv).unwrap();
        let p: Vec<f64> = tail.log_p[..4000].iter().map(|l| l.exp()).collect();
        for (cut, tol) in [(0.01, 0.006), (0.05, 0.015), (0.5, 0.03)] {
            let share = p.iter().filter(|&&v| v <= cut).count() as f64 / 4000.0;
            assert!((share - cut).abs() < tol, "P(p <= {cut}) = {share}");
        }
        assert!(tail.log_p[4000] < (1.0f64 / 3001.0).ln() - 5.0);
        assert!(standardised(&[f64::NAN, 1.0], &[1.0, 0.0])
            .iter()
            .all(|v| v.is_nan()));
    }

    #[test]
    fn too_few_null_genes_is_an_error() {
        assert!(fit_scaled_f(&[1.0; 5]).is_err());
    }
}

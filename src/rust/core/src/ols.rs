//! Ordinary least squares for many responses sharing one design (gneiss's `ols` on
//! balances): the design is factorised once (thin QR by Gram-Schmidt, twice for
//! orthogonality to rounding), then each response costs O(n p). Leave-one-out errors come
//! from the hat matrix; k-fold errors refit the design without each fold.

use crate::dist;

/// Thin QR of an `n x p` design: `q` (n x p, orthonormal columns) and `r` (p x p, upper).
pub struct Ols {
    pub n: usize,
    pub p: usize,
    q: Vec<f64>,
    r: Vec<f64>,
    /// `(X'X)^-1 = R^-1 R^-T`, p x p.
    pub xtx_inv: Vec<f64>,
    /// Diagonal of the hat matrix.
    pub hat: Vec<f64>,
}

/// One response's fit.
pub struct OlsFit {
    pub beta: Vec<f64>,
    pub std_error: Vec<f64>,
    pub log_p_t: Vec<f64>,
    pub log_p_z: Vec<f64>,
    pub sigma: f64,
    pub rss: f64,
    pub r_squared: f64,
    pub adj_r_squared: f64,
    /// `-2 log L` (ML), or the REML criterion as `logLik(lm, REML = TRUE)`.
    pub criterion: f64,
    /// Mean squared leave-one-out prediction error (PRESS / n).
    pub loo_mse: f64,
}

impl Ols {
    /// Factorises `x` (n x p column-major); an error when it is rank-deficient (a column's
    /// part orthogonal to the previous ones is below 1e-9 of its norm) or n <= p.
    pub fn new(x: &[f64], n: usize, p: usize) -> Result<Self, String> {
        if x.len() != n * p || n <= p {
            return Err("the design needs more observations than columns".into());
        }
        let mut q = x.to_vec();
        let mut r = vec![0.0; p * p];
        for j in 0..p {
            let norm0 = dot(&q[j * n..(j + 1) * n], &q[j * n..(j + 1) * n]).sqrt();
            for _pass in 0..2 {
                for i in 0..j {
                    let (before, after) = q.split_at_mut(j * n);
                    let qi = &before[i * n..(i + 1) * n];
                    let qj = &mut after[..n];
                    let c = dot(qi, qj);
                    qj.iter_mut().zip(qi).for_each(|(v, u)| *v -= c * u);
                    r[i + j * p] += c;
                }
            }
            let norm = dot(&q[j * n..(j + 1) * n], &q[j * n..(j + 1) * n]).sqrt();
            if norm.is_nan() || norm <= 1e-9 * norm0 {
                return Err(format!("the design is rank-deficient (column {})", j + 1));
            }
            q[j * n..(j + 1) * n].iter_mut().for_each(|v| *v /= norm);
            r[j + j * p] = norm;
        }
        // R^-1 by back substitution, column by column.
        let mut rinv = vec![0.0; p * p];
        for c in 0..p {
            for i in (0..=c).rev() {
                let mut s = if i == c { 1.0 } else { 0.0 };
                for k in i + 1..=c {
                    s -= r[i + k * p] * rinv[k + c * p];
                }
                rinv[i + c * p] = s / r[i + i * p];
            }
        }
        let mut xtx_inv = vec![0.0; p * p];
        for a in 0..p {
            for b in 0..p {
                xtx_inv[a + b * p] = (0..p).map(|k| rinv[a + k * p] * rinv[b + k * p]).sum();
            }
        }
        let hat = (0..n)
            .map(|i| (0..p).map(|j| q[i + j * n].powi(2)).sum())
            .collect();
        Ok(Ols {
            n,
            p,
            q,
            r,
            xtx_inv,
            hat,
        })
    }

    /// Coefficients and fitted values of `y`.
    fn solve(&self, y: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let (n, p) = (self.n, self.p);
        let qty: Vec<f64> = (0..p)
            .map(|j| dot(&self.q[j * n..(j + 1) * n], y))
            .collect();
        let mut beta = qty.clone();
        for i in (0..p).rev() {
            let s: f64 = beta[i] - (i + 1..p).map(|k| self.r[i + k * p] * beta[k]).sum::<f64>();
            beta[i] = s / self.r[i + i * p];
        }
        let mut fitted = vec![0.0; n];
        for (j, c) in qty.iter().enumerate() {
            fitted
                .iter_mut()
                .zip(&self.q[j * n..(j + 1) * n])
                .for_each(|(f, q)| *f += c * q);
        }
        (beta, fitted)
    }

    /// Fits one response. `intercept`: R² about the mean (a model with an intercept), else
    /// about zero, as `summary.lm()`; `reml` picks the criterion.
    pub fn fit(&self, y: &[f64], intercept: bool, reml: bool) -> OlsFit {
        let (n, p) = (self.n as f64, self.p as f64);
        let (beta, fitted) = self.solve(y);
        let resid: Vec<f64> = y.iter().zip(&fitted).map(|(a, b)| a - b).collect();
        let rss = dot(&resid, &resid);
        let centre = if intercept {
            y.iter().sum::<f64>() / n
        } else {
            0.0
        };
        let tss: f64 = y.iter().map(|v| (v - centre).powi(2)).sum();
        let df_int = if intercept { 1.0 } else { 0.0 };
        let r_squared = 1.0 - rss / tss;
        let adj_r_squared = 1.0 - (1.0 - r_squared) * (n - df_int) / (n - p);
        let sigma = (rss / (n - p)).sqrt();
        let std_error: Vec<f64> = (0..self.p)
            .map(|j| sigma * self.xtx_inv[j + j * self.p].sqrt())
            .collect();
        let log_p_t = beta
            .iter()
            .zip(&std_error)
            .map(|(b, s)| dist::t_two_sided_log_p(b / s, n - p))
            .collect();
        let log_p_z = beta
            .iter()
            .zip(&std_error)
            .map(|(b, s)| dist::norm_two_sided_log_p(b / s))
            .collect();
        let ln_2pi = (2.0 * std::f64::consts::PI).ln();
        let criterion = if reml {
            let m = n - p;
            let log_det_r: f64 = (0..self.p).map(|j| self.r[j + j * self.p].abs().ln()).sum();
            m * (ln_2pi + 1.0 - m.ln() + rss.ln()) + 2.0 * log_det_r
        } else {
            n * (ln_2pi + 1.0 - n.ln() + rss.ln())
        };
        let press: f64 = resid
            .iter()
            .zip(&self.hat)
            .map(|(e, h)| (e / (1.0 - h)).powi(2))
            .sum();
        OlsFit {
            beta,
            std_error,
            log_p_t,
            log_p_z,
            sigma,
            rss,
            r_squared,
            adj_r_squared,
            criterion,
            loo_mse: press / n,
        }
    }
}

/// Fits every response of `y` (responses x observations, column-major, as R stores a
/// matrix with responses in rows), in parallel on the current pool.
pub fn fit_many(
    ols: &Ols,
    y: &[f64],
    n_responses: usize,
    intercept: bool,
    reml: bool,
) -> Vec<OlsFit> {
    use rayon::prelude::*;
    (0..n_responses)
        .into_par_iter()
        .map(|r| {
            let row: Vec<f64> = (0..ols.n).map(|i| y[r + i * n_responses]).collect();
            ols.fit(&row, intercept, reml)
        })
        .collect()
}

/// Cross-validated error of one fold, summed over all responses as gneiss reports it.
#[derive(Clone, Copy, Debug)]
pub struct FoldError {
    pub n_test: usize,
    /// Mean squared residual of the training fit (per response and training sample).
    pub model_mse: f64,
    /// `1 - RSS / TSS` of the training fit, sums over responses.
    pub r_squared: f64,
    /// Mean squared prediction error on the held-out samples (per response and sample).
    pub pred_mse: f64,
}

/// K-fold errors: `fold[i]` (0-based, below `n_folds`) is observation `i`'s fold; each
/// fold is predicted from a fit without it. A fold whose training design is
/// rank-deficient gives NaN errors.
#[allow(clippy::too_many_arguments)]
pub fn cross_validate(
    x: &[f64],
    n: usize,
    p: usize,
    y: &[f64],
    n_responses: usize,
    fold: &[usize],
    n_folds: usize,
    intercept: bool,
) -> Result<Vec<FoldError>, String> {
    use rayon::prelude::*;
    if fold.len() != n || fold.iter().any(|&f| f >= n_folds) {
        return Err("every observation needs a fold below the number of folds".into());
    }
    let errors = (0..n_folds)
        .into_par_iter()
        .map(|k| {
            if crate::cancelled() {
                return None;
            }
            let train: Vec<usize> = (0..n).filter(|&i| fold[i] != k).collect();
            let test: Vec<usize> = (0..n).filter(|&i| fold[i] == k).collect();
            let nt = train.len();
            let xt: Vec<f64> = (0..p)
                .flat_map(|j| train.iter().map(move |&i| x[i + j * n]))
                .collect();
            let nan = FoldError {
                n_test: test.len(),
                model_mse: f64::NAN,
                r_squared: f64::NAN,
                pred_mse: f64::NAN,
            };
            let Ok(ols) = Ols::new(&xt, nt, p) else {
                return Some(nan);
            };
            let (mut rss, mut tss, mut pred) = (0.0, 0.0, 0.0);
            for r in 0..n_responses {
                let yt: Vec<f64> = train.iter().map(|&i| y[r + i * n_responses]).collect();
                let (beta, fitted) = ols.solve(&yt);
                rss += yt
                    .iter()
                    .zip(&fitted)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>();
                let centre = if intercept {
                    yt.iter().sum::<f64>() / nt as f64
                } else {
                    0.0
                };
                tss += yt.iter().map(|v| (v - centre).powi(2)).sum::<f64>();
                for &i in &test {
                    let yhat: f64 = (0..p).map(|j| x[i + j * n] * beta[j]).sum();
                    pred += (y[r + i * n_responses] - yhat).powi(2);
                }
            }
            let m = n_responses as f64;
            Some(FoldError {
                n_test: test.len(),
                model_mse: rss / (nt as f64 * m),
                r_squared: 1.0 - rss / tss,
                pred_mse: pred / (test.len() as f64 * m),
            })
        })
        .collect::<Vec<_>>();
    errors
        .into_iter()
        .map(|e| e.ok_or_else(|| "interrupted by the user".to_string()))
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn design() -> (Vec<f64>, usize, usize) {
        let n = 8;
        let x: Vec<f64> = (0..n)
            .map(|_| 1.0)
            .chain((0..n).map(|i| i as f64))
            .chain((0..n).map(|i| ((i * i) % 5) as f64))
            .collect();
        (x, n, 3)
    }

    #[test]
    fn exact_fit_of_a_response_in_the_column_space() {
        let (x, n, p) = design();
        let ols = Ols::new(&x, n, p).unwrap();
        let y: Vec<f64> = (0..n)
            .map(|i| 2.0 - 0.5 * x[i + n] + 3.0 * x[i + 2 * n])
            .collect();
        let (beta, fitted) = ols.solve(&y);
        for (b, e) in beta.iter().zip([2.0, -0.5, 3.0]) {
            assert!((b - e).abs() < 1e-12);
        }
        assert!(fitted.iter().zip(&y).all(|(f, v)| (f - v).abs() < 1e-12));
        assert!((ols.hat.iter().sum::<f64>() - p as f64).abs() < 1e-12);
    }

    #[test]
    fn leave_one_out_from_the_hat_matrix_equals_refitting() {
        let (x, n, p) = design();
        let ols = Ols::new(&x, n, p).unwrap();
        let y: Vec<f64> = (0..n).map(|i| ((i * 37) % 11) as f64 / 3.0).collect();
        let fit = ols.fit(&y, true, false);
        let fold: Vec<usize> = (0..n).collect();
        let cv = cross_validate(&x, n, p, &y, 1, &fold, n, true).unwrap();
        let brute = cv.iter().map(|e| e.pred_mse).sum::<f64>() / n as f64;
        assert!((fit.loo_mse - brute).abs() < 1e-10 * brute);
    }

    #[test]
    fn collinear_designs_are_refused() {
        let n = 5;
        let x: Vec<f64> = (0..n)
            .map(|i| i as f64)
            .chain((0..n).map(|i| 2.0 * i as f64))
            .collect();
        assert!(Ols::new(&x, n, 2).is_err());
    }
}

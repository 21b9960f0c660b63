//! Mellon's Gaussian-process density with landmarks (reference/kompot.md, section 1.2).
//!
//! With `Lp Lp' = K_UU + 1e-6 I` and `Phi = K_XU Lp^-T`, the log density is
//! `f = Phi z + mu`, and the MAP of `z` minimises the convex
//! `loss(z) = |z|^2/2 - sum_i [f_i - exp(f_i + V_i)] + const`, `V_i = d log r_i + C`
//! (the nearest-neighbour Poisson-process likelihood). Its Hessian `I + Phi' diag(lambda) Phi`
//! is explicit and positive definite, so Newton's method (with backtracking) reaches the
//! optimum Mellon's L-BFGS-B approximates. The diagonal Laplace variance of `z` is
//! `1 / H_jj`; the predictive variance at x is `k(x,x) - |a|^2 + sum_j a_j^2 s_j^2`,
//! `a = Lp^-1 k_U(x)`.

use super::{
    cholesky, kernel_matrix, landmark_factor, matern52_self, nn_log_density, par, solve_lower,
    Points,
};
use faer::linalg::matmul::matmul;
use faer::{Accum, Col, Mat};
use rayon::prelude::*;

const MAX_NEWTON: usize = 200;
/// Newton stops when half the squared Newton decrement falls below this...
const NEWTON_TOL: f64 = 1e-20;
/// ...or takes one last full step when it is below this: convergence is quadratic, so the
/// error left is of the order of its square, and the loss no longer resolves the step.
const NEWTON_SETTLED: f64 = 1e-12;
/// Floor of the Hessian diagonal in the Laplace variance (Mellon's).
const HESSIAN_FLOOR: f64 = 1e-8;

/// The heuristics of one density: fractal dimension, prior mean, length scale.
#[derive(Clone, Copy, Debug)]
pub struct DensityParams {
    pub dimension: f64,
    pub mu: f64,
    pub length_scale: f64,
}

/// A fitted density: what prediction needs.
pub struct DensityFit {
    pub params: DensityParams,
    /// Lower Cholesky factor of `K_UU + jitter I`.
    pub lp: Mat<f64>,
    /// MAP of the whitened latent vector.
    pub z: Vec<f64>,
    /// Laplace variances of `z`.
    pub z_var: Vec<f64>,
    /// Log of the number of training cells (the density is normalised by it).
    pub log_n: f64,
    pub newton_iterations: usize,
}

/// Prediction at some points: normalised log density and its variance.
pub struct DensityPrediction {
    pub log_density: Vec<f64>,
    pub variance: Vec<f64>,
}

/// Fits the density of `cells` with landmarks `landmarks`; `nn` are the cells' nearest-
/// neighbour distances.
pub fn fit_density(
    cells: &Points,
    nn: &[f64],
    landmarks: &Points,
    params: DensityParams,
) -> Result<DensityFit, String> {
    let (n, m) = (cells.n, landmarks.n);
    let lp = landmark_factor(landmarks, params.length_scale)?;
    // Phi' (m x n): column i is Lp^-1 k_U(x_i).
    let phi_t = solve_lower(
        lp.as_ref(),
        kernel_matrix(landmarks, cells, params.length_scale),
    );
    let d = params.dimension;
    let mle = nn_log_density(nn, d);
    // V_i = d log r_i + C with C = d/2 log(pi) - lgamma(d/2 + 1): exactly -mle_i.
    let offset: Vec<f64> = mle.iter().map(|v| -v).collect();
    let target = Col::from_fn(n, |i| mle[i] - params.mu);

    // Ridge start: (Phi'Phi + I)^-1 Phi' (mle - mu).
    let mut gram = Mat::<f64>::zeros(m, m);
    matmul(
        gram.as_mut(),
        Accum::Replace,
        phi_t.as_ref(),
        phi_t.transpose(),
        1.0,
        par(),
    );
    for j in 0..m {
        gram[(j, j)] += 1.0;
    }
    let rhs = &phi_t * &target;
    let mut z = spd_solve(gram, rhs.as_mat().to_owned())?;

    let objective = |z: &Mat<f64>| -> (f64, Vec<f64>) {
        let f = phi_t.transpose() * z;
        let lambda: Vec<f64> = (0..n)
            .map(|i| (f[(i, 0)] + params.mu + offset[i]).exp())
            .collect();
        let zz: f64 = (0..m).map(|j| z[(j, 0)] * z[(j, 0)]).sum();
        let lik: f64 = (0..n).map(|i| f[(i, 0)] + params.mu - lambda[i]).sum();
        (0.5 * zz - lik, lambda)
    };

    let (mut loss, mut lambda) = objective(&z);
    let mut iterations = 0;
    for it in 0..MAX_NEWTON {
        iterations = it + 1;
        let grad = gradient(&phi_t, &z, &lambda);
        let hess = hessian(&phi_t, &lambda);
        let step = spd_solve(hess, grad.clone())?;
        let decrement: f64 = (0..m).map(|j| grad[(j, 0)] * step[(j, 0)]).sum();
        if decrement / 2.0 < NEWTON_TOL {
            break;
        }
        if decrement < NEWTON_SETTLED {
            // Changes of the loss are below its rounding here: take the full step.
            z = Mat::from_fn(m, 1, |j, _| z[(j, 0)] - step[(j, 0)]);
            lambda = objective(&z).1;
            break;
        }
        let mut t = 1.0;
        loop {
            let trial = Mat::from_fn(m, 1, |j, _| z[(j, 0)] - t * step[(j, 0)]);
            let (trial_loss, trial_lambda) = objective(&trial);
            if trial_loss.is_finite() && trial_loss <= loss - 1e-4 * t * decrement {
                z = trial;
                loss = trial_loss;
                lambda = trial_lambda;
                break;
            }
            t /= 2.0;
            if t < 1e-12 {
                // No further decrease within rounding: at the optimum.
                break;
            }
        }
        if t < 1e-12 {
            break;
        }
    }

    let z_var: Vec<f64> = (0..m)
        .into_par_iter()
        .map(|j| {
            let h = 1.0
                + (0..n)
                    .map(|i| phi_t[(j, i)] * phi_t[(j, i)] * lambda[i])
                    .sum::<f64>();
            1.0 / h.max(HESSIAN_FLOOR)
        })
        .collect();
    Ok(DensityFit {
        params,
        lp,
        z: (0..m).map(|j| z[(j, 0)]).collect(),
        z_var,
        log_n: (n as f64).ln(),
        newton_iterations: iterations,
    })
}

fn gradient(phi_t: &Mat<f64>, z: &Mat<f64>, lambda: &[f64]) -> Mat<f64> {
    let resid = Col::from_fn(lambda.len(), |i| 1.0 - lambda[i]);
    let g = phi_t * &resid;
    Mat::from_fn(z.nrows(), 1, |j, _| z[(j, 0)] - g[j])
}

fn hessian(phi_t: &Mat<f64>, lambda: &[f64]) -> Mat<f64> {
    let (m, n) = (phi_t.nrows(), phi_t.ncols());
    let scaled = Mat::from_fn(m, n, |j, i| phi_t[(j, i)] * lambda[i].sqrt());
    let mut h = Mat::<f64>::zeros(m, m);
    matmul(
        h.as_mut(),
        Accum::Replace,
        scaled.as_ref(),
        scaled.transpose(),
        1.0,
        par(),
    );
    for j in 0..m {
        h[(j, j)] += 1.0;
    }
    h
}

/// What [`fit_and_predict`] takes from the user: `None` for Mellon's heuristics.
#[derive(Clone, Copy, Debug)]
pub struct DensityOptions {
    pub dimension: Option<f64>,
    pub length_scale: Option<f64>,
    /// Factor of the heuristic length scale (see [`super::length_scale`]).
    pub ls_factor: f64,
    /// Seed of the fractal-dimension estimate.
    pub seed: u64,
    pub with_variance: bool,
}

/// Mellon's pipeline: the density of `cells` with `landmarks` (dimension, prior mean and
/// length scale from the heuristics unless given), predicted at `at`.
pub fn fit_and_predict(
    cells: &Points,
    landmarks: &Points,
    at: &Points,
    opts: DensityOptions,
) -> Result<(DensityPrediction, DensityFit), String> {
    let nn = super::nn_distances(cells)?;
    let dimension = match opts.dimension {
        Some(d) => d,
        None => super::fractal_dimension(cells, opts.seed)?,
    };
    let length_scale = opts
        .length_scale
        .unwrap_or_else(|| super::length_scale(&nn, opts.ls_factor));
    let params = DensityParams {
        dimension,
        mu: super::prior_mean(&nn, dimension),
        length_scale,
    };
    let fit = fit_density(cells, &nn, landmarks, params)?;
    Ok((fit.predict(landmarks, at, opts.with_variance), fit))
}

fn spd_solve(a: Mat<f64>, b: Mat<f64>) -> Result<Mat<f64>, String> {
    let l = cholesky(a.as_ref(), "the Newton system of the density")?;
    let y = solve_lower(l.as_ref(), b);
    Ok(super::solve_lower_transposed(l.as_ref(), y))
}

impl DensityFit {
    /// Normalised log density and its variance at `at`; `with_variance = false` skips the
    /// variance (sample-variance fits need only the mean).
    pub fn predict(
        &self,
        landmarks: &Points,
        at: &Points,
        with_variance: bool,
    ) -> DensityPrediction {
        let ls = self.params.length_scale;
        let k = kernel_matrix(landmarks, at, ls);
        let shift = self.params.mu - self.log_n;
        if !with_variance {
            // k_U(x)' w with w = Lp^-T z: no solve per point.
            let w = super::solve_lower_transposed(
                self.lp.as_ref(),
                Mat::from_fn(landmarks.n, 1, |j, _| self.z[j]),
            );
            let mean = k.transpose() * w.col(0);
            return DensityPrediction {
                log_density: (0..at.n).map(|i| mean[i] + shift).collect(),
                variance: vec![f64::NAN; at.n],
            };
        }
        let a = solve_lower(self.lp.as_ref(), k);
        let m = landmarks.n;
        let k0 = matern52_self(ls);
        let (log_density, variance): (Vec<f64>, Vec<f64>) = (0..at.n)
            .into_par_iter()
            .map(|i| {
                let col = a.col(i);
                let mean: f64 = (0..m).map(|j| col[j] * self.z[j]).sum::<f64>() + shift;
                let var = k0
                    - (0..m)
                        .map(|j| col[j] * col[j] * (1.0 - self.z_var[j]))
                        .sum::<f64>();
                (mean, var)
            })
            .unzip();
        DensityPrediction {
            log_density,
            variance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{kmeans_landmarks, nn_distances, prior_mean};
    use super::*;
    use rand::Rng;

    #[test]
    fn newton_reaches_a_stationary_point() {
        let mut rng = crate::rng::stream(5, &[]);
        let coords: Vec<f64> = (0..600).map(|_| rng.random::<f64>() * 3.0).collect();
        let cells = Points {
            coords,
            n: 300,
            dim: 2,
        };
        let nn = nn_distances(&cells).unwrap();
        let landmarks = kmeans_landmarks(&cells, 40, 20, 1);
        let params = DensityParams {
            dimension: 2.0,
            mu: prior_mean(&nn, 2.0),
            length_scale: super::super::length_scale(&nn, 10.0),
        };
        let fit = fit_density(&cells, &nn, &landmarks, params).unwrap();
        let pred = fit.predict(&landmarks, &cells, true);
        assert!(pred.variance.iter().all(|v| *v > 0.0));
        assert!(pred.log_density.iter().all(|v| v.is_finite()));
        assert!(fit.newton_iterations < 50);
    }

    #[test]
    fn pipeline_uses_the_heuristics_unless_given() {
        let mut rng = crate::rng::stream(7, &[]);
        let coords: Vec<f64> = (0..400).map(|_| rng.random::<f64>() * 3.0).collect();
        let cells = Points {
            coords,
            n: 200,
            dim: 2,
        };
        let landmarks = kmeans_landmarks(&cells, 30, 20, 1);
        let opts = DensityOptions {
            dimension: None,
            length_scale: None,
            ls_factor: 10.0,
            seed: 3,
            with_variance: false,
        };
        let (pred, fit) = fit_and_predict(&cells, &landmarks, &cells, opts).unwrap();
        let nn = nn_distances(&cells).unwrap();
        let d = super::super::fractal_dimension(&cells, 3).unwrap();
        assert_eq!(fit.params.dimension, d);
        assert_eq!(fit.params.mu, prior_mean(&nn, d));
        assert_eq!(
            fit.params.length_scale,
            super::super::length_scale(&nn, 10.0)
        );
        assert!(pred.variance.iter().all(|v| v.is_nan()));
        let given = DensityOptions {
            dimension: Some(2.0),
            length_scale: Some(0.5),
            with_variance: true,
            ..opts
        };
        let (pred, fit) = fit_and_predict(&cells, &landmarks, &landmarks, given).unwrap();
        assert_eq!((fit.params.dimension, fit.params.length_scale), (2.0, 0.5));
        assert_eq!(pred.log_density.len(), landmarks.n);
        assert!(pred.variance.iter().all(|v| *v > 0.0));
    }
}

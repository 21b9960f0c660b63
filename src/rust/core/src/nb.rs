//! Negative binomial regression with log-linear models for the mean and the size:
//! y ~ NB(mu, r), Var = mu + mu^2 / r, log(mu) = X beta + offset, log(r) = Z gamma
//! (glmmTMB's `nbinom2` with a `dispformula`). Each gene is fitted to the maximum of the
//! full log-likelihood by Newton's method on (beta, gamma) jointly, with step halving on
//! the log-likelihood, from a Poisson fit and a moment estimate of the size.

use crate::dist;
use rayon::prelude::*;

/// Largest log size before a gene is declared at the Poisson limit (r of about 5e8).
const LOG_SIZE_LIMIT: f64 = 20.0;
/// Smallest log mean before a gene is declared separated (mu of about 2e-9).
const LOG_MEAN_LIMIT: f64 = -20.0;
/// Largest change of any parameter in one Newton step.
const MAX_STEP: f64 = 5.0;
/// Counts below this use exact finite sums for the gamma-function differences.
const SMALL_COUNT: usize = 16;

/// How the fit of one gene ended. The codes are shared with the R side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    Converged = 0,
    IterationLimit = 1,
    AllZero = 2,
    Separation = 3,
    PoissonLimit = 4,
    NoAscent = 5,
}

/// Fit settings.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub max_iter: usize,
    /// Convergence when the Newton decrement g' H^-1 g falls below this (log-likelihood units).
    pub tol: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_iter: 100,
            tol: 1e-12,
        }
    }
}

/// The fit of one gene: `theta` = (beta, gamma), `vcov` row-major k x k (NaN where unknown).
#[derive(Clone, Debug)]
pub struct GeneFit {
    pub theta: Vec<f64>,
    pub vcov: Vec<f64>,
    pub loglik: f64,
    pub iterations: usize,
    pub status: Status,
}

/// Designs shared by every gene: X (n x p) and Z (n x q), column-major as R stores them.
pub struct Model {
    n: usize,
    p: usize,
    q: usize,
    /// Row-major n x (p + q): observation i's mean then dispersion covariates.
    rows: Vec<f64>,
    offset: Vec<f64>,
    /// Least-squares coefficients of a constant on Z: gamma start = log(r0) * this.
    constant_on_z: Vec<f64>,
    /// log(y!) for y < SMALL_COUNT.
    log_factorial: [f64; SMALL_COUNT],
}

impl Model {
    pub fn new(x: &[f64], p: usize, z: &[f64], q: usize, offset: &[f64]) -> Result<Self, String> {
        let n = offset.len();
        if x.len() != n * p || z.len() != n * q {
            return Err("mean and dispersion designs need one row per observation".into());
        }
        if p == 0 || q == 0 {
            return Err("mean and dispersion designs need at least one column".into());
        }
        if x.iter().chain(z).chain(offset).any(|v| !v.is_finite()) {
            return Err("designs and offset must be finite".into());
        }
        let k = p + q;
        let mut rows = vec![0.0; n * k];
        for i in 0..n {
            for j in 0..p {
                rows[i * k + j] = x[j * n + i];
            }
            for j in 0..q {
                rows[i * k + p + j] = z[j * n + i];
            }
        }
        let mut ztz = vec![0.0; q * q];
        let mut zt1 = vec![0.0; q];
        for i in 0..n {
            let zi = &rows[i * k + p..(i + 1) * k];
            for a in 0..q {
                zt1[a] += zi[a];
                for b in 0..q {
                    ztz[a * q + b] += zi[a] * zi[b];
                }
            }
        }
        let chol = cholesky(&ztz, q).ok_or("the dispersion design is rank deficient")?;
        let constant_on_z = chol_solve(&chol, q, &zt1);
        let mut log_factorial = [0.0; SMALL_COUNT];
        for y in 1..SMALL_COUNT {
            log_factorial[y] = log_factorial[y - 1] + (y as f64).ln();
        }
        Ok(Model {
            n,
            p,
            q,
            rows,
            offset: offset.to_vec(),
            constant_on_z,
            log_factorial,
        })
    }

    pub fn n_params(&self) -> usize {
        self.p + self.q
    }

    /// Fits every gene (row) of a column-major block `n_genes` x n, in parallel.
    pub fn fit_block(&self, block: &[f64], n_genes: usize, opts: Options) -> Vec<GeneFit> {
        (0..n_genes)
            .into_par_iter()
            .map(|g| {
                let y: Vec<f64> = (0..self.n).map(|i| block[i * n_genes + g]).collect();
                self.fit(&y, opts)
            })
            .collect()
    }

    /// Fits one gene's counts `y` (whole numbers >= 0, one per observation).
    pub fn fit(&self, y: &[f64], opts: Options) -> GeneFit {
        let k = self.n_params();
        if y.iter().all(|&v| v == 0.0) {
            return self.unfitted(Status::AllZero, 0, 0.0);
        }
        let (beta, mu_sq, excess) = self.poisson_start(y);
        let r0 = if excess > 1e-8 * mu_sq {
            (mu_sq / excess).clamp(1e-2, 1e6)
        } else {
            1e6
        };
        let mut theta = beta;
        theta.extend(self.constant_on_z.iter().map(|c| c * r0.ln()));
        let mut cur = self.evaluate(y, &theta);
        let mut status = Status::IterationLimit;
        let mut iterations = 0;
        while iterations < opts.max_iter {
            if cur.max_log_size > LOG_SIZE_LIMIT {
                return self.poisson_limit(y, &theta, iterations);
            }
            if cur.min_log_mean < LOG_MEAN_LIMIT {
                return self.unfitted(Status::Separation, iterations, f64::NAN);
            }
            let step = newton_step(&cur.neg_hessian, &cur.gradient, k);
            let decrement: f64 = step.iter().zip(&cur.gradient).map(|(d, g)| d * g).sum();
            if decrement < opts.tol {
                status = Status::Converged;
                break;
            }
            iterations += 1;
            let largest = step.iter().fold(0.0f64, |m, d| m.max(d.abs()));
            let mut t = if largest > MAX_STEP {
                MAX_STEP / largest
            } else {
                1.0
            };
            let floor = cur.loglik - 1e-12 * (1.0 + cur.loglik.abs());
            let mut accepted = None;
            for _ in 0..40 {
                let trial: Vec<f64> = theta.iter().zip(&step).map(|(a, d)| a + t * d).collect();
                let at = self.evaluate(y, &trial);
                if at.loglik.is_finite() && at.loglik >= floor {
                    accepted = Some((trial, at));
                    break;
                }
                t *= 0.5;
            }
            match accepted {
                Some((trial, at)) => {
                    theta = trial;
                    cur = at;
                }
                None => {
                    status = if decrement < 1e-6 {
                        Status::Converged
                    } else {
                        Status::NoAscent
                    };
                    break;
                }
            }
        }
        if cur.max_log_size > LOG_SIZE_LIMIT {
            return self.poisson_limit(y, &theta, iterations);
        }
        if cur.min_log_mean < LOG_MEAN_LIMIT {
            return self.unfitted(Status::Separation, iterations, f64::NAN);
        }
        let vcov = invert_spd(&cur.neg_hessian, k).unwrap_or_else(|| vec![f64::NAN; k * k]);
        GeneFit {
            theta,
            vcov,
            loglik: cur.loglik,
            iterations,
            status,
        }
    }

    fn unfitted(&self, status: Status, iterations: usize, loglik: f64) -> GeneFit {
        let k = self.n_params();
        GeneFit {
            theta: vec![f64::NAN; k],
            vcov: vec![f64::NAN; k * k],
            loglik,
            iterations,
            status,
        }
    }

    fn linear_predictors(&self, i: usize, theta: &[f64]) -> (f64, f64) {
        let k = self.n_params();
        let row = &self.rows[i * k..(i + 1) * k];
        let eta = self.offset[i] + dot(&row[..self.p], &theta[..self.p]);
        let zeta = dot(&row[self.p..], &theta[self.p..]);
        (eta, zeta)
    }

    /// A few Poisson IRLS steps for beta; returns beta and the moment sums
    /// (sum mu^2, sum((y - mu)^2 - mu)) at the Poisson means.
    fn poisson_start(&self, y: &[f64]) -> (Vec<f64>, f64, f64) {
        let (beta, _) = self.poisson_irls(y, None, 4);
        let (mut mu_sq, mut excess) = (0.0, 0.0);
        for (i, &yi) in y.iter().enumerate() {
            let eta = self.offset[i] + dot(self.rows_x(i), &beta);
            let mu = eta.clamp(-50.0, 50.0).exp();
            mu_sq += mu * mu;
            excess += (yi - mu) * (yi - mu) - mu;
        }
        (beta, mu_sq, excess)
    }

    fn rows_x(&self, i: usize) -> &[f64] {
        let k = self.n_params();
        &self.rows[i * k..i * k + self.p]
    }

    /// Poisson IRLS from `start` (or from mu = y + 0.1): beta and the information X'WX.
    fn poisson_irls(&self, y: &[f64], start: Option<&[f64]>, iters: usize) -> (Vec<f64>, Vec<f64>) {
        let p = self.p;
        let mut beta = start.map(<[f64]>::to_vec);
        let mut info = vec![0.0; p * p];
        let mut last_ll = f64::NEG_INFINITY;
        for _ in 0..iters {
            info.iter_mut().for_each(|v| *v = 0.0);
            let mut rhs = vec![0.0; p];
            let mut ll = 0.0;
            for (i, &yi) in y.iter().enumerate() {
                let x = self.rows_x(i);
                let eta = match &beta {
                    Some(b) => (self.offset[i] + dot(x, b)).clamp(-50.0, 50.0),
                    None => (yi + 0.1).ln(),
                };
                let mu = eta.exp();
                ll += yi * eta - mu;
                let working = eta - self.offset[i] + (yi - mu) / mu;
                for a in 0..p {
                    rhs[a] += mu * x[a] * working;
                    for b in 0..=a {
                        info[a * p + b] += mu * x[a] * x[b];
                    }
                }
            }
            symmetrize(&mut info, p);
            let converged = beta.is_some() && (ll - last_ll).abs() < 1e-12 * (1.0 + ll.abs());
            last_ll = ll;
            if converged {
                break;
            }
            match cholesky(&info, p) {
                Some(c) => beta = Some(chol_solve(&c, p, &rhs)),
                None => break,
            }
        }
        (beta.unwrap_or_else(|| vec![0.0; p]), info)
    }

    /// The counts show no overdispersion (r -> infinity): the mean coefficients are the
    /// Poisson fit, the dispersion coefficients unknown, the log-likelihood Poisson's.
    fn poisson_limit(&self, y: &[f64], theta: &[f64], iterations: usize) -> GeneFit {
        let (p, k) = (self.p, self.n_params());
        let (beta, info) = self.poisson_irls(y, Some(&theta[..p]), 100);
        let mut loglik = 0.0;
        let mut min_eta = f64::INFINITY;
        for (i, &yi) in y.iter().enumerate() {
            let eta = self.offset[i] + dot(self.rows_x(i), &beta);
            min_eta = min_eta.min(eta);
            loglik += yi * eta - eta.exp() - log_factorial(yi, &self.log_factorial);
        }
        if min_eta < LOG_MEAN_LIMIT {
            return self.unfitted(Status::Separation, iterations, f64::NAN);
        }
        let mut out = self.unfitted(Status::PoissonLimit, iterations, loglik);
        out.theta[..p].copy_from_slice(&beta);
        if let Some(inv) = invert_spd(&info, p) {
            for a in 0..p {
                for b in 0..p {
                    out.vcov[a * k + b] = inv[a * p + b];
                }
            }
        }
        out
    }

    /// Log-likelihood, gradient and negative Hessian at `theta`.
    pub fn evaluate(&self, y: &[f64], theta: &[f64]) -> Evaluation {
        let (p, k) = (self.p, self.n_params());
        let mut e = Evaluation {
            loglik: 0.0,
            gradient: vec![0.0; k],
            neg_hessian: vec![0.0; k * k],
            min_log_mean: f64::INFINITY,
            max_log_size: f64::NEG_INFINITY,
        };
        let h = &mut e.neg_hessian;
        for (i, &yi) in y.iter().enumerate() {
            let row = &self.rows[i * k..(i + 1) * k];
            let (eta, zeta) = self.linear_predictors(i, theta);
            e.min_log_mean = e.min_log_mean.min(eta);
            e.max_log_size = e.max_log_size.max(zeta);
            let (mu, r) = (eta.exp(), zeta.exp());
            let s = r + mu;
            let t = self.count_terms(yi, r);
            let log1p_ratio = (mu / r).ln_1p();
            e.loglik += t.log_ratio - r * log1p_ratio + yi * (eta - s.ln());
            let resid = (yi - mu) / s;
            let g_eta = r * resid;
            let g_zeta = r * (t.digamma_diff - log1p_ratio - resid);
            let w = r * mu / (s * s);
            let h_ee = w * (r + yi);
            let h_ez = -w * (yi - mu);
            let h_zz = -(g_zeta + r * r * t.trigamma_diff + r * mu / s + r * r * resid / s);
            for a in 0..k {
                let (ga, wa_x, wa_z) = if a < p {
                    (g_eta, h_ee, h_ez)
                } else {
                    (g_zeta, h_ez, h_zz)
                };
                e.gradient[a] += ga * row[a];
                let ra = row[a];
                for b in 0..=a {
                    let wb = if b < p { wa_x } else { wa_z };
                    h[a * k + b] += wb * ra * row[b];
                }
            }
        }
        symmetrize(h, k);
        e
    }

    /// lgamma(y + r) - lgamma(r) - lgamma(y + 1), digamma(y + r) - digamma(r) and
    /// trigamma(y + r) - trigamma(r), by finite sums for small whole y.
    fn count_terms(&self, y: f64, r: f64) -> CountTerms {
        if y == 0.0 {
            return CountTerms::default();
        }
        let small = y < SMALL_COUNT as f64 && r < 1e12;
        if small {
            let m = y as usize;
            let (mut prod, mut dg, mut tg) = (1.0, 0.0, 0.0);
            for j in 0..m {
                let v = r + j as f64;
                prod *= v;
                dg += 1.0 / v;
                tg -= 1.0 / (v * v);
            }
            return CountTerms {
                log_ratio: prod.ln() - self.log_factorial[m],
                digamma_diff: dg,
                trigamma_diff: tg,
            };
        }
        CountTerms {
            log_ratio: -dist::ln_beta(y, r) - y.ln(),
            digamma_diff: dist::digamma(y + r) - dist::digamma(r),
            trigamma_diff: dist::trigamma(y + r) - dist::trigamma(r),
        }
    }
}

/// What one pass over a gene's observations gives.
pub struct Evaluation {
    pub loglik: f64,
    pub gradient: Vec<f64>,
    /// Row-major k x k.
    pub neg_hessian: Vec<f64>,
    pub min_log_mean: f64,
    pub max_log_size: f64,
}

#[derive(Default)]
struct CountTerms {
    log_ratio: f64,
    digamma_diff: f64,
    trigamma_diff: f64,
}

fn log_factorial(y: f64, table: &[f64; SMALL_COUNT]) -> f64 {
    if y < SMALL_COUNT as f64 {
        table[y as usize]
    } else {
        dist::ln_gamma(y + 1.0)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn symmetrize(m: &mut [f64], k: usize) {
    for a in 0..k {
        for b in 0..a {
            m[b * k + a] = m[a * k + b];
        }
    }
}

/// Lower Cholesky factor of a symmetric positive definite row-major k x k matrix.
fn cholesky(m: &[f64], k: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; k * k];
    for a in 0..k {
        for b in 0..=a {
            let s: f64 = m[a * k + b] - (0..b).map(|c| l[a * k + c] * l[b * k + c]).sum::<f64>();
            if a == b {
                if s.is_nan() || s <= 1e-13 * m[a * k + a].abs().max(1e-300) {
                    return None;
                }
                l[a * k + a] = s.sqrt();
            } else {
                l[a * k + b] = s / l[b * k + b];
            }
        }
    }
    Some(l)
}

fn chol_solve(l: &[f64], k: usize, rhs: &[f64]) -> Vec<f64> {
    let mut v = rhs.to_vec();
    for a in 0..k {
        let s: f64 = (0..a).map(|c| l[a * k + c] * v[c]).sum();
        v[a] = (v[a] - s) / l[a * k + a];
    }
    for a in (0..k).rev() {
        let s: f64 = (a + 1..k).map(|c| l[c * k + a] * v[c]).sum();
        v[a] = (v[a] - s) / l[a * k + a];
    }
    v
}

fn invert_spd(m: &[f64], k: usize) -> Option<Vec<f64>> {
    let l = cholesky(m, k)?;
    let mut inv = vec![0.0; k * k];
    for c in 0..k {
        let mut e = vec![0.0; k];
        e[c] = 1.0;
        let col = chol_solve(&l, k, &e);
        for a in 0..k {
            inv[a * k + c] = col[a];
        }
    }
    Some(inv)
}

/// Newton direction H^-1 g; where H is not positive definite (far from the optimum, the
/// dispersion block can be convex), a ridge is added until it is (Levenberg).
fn newton_step(h: &[f64], g: &[f64], k: usize) -> Vec<f64> {
    if let Some(l) = cholesky(h, k) {
        return chol_solve(&l, k, g);
    }
    let scale = (0..k)
        .fold(0.0f64, |m, a| m.max(h[a * k + a].abs()))
        .max(1e-8);
    let mut ridge = 1e-8 * scale;
    loop {
        let mut damped = h.to_vec();
        for a in 0..k {
            damped[a * k + a] += ridge;
        }
        if let Some(l) = cholesky(&damped, k) {
            return chol_solve(&l, k, g);
        }
        ridge *= 10.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A deterministic pseudo-random stream (splitmix64), so tests need no crate.
    struct Stream(u64);
    impl Stream {
        fn uniform(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }
        fn gamma(&mut self, shape: f64) -> f64 {
            // Marsaglia-Tsang, boosted for shape < 1.
            if shape < 1.0 {
                return self.gamma(shape + 1.0) * self.uniform().powf(1.0 / shape);
            }
            let d = shape - 1.0 / 3.0;
            let c = 1.0 / (9.0 * d).sqrt();
            loop {
                let (u1, u2) = (self.uniform(), self.uniform());
                let x =
                    (-2.0 * u1.max(1e-300).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                let v = (1.0 + c * x).powi(3);
                if v > 0.0 && self.uniform().ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                    return d * v;
                }
            }
        }
        fn poisson(&mut self, lambda: f64) -> f64 {
            let (limit, mut k, mut prod) = ((-lambda).exp(), 0.0, self.uniform());
            while prod > limit {
                k += 1.0;
                prod *= self.uniform();
            }
            k
        }
        fn nb(&mut self, mu: f64, r: f64) -> f64 {
            let lambda = self.gamma(r) * mu / r;
            self.poisson(lambda)
        }
    }

    fn two_group_model(n: usize) -> (Model, Vec<f64>) {
        let x: Vec<f64> = (0..n)
            .map(|_| 1.0)
            .chain((0..n).map(|i| (i % 2) as f64))
            .collect();
        let model = Model::new(&x, 2, &x, 2, &vec![0.0; n]).unwrap();
        (model, x)
    }

    #[test]
    fn gradient_and_hessian_match_finite_differences() {
        let (model, _) = two_group_model(40);
        let mut s = Stream(7);
        let y: Vec<f64> = (0..40).map(|i| s.nb(3.0 + i as f64 % 3.0, 1.5)).collect();
        let theta = [0.9, 0.3, 0.2, -0.4];
        let e = model.evaluate(&y, &theta);
        let h = 1e-6;
        for a in 0..4 {
            let mut up = theta;
            let mut down = theta;
            up[a] += h;
            down[a] -= h;
            let (eu, ed) = (model.evaluate(&y, &up), model.evaluate(&y, &down));
            let fd = (eu.loglik - ed.loglik) / (2.0 * h);
            assert!(
                (fd - e.gradient[a]).abs() < 1e-5 * (1.0 + fd.abs()),
                "gradient {a}"
            );
            for b in 0..4 {
                let fd2 = -(eu.gradient[b] - ed.gradient[b]) / (2.0 * h);
                let an = e.neg_hessian[a * 4 + b];
                assert!(
                    (fd2 - an).abs() < 1e-5 * (1.0 + an.abs()),
                    "hessian {a},{b}"
                );
            }
        }
    }

    #[test]
    fn loglik_has_the_full_constant() {
        // dnbinom(c(0, 3, 20), size = 2, mu = 4, log = TRUE) in R, summed.
        let model = Model::new(&[1.0; 3], 1, &[1.0; 3], 1, &[0.0; 3]).unwrap();
        let e = model.evaluate(&[0.0, 3.0, 20.0], &[4f64.ln(), 2f64.ln()]);
        assert!(
            (e.loglik - -11.486_554_419_653_125).abs() < 1e-12,
            "{}",
            e.loglik
        );
    }

    #[test]
    fn intercept_only_optimum_is_the_sample_mean() {
        let model = Model::new(&[1.0; 200], 1, &[1.0; 200], 1, &[0.0; 200]).unwrap();
        let mut s = Stream(11);
        let y: Vec<f64> = (0..200).map(|_| s.nb(5.0, 2.0)).collect();
        let fit = model.fit(&y, Options::default());
        assert_eq!(fit.status, Status::Converged);
        let mean = y.iter().sum::<f64>() / 200.0;
        assert!((fit.theta[0] - mean.ln()).abs() < 1e-8);
        let e = model.evaluate(&y, &fit.theta);
        for a in 0..2 {
            assert!(e.gradient[a].abs() < 1e-6 * e.neg_hessian[a * 2 + a].sqrt());
        }
    }

    #[test]
    fn recovers_parameters_with_dispersion_covariates() {
        let n = 20_000;
        let (model, x) = two_group_model(n);
        let mut s = Stream(3);
        let y: Vec<f64> = (0..n)
            .map(|i| {
                let g = x[n + i];
                s.nb((1.0 + 0.5 * g).exp(), (0.5 - 1.0 * g).exp())
            })
            .collect();
        let fit = model.fit(&y, Options::default());
        assert_eq!(fit.status, Status::Converged);
        let truth = [1.0, 0.5, 0.5, -1.0];
        for (a, t) in truth.iter().enumerate() {
            let se = fit.vcov[a * 4 + a].sqrt();
            assert!((fit.theta[a] - t).abs() < 4.0 * se, "{a}: {:?}", fit.theta);
        }
    }

    #[test]
    fn degenerate_genes_are_flagged() {
        let (model, _) = two_group_model(100);
        let zero = model.fit(&[0.0; 100], Options::default());
        assert_eq!(zero.status, Status::AllZero);
        // Group 1 never expressed: its mean coefficient runs to minus infinity.
        let mut s = Stream(5);
        let separated: Vec<f64> = (0..100)
            .map(|i| if i % 2 == 1 { 0.0 } else { s.nb(4.0, 3.0) })
            .collect();
        let sep = model.fit(&separated, Options::default());
        assert_eq!(sep.status, Status::Separation, "{sep:?}");
        // Constant counts: less variable than Poisson, so r -> infinity.
        let flat = model.fit(&[3.0; 100], Options::default());
        assert_eq!(flat.status, Status::PoissonLimit);
        assert!((flat.theta[0] - 3f64.ln()).abs() < 1e-8);
        assert!(flat.theta[2].is_nan());
    }

    #[test]
    fn blocks_fit_each_row() {
        let (model, _) = two_group_model(30);
        let mut s = Stream(9);
        let block: Vec<f64> = (0..60).map(|_| s.nb(2.0, 1.0)).collect();
        let fits = model.fit_block(&block, 2, Options::default());
        let y0: Vec<f64> = (0..30).map(|i| block[i * 2]).collect();
        assert_eq!(fits[0].theta, model.fit(&y0, Options::default()).theta);
    }
}

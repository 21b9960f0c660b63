//! Negative binomial regression with log-linear models for the mean and the size:
//! y ~ NB(mu, r), Var = mu + mu^2 / r, log(mu) = X beta + offset, log(r) = Z gamma
//! (glmmTMB's `nbinom2` with a `dispformula`). Each gene is fitted to the maximum of the
//! full log-likelihood by Newton's method on (beta, gamma) jointly, with step halving on
//! the log-likelihood, from a Poisson fit and a moment estimate of the size.

use crate::{dist, linalg, vmath};
use rayon::prelude::*;
use std::borrow::Cow;
use std::ops::Range;

/// A gene is at the Poisson limit when some observation's log size is above this.
const LOG_SIZE_LIMIT: f64 = 10.0;
/// ... and whose size is this many log units above its mean (mu^2 / r below 3e-7 mu).
const LOG_SIZE_OVER_MEAN_LIMIT: f64 = 15.0;
/// Log size beyond which a Newton step that raises it is tried out past the limit.
const TAIL_LOG_SIZE: f64 = 6.0;
/// Variance of a log-size coefficient above which the log-likelihood is flat in it (a
/// standard error of 1e4 log units).
const FLAT_SIZE_VARIANCE: f64 = 1e8;
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

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Converged,
        Status::IterationLimit,
        Status::AllZero,
        Status::Separation,
        Status::PoissonLimit,
        Status::NoAscent,
    ];

    pub fn text(self) -> Option<&'static str> {
        match self {
            Status::Converged => None,
            Status::IterationLimit => Some("iteration limit reached"),
            Status::AllZero => Some("all counts are zero"),
            Status::Separation => Some("separation: some fitted means run to zero"),
            Status::PoissonLimit => Some(
                "Poisson limit: no overdispersion in some or all cells (size runs to infinity)",
            ),
            Status::NoAscent => Some("no ascent: step halving failed"),
        }
    }
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
    /// Column-major n x (p + q): the same, column by column.
    cols: Vec<f64>,
    offset: Vec<f64>,
    /// Least-squares coefficients of a constant on Z: gamma start = log(r0) * this.
    constant_on_z: Vec<f64>,
    /// log(y!) for y < SMALL_COUNT.
    log_factorial: [f64; SMALL_COUNT],
    /// When Z has few distinct rows (factors, `~ 1`), the groups of observations sharing
    /// one, whose size is then computed once per group.
    z_groups: Option<ZGroups>,
    /// The model holds the observations grouped (see [`ZGroups`]): the caller's index of
    /// each, or `None` when that is their own order. Every per-observation array (designs,
    /// offset, a gene's counts) is in this order.
    order: Option<Vec<usize>>,
}

/// The distinct rows of Z, each with a contiguous run of observations.
struct ZGroups {
    /// Row-major distinct rows of Z.
    rows: Vec<f64>,
    /// Group g's observations are `starts[g]..starts[g + 1]` (in the model's order).
    starts: Vec<usize>,
}

const MAX_Z_GROUPS: usize = 64;

/// The distinct rows of Z (row-major `rows`, n x k, Z after the p columns of X) and the
/// group of each observation, when there are at most [`MAX_Z_GROUPS`].
fn z_groups(rows: &[f64], n: usize, k: usize, p: usize) -> Option<(ZGroups, Vec<usize>)> {
    let mut distinct: Vec<&[f64]> = Vec::new();
    let mut sizes: Vec<usize> = Vec::new();
    let mut of_obs = Vec::with_capacity(n);
    for i in 0..n {
        let z = &rows[i * k + p..(i + 1) * k];
        let g = match distinct.iter().position(|d| *d == z) {
            Some(g) => g,
            None => {
                if distinct.len() == MAX_Z_GROUPS {
                    return None;
                }
                distinct.push(z);
                sizes.push(0);
                distinct.len() - 1
            }
        };
        sizes[g] += 1;
        of_obs.push(g);
    }
    let mut starts = vec![0];
    for size in sizes {
        starts.push(starts[starts.len() - 1] + size);
    }
    let groups = ZGroups {
        rows: distinct.concat(),
        starts,
    };
    Some((groups, of_obs))
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
        // Observation i of the model is the caller's order[i]: grouped by their row of Z.
        let row_major = |order: Option<&[usize]>| {
            let mut rows = vec![0.0; n * k];
            for i in 0..n {
                let at = order.map_or(i, |o| o[i]);
                for j in 0..p {
                    rows[i * k + j] = x[j * n + at];
                }
                for j in 0..q {
                    rows[i * k + p + j] = z[j * n + at];
                }
            }
            rows
        };
        let mut rows = row_major(None);
        let (z_groups, order) = match z_groups(&rows, n, k, p) {
            Some((groups, of_obs)) => {
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by_key(|&i| of_obs[i]);
                let moved = order.iter().enumerate().any(|(i, &at)| i != at);
                (Some(groups), moved.then_some(order))
            }
            None => (None, None),
        };
        if let Some(order) = &order {
            rows = row_major(Some(order));
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
        let constant_on_z = linalg::cholesky_solve(&chol, q, &zt1);
        let mut log_factorial = [0.0; SMALL_COUNT];
        for y in 1..SMALL_COUNT {
            log_factorial[y] = log_factorial[y - 1] + (y as f64).ln();
        }
        let at = |i: usize| order.as_ref().map_or(i, |o| o[i]);
        let cols = (0..k)
            .flat_map(|j| (0..n).map(move |i| (j, i)))
            .map(|(j, i)| {
                if j < p {
                    x[j * n + at(i)]
                } else {
                    z[(j - p) * n + at(i)]
                }
            })
            .collect();
        let offset = (0..n).map(|i| offset[at(i)]).collect();
        Ok(Model {
            cols,
            n,
            p,
            q,
            z_groups,
            order,
            rows,
            offset,
            constant_on_z,
            log_factorial,
        })
    }

    /// The caller's index of the model's observation `i`.
    fn caller_index(&self, i: usize) -> usize {
        self.order.as_ref().map_or(i, |o| o[i])
    }

    /// Values given one per observation in the caller's order, in the model's.
    fn in_model_order<'a>(&self, values: &'a [f64]) -> Cow<'a, [f64]> {
        match &self.order {
            None => Cow::Borrowed(values),
            Some(order) => Cow::Owned(order.iter().map(|&i| values[i]).collect()),
        }
    }

    pub fn n_params(&self) -> usize {
        self.p + self.q
    }

    /// Fits genes `rows` of a column-major matrix `values` with `nrow` rows (genes) and one
    /// column per observation, in parallel; read in place, so a dense matrix is not copied.
    pub fn fit_rows(
        &self,
        values: &[f64],
        nrow: usize,
        rows: Range<usize>,
        opts: Options,
    ) -> Vec<GeneFit> {
        rows.into_par_iter()
            .map(|g| {
                if crate::cancelled() {
                    return self.unfitted(Status::NoAscent, 0, f64::NAN);
                }
                let y: Vec<f64> = (0..self.n)
                    .map(|i| values[self.caller_index(i) * nrow + g])
                    .collect();
                self.fit_in_model_order(&y, opts)
            })
            .collect()
    }

    /// Fits one gene's counts `y` (whole numbers >= 0, one per observation).
    pub fn fit(&self, y: &[f64], opts: Options) -> GeneFit {
        self.fit_in_model_order(&self.in_model_order(y), opts)
    }

    fn fit_in_model_order(&self, y: &[f64], opts: Options) -> GeneFit {
        let k = self.n_params();
        if y.iter().all(|&v| v == 0.0) {
            return self.unfitted(Status::AllZero, 0, 0.0);
        }
        let mut gene = self.gene(y);
        let start = self.poisson_irls(y, None, 4);
        let (mu_sq, excess) = start.moments;
        let r0 = if excess > 1e-8 * mu_sq {
            (mu_sq / excess).clamp(1e-2, 10.0)
        } else {
            10.0
        };
        let mut theta = start.beta;
        theta.extend(self.constant_on_z.iter().map(|c| c * r0.ln()));
        let mut cur = self.evaluate_gene(&mut gene, &theta);
        let mut status = Status::IterationLimit;
        let mut iterations = 0;
        // Some observation's size may pass the Poisson limit on the way to a finite
        // optimum (a continuous dispersion covariate at its extremes), so the limit is only
        // declared where Newton's method stops short of convergence there, or where it
        // walks into the flat tail (`tail_jump`).
        while iterations < opts.max_iter {
            if cur.min_log_mean < LOG_MEAN_LIMIT {
                return self.unfitted(Status::Separation, iterations, f64::NAN);
            }
            let Some(step) = newton_step(&cur.neg_hessian, &cur.gradient, k) else {
                status = Status::NoAscent;
                break;
            };
            let decrement: f64 = step.iter().zip(&cur.gradient).map(|(d, g)| d * g).sum();
            if decrement < opts.tol {
                status = Status::Converged;
                break;
            }
            iterations += 1;
            if cur.max_log_size > TAIL_LOG_SIZE {
                if let Some((trial, at)) = self.tail_jump(&mut gene, &theta, &step, &cur) {
                    theta = trial;
                    cur = at;
                    continue;
                }
            }
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
                let at = self.evaluate_gene(&mut gene, &trial);
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
        if cur.min_log_mean < LOG_MEAN_LIMIT {
            return self.unfitted(Status::Separation, iterations, f64::NAN);
        }
        let vcov = invert_spd(&cur.neg_hessian, k).unwrap_or_else(|| vec![f64::NAN; k * k]);
        // Past the limit, a maximum is only finite if the log-likelihood curves there: on
        // the flat ridge toward r -> infinity a dispersion coefficient has no information.
        // A NaN variance (no inverse) counts as flat too.
        let flat = (self.p..k).any(|a| {
            let v = vcov[a * k + a];
            v.is_nan() || v > FLAT_SIZE_VARIANCE
        });
        if cur.poisson_margin > 0.0 && (status != Status::Converged || flat) {
            return self.poisson_limit(y, &theta, &cur, iterations);
        }
        GeneFit {
            theta,
            vcov,
            loglik: cur.loglik,
            iterations,
            status,
        }
    }

    /// Newton walks into the flat tail r -> infinity one unit of log r per iteration: try
    /// longer steps along the same direction until the Poisson limit, and go there only
    /// if the log-likelihood is higher there and still rising (Newton goes on from there,
    /// and comes back if the maximum is finite after all).
    fn tail_jump(
        &self,
        gene: &mut Gene,
        theta: &[f64],
        step: &[f64],
        cur: &Evaluation,
    ) -> Option<(Vec<f64>, Evaluation)> {
        let mut t = 2.0;
        while t <= 64.0 {
            let trial: Vec<f64> = theta.iter().zip(step).map(|(a, d)| a + t * d).collect();
            let at = self.evaluate_gene(gene, &trial);
            if !at.loglik.is_finite() || at.loglik < cur.loglik || at.min_log_mean < LOG_MEAN_LIMIT
            {
                return None;
            }
            if at.poisson_margin > 0.0 {
                let rising: f64 = step.iter().zip(&at.gradient).map(|(d, g)| d * g).sum();
                return (rising > 0.0).then_some((trial, at));
            }
            t *= 2.0;
        }
        None
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

    fn rows_x(&self, i: usize) -> &[f64] {
        let k = self.n_params();
        &self.rows[i * k..i * k + self.p]
    }

    /// Poisson IRLS from `start` (or from mu = y + 0.1): beta, the information X'WX and
    /// the moment sums (sum mu^2, sum((y - mu)^2 - mu)) at the means of the last pass, for
    /// a moment estimate of the size.
    fn poisson_irls(&self, y: &[f64], start: Option<&[f64]>, iters: usize) -> PoissonFit {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { self.poisson_irls_avx2(y, start, iters) };
        }
        self.poisson_irls_body(y, start, iters)
    }

    /// [`Model::poisson_irls`] compiled for AVX2: its loops (all inlined) run four values
    /// at a time.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn poisson_irls_avx2(
        &self,
        y: &[f64],
        start: Option<&[f64]>,
        iters: usize,
    ) -> PoissonFit {
        self.poisson_irls_body(y, start, iters)
    }

    #[inline(always)]
    fn poisson_irls_body(&self, y: &[f64], start: Option<&[f64]>, iters: usize) -> PoissonFit {
        let p = self.p;
        let mut beta = start.map(<[f64]>::to_vec);
        let mut info = vec![0.0; p * p];
        let mut moments = (0.0, 0.0);
        let mut last_ll = f64::NEG_INFINITY;
        let n = self.n;
        let col = |a: usize| &self.cols[a * n..(a + 1) * n];
        let (mut eta, mut mu, mut weighted_working) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        for _ in 0..iters {
            match &beta {
                Some(b) => {
                    eta.copy_from_slice(&self.offset);
                    for (a, &ba) in b.iter().enumerate() {
                        eta.iter_mut().zip(col(a)).for_each(|(e, x)| *e += ba * x);
                    }
                    eta.iter_mut().for_each(|e| *e = e.clamp(-50.0, 50.0));
                    mu.copy_from_slice(&eta);
                    vmath::exp_slice(&mut mu);
                }
                None => {
                    mu.iter_mut().zip(y).for_each(|(m, &yi)| *m = yi + 0.1);
                    eta.copy_from_slice(&mu);
                    vmath::ln_slice(&mut eta);
                }
            }
            // mu times the working response eta - offset + (y - mu) / mu
            for (i, w) in weighted_working.iter_mut().enumerate() {
                *w = mu[i] * (eta[i] - self.offset[i]) + y[i] - mu[i];
            }
            let [ll, mu_sq, excess] = lane_sums(n, |i| {
                let (yi, m) = (y[i], mu[i]);
                [yi * eta[i] - m, m * m, (yi - m) * (yi - m) - m]
            });
            moments = (mu_sq, excess);
            let mut rhs = vec![0.0; p];
            for a in 0..p {
                rhs[a] = weighted_sum(&weighted_working, col(a), None);
                for b in 0..=a {
                    info[a * p + b] = weighted_sum(&mu, col(a), Some(col(b)));
                }
            }
            symmetrize(&mut info, p);
            let converged = beta.is_some() && (ll - last_ll).abs() < 1e-12 * (1.0 + ll.abs());
            last_ll = ll;
            if converged {
                break;
            }
            match cholesky(&info, p) {
                Some(c) => beta = Some(linalg::cholesky_solve(&c, p, &rhs)),
                None => break,
            }
        }
        PoissonFit {
            beta: beta.unwrap_or_else(|| vec![0.0; p]),
            info,
            moments,
        }
    }

    /// Some counts show no overdispersion (r -> infinity). When none do, the mean
    /// coefficients are the Poisson fit, the dispersion coefficients unknown and the
    /// log-likelihood Poisson's; when only some do (e.g. one group of a dispersion factor),
    /// the NB iterate `theta` (with a log size near the limit) is kept, as it is more likely.
    /// Either way the covariance is unknown.
    fn poisson_limit(
        &self,
        y: &[f64],
        theta: &[f64],
        at: &Evaluation,
        iterations: usize,
    ) -> GeneFit {
        let (p, k) = (self.p, self.n_params());
        let PoissonFit { beta, info, .. } = self.poisson_irls(y, Some(&theta[..p]), 100);
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
        if at.loglik > loglik + 1e-9 * loglik.abs() {
            let mut out = self.unfitted(Status::PoissonLimit, iterations, at.loglik);
            out.theta.copy_from_slice(theta);
            return out;
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
        self.evaluate_gene(&mut self.gene(&self.in_model_order(y)), theta)
    }

    /// A gene's counts (in the model's order), ready for [`Model::evaluate_gene`].
    fn gene<'a>(&self, y: &'a [f64]) -> Gene<'a> {
        let grouped = self.z_groups.as_ref().map(|zg| {
            let counts = zg
                .starts
                .windows(2)
                .map(|run| {
                    let mut tally = Tally::default();
                    y[run[0]..run[1]].iter().for_each(|&v| tally.add(v));
                    tally.finish()
                })
                .collect();
            (counts, Work::new(self.n))
        });
        Gene { y, grouped }
    }

    fn evaluate_gene(&self, gene: &mut Gene, theta: &[f64]) -> Evaluation {
        match (&self.z_groups, &mut gene.grouped) {
            (Some(zg), Some((counts, work))) => {
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    return unsafe { self.evaluate_grouped_avx2(zg, gene.y, counts, work, theta) };
                }
                self.evaluate_grouped(zg, gene.y, counts, work, theta)
            }
            _ => self.evaluate_by_observation(gene.y, theta),
        }
    }

    /// [`Model::evaluate_grouped`] compiled for AVX2: its loops (all inlined) run four
    /// values at a time.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn evaluate_grouped_avx2(
        &self,
        zg: &ZGroups,
        y: &[f64],
        counts: &[GroupCounts],
        work: &mut Work,
        theta: &[f64],
    ) -> Evaluation {
        self.evaluate_grouped(zg, y, counts, work, theta)
    }

    /// [`Model::evaluate`] when the dispersion design has few distinct rows: each group's
    /// observations are contiguous and share one size, so the terms of the size are summed
    /// within the group (the gamma-function terms from its tables, once per evaluation),
    /// and the observations' terms are whole-array loops (exp and log from [`vmath`]),
    /// then sums in four lanes.
    #[inline(always)]
    fn evaluate_grouped(
        &self,
        zg: &ZGroups,
        y: &[f64],
        counts: &[GroupCounts],
        work: &mut Work,
        theta: &[f64],
    ) -> Evaluation {
        let (n, p, q, k) = (self.n, self.p, self.q, self.n_params());
        let (beta, gamma) = theta.split_at(p);
        let col = |a: usize| &self.cols[a * n..(a + 1) * n];
        let Work {
            eta,
            mu,
            log_u,
            g_eta,
            h_ee,
            h_ez,
            terms,
        } = work;
        eta.copy_from_slice(&self.offset);
        for (a, &b) in beta.iter().enumerate() {
            eta.iter_mut().zip(col(a)).for_each(|(e, x)| *e += b * x);
        }
        mu.copy_from_slice(eta);
        vmath::exp_slice(mu);
        let mut e = Evaluation {
            loglik: 0.0,
            gradient: vec![0.0; k],
            neg_hessian: vec![0.0; k * k],
            min_log_mean: f64::INFINITY,
            max_log_size: f64::NEG_INFINITY,
            poisson_margin: f64::NEG_INFINITY,
        };
        for (g, group) in counts.iter().enumerate() {
            let run = zg.starts[g]..zg.starts[g + 1];
            let z = &zg.rows[g * q..(g + 1) * q];
            let zeta = dot(z, gamma);
            let r = zeta.exp();
            let inv_r = 1.0 / r;
            let (y, eta, mu) = (&y[run.clone()], &eta[run.clone()], &mu[run.clone()]);
            let log_u = &mut log_u[run.clone()];
            // log1p(mu / r) is log(u), u = 1 + mu / r, corrected below for the rounding of u.
            log_u
                .iter_mut()
                .zip(mu)
                .for_each(|(l, &m)| *l = 1.0 + m * inv_r);
            vmath::ln_slice(log_u);
            let (g_eta, h_ee, h_ez) = (
                &mut g_eta[run.clone()],
                &mut h_ee[run.clone()],
                &mut h_ez[run.clone()],
            );
            let [t_loglik, t_log1p, t_resid, t_curvature] = terms;
            let (t_loglik, t_log1p) = (&mut t_loglik[run.clone()], &mut t_log1p[run.clone()]);
            let (t_resid, t_curvature) = (&mut t_resid[run.clone()], &mut t_curvature[run.clone()]);
            for i in 0..y.len() {
                let (yi, m) = (y[i], mu[i]);
                let inv_s = 1.0 / (r + m);
                let r_inv_s = r * inv_s;
                let ratio = m * inv_r;
                let u = 1.0 + ratio;
                // r / (r + mu) = 1 / u: log1p(mu / r) = log(u) - (u - 1 - mu / r) / u.
                let log1p = log_u[i] - ((u - 1.0) - ratio) * r_inv_s;
                let resid = (yi - m) * inv_s;
                let w = r_inv_s * m * inv_s;
                g_eta[i] = r * resid;
                h_ee[i] = w * (r + yi);
                h_ez[i] = -w * (yi - m);
                t_loglik[i] = yi * eta[i] - (r + yi) * log1p;
                t_log1p[i] = log1p;
                t_resid[i] = resid;
                t_curvature[i] = r_inv_s * (m + r * resid);
            }
            let [loglik, sum_log1p, sum_resid, curvature] = lane_sums(y.len(), |i| {
                [t_loglik[i], t_log1p[i], t_resid[i], t_curvature[i]]
            });
            let x = |a: usize| &col(a)[run.clone()];
            let cross: Vec<f64> = (0..p).map(|a| weighted_sum(h_ez, x(a), None)).collect();
            for a in 0..p {
                e.gradient[a] += weighted_sum(g_eta, x(a), None);
                for b in 0..=a {
                    e.neg_hessian[a * k + b] += weighted_sum(h_ee, x(a), Some(x(b)));
                }
            }
            let t = group.terms(r, zeta);
            e.loglik += loglik + t.log_ratio - zeta * group.total;
            let g_zeta = r * (t.digamma_diff - sum_log1p - sum_resid);
            let h_zz = -(g_zeta + r * r * t.trigamma_diff + curvature);
            for c in 0..q {
                e.gradient[p + c] += z[c] * g_zeta;
                let row = (p + c) * k;
                for (b, cross_b) in cross.iter().enumerate() {
                    e.neg_hessian[row + b] += z[c] * cross_b;
                }
                for d in 0..=c {
                    e.neg_hessian[row + p + d] += z[c] * z[d] * h_zz;
                }
            }
            let min_eta = eta.iter().fold(f64::INFINITY, |a, &b| a.min(b));
            e.min_log_mean = e.min_log_mean.min(min_eta);
            e.max_log_size = e.max_log_size.max(zeta);
            e.poisson_margin = e
                .poisson_margin
                .max((zeta - LOG_SIZE_LIMIT).min(zeta - min_eta - LOG_SIZE_OVER_MEAN_LIMIT));
        }
        symmetrize(&mut e.neg_hessian, k);
        e
    }

    /// [`Model::evaluate`] term by term over the observations, for a dispersion design
    /// with many distinct rows (a continuous covariate).
    fn evaluate_by_observation(&self, y: &[f64], theta: &[f64]) -> Evaluation {
        let (p, k) = (self.p, self.n_params());
        let mut e = Evaluation {
            loglik: 0.0,
            gradient: vec![0.0; k],
            neg_hessian: vec![0.0; k * k],
            min_log_mean: f64::INFINITY,
            max_log_size: f64::NEG_INFINITY,
            poisson_margin: f64::NEG_INFINITY,
        };
        let h = &mut e.neg_hessian;
        let n = self.n;
        let (mut w_ee, mut w_ez, mut w_zz) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let (mut g_e, mut g_z) = (vec![0.0; n], vec![0.0; n]);
        for (i, &yi) in y.iter().enumerate() {
            let row = &self.rows[i * k..(i + 1) * k];
            let eta = self.offset[i] + dot(&row[..p], &theta[..p]);
            let zeta = dot(&row[p..], &theta[p..]);
            let r = zeta.exp();
            let inv_r = 1.0 / r;
            e.min_log_mean = e.min_log_mean.min(eta);
            e.max_log_size = e.max_log_size.max(zeta);
            e.poisson_margin = e
                .poisson_margin
                .max((zeta - LOG_SIZE_LIMIT).min(zeta - eta - LOG_SIZE_OVER_MEAN_LIMIT));
            let mu = eta.exp();
            let inv_s = 1.0 / (r + mu);
            let log1p_ratio = (mu * inv_r).ln_1p();
            let t = self.count_terms(yi, r, zeta);
            // log(r + mu) = zeta + log1p(mu / r)
            e.loglik += t.log_ratio - r * log1p_ratio + yi * (eta - zeta - log1p_ratio);
            let resid = (yi - mu) * inv_s;
            let g_eta = r * resid;
            let g_zeta = r * (t.digamma_diff - log1p_ratio - resid);
            let r_inv_s = r * inv_s;
            let w = r_inv_s * mu * inv_s;
            let h_ee = w * (r + yi);
            let h_ez = -w * (yi - mu);
            let h_zz = -(g_zeta + r * r * t.trigamma_diff + r_inv_s * (mu + r * resid));
            w_ee[i] = h_ee;
            w_ez[i] = h_ez;
            w_zz[i] = h_zz;
            g_e[i] = g_eta;
            g_z[i] = g_zeta;
        }
        // Gradient and Hessian as weighted cross-products of the design columns.
        let col = |a: usize| &self.cols[a * self.n..(a + 1) * self.n];
        for a in 0..k {
            let (g, weights) = if a < p {
                (&g_e, [&w_ee, &w_ez])
            } else {
                (&g_z, [&w_ez, &w_zz])
            };
            e.gradient[a] = weighted_sum(g, col(a), None);
            for b in 0..=a {
                let w = if b < p { weights[0] } else { weights[1] };
                h[a * k + b] = weighted_sum(w, col(a), Some(col(b)));
            }
        }
        symmetrize(h, k);
        e
    }

    /// lgamma(y + r) - lgamma(r) - lgamma(y + 1), digamma(y + r) - digamma(r) and
    /// trigamma(y + r) - trigamma(r), by finite sums for small whole y.
    fn count_terms(&self, y: f64, r: f64, log_r: f64) -> CountTerms {
        if y == 0.0 {
            return CountTerms::default();
        }
        if y == 1.0 {
            let inv = 1.0 / r;
            return CountTerms {
                log_ratio: log_r,
                digamma_diff: inv,
                trigamma_diff: -inv * inv,
            };
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
        large_count_terms(y, r, log_r)
    }
}

/// Counts at or above this enter the grouped evaluation through the gamma functions, once
/// per distinct value; those below through [`GroupCounts::exceeding`].
const TABLE_COUNTS: usize = 64;

/// One gene being fitted: its counts (in the model's order) and, for a dispersion design
/// with few distinct rows, their summaries by group and the arrays of
/// [`Model::evaluate_grouped`], allocated once per gene.
struct Gene<'a> {
    y: &'a [f64],
    grouped: Option<(Vec<GroupCounts>, Work)>,
}

/// Per-observation arrays of [`Model::evaluate_grouped`].
struct Work {
    eta: Vec<f64>,
    mu: Vec<f64>,
    log_u: Vec<f64>,
    /// Gradient and negative Hessian weights of the linear predictor, and its cross
    /// weight with the log size.
    g_eta: Vec<f64>,
    h_ee: Vec<f64>,
    h_ez: Vec<f64>,
    /// Terms of the sums: y eta - (r + y) log1p(mu / r) (the log-likelihood without the
    /// terms of the counts or the size alone), log1p(mu / r), (y - mu) / (r + mu) and
    /// r (mu^2 + r y) / (r + mu)^2 (the observation's part of the log size's curvature).
    terms: [Vec<f64>; 4],
}

impl Work {
    fn new(n: usize) -> Self {
        let array = || vec![0.0; n];
        Work {
            eta: array(),
            mu: array(),
            log_u: array(),
            g_eta: array(),
            h_ee: array(),
            h_ez: array(),
            terms: [array(), array(), array(), array()],
        }
    }
}

/// One dispersion group's counts as the sums of its gamma-function terms need them: for a
/// count y below [`TABLE_COUNTS`], lgamma(y + r) - lgamma(r) = sum over j < y of log(r + j)
/// (and its derivatives likewise), so the group's sum runs over j, weighted by how many of
/// its counts exceed j.
struct GroupCounts {
    total: f64,
    /// exceeding[j]: how many counts y have j < y < TABLE_COUNTS.
    exceeding: Vec<f64>,
    /// Sum of log(y!) over the counts below TABLE_COUNTS.
    log_factorials: f64,
    /// Distinct counts at or above TABLE_COUNTS, each with its multiplicity.
    large: Vec<(f64, f64)>,
}

/// A group's counts as they are read: how often each small count occurs, and the large
/// ones.
#[derive(Clone, Default)]
struct Tally {
    total: f64,
    small: Vec<f64>,
    large: Vec<f64>,
}

impl Tally {
    fn add(&mut self, y: f64) {
        self.total += y;
        if y < TABLE_COUNTS as f64 {
            let v = y as usize;
            if self.small.len() <= v {
                self.small.resize(v + 1, 0.0);
            }
            self.small[v] += 1.0;
        } else {
            self.large.push(y);
        }
    }

    fn finish(mut self) -> GroupCounts {
        // exceeding[j] = occurrences of the small counts above j, for j below the largest.
        let top = self.small.len().saturating_sub(1);
        let mut exceeding = vec![0.0; top];
        let mut above = 0.0;
        let mut log_factorials = 0.0;
        for j in (0..top).rev() {
            above += self.small[j + 1];
            exceeding[j] = above;
            log_factorials += above * ((j + 1) as f64).ln();
        }
        self.large.sort_by(f64::total_cmp);
        let mut large: Vec<(f64, f64)> = Vec::new();
        for y in self.large {
            match large.last_mut() {
                Some((v, m)) if *v == y => *m += 1.0,
                _ => large.push((y, 1.0)),
            }
        }
        GroupCounts {
            total: self.total,
            exceeding,
            log_factorials,
            large,
        }
    }
}

impl GroupCounts {
    /// The group's sums of lgamma(y + r) - lgamma(r) - lgamma(y + 1), digamma(y + r) -
    /// digamma(r) and trigamma(y + r) - trigamma(r), at size r = exp(log_r).
    fn terms(&self, r: f64, log_r: f64) -> CountTerms {
        let mut t = CountTerms {
            log_ratio: -self.log_factorials,
            ..CountTerms::default()
        };
        for (j, &m) in self.exceeding.iter().enumerate() {
            let v = r + j as f64;
            let inv = 1.0 / v;
            t.log_ratio += m * if j == 0 { log_r } else { v.ln() };
            t.digamma_diff += m * inv;
            t.trigamma_diff -= m * inv * inv;
        }
        for &(y, m) in &self.large {
            let u = large_count_terms(y, r, log_r);
            t.log_ratio += m * u.log_ratio;
            t.digamma_diff += m * u.digamma_diff;
            t.trigamma_diff += m * u.trigamma_diff;
        }
        t
    }
}

/// lgamma(y + r) - lgamma(r) - lgamma(y + 1), digamma(y + r) - digamma(r) and
/// trigamma(y + r) - trigamma(r) for a count y too large for finite sums: by R's
/// lbeta/digamma/trigamma, or near the Poisson limit (r > 1e8 y) by the first terms of
/// their expansions in y / r (relative error (y / r)^2 < 1e-16), where lbeta() would
/// underflow and print "underflow occurred in 'lgammacor'" to stderr.
fn large_count_terms(y: f64, r: f64, log_r: f64) -> CountTerms {
    if r > 1e8 * y {
        let (a, inv) = (y * (y - 1.0) / 2.0, 1.0 / r);
        return CountTerms {
            log_ratio: y * log_r + a * inv - dist::ln_gamma(y + 1.0),
            digamma_diff: y * inv - a * inv * inv,
            trigamma_diff: -y * inv * inv + 2.0 * a * inv * inv * inv,
        };
    }
    CountTerms {
        log_ratio: -dist::ln_beta(y, r) - y.ln(),
        digamma_diff: dist::digamma(y + r) - dist::digamma(r),
        trigamma_diff: dist::trigamma(y + r) - dist::trigamma(r),
    }
}

/// Observations summed together by [`lane_sums`] and [`weighted_sum`]: independent
/// accumulators that the compiler keeps in vector registers.
const LANES: usize = 4;

struct PoissonFit {
    beta: Vec<f64>,
    info: Vec<f64>,
    moments: (f64, f64),
}

/// What one pass over a gene's observations gives.
pub struct Evaluation {
    pub loglik: f64,
    pub gradient: Vec<f64>,
    /// Row-major k x k.
    pub neg_hessian: Vec<f64>,
    pub min_log_mean: f64,
    pub max_log_size: f64,
    /// Positive when some observation is at the Poisson limit.
    pub poisson_margin: f64,
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

/// The sums over i in 0..n of the S terms of `terms(i)`, in [`LANES`] independent lanes
/// so that they vectorise.
#[inline(always)]
fn lane_sums<const S: usize>(n: usize, terms: impl Fn(usize) -> [f64; S]) -> [f64; S] {
    let mut acc = [[0.0; LANES]; S];
    let whole = n / LANES * LANES;
    let mut add = |i: usize, lane: usize| {
        for (sum, t) in acc.iter_mut().zip(terms(i)) {
            sum[lane] += t;
        }
    };
    for i0 in (0..whole).step_by(LANES) {
        for lane in 0..LANES {
            add(i0 + lane, lane);
        }
    }
    for i in whole..n {
        add(i, 0);
    }
    acc.map(|v| (v[0] + v[1]) + (v[2] + v[3]))
}

/// sum_i w_i u_i (v_i), in four independent lanes so that it vectorises.
#[inline(always)]
fn weighted_sum(w: &[f64], u: &[f64], v: Option<&[f64]>) -> f64 {
    let mut acc = [0.0; 4];
    let n4 = w.len() / 4 * 4;
    match v {
        Some(v) => {
            for ((w, u), v) in w[..n4]
                .chunks_exact(4)
                .zip(u[..n4].chunks_exact(4))
                .zip(v[..n4].chunks_exact(4))
            {
                for l in 0..4 {
                    acc[l] += w[l] * u[l] * v[l];
                }
            }
            acc[0]
                + acc[1]
                + acc[2]
                + acc[3]
                + (n4..w.len()).map(|i| w[i] * u[i] * v[i]).sum::<f64>()
        }
        None => {
            for (w, u) in w[..n4].chunks_exact(4).zip(u[..n4].chunks_exact(4)) {
                for l in 0..4 {
                    acc[l] += w[l] * u[l];
                }
            }
            acc[0] + acc[1] + acc[2] + acc[3] + (n4..w.len()).map(|i| w[i] * u[i]).sum::<f64>()
        }
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

/// A pivot at or below this fraction of its diagonal entry counts as singular.
const PIVOT_TOL: f64 = 1e-13;

fn cholesky(m: &[f64], k: usize) -> Option<Vec<f64>> {
    linalg::cholesky(m, k, PIVOT_TOL)
}

fn invert_spd(m: &[f64], k: usize) -> Option<Vec<f64>> {
    linalg::invert_spd(m, k, PIVOT_TOL)
}

/// Newton direction H^-1 g; where H is not positive definite (far from the optimum, the
/// dispersion block can be convex), a ridge is added until it is (Levenberg). `None` when
/// H or g is not finite (the dispersion terms can overflow far in the Poisson tail): no
/// ridge makes such a matrix positive definite.
fn newton_step(h: &[f64], g: &[f64], k: usize) -> Option<Vec<f64>> {
    if !h.iter().chain(g).all(|v| v.is_finite()) {
        return None;
    }
    if let Some(l) = cholesky(h, k) {
        return Some(linalg::cholesky_solve(&l, k, g));
    }
    let scale = (0..k)
        .fold(0.0f64, |m, a| m.max(h[a * k + a].abs()))
        .max(1e-8);
    // A ridge of 1e12 x the largest diagonal dominates any finite H.
    (0..=20).find_map(|e| {
        let ridge = 1e-8 * scale * 10f64.powi(e);
        let mut damped = h.to_vec();
        for a in 0..k {
            damped[a * k + a] += ridge;
        }
        cholesky(&damped, k).map(|l| linalg::cholesky_solve(&l, k, g))
    })
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
    fn count_terms_near_the_poisson_limit_match_the_exact_ones() {
        let model = Model::new(&[1.0; 3], 1, &[1.0; 3], 1, &[0.0; 3]).unwrap();
        for &(y, r) in &[(50.0, 1e11), (3000.0, 1e12), (1e5, 5e13)] {
            let (a, e) = (model.count_terms(y, r, f64::ln(r)), exact_count_terms(y, r));
            assert!(
                (a.log_ratio - e.log_ratio).abs() < 1e-9 * e.log_ratio.abs(),
                "{y} {r}"
            );
            assert!(
                (a.digamma_diff / e.digamma_diff - 1.0).abs() < 1e-7,
                "{y} {r}"
            );
            assert!(
                (a.trigamma_diff / e.trigamma_diff - 1.0).abs() < 1e-5,
                "{y} {r}"
            );
        }
        // Far past where lbeta() underflows: finite, and the Poisson log-probability's terms.
        let t = model.count_terms(40.0, 1e307, f64::ln(1e307));
        assert!((t.log_ratio - (40.0 * f64::ln(1e307) - dist::ln_gamma(41.0))).abs() < 1e-9);
        assert!(t.digamma_diff.is_finite() && t.trigamma_diff.is_finite());
    }

    /// The exact terms by sums over j < y (reference for the expansions).
    fn exact_count_terms(y: f64, r: f64) -> CountTerms {
        let mut t = CountTerms {
            log_ratio: -dist::ln_gamma(y + 1.0),
            ..Default::default()
        };
        for j in 0..y as usize {
            let v = r + j as f64;
            t.log_ratio += v.ln();
            t.digamma_diff += 1.0 / v;
            t.trigamma_diff -= 1.0 / (v * v);
        }
        t
    }

    #[test]
    fn grouped_evaluation_equals_the_sums_over_observations() {
        // Counts from 0 to past TABLE_COUNTS, an offset, a continuous mean covariate and
        // two dispersion groups; small, moderate and large sizes.
        let n = 300;
        let mut s = Stream(21);
        let x: Vec<f64> = (0..n)
            .map(|_| 1.0)
            .chain((0..n).map(|_| s.uniform() - 0.5))
            .collect();
        let z: Vec<f64> = (0..n)
            .map(|_| 1.0)
            .chain((0..n).map(|i| (i % 2) as f64))
            .collect();
        let offset: Vec<f64> = (0..n).map(|_| 0.2 * s.uniform()).collect();
        let model = Model::new(&x, 2, &z, 2, &offset).unwrap();
        // Grouped, and held in group order (the groups alternate).
        assert!(model.z_groups.is_some() && model.order.is_some());
        let y: Vec<f64> = (0..n)
            .map(|i| s.nb(if i % 3 == 0 { 90.0 } else { 2.0 }, 1.5))
            .collect();
        assert!(y.contains(&0.0) && y.iter().any(|&v| v >= TABLE_COUNTS as f64));
        // At r = e^13, the term-by-term path's digamma differences of counts from 16 up
        // lose 1e-12 relative to cancellation (R: digamma(40 + r) - digamma(r) against
        // sum(1 / (r + 0:39))), which the log-size gradient multiplies by r.
        for (theta, tol) in [
            ([1.0, 0.3, -3.0, 0.5], 1e-10),
            ([1.5, -0.2, 0.4, 0.3], 1e-10),
            ([2.0, 0.1, 12.0, 1.0], 1e-8),
        ] {
            let close = |a: f64, b: f64| (a - b).abs() <= tol * a.abs().max(1.0);
            let grouped = model.evaluate(&y, &theta);
            let direct = model.evaluate_by_observation(&model.in_model_order(&y), &theta);
            assert!(close(grouped.loglik, direct.loglik), "{theta:?}");
            for (a, b) in grouped.gradient.iter().zip(&direct.gradient) {
                assert!(close(*a, *b), "{theta:?}: gradient {a} vs {b}");
            }
            for (a, b) in grouped.neg_hessian.iter().zip(&direct.neg_hessian) {
                assert!(close(*a, *b), "{theta:?}: Hessian {a} vs {b}");
            }
            for (a, b) in [
                (grouped.min_log_mean, direct.min_log_mean),
                (grouped.max_log_size, direct.max_log_size),
                (grouped.poisson_margin, direct.poisson_margin),
            ] {
                assert!(close(a, b), "{theta:?}: {a} vs {b}");
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
    fn one_group_at_the_poisson_limit_keeps_the_nb_fit_of_the_other() {
        let n = 2000;
        let (model, _) = two_group_model(n);
        let mut s = Stream(17);
        // Group 0 overdispersed (r = 1), group 1 exactly 2 everywhere (no variance at all).
        let y: Vec<f64> = (0..n)
            .map(|i| if i % 2 == 0 { s.nb(4.0, 1.0) } else { 2.0 })
            .collect();
        let fit = model.fit(&y, Options::default());
        assert_eq!(fit.status, Status::PoissonLimit, "{fit:?}");
        assert!(fit.theta[3] > 5.0, "{fit:?}");
        let mean0 = y.iter().step_by(2).sum::<f64>() / (n / 2) as f64;
        assert!((fit.theta[0] - mean0.ln()).abs() < 1e-4);
        assert!((fit.theta[0] + fit.theta[1] - 2f64.ln()).abs() < 1e-4);
        assert!(fit.vcov.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn large_finite_size_is_not_the_poisson_limit() {
        let n = 20_000;
        let model = Model::new(&vec![1.0; n], 1, &vec![1.0; n], 1, &vec![0.0; n]).unwrap();
        let mut s = Stream(13);
        let y: Vec<f64> = (0..n).map(|_| s.nb(200.0, 800.0)).collect();
        let fit = model.fit(&y, Options::default());
        assert_eq!(fit.status, Status::Converged, "{fit:?}");
        assert!((fit.theta[1] - 800f64.ln()).abs() < 4.0 * fit.vcov[3].sqrt());
    }

    /// A pseudobulk gene of a 1M-cell trial (40 participant-visits, sums near 800 on library
    /// sizes of 6e7; MASS::glm.nb's theta 7.6e6): Newton walked into the Poisson tail, where
    /// the Hessian overflowed, and the Levenberg ridge loop then never ended.
    #[test]
    fn a_near_poisson_pseudobulk_gene_ends_at_the_poisson_limit() {
        let y = [
            792., 770., 782., 779., 797., 775., 752., 784., 781., 783., 751., 772., 756., 734.,
            860., 768., 771., 802., 804., 795., 819., 726., 803., 738., 783., 799., 764., 814.,
            752., 809., 845., 825., 802., 795., 773., 813., 768., 793., 807., 782.,
        ];
        let lib = [
            62721363., 62648491., 62706957., 62657101., 62690657., 62624935., 62691174., 62658237.,
            62694508., 62628469., 62675879., 62631279., 62674472., 62634873., 62702185., 62641231.,
            62692113., 62630845., 62678148., 62645994., 62629103., 62644104., 62620680., 62642676.,
            62647866., 62649897., 62627271., 62628804., 62638074., 62636186., 62619960., 62642446.,
            62604789., 62646704., 62636547., 62601841., 62651738., 62644055., 62642440., 62642275.,
        ];
        let n = y.len();
        let pre: Vec<f64> = (0..n).map(|i| (i % 2) as f64).collect();
        let treated: Vec<f64> = (0..n).map(|i| f64::from(u8::from(i < 20))).collect();
        let x: Vec<f64> = std::iter::repeat_n(1.0, n)
            .chain(pre.iter().copied())
            .chain(treated.iter().copied())
            .chain(pre.iter().zip(&treated).map(|(a, b)| a * b))
            .collect();
        let offset: Vec<f64> = lib.iter().map(|l: &f64| l.ln()).collect();
        let model = Model::new(&x, 4, &vec![1.0; n], 1, &offset).unwrap();
        let fit = model.fit(&y, Options::default());
        assert_eq!(fit.status, Status::PoissonLimit, "{fit:?}");
        // glm(family = poisson) on the same data.
        let poisson = [-11.278728228, -0.002879674, -0.009854037, -0.007044775];
        for (a, b) in fit.theta.iter().zip(&poisson) {
            assert!((a - b).abs() < 1e-6, "{:?}", fit.theta);
        }
    }

    #[test]
    fn newton_step_refuses_a_non_finite_hessian() {
        assert!(newton_step(&[f64::NAN, 0.0, 0.0, 1.0], &[1.0, 1.0], 2).is_none());
        assert!(newton_step(&[1.0, 0.0, 0.0, f64::INFINITY], &[1.0, 1.0], 2).is_none());
        let step = newton_step(&[2.0, 0.0, 0.0, -1.0], &[1.0, 1.0], 2).unwrap();
        assert!(step.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn blocks_fit_each_row() {
        let (model, _) = two_group_model(30);
        let mut s = Stream(9);
        let block: Vec<f64> = (0..60).map(|_| s.nb(2.0, 1.0)).collect();
        let fits = model.fit_rows(&block, 2, 0..2, Options::default());
        let y0: Vec<f64> = (0..30).map(|i| block[i * 2]).collect();
        assert_eq!(fits[0].theta, model.fit(&y0, Options::default()).theta);
    }
}

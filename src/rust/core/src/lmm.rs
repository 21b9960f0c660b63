//! Linear mixed models for many responses that share one design (balances of one
//! longitudinal table): `y = X beta + Z b + e`, one grouping factor, `b_g ~ N(0, s^2 T T')`
//! per group with `T` lower triangular (lme4's relative covariance factor, `theta` its
//! lower triangle column by column, diagonal >= 0), `e ~ N(0, s^2 I)`.
//!
//! Fitting is lme4's profiled (RE)ML. For each group, with `L_g L_g' = T'Z_g'Z_g T + I`:
//! `RZX_g = L_g^{-1} T'Z_g'X`, `cu_g = L_g^{-1} T'Z_g'y`; then
//! `RX RX' = X'X - sum RZX_g'RZX_g`, `cb = RX^{-1}(X'y - sum RZX_g'cu_g)` and the penalised
//! residual sum of squares is `y'y - sum |cu_g|^2 - |cb|^2`. The design enters only through
//! the per-group cross-products `Z_g'Z_g`, `Z_g'X_g` and `X'X`, computed once; a response
//! brings `Z_g'y_g`, `X'y`, `y'y`. A deviance evaluation therefore costs
//! `O(groups q^3 + p^3)` whatever the number of observations.
//!
//! Responses are first reduced to their least-squares residuals (the fixed part absorbs the
//! difference), so that `y'y` is not dominated by the mean and the subtraction above keeps
//! its precision.
//!
//! Satterthwaite degrees of freedom are lmerTest's: the Hessian of the (RE)ML deviance in
//! `varpar = (theta, sigma)` and the Jacobian of `vcov(beta)` in `varpar`, by the same
//! Richardson-extrapolated differences as numDeriv (`hessian()` through `genD()`,
//! `jacobian()`) in theta, so that the two agree to the precision of the deviance itself;
//! the derivatives in sigma, which numDeriv approximates, are exact here.

// Small dense factorisations read best with explicit indices.
#![allow(clippy::needless_range_loop)]

use crate::{dist, linalg};
use rayon::prelude::*;

/// The theta optimiser stops after a full Newton step shorter than `NEWTON_TOL` (relative
/// to theta), or when backtracking leaves steps shorter than `STEP_TOL`; then it has
/// converged if the deviance's gradient is below `GRADIENT_TOL` (lme4's default 0.002).
const NEWTON_TOL: f64 = 1e-7;
const STEP_TOL: f64 = 1e-10;
const GRADIENT_TOL: f64 = 2e-3;
/// A diagonal element of T this close to 0 counts as on its bound.
const AT_BOUND: f64 = 1e-8;
const MAX_ITER: usize = 200;
/// Eigenvalues of the deviance Hessian at or below this are dropped from its inverse
/// (lmerTest's `tol`).
const HESSIAN_TOL: f64 = 1e-8;
/// A response whose least-squares residual sum of squares is below this fraction of its
/// sum of squares is fitted exactly by the fixed effects (rounding error only).
const RESIDUAL_TOL: f64 = 1e-24;

/// The design shared by every response. Matrices are column-major.
pub struct Design {
    n: usize,
    p: usize,
    q: usize,
    m: usize,
    x: Vec<f64>,
    z: Vec<f64>,
    group: Vec<usize>,
    xtx: Vec<f64>,
    ztz: Vec<f64>,
    ztx: Vec<f64>,
    /// `(X'X)^{-1} X'`, `p x n`: the least-squares coefficients of a response.
    ols: Vec<f64>,
    /// Positions (row, column) in T of each theta element (one per copy of its block).
    pattern: Vec<Vec<(usize, usize)>>,
    /// The theta indices of each column of each block of T, its diagonal element first.
    columns: Vec<Vec<usize>>,
}

impl Design {
    /// `x` is `n x p` (full column rank), `z` is `n x q` (the random-effect columns of the
    /// one grouping factor), `group` the 0-based group of each observation, `m` groups.
    /// `blocks` are the random-effect terms in the order of z's columns, as (size, copies):
    /// each term has its own lower-triangular block of T (correlated within, independent
    /// between), repeated `copies` times along the diagonal with the same theta. One
    /// grouping factor: `m` groups and copies 1, e.g. `[(2, 1)]` for `(1 + x | g)` or
    /// `[(1, 1), (1, 1)]` for `(1 | g) + (0 + x | g)`. Several grouping factors: one group
    /// (`m = 1`), z holding each term's columns level by level and copies its levels.
    pub fn new(
        x: &[f64],
        p: usize,
        z: &[f64],
        q: usize,
        group: &[usize],
        m: usize,
        blocks: &[(usize, usize)],
    ) -> Result<Self, String> {
        let n = group.len();
        if blocks
            .iter()
            .map(|&(size, copies)| size * copies)
            .sum::<usize>()
            != q
            || blocks
                .iter()
                .any(|&(size, copies)| size == 0 || copies == 0)
        {
            return Err(
                "the random-effect terms do not add up to the random-effect columns".into(),
            );
        }
        let mut pattern = Vec::new();
        let mut columns = Vec::new();
        let mut offset = 0;
        for &(size, copies) in blocks {
            for c in 0..size {
                let mut column = Vec::new();
                for r in c..size {
                    column.push(pattern.len());
                    pattern.push(
                        (0..copies)
                            .map(|l| (offset + l * size + r, offset + l * size + c))
                            .collect(),
                    );
                }
                columns.push(column);
            }
            offset += size * copies;
        }
        if x.len() != n * p || z.len() != n * q {
            return Err("design sizes do not match the number of observations".into());
        }
        if q == 0 || m == 0 {
            return Err("the model needs a random effect and at least one group".into());
        }
        if group.iter().any(|&g| g >= m) {
            return Err("group codes out of range".into());
        }
        if n <= p {
            return Err(format!("{n} observations cannot fit {p} fixed effects"));
        }
        let mut xtx = vec![0.0; p * p];
        for a in 0..p {
            for b in 0..=a {
                let s: f64 = (0..n).map(|i| x[i + a * n] * x[i + b * n]).sum();
                xtx[a + b * p] = s;
                xtx[b + a * p] = s;
            }
        }
        let mut ztz = vec![0.0; m * q * q];
        let mut ztx = vec![0.0; m * q * p];
        for i in 0..n {
            let g = group[i];
            for a in 0..q {
                let za = z[i + a * n];
                for b in 0..q {
                    ztz[g * q * q + a + b * q] += za * z[i + b * n];
                }
                for b in 0..p {
                    ztx[g * q * p + a + b * q] += za * x[i + b * n];
                }
            }
        }
        let mut chol = xtx.clone();
        if !linalg::cholesky_in_place(&mut chol, p) {
            return Err("the fixed-effects design is rank deficient".into());
        }
        let mut ols = vec![0.0; p * n];
        let mut col = vec![0.0; p];
        for i in 0..n {
            for a in 0..p {
                col[a] = x[i + a * n];
            }
            linalg::solve_lower_in_place(&chol, p, &mut col);
            linalg::solve_lower_transposed_in_place(&chol, p, &mut col);
            for a in 0..p {
                ols[a + i * p] = col[a];
            }
        }
        Ok(Design {
            n,
            p,
            q,
            m,
            x: x.to_vec(),
            z: z.to_vec(),
            group: group.to_vec(),
            xtx,
            ztz,
            ztx,
            ols,
            pattern,
            columns,
        })
    }

    /// Number of covariance parameters theta.
    pub fn n_theta(&self) -> usize {
        self.pattern.len()
    }

    /// The theta indices of each column of each block of T, its diagonal element first.
    pub fn theta_columns(&self) -> Vec<Vec<usize>> {
        self.columns.clone()
    }

    /// Whether theta element `k` is a diagonal entry of T (bounded below by 0).
    pub fn theta_on_diagonal(&self) -> Vec<bool> {
        self.pattern
            .iter()
            .map(|pos| pos[0].0 == pos[0].1)
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    NoResidualVariance = 1,
    Failed = 2,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Ok, Status::NoResidualVariance, Status::Failed];

    pub fn text(self) -> Option<&'static str> {
        match self {
            Status::Ok => None,
            Status::NoResidualVariance => Some("no residual variance"),
            Status::Failed => Some("fit failed"),
        }
    }
}

/// One response's fit. `vcov` is `p x p` and that of the response divided by
/// `vcov_scale` (variances of responses near 1e308 overflow); `ranef` holds `b` group by
/// group (`q` values each).
#[derive(Clone, Debug)]
pub struct Fit {
    pub beta: Vec<f64>,
    pub vcov: Vec<f64>,
    pub vcov_scale: f64,
    pub df: Vec<f64>,
    pub theta: Vec<f64>,
    pub sigma: f64,
    /// The REML criterion or the ML deviance (-2 log-likelihood) at the optimum.
    pub criterion: f64,
    pub ranef: Vec<f64>,
    pub converged: bool,
    pub iterations: usize,
    pub status: Status,
}

impl Fit {
    /// The fit of the response times `scale`; `dof` as in the criterion (n for ML, n - p
    /// for REML), whose likelihood gains a Jacobian of `scale^-dof`.
    fn rescale(&mut self, scale: f64, dof: f64) {
        self.beta.iter_mut().for_each(|v| *v *= scale);
        self.vcov_scale *= scale;
        self.ranef.iter_mut().for_each(|v| *v *= scale);
        self.sigma *= scale;
        self.criterion += 2.0 * dof * scale.ln();
    }

    /// Standard error of fixed effect `c`.
    pub fn std_error(&self, c: usize) -> f64 {
        self.vcov[c + c * self.beta.len()].sqrt() * self.vcov_scale
    }

    /// Two-sided log p-value of fixed effect `c`: t with its Satterthwaite df.
    pub fn log_p_t(&self, c: usize) -> f64 {
        log_p(self.beta[c], self.std_error(c), self.df[c])
    }

    /// Two-sided log p-value of fixed effect `c` from the normal (Wald z).
    pub fn log_p_z(&self, c: usize) -> f64 {
        log_p(self.beta[c], self.std_error(c), f64::INFINITY)
    }

    /// Entry `k` (column-major) of the covariance of the fixed effects.
    pub fn vcov_entry(&self, k: usize) -> f64 {
        self.vcov[k] * self.vcov_scale * self.vcov_scale
    }
}

impl Fit {
    fn empty(d: &Design, status: Status) -> Self {
        Fit {
            beta: vec![f64::NAN; d.p],
            vcov: vec![f64::NAN; d.p * d.p],
            vcov_scale: 1.0,
            df: vec![f64::NAN; d.p],
            theta: vec![f64::NAN; d.n_theta()],
            sigma: f64::NAN,
            criterion: f64::NAN,
            ranef: vec![f64::NAN; d.m * d.q],
            converged: false,
            iterations: 0,
            status,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub reml: bool,
    pub satterthwaite: bool,
}

/// What a response contributes: its least-squares coefficients and the cross-products of
/// its least-squares residual `e` with the design.
struct Response {
    beta_ols: Vec<f64>,
    zte: Vec<f64>,
    xte: Vec<f64>,
    ete: f64,
    yty: f64,
}

impl Response {
    fn new(d: &Design, y: &[f64]) -> Self {
        let (n, p, q) = (d.n, d.p, d.q);
        let mut beta_ols = vec![0.0; p];
        for i in 0..n {
            for a in 0..p {
                beta_ols[a] += d.ols[a + i * p] * y[i];
            }
        }
        let mut zte = vec![0.0; d.m * q];
        let mut xte = vec![0.0; p];
        let (mut ete, mut yty) = (0.0, 0.0);
        for i in 0..n {
            let fitted: f64 = (0..p).map(|a| d.x[i + a * n] * beta_ols[a]).sum();
            let e = y[i] - fitted;
            ete += e * e;
            yty += y[i] * y[i];
            for a in 0..p {
                xte[a] += d.x[i + a * n] * e;
            }
            let g = d.group[i];
            for a in 0..q {
                zte[g * q + a] += d.z[i + a * n] * e;
            }
        }
        Response {
            beta_ols,
            zte,
            xte,
            ete,
            yty,
        }
    }
}

/// Scratch space for deviance evaluations, one per thread.
pub struct Work {
    t: Vec<f64>,
    w: Vec<f64>,
    l: Vec<f64>,
    rzx: Vec<f64>,
    cu: Vec<f64>,
    rx: Vec<f64>,
    cb: Vec<f64>,
}

impl Work {
    pub fn new(d: &Design) -> Self {
        let (p, q, m) = (d.p, d.q, d.m);
        Work {
            t: vec![0.0; q * q],
            w: vec![0.0; q * q],
            l: vec![0.0; m * q * q],
            rzx: vec![0.0; m * q * p],
            cu: vec![0.0; m * q],
            rx: vec![0.0; p * p],
            cb: vec![0.0; p],
        }
    }
}

/// The pieces of the deviance at one theta.
#[derive(Clone, Copy, Debug)]
struct Eval {
    /// `log |L|^2`
    ldl2: f64,
    /// `log |RX|^2`
    ldrx2: f64,
    pwrss: f64,
}

/// Group `g`'s factor `L_g` (`L_g L_g' = T'Z_g'Z_g T + I`), `RZX_g = L_g^{-1} T'Z_g'X` and
/// `cu_g = L_g^{-1} T'Z_g'e`, written to `w`; returns the log of the product of L_g's
/// diagonal (q may be large: several grouping factors), or None when the factorisation
/// fails. `w.t` holds T.
fn factor_group(d: &Design, r: &Response, g: usize, w: &mut Work) -> Option<f64> {
    let (p, q) = (d.p, d.q);
    let ztz = &d.ztz[g * q * q..(g + 1) * q * q];
    // w.w = Z'Z T
    for a in 0..q {
        for b in 0..q {
            w.w[a + b * q] = (b..q).map(|c| ztz[a + c * q] * w.t[c + b * q]).sum();
        }
    }
    let l = &mut w.l[g * q * q..(g + 1) * q * q];
    for a in 0..q {
        for b in 0..=a {
            let s: f64 = (a..q).map(|c| w.t[c + a * q] * w.w[c + b * q]).sum();
            l[a + b * q] = s + if a == b { 1.0 } else { 0.0 };
        }
    }
    if !linalg::cholesky_in_place(l, q) {
        return None;
    }
    let log_diag = (0..q).map(|a| l[a + a * q].ln()).sum();
    let ztx = &d.ztx[g * q * p..(g + 1) * q * p];
    let rzx = &mut w.rzx[g * q * p..(g + 1) * q * p];
    for b in 0..p {
        let col = &mut rzx[b * q..(b + 1) * q];
        for a in 0..q {
            col[a] = (a..q).map(|c| w.t[c + a * q] * ztx[c + b * q]).sum();
        }
        linalg::solve_lower_in_place(l, q, col);
    }
    let cu = &mut w.cu[g * q..(g + 1) * q];
    for a in 0..q {
        cu[a] = (a..q).map(|c| w.t[c + a * q] * r.zte[g * q + c]).sum();
    }
    linalg::solve_lower_in_place(l, q, cu);
    Some(log_diag)
}

/// `factor_group` for a random intercept (q = 1); returns L_g's diagonal (not its log).
fn factor_group_1(d: &Design, r: &Response, g: usize, w: &mut Work) -> Option<f64> {
    let p = d.p;
    let t = w.t[0];
    let l = (t * t * d.ztz[g] + 1.0).sqrt();
    w.l[g] = l;
    let scale = t / l;
    for b in 0..p {
        w.rzx[g * p + b] = scale * d.ztx[g * p + b];
    }
    w.cu[g] = scale * r.zte[g];
    Some(l)
}

/// `factor_group` for a correlated intercept and slope (q = 2), in closed form; returns the
/// product of L_g's diagonal (not its log).
fn factor_group_2(d: &Design, r: &Response, g: usize, w: &mut Work) -> Option<f64> {
    let p = d.p;
    let (t00, t10, t11) = (w.t[0], w.t[1], w.t[3]);
    let z = &d.ztz[g * 4..g * 4 + 4];
    let (w00, w10) = (z[0] * t00 + z[2] * t10, z[1] * t00 + z[3] * t10);
    let w11 = z[3] * t11;
    let m00 = t00 * w00 + t10 * w10 + 1.0;
    let m10 = t11 * w10;
    let m11 = t11 * w11 + 1.0;
    let l00 = m00.sqrt();
    let l10 = m10 / l00;
    let s11 = m11 - l10 * l10;
    if s11.is_nan() || s11 <= 0.0 {
        return None;
    }
    let l11 = s11.sqrt();
    let l = &mut w.l[g * 4..g * 4 + 4];
    l[0] = l00;
    l[1] = l10;
    l[3] = l11;
    let solve = |x0: f64, x1: f64| {
        let r0 = (t00 * x0 + t10 * x1) / l00;
        (r0, (t11 * x1 - l10 * r0) / l11)
    };
    let ztx = &d.ztx[g * 2 * p..(g + 1) * 2 * p];
    for b in 0..p {
        let (r0, r1) = solve(ztx[2 * b], ztx[2 * b + 1]);
        w.rzx[g * 2 * p + 2 * b] = r0;
        w.rzx[g * 2 * p + 2 * b + 1] = r1;
    }
    let (c0, c1) = solve(r.zte[2 * g], r.zte[2 * g + 1]);
    w.cu[2 * g] = c0;
    w.cu[2 * g + 1] = c1;
    Some(l00 * l11)
}

/// Solves the penalised least-squares problem at `theta`, leaving its factors in `w`.
fn evaluate(d: &Design, r: &Response, theta: &[f64], w: &mut Work) -> Option<Eval> {
    let (p, q) = (d.p, d.q);
    w.t.iter_mut().for_each(|v| *v = 0.0);
    for (positions, &v) in d.pattern.iter().zip(theta) {
        for &(row, c) in positions {
            w.t[row + c * q] = v;
        }
    }
    w.rx.copy_from_slice(&d.xtx);
    w.cb.copy_from_slice(&r.xte);
    // log |L|^2 as the log of a running product of the diagonals (all >= 1, since
    // L L' >= I), logged before it could overflow: a log per group would dominate.
    let mut ldl2 = 0.0;
    let mut det = 1.0;
    let mut cu2 = 0.0;
    for g in 0..d.m {
        let (diag, log_diag) = match q {
            1 => (factor_group_1(d, r, g, w)?, 0.0),
            2 => (factor_group_2(d, r, g, w)?, 0.0),
            _ => (1.0, factor_group(d, r, g, w)?),
        };
        det *= diag;
        ldl2 += log_diag;
        if det > 1e150 {
            ldl2 += det.ln();
            det = 1.0;
        }
        let rzx = &w.rzx[g * q * p..(g + 1) * q * p];
        let cu = &w.cu[g * q..(g + 1) * q];
        cu2 += dot(cu, cu);
        for a in 0..p {
            let ra = &rzx[a * q..(a + 1) * q];
            w.cb[a] -= dot(ra, cu);
            for b in 0..=a {
                w.rx[a + b * p] -= dot(ra, &rzx[b * q..(b + 1) * q]);
            }
        }
    }
    let ldl2 = 2.0 * (ldl2 + det.ln());
    if !linalg::cholesky_in_place(&mut w.rx, p) {
        return None;
    }
    let ldrx2 = (0..p).map(|a| 2.0 * w.rx[a + a * p].ln()).sum();
    linalg::solve_lower_in_place(&w.rx, p, &mut w.cb);
    let pwrss = r.ete - cu2 - w.cb.iter().map(|v| v * v).sum::<f64>();
    if pwrss.is_nan() || pwrss <= 0.0 || !ldl2.is_finite() {
        return None;
    }
    Some(Eval { ldl2, ldrx2, pwrss })
}

/// lme4's profiled deviance (REML criterion when `reml`).
fn profiled(d: &Design, e: &Eval, reml: bool) -> f64 {
    let two_pi = 2.0 * std::f64::consts::PI;
    if reml {
        let nmp = (d.n - d.p) as f64;
        e.ldl2 + e.ldrx2 + nmp * (1.0 + (two_pi * e.pwrss / nmp).ln())
    } else {
        let n = d.n as f64;
        e.ldl2 + n * (1.0 + (two_pi * e.pwrss / n).ln())
    }
}

/// lmerTest's `devfun_vp`: the deviance at `theta` and residual sd `sigma`, not profiled.
fn varpar_deviance(d: &Design, e: &Eval, sigma: f64, reml: bool) -> f64 {
    let s2 = sigma * sigma;
    let log_2pi_s2 = (2.0 * std::f64::consts::PI * s2).ln();
    let dev = e.ldl2 + e.pwrss / s2 + d.n as f64 * log_2pi_s2;
    if reml {
        dev + e.ldrx2 - d.p as f64 * log_2pi_s2
    } else {
        dev
    }
}

/// Diagonal of `(RX RX')^{-1} = RX^{-T} RX^{-1}` from the factor left in `w`: entry i is
/// the squared length of `RX^{-1} e_i`.
fn rx_inverse_diag(p: usize, w: &Work, out: &mut [f64]) {
    let mut col = vec![0.0; p];
    for (i, o) in out.iter_mut().enumerate() {
        col.iter_mut().for_each(|v| *v = 0.0);
        col[i] = 1.0;
        linalg::solve_lower_in_place(&w.rx, p, &mut col);
        *o = dot(&col, &col);
    }
}

/// `(RX RX')^{-1}` from the factor left in `w`.
fn rx_inverse(p: usize, w: &Work) -> Vec<f64> {
    let mut out = vec![0.0; p * p];
    let mut col = vec![0.0; p];
    for i in 0..p {
        col.iter_mut().for_each(|v| *v = 0.0);
        col[i] = 1.0;
        linalg::solve_lower_in_place(&w.rx, p, &mut col);
        linalg::solve_lower_transposed_in_place(&w.rx, p, &mut col);
        out[i * p..(i + 1) * p].copy_from_slice(&col);
    }
    out
}

/// Fits one response. It is first divided by its largest magnitude, so that squares of
/// responses near 1e308 do not overflow; estimates and criterion are scaled back.
pub fn fit_one(d: &Design, y: &[f64], opts: Options, w: &mut Work) -> Fit {
    let scale = y.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    if !(scale > 0.0 && scale.is_finite()) {
        return fit_unit_scale(d, y, opts, w);
    }
    let unit: Vec<f64> = y.iter().map(|v| v / scale).collect();
    let mut fit = fit_unit_scale(d, &unit, opts, w);
    let dof = if opts.reml { d.n - d.p } else { d.n };
    fit.rescale(scale, dof as f64);
    fit
}

fn fit_unit_scale(d: &Design, y: &[f64], opts: Options, w: &mut Work) -> Fit {
    let r = Response::new(d, y);
    if !r.ete.is_finite() || r.ete <= RESIDUAL_TOL * r.yty {
        return Fit::empty(d, Status::NoResidualVariance);
    }
    let lower: Vec<f64> = d
        .theta_on_diagonal()
        .iter()
        .map(|&diag| if diag { 0.0 } else { f64::NEG_INFINITY })
        .collect();
    let start: Vec<f64> = d
        .theta_on_diagonal()
        .iter()
        .map(|&diag| if diag { 1.0 } else { 0.0 })
        .collect();
    let objective = |theta: &[f64], w: &mut Work| match evaluate(d, &r, theta, w) {
        Some(e) => profiled(d, &e, opts.reml),
        None => f64::INFINITY,
    };
    let columns = d.theta_columns();
    let (theta, iterations, converged) =
        minimise_bounded(&start, &lower, &columns, |t| objective(t, w));
    let Some(e) = evaluate(d, &r, &theta, w) else {
        return Fit::empty(d, Status::Failed);
    };
    let (n, p, q) = (d.n, d.p, d.q);
    let dof = if opts.reml { (n - p) as f64 } else { n as f64 };
    let sigma = (e.pwrss / dof).sqrt();
    // beta_e = RX^{-T} cb; b_g = T L_g^{-T} (cu_g - RZX_g beta_e)
    let mut beta_e = w.cb.clone();
    linalg::solve_lower_transposed_in_place(&w.rx, p, &mut beta_e);
    let mut ranef = vec![0.0; d.m * q];
    let mut u = vec![0.0; q];
    for g in 0..d.m {
        for a in 0..q {
            u[a] = w.cu[g * q + a]
                - (0..p)
                    .map(|b| w.rzx[g * q * p + a + b * q] * beta_e[b])
                    .sum::<f64>();
        }
        linalg::solve_lower_transposed_in_place(&w.l[g * q * q..(g + 1) * q * q], q, &mut u);
        for a in 0..q {
            ranef[g * q + a] = (0..=a).map(|c| w.t[a + c * q] * u[c]).sum();
        }
    }
    let beta: Vec<f64> = (0..p).map(|a| r.beta_ols[a] + beta_e[a]).collect();
    let inv = rx_inverse(p, w);
    let vcov: Vec<f64> = inv.iter().map(|v| v * sigma * sigma).collect();
    let df = if opts.satterthwaite {
        satterthwaite(d, &r, &theta, sigma, &vcov, opts.reml, w)
    } else {
        vec![f64::NAN; p]
    };
    Fit {
        beta,
        vcov,
        vcov_scale: 1.0,
        df,
        theta,
        sigma,
        criterion: profiled(d, &e, opts.reml),
        ranef,
        converged,
        iterations,
        status: Status::Ok,
    }
}

/// lmerTest's Satterthwaite df for each coefficient: `2 V^2 / (g' A g)`, with `V` the
/// coefficient's variance, `g` its gradient in varpar and `A = 2 H^+` (H the deviance
/// Hessian in varpar, pseudo-inverted over eigenvalues above `HESSIAN_TOL`).
fn satterthwaite(
    d: &Design,
    r: &Response,
    theta: &[f64],
    sigma: f64,
    vcov: &[f64],
    reml: bool,
    w: &mut Work,
) -> Vec<f64> {
    let (p, k) = (d.p, theta.len());
    let hessian = varpar_hessian(d, r, theta, sigma, reml, w);
    let a = pseudo_inverse(&hessian, k + 1, HESSIAN_TOL);
    // Jacobian of diag(vcov) in theta (numerically, as numDeriv::jacobian) and sigma (exact).
    let mut grad = nd_jacobian(
        |t: &[f64]| {
            let mut diag = vec![f64::NAN; p];
            if evaluate(d, r, t, w).is_some() {
                rx_inverse_diag(p, w, &mut diag);
                diag.iter_mut().for_each(|v| *v *= sigma * sigma);
            }
            diag
        },
        theta,
        p,
    );
    for c in 0..p {
        grad.push(2.0 * vcov[c + c * p] / sigma);
    }
    // grad is (k + 1) blocks of p: grad[j * p + c] = d V_c / d varpar_j
    let n = k + 1;
    (0..p)
        .map(|c| {
            let v = vcov[c + c * p];
            let mut denom = 0.0;
            for i in 0..n {
                for j in 0..n {
                    denom += grad[i * p + c] * a[i + j * n] * grad[j * p + c];
                }
            }
            2.0 * v * v / denom
        })
        .collect()
}

/// Hessian of lmerTest's `devfun_vp` at `(theta, sigma)`, column-major `(k + 1) x (k + 1)`.
/// The theta block is numDeriv's (genD, the same evaluations at `sigma` fixed); the sigma
/// row is exact, since the deviance is `A(theta) + pwrss(theta) / s^2 + nu log(2 pi s^2)`:
/// `d2/ds2 = 6 pwrss / s^4 - 2 nu / s^2` and `d2/ds dtheta = -2 / s^3 dpwrss/dtheta`, with
/// `dpwrss/dtheta` from the same evaluations (Richardson-extrapolated central differences).
fn varpar_hessian(
    d: &Design,
    r: &Response,
    theta: &[f64],
    sigma: f64,
    reml: bool,
    w: &mut Work,
) -> Vec<f64> {
    let k = theta.len();
    let nu = if reml { d.n - d.p } else { d.n } as f64;
    let (block, pwrss_grad, pwrss) = nd_hessian(
        |t: &[f64]| match evaluate(d, r, t, w) {
            Some(e) => (varpar_deviance(d, &e, sigma, reml), e.pwrss),
            None => (f64::NAN, f64::NAN),
        },
        theta,
    );
    let n = k + 1;
    let mut hessian = vec![0.0; n * n];
    for i in 0..k {
        for j in 0..k {
            hessian[i + j * n] = block[i + j * k];
        }
        let cross = -2.0 * pwrss_grad[i] / sigma.powi(3);
        hessian[i + k * n] = cross;
        hessian[k + i * n] = cross;
    }
    hessian[k + k * n] = 6.0 * pwrss / sigma.powi(4) - 2.0 * nu / (sigma * sigma);
    hessian
}

/// Minimises `f` over `x >= lower` by projected Newton steps on central-difference
/// derivatives, backtracking until the deviance decreases. Returns the minimiser, the
/// iterations used and whether the step length converged.
fn minimise_bounded(
    start: &[f64],
    lower: &[f64],
    columns: &[Vec<usize>],
    mut f: impl FnMut(&[f64]) -> f64,
) -> (Vec<f64>, usize, bool) {
    let k = start.len();
    let mut x = start.to_vec();
    let mut fx = f(&x);
    for iter in 1..=MAX_ITER {
        let h: Vec<f64> = x.iter().map(|v| 1e-4 * v.abs().max(0.1)).collect();
        let (mut grad, mut hess) = fd_derivatives(&mut f, &x, fx, &h);
        // T and T with a column negated give the same model. When a column's diagonal is
        // held at 0 by its gradient, the negated column is the same point with the opposite
        // gradient in that diagonal: move there, and the diagonal is free to grow.
        for col in columns {
            let j = col[0];
            if col.len() > 1 && x[j] - lower[j] < AT_BOUND && grad[j] > 0.0 {
                for &i in col {
                    x[i] = -x[i];
                    grad[i] = -grad[i];
                    for c in 0..k {
                        hess[i + c * k] = -hess[i + c * k];
                        hess[c + i * k] = -hess[c + i * k];
                    }
                }
                x[j] = lower[j];
                fx = f(&x);
            }
        }
        // Free variables: not held at their bound by a gradient pushing outwards. Where the
        // gradient vanishes (the deviance is even in a last diagonal element of T at 0), a
        // negative curvature frees the variable.
        let free: Vec<usize> = (0..k)
            .filter(|&j| {
                let held = x[j] <= lower[j] && grad[j] > 0.0;
                !held || (hess[j + j * k] < 0.0 && grad[j] < 0.5 * hess[j + j * k].abs() * h[j])
            })
            .collect();
        if free.is_empty() {
            return (x, iter, true);
        }
        let (step, two_sided) = newton_step(&grad, &hess, &x, lower, &free);
        let clamped = (0..k).any(|j| x[j] + step[j] < lower[j]);
        let size = (0..k)
            .map(|j| step[j].abs() / x[j].abs().max(1.0))
            .fold(0.0, f64::max);
        // A full Newton step this short leaves an error of its square (and may not lower
        // the deviance beyond rounding): take it and stop.
        if !two_sided && !clamped && size < NEWTON_TOL {
            for j in 0..k {
                x[j] += step[j];
            }
            return (x, iter, true);
        }
        let mut found = line_search(&mut f, &x, fx, &step, two_sided, lower);
        if found.is_none() {
            // Fall back on a diagonally scaled gradient step.
            let mut descent = vec![0.0; k];
            for &j in &free {
                descent[j] = -grad[j] / hess[j + j * k].abs().max(1e-8);
            }
            found = line_search(&mut f, &x, fx, &descent, false, lower);
        }
        let improved = found.is_some();
        let mut moved = 0.0f64;
        if let Some((t, ft)) = found {
            moved = (0..k)
                .map(|j| (t[j] - x[j]).abs() / x[j].abs().max(1.0))
                .fold(0.0, f64::max);
            x = t;
            fx = ft;
        }
        if !improved || moved < STEP_TOL {
            let projected_grad = free.iter().map(|&j| grad[j].abs()).fold(0.0, f64::max);
            return (x, iter, projected_grad < GRADIENT_TOL);
        }
    }
    (x, MAX_ITER, false)
}

/// Backtracking along `step` (and its opposite when `two_sided`), projected on the bounds:
/// the first trial that lowers `f`, with its value.
fn line_search(
    f: &mut impl FnMut(&[f64]) -> f64,
    x: &[f64],
    fx: f64,
    step: &[f64],
    two_sided: bool,
    lower: &[f64],
) -> Option<(Vec<f64>, f64)> {
    let signs: &[f64] = if two_sided { &[1.0, -1.0] } else { &[1.0] };
    let mut alpha = 1.0;
    for _ in 0..30 {
        let mut best: Option<(Vec<f64>, f64)> = None;
        for &sign in signs {
            let trial: Vec<f64> = (0..x.len())
                .map(|j| (x[j] + sign * alpha * step[j]).max(lower[j]))
                .collect();
            let ft = f(&trial);
            if ft < fx && best.as_ref().is_none_or(|b| ft < b.1) {
                best = Some((trial, ft));
            }
        }
        if let Some((trial, ft)) = best {
            return Some((trial, ft));
        }
        alpha *= 0.5;
    }
    None
}

/// Gradient and Hessian of `f` at `x` by central differences with steps `h`.
fn fd_derivatives(
    f: &mut impl FnMut(&[f64]) -> f64,
    x: &[f64],
    fx: f64,
    h: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let k = x.len();
    let mut grad = vec![0.0; k];
    let mut hess = vec![0.0; k * k];
    let mut xs = x.to_vec();
    let mut plus = vec![0.0; k];
    let mut minus = vec![0.0; k];
    for j in 0..k {
        xs[j] = x[j] + h[j];
        plus[j] = f(&xs);
        xs[j] = x[j] - h[j];
        minus[j] = f(&xs);
        xs[j] = x[j];
        grad[j] = (plus[j] - minus[j]) / (2.0 * h[j]);
        hess[j + j * k] = (plus[j] - 2.0 * fx + minus[j]) / (h[j] * h[j]);
    }
    for i in 0..k {
        for j in 0..i {
            xs[i] = x[i] + h[i];
            xs[j] = x[j] + h[j];
            let pp = f(&xs);
            xs[i] = x[i] - h[i];
            xs[j] = x[j] - h[j];
            let mm = f(&xs);
            xs[i] = x[i];
            xs[j] = x[j];
            let v = (pp - plus[i] - plus[j] + 2.0 * fx - minus[i] - minus[j] + mm)
                / (2.0 * h[i] * h[j]);
            hess[i + j * k] = v;
            hess[j + i * k] = v;
        }
    }
    (grad, hess)
}

/// Newton step on the free variables; where their Hessian block is not positive definite,
/// a step along its direction of most negative curvature (into the feasible region when
/// leaving a bound, as at `theta = 0` where the deviance is even, otherwise downhill), of
/// length comparable to `x`. Zero on the other variables.
fn newton_step(
    grad: &[f64],
    hess: &[f64],
    x: &[f64],
    lower: &[f64],
    free: &[usize],
) -> (Vec<f64>, bool) {
    let k = x.len();
    let nf = free.len();
    let mut block = vec![0.0; nf * nf];
    for (r, &i) in free.iter().enumerate() {
        for (c, &j) in free.iter().enumerate() {
            block[r + c * nf] = hess[i + j * k];
        }
    }
    let mut step = vec![0.0; k];
    let mut chol = block.clone();
    if linalg::cholesky_in_place(&mut chol, nf) {
        let mut rhs: Vec<f64> = free.iter().map(|&j| -grad[j]).collect();
        linalg::solve_lower_in_place(&chol, nf, &mut rhs);
        linalg::solve_lower_transposed_in_place(&chol, nf, &mut rhs);
        for (r, &j) in free.iter().enumerate() {
            step[j] = rhs[r];
        }
        return (step, false);
    }
    let (values, vectors) = linalg::symmetric_eigen(&block, nf);
    let lowest = (0..nf)
        .min_by(|&a, &b| values[a].total_cmp(&values[b]))
        .unwrap_or(0);
    let length = x.iter().map(|v| v * v).sum::<f64>().sqrt().max(1.0);
    let dir: Vec<f64> = (0..nf).map(|r| vectors[r + lowest * nf]).collect();
    let slope: f64 = free
        .iter()
        .enumerate()
        .map(|(r, &j)| grad[j] * dir[r])
        .sum();
    let inward: f64 = free
        .iter()
        .enumerate()
        .filter(|(_, &j)| x[j] <= lower[j])
        .map(|(r, _)| dir[r])
        .sum();
    // Into the feasible region when leaving a bound, otherwise downhill.
    let sign = if inward != 0.0 {
        inward.signum()
    } else if slope != 0.0 {
        -slope.signum()
    } else {
        1.0
    };
    for (r, &j) in free.iter().enumerate() {
        step[j] = sign * length * dir[r];
    }
    (step, true)
}

/// numDeriv's Richardson extrapolation of `r` estimates at steps `h, h/2, h/4, ...`.
fn richardson(mut a: Vec<f64>) -> f64 {
    let r = a.len();
    for m in 1..r {
        let f = 4f64.powi(m as i32);
        for k in 0..r - m {
            a[k] = (a[k + 1] * f - a[k]) / (f - 1.0);
        }
    }
    a[0]
}

const ND_EPS: f64 = 1e-4;
const ND_R: usize = 4;

fn nd_zero_tol() -> f64 {
    (f64::EPSILON / 7e-7).sqrt()
}

fn nd_steps(x: &[f64], d: f64) -> Vec<f64> {
    let zero_tol = nd_zero_tol();
    x.iter()
        .map(|v| (d * v).abs() + if v.abs() < zero_tol { ND_EPS } else { 0.0 })
        .collect()
}

/// numDeriv::hessian (through genD, d = 0.1, r = 4, v = 2) of the first value of `f`,
/// column-major; with the gradient of its second value (genD's first derivatives, from the
/// same evaluations) and that value at `x`.
fn nd_hessian(mut f: impl FnMut(&[f64]) -> (f64, f64), x: &[f64]) -> (Vec<f64>, Vec<f64>, f64) {
    let k = x.len();
    let (f0, g0) = f(x);
    let h0 = nd_steps(x, 0.1);
    let mut xs = x.to_vec();
    let mut hdiag = vec![0.0; k];
    let mut grad = vec![0.0; k];
    for i in 0..k {
        let mut est = Vec::with_capacity(ND_R);
        let mut slope = Vec::with_capacity(ND_R);
        let mut h = h0[i];
        for _ in 0..ND_R {
            xs[i] = x[i] + h;
            let (f1, g1) = f(&xs);
            xs[i] = x[i] - h;
            let (f2, g2) = f(&xs);
            xs[i] = x[i];
            est.push((f1 - 2.0 * f0 + f2) / (h * h));
            slope.push((g1 - g2) / (2.0 * h));
            h /= 2.0;
        }
        hdiag[i] = richardson(est);
        grad[i] = richardson(slope);
    }
    let mut hess = vec![0.0; k * k];
    for i in 0..k {
        hess[i + i * k] = hdiag[i];
        for j in 0..i {
            let mut est = Vec::with_capacity(ND_R);
            let (mut hi, mut hj) = (h0[i], h0[j]);
            for _ in 0..ND_R {
                xs[i] = x[i] + hi;
                xs[j] = x[j] + hj;
                let f1 = f(&xs).0;
                xs[i] = x[i] - hi;
                xs[j] = x[j] - hj;
                let f2 = f(&xs).0;
                xs[i] = x[i];
                xs[j] = x[j];
                est.push(
                    (f1 - 2.0 * f0 + f2 - hdiag[i] * hi * hi - hdiag[j] * hj * hj)
                        / (2.0 * hi * hj),
                );
                hi /= 2.0;
                hj /= 2.0;
            }
            let v = richardson(est);
            hess[i + j * k] = v;
            hess[j + i * k] = v;
        }
    }
    (hess, grad, g0)
}

/// numDeriv::jacobian (d = 1e-4, r = 4, v = 2) of a vector function with `m` values:
/// returns `m` values per variable, variable by variable.
fn nd_jacobian(mut f: impl FnMut(&[f64]) -> Vec<f64>, x: &[f64], m: usize) -> Vec<f64> {
    let k = x.len();
    let h0 = nd_steps(x, 1e-4);
    let mut xs = x.to_vec();
    let mut out = vec![0.0; k * m];
    for i in 0..k {
        let mut est = vec![Vec::with_capacity(ND_R); m];
        let mut h = h0[i];
        for _ in 0..ND_R {
            xs[i] = x[i] + h;
            let f1 = f(&xs);
            xs[i] = x[i] - h;
            let f2 = f(&xs);
            xs[i] = x[i];
            for c in 0..m {
                est[c].push((f1[c] - f2[c]) / (2.0 * h));
            }
            h /= 2.0;
        }
        for (c, e) in est.into_iter().enumerate() {
            out[i * m + c] = richardson(e);
        }
    }
    out
}

/// Moore-Penrose inverse of a symmetric matrix over its eigenvalues above `tol`, times 2
/// (lmerTest's `vcov_varpar`).
fn pseudo_inverse(a: &[f64], n: usize, tol: f64) -> Vec<f64> {
    let (values, vectors) = linalg::symmetric_eigen(a, n);
    let mut out = vec![0.0; n * n];
    for (e, &lambda) in values.iter().enumerate() {
        if lambda > tol {
            for i in 0..n {
                for j in 0..n {
                    out[i + j * n] += 2.0 * vectors[i + e * n] * vectors[j + e * n] / lambda;
                }
            }
        }
    }
    out
}

/// Fits every response: `y` is `n_responses x n` column-major (responses in rows).
pub fn fit_many(d: &Design, y: &[f64], n_responses: usize, opts: Options) -> Vec<Fit> {
    let n = d.n;
    (0..n_responses)
        .into_par_iter()
        .map_init(
            || (Work::new(d), vec![0.0; n]),
            |(w, row), k| {
                if crate::cancelled() {
                    return Fit::empty(d, Status::Failed);
                }
                for i in 0..n {
                    row[i] = y[k + i * n_responses];
                }
                fit_one(d, row, opts, w)
            },
        )
        .collect()
}

/// Two-sided log p-value of a coefficient: t with `df`, or normal when `df` is infinite.
pub fn log_p(estimate: f64, std_error: f64, df: f64) -> f64 {
    let stat = estimate / std_error;
    if df.is_infinite() {
        dist::norm_two_sided_log_p(stat)
    } else {
        dist::t_two_sided_log_p(stat, df)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sleepstudy-like data: 18 subjects x 10 days.
    fn simulated(q: usize) -> (Design, Vec<f64>) {
        let (m, per) = (18usize, 10usize);
        let n = m * per;
        let mut x = vec![0.0; n * 2];
        let mut z = vec![0.0; n * q];
        let mut group = vec![0usize; n];
        let mut y = vec![0.0; n];
        let mut seed = 12345u64;
        let mut unif = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 11) as f64) / ((1u64 << 53) as f64)
        };
        for g in 0..m {
            let b0 = 3.0 * (unif() - 0.5);
            let b1 = unif() - 0.5;
            for t in 0..per {
                let i = g * per + t;
                x[i] = 1.0;
                x[i + n] = t as f64;
                z[i] = 1.0;
                if q == 2 {
                    z[i + n] = t as f64;
                }
                group[i] = g;
                y[i] = 2.0 + 0.5 * t as f64 + b0 + b1 * t as f64 + 2.0 * (unif() - 0.5);
            }
        }
        (Design::new(&x, 2, &z, q, &group, m, &[(q, 1)]).unwrap(), y)
    }

    #[test]
    fn lmm_optimum_is_stationary() {
        for q in [1, 2] {
            let (d, y) = simulated(q);
            let mut w = Work::new(&d);
            let fit = fit_one(
                &d,
                &y,
                Options {
                    reml: true,
                    satterthwaite: true,
                },
                &mut w,
            );
            assert!(fit.converged, "q = {q}");
            let r = Response::new(&d, &y);
            let f = |t: &[f64], w: &mut Work| profiled(&d, &evaluate(&d, &r, t, w).unwrap(), true);
            let f0 = f(&fit.theta, &mut w);
            for j in 0..fit.theta.len() {
                for s in [-1e-4, 1e-4] {
                    let mut t = fit.theta.clone();
                    t[j] += s;
                    assert!(f(&t, &mut w) >= f0 - 1e-12, "q = {q}, theta {j}");
                }
            }
            assert!(fit.df.iter().all(|v| v.is_finite() && *v > 0.0));
        }
    }

    #[test]
    fn lmm_balanced_design_has_textbook_df() {
        // 6 subjects x 4 visits, a within-subject covariate (time) and a between-subject one
        // (arm): Satterthwaite gives n - m - 1 = 17 and m - 2 = 4 exactly.
        let (m, per) = (6usize, 4usize);
        let n = m * per;
        let mut x = vec![0.0; n * 3];
        let mut group = vec![0usize; n];
        let mut y = vec![0.0; n];
        for g in 0..m {
            for t in 0..per {
                let i = g * per + t;
                x[i] = 1.0;
                x[i + n] = t as f64;
                x[i + 2 * n] = (g % 2) as f64;
                group[i] = g;
                y[i] =
                    (g as f64 * 1.7).sin() * 2.0 + 0.3 * t as f64 + ((i * i) as f64 * 0.37).cos();
            }
        }
        let d = Design::new(&x, 3, &vec![1.0; n], 1, &group, m, &[(1, 1)]).unwrap();
        let fit = fit_one(
            &d,
            &y,
            Options {
                reml: true,
                satterthwaite: true,
            },
            &mut Work::new(&d),
        );
        assert!(fit.theta[0] > 0.1);
        assert!((fit.df[1] - 17.0).abs() < 1e-6, "{:?}", fit.df);
        assert!((fit.df[2] - 4.0).abs() < 1e-6, "{:?}", fit.df);
        for c in 0..3 {
            let stat = fit.beta[c] / fit.std_error(c);
            let t = dist::t_two_sided_log_p(stat, fit.df[c]);
            assert_eq!(fit.log_p_t(c), t);
            assert_eq!(fit.log_p_z(c), dist::norm_two_sided_log_p(stat));
        }
    }

    #[test]
    fn lmm_scaled_response_scales_the_fit() {
        let (d, y) = simulated(1);
        let opts = Options {
            reml: true,
            satterthwaite: true,
        };
        let mut w = Work::new(&d);
        let base = fit_one(&d, &y, opts, &mut w);
        let s = 1e300;
        let big: Vec<f64> = y.iter().map(|v| v * s).collect();
        let fit = fit_one(&d, &big, opts, &mut w);
        assert_eq!(fit.status, Status::Ok);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-8 * b.abs();
        for c in 0..d.p {
            assert!(close(fit.beta[c], base.beta[c] * s));
            assert!(close(fit.std_error(c), base.std_error(c) * s));
            assert!(close(fit.df[c], base.df[c]));
        }
        assert!(close(fit.sigma, base.sigma * s));
        let dof = (d.n - d.p) as f64;
        assert!(close(fit.criterion, base.criterion + 2.0 * dof * s.ln()));
    }

    #[test]
    fn lmm_constant_response_has_no_fit() {
        let (d, _) = simulated(1);
        let mut w = Work::new(&d);
        let y = vec![3.0; 180];
        let fit = fit_one(
            &d,
            &y,
            Options {
                reml: true,
                satterthwaite: true,
            },
            &mut w,
        );
        assert_eq!(fit.status, Status::NoResidualVariance);
    }

    #[test]
    fn lmm_numderiv_hessian_and_jacobian_are_exact_on_polynomials() {
        // f = x0^3 x1 + 2 x1^2: Richardson extrapolation is exact up to rounding.
        let x = [1.3, -0.7];
        let (hess, grad, value) = nd_hessian(
            |v| (v[0].powi(3) * v[1] + 2.0 * v[1] * v[1], v[0] * v[1]),
            &x,
        );
        let expected = [6.0 * x[0] * x[1], 3.0 * x[0] * x[0], 3.0 * x[0] * x[0], 4.0];
        for (h, e) in hess.iter().zip(expected) {
            assert!((h - e).abs() < 1e-7 * e.abs().max(1.0), "{h} vs {e}");
        }
        assert!((grad[0] - x[1]).abs() < 1e-9 && (grad[1] - x[0]).abs() < 1e-9);
        assert!((value - x[0] * x[1]).abs() < 1e-15);
        let jac = nd_jacobian(|v| vec![v[0] * v[1], v[1].powi(2)], &x, 2);
        let expected = [x[1], 0.0, x[0], 2.0 * x[1]];
        for (j, e) in jac.iter().zip(expected) {
            assert!((j - e).abs() < 1e-9, "{j} vs {e}");
        }
    }

    #[test]
    fn lmm_independent_terms_have_diagonal_blocks() {
        let (m, per) = (5usize, 4usize);
        let n = m * per;
        let x = vec![1.0; n];
        let z: Vec<f64> = (0..2 * n)
            .map(|k| if k < n { 1.0 } else { (k % per) as f64 })
            .collect();
        let group: Vec<usize> = (0..n).map(|i| i / per).collect();
        let joint = Design::new(&x, 1, &z, 2, &group, m, &[(2, 1)]).unwrap();
        let split = Design::new(&x, 1, &z, 2, &group, m, &[(1, 1), (1, 1)]).unwrap();
        assert_eq!(joint.theta_columns(), vec![vec![0, 1], vec![2]]);
        assert_eq!(split.theta_columns(), vec![vec![0], vec![1]]);
        assert_eq!(split.theta_on_diagonal(), vec![true, true]);
        assert!(Design::new(&x, 1, &z, 2, &group, m, &[(1, 1)]).is_err());
    }
}

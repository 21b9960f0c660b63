//! Weighted least squares with cluster-robust inference, for many responses that share one
//! design (the difference-in-differences model: every gene of a trial has the same
//! participants, visits and weights).
//!
//! Everything a coefficient needs is linear in the response y: its estimate is `b'y` and
//! its cluster scores are `P y` (one per cluster), with variance `scale * |P y|^2`:
//! - CR1 (`sandwich::vcovCL(type = "HC1")`): `P = R (I - H)`, row g of R being
//!   `c'M X_g'W_g` on cluster g's observations, `scale = G/(G-1) (N-1)/(N-p)`, df `G - 1`;
//! - CR2 (`clubSandwich`, working model the identity): R adjusted by
//!   `A_g = G_g^{-1/2}` (pseudo-inverse square root), with
//!   `G_g = I - H_gg - H_gg' + X_g Omega X_g'`, `Omega = M X'W^2X M`; Satterthwaite df
//!   `tr(S)^2 / |S|_F^2` with `S = P P'`.
//!
//! `G_g` differs from the identity by a matrix of rank at most 2p, so `A_g` is computed
//! from a thin SVD and a small eigenproblem: a cluster of thousands of cells costs
//! `O(n_g p^2)`, not `O(n_g^3)`.
//!
//! The wild cluster bootstrap imposes the null (restricted fit without the tested column):
//! with `y* = yhat_r + w_g e_r`, the draw's estimate is `sum_h w_h a_h` and its scores
//! `K w`, where `a_h` and `K[g, h]` are cluster-h sums of `b_i e_r,i` and `P[g, i] e_r,i`,
//! themselves linear in y. So each draw costs `O(G^2)` per response.

use crate::dist;
use crate::input::Features;
use crate::linalg;
use crate::project::{Projection, N_STATS};
use faer::linalg::solvers::DenseSolveCore;
use faer::{Mat, MatRef, Side};
use rayon::prelude::*;

/// Eigenvalues at or below this are treated as zero in the pseudo-inverse square root,
/// as clubSandwich's `matrix_power()` does.
const EIGEN_TOL: f64 = 1e-12;
/// A bootstrap draw counts as at least as extreme as the data within this relative
/// tolerance, so the draw that reproduces the data always counts.
pub const TIE_TOL: f64 = 1e-9;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vcov {
    Cr1,
    Cr2,
}

/// Why a response's row has no inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    ZeroVariance = 1,
    NoResidualVariance = 2,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Ok, Status::ZeroVariance, Status::NoResidualVariance];

    pub fn text(self) -> Option<&'static str> {
        match self {
            Status::Ok => None,
            Status::ZeroVariance => Some("zero variance"),
            Status::NoResidualVariance => Some("no residual variance"),
        }
    }
}

/// A design shared by all responses: `x` is `N x p` and of full column rank.
pub struct Design<'a> {
    pub x: MatRef<'a, f64>,
    pub weights: &'a [f64],
    /// Cluster of each observation, 0-based and dense (every cluster has observations).
    pub cluster: &'a [usize],
    pub n_clusters: usize,
}

impl Design<'_> {
    fn check(&self) -> Result<(), String> {
        let n = self.x.nrows();
        if self.weights.len() != n || self.cluster.len() != n {
            return Err("design: weights and clusters must have one entry per row".into());
        }
        if self.weights.iter().any(|&w| !(w > 0.0 && w.is_finite())) {
            return Err("design: weights must be positive and finite".into());
        }
        let mut seen = vec![false; self.n_clusters];
        for &g in self.cluster {
            if g >= self.n_clusters {
                return Err("design: cluster index out of range".into());
            }
            seen[g] = true;
        }
        if self.n_clusters < 2 || seen.iter().any(|s| !s) {
            return Err("design: need at least two clusters, each with observations".into());
        }
        if n <= self.x.ncols() {
            return Err("design: no residual degrees of freedom".into());
        }
        Ok(())
    }

    fn members(&self) -> Vec<Vec<usize>> {
        let mut m = vec![Vec::new(); self.n_clusters];
        for (i, &g) in self.cluster.iter().enumerate() {
            m[g].push(i);
        }
        m
    }

    fn rows(&self, idx: &[usize]) -> Mat<f64> {
        Mat::from_fn(idx.len(), self.x.ncols(), |r, c| self.x[(idx[r], c)])
    }

    /// `X'WX` and its inverse (the bread).
    fn bread(&self) -> Result<Mat<f64>, String> {
        let wx = Mat::from_fn(self.x.nrows(), self.x.ncols(), |i, c| {
            self.weights[i] * self.x[(i, c)]
        });
        let xtwx = self.x.transpose() * &wx;
        let llt = xtwx
            .llt(Side::Lower)
            .map_err(|_| "design: X'WX is singular (collinear columns)".to_string())?;
        Ok(llt.inverse())
    }
}

/// What one coefficient needs per response.
pub struct CoefRows {
    /// Estimate = `b'y` (length N).
    pub b: Vec<f64>,
    /// Cluster scores = `P y`, `P` being `G x N`.
    pub scores: Mat<f64>,
    pub df: f64,
    /// Variance = `scale * |P y|^2`.
    pub scale: f64,
}

/// `b` and `P` of coefficient `coef` under `vcov`.
fn coef_rows(d: &Design, bread: &Mat<f64>, coef: usize, vcov: Vcov) -> Result<CoefRows, String> {
    let (n, p, g_count) = (d.x.nrows(), d.x.ncols(), d.n_clusters);
    let mc = bread.col(coef).to_owned(); // M c (M symmetric)
    let xmc = d.x * &mc;
    let b: Vec<f64> = (0..n).map(|i| d.weights[i] * xmc[i]).collect();
    let members = d.members();
    let omega = match vcov {
        Vcov::Cr2 => {
            let w2x = Mat::from_fn(n, p, |i, c| d.weights[i].powi(2) * d.x[(i, c)]);
            Some(bread * (d.x.transpose() * w2x) * bread)
        }
        Vcov::Cr1 => None,
    };
    // R: G x N, row g = b restricted to cluster g, adjusted by A_g for CR2.
    let mut r = Mat::<f64>::zeros(g_count, n);
    for (g, idx) in members.iter().enumerate() {
        let q: Vec<f64> = idx.iter().map(|&i| b[i]).collect();
        let adjusted = match &omega {
            Some(om) => cr2_adjust(d, idx, bread, om, &q)?,
            None => q,
        };
        for (k, &i) in idx.iter().enumerate() {
            r[(g, i)] = adjusted[k];
        }
    }
    // P = R (I - H) = R - (R X) M X'W.
    let rxm = (&r * d.x) * bread;
    let xm_w = Mat::from_fn(p, n, |c, i| d.x[(i, c)] * d.weights[i]);
    let scores = &r - rxm * xm_w;
    let (df, scale) = match vcov {
        Vcov::Cr1 => (
            g_count as f64 - 1.0,
            g_count as f64 / (g_count as f64 - 1.0) * (n as f64 - 1.0) / (n as f64 - p as f64),
        ),
        Vcov::Cr2 => {
            let s = &scores * scores.transpose();
            let trace: f64 = (0..g_count).map(|i| s[(i, i)]).sum();
            let frob: f64 = (0..g_count)
                .flat_map(|i| (0..g_count).map(move |j| (i, j)))
                .map(|(i, j)| s[(i, j)].powi(2))
                .sum();
            (trace * trace / frob, 1.0)
        }
    };
    Ok(CoefRows {
        b,
        scores,
        df,
        scale,
    })
}

/// `A_g q` for the CR2 adjustment of cluster `idx` (A_g symmetric, so `q'A_g = (A_g q)'`).
/// `G_g = I + V C V'` with `V = [X_g, W_g X_g]`, `C = [[Omega, -M], [-M, 0]]`.
fn cr2_adjust(
    d: &Design,
    idx: &[usize],
    bread: &Mat<f64>,
    omega: &Mat<f64>,
    q: &[f64],
) -> Result<Vec<f64>, String> {
    let p = d.x.ncols();
    let xg = d.rows(idx);
    let v = Mat::from_fn(idx.len(), 2 * p, |r, c| {
        if c < p {
            xg[(r, c)]
        } else {
            d.weights[idx[r]] * xg[(r, c - p)]
        }
    });
    let svd = v.thin_svd().map_err(|_| "SVD failed".to_string())?;
    let (u, s, vt) = (svd.U(), svd.S().column_vector(), svd.V());
    let s_max = (0..s.nrows()).map(|i| s[i]).fold(0.0, f64::max);
    let rank = (0..s.nrows()).filter(|&i| s[i] > s_max * 1e-12).count();
    let c = Mat::from_fn(2 * p, 2 * p, |i, j| match (i < p, j < p) {
        (true, true) => omega[(i, j)],
        (true, false) => -bread[(i, j - p)],
        (false, true) => -bread[(i - p, j)],
        (false, false) => 0.0,
    });
    // Small symmetric S = Sigma V_r' C V_r Sigma (rank x rank).
    let vs = Mat::from_fn(2 * p, rank, |i, k| vt[(i, k)] * s[k]);
    let small = vs.transpose() * &c * &vs;
    let small = Mat::from_fn(rank, rank, |i, j| 0.5 * (small[(i, j)] + small[(j, i)]));
    let eig = small
        .self_adjoint_eigen(Side::Lower)
        .map_err(|_| "eigendecomposition failed".to_string())?;
    let (e, lambda) = (eig.U(), eig.S().column_vector());
    // Z = U_r E: orthonormal directions where G_g differs from I, with eigenvalues 1 + lambda.
    let z = u.subcols(0, rank) * e;
    let zq = z.transpose() * faer::ColRef::from_slice(q);
    let mut out = q.to_vec();
    for k in 0..rank {
        let ev = 1.0 + lambda[k];
        let factor = if ev > EIGEN_TOL { ev.powf(-0.5) } else { 0.0 } - 1.0;
        let coef = factor * zq[k];
        for (i, o) in out.iter_mut().enumerate() {
            *o += coef * z[(i, k)];
        }
    }
    Ok(out)
}

/// The wild-bootstrap pieces of the tested coefficients (see the module docs): one
/// coefficient (a bootstrap-t), or the members of a joint test (a bootstrap Wald F), the
/// restricted fit dropping all of them.
struct BootRows {
    /// Positions in `coefs` of the tested coefficients.
    members: Vec<usize>,
    /// The joint test bootstrapped (index into `joint`), or `None` for a t test of `members[0]`.
    joint: Option<usize>,
    /// `X_r'W` (p_r x N) and the restricted bread `M_r`.
    xrw: Mat<f64>,
    bread_r: Mat<f64>,
    /// Per member: cluster sums of `b_i x_r,i` (G x p_r) and of `P[g, i] x_r,i`
    /// ((G*G) x p_r, row h*G+g).
    a_corr: Vec<Mat<f64>>,
    k_corr: Vec<Mat<f64>>,
    /// Draws x clusters, row-major.
    weights: Vec<f64>,
    n_draws: usize,
}

/// A fitted design: what to project each response on, and how to finish each response.
pub struct ClusterFit {
    pub n_obs: usize,
    pub n_coef: usize,
    pub n_clusters: usize,
    pub coefs: Vec<CoefRows>,
    /// Design column of each fitted coefficient.
    coef_cols: Vec<usize>,
    bread: Mat<f64>,
    xw: Mat<f64>, // p x N, X'W
    weights: Vec<f64>,
    total_weight: f64,
    cluster: Vec<usize>,
    boot: Option<BootRows>,
    boot_level: f64,
    joint: Vec<JointTest>,
    /// Whether responses may be shifted before projection (see [`spans_constant_without`]).
    spans_constant: bool,
}

/// One response's results for one coefficient.
#[derive(Clone, Copy, Debug, Default)]
pub struct CoefResult {
    pub estimate: f64,
    pub std_error: f64,
    pub statistic: f64,
    pub df: f64,
    pub log_p: f64,
}

#[derive(Clone, Debug)]
pub struct ResponseResult {
    pub coefs: Vec<CoefResult>,
    /// One per joint test of [`ClusterFit::with_joint_tests`].
    pub joint: Vec<JointResult>,
    pub resid_sd: f64,
    pub boot_p: f64,
    /// Bootstrap-t critical value of the first coefficient: the `ceil((B + 1) level)`-th
    /// smallest `|t*|` of the B valid draws (infinite when B is too small), for the
    /// symmetric interval `estimate -/+ boot_crit * std_error`.
    pub boot_crit: f64,
    /// Quantiles of the signed `t*` at `(1 - level) / 2` and `(1 + level) / 2`: the
    /// `floor((B + 1)(1 - level) / 2)`-th and `ceil((B + 1)(1 + level) / 2)`-th smallest
    /// (infinite beyond the draws), for the equal-tailed percentile-t interval
    /// `[estimate - boot_t_high * std_error, estimate - boot_t_low * std_error]`.
    pub boot_t_low: f64,
    pub boot_t_high: f64,
    pub status: Status,
}

/// A response's bootstrap: p-value, and for a t test the interval quantiles.
#[derive(Clone, Copy, Debug)]
struct BootResult {
    p: f64,
    crit: f64,
    t_low: f64,
    t_high: f64,
}

impl BootResult {
    const NAN: BootResult = BootResult {
        p: f64::NAN,
        crit: f64::NAN,
        t_low: f64::NAN,
        t_high: f64::NAN,
    };
}

impl ClusterFit {
    /// Fits the design for coefficients `coefs` (column indices); with `boot_weights`
    /// (draws x clusters, column-major, and the number of draws), the first coefficient is
    /// also bootstrapped.
    pub fn new(
        d: &Design,
        coefs: &[usize],
        vcov: Vcov,
        boot_weights: Option<(Vec<f64>, usize)>,
    ) -> Result<Self, String> {
        d.check()?;
        let (n, p, g) = (d.x.nrows(), d.x.ncols(), d.n_clusters);
        if coefs.is_empty() || coefs.iter().any(|&c| c >= p) {
            return Err("design: coefficient index out of range".into());
        }
        let bread = d.bread()?;
        let rows = coefs
            .iter()
            .map(|&c| coef_rows(d, &bread, c, vcov))
            .collect::<Result<Vec<_>, _>>()?;
        let xw = Mat::from_fn(p, n, |c, i| d.x[(i, c)] * d.weights[i]);
        let boot = match boot_weights {
            Some((weights, n_draws)) => {
                if weights.len() != n_draws * g {
                    return Err("bootstrap weights must be draws x clusters".into());
                }
                // Row-major, so that each draw's cluster weights are contiguous.
                let by_draw = (0..n_draws * g)
                    .map(|k| weights[(k % g) * n_draws + k / g])
                    .collect();
                Some(boot_rows(d, &[&rows[0]], &coefs[..1], by_draw, n_draws)?)
            }
            None => None,
        };
        Ok(ClusterFit {
            n_obs: n,
            n_coef: p,
            n_clusters: g,
            coefs: rows,
            coef_cols: coefs.to_vec(),
            bread,
            xw,
            weights: d.weights.to_vec(),
            total_weight: d.weights.iter().sum(),
            cluster: d.cluster.to_vec(),
            boot,
            boot_level: 0.95,
            joint: Vec::new(),
            spans_constant: spans_constant_without(d, coefs),
        })
    }

    /// Bootstraps joint test `test` (of [`Self::with_joint_tests`]) instead of the first
    /// coefficient: the restricted fit drops all its coefficients, and each draw's Wald F
    /// is compared with the data's (the same weights as given to [`Self::new`]).
    pub fn with_joint_boot(mut self, d: &Design, test: usize) -> Result<Self, String> {
        let old = self
            .boot
            .take()
            .ok_or("joint bootstrap: no bootstrap weights")?;
        let members = self
            .joint
            .get(test)
            .ok_or("joint bootstrap: no such joint test")?
            .members
            .clone();
        let rows: Vec<&CoefRows> = members.iter().map(|&k| &self.coefs[k]).collect();
        let cols: Vec<usize> = members.iter().map(|&k| self.coef_cols[k]).collect();
        let mut b = boot_rows(d, &rows, &cols, old.weights, old.n_draws)?;
        b.members = members;
        b.joint = Some(test);
        self.boot = Some(b);
        Ok(self)
    }

    /// The level of the bootstrap-t interval (default 0.95).
    pub fn with_boot_level(mut self, level: f64) -> Result<Self, String> {
        if !(level > 0.0 && level < 1.0) {
            return Err("the interval level must be between 0 and 1".into());
        }
        self.boot_level = level;
        Ok(self)
    }

    /// Adds joint Wald tests, each of several fitted coefficients (positions in `coefs`
    /// of [`Self::new`]). Under CR2 the statistic is clubSandwich's Hotelling-type F
    /// (`Wald_test(test = "HTZ")`): `F = delta Q / q` on `q` and `nu - q + 1` df, with
    /// `delta = (nu - q + 1) / nu` and `nu` from the covariances of the working-model
    /// scores; under CR1 `F = Q / q` on `q` and `G - 1` df (clubSandwich's "Naive-F").
    /// `nu` depends on the design only, so it is computed here once.
    pub fn with_joint_tests(mut self, tests: &[Vec<usize>], vcov: Vcov) -> Result<Self, String> {
        for members in tests {
            if members.is_empty() || members.iter().any(|&k| k >= self.coefs.len()) {
                return Err("joint test: coefficient position out of range".into());
            }
            let q = members.len() as f64;
            let (delta, df_denom) = match vcov {
                Vcov::Cr1 => (1.0, self.n_clusters as f64 - 1.0),
                Vcov::Cr2 => {
                    let rows: Vec<&CoefRows> = members.iter().map(|&k| &self.coefs[k]).collect();
                    let nu = htz_nu(&rows)?;
                    (((nu - q + 1.0) / nu).max(0.0), nu - q + 1.0)
                }
            };
            self.joint.push(JointTest {
                members: members.clone(),
                delta,
                df_denom,
            });
        }
        Ok(self)
    }

    /// The joint tests of one response from its estimates and cluster scores.
    fn joint_results(&self, z: &[f64]) -> Vec<JointResult> {
        let stride = 1 + self.n_clusters;
        self.joint
            .iter()
            .map(|t| {
                let q = t.members.len();
                let est: Vec<f64> = t.members.iter().map(|&k| z[k * stride]).collect();
                let scores: Vec<&[f64]> = t
                    .members
                    .iter()
                    .map(|&k| &z[k * stride + 1..(k + 1) * stride])
                    .collect();
                match self.wald_f(t, &est, &scores) {
                    Some(f) if t.df_denom > 0.0 => JointResult {
                        statistic: f,
                        df_num: q as f64,
                        df_denom: t.df_denom,
                        log_p: dist::f_cdf(f, q as f64, t.df_denom, dist::Tail::Upper, true),
                    },
                    _ => JointResult::nan(q, t.df_denom),
                }
            })
            .collect()
    }

    /// The F of joint test `t` from its members' estimates and cluster scores:
    /// `delta * est' V^-1 est / q`, `V[s, u] = scale_s <scores_s, scores_u>`; `None` when
    /// V is singular.
    fn wald_f(&self, t: &JointTest, est: &[f64], scores: &[&[f64]]) -> Option<f64> {
        let q = t.members.len();
        let v: Vec<f64> = (0..q * q)
            .map(|i| {
                let (s, u) = (i % q, i / q);
                let dot: f64 = scores[s].iter().zip(scores[u]).map(|(a, b)| a * b).sum();
                self.coefs[t.members[s]].scale * dot
            })
            .collect();
        let l = linalg::cholesky(&v, q, 1e-12)?;
        let sol = linalg::cholesky_solve(&l, q, est);
        let wald: f64 = est.iter().zip(&sol).map(|(a, b)| a * b).sum();
        Some(t.delta * wald / q as f64)
    }

    fn n_restricted(&self) -> usize {
        self.boot.as_ref().map_or(0, |b| b.xrw.nrows())
    }

    /// The functionals each response is reduced to. Dense rows: per coefficient `b` and
    /// the G rows of `P`; then `X'W`; then `X_r'W` when bootstrapping. Grouped rows (when
    /// bootstrapping): per tested coefficient `b` and the G rows of `P`, summed within
    /// each cluster.
    pub fn projection(&self) -> Projection {
        let (n, g) = (self.n_obs, self.n_clusters);
        let mut rows: Vec<Vec<f64>> = Vec::new();
        for c in &self.coefs {
            rows.push(c.b.clone());
            rows.extend((0..g).map(|k| (0..n).map(|i| c.scores[(k, i)]).collect()));
        }
        rows.extend((0..self.n_coef).map(|k| (0..n).map(|i| self.xw[(k, i)]).collect()));
        let (n_grouped, grouped) = match &self.boot {
            Some(b) => {
                rows.extend((0..b.xrw.nrows()).map(|k| (0..n).map(|i| b.xrw[(k, i)]).collect()));
                let tested: Vec<&CoefRows> = b.members.iter().map(|&k| &self.coefs[k]).collect();
                let grouped = (0..n)
                    .flat_map(|i| {
                        tested.iter().flat_map(move |c| {
                            std::iter::once(c.b[i]).chain((0..g).map(move |k| c.scores[(k, i)]))
                        })
                    })
                    .collect();
                (tested.len() * (1 + g), grouped)
            }
            None => (0, Vec::new()),
        };
        let n_dense = rows.len();
        let dense = (0..n)
            .flat_map(|i| rows.iter().map(move |r| r[i]))
            .collect();
        Projection {
            n_obs: n,
            n_dense,
            dense,
            n_grouped,
            grouped,
            group: self.cluster.clone(),
            n_groups: g,
            weights: self.weights.clone(),
            shift: self.spans_constant,
        }
    }

    /// Results of one response from its projected values `z` (see [`Self::projection`]).
    /// With `standardize`, the response is first divided by its SD over observations.
    pub fn finish(&self, z: &[f64], standardize: bool) -> ResponseResult {
        let (n, g, p) = (self.n_obs as f64, self.n_clusters, self.n_coef);
        let stats = &z[z.len() - N_STATS..];
        let (sum, sumsq, wsum, wsumsq, shift) = (stats[0], stats[1], stats[2], stats[3], stats[4]);
        let var = ((sumsq - sum * sum / n) / (n - 1.0)).max(0.0);
        let mean = shift + sum / n;
        let nan_row = |status| ResponseResult {
            coefs: vec![
                CoefResult {
                    estimate: f64::NAN,
                    std_error: f64::NAN,
                    statistic: f64::NAN,
                    df: f64::NAN,
                    log_p: f64::NAN,
                };
                self.coefs.len()
            ],
            joint: self
                .joint
                .iter()
                .map(|t| JointResult::nan(t.members.len(), t.df_denom))
                .collect(),
            resid_sd: f64::NAN,
            boot_p: f64::NAN,
            boot_crit: f64::NAN,
            boot_t_low: f64::NAN,
            boot_t_high: f64::NAN,
            status,
        };
        // Constant up to rounding: a relative spread below 1e-14, some 45 units in the last
        // place (NaN counts as constant too).
        if var.is_nan() || var <= (1e-14 * mean).powi(2) || var <= 0.0 {
            return nan_row(Status::ZeroVariance);
        }
        let scale = if standardize { var.sqrt() } else { 1.0 };
        let stride = 1 + g;
        let xwy_at = self.coefs.len() * stride;
        let xwy = &z[xwy_at..xwy_at + p];
        let fitted_ss: f64 = (0..p)
            .map(|i| {
                (0..p)
                    .map(|j| xwy[i] * self.bread[(i, j)] * xwy[j])
                    .sum::<f64>()
            })
            .sum();
        let total_ss = wsumsq - wsum * wsum / self.total_weight;
        let rss = (wsumsq - fitted_ss).max(0.0);
        let resid_sd = (rss / (n - p as f64)).sqrt() / scale;
        let degenerate = rss.is_nan() || rss <= 1e-14 * total_ss;
        let mut coefs = Vec::with_capacity(self.coefs.len());
        for (k, c) in self.coefs.iter().enumerate() {
            let zk = &z[k * stride..(k + 1) * stride];
            let estimate = zk[0] / scale;
            let ss: f64 = zk[1..].iter().map(|u| u * u).sum();
            let se = (c.scale * ss).sqrt() / scale;
            let (se, statistic, log_p) = if degenerate {
                (f64::NAN, f64::NAN, f64::NAN)
            } else {
                let t = estimate / se;
                (se, t, dist::t_two_sided_log_p(t, c.df))
            };
            coefs.push(CoefResult {
                estimate,
                std_error: se,
                statistic,
                df: c.df,
                log_p,
            });
        }
        let joint = if degenerate {
            self.joint
                .iter()
                .map(|t| JointResult::nan(t.members.len(), t.df_denom))
                .collect()
        } else {
            self.joint_results(z)
        };
        let boot = match (&self.boot, degenerate) {
            (Some(b), false) => self.bootstrap(b, z, xwy_at + p, &joint),
            _ => BootResult::NAN,
        };
        ResponseResult {
            coefs,
            joint,
            resid_sd,
            boot_p: boot.p,
            boot_crit: boot.crit,
            boot_t_low: boot.t_low,
            boot_t_high: boot.t_high,
            status: if degenerate {
                Status::NoResidualVariance
            } else {
                Status::Ok
            },
        }
    }

    /// Bootstrap p of the tested coefficient, `(1 + #{|t*| >= |t|}) / (1 + valid draws)`,
    /// with the symmetric and equal-tailed bootstrap-t quantiles at `self.boot_level`; or
    /// of the bootstrapped joint test, `(1 + #{F* >= F}) / (1 + valid draws)`.
    fn bootstrap(
        &self,
        b: &BootRows,
        z: &[f64],
        xrwy_at: usize,
        joint: &[JointResult],
    ) -> BootResult {
        let g = self.n_clusters;
        let q = b.members.len();
        let pr = self.n_restricted();
        let xrwy = &z[xrwy_at..xrwy_at + pr];
        let gamma: Vec<f64> = (0..pr)
            .map(|i| (0..pr).map(|j| b.bread_r[(i, j)] * xrwy[j]).sum())
            .collect();
        let width = q * (1 + g);
        let grouped_at = z.len() - N_STATS - width * g;
        let corr =
            |m: &Mat<f64>, row: usize| -> f64 { (0..pr).map(|j| m[(row, j)] * gamma[j]).sum() };
        // Per member, a_h and K[g, h] (row-major G x G) from the cluster sums minus X_r
        // gamma's share.
        let mut a = vec![vec![0.0; g]; q];
        let mut kmat = vec![vec![0.0; g * g]; q];
        for m in 0..q {
            for h in 0..g {
                let at = grouped_at + h * width + m * (1 + g);
                a[m][h] = z[at] - corr(&b.a_corr[m], h);
                for k in 0..g {
                    kmat[m][k * g + h] = z[at + 1 + k] - corr(&b.k_corr[m], h * g + k);
                }
            }
        }
        let stride = 1 + g;
        // The statistic of the data (t of the member, or the joint F) and of a draw.
        let (observed, test) = match b.joint {
            Some(j) => (joint[j].statistic, Some(&self.joint[j])),
            None => {
                let k = b.members[0];
                let ss: f64 = z[k * stride + 1..(k + 1) * stride]
                    .iter()
                    .map(|u| u * u)
                    .sum();
                (z[k * stride] / (self.coefs[k].scale * ss).sqrt(), None)
            }
        };
        if !observed.is_finite() {
            return BootResult::NAN;
        }
        let (mut extreme, mut valid) = (0usize, 0usize);
        let mut t_draws = Vec::with_capacity(b.n_draws);
        let mut est = vec![0.0; q];
        let mut scores = vec![vec![0.0; g]; q];
        for draw in b.weights.chunks_exact(g).take(b.n_draws) {
            for m in 0..q {
                est[m] = a[m].iter().zip(draw).map(|(x, w)| x * w).sum();
                for (s, row) in scores[m].iter_mut().zip(kmat[m].chunks_exact(g)) {
                    *s = row.iter().zip(draw).map(|(x, w)| x * w).sum::<f64>();
                }
            }
            let stat = match test {
                Some(t) => {
                    let refs: Vec<&[f64]> = scores.iter().map(|v| v.as_slice()).collect();
                    self.wald_f(t, &est, &refs).unwrap_or(f64::NAN)
                }
                None => {
                    let ss: f64 = scores[0].iter().map(|u| u * u).sum();
                    est[0] / (self.coefs[b.members[0]].scale * ss).sqrt()
                }
            };
            if stat.is_finite() {
                valid += 1;
                t_draws.push(stat);
                let (s, o) = if test.is_some() {
                    (stat, observed)
                } else {
                    (stat.abs(), observed.abs())
                };
                if s >= o * (1.0 - TIE_TOL) {
                    extreme += 1;
                }
            }
        }
        let p = (1 + extreme) as f64 / (1 + valid) as f64;
        if test.is_some() {
            return BootResult {
                p,
                ..BootResult::NAN
            };
        }
        let level = self.boot_level;
        let order_stat = |v: &[f64], rank: f64, below: f64, above: f64| {
            if rank < 1.0 {
                below
            } else if rank as usize > v.len() {
                above
            } else {
                v[rank as usize - 1]
            }
        };
        // Ranks within 1e-9 of a whole number are that number: (B + 1) * level is often
        // one in exact arithmetic (20 * 0.05) but not in floating point.
        let n1 = (valid + 1) as f64;
        let (up, down) = (|x: f64| (x - 1e-9).ceil(), |x: f64| (x + 1e-9).floor());
        let mut abs_t: Vec<f64> = t_draws.iter().map(|t| t.abs()).collect();
        abs_t.sort_by(f64::total_cmp);
        t_draws.sort_by(f64::total_cmp);
        BootResult {
            p,
            crit: order_stat(&abs_t, up(n1 * level), f64::INFINITY, f64::INFINITY),
            t_low: order_stat(
                &t_draws,
                down(n1 * (1.0 - level) / 2.0),
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
            ),
            t_high: order_stat(
                &t_draws,
                up(n1 * (1.0 + level) / 2.0),
                f64::INFINITY,
                f64::INFINITY,
            ),
        }
    }
}

/// A joint Wald test: which coefficients, and its F scaling and denominator df.
struct JointTest {
    members: Vec<usize>,
    delta: f64,
    df_denom: f64,
}

/// One response's joint Wald test: F on `df_num` and `df_denom` df.
#[derive(Clone, Copy, Debug, Default)]
pub struct JointResult {
    pub statistic: f64,
    pub df_num: f64,
    pub df_denom: f64,
    pub log_p: f64,
}

impl JointResult {
    fn nan(q: usize, df_denom: f64) -> Self {
        JointResult {
            statistic: f64::NAN,
            df_num: q as f64,
            df_denom,
            log_p: f64::NAN,
        }
    }
}

/// clubSandwich's `nu_Z` of the HTZ test (`total_variance_mat()`): with `P_s` the score
/// rows of coefficient s (working model the identity), `Omega = [tr(P_s P_t')]`,
/// `Pt_s = sum_t Omega^{-1/2}[s, t] P_t` and `B_st = Pt_s Pt_t'`,
/// `nu = q (q + 1) / sum_st (<B_st, B_ts> + <B_ss, B_tt>)`. For one coefficient this is the
/// Satterthwaite df.
fn htz_nu(rows: &[&CoefRows]) -> Result<f64, String> {
    let q = rows.len();
    let inner = |a: &Mat<f64>, b: &Mat<f64>| -> f64 {
        (0..a.ncols())
            .map(|j| (0..a.nrows()).map(|i| a[(i, j)] * b[(i, j)]).sum::<f64>())
            .sum()
    };
    let omega = Mat::from_fn(q, q, |s, t| inner(&rows[s].scores, &rows[t].scores));
    let eig = omega
        .self_adjoint_eigen(Side::Lower)
        .map_err(|_| "eigendecomposition failed".to_string())?;
    let (u, ev) = (eig.U(), eig.S().column_vector());
    let power: Vec<f64> = (0..q)
        .map(|i| {
            if ev[i] > EIGEN_TOL {
                ev[i].powf(-0.5)
            } else {
                0.0
            }
        })
        .collect();
    let nsqrt = Mat::from_fn(q, q, |r, c| {
        (0..q)
            .map(|i| u[(r, i)] * power[i] * u[(c, i)])
            .sum::<f64>()
    });
    let (g, n) = (rows[0].scores.nrows(), rows[0].scores.ncols());
    let pt: Vec<Mat<f64>> = (0..q)
        .map(|s| {
            Mat::from_fn(g, n, |i, j| {
                (0..q).map(|t| nsqrt[(s, t)] * rows[t].scores[(i, j)]).sum()
            })
        })
        .collect();
    let b: Vec<Vec<Mat<f64>>> = (0..q)
        .map(|s| (0..q).map(|t| &pt[s] * pt[t].transpose()).collect())
        .collect();
    let mut total = 0.0;
    for s in 0..q {
        for t in 0..q {
            total += inner(&b[s][t], &b[t][s]) + inner(&b[s][s], &b[t][t]);
        }
    }
    Ok((q * (q + 1)) as f64 / total)
}

/// Whether the constant lies in the span of the columns of `x` other than `coefs`. Then
/// shifting a response by a constant changes only the other coefficients: the estimates,
/// scores and residuals of `coefs` (and of the restricted bootstrap fit) stay the same.
fn spans_constant_without(d: &Design, coefs: &[usize]) -> bool {
    let keep: Vec<usize> = (0..d.x.ncols()).filter(|c| !coefs.contains(c)).collect();
    let (n, k) = (d.x.nrows(), keep.len());
    if k == 0 {
        return false;
    }
    let xk = Mat::from_fn(n, k, |i, c| d.x[(i, keep[c])]);
    let sub = Design {
        x: xk.as_ref(),
        weights: d.weights,
        cluster: d.cluster,
        n_clusters: d.n_clusters,
    };
    let Ok(bread) = sub.bread() else {
        return false;
    };
    let xtw1: Vec<f64> = (0..k)
        .map(|c| (0..n).map(|i| xk[(i, c)] * d.weights[i]).sum())
        .collect();
    let beta: Vec<f64> = (0..k)
        .map(|a| (0..k).map(|b| bread[(a, b)] * xtw1[b]).sum())
        .collect();
    (0..n).all(|i| ((0..k).map(|c| xk[(i, c)] * beta[c]).sum::<f64>() - 1.0).abs() < 1e-8)
}

fn boot_rows(
    d: &Design,
    tested: &[&CoefRows],
    cols: &[usize],
    weights: Vec<f64>,
    n_draws: usize,
) -> Result<BootRows, String> {
    let (n, p, g) = (d.x.nrows(), d.x.ncols(), d.n_clusters);
    let keep: Vec<usize> = (0..p).filter(|c| !cols.contains(c)).collect();
    if keep.is_empty() {
        return Err("bootstrap: the restricted fit has no columns".into());
    }
    let xr = Mat::from_fn(n, keep.len(), |i, c| d.x[(i, keep[c])]);
    let restricted = Design {
        x: xr.as_ref(),
        weights: d.weights,
        cluster: d.cluster,
        n_clusters: g,
    };
    let bread_r = restricted.bread()?;
    let pr = keep.len();
    let xrw = Mat::from_fn(pr, n, |c, i| xr[(i, c)] * d.weights[i]);
    let mut a_corr = Vec::with_capacity(tested.len());
    let mut k_corr = Vec::with_capacity(tested.len());
    for t in tested {
        let mut a = Mat::<f64>::zeros(g, pr);
        let mut k_m = Mat::<f64>::zeros(g * g, pr);
        for i in 0..n {
            let h = d.cluster[i];
            for c in 0..pr {
                a[(h, c)] += t.b[i] * xr[(i, c)];
                for k in 0..g {
                    k_m[(h * g + k, c)] += t.scores[(k, i)] * xr[(i, c)];
                }
            }
        }
        a_corr.push(a);
        k_corr.push(k_m);
    }
    Ok(BootRows {
        members: vec![0],
        joint: None,
        xrw,
        bread_r,
        a_corr,
        k_corr,
        weights,
        n_draws,
    })
}

/// Every feature fitted on the design of `fit`: one projection pass over the features,
/// then each feature finished in parallel (see [`ClusterFit::finish`]).
pub fn fit_features(
    fit: &ClusterFit,
    feats: &Features,
    standardize: bool,
) -> Result<Vec<ResponseResult>, String> {
    let proj = fit.projection();
    let z = feats.project(&proj)?;
    Ok(z.par_chunks(proj.width())
        .map(|zf| fit.finish(zf, standardize))
        .collect())
}

/// Welch tests of every row of `y` (column-major, `n_rows` rows), in parallel.
pub fn welch_rows(y: &[f64], n_rows: usize, in_first: &[bool]) -> Result<Vec<CoefResult>, String> {
    if y.len() != n_rows * in_first.len() {
        return Err("the responses and the groups have different numbers of observations".into());
    }
    Ok((0..n_rows)
        .into_par_iter()
        .map(|r| {
            let row: Vec<f64> = (0..in_first.len()).map(|c| y[c * n_rows + r]).collect();
            welch(&row, in_first)
        })
        .collect())
}

/// Welch's two-sample t-test of one response (`t.test(y[group], y[!group])`).
pub fn welch(y: &[f64], in_first: &[bool]) -> CoefResult {
    let moments = |first: bool| {
        let v: Vec<f64> = y
            .iter()
            .zip(in_first)
            .filter(|(_, &f)| f == first)
            .map(|(&v, _)| v)
            .collect();
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (n, mean, var)
    };
    let (n1, m1, v1) = moments(true);
    let (n2, m2, v2) = moments(false);
    let (s1, s2) = (v1 / n1, v2 / n2);
    let se = (s1 + s2).sqrt();
    let df = (s1 + s2).powi(2) / (s1 * s1 / (n1 - 1.0) + s2 * s2 / (n2 - 1.0));
    let statistic = (m1 - m2) / se;
    CoefResult {
        estimate: m1 - m2,
        std_error: se,
        statistic,
        df,
        log_p: dist::t_two_sided_log_p(statistic, df),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::project_dense;

    /// `a^pow` of a symmetric matrix through its eigendecomposition, eigenvalues at or below
    /// [`EIGEN_TOL`] mapped to zero.
    fn sym_power(a: MatRef<f64>, pow: f64) -> Result<Mat<f64>, String> {
        let eig = a
            .self_adjoint_eigen(Side::Lower)
            .map_err(|_| "eigendecomposition failed".to_string())?;
        let (u, s) = (eig.U(), eig.S().column_vector());
        let k = a.nrows();
        let f: Vec<f64> = (0..k)
            .map(|i| {
                if s[i] > EIGEN_TOL {
                    s[i].powf(pow)
                } else {
                    0.0
                }
            })
            .collect();
        Ok(Mat::from_fn(k, k, |r, c| {
            (0..k).map(|i| u[(r, i)] * f[i] * u[(c, i)]).sum()
        }))
    }

    /// Deterministic pseudo-random numbers in (-1, 1).
    fn noise(k: usize) -> f64 {
        let x = ((k as f64 + 1.0) * 12.9898).sin() * 43758.5453;
        2.0 * (x - x.floor()) - 1.0
    }

    /// DiD design: participants 0..6 (arm = id % 2), two visits, two cells per visit,
    /// columns [visit, visit:arm, participant dummies].
    fn did_design() -> (Mat<f64>, Vec<f64>, Vec<usize>) {
        let mut rows = Vec::new();
        for pid in 0..6 {
            for visit in 0..2 {
                for cell in 0..(2 + (pid + visit) % 2) {
                    rows.push((pid, visit as f64, 1.0 + cell as f64 * 0.5));
                }
            }
        }
        let x = Mat::from_fn(rows.len(), 8, |i, c| {
            let (pid, visit, _) = rows[i];
            match c {
                0 => visit,
                1 => visit * (pid % 2) as f64,
                _ => f64::from(c - 2 == pid),
            }
        });
        let w = rows.iter().map(|r| r.2).collect();
        let cl = rows.iter().map(|r| r.0).collect();
        (x, w, cl)
    }

    fn design<'a>(x: &'a Mat<f64>, w: &'a [f64], cl: &'a [usize]) -> Design<'a> {
        Design {
            x: x.as_ref(),
            weights: w,
            cluster: cl,
            n_clusters: 6,
        }
    }

    /// Direct WLS: coefficients, residuals, bread.
    fn direct(x: &Mat<f64>, w: &[f64], y: &[f64]) -> (Vec<f64>, Vec<f64>, Mat<f64>) {
        let d = Design {
            x: x.as_ref(),
            weights: w,
            cluster: &[],
            n_clusters: 0,
        };
        let m = d.bread().unwrap();
        let xwy: Vec<f64> = (0..x.ncols())
            .map(|c| (0..x.nrows()).map(|i| x[(i, c)] * w[i] * y[i]).sum())
            .collect();
        let beta: Vec<f64> = (0..x.ncols())
            .map(|r| (0..x.ncols()).map(|c| m[(r, c)] * xwy[c]).sum())
            .collect();
        let e = (0..x.nrows())
            .map(|i| y[i] - (0..x.ncols()).map(|c| x[(i, c)] * beta[c]).sum::<f64>())
            .collect();
        (beta, e, m)
    }

    #[test]
    fn cr1_matches_the_direct_sandwich() {
        let (x, w, cl) = did_design();
        let n = x.nrows();
        let y: Vec<f64> = (0..n).map(|i| 1.0 + x[(i, 1)] * 0.3 + noise(i)).collect();
        let d = design(&x, &w, &cl);
        let fit = ClusterFit::new(&d, &[1, 0], Vcov::Cr1, None).unwrap();
        let z = project_dense(&y, 1, &fit.projection());
        let res = fit.finish(&z, false);
        let (beta, e, m) = direct(&x, &w, &y);
        // Direct CR1: M (sum_g s_g s_g') M * G/(G-1) (N-1)/(N-p), s_g = X_g'W_g e_g.
        let mut meat = [0.0; 6];
        for i in 0..n {
            let s: f64 = (0..8).map(|c| m[(1, c)] * x[(i, c)]).sum::<f64>() * w[i] * e[i];
            meat[cl[i]] += s;
        }
        let v: f64 = meat.iter().map(|s| s * s).sum::<f64>() * 6.0 / 5.0 * (n as f64 - 1.0)
            / (n as f64 - 8.0);
        assert!((res.coefs[0].estimate - beta[1]).abs() < 1e-12);
        assert!((res.coefs[0].std_error - v.sqrt()).abs() < 1e-12);
        assert_eq!(res.coefs[0].df, 5.0);
        assert!((res.coefs[1].estimate - beta[0]).abs() < 1e-12);
    }

    #[test]
    fn cr2_low_rank_adjustment_matches_the_dense_inverse_square_root() {
        let (x, w, cl) = did_design();
        let d = design(&x, &w, &cl);
        let m = d.bread().unwrap();
        let n = x.nrows();
        let w2x = Mat::from_fn(n, 8, |i, c| w[i] * w[i] * x[(i, c)]);
        let omega = &m * (x.transpose() * w2x) * &m;
        let idx: Vec<usize> = (0..n).filter(|&i| cl[i] == 2).collect();
        let q: Vec<f64> = idx.iter().map(|&i| noise(i + 100)).collect();
        let fast = cr2_adjust(&d, &idx, &m, &omega, &q).unwrap();
        // Dense G_g and its pseudo-inverse square root.
        let xg = d.rows(&idx);
        let k = idx.len();
        let h = &xg * &m * Mat::from_fn(8, k, |c, r| xg[(r, c)] * w[idx[r]]);
        let gg = Mat::from_fn(k, k, |r, c| {
            f64::from(r == c) - h[(r, c)] - h[(c, r)]
                + (0..8)
                    .map(|a| {
                        (0..8)
                            .map(|b| xg[(r, a)] * omega[(a, b)] * xg[(c, b)])
                            .sum::<f64>()
                    })
                    .sum::<f64>()
        });
        let a = sym_power(gg.as_ref(), -0.5).unwrap();
        for r in 0..k {
            let direct: f64 = (0..k).map(|c| a[(r, c)] * q[c]).sum();
            assert!((direct - fast[r]).abs() < 1e-10, "{direct} vs {}", fast[r]);
        }
    }

    /// Weights of `draws` Rademacher draws for the 6 clusters of [`did_design`], column-major.
    fn rademacher(draws: usize) -> Vec<f64> {
        (0..draws * 6)
            .map(|k| if noise(k + 999) > 0.0 { 1.0 } else { -1.0 })
            .collect()
    }

    #[test]
    fn bootstrap_draws_match_refitting_each_draw() {
        let (x, w, cl) = did_design();
        let n = x.nrows();
        let y: Vec<f64> = (0..n).map(|i| x[(i, 1)] * 0.8 + noise(i + 7)).collect();
        let d = design(&x, &w, &cl);
        let draws = 40;
        let weights = rademacher(draws);
        // CR1's small-sample scale enters t*, so its interval quantiles are checked too.
        for vcov in [Vcov::Cr2, Vcov::Cr1] {
            let fit = ClusterFit::new(&d, &[1], vcov, Some((weights.clone(), draws))).unwrap();
            let proj = fit.projection();
            let t_of = |yy: &[f64]| {
                let r = fit.finish(&project_dense(yy, 1, &proj), false);
                r.coefs[0].statistic
            };
            let t_obs = t_of(&y);
            // Restricted fit: drop column 1.
            let xr = Mat::from_fn(n, 7, |i, c| x[(i, if c == 0 { 0 } else { c + 1 })]);
            let (_, er, _) = direct(&xr, &w, &y);
            let fitted: Vec<f64> = (0..n).map(|i| y[i] - er[i]).collect();
            let mut t_star: Vec<f64> = (0..draws)
                .map(|b| {
                    let ystar: Vec<f64> = (0..n)
                        .map(|i| fitted[i] + weights[cl[i] * draws + b] * er[i])
                        .collect();
                    t_of(&ystar)
                })
                .collect();
            let extreme = t_star
                .iter()
                .filter(|t| t.abs() >= t_obs.abs() * (1.0 - TIE_TOL))
                .count();
            let expect = (1 + extreme) as f64 / (1 + draws) as f64;
            let res = fit.finish(&project_dense(&y, 1, &proj), false);
            assert!(
                (res.boot_p - expect).abs() < 1e-15,
                "{} vs {expect}",
                res.boot_p
            );
            // The critical value is the ceil(41 * 0.95) = 39th smallest |t*|.
            let mut abs_t: Vec<f64> = t_star.iter().map(|t| t.abs()).collect();
            abs_t.sort_by(f64::total_cmp);
            assert!((res.boot_crit - abs_t[38]).abs() < 1e-10 * abs_t[38]);
            // Equal-tailed: the floor(41 * 0.025) = 1st and ceil(41 * 0.975) = 40th smallest t*.
            t_star.sort_by(f64::total_cmp);
            assert!((res.boot_t_low - t_star[0]).abs() < 1e-10 * t_star[0].abs());
            assert!((res.boot_t_high - t_star[39]).abs() < 1e-10 * t_star[39].abs());
            // At 0.99 the upper rank ceil(41 * 0.995) = 41 is beyond the 40 draws.
            let wide = ClusterFit::new(&d, &[1], vcov, Some((weights.clone(), draws)))
                .and_then(|f| f.with_boot_level(0.99))
                .unwrap();
            let r = wide.finish(&project_dense(&y, 1, &wide.projection()), false);
            assert_eq!(
                (r.boot_t_low, r.boot_t_high),
                (f64::NEG_INFINITY, f64::INFINITY)
            );
        }
    }

    #[test]
    fn joint_bootstrap_matches_refitting_each_draw() {
        let (x, w, cl) = did_design();
        let n = x.nrows();
        let y: Vec<f64> = (0..n)
            .map(|i| x[(i, 1)] * 0.5 + x[(i, 0)] * 0.3 + noise(i + 11))
            .collect();
        let d = design(&x, &w, &cl);
        let draws = 30;
        let weights = rademacher(draws);
        for vcov in [Vcov::Cr2, Vcov::Cr1] {
            // Coefficients 1 and 0 tested jointly; the restricted fit keeps the participants.
            let fit = ClusterFit::new(&d, &[1, 0], vcov, Some((weights.clone(), draws)))
                .and_then(|f| f.with_joint_tests(&[vec![0, 1]], vcov))
                .and_then(|f| f.with_joint_boot(&d, 0))
                .unwrap();
            let plain = ClusterFit::new(&d, &[1, 0], vcov, None)
                .and_then(|f| f.with_joint_tests(&[vec![0, 1]], vcov))
                .unwrap();
            let f_of = |yy: &[f64]| {
                plain
                    .finish(&project_dense(yy, 1, &plain.projection()), false)
                    .joint[0]
                    .statistic
            };
            let xr = Mat::from_fn(n, 6, |i, c| x[(i, c + 2)]);
            let (_, er, _) = direct(&xr, &w, &y);
            let f_obs = f_of(&y);
            let extreme = (0..draws)
                .filter(|&b| {
                    let ystar: Vec<f64> = (0..n)
                        .map(|i| y[i] - er[i] + weights[cl[i] * draws + b] * er[i])
                        .collect();
                    f_of(&ystar) >= f_obs * (1.0 - TIE_TOL)
                })
                .count();
            let res = fit.finish(&project_dense(&y, 1, &fit.projection()), false);
            assert!((res.joint[0].statistic - f_obs).abs() < 1e-10 * f_obs);
            assert_eq!(res.boot_p, (1 + extreme) as f64 / (1 + draws) as f64);
            assert!(res.boot_crit.is_nan());
        }
        let no_boot = ClusterFit::new(&d, &[1, 0], Vcov::Cr2, None)
            .and_then(|f| f.with_joint_tests(&[vec![0, 1]], Vcov::Cr2))
            .unwrap();
        assert!(no_boot.with_joint_boot(&d, 0).is_err());
    }

    #[test]
    fn a_joint_test_of_one_coefficient_is_the_squared_t() {
        let (x, w, cl) = did_design();
        let n = x.nrows();
        let y: Vec<f64> = (0..n).map(|i| x[(i, 1)] * 0.4 + noise(i + 3)).collect();
        let d = design(&x, &w, &cl);
        for vcov in [Vcov::Cr1, Vcov::Cr2] {
            let fit = ClusterFit::new(&d, &[1, 0], vcov, None)
                .unwrap()
                .with_joint_tests(&[vec![0], vec![0, 1]], vcov)
                .unwrap();
            let r = fit.finish(&project_dense(&y, 1, &fit.projection()), false);
            let (c, j) = (r.coefs[0], r.joint[0]);
            assert!((j.statistic - c.statistic.powi(2)).abs() < 1e-10 * j.statistic);
            assert!(
                (j.df_denom - c.df).abs() < 1e-8 * c.df,
                "{} vs {}",
                j.df_denom,
                c.df
            );
            assert!((j.log_p - c.log_p).abs() < 1e-8);
            assert_eq!(r.joint[1].df_num, 2.0);
            assert!(r.joint[1].log_p < 0.0);
        }
        assert!(ClusterFit::new(&d, &[1], Vcov::Cr2, None)
            .unwrap()
            .with_joint_tests(&[vec![1]], Vcov::Cr2)
            .is_err());
    }

    #[test]
    fn constant_response_has_no_inference() {
        let (x, w, cl) = did_design();
        let d = design(&x, &w, &cl);
        let fit = ClusterFit::new(&d, &[1], Vcov::Cr2, None).unwrap();
        let y = vec![2.5; x.nrows()];
        let r = fit.finish(&project_dense(&y, 1, &fit.projection()), true);
        assert_eq!(r.status, Status::ZeroVariance);
        assert!(r.coefs[0].log_p.is_nan());
    }

    #[test]
    fn a_large_offset_changes_no_result() {
        let (x, w, cl) = did_design();
        let n = x.nrows();
        let d = design(&x, &w, &cl);
        let y: Vec<f64> = (0..n).map(|i| x[(i, 1)] * 0.8 + noise(i + 7)).collect();
        let shifted: Vec<f64> = y.iter().map(|v| v + 1e8).collect();
        for vcov in [Vcov::Cr1, Vcov::Cr2] {
            let fit = ClusterFit::new(&d, &[1], vcov, None).unwrap();
            assert!(fit.spans_constant);
            let proj = fit.projection();
            let a = fit.finish(&project_dense(&y, 1, &proj), true);
            let b = fit.finish(&project_dense(&shifted, 1, &proj), true);
            assert_eq!(b.status, Status::Ok);
            let (ca, cb) = (a.coefs[0], b.coefs[0]);
            assert!((ca.estimate - cb.estimate).abs() < 1e-6 * ca.estimate.abs());
            assert!((ca.std_error - cb.std_error).abs() < 1e-6 * ca.std_error);
            assert!((a.resid_sd - b.resid_sd).abs() < 1e-6 * a.resid_sd);
        }
    }

    #[test]
    fn no_shift_when_the_tested_column_carries_the_constant() {
        let (x, w, cl) = did_design();
        let d = design(&x, &w, &cl);
        // The participant dummies (columns 2..8) sum to the constant: testing one of them
        // leaves no constant among the other columns.
        let fit = ClusterFit::new(&d, &[2], Vcov::Cr1, None).unwrap();
        assert!(!fit.spans_constant);
    }

    #[test]
    fn fit_features_matches_finishing_each_projection() {
        let (x, w, cl) = did_design();
        let n = x.nrows();
        let d = design(&x, &w, &cl);
        let fit = ClusterFit::new(&d, &[1], Vcov::Cr2, None).unwrap();
        // 3 features x n observations, column-major; the second all zero.
        let nf = 3;
        let y: Vec<f64> = (0..nf * n)
            .map(|k| if k % nf == 1 { 0.0 } else { noise(k) })
            .collect();
        let feats = Features::Dense { data: &y, nrow: nf };
        let all = crate::with_threads(2, || fit_features(&fit, &feats, true))
            .unwrap()
            .unwrap();
        assert_eq!(all.len(), nf);
        assert_eq!(all[1].status, Status::ZeroVariance);
        for f in [0, 2] {
            let row: Vec<f64> = (0..n).map(|i| y[i * nf + f]).collect();
            let one = fit.finish(&project_dense(&row, 1, &fit.projection()), true);
            assert_eq!(one.coefs[0].estimate, all[f].coefs[0].estimate);
            assert_eq!(one.coefs[0].log_p, all[f].coefs[0].log_p);
        }
        let short = Features::Dense {
            data: &y[..nf * (n - 1)],
            nrow: nf,
        };
        assert!(fit_features(&fit, &short, true).is_err());
    }

    #[test]
    fn welch_rows_test_each_row() {
        let (n_rows, n) = (5, 9);
        let y: Vec<f64> = (0..n_rows * n).map(noise).collect();
        let group: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
        let all = crate::with_threads(2, || welch_rows(&y, n_rows, &group))
            .unwrap()
            .unwrap();
        for (r, res) in all.iter().enumerate() {
            let row: Vec<f64> = (0..n).map(|c| y[c * n_rows + r]).collect();
            let one = welch(&row, &group);
            assert_eq!(
                (one.estimate, one.df, one.log_p),
                (res.estimate, res.df, res.log_p)
            );
            let first: Vec<f64> = (0..n).filter(|&i| group[i]).map(|i| row[i]).collect();
            let mean = first.iter().sum::<f64>() / 3.0;
            let rest = (row.iter().sum::<f64>() - 3.0 * mean) / 6.0;
            assert!((res.estimate - (mean - rest)).abs() < 1e-12);
        }
        assert!(welch_rows(&y[1..], n_rows, &group).is_err());
    }
}

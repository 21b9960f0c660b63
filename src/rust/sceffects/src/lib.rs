//! extendr binding of sceffects: borrows R memory, calls sceffects-core, builds R results.
//! No statistics here. Errors go through `fail()`, which escapes `%` (extendr 0.9 passes
//! error messages to Rf_error as a format string).

use extendr_api::prelude::*;
use sceffects_core::assoc::pairs::{BlockOutput, BlockPosition, KeepRule};
use sceffects_core::assoc::{chisq, cor, fisher, kruskal, mwu, Block};
use sceffects_core::clustered::{self, ClusterFit, Design, Vcov};
use sceffects_core::project::{self, Projection};
use sceffects_core::{dist, fdr, input};
use std::borrow::Cow;
use std::ffi::{c_int, c_void};

pub(crate) type RResult<T> = std::result::Result<T, Error>;

/// The `threads` argument (checked in R) as a pool size.
pub(crate) fn threads_of(threads: i32) -> usize {
    threads.max(1) as usize
}

/// A seed from R (a whole number >= 0, passed as a double).
pub(crate) fn seed_of(seed: f64) -> u64 {
    seed as i64 as u64
}

/// R's 1-based indices as 0-based.
pub(crate) fn zero_based(idx: &[i32]) -> Vec<usize> {
    idx.iter().map(|&i| (i - 1) as usize).collect()
}

extern "C" {
    fn R_ToplevelExec(fun: Option<unsafe extern "C" fn(*mut c_void)>, data: *mut c_void) -> c_int;
    fn R_CheckUserInterrupt();
}

unsafe extern "C" fn check_interrupt(_: *mut c_void) {
    R_CheckUserInterrupt();
}

/// Whether the user pressed Ctrl-C: R's check, run where its long jump cannot escape.
fn interrupt_pending() -> bool {
    // SAFETY: called on R's main thread; R_ToplevelExec catches the jump of an interrupt.
    unsafe { R_ToplevelExec(Some(check_interrupt), std::ptr::null_mut()) == 0 }
}

/// Runs `f` on a local pool of `threads` threads while R's main thread watches for Ctrl-C.
pub(crate) fn pooled<T: Send>(threads: i32, f: impl FnOnce() -> T + Send) -> Result<T, String> {
    sceffects_core::with_threads_polled(threads_of(threads), f, interrupt_pending)
}

pub(crate) fn fail(msg: impl std::fmt::Display) -> Error {
    Error::Other(msg.to_string().replace('%', "%%"))
}

fn block_of(m: &RMatrix<f64>) -> RResult<Block<'_>> {
    Block::new(m.data(), m.nrows(), m.ncols()).map_err(fail)
}

fn tail_of(lower: bool) -> dist::Tail {
    if lower {
        dist::Tail::Lower
    } else {
        dist::Tail::Upper
    }
}

/// Distribution function `dist` at `q` with parameters `a`, `b`, `c` (recycled R-style by
/// the caller to equal lengths).
#[extendr]
fn rs_distribution(
    name: &str,
    q: &[f64],
    a: &[f64],
    b: &[f64],
    c: &[f64],
    lower: bool,
    log: bool,
) -> RResult<Vec<f64>> {
    let tail = tail_of(lower);
    let f: Box<dyn Fn(usize) -> f64> = match name {
        "t" => Box::new(|k| dist::t_cdf(q[k], a[k], tail, log)),
        "norm" => Box::new(|k| dist::norm_cdf(q[k], tail, log)),
        "chisq" => Box::new(|k| dist::chisq_cdf(q[k], a[k], tail, log)),
        "f" => Box::new(|k| dist::f_cdf(q[k], a[k], b[k], tail, log)),
        "hyper" => Box::new(|k| dist::hyper_cdf(q[k], a[k], b[k], c[k], tail, log)),
        other => return Err(fail(format!("unknown distribution '{other}'"))),
    };
    Ok((0..q.len()).map(f).collect())
}

/// Benjamini-Hochberg adjustment (NaN = missing).
#[extendr]
fn rs_bh(p: &[f64]) -> Vec<f64> {
    fdr::bh_adjust(p)
}

/// BH over all tests counted in a log-p histogram, for some kept log p-values.
#[extendr]
fn rs_bh_histogram(kept_log_p: &[f64], counts: &[f64]) -> Vec<f64> {
    let mut hist = fdr::LogPHistogram::with_defaults();
    let n = hist.counts.len().min(counts.len());
    hist.counts[..n].copy_from_slice(&counts[..n]);
    fdr::bh_from_histogram(kept_log_p, &hist)
}

/// The slots of a dgCMatrix, held so that views can borrow them.
pub(crate) struct CscSlots {
    dim: Vec<i32>,
    p: Robj,
    i: Robj,
    x: Robj,
}

impl CscSlots {
    pub(crate) fn of(x: &Robj) -> RResult<Self> {
        let dim = x
            .get_attrib("Dim")
            .and_then(|d| d.as_integer_slice().map(|d| d.to_vec()))
            .ok_or_else(|| fail("not a dgCMatrix"))?;
        let slot = |name: &str| {
            x.get_attrib(name)
                .ok_or_else(|| fail(format!("dgCMatrix without slot {name}")))
        };
        Ok(CscSlots {
            dim,
            p: slot("p")?,
            i: slot("i")?,
            x: slot("x")?,
        })
    }

    pub(crate) fn view(&self) -> RResult<input::CscView<'_>> {
        input::CscView::new(
            self.dim[0] as usize,
            self.dim[1] as usize,
            self.p
                .as_integer_slice()
                .ok_or_else(|| fail("slot p is not integer"))?,
            self.i
                .as_integer_slice()
                .ok_or_else(|| fail("slot i is not integer"))?,
            self.x
                .as_real_slice()
                .ok_or_else(|| fail("slot x is not double"))?,
        )
        .map_err(fail)
    }
}

/// The slots of `x` when it is a dgCMatrix.
pub(crate) fn sparse_slots(x: &Robj) -> RResult<Option<CscSlots>> {
    if x.inherits("dgCMatrix") {
        CscSlots::of(x).map(Some)
    } else {
        Ok(None)
    }
}

/// Features (rows) of a double matrix or a dgCMatrix.
pub(crate) enum Features<'a> {
    Dense { data: &'a [f64], nrow: usize },
    Sparse(input::CscView<'a>),
}

pub(crate) fn features_of<'a>(x: &'a Robj, slots: &'a Option<CscSlots>) -> RResult<Features<'a>> {
    if let Some(s) = slots {
        return Ok(Features::Sparse(s.view()?));
    }
    let nrow = x
        .get_attrib("dim")
        .and_then(|d| d.as_integer_slice().map(|d| d[0] as usize))
        .ok_or_else(|| fail("features must be a matrix or dgCMatrix"))?;
    let data = x
        .as_real_slice()
        .ok_or_else(|| fail("features must be a double matrix"))?;
    Ok(Features::Dense { data, nrow })
}

impl Features<'_> {
    pub(crate) fn n_features(&self) -> usize {
        match self {
            Features::Dense { nrow, .. } => *nrow,
            Features::Sparse(v) => v.nrow,
        }
    }
    pub(crate) fn n_obs(&self) -> usize {
        match self {
            Features::Dense { data, nrow } => data.len() / (*nrow).max(1),
            Features::Sparse(v) => v.ncol,
        }
    }
    /// Rows `start..end` as a dense block, column-major with rows fastest; borrowed when
    /// that is the whole of a dense matrix.
    pub(crate) fn row_block(&self, start: usize, end: usize) -> Cow<'_, [f64]> {
        match self {
            Features::Sparse(v) => Cow::Owned(v.row_block(start, end)),
            Features::Dense { data, nrow } if start == 0 && end == *nrow => Cow::Borrowed(data),
            Features::Dense { data, nrow } => {
                let rows = end - start;
                Cow::Owned(
                    (0..rows * self.n_obs())
                        .map(|k| data[(k / rows) * nrow + start + k % rows])
                        .collect(),
                )
            }
        }
    }
    pub(crate) fn project(&self, proj: &Projection) -> Result<Vec<f64>, String> {
        proj.check()?;
        if self.n_obs() != proj.n_obs {
            return Err("features and design have different numbers of observations".into());
        }
        Ok(match self {
            Features::Dense { data, nrow } => project::project_dense(data, *nrow, proj),
            Features::Sparse(v) => project::project_csc(v, proj),
        })
    }
}

/// Dense block of rows `start..end` (0-based, end exclusive) of a dgCMatrix.
#[extendr]
fn rs_csc_row_block(x: Robj, start: i32, end: i32) -> RResult<RMatrix<f64>> {
    let slots = CscSlots::of(&x)?;
    let view = slots.view()?;
    let (s, e) = (start as usize, end as usize);
    if start < 0 || e > view.nrow || s > e {
        return Err(fail("row block out of range"));
    }
    let values = view.row_block(s, e);
    Ok(RMatrix::new_matrix(e - s, view.ncol, |r, c| {
        values[c * (e - s) + r]
    }))
}

/// Called when the package loads: see `never_use_the_global_pool`.
#[extendr]
fn rs_init() {
    sceffects_core::never_use_the_global_pool();
}

/// Sums of each feature over groups of observations (`group` 1-based; 0 = left out):
/// features x groups.
#[extendr]
fn rs_group_sums(x: Robj, group: &[i32], n_groups: i32, threads: i32) -> RResult<RMatrix<f64>> {
    let slots = sparse_slots(&x)?;
    let feats = features_of(&x, &slots)?;
    let n_groups = n_groups as usize;
    let slot = |g: i32| if g > 0 { (g - 1) as usize } else { n_groups };
    let proj = Projection {
        n_obs: group.len(),
        n_dense: 0,
        dense: Vec::new(),
        n_grouped: 1,
        grouped: vec![1.0; group.len()],
        group: group.iter().map(|&g| slot(g)).collect(),
        n_groups: n_groups + 1,
        weights: vec![1.0; group.len()],
        shift: false,
    };
    let z = pooled(threads, || feats.project(&proj)).map_err(fail)?;
    let z = z.map_err(fail)?;
    let width = proj.width();
    Ok(RMatrix::new_matrix(feats.n_features(), n_groups, |r, c| {
        z[r * width + c]
    }))
}

/// Sum and sum of squares of each feature, shifted by its first finite value (dense
/// input; sparse is not shifted), and the shift: features x 3.
#[extendr]
fn rs_feature_moments(x: Robj, threads: i32) -> RResult<RMatrix<f64>> {
    let slots = sparse_slots(&x)?;
    let feats = features_of(&x, &slots)?;
    let n = feats.n_obs();
    let proj = Projection {
        n_obs: n,
        n_dense: 0,
        dense: Vec::new(),
        n_grouped: 0,
        grouped: Vec::new(),
        group: Vec::new(),
        n_groups: 0,
        weights: vec![1.0; n],
        shift: true,
    };
    let z = pooled(threads, || feats.project(&proj)).map_err(fail)?;
    let z = z.map_err(fail)?;
    let column = [0, 1, project::N_STATS - 1];
    Ok(RMatrix::new_matrix(feats.n_features(), 3, |r, c| {
        z[r * project::N_STATS + column[c]]
    }))
}

/// Per-observation weighted sums over features: `t(x) %*% w` (observations x sets).
#[extendr]
fn rs_feature_weighted_sums(x: Robj, w: RMatrix<f64>, threads: i32) -> RResult<RMatrix<f64>> {
    let slots = sparse_slots(&x)?;
    let feats = features_of(&x, &slots)?;
    let n_sets = w.ncols();
    if w.nrows() != feats.n_features() {
        return Err(fail("weights need one row per feature"));
    }
    // Row-major weights: feature i's sets contiguous.
    let wr: Vec<f64> = (0..w.nrows())
        .flat_map(|i| (0..n_sets).map(move |s| (i, s)))
        .map(|(i, s)| w.data()[s * w.nrows() + i])
        .collect();
    let n_obs = feats.n_obs();
    let out = pooled(threads, || match &feats {
        Features::Dense { data, nrow } => {
            project::feature_weighted_sums_dense(data, *nrow, &wr, n_sets)
        }
        Features::Sparse(v) => project::feature_weighted_sums_csc(v, &wr, n_sets),
    })
    .map_err(fail)?;
    Ok(RMatrix::new_matrix(n_obs, n_sets, |r, c| {
        out[r * n_sets + c]
    }))
}

/// Cluster-robust WLS of every feature (row of `x`) on one design: results for the
/// coefficients `coefs` (1-based), and a wild-bootstrap p of the first when `boot_weights`
/// (draws x clusters) is a matrix.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rs_cluster_fit(
    x: Robj,
    design: RMatrix<f64>,
    weights: &[f64],
    cluster: &[i32],
    n_clusters: i32,
    coefs: &[i32],
    vcov: &str,
    boot_weights: Robj,
    standardize: bool,
    threads: i32,
) -> RResult<Robj> {
    let slots = sparse_slots(&x)?;
    let feats = features_of(&x, &slots)?;
    let xmat = faer::MatRef::from_column_major_slice(design.data(), design.nrows(), design.ncols());
    let cluster = zero_based(cluster);
    let d = Design {
        x: xmat,
        weights,
        cluster: &cluster,
        n_clusters: n_clusters as usize,
    };
    let vcov = match vcov {
        "CR1" => Vcov::Cr1,
        "CR2" => Vcov::Cr2,
        other => return Err(fail(format!("unknown vcov '{other}'"))),
    };
    let boot = if boot_weights.is_null() {
        None
    } else {
        let m = RMatrix::<f64>::try_from(boot_weights)?;
        // Row-major draws x clusters.
        let (b, g) = (m.nrows(), m.ncols());
        Some((
            (0..b * g).map(|k| m.data()[(k % g) * b + k / g]).collect(),
            b,
        ))
    };
    let coefs = zero_based(coefs);
    let fit = ClusterFit::new(&d, &coefs, vcov, boot).map_err(fail)?;
    let proj = fit.projection();
    let width = proj.width();
    let results = pooled(
        threads,
        || -> Result<Vec<clustered::ResponseResult>, String> {
            use rayon::prelude::*;
            let z = feats.project(&proj)?;
            Ok(z.par_chunks(width)
                .map(|zf| fit.finish(zf, standardize))
                .collect())
        },
    )
    .map_err(fail)??;
    let per_coef = |f: fn(&clustered::CoefResult) -> f64| -> Robj {
        let n = results.len();
        let k = coefs.len();
        RMatrix::new_matrix(n, k, |r, c| f(&results[r].coefs[c])).into_robj()
    };
    let list = List::from_names_and_values(
        [
            "estimate",
            "std_error",
            "statistic",
            "df",
            "log_p",
            "resid_sd",
            "boot_p",
            "status",
        ],
        [
            per_coef(|c| c.estimate),
            per_coef(|c| c.std_error),
            per_coef(|c| c.statistic),
            per_coef(|c| c.df),
            per_coef(|c| c.log_p),
            results
                .iter()
                .map(|r| r.resid_sd)
                .collect::<Vec<f64>>()
                .into_robj(),
            results
                .iter()
                .map(|r| r.boot_p)
                .collect::<Vec<f64>>()
                .into_robj(),
            results
                .iter()
                .map(|r| r.status as i32)
                .collect::<Vec<i32>>()
                .into_robj(),
        ],
    )?;
    Ok(list.into_robj())
}

/// Welch two-sample t-tests of every row of `y` between `in_first` and the other columns.
#[extendr]
fn rs_welch(y: RMatrix<f64>, in_first: &[Rbool]) -> RResult<Robj> {
    let (n, k) = (y.nrows(), y.ncols());
    let group: Vec<bool> = in_first.iter().map(|b| b.is_true()).collect();
    let res: Vec<clustered::CoefResult> = (0..n)
        .map(|r| {
            let row: Vec<f64> = (0..k).map(|c| y.data()[c * n + r]).collect();
            clustered::welch(&row, &group)
        })
        .collect();
    let col =
        |f: fn(&clustered::CoefResult) -> f64| res.iter().map(f).collect::<Vec<f64>>().into_robj();
    Ok(List::from_names_and_values(
        ["estimate", "std_error", "statistic", "df", "log_p"],
        [
            col(|c| c.estimate),
            col(|c| c.std_error),
            col(|c| c.statistic),
            col(|c| c.df),
            col(|c| c.log_p),
        ],
    )?
    .into_robj())
}

fn output_list(out: BlockOutput) -> RResult<Robj> {
    let p = out.pairs;
    let to_i32 = |v: &[usize]| v.iter().map(|&k| k as i32 + 1).collect::<Vec<i32>>();
    let reason: Vec<i32> = p.reason.iter().map(|&r| r as i32).collect();
    let list = List::from_names_and_values(
        [
            "i",
            "j",
            "estimate",
            "statistic",
            "df",
            "n",
            "log_p",
            "extra",
            "reason",
            "histogram",
        ],
        [
            to_i32(&p.i).into_robj(),
            to_i32(&p.j).into_robj(),
            p.estimate.into_robj(),
            p.statistic.into_robj(),
            p.df.into_robj(),
            p.n.into_robj(),
            p.log_p.into_robj(),
            p.extra.into_robj(),
            reason.into_robj(),
            out.histogram.counts.into_robj(),
        ],
    )?;
    Ok(list.into_robj())
}

/// One block pair of an association screen. `test` picks the kernel; `options` holds its
/// settings by name; `x_levels`/`y_levels` are level counts for categorical features.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rs_assoc_block(
    test: &str,
    x: RMatrix<f64>,
    y: RMatrix<f64>,
    x_levels: &[i32],
    y_levels: &[i32],
    offsets: &[i32],
    symmetric: bool,
    keep_all: bool,
    max_log_p: f64,
    top: i32,
    options: List,
    threads: i32,
) -> RResult<Robj> {
    let xb = block_of(&x)?;
    let yb = block_of(&y)?;
    if xb.n_samples != yb.n_samples {
        return Err(fail("x and y have different numbers of samples"));
    }
    let pos = BlockPosition {
        x_offset: offsets[0] as usize,
        y_offset: offsets[1] as usize,
        symmetric,
    };
    let rule = KeepRule {
        all: keep_all,
        max_log_p,
        top: top.max(0) as usize,
    };
    let opt = |name: &str| options.dollar(name).ok();
    let flag = |name: &str| opt(name).and_then(|v| v.as_bool()).unwrap_or(false);
    let levels = |v: &[i32]| v.iter().map(|&l| l as usize).collect::<Vec<usize>>();
    let (xl, yl) = (levels(x_levels), levels(y_levels));
    let out = match test {
        "pearson" | "spearman" => {
            let method = if test == "pearson" {
                cor::CorMethod::Pearson
            } else {
                cor::CorMethod::Spearman
            };
            pooled(threads, || cor::cor_block(&xb, &yb, method, pos, rule))
        }
        "mwu" => {
            let exact = match opt("exact")
                .and_then(|v| v.as_str().map(String::from))
                .as_deref()
            {
                Some("always") => mwu::Exact::Always,
                Some("never") => mwu::Exact::Never,
                _ => mwu::Exact::Auto,
            };
            let o = mwu::MwuOptions {
                exact,
                continuity: flag("continuity"),
            };
            pooled(threads, || mwu::mwu_block(&xb, &yb, o, pos, rule))
        }
        "kruskal" => pooled(threads, || kruskal::kruskal_block(&xb, &yb, &yl, pos, rule)),
        "fisher" => {
            let mle = flag("mle");
            pooled(threads, || fisher::fisher_block(&xb, &yb, mle, pos, rule))
        }
        "chisq" => {
            let yates = flag("yates");
            pooled(threads, || {
                chisq::chisq_block(&xb, &xl, &yb, &yl, yates, pos, rule)
            })
        }
        other => return Err(fail(format!("unknown test '{other}'"))),
    }
    .map_err(fail)?;
    output_list(out)
}

/// Sum of the entries of the product of two blocks (benchmark floor).
#[extendr]
fn rs_crossprod(x: RMatrix<f64>, y: RMatrix<f64>, threads: i32) -> RResult<f64> {
    let (xb, yb) = (block_of(&x)?, block_of(&y)?);
    pooled(threads, || {
        sceffects_core::assoc::product_checksum(&xb, &yb)
    })
    .map_err(fail)
}

mod gsea;
mod lmm;
mod manifold;
mod nb;

extendr_module! {
    mod sceffects;
    use gsea;
    use lmm;
    use nb;
    use manifold;
    fn rs_init;
    fn rs_crossprod;
    fn rs_distribution;
    fn rs_bh;
    fn rs_bh_histogram;
    fn rs_csc_row_block;
    fn rs_group_sums;
    fn rs_feature_moments;
    fn rs_feature_weighted_sums;
    fn rs_cluster_fit;
    fn rs_welch;
    fn rs_assoc_block;
}

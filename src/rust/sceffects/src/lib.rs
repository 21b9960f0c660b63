//! extendr binding of sceffects: borrows R memory, calls sceffects-core, builds R results.
//! No statistics here. Errors go through `fail()`, which escapes `%` (extendr 0.9 passes
//! error messages to Rf_error as a format string).

use extendr_api::prelude::*;
use sceffects_core::assoc::pairs::{BlockOutput, BlockPosition, KeepRule};
use sceffects_core::assoc::{chisq, cor, fisher, kruskal, mwu, Block};
use sceffects_core::{dist, fdr, input, with_threads};

type RResult<T> = std::result::Result<T, Error>;

fn fail(msg: impl std::fmt::Display) -> Error {
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

/// Dense block of rows `start..end` (0-based, end exclusive) of a dgCMatrix.
#[extendr]
fn rs_csc_row_block(x: Robj, start: i32, end: i32) -> RResult<RMatrix<f64>> {
    let dim = x.get_attrib("Dim").ok_or_else(|| fail("not a dgCMatrix"))?;
    let dim = dim
        .as_integer_slice()
        .ok_or_else(|| fail("not a dgCMatrix"))?;
    let slot = |name: &str| {
        x.get_attrib(name)
            .ok_or_else(|| fail(format!("dgCMatrix without slot {name}")))
    };
    let (p, i, xv) = (slot("p")?, slot("i")?, slot("x")?);
    let view = input::CscView::new(
        dim[0] as usize,
        dim[1] as usize,
        p.as_integer_slice()
            .ok_or_else(|| fail("slot p is not integer"))?,
        i.as_integer_slice()
            .ok_or_else(|| fail("slot i is not integer"))?,
        xv.as_real_slice()
            .ok_or_else(|| fail("slot x is not double"))?,
    )
    .map_err(fail)?;
    let (s, e) = (start as usize, end as usize);
    if start < 0 || e > view.nrow || s > e {
        return Err(fail("row block out of range"));
    }
    let values = view.row_block(s, e);
    Ok(RMatrix::new_matrix(e - s, view.ncol, |r, c| {
        values[c * (e - s) + r]
    }))
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
            with_threads(threads as usize, || {
                cor::cor_block(&xb, &yb, method, pos, rule)
            })
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
            with_threads(threads as usize, || mwu::mwu_block(&xb, &yb, o, pos, rule))
        }
        "kruskal" => with_threads(threads as usize, || {
            kruskal::kruskal_block(&xb, &yb, &yl, pos, rule)
        }),
        "fisher" => {
            let mle = flag("mle");
            with_threads(threads as usize, || {
                fisher::fisher_block(&xb, &yb, mle, pos, rule)
            })
        }
        "chisq" => {
            let yates = flag("yates");
            with_threads(threads as usize, || {
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
    with_threads(threads as usize, || {
        sceffects_core::assoc::product_checksum(&xb, &yb)
    })
    .map_err(fail)
}

extendr_module! {
    mod sceffects;
    fn rs_crossprod;
    fn rs_distribution;
    fn rs_bh;
    fn rs_bh_histogram;
    fn rs_csc_row_block;
    fn rs_assoc_block;
}

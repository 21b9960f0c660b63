//! Binding of distribution tails, FDR and joint Wald tests (sceffects-core `dist`, `fdr`,
//! `wald`).

use crate::{fail, RResult};
use extendr_api::prelude::*;
use sceffects_core::{dist, fdr, wald};

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
    let tail = if lower {
        dist::Tail::Lower
    } else {
        dist::Tail::Upper
    };
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

/// Joint Wald statistics of `h` hypotheses for every feature (see `wald::joint_wald`).
#[extendr]
fn rs_joint_wald(estimate: &[f64], cross: &[f64], h: i32) -> Vec<f64> {
    wald::joint_wald(estimate, cross, h.max(0) as usize)
}

extendr_module! {
    mod pvalues;
    fn rs_joint_wald;
    fn rs_distribution;
    fn rs_bh;
    fn rs_bh_histogram;
}

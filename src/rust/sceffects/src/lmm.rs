//! Binding of linear mixed models for many responses (sceffects-core `lmm`).

use crate::{fail, pooled, zero_based, RResult};
use extendr_api::prelude::*;
use sceffects_core::lmm::{self, Design, Fit, Options};

/// Fits `y` (responses in rows) on the shared design: fixed effects `x` (n x p), random
/// effects `z` (n x q) of one grouping factor `group` (1-based codes, `n_groups` groups),
/// in terms of sizes `block_sizes`, each repeated `block_copies` times (see
/// `sceffects_core::lmm::Design::new`).
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rs_lmm_fit(
    y: RMatrix<f64>,
    x: RMatrix<f64>,
    z: RMatrix<f64>,
    group: &[i32],
    n_groups: i32,
    block_sizes: &[i32],
    block_copies: &[i32],
    reml: bool,
    satterthwaite: bool,
    threads: i32,
) -> RResult<Robj> {
    let group = zero_based(group);
    let blocks: Vec<(usize, usize)> = block_sizes
        .iter()
        .zip(block_copies)
        .map(|(&s, &c)| (s.max(0) as usize, c.max(0) as usize))
        .collect();
    let design = Design::new(
        x.data(),
        x.ncols(),
        z.data(),
        z.ncols(),
        &group,
        n_groups as usize,
        &blocks,
    )
    .map_err(fail)?;
    if y.ncols() != group.len() {
        return Err(fail(
            "the responses and the design have different numbers of observations",
        ));
    }
    let opts = Options {
        reml,
        satterthwaite,
    };
    let n_resp = y.nrows();
    let responses = y.data();
    let fits = pooled(threads, || lmm::fit_many(&design, responses, n_resp, opts)).map_err(fail)?;
    let matrix = |k: usize, f: &dyn Fn(&Fit, usize) -> f64| -> Robj {
        RMatrix::new_matrix(n_resp, k, |r, c| f(&fits[r], c)).into_robj()
    };
    let p = x.ncols();
    let list = List::from_names_and_values(
        [
            "estimate",
            "std_error",
            "df",
            "log_p",
            "log_p_z",
            "vcov",
            "theta",
            "sigma",
            "criterion",
            "ranef",
            "converged",
            "iterations",
            "status",
        ],
        [
            matrix(p, &|f, c| f.beta[c]),
            matrix(p, &|f, c| f.std_error(c)),
            matrix(p, &|f, c| f.df[c]),
            matrix(p, &|f, c| f.log_p_t(c)),
            matrix(p, &|f, c| f.log_p_z(c)),
            matrix(p * p, &|f, c| f.vcov_entry(c)),
            matrix(design.n_theta(), &|f, c| f.theta[c]),
            fits.iter().map(|f| f.sigma).collect::<Vec<_>>().into_robj(),
            fits.iter()
                .map(|f| f.criterion)
                .collect::<Vec<_>>()
                .into_robj(),
            matrix(n_groups as usize * z.ncols(), &|f, c| f.ranef[c]),
            fits.iter()
                .map(|f| f.converged)
                .collect::<Vec<_>>()
                .into_robj(),
            fits.iter()
                .map(|f| f.iterations as i32)
                .collect::<Vec<_>>()
                .into_robj(),
            fits.iter()
                .map(|f| f.status as i32)
                .collect::<Vec<_>>()
                .into_robj(),
        ],
    )?;
    Ok(list.into_robj())
}

extendr_module! {
    mod lmm;
    fn rs_lmm_fit;
}

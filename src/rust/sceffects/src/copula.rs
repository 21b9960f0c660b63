//! Binding of the Gaussian-copula NB simulator (sceffects-core `copula`).

use crate::{fail, pooled, seed_of, RResult};
use extendr_api::prelude::*;
use sceffects_core::copula;

fn same_shape(a: &RMatrix<f64>, b: &RMatrix<f64>) -> bool {
    a.nrows() == b.nrows() && a.ncols() == b.ncols()
}

/// Normal scores of randomised quantile residuals of counts `y` under NB(`mu`, `size`),
/// all genes x cells.
#[extendr]
fn rs_nb_normal_scores(
    y: RMatrix<f64>,
    mu: RMatrix<f64>,
    size: RMatrix<f64>,
    seed: f64,
    threads: i32,
) -> RResult<Robj> {
    if !same_shape(&y, &mu) || !same_shape(&y, &size) {
        return Err(fail("counts, means and sizes must have the same shape"));
    }
    let (g, n) = (y.nrows(), y.ncols());
    let (ys, ms, ss) = (y.data(), mu.data(), size.data());
    let z = pooled(threads, || {
        copula::normal_scores(ys, ms, ss, g, seed_of(seed))
    })
    .map_err(fail)?;
    Ok(RMatrix::new_matrix(g, n, |r, c| z[r + c * g]).into_robj())
}

/// Counts genes x cells from NB(`mu`, `size`) joined by the Gaussian copula of lower
/// Cholesky factor `l`; `draw` numbers the data set.
#[extendr]
fn rs_nb_copula_simulate(
    mu: RMatrix<f64>,
    size: RMatrix<f64>,
    l: RMatrix<f64>,
    seed: f64,
    draw: i32,
    threads: i32,
) -> RResult<Robj> {
    let g = mu.nrows();
    if !same_shape(&mu, &size) || l.nrows() != g || l.ncols() != g {
        return Err(fail("means, sizes and the correlation factor do not match"));
    }
    let n = mu.ncols();
    let (ms, ss, ls) = (mu.data(), size.data(), l.data());
    let y = pooled(threads, || {
        copula::simulate(ms, ss, g, ls, seed_of(seed), draw.max(0) as u64)
    })
    .map_err(fail)?;
    Ok(RMatrix::new_matrix(g, n, |r, c| y[r + c * g]).into_robj())
}

extendr_module! {
    mod copula;
    fn rs_nb_normal_scores;
    fn rs_nb_copula_simulate;
}

//! Binding of the Gaussian-copula count simulator (sceffects-core `copula`).

use crate::{fail, pooled, seed_of, RResult};
use extendr_api::prelude::*;
use sceffects_core::copula;

fn same_shape(a: &RMatrix<f64>, b: &RMatrix<f64>) -> bool {
    a.nrows() == b.nrows() && a.ncols() == b.ncols()
}

fn matrix_of(v: &[f64], rows: usize, cols: usize) -> Robj {
    RMatrix::new_matrix(rows, cols, |r, c| v[r + c * rows]).into_robj()
}

/// Normal scores of randomised quantile residuals of counts `y` under NB(`mu`, `size`)
/// with zero inflation `zero` per gene, all genes x cells; the block starts at data cell
/// `first_cell` (0-based), which keys the random streams.
#[extendr]
fn rs_nb_normal_scores(
    y: RMatrix<f64>,
    mu: RMatrix<f64>,
    size: RMatrix<f64>,
    zero: &[f64],
    first_cell: i32,
    seed: f64,
    threads: i32,
) -> RResult<Robj> {
    let g = y.nrows();
    if !same_shape(&y, &mu) || !same_shape(&y, &size) || zero.len() != g {
        return Err(fail("counts, means, sizes and zero inflation must match"));
    }
    let (ys, ms, ss) = (y.data(), mu.data(), size.data());
    let first = first_cell.max(0) as usize;
    let z = pooled(threads, || {
        copula::normal_scores(ys, ms, ss, zero, g, first, seed_of(seed))
    })
    .map_err(fail)?;
    Ok(matrix_of(&z, g, y.ncols()))
}

/// Counts genes x cells from the marginals joined by the Gaussian copula whose lower
/// Cholesky factors (one per level, side by side in `l`) apply to the cells by `level`
/// (0-based); `draw` numbers the data set.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rs_nb_copula_simulate(
    mu: RMatrix<f64>,
    size: RMatrix<f64>,
    zero: &[f64],
    l: RMatrix<f64>,
    level: &[i32],
    seed: f64,
    draw: i32,
    threads: i32,
) -> RResult<Robj> {
    let (g, n) = (mu.nrows(), mu.ncols());
    let n_levels = l.ncols() / g.max(1);
    if !same_shape(&mu, &size) || zero.len() != g || l.nrows() != g || l.ncols() != g * n_levels {
        return Err(fail(
            "means, sizes, zero inflation and the correlation factors do not match",
        ));
    }
    if level.len() != n || level.iter().any(|&k| k < 0 || k as usize >= n_levels) {
        return Err(fail("one copula level per cell is needed"));
    }
    let level: Vec<usize> = level.iter().map(|&k| k as usize).collect();
    let (ms, ss, ls) = (mu.data(), size.data(), l.data());
    let y = pooled(threads, || {
        copula::simulate(
            ms,
            ss,
            zero,
            g,
            ls,
            &level,
            seed_of(seed),
            draw.max(0) as u64,
        )
    })
    .map_err(fail)?;
    Ok(matrix_of(&y, g, n))
}

/// Hermite coefficients (n = 1..`n_terms`) of every entry's normal-score conditional
/// mean: genes x (cells * n_terms), one genes x cells matrix per order side by side.
#[extendr]
fn rs_copula_hermite(
    mu: RMatrix<f64>,
    size: RMatrix<f64>,
    zero: &[f64],
    n_terms: i32,
    threads: i32,
) -> RResult<Robj> {
    let g = mu.nrows();
    if !same_shape(&mu, &size) || zero.len() != g || n_terms < 1 {
        return Err(fail("means, sizes and zero inflation must match"));
    }
    let (ms, ss, t) = (mu.data(), size.data(), n_terms as usize);
    let a = pooled(threads, || copula::hermite_matrix(ms, ss, zero, g, t)).map_err(fail)?;
    Ok(matrix_of(&a, g, mu.ncols() * t))
}

/// Latent correlations whose expected score correlations are `r`, from the mean Hermite
/// coefficient products `s` (genes x (genes * n_terms)).
#[extendr]
fn rs_copula_latent(r: RMatrix<f64>, s: RMatrix<f64>, threads: i32) -> RResult<Robj> {
    let g = r.nrows();
    if r.ncols() != g || s.nrows() != g || g == 0 || s.ncols() % g != 0 {
        return Err(fail(
            "score correlations and coefficient products do not match",
        ));
    }
    let (rs, ss) = (r.data(), s.data());
    let out = pooled(threads, || copula::latent_correlation(rs, ss, g)).map_err(fail)?;
    Ok(matrix_of(&out, g, g))
}

/// Zero-inflation probability per gene by maximum likelihood with the NB held at `mu`,
/// `size` (all genes x cells).
#[extendr]
fn rs_nb_zero_inflation(
    y: RMatrix<f64>,
    mu: RMatrix<f64>,
    size: RMatrix<f64>,
    threads: i32,
) -> RResult<Vec<f64>> {
    if !same_shape(&y, &mu) || !same_shape(&y, &size) {
        return Err(fail("counts, means and sizes must have the same shape"));
    }
    let (ys, ms, ss, g) = (y.data(), mu.data(), size.data(), y.nrows());
    pooled(threads, || copula::zero_inflation(ys, ms, ss, g)).map_err(fail)
}

extendr_module! {
    mod copula;
    fn rs_nb_normal_scores;
    fn rs_nb_copula_simulate;
    fn rs_copula_hermite;
    fn rs_copula_latent;
    fn rs_nb_zero_inflation;
}

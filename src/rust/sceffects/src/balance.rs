//! Binding of balances from a tree and OLS for many responses (sceffects-core `balance`,
//! `ols`).

use crate::{fail, pooled, zero_based, RResult};
use extendr_api::prelude::*;
use sceffects_core::{balance, ols};

/// Balances (internal nodes x samples) of `logx` (parts x samples); `first`, `second`:
/// 1-based children of the internal nodes in post-order (see
/// `sceffects_core::balance::tree_balances`).
#[extendr]
fn rs_tree_balances(logx: RMatrix<f64>, first: &[i32], second: &[i32]) -> RResult<Robj> {
    let children: Vec<(usize, usize)> = zero_based(first)
        .into_iter()
        .zip(zero_based(second))
        .collect();
    let n_samples = logx.ncols();
    let out = balance::tree_balances(logx.data(), logx.nrows(), &children).map_err(fail)?;
    let n_int = children.len();
    Ok(RMatrix::new_matrix(n_int, n_samples, |r, c| out[r + c * n_int]).into_robj())
}

/// Observations and coefficients of the design `x`, checked against the responses `y`
/// (one row per response, one column per observation).
fn observations(y: &RMatrix<f64>, x: &RMatrix<f64>) -> RResult<(usize, usize)> {
    let (n, p) = (x.nrows(), x.ncols());
    if y.ncols() != n {
        return Err(fail(
            "the responses and the design have different numbers of observations",
        ));
    }
    Ok((n, p))
}

/// OLS of every row of `y` on the design `x`, in the shape of `rs_lmm_fit()`'s list plus
/// R², adjusted R² and the leave-one-out error.
#[extendr]
fn rs_ols_fit(
    y: RMatrix<f64>,
    x: RMatrix<f64>,
    intercept: bool,
    reml: bool,
    threads: i32,
) -> RResult<Robj> {
    let (n, p) = observations(&y, &x)?;
    let design = ols::Ols::new(x.data(), n, p).map_err(fail)?;
    let n_resp = y.nrows();
    let responses = y.data();
    let fits = pooled(threads, || {
        ols::fit_many(&design, responses, n_resp, intercept, reml)
    })
    .map_err(fail)?;
    let matrix = |k: usize, f: &dyn Fn(&ols::OlsFit, usize) -> f64| -> Robj {
        RMatrix::new_matrix(n_resp, k, |r, c| f(&fits[r], c)).into_robj()
    };
    let column = |f: &dyn Fn(&ols::OlsFit) -> f64| -> Robj {
        fits.iter().map(f).collect::<Vec<_>>().into_robj()
    };
    let df = (n - p) as f64;
    let list = List::from_names_and_values(
        [
            "estimate",
            "std_error",
            "df",
            "log_p",
            "log_p_z",
            "vcov",
            "sigma",
            "criterion",
            "rss",
            "r_squared",
            "adj_r_squared",
            "loo_mse",
        ],
        [
            matrix(p, &|f, c| f.beta[c]),
            matrix(p, &|f, c| f.std_error[c]),
            matrix(p, &|_, _| df),
            matrix(p, &|f, c| f.log_p_t[c]),
            matrix(p, &|f, c| f.log_p_z[c]),
            matrix(p * p, &|f, c| f.sigma * f.sigma * design.xtx_inv[c]),
            column(&|f| f.sigma),
            column(&|f| f.criterion),
            column(&|f| f.rss),
            column(&|f| f.r_squared),
            column(&|f| f.adj_r_squared),
            column(&|f| f.loo_mse),
        ],
    )?;
    Ok(list.into_robj())
}

/// K-fold prediction errors of OLS of the rows of `y` on `x`; `fold`: 1-based fold of each
/// observation.
#[extendr]
fn rs_ols_cv(
    y: RMatrix<f64>,
    x: RMatrix<f64>,
    fold: &[i32],
    n_folds: i32,
    intercept: bool,
    threads: i32,
) -> RResult<Robj> {
    let (n, p) = observations(&y, &x)?;
    let fold = zero_based(fold);
    let n_resp = y.nrows();
    let responses = y.data();
    let xs = x.data();
    let errors = pooled(threads, || {
        ols::cross_validate(
            xs,
            n,
            p,
            responses,
            n_resp,
            &fold,
            n_folds.max(0) as usize,
            intercept,
        )
    })
    .map_err(fail)?
    .map_err(fail)?;
    let list = List::from_names_and_values(
        ["n_test", "model_mse", "r_squared", "pred_mse"],
        [
            errors
                .iter()
                .map(|e| e.n_test as i32)
                .collect::<Vec<_>>()
                .into_robj(),
            errors
                .iter()
                .map(|e| e.model_mse)
                .collect::<Vec<_>>()
                .into_robj(),
            errors
                .iter()
                .map(|e| e.r_squared)
                .collect::<Vec<_>>()
                .into_robj(),
            errors
                .iter()
                .map(|e| e.pred_mse)
                .collect::<Vec<_>>()
                .into_robj(),
        ],
    )?;
    Ok(list.into_robj())
}

extendr_module! {
    mod balance;
    fn rs_tree_balances;
    fn rs_ols_fit;
    fn rs_ols_cv;
}

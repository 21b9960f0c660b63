//! Binding of negative binomial regression (sceffects-core `nb`).

use crate::input::{features_of, sparse_slots};
use crate::{fail, pooled, RResult};
use extendr_api::prelude::*;
use sceffects_core::input::Features;
use sceffects_core::nb::{Model, Options};

/// Fits genes `start..end` (0-based rows, end exclusive) of `x` (double matrix or
/// dgCMatrix) with mean design `x_mean`, dispersion design `z` and `offset`.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rs_nb_fit(
    x: Robj,
    start: i32,
    end: i32,
    x_mean: RMatrix<f64>,
    z: RMatrix<f64>,
    offset: &[f64],
    max_iter: i32,
    tol: f64,
    threads: i32,
) -> RResult<Robj> {
    let slots = sparse_slots(&x)?;
    let feats = features_of(&x, &slots)?;
    let (s, e) = (start as usize, end as usize);
    if start < 0 || e > feats.n_features() || s > e {
        return Err(fail("gene block out of range"));
    }
    if feats.n_obs() != offset.len() {
        return Err(fail(
            "counts and designs have different numbers of observations",
        ));
    }
    let model =
        Model::new(x_mean.data(), x_mean.ncols(), z.data(), z.ncols(), offset).map_err(fail)?;
    let n_genes = e - s;
    let opts = Options {
        max_iter: max_iter.max(1) as usize,
        tol,
    };
    let fits = match feats {
        // A dense matrix is read in place, a dgCMatrix's block of rows made dense.
        Features::Dense { data, nrow } => {
            pooled(threads, || model.fit_rows(data, nrow, s..e, opts))
        }
        Features::Sparse(view) => {
            let block = view.row_block(s, e);
            pooled(threads, || {
                model.fit_rows(&block, n_genes, 0..n_genes, opts)
            })
        }
    }
    .map_err(fail)?;
    let k = model.n_params();
    let theta = RMatrix::new_matrix(k, n_genes, |r, c| fits[c].theta[r]);
    let vcov = RMatrix::new_matrix(k * k, n_genes, |r, c| fits[c].vcov[r]);
    let column = |f: &dyn Fn(&sceffects_core::nb::GeneFit) -> f64| -> Robj {
        fits.iter().map(f).collect::<Vec<f64>>().into_robj()
    };
    Ok(List::from_names_and_values(
        ["theta", "vcov", "loglik", "iterations", "status"],
        [
            theta.into_robj(),
            vcov.into_robj(),
            column(&|f| f.loglik),
            column(&|f| f.iterations as f64),
            column(&|f| f.status as i32 as f64),
        ],
    )?
    .into_robj())
}

extendr_module! {
    mod nb;
    fn rs_nb_fit;
}

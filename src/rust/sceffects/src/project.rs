//! Binding of per-feature sums (sceffects-core `project`): group sums, moments and
//! weighted sums of the features of a double matrix or dgCMatrix.

use crate::input::{features_of, sparse_slots};
use crate::{fail, pooled, RResult};
use extendr_api::prelude::*;
use sceffects_core::project;

/// A column-major `nrow x ncol` result as an R matrix.
fn matrix(values: &[f64], nrow: usize, ncol: usize) -> RMatrix<f64> {
    RMatrix::new_matrix(nrow, ncol, |r, c| values[c * nrow + r])
}

/// Sums of each feature over groups of observations (`group` 1-based; 0 = left out):
/// features x groups.
#[extendr]
fn rs_group_sums(x: Robj, group: &[i32], n_groups: i32, threads: i32) -> RResult<RMatrix<f64>> {
    let slots = sparse_slots(&x)?;
    let feats = features_of(&x, &slots)?;
    let group: Vec<Option<usize>> = group
        .iter()
        .map(|&g| (g > 0).then(|| (g - 1) as usize))
        .collect();
    let n_groups = n_groups.max(0) as usize;
    let sums = pooled(threads, || project::group_sums(&feats, &group, n_groups))
        .map_err(fail)?
        .map_err(fail)?;
    Ok(matrix(&sums, feats.n_features(), n_groups))
}

/// Sum and sum of squares of each feature, shifted by its first finite value (dense
/// input; sparse is not shifted), and the shift: features x 3.
#[extendr]
fn rs_feature_moments(x: Robj, threads: i32) -> RResult<RMatrix<f64>> {
    let slots = sparse_slots(&x)?;
    let feats = features_of(&x, &slots)?;
    let moments = pooled(threads, || project::moments(&feats))
        .map_err(fail)?
        .map_err(fail)?;
    Ok(matrix(&moments, feats.n_features(), 3))
}

/// Per-observation weighted sums over features: `t(x) %*% w` (observations x sets).
/// `weight_row`, when not NULL, gives each feature of `x` its row of `w` (1-based; 0 =
/// feature left out).
#[extendr]
fn rs_feature_weighted_sums(
    x: Robj,
    w: RMatrix<f64>,
    weight_row: Nullable<Vec<i32>>,
    threads: i32,
) -> RResult<RMatrix<f64>> {
    let slots = sparse_slots(&x)?;
    let feats = features_of(&x, &slots)?;
    let n_sets = w.ncols();
    let map: Option<Vec<Option<usize>>> = match weight_row {
        Nullable::NotNull(rows) => Some(
            rows.iter()
                .map(|&r| (r > 0).then(|| (r - 1) as usize))
                .collect(),
        ),
        Nullable::Null => None,
    };
    let w = w.data();
    let sums = pooled(threads, || feats.weighted_sums(w, n_sets, map.as_deref()))
        .map_err(fail)?
        .map_err(fail)?;
    Ok(matrix(&sums, feats.n_obs(), n_sets))
}

extendr_module! {
    mod project;
    fn rs_group_sums;
    fn rs_feature_moments;
    fn rs_feature_weighted_sums;
}

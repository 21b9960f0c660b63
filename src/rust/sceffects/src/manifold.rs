//! Binding of differential abundance and expression on a cell-state manifold
//! (sceffects-core `manifold`). Cell indices arrive 1-based from R.

use crate::input::{features_of, sparse_slots};
use crate::{fail, pooled, seed_of, zero_based, RResult};
use extendr_api::prelude::*;
use sceffects_core::cellstate::density::{fit_and_predict, DensityOptions};
use sceffects_core::cellstate::expression::{ConditionCells, ExpressionModel};
use sceffects_core::cellstate::neighbourhood::{fit_neighbourhoods, NeighbourhoodData};
use sceffects_core::cellstate::{self, lfdr, nulltail, strata, Points};

fn points(m: &RMatrix<f64>, rows: Option<&[usize]>) -> RResult<Points> {
    Points::from_column_major(m.data(), m.nrows(), m.ncols(), rows).map_err(fail)
}

fn points_matrix(p: &Points) -> RMatrix<f64> {
    RMatrix::new_matrix(p.n, p.dim, |r, c| p.coords[r * p.dim + c])
}

/// k-means landmarks (k x dims) of the embedding rows `cells`.
#[extendr]
fn rs_manifold_landmarks(
    embedding: RMatrix<f64>,
    cells: &[i32],
    k: i32,
    max_iter: i32,
    seed: f64,
    threads: i32,
) -> RResult<RMatrix<f64>> {
    let p = points(&embedding, Some(&zero_based(cells)))?;
    let centres = pooled(threads, || {
        cellstate::kmeans_landmarks(
            &p,
            k.max(1) as usize,
            max_iter.max(0) as usize,
            seed_of(seed),
        )
    })
    .map_err(fail)?;
    Ok(points_matrix(&centres))
}

/// A block of genes x cells centred by the genes' means in the strata of cell state
/// (`cells` 1-based columns, `strata` 1-based, one per cell), and, with samples, the
/// per-sample offsets of the centred genes (genes x samples; `sample_cells` 1-based
/// columns, `sample_of` their 1-based sample, `condition_of_sample` 0/1 per sample).
#[extendr]
fn rs_manifold_centre_block(
    y: RMatrix<f64>,
    cells: &[i32],
    strata: &[i32],
    sample_cells: &[i32],
    sample_of: &[i32],
    condition_of_sample: &[i32],
) -> RResult<Robj> {
    let n_rows = y.nrows();
    let mut values = y.data().to_vec();
    strata::centre_within_strata(&mut values, n_rows, &zero_based(cells), &zero_based(strata))
        .map_err(fail)?;
    let offsets = if condition_of_sample.is_empty() {
        Robj::from(())
    } else {
        let samples = strata::cells_by_sample(
            &zero_based(sample_cells),
            &zero_based(sample_of),
            condition_of_sample.len(),
        )
        .map_err(fail)?;
        let cond: Vec<usize> = condition_of_sample
            .iter()
            .map(|&c| c.max(0) as usize)
            .collect();
        let o = strata::sample_offsets(&values, n_rows, &samples, &cond).map_err(fail)?;
        RMatrix::new_matrix(n_rows, samples.len(), |g, j| o[j * n_rows + g]).into_robj()
    };
    let centred = RMatrix::new_matrix(n_rows, y.ncols(), |g, c| values[c * n_rows + g]);
    Ok(List::from_names_and_values(["y", "offsets"], [centred.into_robj(), offsets])?.into_robj())
}

/// Strata of similar cell state (1-based, one per cell of `cells`): the nearest of
/// `round(n / cells_per_stratum)` k-means centres of those cells.
#[extendr]
fn rs_manifold_strata(
    embedding: RMatrix<f64>,
    cells: &[i32],
    cells_per_stratum: i32,
    max_iter: i32,
    seed: f64,
    threads: i32,
) -> RResult<Vec<i32>> {
    let p = points(&embedding, Some(&zero_based(cells)))?;
    let strata = pooled(threads, || {
        strata::state_strata(
            &p,
            cells_per_stratum.max(0) as usize,
            max_iter.max(0) as usize,
            seed_of(seed),
        )
    })
    .map_err(fail)?
    .map_err(fail)?;
    Ok(strata.into_iter().map(|s| s as i32 + 1).collect())
}

/// Length scale `ls_factor * exp(mean log r + 3)` of the cells `cells`.
#[extendr]
fn rs_manifold_length_scale(
    embedding: RMatrix<f64>,
    cells: &[i32],
    ls_factor: f64,
    threads: i32,
) -> RResult<f64> {
    let p = points(&embedding, Some(&zero_based(cells)))?;
    pooled(threads, || cellstate::points_length_scale(&p, ls_factor))
        .map_err(fail)?
        .map_err(fail)
}

/// Density of the cells `cells` with landmarks `landmarks`, predicted at every row of the
/// embedding. `dimension` and `length_scale` NaN: Mellon's heuristics.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rs_manifold_density(
    embedding: RMatrix<f64>,
    cells: &[i32],
    landmarks: RMatrix<f64>,
    dimension: f64,
    length_scale: f64,
    ls_factor: f64,
    seed: f64,
    with_variance: bool,
    threads: i32,
) -> RResult<Robj> {
    let all = points(&embedding, None)?;
    let train = all.subset(&zero_based(cells));
    let lm = points(&landmarks, None)?;
    let opts = DensityOptions {
        dimension: (!dimension.is_nan()).then_some(dimension),
        length_scale: (!length_scale.is_nan()).then_some(length_scale),
        ls_factor,
        seed: seed_of(seed),
        with_variance,
    };
    let run = || fit_and_predict(&train, &lm, &all, opts);
    let (pred, fit) = pooled(threads, run).map_err(fail)?.map_err(fail)?;
    Ok(List::from_names_and_values(
        [
            "log_density",
            "variance",
            "dimension",
            "mu",
            "length_scale",
            "iterations",
        ],
        [
            pred.log_density.into_robj(),
            pred.variance.into_robj(),
            fit.params.dimension.into_robj(),
            fit.params.mu.into_robj(),
            fit.params.length_scale.into_robj(),
            (fit.newton_iterations as i32).into_robj(),
        ],
    )?
    .into_robj())
}

fn condition_cells(cells: &[i32], samples: &List) -> RResult<ConditionCells> {
    let samples = samples
        .values()
        .map(|s| {
            s.as_integer_slice()
                .map(zero_based)
                .ok_or_else(|| fail("sample cells must be integer vectors"))
        })
        .collect::<RResult<Vec<_>>>()?;
    Ok(ConditionCells {
        cells: zero_based(cells),
        samples,
    })
}

/// Everything the genes share, kept on the Rust side: a list of the model (external
/// pointer) and whether the diagonal shortcut was taken.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rs_manifold_expression_model(
    embedding: RMatrix<f64>,
    cells1: &[i32],
    cells2: &[i32],
    samples1: List,
    samples2: List,
    landmarks: RMatrix<f64>,
    length_scale: f64,
    sample_variance: bool,
    fold_change: bool,
    threads: i32,
) -> RResult<Robj> {
    let all = points(&embedding, None)?;
    let lm = points(&landmarks, None)?;
    let conditions = [
        condition_cells(cells1, &samples1)?,
        condition_cells(cells2, &samples2)?,
    ];
    let model = pooled(threads, || {
        ExpressionModel::new(
            &all,
            conditions,
            &lm,
            length_scale,
            sample_variance,
            fold_change,
        )
    })
    .map_err(fail)?
    .map_err(fail)?;
    let shortcut = model.diagonal_shortcut;
    Ok(List::from_names_and_values(
        ["model", "diagonal_shortcut"],
        [ExternalPtr::new(model).into_robj(), shortcut.into_robj()],
    )?
    .into_robj())
}

/// Mean log fold change, Mahalanobis distance, constancy and variance over the two
/// conditions' cells of a block of genes (rows of a double matrix or dgCMatrix over all
/// cells), and per-cell fold changes when the model keeps them (genes x cells).
#[extendr]
fn rs_manifold_expression_block(model: Robj, x: Robj, threads: i32) -> RResult<Robj> {
    let model = ExternalPtr::<ExpressionModel>::try_from(&model)?;
    let model: &ExpressionModel = model.try_addr()?;
    let slots = sparse_slots(&x)?;
    let feats = features_of(&x, &slots)?;
    let n_genes = feats.n_features();
    let y = feats.row_block(0, n_genes);
    let res = pooled(threads, || model.block(&y, n_genes))
        .map_err(fail)?
        .map_err(fail)?;
    let fold_change = match &res.fold_change {
        Some(fc) => RMatrix::new_matrix(n_genes, fc.nrows(), |g, c| fc[(c, g)]).into_robj(),
        None => Robj::from(()),
    };
    Ok(List::from_names_and_values(
        [
            "mean_lfc",
            "mahalanobis",
            "constant",
            "variance",
            "fold_change",
        ],
        [
            res.mean_lfc.into_robj(),
            res.mahalanobis.into_robj(),
            res.constant.into_robj(),
            res.variance.into_robj(),
            fold_change,
        ],
    )?
    .into_robj())
}

/// Empirical p-values and local FDRs of distances against null-gene distances.
#[extendr]
fn rs_manifold_null_fdr(real: &[f64], null: &[f64], threads: i32) -> RResult<Robj> {
    let res = pooled(threads, || lfdr::null_gene_fdr(real, null))
        .map_err(fail)?
        .map_err(fail)?;
    Ok(List::from_names_and_values(
        ["p_value", "local_fdr"],
        [res.p_value.into_robj(), res.local_fdr.into_robj()],
    )?
    .into_robj())
}

/// Natural-log p-values of distances from the scaled F fitted to the null genes'
/// standardised distances (distance^2 / variance), with the fit.
#[extendr]
fn rs_manifold_null_tail(
    real: &[f64],
    real_variance: &[f64],
    null: &[f64],
    null_variance: &[f64],
) -> RResult<Robj> {
    let res = nulltail::fitted_null_tail(real, real_variance, null, null_variance).map_err(fail)?;
    Ok(List::from_names_and_values(
        ["log_p", "df1", "df2", "scale", "log_lik"],
        [
            res.log_p.into_robj(),
            res.fit.df1.into_robj(),
            res.fit.df2.into_robj(),
            res.fit.scale.into_robj(),
            res.fit.log_lik.into_robj(),
        ],
    )?
    .into_robj())
}

/// Neighbourhood test of differential abundance: the rows `cells` (1-based) of the
/// embedding with their samples (`sample_of`, 1-based) and the condition (0/1) of each
/// sample; `landmarks` a matrix, or NULL for `n_landmarks` random cells; `k` cells per
/// neighbourhood, or 0 for the default from the intrinsic dimension.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rs_manifold_neighbourhoods(
    embedding: RMatrix<f64>,
    cells: &[i32],
    sample_of: &[i32],
    condition_of_sample: &[i32],
    landmarks: Robj,
    n_landmarks: i32,
    k: i32,
    seed: f64,
    threads: i32,
) -> RResult<Robj> {
    let p = points(&embedding, Some(&zero_based(cells)))?;
    let given = if landmarks.is_null() {
        None
    } else {
        let m: RMatrix<f64> = landmarks
            .try_into()
            .map_err(|_| fail("landmarks must be a numeric matrix"))?;
        Some(points(&m, None)?)
    };
    let sample_of = zero_based(sample_of);
    let condition_of_sample: Vec<usize> = condition_of_sample.iter().map(|&c| c as usize).collect();
    let run = || {
        let data = NeighbourhoodData {
            cells: &p,
            sample_of: &sample_of,
            condition_of_sample: &condition_of_sample,
        };
        let k = (k > 0).then_some(k as usize);
        fit_neighbourhoods(&data, given, n_landmarks.max(2) as usize, k, seed_of(seed))
    };
    let fit = pooled(threads, run).map_err(fail)?.map_err(fail)?;
    let (lm, test, cell) = (fit.landmarks, fit.test, fit.cells);
    let n_samples = condition_of_sample.len();
    let counts = RMatrix::new_matrix(lm.n, n_samples, |r, c| test.counts[r * n_samples + c]);
    let [ab0, ab1] = test.log_abundance;
    Ok(List::from_names_and_values(
        [
            "landmarks",
            "counts",
            "radius",
            "log_abundance1",
            "log_abundance2",
            "estimate",
            "std_error",
            "statistic",
            "df",
            "log_p",
            "spatial_fdr",
            "prior_df",
            "prior_var",
            "cell_estimate",
            "cell_statistic",
            "cell_log_p",
            "cell_fdr",
            "cell_stable",
            "cell_neighbourhoods",
            "k",
            "intrinsic_dimension",
            "stretch",
            "stretch_directions",
        ],
        [
            points_matrix(&lm).into_robj(),
            counts.into_robj(),
            test.radius.into_robj(),
            ab0.into_robj(),
            ab1.into_robj(),
            test.estimate.into_robj(),
            test.std_error.into_robj(),
            test.statistic.into_robj(),
            test.df.into_robj(),
            test.log_p.into_robj(),
            test.spatial_fdr.into_robj(),
            test.prior_df.into_robj(),
            test.prior_var.into_robj(),
            cell.estimate.into_robj(),
            cell.statistic.into_robj(),
            cell.log_p.into_robj(),
            cell.fdr.into_robj(),
            cell.stable.into_robj(),
            cell.n_neighbourhoods.into_robj(),
            (fit.k as i32).into_robj(),
            fit.intrinsic_dimension.into_robj(),
            fit.metric.stretch.clone().into_robj(),
            RMatrix::new_matrix(fit.metric.dim, fit.metric.stretch.len(), |r, c| {
                fit.metric.directions[c][r]
            })
            .into_robj(),
        ],
    )?
    .into_robj())
}

extendr_module! {
    mod manifold;
    fn rs_manifold_neighbourhoods;
    fn rs_manifold_landmarks;
    fn rs_manifold_strata;
    fn rs_manifold_centre_block;
    fn rs_manifold_length_scale;
    fn rs_manifold_density;
    fn rs_manifold_expression_model;
    fn rs_manifold_expression_block;
    fn rs_manifold_null_fdr;
    fn rs_manifold_null_tail;
}

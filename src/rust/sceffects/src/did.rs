//! Binding of cluster-robust regression of many features on one design and of Welch tests
//! (sceffects-core `clustered`), for difference-in-differences.

use crate::input::{features_of, sparse_slots};
use crate::{fail, pooled, zero_based, RResult};
use extendr_api::prelude::*;
use sceffects_core::clustered::{self, ClusterFit, CoefResult, Design, Vcov};
use sceffects_core::median;

/// The per-coefficient columns shared by the DiD results.
const COEF_FIELDS: [&str; 5] = ["estimate", "std_error", "statistic", "df", "log_p"];

fn coef_field(c: &CoefResult, k: usize) -> f64 {
    [c.estimate, c.std_error, c.statistic, c.df, c.log_p][k]
}

/// Cluster-robust WLS of every feature (row of `x`) on one design: results for the
/// coefficients `coefs` (1-based), a wild-bootstrap p of the first when `boot_weights`
/// (draws x clusters) is a matrix, and joint Wald tests when `joint` is a list of integer
/// vectors (1-based positions in `coefs`). With `boot_joint`, the bootstrap p is that of
/// the first joint test instead.
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
    #[extendr(default = "NULL")] joint: Robj,
    #[extendr(default = "0.95")] boot_level: f64,
    #[extendr(default = "FALSE")] boot_joint: bool,
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
        Some((m.data().to_vec(), m.nrows()))
    };
    let coefs = zero_based(coefs);
    let tests: Vec<Vec<usize>> = if joint.is_null() {
        Vec::new()
    } else {
        List::try_from(joint)?
            .values()
            .map(|v| {
                v.as_integer_slice()
                    .map(zero_based)
                    .ok_or_else(|| fail("`joint` must be a list of integer vectors"))
            })
            .collect::<RResult<_>>()?
    };
    let fit = ClusterFit::new(&d, &coefs, vcov, boot)
        .and_then(|f| f.with_joint_tests(&tests, vcov))
        .and_then(|f| f.with_boot_level(boot_level))
        .and_then(|f| {
            if boot_joint {
                f.with_joint_boot(&d, 0)
            } else {
                Ok(f)
            }
        })
        .map_err(fail)?;
    let results = pooled(threads, || {
        clustered::fit_features(&fit, &feats, standardize)
    })
    .map_err(fail)?
    .map_err(fail)?;
    let (n, k) = (results.len(), coefs.len());
    let mut values: Vec<Robj> = (0..COEF_FIELDS.len())
        .map(|f| RMatrix::new_matrix(n, k, |r, c| coef_field(&results[r].coefs[c], f)).into_robj())
        .collect();
    let per_feature = |f: fn(&clustered::ResponseResult) -> f64| {
        results.iter().map(f).collect::<Vec<f64>>().into_robj()
    };
    let n_tests = tests.len();
    let joint_field = |f: fn(&clustered::JointResult) -> f64| {
        RMatrix::new_matrix(n, n_tests, |r, c| f(&results[r].joint[c])).into_robj()
    };
    values.push(joint_field(|j| j.statistic));
    values.push(joint_field(|j| j.df_num));
    values.push(joint_field(|j| j.df_denom));
    values.push(joint_field(|j| j.log_p));
    values.push(per_feature(|r| r.resid_sd));
    values.push(per_feature(|r| r.boot_p));
    values.push(per_feature(|r| r.boot_crit));
    values.push(per_feature(|r| r.boot_t_low));
    values.push(per_feature(|r| r.boot_t_high));
    values.push(
        results
            .iter()
            .map(|r| r.status as i32)
            .collect::<Vec<_>>()
            .into_robj(),
    );
    let names: Vec<&str> = COEF_FIELDS
        .iter()
        .chain(&[
            "joint_statistic",
            "joint_df_num",
            "joint_df",
            "joint_log_p",
            "resid_sd",
            "boot_p",
            "boot_crit",
            "boot_t_low",
            "boot_t_high",
            "status",
        ])
        .copied()
        .collect();
    Ok(List::from_names_and_values(names, values)?.into_robj())
}

/// Welch two-sample t-tests of every row of `y` between `in_first` and the other columns,
/// rows split over `threads` threads.
#[extendr]
fn rs_welch(
    y: RMatrix<f64>,
    in_first: &[Rbool],
    #[extendr(default = "1L")] threads: i32,
) -> RResult<Robj> {
    let group: Vec<bool> = in_first.iter().map(|b| b.is_true()).collect();
    let (data, n_rows) = (y.data(), y.nrows());
    let res = pooled(threads, || clustered::welch_rows(data, n_rows, &group))
        .map_err(fail)?
        .map_err(fail)?;
    let values = (0..COEF_FIELDS.len()).map(|f| {
        res.iter()
            .map(|c| coef_field(c, f))
            .collect::<Vec<_>>()
            .into_robj()
    });
    Ok(List::from_names_and_values(COEF_FIELDS, values)?.into_robj())
}

/// Medians of every feature over groups of observations (`group` 1-based; 0 = left out),
/// a dgCMatrix's zeros counted without densifying it: features x groups.
#[extendr]
fn rs_group_medians(x: Robj, group: &[i32], n_groups: i32, threads: i32) -> RResult<Robj> {
    let slots = sparse_slots(&x)?;
    let feats = features_of(&x, &slots)?;
    let group: Vec<Option<usize>> = group
        .iter()
        .map(|&g| (g > 0).then(|| (g - 1) as usize))
        .collect();
    let n_groups = n_groups.max(0) as usize;
    let nf = feats.n_features();
    let med = pooled(threads, || median::group_medians(&feats, &group, n_groups))
        .map_err(fail)?
        .map_err(fail)?;
    Ok(RMatrix::new_matrix(nf, n_groups, |r, c| med[c * nf + r]).into_robj())
}

extendr_module! {
    mod did;
    fn rs_cluster_fit;
    fn rs_group_medians;
    fn rs_welch;
}

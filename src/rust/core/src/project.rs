//! Linear functionals of every feature of a features x observations matrix, in one pass.
//!
//! Regression on a design shared by all features is linear in the response, so each
//! feature reduces to a few numbers: `dense` rows (observation j adds `y_j * L[., j]`),
//! `grouped` rows (observation j adds into the slot of its group, which keeps per-cluster
//! sums without a row per cluster), and the sum, sum of squares, weighted sum and weighted
//! sum of squares. A sparse matrix is read once, each non-zero costing one short loop.
//! With `shift`, a dense feature is first shifted by one of its own values, so that a
//! large common offset (values near 1e8 with a spread of 1) does not cancel away the
//! precision of the sums of squares; the shift is returned as the last statistic. This is
//! only valid for functionals that annihilate constants (regressions whose design spans
//! the intercept); sparse features are never shifted (that would fill in the zeros).
//! Features are processed in fixed blocks, each by one thread, in observation order, so
//! results are bit-identical whatever the thread count.

use crate::input::{CscView, Features};
use rayon::prelude::*;

/// Number of trailing per-feature statistics: sum, sum of squares, weighted sum, weighted
/// sum of squares (all of the shifted values), and the shift.
pub const N_STATS: usize = 5;
const FEATURES_PER_TASK: usize = 256;

/// The functionals to compute, all over the same `n_obs` observations.
pub struct Projection {
    pub n_obs: usize,
    /// Dense rows, column-major `n_dense x n_obs` (the column of observation j is contiguous).
    pub n_dense: usize,
    pub dense: Vec<f64>,
    /// Grouped rows, column-major `n_grouped x n_obs`; observation j adds into slot
    /// `group[j]`.
    pub n_grouped: usize,
    pub grouped: Vec<f64>,
    pub group: Vec<usize>,
    pub n_groups: usize,
    /// Observation weights of the weighted sums.
    pub weights: Vec<f64>,
    /// Shift each dense feature by its first finite value before projecting.
    pub shift: bool,
}

impl Projection {
    /// Values per feature: dense rows, then `n_groups` slots of `n_grouped`, then the stats.
    pub fn width(&self) -> usize {
        self.n_dense + self.n_grouped * self.n_groups + N_STATS
    }

    /// Offset of grouped row `r` of group `g` within a feature's values.
    pub fn grouped_slot(&self, g: usize, r: usize) -> usize {
        self.n_dense + g * self.n_grouped + r
    }

    /// Sums of each feature within groups of observations: `group[j]` is observation j's
    /// group (`None`: left out, summed into an extra last slot that callers ignore).
    pub fn group_sums(group: &[Option<usize>], n_groups: usize) -> Projection {
        let n = group.len();
        Projection {
            n_obs: n,
            n_dense: 0,
            dense: Vec::new(),
            n_grouped: 1,
            grouped: vec![1.0; n],
            group: group.iter().map(|g| g.unwrap_or(n_groups)).collect(),
            n_groups: n_groups + 1,
            weights: vec![1.0; n],
            shift: false,
        }
    }

    /// Only the trailing statistics of each feature over `n_obs` observations, dense
    /// features shifted by their first finite value.
    pub fn moments(n_obs: usize) -> Projection {
        Projection {
            n_obs,
            n_dense: 0,
            dense: Vec::new(),
            n_grouped: 0,
            grouped: Vec::new(),
            group: Vec::new(),
            n_groups: 0,
            weights: vec![1.0; n_obs],
            shift: true,
        }
    }

    pub fn check(&self) -> Result<(), String> {
        let n = self.n_obs;
        if self.dense.len() != self.n_dense * n
            || self.grouped.len() != self.n_grouped * n
            || (self.n_grouped > 0 && self.group.len() != n)
            || self.weights.len() != n
            || self.group.iter().any(|&g| g >= self.n_groups)
        {
            return Err(
                "projection: rows, groups and weights do not match the observations".into(),
            );
        }
        Ok(())
    }

    #[inline]
    fn add(&self, out: &mut [f64], j: usize, v: f64) {
        let (m, q) = (self.n_dense, self.n_grouped);
        for (o, l) in out[..m].iter_mut().zip(&self.dense[j * m..(j + 1) * m]) {
            *o += v * l;
        }
        if q > 0 {
            let base = m + self.group[j] * q;
            for (o, l) in out[base..base + q]
                .iter_mut()
                .zip(&self.grouped[j * q..(j + 1) * q])
            {
                *o += v * l;
            }
        }
        let s = out.len() - N_STATS;
        let w = self.weights[j];
        // out[s + 4] holds the shift, set before the first observation.
        out[s] += v;
        out[s + 1] += v * v;
        out[s + 2] += w * v;
        out[s + 3] += w * v * v;
    }
}

/// Sums of each feature within groups of observations (see [`Projection::group_sums`]):
/// column-major `n_features x n_groups`.
pub fn group_sums(
    feats: &Features,
    group: &[Option<usize>],
    n_groups: usize,
) -> Result<Vec<f64>, String> {
    if group.iter().flatten().any(|&g| g >= n_groups) {
        return Err("group codes must be below the number of groups".into());
    }
    if let Features::Sparse(view) = feats {
        let (sums, finite) = group_sums_csc(view, group, n_groups);
        if !finite {
            return Err(NON_FINITE.into());
        }
        return Ok(sums);
    }
    let proj = Projection::group_sums(group, n_groups);
    let z = feats.project(&proj)?;
    let (nf, width) = (feats.n_features(), proj.width());
    Ok((0..nf * n_groups)
        .map(|k| z[(k % nf) * width + proj.grouped_slot(k / nf, 0)])
        .collect())
}

/// The error of [`group_sums`] when a sparse matrix holds a non-finite value (dense input
/// is checked by the caller).
pub const NON_FINITE: &str = "infinite or missing values";

/// Sums of each row of a dgCMatrix within groups of its columns, column-major
/// `nrow x n_groups` (left-out columns are only checked), and whether every value is
/// finite. One pass over the non-zeros, in parallel over groups: each group's columns are
/// summed by one task into that group's column of the result, which a column's sorted
/// rows walk forward, so the work runs at memory speed with no per-thread copies to
/// reduce; each sum runs over its columns in order, so the result is the same whatever the
/// thread count (and that of [`project_csc`]).
pub fn group_sums_csc(
    view: &CscView,
    group: &[Option<usize>],
    n_groups: usize,
) -> (Vec<f64>, bool) {
    let nrow = view.nrow;
    let mut columns_of: Vec<Vec<usize>> = vec![Vec::new(); n_groups + 1];
    for (j, g) in group.iter().enumerate().take(view.ncol) {
        columns_of[g.unwrap_or(n_groups)].push(j);
    }
    let mut out = vec![0.0; nrow * (n_groups + 1)];
    let finite = out
        .par_chunks_mut(nrow.max(1))
        .zip(&columns_of)
        .map(|(sums, columns)| {
            let mut finite = true;
            for &j in columns {
                if crate::cancelled() {
                    break;
                }
                let (lo, hi) = (view.p[j] as usize, view.p[j + 1] as usize);
                for (&r, &v) in view.i[lo..hi].iter().zip(&view.x[lo..hi]) {
                    sums[r as usize] += v;
                    finite &= v.is_finite();
                }
            }
            finite
        })
        .reduce(|| true, |a, b| a && b);
    out.truncate(nrow * n_groups);
    (out, finite)
}

/// Sum and sum of squares of each feature, shifted by its first finite value (dense
/// features; sparse ones are not shifted), and the shift: column-major `n_features x 3`.
pub fn moments(feats: &Features) -> Result<Vec<f64>, String> {
    let z = feats.project(&Projection::moments(feats.n_obs()))?;
    let nf = feats.n_features();
    let column = [0, 1, N_STATS - 1];
    Ok((0..nf * 3)
        .map(|k| z[(k % nf) * N_STATS + column[k / nf]])
        .collect())
}

/// Functionals of the features (rows) of a dense column-major `n_features x n_obs` matrix;
/// returns `n_features x width` values, row-major (one contiguous run per feature).
pub fn project_dense(data: &[f64], n_features: usize, proj: &Projection) -> Vec<f64> {
    let width = proj.width();
    let mut out = vec![0.0; n_features * width];
    out.par_chunks_mut(FEATURES_PER_TASK * width)
        .enumerate()
        .for_each(|(task, block)| {
            if crate::cancelled() {
                return;
            }
            let first = task * FEATURES_PER_TASK;
            let count = block.len() / width;
            let shifts: Vec<f64> = (0..count)
                .map(|f| {
                    let value = |j: usize| data[j * n_features + first + f];
                    match proj.shift {
                        true => (0..proj.n_obs).map(value).find(|v| v.is_finite()),
                        false => None,
                    }
                    .unwrap_or(0.0)
                })
                .collect();
            for (f, &c) in shifts.iter().enumerate() {
                block[(f + 1) * width - 1] = c;
            }
            for j in 0..proj.n_obs {
                let column = &data[j * n_features + first..j * n_features + first + count];
                for (f, (&v, &c)) in column.iter().zip(&shifts).enumerate() {
                    let v = v - c;
                    if v != 0.0 {
                        proj.add(&mut block[f * width..(f + 1) * width], j, v);
                    }
                }
            }
        });
    out
}

/// As [`project_dense`] for a dgCMatrix (features in rows, observations in columns).
/// Each task takes a large contiguous range of features, so that it seeks into each
/// column's row indices once (many small ranges would each binary-search every column,
/// a cache miss apiece).
pub fn project_csc(view: &CscView, proj: &Projection) -> Vec<f64> {
    let width = proj.width();
    let mut out = vec![0.0; view.nrow * width];
    let tasks = 4 * rayon::current_num_threads().max(1);
    let per_task = view.nrow.div_ceil(tasks).max(FEATURES_PER_TASK);
    out.par_chunks_mut(per_task * width)
        .enumerate()
        .for_each(|(task, block)| {
            if crate::cancelled() {
                return;
            }
            let first = task * per_task;
            let end = first + block.len() / width;
            for j in 0..view.ncol {
                let (lo, hi) = (view.p[j] as usize, view.p[j + 1] as usize);
                let rows = &view.i[lo..hi];
                let start = rows.partition_point(|&r| (r as usize) < first);
                for (k, &r) in rows.iter().enumerate().skip(start) {
                    let r = r as usize;
                    if r >= end {
                        break;
                    }
                    let f = r - first;
                    proj.add(&mut block[f * width..(f + 1) * width], j, view.x[lo + k]);
                }
            }
        });
    out
}

/// Per-observation weighted sums over features, `out[j, s] = sum_i y[i, j] * w[row[i], s]`
/// (`w` row-major `n_weight_rows x n_sets`; features with no row are skipped); returns
/// row-major `n_obs x n_sets`.
pub fn feature_weighted_sums_csc(
    view: &CscView,
    w: &[f64],
    n_sets: usize,
    row: &[Option<usize>],
) -> Vec<f64> {
    let mut out = vec![0.0; view.ncol * n_sets];
    out.par_chunks_mut(n_sets.max(1))
        .enumerate()
        .for_each(|(j, sums)| {
            let (lo, hi) = (view.p[j] as usize, view.p[j + 1] as usize);
            for (&i, &v) in view.i[lo..hi].iter().zip(&view.x[lo..hi]) {
                if let Some(r) = row[i as usize] {
                    add_scaled(sums, &w[r * n_sets..(r + 1) * n_sets], v);
                }
            }
        });
    out
}

/// As [`feature_weighted_sums_csc`] for a dense column-major `n_features x n_obs` matrix.
pub fn feature_weighted_sums_dense(
    data: &[f64],
    n_features: usize,
    w: &[f64],
    n_sets: usize,
    row: &[Option<usize>],
) -> Vec<f64> {
    let n_obs = data.len().checked_div(n_features).unwrap_or(0);
    let mut out = vec![0.0; n_obs * n_sets];
    out.par_chunks_mut(n_sets.max(1))
        .enumerate()
        .for_each(|(j, sums)| {
            for (&v, r) in data[j * n_features..(j + 1) * n_features].iter().zip(row) {
                if let (true, Some(r)) = (v != 0.0, r) {
                    add_scaled(sums, &w[r * n_sets..(r + 1) * n_sets], v);
                }
            }
        });
    out
}

/// `sums += v * w`.
#[inline]
fn add_scaled(sums: &mut [f64], w: &[f64], v: f64) {
    for (o, wi) in sums.iter_mut().zip(w) {
        *o += v * wi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> (Vec<f64>, Projection) {
        // 3 features x 4 observations, column-major, with zeros.
        let y = vec![
            1.0, 0.0, 2.0, //
            0.0, 3.0, 0.5, //
            4.0, 0.0, 0.0, //
            -1.0, 2.0, 1.5,
        ];
        let proj = Projection {
            n_obs: 4,
            n_dense: 2,
            dense: vec![1.0, 0.5, 2.0, -1.0, 0.0, 3.0, 1.0, 1.0],
            n_grouped: 1,
            grouped: vec![1.0, 2.0, 3.0, 4.0],
            group: vec![0, 1, 1, 0],
            n_groups: 2,
            weights: vec![1.0, 2.0, 0.5, 1.0],
            shift: false,
        };
        (y, proj)
    }

    fn brute(y: &[f64], nf: usize, p: &Projection) -> Vec<f64> {
        let w = p.width();
        let mut out = vec![0.0; nf * w];
        for f in 0..nf {
            for j in 0..p.n_obs {
                let v = y[j * nf + f];
                for r in 0..p.n_dense {
                    out[f * w + r] += v * p.dense[j * p.n_dense + r];
                }
                out[f * w + p.grouped_slot(p.group[j], 0)] += v * p.grouped[j];
                out[f * w + w - 5] += v;
                out[f * w + w - 4] += v * v;
                out[f * w + w - 3] += p.weights[j] * v;
                out[f * w + w - 2] += p.weights[j] * v * v;
            }
        }
        out
    }

    #[test]
    fn dense_and_sparse_projections_match_brute_force() {
        let (y, proj) = example();
        proj.check().unwrap();
        let expect = brute(&y, 3, &proj);
        assert_eq!(project_dense(&y, 3, &proj), expect);
        // The same matrix as a dgCMatrix.
        let (mut p, mut i, mut x) = (vec![0], vec![], vec![]);
        for j in 0..4 {
            for f in 0..3 {
                if y[j * 3 + f] != 0.0 {
                    i.push(f as i32);
                    x.push(y[j * 3 + f]);
                }
            }
            p.push(i.len() as i32);
        }
        let view = CscView::new(3, 4, &p, &i, &x).unwrap();
        assert_eq!(project_csc(&view, &proj), expect);
        let w = vec![1.0, 0.0, 0.5, 2.0, 0.0, 1.0]; // 3 features x 2 sets
        let rows: Vec<Option<usize>> = (0..3).map(Some).collect();
        let sparse = feature_weighted_sums_csc(&view, &w, 2, &rows);
        let dense = feature_weighted_sums_dense(&y, 3, &w, 2, &rows);
        assert_eq!(sparse, dense);
        assert_eq!(dense[0..2], [1.0 + 0.0 + 2.0 * 0.0, 0.0 + 0.0 + 2.0 * 1.0]);
    }

    #[test]
    fn group_sums_and_moments_match_brute_force() {
        let (y, _) = example();
        let feats = Features::Dense { data: &y, nrow: 3 };
        let group = [Some(1), None, Some(0), Some(1)];
        let sums = group_sums(&feats, &group, 2).unwrap();
        for f in 0..3 {
            let v = |j: usize| y[j * 3 + f];
            assert_eq!(sums[f], v(2));
            assert_eq!(sums[3 + f], v(0) + v(3));
        }
        assert!(group_sums(&feats, &[Some(2), None, None, None], 2).is_err());
        let m = moments(&feats).unwrap();
        for f in 0..3 {
            let c = y[f]; // the first value is finite: the shift
            let sum: f64 = (0..4).map(|j| y[j * 3 + f] - c).sum();
            let sumsq: f64 = (0..4).map(|j| (y[j * 3 + f] - c).powi(2)).sum();
            assert_eq!([m[f], m[3 + f], m[6 + f]], [sum, sumsq, c]);
        }
    }

    #[test]
    fn shifted_projection_keeps_the_spread_of_a_large_offset() {
        let (y, mut proj) = example();
        proj.shift = true;
        let offset = 1e9;
        let big: Vec<f64> = y.iter().map(|v| v + offset).collect();
        let z = project_dense(&big, 3, &proj);
        let w = proj.width();
        for f in 0..3 {
            let values: Vec<f64> = (0..4).map(|j| y[j * 3 + f]).collect();
            let mean = values.iter().sum::<f64>() / 4.0;
            let ss: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
            let stats = &z[(f + 1) * w - N_STATS..(f + 1) * w];
            assert_eq!(stats[4], values[0] + offset);
            let shifted_ss = stats[1] - stats[0] * stats[0] / 4.0;
            assert!((shifted_ss - ss).abs() < 1e-9 * ss.max(1.0));
        }
    }

    #[test]
    fn sparse_group_sums_match_the_projection() {
        // 3 rows x 6 columns; column 4 left out
        let (p, i, x) = (
            vec![0, 2, 3, 3, 5, 6, 8],
            vec![0, 2, 1, 0, 2, 1, 0, 1],
            vec![1.5, -2.0, 3.0, 0.25, 4.0, 9.0, 1e-3, 7.0],
        );
        let view = CscView::new(3, 6, &p, &i, &x).unwrap();
        let group = [Some(1), Some(0), Some(1), Some(0), None, Some(1)];
        let (sums, finite) = group_sums_csc(&view, &group, 2);
        assert!(finite);
        let proj = Projection::group_sums(&group, 2);
        let z = project_csc(&view, &proj);
        let width = proj.width();
        for g in 0..2 {
            for r in 0..3 {
                assert_eq!(sums[g * 3 + r], z[r * width + proj.grouped_slot(g, 0)]);
            }
        }
        // a non-finite value, even in a left-out column, is reported
        let mut bad = x.clone();
        bad[5] = f64::INFINITY;
        let view = CscView::new(3, 6, &p, &i, &bad).unwrap();
        assert!(!group_sums_csc(&view, &group, 2).1);
        bad[5] = f64::NAN;
        let view = CscView::new(3, 6, &p, &i, &bad).unwrap();
        assert!(!group_sums_csc(&view, &group, 2).1);
    }
}

//! Medians of each feature within groups of observations (a trial's participant-visits),
//! a sparse matrix's zeros counted but never stored: a group's median comes from the
//! feature's sorted non-zeros there and the group's number of zeros.

use crate::input::Features;
use crate::project::NON_FINITE;
use rayon::prelude::*;

const FEATURES_PER_TASK: usize = 256;

/// The `k`-th smallest (0-based) of `sorted` together with `n_zeros` zeros.
fn kth_with_zeros(sorted: &[f64], n_zeros: usize, k: usize) -> f64 {
    let negative = sorted.partition_point(|&v| v < 0.0);
    if k < negative {
        sorted[k]
    } else if k < negative + n_zeros {
        0.0
    } else {
        sorted[k - n_zeros]
    }
}

/// Median of `values` (sorted here) and `n_zeros` zeros; NaN when there are none.
fn median_with_zeros(values: &mut [f64], n_zeros: usize) -> f64 {
    let n = values.len() + n_zeros;
    if n == 0 {
        return f64::NAN;
    }
    values.sort_unstable_by(f64::total_cmp);
    if n % 2 == 1 {
        kth_with_zeros(values, n_zeros, n / 2)
    } else {
        0.5 * (kth_with_zeros(values, n_zeros, n / 2 - 1) + kth_with_zeros(values, n_zeros, n / 2))
    }
}

/// Median of each feature within groups of observations: `group[j]` is observation j's
/// group (`None`: left out). Column-major `n_features x n_groups`; NaN for an empty group.
/// A sparse matrix is read a block of rows at a time, row-compressed; an infinite or
/// missing value is an error.
pub fn group_medians(
    feats: &Features,
    group: &[Option<usize>],
    n_groups: usize,
) -> Result<Vec<f64>, String> {
    if group.len() != feats.n_obs() {
        return Err("group codes must have one entry per observation".into());
    }
    if group.iter().flatten().any(|&g| g >= n_groups) {
        return Err("group codes must be below the number of groups".into());
    }
    let mut sizes = vec![0usize; n_groups];
    for g in group.iter().flatten() {
        sizes[*g] += 1;
    }
    let nf = feats.n_features();
    let starts: Vec<usize> = (0..nf).step_by(FEATURES_PER_TASK).collect();
    let blocks = starts
        .par_iter()
        .map(|&start| {
            let end = (start + FEATURES_PER_TASK).min(nf);
            if crate::cancelled() {
                return Ok(Vec::new());
            }
            block_medians(feats, group, &sizes, start, end)
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut out = vec![f64::NAN; nf * n_groups];
    for (&start, block) in starts.iter().zip(&blocks) {
        let nb = block.len() / n_groups.max(1);
        for (k, &v) in block.iter().enumerate() {
            out[(k / nb.max(1)) * nf + start + k % nb.max(1)] = v;
        }
    }
    Ok(out)
}

/// Medians of features `start..end`: column-major `(end - start) x n_groups`.
fn block_medians(
    feats: &Features,
    group: &[Option<usize>],
    sizes: &[usize],
    start: usize,
    end: usize,
) -> Result<Vec<f64>, String> {
    let (nb, n_groups) = (end - start, sizes.len());
    let mut out = vec![f64::NAN; nb * n_groups];
    let mut buckets: Vec<Vec<f64>> = vec![Vec::new(); n_groups];
    let mut finish = |f: usize, buckets: &mut Vec<Vec<f64>>, sparse: bool| {
        for (g, b) in buckets.iter_mut().enumerate() {
            let zeros = if sparse { sizes[g] - b.len() } else { 0 };
            out[g * nb + f] = median_with_zeros(b, zeros);
            b.clear();
        }
    };
    match feats {
        Features::Sparse(view) => {
            let mut cursor = view.column_cursors(start);
            let rows = view.next_rows(&mut cursor, start, end);
            for f in 0..nb {
                for k in rows.ptr[f]..rows.ptr[f + 1] {
                    let v = rows.vals[k];
                    if !v.is_finite() {
                        return Err(NON_FINITE.into());
                    }
                    if let Some(g) = group[rows.cols[k] as usize] {
                        buckets[g].push(v);
                    }
                }
                finish(f, &mut buckets, true);
            }
        }
        Features::Dense { .. } => {
            let block = feats.row_block(start, end);
            for f in 0..nb {
                for (j, g) in group.iter().enumerate() {
                    let v = block[j * nb + f];
                    if !v.is_finite() {
                        return Err(NON_FINITE.into());
                    }
                    if let Some(g) = g {
                        buckets[*g].push(v);
                    }
                }
                finish(f, &mut buckets, false);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::CscView;

    /// Median by sorting every value, zeros included.
    fn direct_median(v: &[f64]) -> f64 {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        }
    }

    #[test]
    fn sparse_and_dense_medians_equal_sorting_every_value() {
        // 300 features (two blocks) x 23 observations, mostly zeros, some negative, some
        // stored zeros; 4 groups and two observations left out; group 3 empty.
        let (nf, n) = (300, 23);
        let value = |f: usize, j: usize| -> f64 {
            let k = (f * 31 + j * 17) % 11;
            match k {
                0..=1 => -(k as f64 + 0.5 + f as f64 * 1e-3),
                2..=4 => k as f64 * 0.7 + j as f64 * 1e-2,
                _ => 0.0,
            }
        };
        let dense: Vec<f64> = (0..n * nf).map(|k| value(k % nf, k / nf)).collect();
        let (mut p, mut i, mut x) = (vec![0i32], Vec::new(), Vec::new());
        for j in 0..n {
            for f in 0..nf {
                let v = value(f, j);
                if v != 0.0 || (f + j) % 7 == 0 {
                    i.push(f as i32);
                    x.push(v);
                }
            }
            p.push(i.len() as i32);
        }
        let view = CscView::new(nf, n, &p, &i, &x).unwrap();
        let group: Vec<Option<usize>> = (0..n)
            .map(|j| if j % 9 == 4 { None } else { Some(j % 3) })
            .collect();
        let sparse = crate::with_threads(2, || group_medians(&Features::Sparse(view), &group, 4))
            .unwrap()
            .unwrap();
        let full = group_medians(
            &Features::Dense {
                data: &dense,
                nrow: nf,
            },
            &group,
            4,
        )
        .unwrap();
        for f in 0..nf {
            for g in 0..4 {
                let members: Vec<f64> = (0..n)
                    .filter(|&j| group[j] == Some(g))
                    .map(|j| value(f, j))
                    .collect();
                let expect = direct_median(&members);
                let (a, b) = (sparse[g * nf + f], full[g * nf + f]);
                if g == 3 {
                    assert!(a.is_nan() && b.is_nan());
                } else {
                    assert_eq!(a, expect, "feature {f} group {g}");
                    assert_eq!(b, expect, "feature {f} group {g}");
                }
            }
        }
        let bad = [f64::NAN];
        let one = CscView::new(1, 1, &[0, 1], &[0], &bad).unwrap();
        assert!(group_medians(&Features::Sparse(one), &[Some(0)], 1).is_err());
        assert!(group_medians(&Features::Sparse(view), &group, 2).is_err());
    }
}

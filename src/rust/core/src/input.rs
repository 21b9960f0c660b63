//! Features (rows) of a dense column-major matrix or of a sparse column-compressed one
//! (R's dgCMatrix), read without densifying the sparse one: a block of rows becomes a
//! small dense block.

use crate::project::{self, Projection};
use std::borrow::Cow;

/// Borrowed view of a dgCMatrix: `p` (column pointers), `i` (0-based row indices, sorted
/// within each column), `x` (values).
#[derive(Clone, Copy, Debug)]
pub struct CscView<'a> {
    pub nrow: usize,
    pub ncol: usize,
    pub p: &'a [i32],
    pub i: &'a [i32],
    pub x: &'a [f64],
}

impl<'a> CscView<'a> {
    pub fn new(
        nrow: usize,
        ncol: usize,
        p: &'a [i32],
        i: &'a [i32],
        x: &'a [f64],
    ) -> Result<Self, String> {
        let malformed = |what: &str| {
            Err(format!("malformed sparse matrix (dgCMatrix): {what}; rebuild it, e.g. with Matrix::sparseMatrix(), or run validObject() on it"))
        };
        if p.len() != ncol + 1 || i.len() != x.len() || p[0] != 0 || p[ncol] as usize != x.len() {
            return malformed("slots p, i and x do not agree with its dimensions");
        }
        if p.windows(2).any(|w| w[1] < w[0]) {
            return malformed("column pointers @p decrease");
        }
        for c in 0..ncol {
            let rows = &i[p[c] as usize..p[c + 1] as usize];
            if rows.iter().any(|&r| r < 0 || r as usize >= nrow) {
                return malformed("row indices @i out of range");
            }
            if rows.windows(2).any(|w| w[1] <= w[0]) {
                return malformed("row indices @i not increasing within a column");
            }
        }
        Ok(CscView {
            nrow,
            ncol,
            p,
            i,
            x,
        })
    }

    /// Dense column-major block of rows `start..end` (features x samples).
    pub fn row_block(&self, start: usize, end: usize) -> Vec<f64> {
        let nb = end - start;
        let mut out = vec![0.0; nb * self.ncol];
        for c in 0..self.ncol {
            let (lo, hi) = (self.p[c] as usize, self.p[c + 1] as usize);
            let rows = &self.i[lo..hi];
            let first = rows.partition_point(|&r| (r as usize) < start);
            for (k, &r) in rows.iter().enumerate().skip(first) {
                let r = r as usize;
                if r >= end {
                    break;
                }
                out[c * nb + (r - start)] = self.x[lo + k];
            }
        }
        out
    }
}

/// Rows `start..end` of a column-compressed matrix in row-compressed form: feature `f`'s
/// entries are `cols[ptr[f]..ptr[f + 1]]` (observations, increasing) and `vals[..]`.
pub struct RowSlice {
    pub ptr: Vec<usize>,
    pub cols: Vec<u32>,
    pub vals: Vec<f64>,
}

impl CscView<'_> {
    /// The first entry of each column at or after row `row`: the cursors of
    /// [`CscView::next_rows`] for a walk from that row.
    pub fn column_cursors(&self, row: usize) -> Vec<usize> {
        (0..self.ncol)
            .map(|c| {
                let (lo, hi) = (self.p[c] as usize, self.p[c + 1] as usize);
                lo + match row {
                    0 => 0,
                    _ => self.i[lo..hi].partition_point(|&r| (r as usize) < row),
                }
            })
            .collect()
    }

    /// The next rows, `start..end`, row-compressed, for a walk down the matrix in row order:
    /// `cursor[c]` is the first entry of column c at or after row `start` and is moved past
    /// row `end`. Each entry is read once over the walk (a bisection per column and block
    /// is a cache miss per step on a large matrix, and cost more than the copy).
    pub fn next_rows(&self, cursor: &mut [usize], start: usize, end: usize) -> RowSlice {
        let mut ptr = vec![0usize; end - start + 1];
        let mut ranges = Vec::with_capacity(self.ncol);
        for (c, at) in cursor.iter_mut().enumerate() {
            let (a, hi) = (*at, self.p[c + 1] as usize);
            let mut b = a;
            while b < hi && (self.i[b] as usize) < end {
                ptr[self.i[b] as usize - start + 1] += 1;
                b += 1;
            }
            ranges.push((a, b));
            *at = b;
        }
        for f in 0..end - start {
            ptr[f + 1] += ptr[f];
        }
        let nnz = ptr[end - start];
        let mut next = ptr[..end - start].to_vec();
        let mut cols = vec![0u32; nnz];
        let mut vals = vec![0.0; nnz];
        for (c, &(a, b)) in ranges.iter().enumerate() {
            for k in a..b {
                let slot = &mut next[self.i[k] as usize - start];
                cols[*slot] = c as u32;
                vals[*slot] = self.x[k];
                *slot += 1;
            }
        }
        RowSlice { ptr, cols, vals }
    }
}

/// Features (rows) x observations (columns): a dense column-major matrix or a dgCMatrix.
#[derive(Clone, Copy, Debug)]
pub enum Features<'a> {
    Dense { data: &'a [f64], nrow: usize },
    Sparse(CscView<'a>),
}

impl Features<'_> {
    pub fn n_features(&self) -> usize {
        match self {
            Features::Dense { nrow, .. } => *nrow,
            Features::Sparse(v) => v.nrow,
        }
    }

    pub fn n_obs(&self) -> usize {
        match self {
            Features::Dense { data, nrow } => data.len().checked_div(*nrow).unwrap_or(0),
            Features::Sparse(v) => v.ncol,
        }
    }

    /// Rows `start..end` as a dense block, column-major with rows fastest; borrowed when
    /// that is the whole of a dense matrix.
    pub fn row_block(&self, start: usize, end: usize) -> Cow<'_, [f64]> {
        match self {
            Features::Sparse(v) => Cow::Owned(v.row_block(start, end)),
            Features::Dense { data, nrow } if start == 0 && end == *nrow => Cow::Borrowed(data),
            Features::Dense { data, nrow } => {
                let rows = end - start;
                Cow::Owned(
                    (0..rows * self.n_obs())
                        .map(|k| data[(k / rows) * nrow + start + k % rows])
                        .collect(),
                )
            }
        }
    }

    /// Every feature projected on `proj` (see [`crate::project`]): `n_features x width`,
    /// row-major.
    pub fn project(&self, proj: &Projection) -> Result<Vec<f64>, String> {
        proj.check()?;
        if self.n_obs() != proj.n_obs {
            return Err("features and design have different numbers of observations".into());
        }
        Ok(match self {
            Features::Dense { data, nrow } => project::project_dense(data, *nrow, proj),
            Features::Sparse(v) => project::project_csc(v, proj),
        })
    }

    /// Per-observation weighted sums over features, `t(x) %*% w`, for weights `w`
    /// column-major `n_weight_rows x n_sets`; returns column-major `n_obs x n_sets`.
    /// Feature i takes weight row `weight_row[i]` and is skipped when that is `None`
    /// (without a map, feature i takes row i): a block of a file's features is scored
    /// against the weights of the features in some set without copying the others out.
    pub fn weighted_sums(
        &self,
        w: &[f64],
        n_sets: usize,
        weight_row: Option<&[Option<usize>]>,
    ) -> Result<Vec<f64>, String> {
        let nf = self.n_features();
        let n_rows = w.len().checked_div(n_sets).unwrap_or(0);
        let identity: Vec<Option<usize>>;
        let map = match weight_row {
            Some(m) => m,
            None => {
                identity = (0..nf).map(Some).collect();
                &identity
            }
        };
        let rows_ok = weight_row.is_some() || n_rows == nf;
        if map.len() != nf || n_rows * n_sets != w.len() || !rows_ok {
            return Err("weights need one row per feature".into());
        }
        if map.iter().flatten().any(|&r| r >= n_rows) {
            return Err("weight rows must be below the number of rows of the weights".into());
        }
        // Row-major weights: a weight row's sets contiguous.
        let wr: Vec<f64> = (0..n_rows * n_sets)
            .map(|k| w[(k % n_sets) * n_rows + k / n_sets])
            .collect();
        let out = match self {
            Features::Dense { data, nrow } => {
                project::feature_weighted_sums_dense(data, *nrow, &wr, n_sets, map)
            }
            Features::Sparse(v) => project::feature_weighted_sums_csc(v, &wr, n_sets, map),
        };
        let n_obs = self.n_obs();
        Ok((0..n_obs * n_sets)
            .map(|k| out[(k % n_obs) * n_sets + k / n_obs])
            .collect())
    }
}

/// What keeps values from being counts (whole numbers >= 0), in the order they are
/// reported: a missing value before a negative one before a fraction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CountProblem {
    Missing = 1,
    Negative = 2,
    NonInteger = 3,
}

/// The first problem (in [`CountProblem`]'s order) among double values, NaN being missing:
/// one pass, no copy.
pub fn count_problem(values: &[f64]) -> Option<CountProblem> {
    let (mut negative, mut fraction) = (false, false);
    for &v in values {
        if v.is_nan() {
            return Some(CountProblem::Missing);
        }
        negative |= v < 0.0;
        fraction |= v != v.round();
    }
    if negative {
        Some(CountProblem::Negative)
    } else if fraction {
        Some(CountProblem::NonInteger)
    } else {
        None
    }
}

/// As [`count_problem`] for R integers, whose missing value is `i32::MIN`.
pub fn integer_count_problem(values: &[i32]) -> Option<CountProblem> {
    if values.contains(&i32::MIN) {
        Some(CountProblem::Missing)
    } else if values.iter().any(|&v| v < 0) {
        Some(CountProblem::Negative)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_problems_are_reported_in_order() {
        assert_eq!(count_problem(&[0.0, 3.0, 1e9]), None);
        assert_eq!(
            count_problem(&[1.5, -1.0, 2.0]),
            Some(CountProblem::Negative)
        );
        assert_eq!(count_problem(&[1.5, 2.0]), Some(CountProblem::NonInteger));
        assert_eq!(
            count_problem(&[-1.0, f64::NAN]),
            Some(CountProblem::Missing)
        );
        assert_eq!(count_problem(&[f64::INFINITY]), None);
        assert_eq!(integer_count_problem(&[0, 4]), None);
        assert_eq!(
            integer_count_problem(&[-2, 4]),
            Some(CountProblem::Negative)
        );
        assert_eq!(
            integer_count_problem(&[-2, i32::MIN]),
            Some(CountProblem::Missing)
        );
    }

    #[test]
    fn row_block_matches_dense() {
        // 3 x 2 matrix [[1, 0], [0, 2], [3, 4]]
        let p = [0, 2, 4];
        let i = [0, 2, 1, 2];
        let x = [1.0, 3.0, 2.0, 4.0];
        let v = CscView::new(3, 2, &p, &i, &x).unwrap();
        assert_eq!(v.row_block(1, 3), vec![0.0, 3.0, 2.0, 4.0]);
        assert_eq!(v.row_block(0, 1), vec![1.0, 0.0]);
    }

    #[test]
    fn corrupt_slots_are_refused() {
        let x = [1.0, 2.0, 3.0];
        // Row index 5 of a 3-row matrix, a negative one, rows out of order, p decreasing.
        assert!(CscView::new(3, 2, &[0, 2, 3], &[0, 5, 1], &x).is_err());
        assert!(CscView::new(3, 2, &[0, 2, 3], &[-1, 2, 1], &x).is_err());
        assert!(CscView::new(3, 2, &[0, 2, 3], &[2, 0, 1], &x).is_err());
        assert!(CscView::new(3, 2, &[0, 3, 3], &[0, 2, 1], &x).is_err());
        assert!(CscView::new(3, 2, &[1, 2, 3], &[0, 2, 1], &x).is_err());
        assert!(CscView::new(3, 2, &[0, 2, 3], &[0, 2, 1], &x).is_ok());
    }

    /// The 3 x 2 matrix [[1, 0], [0, 2], [3, 4]], dense and sparse.
    fn both() -> (Vec<f64>, [i32; 3], [i32; 4], [f64; 4]) {
        (
            vec![1.0, 0.0, 3.0, 0.0, 2.0, 4.0],
            [0, 2, 4],
            [0, 2, 1, 2],
            [1.0, 3.0, 2.0, 4.0],
        )
    }

    #[test]
    fn dense_and_sparse_features_agree() {
        let (data, p, i, x) = both();
        let dense = Features::Dense {
            data: &data,
            nrow: 3,
        };
        let sparse = Features::Sparse(CscView::new(3, 2, &p, &i, &x).unwrap());
        for f in [dense, sparse] {
            assert_eq!((f.n_features(), f.n_obs()), (3, 2));
            assert_eq!(f.row_block(1, 3).as_ref(), &[0.0, 3.0, 2.0, 4.0]);
            assert_eq!(f.row_block(0, 3).as_ref(), data.as_slice());
            // t(x) %*% w, w = [[1, 0], [1, 1], [0, 2]] column-major.
            let w = [1.0, 1.0, 0.0, 0.0, 1.0, 2.0];
            assert_eq!(
                f.weighted_sums(&w, 2, None).unwrap(),
                vec![1.0, 2.0, 6.0, 10.0]
            );
            assert!(f.weighted_sums(&w[..4], 2, None).is_err());
            // Features 0 and 2 mapped to the weight rows [[0, 2], [1, 0]]; feature 1 skipped.
            let map = [Some(1), None, Some(0)];
            let w2 = [0.0, 1.0, 2.0, 0.0];
            assert_eq!(
                f.weighted_sums(&w2, 2, Some(&map)).unwrap(),
                vec![1.0, 0.0, 6.0, 8.0]
            );
            assert!(f
                .weighted_sums(&w2, 2, Some(&[Some(2), None, None]))
                .is_err());
        }
        assert!(matches!(dense.row_block(0, 3), Cow::Borrowed(_)));
        let empty = Features::Dense { data: &[], nrow: 0 };
        assert_eq!(empty.n_obs(), 0);
    }

    #[test]
    fn projection_needs_matching_observations() {
        let (data, ..) = both();
        let f = Features::Dense {
            data: &data,
            nrow: 3,
        };
        assert!(f.project(&Projection::moments(3)).is_err());
        let z = f.project(&Projection::moments(2)).unwrap();
        assert_eq!(z.len(), 3 * project::N_STATS);
    }
}

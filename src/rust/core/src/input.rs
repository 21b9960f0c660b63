//! Reading features out of a sparse column-compressed matrix (R's dgCMatrix) without
//! densifying it: a block of rows becomes a small dense block.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}

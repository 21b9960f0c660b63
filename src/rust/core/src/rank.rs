//! Ranks with ties averaged, as R's `rank(x, ties.method = "average")`, and tie summaries.

/// Average ranks (1-based) of `x` written to `out`; NaN entries get NaN and are not ranked.
/// Returns the tie term `sum(t^3 - t)` over groups of tied values.
pub fn average_ranks(x: &[f64], out: &mut [f64]) -> f64 {
    let mut order: Vec<usize> = (0..x.len()).filter(|&i| !x[i].is_nan()).collect();
    order.sort_unstable_by(|&a, &b| x[a].total_cmp(&x[b]));
    out.iter_mut().for_each(|v| *v = f64::NAN);
    let mut ties = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && x[order[end]] == x[order[start]] {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        for &i in &order[start..end] {
            out[i] = rank;
        }
        let t = (end - start) as f64;
        ties += t * t * t - t;
        start = end;
    }
    ties
}

/// A key whose unsigned order is the numeric order of non-NaN `v` (sign bit flipped for
/// positives, all bits for negatives): sorting plain integers is much faster than
/// comparing floats with `total_cmp` at every step.
#[inline]
pub fn order_key(v: f64) -> u64 {
    let b = v.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | (1 << 63)
    }
}

/// Ranks of a sparse feature of `n` observations, as [`average_ranks`] of the dense vector:
/// the zeros (every observation not in `nonzero`) are one tied group. `nonzero` holds the
/// [`order_key`] of each non-zero value with its observation; it is sorted by key and each
/// entry's rank written to `ranks` in that order. Returns the rank of the zeros and the tie
/// term `sum(t^3 - t)`, the zeros' group included. O(nnz log nnz), whatever `n`.
pub fn sparse_average_ranks(
    nonzero: &mut [(u64, u32)],
    n: usize,
    ranks: &mut Vec<f64>,
) -> (f64, f64) {
    nonzero.sort_unstable_by_key(|e| e.0);
    let n_zero = n - nonzero.len();
    let zero = order_key(0.0);
    let n_negative = nonzero.partition_point(|e| e.0 < zero);
    ranks.clear();
    ranks.resize(nonzero.len(), 0.0);
    let t = n_zero as f64;
    let mut ties = t * t * t - t;
    let mut start = 0;
    while start < nonzero.len() {
        let mut end = start + 1;
        while end < nonzero.len() && nonzero[end].0 == nonzero[start].0 {
            end += 1;
        }
        // Positive values rank above the zeros' block.
        let below = if start >= n_negative { n_zero } else { 0 };
        let rank = (2 * below + start + end + 1) as f64 / 2.0;
        ranks[start..end].iter_mut().for_each(|r| *r = rank);
        let t = (end - start) as f64;
        ties += t * t * t - t;
        start = end;
    }
    let zero_rank = (2 * n_negative + n_zero + 1) as f64 / 2.0;
    (zero_rank, ties)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_like_r() {
        // rank(c(3, 1, 3, NA, 2, 3), na.last = "keep"): 4 1 4 NA 2 4
        let x = [3.0, 1.0, 3.0, f64::NAN, 2.0, 3.0];
        let mut r = [0.0; 6];
        let ties = average_ranks(&x, &mut r);
        assert_eq!(&r[..3], &[4.0, 1.0, 4.0]);
        assert!(r[3].is_nan());
        assert_eq!(&r[4..], &[2.0, 4.0]);
        assert_eq!(ties, 24.0);
    }

    #[test]
    fn order_keys_sort_like_numbers() {
        let v = [-f64::MAX, -3.5, -1e-300, -0.0, 0.0, 1e-300, 2.0, f64::MAX];
        assert!(v.windows(2).all(|w| order_key(w[0]) <= order_key(w[1])));
        assert!(order_key(-1e-300) < order_key(0.0) && order_key(0.0) < order_key(1e-300));
    }

    #[test]
    fn sparse_ranks_match_dense() {
        // zeros between negatives and positives, ties among non-zeros, among zeros
        let dense = [0.0, 2.0, -1.0, 0.0, 2.0, -1.0, 0.0, 5.0, -3.0, 0.0];
        let mut expected = [0.0; 10];
        let dense_ties = average_ranks(&dense, &mut expected);
        let mut nonzero: Vec<(u64, u32)> = dense
            .iter()
            .enumerate()
            .filter(|(_, v)| **v != 0.0)
            .map(|(s, v)| (order_key(*v), s as u32))
            .collect();
        let mut ranks = Vec::new();
        let (zero_rank, ties) = sparse_average_ranks(&mut nonzero, dense.len(), &mut ranks);
        assert_eq!(ties, dense_ties);
        for (e, r) in nonzero.iter().zip(&ranks) {
            assert_eq!(*r, expected[e.1 as usize]);
        }
        assert_eq!(zero_rank, expected[0]);
        // no zeros at all, and all zeros
        let mut all = vec![(order_key(1.0), 0), (order_key(1.0), 1)];
        // (the zeros' rank is moot when there are none)
        assert_eq!(sparse_average_ranks(&mut all, 2, &mut ranks), (0.5, 6.0));
        assert_eq!(ranks, vec![1.5, 1.5]);
        assert_eq!(sparse_average_ranks(&mut [], 4, &mut ranks), (2.5, 60.0));
    }
}

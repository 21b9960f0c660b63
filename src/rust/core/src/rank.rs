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
}

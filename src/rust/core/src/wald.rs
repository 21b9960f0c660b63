//! Joint Wald tests of several linear hypotheses per feature: `b' S^-1 b` with `b` the
//! hypotheses' estimates and `S = L V L'` their covariance, for every feature at once.

use crate::linalg;

/// Pivots below this fraction of their diagonal entry make `S` singular (the hypotheses
/// are then not jointly testable for that feature): about R's `solve()` tolerance.
const SINGULAR_PIVOT: f64 = 1e-14;

/// The Wald statistic of each of `n` features: `estimate` is `h x n` and `cross` `h^2 x n`
/// (each column a column-major `h x h` covariance), both column-major. NaN where a value
/// is missing or `S` is not positive definite.
pub fn joint_wald(estimate: &[f64], cross: &[f64], h: usize) -> Vec<f64> {
    if h == 0 {
        return Vec::new();
    }
    estimate
        .chunks_exact(h)
        .zip(cross.chunks_exact(h * h))
        .map(|(b, s)| quadratic_form_inverse(b, s, h))
        .collect()
}

fn quadratic_form_inverse(b: &[f64], s: &[f64], h: usize) -> f64 {
    if b.iter().chain(s).any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    match linalg::cholesky(s, h, SINGULAR_PIVOT) {
        Some(l) => {
            let x = linalg::cholesky_solve(&l, h, b);
            b.iter().zip(&x).map(|(u, v)| u * v).sum()
        }
        None => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_the_explicit_inverse() {
        // S = [[2, 0.5], [0.5, 1]], S^-1 = [[1, -0.5], [-0.5, 2]] / 1.75
        let b = [1.0, -2.0, 0.5, 0.5];
        let s = [2.0, 0.5, 0.5, 1.0, 4.0, 0.0, 0.0, 1.0];
        let w = joint_wald(&b, &s, 2);
        let first = (1.0 * 1.0 - 2.0 * 0.5 * 1.0 * -2.0 + 2.0 * 4.0) / 1.75;
        assert!((w[0] - first).abs() < 1e-12);
        assert!((w[1] - (0.25 / 4.0 + 0.25)).abs() < 1e-12);
    }

    #[test]
    fn singular_or_missing_gives_nan() {
        let b = [1.0, 1.0, f64::NAN, 1.0];
        let s = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0];
        let w = joint_wald(&b, &s, 2);
        assert!(w[0].is_nan());
        assert!(w[1].is_nan());
    }
}

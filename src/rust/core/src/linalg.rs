//! Dense helpers for the small per-feature systems of the models (a few parameters each:
//! NB's Newton steps, the mixed models' factors and Satterthwaite df), on faer, except the
//! mixed models' kernels, where faer was slower or less accurate (see
//! [`cholesky_in_place`] and [`symmetric_eigen`]). Matrices are `k x k` column-major slices
//! (a symmetric row-major matrix is the same slice). Each faer call is sequential
//! (`Par::Seq`): the features already run in parallel, one per thread.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place_scratch, LltRegularization};
use faer::linalg::triangular_solve::{
    solve_lower_triangular_in_place, solve_upper_triangular_in_place,
};
use faer::{Mat, MatMut, MatRef, Par};

fn square(a: &[f64], k: usize) -> MatRef<'_, f64> {
    MatRef::from_column_major_slice(a, k, k)
}

fn column(b: &mut [f64]) -> MatMut<'_, f64> {
    let k = b.len();
    MatMut::from_column_major_slice_mut(b, k, 1)
}

/// Lower Cholesky factor `L` (`L L' = a`) in place: the lower triangle of `a` is read
/// and overwritten, the strict upper triangle left alone. False when `a` is not positive
/// definite (a pivot <= 0 or NaN).
///
/// Unblocked and by hand, not faer, as are the two triangular solves below: the mixed
/// models factor small matrices at every evaluation of the deviance, where faer's per-call
/// setup (scratch space, blocked LDL') made fits with three random-effect terms 1.7 times
/// slower, and its different rounding moved the optimiser's path (Satterthwaite df
/// differing by 1e-6 relative).
pub fn cholesky_in_place(a: &mut [f64], k: usize) -> bool {
    for j in 0..k {
        let mut s = a[j + j * k];
        for c in 0..j {
            s -= a[j + c * k] * a[j + c * k];
        }
        if s.is_nan() || s <= 0.0 {
            return false;
        }
        let djj = s.sqrt();
        a[j + j * k] = djj;
        for i in j + 1..k {
            let mut s = a[i + j * k];
            for c in 0..j {
                s -= a[i + c * k] * a[j + c * k];
            }
            a[i + j * k] = s / djj;
        }
    }
    true
}

/// Solves `L x = b` in place (`l` lower triangular; its upper triangle is not read).
pub fn solve_lower_in_place(l: &[f64], k: usize, b: &mut [f64]) {
    for i in 0..k {
        let mut s = b[i];
        for c in 0..i {
            s -= l[i + c * k] * b[c];
        }
        b[i] = s / l[i + i * k];
    }
}

/// Solves `L' x = b` in place.
pub fn solve_lower_transposed_in_place(l: &[f64], k: usize, b: &mut [f64]) {
    for i in (0..k).rev() {
        let mut s = b[i];
        for c in i + 1..k {
            s -= l[c + i * k] * b[c];
        }
        b[i] = s / l[i + i * k];
    }
}

/// Lower Cholesky factor by faer, in place as [`cholesky_in_place`].
fn faer_cholesky_in_place(a: &mut [f64], k: usize) -> bool {
    let mut buf = MemBuffer::new(cholesky_in_place_scratch::<f64>(
        k,
        Par::Seq,
        Default::default(),
    ));
    let ok = faer::linalg::cholesky::llt::factor::cholesky_in_place(
        MatMut::from_column_major_slice_mut(a, k, k),
        LltRegularization::default(),
        Par::Seq,
        MemStack::new(&mut buf),
        Default::default(),
    )
    .is_ok();
    // A NaN pivot may pass faer's sign test; NaN anywhere means no factor.
    ok && (0..k).all(|j| a[j + j * k].is_finite())
}

/// Lower Cholesky factor of `a` (upper triangle zero), or None when a pivot is at or
/// below `rel_tol` times its diagonal entry of `a`: near-singular counts as singular.
pub fn cholesky(a: &[f64], k: usize, rel_tol: f64) -> Option<Vec<f64>> {
    let mut l = a.to_vec();
    if !faer_cholesky_in_place(&mut l, k) {
        return None;
    }
    for j in 0..k {
        let pivot = l[j + j * k] * l[j + j * k];
        if pivot <= rel_tol * a[j + j * k].abs().max(1e-300) {
            return None;
        }
        l[j * k..j * k + j].iter_mut().for_each(|v| *v = 0.0);
    }
    Some(l)
}

/// `a^-1 b` from the Cholesky factor `l` of `a` (by faer).
pub fn cholesky_solve(l: &[f64], k: usize, b: &[f64]) -> Vec<f64> {
    let mut x = b.to_vec();
    solve_lower_triangular_in_place(square(l, k), column(&mut x), Par::Seq);
    solve_upper_triangular_in_place(square(l, k).transpose(), column(&mut x), Par::Seq);
    x
}

/// Inverse of a symmetric positive definite matrix (see [`cholesky`] for `rel_tol`).
pub fn invert_spd(a: &[f64], k: usize, rel_tol: f64) -> Option<Vec<f64>> {
    let l = cholesky(a, k, rel_tol)?;
    let mut inv = Mat::<f64>::identity(k, k);
    solve_lower_triangular_in_place(square(&l, k), inv.as_mut(), Par::Seq);
    solve_upper_triangular_in_place(square(&l, k).transpose(), inv.as_mut(), Par::Seq);
    Some((0..k * k).map(|i| inv[(i % k, i / k)]).collect())
}

/// Eigenvalues (unordered) and eigenvectors (columns) of a small symmetric matrix, by
/// cyclic Jacobi, not faer: Jacobi keeps small eigenvalues accurate relative to
/// themselves on graded matrices, such as the mixed models' Hessian in (theta, sigma)
/// when sigma is 1e-8 (a response with a large offset), where faer's tridiagonal QR is
/// accurate only relative to the largest; its pseudo-inverse then moved Satterthwaite's
/// p-values by 2e-3. Where the lowest eigenvalues nearly tie, faer's (equally valid)
/// vector also sent the optimiser down another path.
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i + i * n] = 1.0;
    }
    for _ in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i + j * n].powi(2))
            .sum();
        let total: f64 = a.iter().map(|x| x * x).sum();
        if off <= 1e-30 * total.max(f64::MIN_POSITIVE) {
            break;
        }
        for pp in 0..n {
            for qq in pp + 1..n {
                let apq = a[pp + qq * n];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[qq + qq * n] - a[pp + pp * n]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for kk in 0..n {
                    let akp = a[kk + pp * n];
                    let akq = a[kk + qq * n];
                    a[kk + pp * n] = c * akp - s * akq;
                    a[kk + qq * n] = s * akp + c * akq;
                }
                for kk in 0..n {
                    let apk = a[pp + kk * n];
                    let aqk = a[qq + kk * n];
                    a[pp + kk * n] = c * apk - s * aqk;
                    a[qq + kk * n] = s * apk + c * aqk;
                }
                for kk in 0..n {
                    let vkp = v[kk + pp * n];
                    let vkq = v[kk + qq * n];
                    v[kk + pp * n] = c * vkp - s * vkq;
                    v[kk + qq * n] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i + i * n]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [f64; 9] = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];

    fn product(a: &[f64], b: &[f64], k: usize) -> Vec<f64> {
        (0..k * k)
            .map(|i| (0..k).map(|c| a[i % k + c * k] * b[c + (i / k) * k]).sum())
            .collect()
    }

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() < tol)
    }

    #[test]
    fn cholesky_reads_only_the_lower_triangle() {
        for factor in [cholesky_in_place, faer_cholesky_in_place] {
            let mut a = A;
            a[3] = f64::NAN; // upper (0, 1)
            assert!(factor(&mut a, 3));
            assert!(a[3].is_nan());
            let l = cholesky(&A, 3, 0.0).unwrap();
            assert!((0..9).all(|i| i % 3 < i / 3 || (a[i] - l[i]).abs() < 1e-15));
        }
        let l = cholesky(&A, 3, 1e-13).unwrap();
        let lt: Vec<f64> = (0..9).map(|i| l[i / 3 + (i % 3) * 3]).collect();
        assert!(close(&product(&l, &lt, 3), &A, 1e-14));
    }

    #[test]
    fn singular_and_nan_matrices_have_no_factor() {
        let singular = [1.0, 1.0, 1.0, 1.0];
        assert!(cholesky(&singular, 2, 1e-13).is_none());
        for factor in [cholesky_in_place, faer_cholesky_in_place] {
            let negative = [1.0, 2.0, 2.0, 1.0];
            assert!(!factor(&mut negative.clone(), 2));
            let nan = [f64::NAN, 0.0, 0.0, 1.0];
            assert!(!factor(&mut nan.clone(), 2));
        }
        // Positive definite, but its second pivot is 1e-15 of its diagonal.
        let near = [1.0, 1.0, 1.0, 1.0 + 1e-15 * 4.0];
        assert!(cholesky(&near, 2, 1e-13).is_none());
        assert!(cholesky(&near, 2, 0.0).is_some());
    }

    #[test]
    fn solves_and_inverse_agree() {
        let l = cholesky(&A, 3, 0.0).unwrap();
        let b = [1.0, -2.0, 0.5];
        let x = cholesky_solve(&l, 3, &b);
        let ax: Vec<f64> = (0..3)
            .map(|i| (0..3).map(|c| A[i + c * 3] * x[c]).sum())
            .collect();
        assert!(close(&ax, &b, 1e-14));
        let inv = invert_spd(&A, 3, 0.0).unwrap();
        let id = product(&A, &inv, 3);
        assert!(close(
            &id,
            &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            1e-14
        ));
        let mut y = b;
        solve_lower_in_place(&l, 3, &mut y);
        let ly: Vec<f64> = (0..3)
            .map(|i| (0..=i).map(|c| l[i + c * 3] * y[c]).sum())
            .collect();
        assert!(close(&ly, &b, 1e-14));
        solve_lower_transposed_in_place(&l, 3, &mut y);
        assert!(close(&y, &x, 1e-14));
    }

    #[test]
    fn eigen_reconstructs() {
        let (values, v) = symmetric_eigen(&A, 3);
        for i in 0..3 {
            for j in 0..3 {
                let s: f64 = (0..3)
                    .map(|e| v[i + e * 3] * values[e] * v[j + e * 3])
                    .sum();
                assert!((s - A[i + j * 3]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn eigen_keeps_the_small_eigenvalue_of_a_graded_matrix() {
        // D M D with D = diag(1, 1e8): eigenvalues near 1.75 and 1e16, product det = 1.75e16.
        let a = [2.0, 0.5e8, 0.5e8, 1e16];
        let (values, _) = symmetric_eigen(&a, 2);
        let (lo, hi) = (values[0].min(values[1]), values[0].max(values[1]));
        let exact_lo = 1.75e16 / hi;
        assert!(
            (lo - exact_lo).abs() < 1e-12 * exact_lo,
            "{lo} vs {exact_lo}"
        );
    }
}

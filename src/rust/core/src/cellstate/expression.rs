//! Sparse GP regression of every gene over the embedding, per condition, and the
//! Mahalanobis distance between the two conditions' functions at the landmarks
//! (reference/kompot.md, sections 2.2, 2.3 and 3).
//!
//! For condition c with cells X_c: `A = Lp^-1 K_UX`, `B = I + A A' = L_B L_B'`, and the
//! weights of gene g are `W = P_c y_g` with `P_c = Lp^-T B^-1 A` (m x n_c), the DTC mean
//! with sigma = 1 and prior mean 0. The posterior covariance at the landmarks,
//! `Sigma_c = K_UU - a'a + c'c` (`a = Lp^-1 K_UU`, `c = L_B^-1 a`), is shared by every
//! gene, so with `L L' = Sigma_1 + Sigma_2 + 1e-8 I` the distance of gene g is
//! `|L^-1 K_UU (P_2 y_2 - P_1 y_1)|`, and `T P_c` (`T = L^-1 K_UU`) is computed once: each
//! block of genes costs one product per condition.
//!
//! Sample variance adds, per gene, the centred per-sample predictions at the landmarks,
//! `U_g` (m x k, k = number of samples): a covariance of rank <= k. By Woodbury,
//! `D^2 = |z|^2 - w'(I + V'V)^-1 w` with `z = L^-1 Delta`, `V = L^-1 U_g`, `w = V'z`:
//! exact, with no per-gene m x m matrix and no per-gene Cholesky.

use super::{
    cholesky, kernel_matrix, landmark_factor, par, solve_lower, solve_lower_transposed, Points,
};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef};
use rayon::prelude::*;

/// Added to the diagonal of the summed covariance before its Cholesky (kompot's eps).
pub const COV_EPS: f64 = 1e-8;
/// kompot uses the diagonal of the covariance alone when its trace is this share of the
/// sum of absolute entries (and there are more than 10 landmarks).
const DIAGONAL_SHARE: f64 = 0.95;

/// Cells of one condition, and of each of its samples (indices into all cells).
pub struct ConditionCells {
    pub cells: Vec<usize>,
    pub samples: Vec<Vec<usize>>,
}

struct Condition {
    cells: Vec<usize>,
    /// `T P_c`: maps the condition's expression to whitened landmark values.
    whitened: Mat<f64>,
    /// `kbar' P_c`: maps it to the mean prediction over all cells.
    mean_weights: Vec<f64>,
    /// `P_c`, kept only for per-cell fold changes.
    weights: Option<Mat<f64>>,
    samples: Vec<(Vec<usize>, Mat<f64>)>,
}

/// Everything shared by all genes.
pub struct ExpressionModel {
    conditions: [Condition; 2],
    /// Kernel between all cells and the landmarks, kept only for per-cell fold changes.
    k_cells: Option<Mat<f64>>,
    pub n_landmarks: usize,
    pub n_cells: usize,
    pub diagonal_shortcut: bool,
    pub sample_variance: bool,
}

/// Per-gene results of a block.
pub struct BlockResult {
    pub mean_lfc: Vec<f64>,
    pub mahalanobis: Vec<f64>,
    /// The gene takes one value on every cell of the two conditions.
    pub constant: Vec<bool>,
    /// Sample variance of the gene over the cells of the two conditions (the scale of its
    /// squared distance under permutation; see `nulltail`).
    pub variance: Vec<f64>,
    /// Per-cell fold changes, all cells x genes, column-major (when asked for).
    pub fold_change: Option<Mat<f64>>,
}

/// `P = Lp^-T B^-1 A` for the cells `cells`, and `c = L_B^-1 a_U` for the covariance.
fn condition_weights(
    all: &Points,
    cells: &[usize],
    landmarks: &Points,
    lp: MatRef<'_, f64>,
    a_u: Option<&Mat<f64>>,
    length_scale: f64,
) -> Result<(Mat<f64>, Option<Mat<f64>>), String> {
    let m = landmarks.n;
    let a = solve_lower(
        lp,
        kernel_matrix(landmarks, &all.subset(cells), length_scale),
    );
    let mut b = Mat::<f64>::zeros(m, m);
    matmul(
        b.as_mut(),
        Accum::Replace,
        a.as_ref(),
        a.transpose(),
        1.0,
        par(),
    );
    for j in 0..m {
        b[(j, j)] += 1.0;
    }
    let lb = cholesky(b.as_ref(), "the GP system of a condition")?;
    let p = solve_lower_transposed(
        lp,
        solve_lower_transposed(lb.as_ref(), solve_lower(lb.as_ref(), a)),
    );
    let c = a_u.map(|au| solve_lower(lb.as_ref(), au.clone()));
    Ok((p, c))
}

impl ExpressionModel {
    /// Sets up the two conditions (and their samples when `sample_variance`); `all` are
    /// every cell the fold changes are averaged over.
    pub fn new(
        all: &Points,
        conditions: [ConditionCells; 2],
        landmarks: &Points,
        length_scale: f64,
        sample_variance: bool,
        keep_fold_change: bool,
    ) -> Result<Self, String> {
        let m = landmarks.n;
        if sample_variance && conditions.iter().any(|c| c.samples.len() < 2) {
            return Err("sample variance needs at least 2 samples per condition".into());
        }
        let lp = landmark_factor(landmarks, length_scale)?;
        let k_uu = kernel_matrix(landmarks, landmarks, length_scale);
        let a_u = solve_lower(lp.as_ref(), k_uu.clone());
        let mut cov = Mat::<f64>::zeros(m, m);
        // 2 (K_UU - a'a), then + c_1'c_1 + c_2'c_2.
        matmul(
            cov.as_mut(),
            Accum::Replace,
            a_u.transpose(),
            a_u.as_ref(),
            -2.0,
            par(),
        );
        cov += &k_uu * 2.0;
        let mut fits = Vec::with_capacity(2);
        for cond in &conditions {
            let (p, c) = condition_weights(
                all,
                &cond.cells,
                landmarks,
                lp.as_ref(),
                Some(&a_u),
                length_scale,
            )?;
            let c = c.expect("asked for");
            matmul(
                cov.as_mut(),
                Accum::Add,
                c.transpose(),
                c.as_ref(),
                1.0,
                par(),
            );
            fits.push(p);
        }
        let cov = Mat::from_fn(m, m, |i, j| 0.5 * (cov[(i, j)] + cov[(j, i)]));
        let diagonal_shortcut =
            !sample_variance && m > 10 && diagonal_share(cov.as_ref()) > DIAGONAL_SHARE;
        let transform = if diagonal_shortcut {
            Mat::from_fn(m, m, |i, j| k_uu[(i, j)] / cov[(i, i)].max(COV_EPS).sqrt())
        } else {
            let mut c = cov;
            for j in 0..m {
                c[(j, j)] += COV_EPS;
            }
            let l = cholesky(c.as_ref(), "the posterior covariance at the landmarks")?;
            solve_lower(l.as_ref(), k_uu)
        };
        let k_cells = kernel_matrix(all, landmarks, length_scale);
        let kbar: Vec<f64> = (0..m)
            .into_par_iter()
            .map(|j| k_cells.col(j).iter().sum::<f64>() / all.n as f64)
            .collect();
        let mut built = Vec::with_capacity(2);
        for (cond, p) in conditions.into_iter().zip(fits) {
            let whitened = &transform * &p;
            let mean_weights: Vec<f64> = (0..p.ncols())
                .into_par_iter()
                .map(|i| (0..m).map(|j| kbar[j] * p[(j, i)]).sum())
                .collect();
            let samples = if sample_variance {
                cond.samples
                    .into_iter()
                    .map(|cells| {
                        let (ps, _) = condition_weights(
                            all,
                            &cells,
                            landmarks,
                            lp.as_ref(),
                            None,
                            length_scale,
                        )?;
                        Ok((cells, &transform * &ps))
                    })
                    .collect::<Result<Vec<_>, String>>()?
            } else {
                Vec::new()
            };
            built.push(Condition {
                cells: cond.cells,
                whitened,
                mean_weights,
                weights: keep_fold_change.then_some(p),
                samples,
            });
        }
        let second = built.pop().expect("two conditions");
        let first = built.pop().expect("two conditions");
        Ok(ExpressionModel {
            conditions: [first, second],
            k_cells: keep_fold_change.then_some(k_cells),
            n_landmarks: m,
            n_cells: all.n,
            diagonal_shortcut,
            sample_variance,
        })
    }

    /// Results for a block of genes: `y` is genes x all cells, column-major.
    pub fn block(&self, y: &[f64], n_genes: usize) -> Result<BlockResult, String> {
        if y.len() != n_genes * self.n_cells {
            return Err("expression block does not have one column per cell".into());
        }
        let gather =
            |cells: &[usize]| Mat::from_fn(cells.len(), n_genes, |i, g| y[cells[i] * n_genes + g]);
        let m = self.n_landmarks;
        let mut z = Mat::<f64>::zeros(m, n_genes);
        let mut mean_lfc = vec![0.0; n_genes];
        let mut fold_weights = self.k_cells.as_ref().map(|_| Mat::<f64>::zeros(m, n_genes));
        let mut deviations: Vec<Mat<f64>> = Vec::new();
        let mut first_value = vec![f64::NAN; n_genes];
        let mut constant = vec![true; n_genes];
        // Sums of the values shifted by the first one, for a stable one-pass variance.
        let mut shifted_sum = vec![0.0; n_genes];
        let mut shifted_squares = vec![0.0; n_genes];
        for (c, cond) in self.conditions.iter().enumerate() {
            let sign = if c == 0 { -1.0 } else { 1.0 };
            let yc = gather(&cond.cells);
            for g in 0..n_genes {
                let col = yc.col(g);
                if first_value[g].is_nan() {
                    first_value[g] = col[0];
                }
                constant[g] = constant[g] && col.iter().all(|&v| v == first_value[g]);
                for &v in col.iter() {
                    let d = v - first_value[g];
                    shifted_sum[g] += d;
                    shifted_squares[g] += d * d;
                }
                mean_lfc[g] += sign
                    * (0..cond.cells.len())
                        .map(|i| cond.mean_weights[i] * col[i])
                        .sum::<f64>();
            }
            matmul(
                z.as_mut(),
                Accum::Add,
                cond.whitened.as_ref(),
                yc.as_ref(),
                sign,
                par(),
            );
            if let (Some(fw), Some(p)) = (fold_weights.as_mut(), cond.weights.as_ref()) {
                matmul(
                    fw.as_mut(),
                    Accum::Add,
                    p.as_ref(),
                    yc.as_ref(),
                    sign,
                    par(),
                );
            }
            deviations.extend(self.sample_deviations(cond, &gather));
        }
        let mahalanobis: Vec<f64> = (0..n_genes)
            .into_par_iter()
            .map(|g| {
                let zg: Vec<f64> = z.col(g).iter().copied().collect();
                if deviations.is_empty() {
                    zg.iter().map(|v| v * v).sum::<f64>().sqrt()
                } else {
                    let v: Vec<Vec<f64>> = deviations
                        .iter()
                        .map(|d| d.col(g).iter().copied().collect())
                        .collect();
                    woodbury_distance(&zg, &v)
                }
            })
            .collect();
        let fold_change = match (self.k_cells.as_ref(), fold_weights) {
            (Some(k), Some(w)) => Some(k * &w),
            _ => None,
        };
        let n = (self.conditions[0].cells.len() + self.conditions[1].cells.len()) as f64;
        let variance = shifted_sum
            .iter()
            .zip(&shifted_squares)
            .map(|(s, q)| ((q - s * s / n) / (n - 1.0)).max(0.0))
            .collect();
        Ok(BlockResult {
            mean_lfc,
            mahalanobis,
            constant,
            variance,
            fold_change,
        })
    }

    /// Whitened centred per-sample predictions at the landmarks, scaled by
    /// `1 / sqrt(S - 1)`: one m x genes matrix per sample.
    fn sample_deviations(
        &self,
        cond: &Condition,
        gather: &dyn Fn(&[usize]) -> Mat<f64>,
    ) -> Vec<Mat<f64>> {
        let s = cond.samples.len();
        if s == 0 {
            return Vec::new();
        }
        let preds: Vec<Mat<f64>> = cond
            .samples
            .iter()
            .map(|(cells, r)| r * gather(cells))
            .collect();
        let mut mean = preds[0].clone();
        for p in &preds[1..] {
            mean += p;
        }
        let mean = mean * (1.0 / s as f64);
        let scale = 1.0 / ((s - 1) as f64).sqrt();
        preds.into_iter().map(|p| (p - &mean) * scale).collect()
    }
}

/// `tr(C) / sum |C_ij|`.
fn diagonal_share(c: MatRef<'_, f64>) -> f64 {
    let n = c.nrows();
    let trace: f64 = (0..n).map(|i| c[(i, i)]).sum();
    let total: f64 = (0..n)
        .flat_map(|j| (0..n).map(move |i| (i, j)))
        .map(|(i, j)| c[(i, j)].abs())
        .sum();
    trace / total
}

/// `sqrt(|z|^2 - w'(I + V'V)^-1 w)`, `w = V'z`; NaN when the small system fails.
pub fn woodbury_distance(z: &[f64], v: &[Vec<f64>]) -> f64 {
    let k = v.len();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let w: Vec<f64> = v.iter().map(|vi| dot(vi, z)).collect();
    let gram = Mat::from_fn(k, k, |i, j| {
        dot(&v[i], &v[j]) + if i == j { 1.0 } else { 0.0 }
    });
    let Ok(l) = cholesky(gram.as_ref(), "") else {
        return f64::NAN;
    };
    // |L^-1 w|^2 = w'(I + V'V)^-1 w
    let mut u = vec![0.0; k];
    for i in 0..k {
        let s: f64 = (0..i).map(|j| l[(i, j)] * u[j]).sum();
        u[i] = (w[i] - s) / l[(i, i)];
    }
    (dot(z, z) - dot(&u, &u)).max(0.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::super::kmeans_landmarks;
    use super::*;
    use rand::Rng;

    fn cloud(n: usize, seed: u64) -> Points {
        let mut rng = crate::rng::stream(seed, &[]);
        Points {
            coords: (0..2 * n).map(|_| rng.random::<f64>() * 2.0).collect(),
            n,
            dim: 2,
        }
    }

    #[test]
    fn woodbury_equals_dense_cholesky() {
        let mut rng = crate::rng::stream(9, &[]);
        let m = 12;
        let z: Vec<f64> = (0..m).map(|_| rng.random::<f64>() - 0.5).collect();
        let v: Vec<Vec<f64>> = (0..3)
            .map(|_| (0..m).map(|_| rng.random::<f64>() - 0.5).collect())
            .collect();
        // Dense: z'(I + V V')^-1 z.
        let a = Mat::from_fn(m, m, |i, j| {
            (if i == j { 1.0 } else { 0.0 }) + v.iter().map(|c| c[i] * c[j]).sum::<f64>()
        });
        let l = cholesky(a.as_ref(), "").unwrap();
        let u = solve_lower(l.as_ref(), Mat::from_fn(m, 1, |i, _| z[i]));
        let dense = (0..m).map(|i| u[(i, 0)] * u[(i, 0)]).sum::<f64>().sqrt();
        assert!((woodbury_distance(&z, &v) - dense).abs() < 1e-12);
    }

    #[test]
    fn blocks_agree_with_the_whole() {
        let all = cloud(120, 1);
        let landmarks = kmeans_landmarks(&all, 15, 20, 2);
        let conds = || {
            [
                ConditionCells {
                    cells: (0..60).collect(),
                    samples: vec![(0..30).collect(), (30..60).collect()],
                },
                ConditionCells {
                    cells: (60..120).collect(),
                    samples: vec![(60..90).collect(), (90..120).collect()],
                },
            ]
        };
        let model = ExpressionModel::new(&all, conds(), &landmarks, 1.5, true, true).unwrap();
        let mut rng = crate::rng::stream(4, &[]);
        let y: Vec<f64> = (0..4 * 120).map(|_| rng.random::<f64>()).collect();
        let whole = model.block(&y, 4).unwrap();
        let one: Vec<f64> = (0..120).map(|c| y[c * 4 + 2]).collect();
        let part = model.block(&one, 1).unwrap();
        assert!((whole.mahalanobis[2] - part.mahalanobis[0]).abs() < 1e-10);
        assert!((whole.mean_lfc[2] - part.mean_lfc[0]).abs() < 1e-12);
        let fc = whole.fold_change.unwrap();
        let mean_fc: f64 = fc.col(2).iter().sum::<f64>() / 120.0;
        assert!((mean_fc - whole.mean_lfc[2]).abs() < 1e-10);
        // The gene's variance over the two conditions' cells, by the two-pass formula.
        let mean = one.iter().sum::<f64>() / 120.0;
        let two_pass = one.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 119.0;
        assert!((whole.variance[2] - two_pass).abs() < 1e-13);
        assert!((part.variance[0] - two_pass).abs() < 1e-13);
    }
}

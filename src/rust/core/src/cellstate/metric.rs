//! The metric of the neighbourhood test: the embedding stretched along the directions in
//! which the samples' mean positions differ more than their cells' spread explains.
//!
//! Why: beyond 4-5 dimensions a k-nearest neighbourhood is wide in every direction, so a
//! change of abundance confined to a few directions (a region at one end of one axis) is
//! diluted by cells from outside it, and no default `k` finds it. Stretching the
//! directions that separate the samples narrows the neighbourhoods across such a region's
//! edge. The directions come from the samples alone: the conditions are not used, so with
//! no condition effect the conditions stay exchangeable over the samples and the test
//! across replicates keeps its calibration (a direction chosen to separate the conditions
//! would make chance differences between them significant).
//!
//! The directions are the generalised eigenvectors of the between-sample scatter of the
//! sample means against the pooled within-sample covariance of the cells (discriminant
//! analysis with samples as classes). With `S` samples at most `S - 1` of them carry
//! between-sample variation; each is stretched by its eigenvalue relative to the median of
//! those `S - 1` (how much more it separates the samples than a typical direction), from 1
//! to at most `MAX_STRETCH`.

use super::Points;
use crate::linalg::symmetric_eigen;
use faer::{Mat, MatRef};

/// The largest stretch of one direction.
pub const MAX_STRETCH: f64 = 16.0;
/// Eigenvalues of the within-sample covariance below this fraction of the largest are
/// directions without spread (a constant coordinate): left out of the whitening.
const RANK_TOL: f64 = 1e-10;

/// Orthonormal directions (each of length `dim`) and their stretch factors (> 1).
#[derive(Clone, Debug, PartialEq)]
pub struct SampleMetric {
    pub dim: usize,
    pub directions: Vec<Vec<f64>>,
    pub stretch: Vec<f64>,
}

impl SampleMetric {
    /// The Euclidean metric.
    pub fn identity(dim: usize) -> Self {
        SampleMetric {
            dim,
            directions: Vec::new(),
            stretch: Vec::new(),
        }
    }

    /// The stretch for `cells` in `n_samples` samples (`sample_of`, 0-based). The identity
    /// with fewer than three candidate directions (fewer than three dimensions or four
    /// samples): the median of two is no typical direction, and in two dimensions the
    /// neighbourhoods are narrow already.
    pub fn from_samples(cells: &Points, sample_of: &[usize], n_samples: usize) -> Self {
        let dim = cells.dim;
        let r = dim.min(n_samples.saturating_sub(1));
        if r < 3 || cells.n <= n_samples {
            return Self::identity(dim);
        }
        let (means, sizes) = sample_means(cells, sample_of, n_samples);
        let Some(whiten) = inverse_sqrt(&within_covariance(cells, sample_of, &means), dim) else {
            return Self::identity(dim);
        };
        let between = between_scatter(&means, &sizes, dim);
        let m = sandwich(&whiten, &between, dim);
        let (values, vectors) = symmetric_eigen(&m, dim);
        let mut order: Vec<usize> = (0..dim).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        let top: Vec<f64> = order[..r].iter().map(|&j| values[j]).collect();
        let mut sorted = top.clone();
        sorted.sort_by(f64::total_cmp);
        let typical = if r % 2 == 1 {
            sorted[r / 2]
        } else {
            0.5 * (sorted[r / 2 - 1] + sorted[r / 2])
        };
        if !(typical > 0.0 && typical.is_finite()) {
            return Self::identity(dim);
        }
        let mut metric = Self::identity(dim);
        for (&j, &lambda) in order[..r].iter().zip(&top) {
            let a = (lambda / typical).min(MAX_STRETCH);
            if a <= 1.0 {
                break;
            }
            // Back to the embedding's coordinates, then orthogonal to the directions kept.
            let v = &vectors[j * dim..(j + 1) * dim];
            let mut u: Vec<f64> = (0..dim)
                .map(|row| (0..dim).map(|c| whiten[row + c * dim] * v[c]).sum())
                .collect();
            for w in &metric.directions {
                let dot: f64 = u.iter().zip(w).map(|(x, y)| x * y).sum();
                u.iter_mut().zip(w).for_each(|(x, y)| *x -= dot * y);
            }
            let norm = u.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm > 1e-12 {
                u.iter_mut().for_each(|x| *x /= norm);
                metric.directions.push(u);
                metric.stretch.push(a);
            }
        }
        metric
    }

    /// The points in the stretched coordinates: `x + sum_j (a_j - 1) (x . u_j) u_j`.
    pub fn apply(&self, points: &Points) -> Points {
        let mut out = points.clone();
        for x in out.coords.chunks_mut(self.dim) {
            for (u, &a) in self.directions.iter().zip(&self.stretch) {
                let along: f64 = x.iter().zip(u).map(|(p, q)| p * q).sum::<f64>() * (a - 1.0);
                x.iter_mut().zip(u).for_each(|(p, q)| *p += along * q);
            }
        }
        out
    }

    /// Dimensions that count at the scale of the most stretched direction: each direction
    /// weighted by its squared stretch relative to the largest, `dim` without stretch. The
    /// neighbourhood size follows it (a neighbourhood that is narrow along one direction
    /// needs only the cells of a 1-D one).
    pub fn effective_dimension(&self) -> f64 {
        let top = self.stretch.iter().copied().fold(1.0, f64::max);
        let stretched: f64 = self.stretch.iter().map(|a| a * a).sum();
        (self.dim - self.stretch.len()) as f64 / (top * top) + stretched / (top * top)
    }
}

/// Sample means (row-major, one row per sample) and sizes.
fn sample_means(cells: &Points, sample_of: &[usize], n_samples: usize) -> (Vec<f64>, Vec<f64>) {
    let dim = cells.dim;
    let mut means = vec![0.0; n_samples * dim];
    let mut sizes = vec![0.0_f64; n_samples];
    for (i, &s) in sample_of.iter().enumerate() {
        sizes[s] += 1.0;
        means[s * dim..(s + 1) * dim]
            .iter_mut()
            .zip(cells.point(i))
            .for_each(|(m, x)| *m += x);
    }
    for (row, &n) in means.chunks_mut(dim).zip(&sizes) {
        row.iter_mut().for_each(|m| *m /= n.max(1.0));
    }
    (means, sizes)
}

/// Pooled within-sample covariance (column-major `dim x dim`).
fn within_covariance(cells: &Points, sample_of: &[usize], means: &[f64]) -> Vec<f64> {
    let dim = cells.dim;
    let n_samples = means.len() / dim;
    let centred = Mat::from_fn(cells.n, dim, |i, c| {
        cells.point(i)[c] - means[sample_of[i] * dim + c]
    });
    let w = centred.transpose() * &centred / (cells.n - n_samples) as f64;
    column_major(w.as_ref())
}

/// Between-sample scatter `sum_s n_s (m_s - m)(m_s - m)' / (S - 1)`, `m` the cells' mean:
/// the within-sample covariance on average when the samples differ by sampling alone.
fn between_scatter(means: &[f64], sizes: &[f64], dim: usize) -> Vec<f64> {
    let total: f64 = sizes.iter().sum();
    let grand: Vec<f64> = (0..dim)
        .map(|c| {
            means
                .chunks(dim)
                .zip(sizes)
                .map(|(m, n)| m[c] * n)
                .sum::<f64>()
                / total
        })
        .collect();
    let weighted = Mat::from_fn(sizes.len(), dim, |s, c| {
        sizes[s].sqrt() * (means[s * dim + c] - grand[c])
    });
    let b = weighted.transpose() * &weighted / (sizes.len() - 1) as f64;
    column_major(b.as_ref())
}

/// The symmetric inverse square root of a covariance (column-major), zero on directions
/// without spread; `None` when no direction has any.
fn inverse_sqrt(cov: &[f64], dim: usize) -> Option<Vec<f64>> {
    let (values, vectors) = symmetric_eigen(cov, dim);
    let top = values.iter().copied().fold(0.0, f64::max);
    if !(top > 0.0 && top.is_finite()) {
        return None;
    }
    let kept: Vec<usize> = (0..dim).filter(|&j| values[j] > RANK_TOL * top).collect();
    let u = Mat::from_fn(dim, kept.len(), |a, j| {
        vectors[kept[j] * dim + a] / values[kept[j]].sqrt().sqrt()
    });
    Some(column_major((&u * u.transpose()).as_ref()))
}

/// `a b a` for column-major `dim x dim` matrices.
fn sandwich(a: &[f64], b: &[f64], dim: usize) -> Vec<f64> {
    let (a, b) = (square(a, dim), square(b, dim));
    column_major((&a * &b * &a).as_ref())
}

fn square(x: &[f64], dim: usize) -> Mat<f64> {
    Mat::from_fn(dim, dim, |r, c| x[r + c * dim])
}

fn column_major(m: MatRef<'_, f64>) -> Vec<f64> {
    (0..m.ncols())
        .flat_map(|c| (0..m.nrows()).map(move |r| m[(r, c)]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn normal(rng: &mut crate::rng::Stream) -> f64 {
        let u: f64 = rng.random::<f64>().max(1e-300);
        let v: f64 = rng.random::<f64>();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// Six samples of 400 cells in `dim` dimensions with unit spread; sample s's mean is
    /// moved by `shift[s]` along the axis `axis`.
    fn samples(dim: usize, axis: usize, shift: [f64; 6], seed: u64) -> (Points, Vec<usize>) {
        let mut rng = crate::rng::stream(seed, &[]);
        let n = 2400;
        let sample_of: Vec<usize> = (0..n).map(|i| i / 400).collect();
        let coords = (0..n * dim)
            .map(|k| {
                normal(&mut rng)
                    + if k % dim == axis {
                        shift[k / dim / 400]
                    } else {
                        0.0
                    }
            })
            .collect();
        (Points { coords, n, dim }, sample_of)
    }

    #[test]
    fn stretches_the_axis_on_which_the_samples_differ() {
        let (cells, sample_of) = samples(8, 3, [0.0, 0.0, 0.0, 0.5, 0.5, 0.5], 1);
        let m = SampleMetric::from_samples(&cells, &sample_of, 6);
        // Sample means differ by 0.5 against a standard error of 0.05: a stretch far above
        // the typical direction's, capped.
        assert!(m.stretch[0] > 8.0, "{:?}", m.stretch);
        assert!(m.directions[0][3].abs() > 0.95, "{:?}", m.directions[0]);
        assert!(m.effective_dimension() < 1.5, "{}", m.effective_dimension());
        // Orthonormal directions.
        for (i, u) in m.directions.iter().enumerate() {
            for (j, v) in m.directions.iter().enumerate() {
                let dot: f64 = u.iter().zip(v).map(|(a, b)| a * b).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-9, "{i} {j} {dot}");
            }
        }
        // The map: coordinates along a direction scale by its stretch, orthogonal ones stay.
        let p = Points {
            coords: m.directions[0].clone(),
            n: 1,
            dim: 8,
        };
        let q = m.apply(&p);
        let len = q.coords.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((len - m.stretch[0]).abs() < 1e-9, "{len}");
    }

    #[test]
    fn samples_differing_by_sampling_alone_are_barely_stretched() {
        let (cells, sample_of) = samples(10, 0, [0.0; 6], 2);
        let m = SampleMetric::from_samples(&cells, &sample_of, 6);
        assert!(m.stretch.iter().all(|&a| a < 4.0), "{:?}", m.stretch);
        assert!(m.effective_dimension() > 1.0);
    }

    #[test]
    fn between_scatter_is_the_within_covariance_on_average_under_sampling_alone() {
        // E[sum n_s (m_s - m)^2 / (S - 1)] = sigma^2 per coordinate.
        let mut total = 0.0;
        for seed in 0..40 {
            let (cells, sample_of) = samples(1, 0, [0.0; 6], 100 + seed);
            let (means, sizes) = sample_means(&cells, &sample_of, 6);
            total += between_scatter(&means, &sizes, 1)[0];
        }
        assert!((total / 40.0 - 1.0).abs() < 0.25, "{}", total / 40.0);
    }

    #[test]
    fn within_covariance_and_whitening_match_a_direct_computation() {
        let (cells, sample_of) = samples(3, 1, [0.0, 1.0, 2.0, 0.0, 1.0, 2.0], 3);
        let (means, _) = sample_means(&cells, &sample_of, 6);
        let w = within_covariance(&cells, &sample_of, &means);
        // Direct: covariance of the cells centred by their sample means, n - S df.
        for a in 0..3 {
            for b in 0..3 {
                let direct: f64 = (0..cells.n)
                    .map(|i| {
                        let s = sample_of[i];
                        (cells.point(i)[a] - means[s * 3 + a])
                            * (cells.point(i)[b] - means[s * 3 + b])
                    })
                    .sum::<f64>()
                    / (cells.n - 6) as f64;
                assert!((w[a + b * 3] - direct).abs() < 1e-12);
            }
        }
        // W^-1/2 W W^-1/2 = I.
        let root = inverse_sqrt(&w, 3).unwrap();
        let id = sandwich(&root, &w, 3);
        for a in 0..3 {
            for b in 0..3 {
                let want = if a == b { 1.0 } else { 0.0 };
                assert!((id[a + b * 3] - want).abs() < 1e-9, "{id:?}");
            }
        }
    }

    #[test]
    fn fewer_than_three_directions_or_a_constant_embedding_give_the_identity() {
        let (cells, _) = samples(4, 0, [0.0; 6], 4);
        let three: Vec<usize> = (0..cells.n).map(|i| i % 3).collect();
        assert_eq!(
            SampleMetric::from_samples(&cells, &three, 3),
            SampleMetric::identity(4)
        );
        let (plane, six) = samples(2, 0, [0.0, 0.0, 0.0, 0.5, 0.5, 0.5], 5);
        assert_eq!(
            SampleMetric::from_samples(&plane, &six, 6),
            SampleMetric::identity(2)
        );
        let flat = Points {
            coords: vec![1.0; 4 * 600],
            n: 600,
            dim: 4,
        };
        let six: Vec<usize> = (0..600).map(|i| i % 6).collect();
        assert_eq!(
            SampleMetric::from_samples(&flat, &six, 6),
            SampleMetric::identity(4)
        );
        assert_eq!(SampleMetric::identity(4).effective_dimension(), 4.0);
    }
}

//! Differential abundance and expression on a cell-state manifold (the statistics of
//! kompot + Mellon, reference/kompot.md): geometry of the embedding (exact nearest
//! neighbours, fractal dimension, length-scale and mean heuristics, seeded k-means
//! landmarks, the Matern-5/2 kernel), the Gaussian-process density (`density`), the
//! sparse GP regression of every gene with its Mahalanobis distance, with sample variance
//! by an exact low-rank update (`expression`), the null-gene local FDR (`lfdr`) and the null
//! distribution of the distances fitted to the null genes (`nulltail`), and the strata of
//! similar cell state within which the null genes are permuted (`strata`), and the metric of the
//! neighbourhood test of abundance (`metric`).
//!
//! The module is `cellstate`, not `manifold`: R CMD build drops directories whose names end
//! in "old".

pub mod density;
pub mod expression;
pub mod lfdr;
pub mod metric;
pub mod neighbourhood;
pub mod nulltail;
pub mod strata;

use crate::rng::{self, Stream};
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::{Mat, MatRef, Par, Side};
use rand::Rng;
use rayon::prelude::*;

/// Jitter added to the diagonal of the landmark kernel matrix before its Cholesky.
pub const JITTER: f64 = 1e-6;
/// Added to squared distances inside the kernel's square root (Mellon's `distance`).
const DIST_EPS: f64 = 1e-12;
/// Neighbours (the query included) of each query cell of the fractal dimension.
const FRACTAL_NEIGHBOURS: usize = 10;
/// Query cells of the fractal dimension.
const FRACTAL_QUERIES: usize = 500;

/// faer's parallelism: the threads of the current rayon pool.
pub(crate) fn par() -> Par {
    Par::rayon(0)
}

/// Points of an embedding, row-major (point i's coordinates contiguous).
#[derive(Clone, Debug)]
pub struct Points {
    pub coords: Vec<f64>,
    pub n: usize,
    pub dim: usize,
}

impl Points {
    /// Points `rows` (all when `None`) of a column-major `nrow x dim` matrix.
    pub fn from_column_major(
        data: &[f64],
        nrow: usize,
        dim: usize,
        rows: Option<&[usize]>,
    ) -> Result<Self, String> {
        if data.len() != nrow * dim {
            return Err("embedding has the wrong length for its dimensions".into());
        }
        if data.iter().any(|v| !v.is_finite()) {
            return Err("embedding has missing or infinite coordinates".into());
        }
        let all: Vec<usize>;
        let rows = match rows {
            Some(r) => r,
            None => {
                all = (0..nrow).collect();
                &all
            }
        };
        if rows.iter().any(|&r| r >= nrow) {
            return Err("cell index out of range".into());
        }
        let coords = rows
            .iter()
            .flat_map(|&r| (0..dim).map(move |c| data[c * nrow + r]))
            .collect();
        Ok(Points {
            coords,
            n: rows.len(),
            dim,
        })
    }

    pub fn point(&self, i: usize) -> &[f64] {
        &self.coords[i * self.dim..(i + 1) * self.dim]
    }

    pub fn subset(&self, rows: &[usize]) -> Points {
        Points {
            coords: rows.iter().flat_map(|&r| self.point(r).to_vec()).collect(),
            n: rows.len(),
            dim: self.dim,
        }
    }
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The Matern-5/2 kernel with unit amplitude at distance `r`.
pub fn matern52(r: f64, length_scale: f64) -> f64 {
    let rho = 5f64.sqrt() * r / length_scale;
    (1.0 + rho + rho * rho / 3.0) * (-rho).exp()
}

/// k(x, x): the kernel at Mellon's regularised zero distance.
pub fn matern52_self(length_scale: f64) -> f64 {
    matern52(DIST_EPS.sqrt(), length_scale)
}

/// Kernel matrix `a.n x b.n`.
pub fn kernel_matrix(a: &Points, b: &Points, length_scale: f64) -> Mat<f64> {
    let mut values = vec![0.0; a.n * b.n];
    values
        .par_chunks_mut(a.n.max(1))
        .enumerate()
        .for_each(|(j, col)| {
            let y = b.point(j);
            for (i, v) in col.iter_mut().enumerate() {
                let r = (sq_dist(a.point(i), y) + DIST_EPS).max(0.0).sqrt();
                *v = matern52(r, length_scale);
            }
        });
    Mat::from_fn(a.n, b.n, |i, j| values[j * a.n + i])
}

/// Lower Cholesky factor of `K_UU + jitter I`.
pub fn landmark_factor(landmarks: &Points, length_scale: f64) -> Result<Mat<f64>, String> {
    let mut k = kernel_matrix(landmarks, landmarks, length_scale);
    for i in 0..landmarks.n {
        k[(i, i)] += JITTER;
    }
    cholesky(k.as_ref(), "the landmark kernel matrix")
}

/// Lower Cholesky factor of a symmetric positive definite matrix.
pub fn cholesky(a: MatRef<'_, f64>, what: &str) -> Result<Mat<f64>, String> {
    let llt = a
        .llt(Side::Lower)
        .map_err(|_| format!("{what} is not positive definite"))?;
    Ok(llt.L().to_owned())
}

/// `L^-1 b` for lower-triangular `l`.
pub fn solve_lower(l: MatRef<'_, f64>, b: Mat<f64>) -> Mat<f64> {
    let mut b = b;
    solve_lower_triangular_in_place(l, b.as_mut(), par());
    b
}

/// `L^-T b` for lower-triangular `l`.
pub fn solve_lower_transposed(l: MatRef<'_, f64>, b: Mat<f64>) -> Mat<f64> {
    let mut b = b;
    faer::linalg::triangular_solve::solve_upper_triangular_in_place(
        l.transpose(),
        b.as_mut(),
        par(),
    );
    b
}

/// Indices and distances of the `k` nearest points of `reference` to each point of
/// `query` (exact search; `skip_self` leaves out the reference point of the same index,
/// when query and reference are one set). Sorted by distance, ties by index.
pub fn knn(
    query: &Points,
    reference: &Points,
    k: usize,
    skip_self: bool,
) -> Vec<Vec<(f64, usize)>> {
    // One distance buffer per worker: a fresh one per query cell costs more in page faults
    // than the distances themselves when there are many query cells.
    (0..query.n)
        .into_par_iter()
        .map_init(Vec::new, |buffer, q| {
            let x = query.point(q);
            if k > SELECT_NEIGHBOURS {
                return knn_by_selection(x, reference, k, skip_self.then_some(q), buffer);
            }
            let mut best: Vec<(f64, usize)> = Vec::with_capacity(k + 1);
            for j in 0..reference.n {
                if skip_self && j == q {
                    continue;
                }
                let d2 = sq_dist(x, reference.point(j));
                if best.len() < k || d2 < best[best.len() - 1].0 {
                    let at = best.partition_point(|b| b.0 <= d2);
                    best.insert(at, (d2, j));
                    best.truncate(k);
                }
            }
            best.into_iter().map(|(d2, j)| (d2.sqrt(), j)).collect()
        })
        .collect()
}

/// Beyond this many neighbours, `knn` selects among all distances instead of inserting
/// into a sorted list (whose cost grows with k squared).
const SELECT_NEIGHBOURS: usize = 64;

/// The `k` nearest reference points of `x` by selection: the same neighbours and order as
/// the sorted insertion (ties broken by the smaller index).
fn knn_by_selection(
    x: &[f64],
    reference: &Points,
    k: usize,
    skip: Option<usize>,
    all: &mut Vec<(f64, usize)>,
) -> Vec<(f64, usize)> {
    all.clear();
    all.extend(
        (0..reference.n)
            .filter(|&j| Some(j) != skip)
            .map(|j| (sq_dist(x, reference.point(j)), j)),
    );
    let by = |a: &(f64, usize), b: &(f64, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    let kept = if k < all.len() {
        all.select_nth_unstable_by(k, by);
        &mut all[..k]
    } else {
        &mut all[..]
    };
    kept.sort_unstable_by(by);
    kept.iter().map(|&(d2, j)| (d2.sqrt(), j)).collect()
}

/// Distance of every point to its nearest other point; zero distances (duplicated cells)
/// are replaced by the smallest positive one, as Mellon does.
pub fn nn_distances(points: &Points) -> Result<Vec<f64>, String> {
    if points.n < 2 {
        return Err("at least 2 cells are needed for nearest-neighbour distances".into());
    }
    let mut r: Vec<f64> = knn(points, points, 1, true)
        .into_iter()
        .map(|nb| nb[0].0)
        .collect();
    let min_pos = r
        .iter()
        .copied()
        .filter(|&v| v > 0.0)
        .fold(f64::INFINITY, f64::min);
    if !min_pos.is_finite() {
        return Err("all cells sit at the same point of the embedding".into());
    }
    r.iter_mut()
        .filter(|v| **v <= 0.0)
        .for_each(|v| *v = min_pos);
    Ok(r)
}

/// `k` distinct indices out of 0..n (partial Fisher-Yates).
pub fn sample_without_replacement(n: usize, k: usize, rng: &mut Stream) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..k.min(n) {
        let j = i + rng.random_range(0..n - i);
        idx.swap(i, j);
    }
    idx.truncate(k.min(n));
    idx
}

/// Mellon's fractal dimension: for up to 500 query cells, the slope of log rank against
/// log distance over the sorted pairwise distances among the query's 10 nearest cells
/// (itself included), averaged over the queries.
pub fn fractal_dimension(points: &Points, seed: u64) -> Result<f64, String> {
    if points.n < 3 {
        return Err("at least 3 cells are needed for the fractal dimension".into());
    }
    let queries = if points.n > FRACTAL_QUERIES {
        let mut rng = rng::stream(seed, &[]);
        sample_without_replacement(points.n, FRACTAL_QUERIES, &mut rng)
    } else {
        (0..points.n).collect()
    };
    let k = FRACTAL_NEIGHBOURS.min(points.n);
    let neighbours = knn(&points.subset(&queries), points, k, false);
    let slopes: Vec<f64> = neighbours
        .iter()
        .filter_map(|nb| {
            let mut d: Vec<f64> = Vec::with_capacity(k * (k - 1) / 2);
            for a in 0..nb.len() {
                for b in (a + 1)..nb.len() {
                    d.push(sq_dist(points.point(nb[a].1), points.point(nb[b].1)).sqrt());
                }
            }
            d.sort_by(f64::total_cmp);
            let pairs: Vec<(f64, f64)> = d
                .iter()
                .enumerate()
                .filter(|(_, &v)| v > 0.0)
                .map(|(j, &v)| (v.ln(), ((j + 1) as f64).ln()))
                .collect();
            least_squares_slope(&pairs)
        })
        .collect();
    if slopes.is_empty() {
        return Err("the fractal dimension is undefined: too many duplicated cells".into());
    }
    Ok(slopes.iter().sum::<f64>() / slopes.len() as f64)
}

fn least_squares_slope(xy: &[(f64, f64)]) -> Option<f64> {
    if xy.len() < 2 {
        return None;
    }
    let n = xy.len() as f64;
    let mx = xy.iter().map(|p| p.0).sum::<f64>() / n;
    let my = xy.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = xy.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Mellon's length scale: `ls_factor * exp(mean log r + 3)`.
pub fn length_scale(nn: &[f64], ls_factor: f64) -> f64 {
    let mean_log = nn.iter().map(|r| r.ln()).sum::<f64>() / nn.len() as f64;
    ls_factor * (mean_log + 3.0).exp()
}

/// Mellon's length scale of `points`, from their nearest-neighbour distances.
pub fn points_length_scale(points: &Points, ls_factor: f64) -> Result<f64, String> {
    Ok(length_scale(&nn_distances(points)?, ls_factor))
}

/// Per-cell maximum-likelihood log density from the nearest-neighbour distance:
/// `lgamma(d/2 + 1) - d/2 log(pi) - d log r`.
pub fn nn_log_density(nn: &[f64], dimension: f64) -> Vec<f64> {
    let c =
        crate::dist::ln_gamma(dimension / 2.0 + 1.0) - dimension / 2.0 * std::f64::consts::PI.ln();
    nn.iter().map(|r| c - dimension * r.ln()).collect()
}

/// Mellon's prior mean: the 1% quantile (linear interpolation, R's type 7) of the
/// per-cell log densities, minus 10.
pub fn prior_mean(nn: &[f64], dimension: f64) -> f64 {
    let mut mle = nn_log_density(nn, dimension);
    mle.sort_by(f64::total_cmp);
    quantile_sorted(&mle, 0.01) - 10.0
}

fn quantile_sorted(x: &[f64], p: f64) -> f64 {
    let h = (x.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(x.len() - 1);
    x[lo] + (h - lo as f64) * (x[hi] - x[lo])
}

/// `k` landmarks by k-means (k-means++ seeding, then Lloyd's iterations, at most
/// `max_iter`): the cluster centres, or all points when there are no more than `k`.
pub fn kmeans_landmarks(points: &Points, k: usize, max_iter: usize, seed: u64) -> Points {
    if points.n <= k {
        return points.clone();
    }
    let mut rng = rng::stream(seed, &[]);
    let mut centres = kmeans_pp(points, k, &mut rng);
    let mut assign = vec![usize::MAX; points.n];
    for _ in 0..max_iter {
        let new_assign: Vec<usize> = (0..points.n)
            .into_par_iter()
            .map(|i| nearest_centre(points.point(i), &centres).1)
            .collect();
        if new_assign == assign {
            break;
        }
        assign = new_assign;
        let d = points.dim;
        let mut sums = vec![0.0; k * d];
        let mut counts = vec![0usize; k];
        for (i, &c) in assign.iter().enumerate() {
            counts[c] += 1;
            for (s, x) in sums[c * d..(c + 1) * d].iter_mut().zip(points.point(i)) {
                *s += x;
            }
        }
        for c in (0..k).filter(|&c| counts[c] > 0) {
            for j in 0..d {
                centres.coords[c * d + j] = sums[c * d + j] / counts[c] as f64;
            }
        }
    }
    centres
}

pub(crate) fn nearest_centre(x: &[f64], centres: &Points) -> (f64, usize) {
    (0..centres.n)
        .map(|c| (sq_dist(x, centres.point(c)), c))
        .fold(
            (f64::INFINITY, 0),
            |best, cur| if cur.0 < best.0 { cur } else { best },
        )
}

fn kmeans_pp(points: &Points, k: usize, rng: &mut Stream) -> Points {
    let first = rng.random_range(0..points.n);
    let mut chosen = vec![first];
    let mut d2: Vec<f64> = (0..points.n)
        .into_par_iter()
        .map(|i| sq_dist(points.point(i), points.point(first)))
        .collect();
    while chosen.len() < k {
        let total: f64 = d2.iter().sum();
        let next = if total > 0.0 {
            let target = rng.random::<f64>() * total;
            let mut acc = 0.0;
            let mut pick = points.n - 1;
            for (i, &v) in d2.iter().enumerate() {
                acc += v;
                if acc > target {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            rng.random_range(0..points.n)
        };
        chosen.push(next);
        let c = points.point(next).to_vec();
        d2.par_iter_mut().enumerate().for_each(|(i, v)| {
            *v = v.min(sq_dist(points.point(i), &c));
        });
    }
    points.subset(&chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(n: usize) -> Points {
        let coords = (0..n)
            .flat_map(|i| {
                vec![
                    (i % 7) as f64 * 0.3,
                    (i / 7) as f64 * 0.2 + (i % 3) as f64 * 0.01,
                ]
            })
            .collect();
        Points { coords, n, dim: 2 }
    }

    #[test]
    fn knn_by_selection_equals_insertion() {
        let p = grid(900);
        let q = p.subset(&[0, 17, 450, 899]);
        for skip in [false, true] {
            let a = knn(&q, &p, 200, skip);
            for (qi, row) in a.iter().enumerate() {
                let x = q.point(qi);
                let mut best: Vec<(f64, usize)> = (0..p.n)
                    .filter(|&j| !(skip && j == qi))
                    .map(|j| (sq_dist(x, p.point(j)), j))
                    .collect();
                best.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let best: Vec<(f64, usize)> =
                    best[..200].iter().map(|&(d2, j)| (d2.sqrt(), j)).collect();
                assert_eq!(row, &best);
            }
        }
    }

    #[test]
    fn knn_matches_brute_force() {
        let p = grid(40);
        let nb = knn(&p, &p, 3, true);
        for (q, row) in nb.iter().enumerate() {
            let mut all: Vec<(f64, usize)> = (0..p.n)
                .filter(|&j| j != q)
                .map(|j| (sq_dist(p.point(q), p.point(j)).sqrt(), j))
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!((row[2].0 - all[2].0).abs() < 1e-12);
        }
    }

    #[test]
    fn fractal_dimension_grows_with_the_dimension() {
        let mut rng = rng::stream(3, &[]);
        let plane = Points {
            coords: (0..4000).map(|_| rng.random::<f64>()).collect(),
            n: 2000,
            dim: 2,
        };
        let cube = Points {
            coords: (0..6000).map(|_| rng.random::<f64>()).collect(),
            n: 2000,
            dim: 3,
        };
        // Ten neighbours bias the estimate down; the ordering is what is checked.
        let (d2, d3) = (
            fractal_dimension(&plane, 1).unwrap(),
            fractal_dimension(&cube, 1).unwrap(),
        );
        assert!(d2 > 1.0 && d3 > d2 + 0.3, "{d2} {d3}");
    }

    #[test]
    fn kmeans_is_deterministic_and_thread_free() {
        let p = grid(200);
        let a = crate::with_threads(1, || kmeans_landmarks(&p, 10, 50, 7)).unwrap();
        let b = crate::with_threads(2, || kmeans_landmarks(&p, 10, 50, 7)).unwrap();
        assert_eq!(a.coords, b.coords);
        assert_eq!(a.n, 10);
    }

    #[test]
    fn points_length_scale_is_mellons_of_the_nn_distances() {
        let p = grid(10);
        let nn = nn_distances(&p).unwrap();
        assert_eq!(
            points_length_scale(&p, 2.0).unwrap(),
            length_scale(&nn, 2.0)
        );
    }

    #[test]
    fn quantile_is_type_7() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!((quantile_sorted(&x, 0.01) - 1.04).abs() < 1e-12);
    }
}

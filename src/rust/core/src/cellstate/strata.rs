//! Strata of similar cell state for the null genes of differential expression.
//!
//! A null gene permuted across all cells loses its dependence on cell state, so it is no
//! null for a gene that varies along the manifold without any condition effect: where the
//! two conditions' cells are distributed differently, such a gene's two regressions differ
//! more than a permuted gene's do. Permuting within strata of similar cell state keeps that
//! dependence (up to the spread of a stratum) and breaks only the condition. The strata are
//! the Voronoi cells of k-means centres of the cells, about `cells_per_stratum` cells each.

use super::{kmeans_landmarks, nearest_centre, Points};
use rayon::prelude::*;

/// Stratum (0-based, consecutive) of each point: `round(n / cells_per_stratum)` k-means
/// centres (k-means++ seeding, at most `max_iter` Lloyd's iterations, seeded), each point
/// in the stratum of its nearest centre; centres left without points are dropped, and the
/// strata are numbered by their first point.
pub fn state_strata(
    points: &Points,
    cells_per_stratum: usize,
    max_iter: usize,
    seed: u64,
) -> Result<Vec<usize>, String> {
    if cells_per_stratum == 0 {
        return Err("cells per stratum must be at least 1".into());
    }
    if points.n == 0 {
        return Ok(Vec::new());
    }
    let k = ((points.n as f64 / cells_per_stratum as f64).round() as usize).max(1);
    if k == 1 {
        return Ok(vec![0; points.n]);
    }
    let centres = kmeans_landmarks(points, k, max_iter, seed);
    let nearest: Vec<usize> = (0..points.n)
        .into_par_iter()
        .map(|i| nearest_centre(points.point(i), &centres).1)
        .collect();
    let mut label = vec![usize::MAX; centres.n];
    let mut next = 0;
    Ok(nearest
        .into_iter()
        .map(|c| {
            if label[c] == usize::MAX {
                label[c] = next;
                next += 1;
            }
            label[c]
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng;
    use rand::Rng;

    fn blobs(per: usize, centres: &[(f64, f64)], seed: u64) -> Points {
        let mut rng = rng::stream(seed, &[]);
        let coords = centres
            .iter()
            .flat_map(|&(x, y)| {
                (0..per)
                    .flat_map(|_| {
                        vec![x + rng.random::<f64>() * 0.1, y + rng.random::<f64>() * 0.1]
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        Points {
            coords,
            n: per * centres.len(),
            dim: 2,
        }
    }

    #[test]
    fn strata_are_the_nearest_kmeans_centres_by_brute_force() {
        let p = blobs(150, &[(0.0, 0.0), (1.0, 0.3), (0.2, 2.0)], 4);
        let s = state_strata(&p, 30, 100, 9).unwrap();
        let centres = kmeans_landmarks(&p, 15, 100, 9);
        // Brute force: the nearest centre of every point, relabelled by first appearance.
        let mut label = std::collections::HashMap::new();
        for (i, &got) in s.iter().enumerate() {
            let x = p.point(i);
            let mut best = (f64::INFINITY, 0);
            for c in 0..centres.n {
                let d: f64 = x
                    .iter()
                    .zip(centres.point(c))
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum();
                if d < best.0 {
                    best = (d, c);
                }
            }
            let n = label.len();
            let want = *label.entry(best.1).or_insert(n);
            assert_eq!(got, want);
        }
        assert_eq!(*s.iter().max().unwrap() + 1, label.len());
        assert!(label.len() <= 15 && label.len() >= 12);
    }

    #[test]
    fn strata_do_not_straddle_separated_groups() {
        // Three far-apart groups of 40 cells, 40 cells per stratum: one stratum each.
        let p = blobs(40, &[(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)], 2);
        let s = state_strata(&p, 40, 100, 1).unwrap();
        for g in 0..3 {
            let block = &s[g * 40..(g + 1) * 40];
            assert!(block.iter().all(|&v| v == block[0]));
        }
        assert_eq!(s[0], 0);
        assert!(s[0] != s[40] && s[40] != s[80] && s[0] != s[80]);
    }

    #[test]
    fn strata_are_deterministic_and_thread_free() {
        let p = blobs(200, &[(0.0, 0.0), (1.0, 1.0)], 7);
        let a = crate::with_threads(1, || state_strata(&p, 25, 50, 3)).unwrap();
        let b = crate::with_threads(2, || state_strata(&p, 25, 50, 3)).unwrap();
        assert_eq!(a, b);
        // Fewer cells than a stratum: one stratum; no cells: none.
        assert_eq!(state_strata(&p, 1000, 50, 3).unwrap(), vec![0; 400]);
        let empty = Points {
            coords: vec![],
            n: 0,
            dim: 2,
        };
        assert!(state_strata(&empty, 10, 50, 3).unwrap().is_empty());
        assert!(state_strata(&p, 0, 50, 3).is_err());
    }
}

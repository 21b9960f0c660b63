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

/// Centres every row (gene) of a block of genes x cells (column-major, `n_rows` genes)
/// by its means in the strata: for the cells `cells` (column indices, 0-based) in the
/// strata `strata` (one per cell, 0-based), each value minus the mean of its gene over the
/// cells of its stratum. Other columns are left as they are. A within-stratum permutation
/// leaves the stratum means unchanged, so a real gene and its permuted null genes lose the
/// same trajectory: what remains is the within-stratum contrast of the conditions.
pub fn centre_within_strata(
    values: &mut [f64],
    n_rows: usize,
    cells: &[usize],
    strata: &[usize],
) -> Result<(), String> {
    if cells.len() != strata.len() {
        return Err("one stratum per cell is needed".into());
    }
    if n_rows == 0 {
        return Ok(());
    }
    let n_cols = values.len() / n_rows;
    if values.len() != n_rows * n_cols || cells.iter().any(|&c| c >= n_cols) {
        return Err("cell index outside the block".into());
    }
    let k = strata.iter().map(|&s| s + 1).max().unwrap_or(0);
    let mut sums = vec![0.0; k * n_rows];
    let mut counts = vec![0usize; k];
    for (&c, &s) in cells.iter().zip(strata) {
        counts[s] += 1;
        let col = &values[c * n_rows..(c + 1) * n_rows];
        for (acc, v) in sums[s * n_rows..(s + 1) * n_rows].iter_mut().zip(col) {
            *acc += v;
        }
    }
    for (s, &n) in counts.iter().enumerate() {
        if n > 0 {
            sums[s * n_rows..(s + 1) * n_rows]
                .iter_mut()
                .for_each(|v| *v /= n as f64);
        }
    }
    for (&c, &s) in cells.iter().zip(strata) {
        let mean = &sums[s * n_rows..(s + 1) * n_rows];
        for (v, m) in values[c * n_rows..(c + 1) * n_rows].iter_mut().zip(mean) {
            *v -= m;
        }
    }
    Ok(())
}

/// The cells of each of `n_samples` samples, from each cell's sample (`sample_of[i]` is the
/// sample of cell `cells[i]`, 0-based), in the cells' order.
pub fn cells_by_sample(
    cells: &[usize],
    sample_of: &[usize],
    n_samples: usize,
) -> Result<Vec<Vec<usize>>, String> {
    if cells.len() != sample_of.len() {
        return Err("one sample per cell is needed".into());
    }
    let mut samples = vec![Vec::new(); n_samples];
    for (&c, &s) in cells.iter().zip(sample_of) {
        samples
            .get_mut(s)
            .ok_or("sample index out of range")?
            .push(c);
    }
    Ok(samples)
}

/// Per-sample offsets of every row (gene) of a block of genes x cells (column-major,
/// `n_rows` genes), for replicate-aware null genes: the mean of the gene over each
/// sample's cells (`samples[j]`, column indices), minus the mean of those sample means
/// in the sample's condition (`condition_of[j]`), times `sqrt(m / (m - 1))` with `m` the
/// samples of that condition, so that their mean square is the between-sample mean
/// square `B` of the sample means. A sample mean also holds the noise of its cells,
/// `W * mean(1 / n_j)` on average (`W` the pooled within-sample variance of the
/// condition), which a permuted null gene already carries; the offsets are therefore
/// shrunk by `sqrt(max(0, 1 - W * mean(1 / n_j) / B))`, so that their mean square is the
/// moment estimate of the between-sample variance beyond that noise. Returned genes x
/// samples, column-major. The offsets carry the gene's between-sample spread but no
/// condition effect (each condition's offsets sum to zero); a condition with fewer than
/// 2 samples gets zero offsets.
pub fn sample_offsets(
    values: &[f64],
    n_rows: usize,
    samples: &[Vec<usize>],
    condition_of: &[usize],
) -> Result<Vec<f64>, String> {
    if samples.len() != condition_of.len() {
        return Err("one condition per sample is needed".into());
    }
    let n_cols = values.len().checked_div(n_rows).unwrap_or(0);
    if samples.iter().flatten().any(|&c| c >= n_cols) {
        return Err("cell index outside the block".into());
    }
    if samples.iter().any(|s| s.is_empty()) {
        return Err("a sample without cells".into());
    }
    let mut out = vec![0.0; n_rows * samples.len()];
    for (j, cells) in samples.iter().enumerate() {
        let mean = &mut out[j * n_rows..(j + 1) * n_rows];
        for &c in cells {
            for (m, v) in mean.iter_mut().zip(&values[c * n_rows..(c + 1) * n_rows]) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= cells.len() as f64);
    }
    let n_conditions = condition_of.iter().map(|&c| c + 1).max().unwrap_or(0);
    for cond in 0..n_conditions {
        let members: Vec<usize> = (0..samples.len())
            .filter(|&j| condition_of[j] == cond)
            .collect();
        let m = members.len();
        let scale = if m >= 2 {
            (m as f64 / (m as f64 - 1.0)).sqrt()
        } else {
            0.0
        };
        // Pooled within-sample sum of squares and degrees of freedom, per gene.
        let mut within = vec![0.0; n_rows];
        let mut df = 0usize;
        for &j in &members {
            df += samples[j].len() - 1;
            let mean = &out[j * n_rows..(j + 1) * n_rows];
            for &c in &samples[j] {
                for ((w, v), mu) in within
                    .iter_mut()
                    .zip(&values[c * n_rows..(c + 1) * n_rows])
                    .zip(mean)
                {
                    *w += (v - mu) * (v - mu);
                }
            }
        }
        let inv_n = members
            .iter()
            .map(|&j| 1.0 / samples[j].len() as f64)
            .sum::<f64>()
            / m.max(1) as f64;
        for g in 0..n_rows {
            let centre =
                members.iter().map(|&j| out[j * n_rows + g]).sum::<f64>() / m.max(1) as f64;
            let between = members
                .iter()
                .map(|&j| (out[j * n_rows + g] - centre).powi(2))
                .sum::<f64>()
                / (m.max(2) - 1) as f64;
            let noise = if df > 0 {
                within[g] / df as f64 * inv_n
            } else {
                0.0
            };
            let shrink = if between > 0.0 {
                (1.0 - noise / between).max(0.0).sqrt()
            } else {
                0.0
            };
            for &j in &members {
                out[j * n_rows + g] = (out[j * n_rows + g] - centre) * scale * shrink;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_grouped_by_their_sample() {
        let samples = cells_by_sample(&[4, 7, 1, 9], &[1, 0, 1, 2], 3).unwrap();
        assert_eq!(samples, vec![vec![7], vec![4, 1], vec![9]]);
        assert!(cells_by_sample(&[4, 7], &[1], 3).is_err());
        assert!(cells_by_sample(&[4], &[3], 3).is_err());
    }
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
    #[test]
    fn centring_matches_stratum_means_by_brute_force() {
        // 3 genes x 7 columns; column 6 is outside the cells and stays as it is.
        let n_rows = 3;
        let mut rng = rng::stream(5, &[]);
        let values: Vec<f64> = (0..21).map(|_| rng.random::<f64>() * 4.0 - 1.0).collect();
        let cells = [4, 0, 1, 5, 2, 3];
        let strata = [1, 0, 1, 0, 1, 2];
        let mut got = values.clone();
        centre_within_strata(&mut got, n_rows, &cells, &strata).unwrap();
        for g in 0..n_rows {
            for (i, &c) in cells.iter().enumerate() {
                let same: Vec<f64> = cells
                    .iter()
                    .zip(&strata)
                    .filter(|(_, &s)| s == strata[i])
                    .map(|(&d, _)| values[d * n_rows + g])
                    .collect();
                let mean = same.iter().sum::<f64>() / same.len() as f64;
                assert!((got[c * n_rows + g] - (values[c * n_rows + g] - mean)).abs() < 1e-12);
            }
            assert_eq!(got[6 * n_rows + g], values[6 * n_rows + g]);
        }
        // A singleton stratum is centred to zero; errors on bad input.
        assert!(got[3 * n_rows].abs() < 1e-12);
        assert!(centre_within_strata(&mut got, n_rows, &[0, 1], &[0]).is_err());
        assert!(centre_within_strata(&mut got, n_rows, &[7], &[0]).is_err());
    }

    #[test]
    fn sample_offsets_match_brute_force() {
        let n_rows = 2;
        let mut rng = rng::stream(8, &[]);
        let mut values: Vec<f64> = (0..20).map(|_| rng.random::<f64>()).collect();
        let samples = vec![vec![0, 1], vec![2, 3, 4], vec![5], vec![6, 7], vec![8, 9]];
        // Sample shifts, so that the between-sample spread exceeds the cells' noise.
        for (j, shift) in [0.0, 0.6, -0.4, 0.3, -0.5].iter().enumerate() {
            for &c in &samples[j] {
                for g in 0..n_rows {
                    values[c * n_rows + g] += shift;
                }
            }
        }
        let mut shrunk = 0;
        let condition_of = [0, 0, 0, 1, 1];
        let got = sample_offsets(&values, n_rows, &samples, &condition_of).unwrap();
        for g in 0..n_rows {
            let means: Vec<f64> = samples
                .iter()
                .map(|s| s.iter().map(|&c| values[c * n_rows + g]).sum::<f64>() / s.len() as f64)
                .collect();
            for (cond, members) in [(0, vec![0, 1, 2]), (1, vec![3, 4])] {
                let m = members.len() as f64;
                let centre = members.iter().map(|&j| means[j]).sum::<f64>() / m;
                // Brute force: pooled within-sample variance, between-sample mean square.
                let (mut ss, mut df, mut inv_n) = (0.0, 0.0, 0.0);
                for &j in &members {
                    for &c in &samples[j] {
                        ss += (values[c * n_rows + g] - means[j]).powi(2);
                    }
                    df += samples[j].len() as f64 - 1.0;
                    inv_n += 1.0 / samples[j].len() as f64 / m;
                }
                let between = members
                    .iter()
                    .map(|&j| (means[j] - centre).powi(2))
                    .sum::<f64>()
                    / (m - 1.0);
                let shrink = (1.0 - ss / df * inv_n / between).max(0.0).sqrt();
                if shrink > 0.0 && shrink < 1.0 {
                    shrunk += 1;
                }
                let mut total = 0.0;
                for &j in &members {
                    let want = (means[j] - centre) * (m / (m - 1.0)).sqrt() * shrink;
                    assert!((got[j * n_rows + g] - want).abs() < 1e-12, "cond {cond}");
                    total += got[j * n_rows + g];
                }
                assert!(total.abs() < 1e-12);
            }
        }
        assert!(shrunk >= 2);
        // One sample in a condition: no spread to carry, zero offsets.
        let one = sample_offsets(&values, n_rows, &samples[..3], &[0, 0, 1]).unwrap();
        assert_eq!(&one[4..6], &[0.0, 0.0]);
        assert!(sample_offsets(&values, n_rows, &[vec![]], &[0]).is_err());
        assert!(sample_offsets(&values, n_rows, &[vec![10]], &[0]).is_err());
    }
}

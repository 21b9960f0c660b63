//! The permutation null of the enrichment score. Permuting gene labels makes a set of size
//! k a uniform random k-subset of rank positions. One permutation draws a random subset of
//! the largest size and scores every prefix whose length is a tested size, so all sets of
//! one size share their null draws (as in fgsea).

use super::signed_score;
use crate::rng;
use rand::Rng;
use rayon::prelude::*;

/// Permutations per parallel task; fixed, so the draws do not depend on the thread count.
const CHUNK: usize = 32;

/// Null enrichment scores: `scores[perm * sizes.len() + d]` is the score of a random set
/// of size `sizes[d]` in permutation `perm`.
pub struct NullScores {
    pub sizes: Vec<usize>,
    pub n_perm: usize,
    pub scores: Vec<f64>,
}

impl NullScores {
    /// Draws `n_perm` null scores for each distinct size in `sizes` (each < n genes).
    pub fn draw(
        weights: &[f64],
        sizes: &[usize],
        n_perm: usize,
        seed: u64,
    ) -> Result<Self, String> {
        let mut sizes = sizes.to_vec();
        sizes.sort_unstable();
        sizes.dedup();
        let d = sizes.len();
        let len = n_perm
            .checked_mul(d)
            .ok_or("too many permutations for the memory")?;
        let mut scores = crate::try_zeroed(len, "the permutation null")?;
        if d > 0 {
            scores
                .par_chunks_mut(CHUNK * d)
                .enumerate()
                .for_each(|(chunk, out)| {
                    if !crate::cancelled() {
                        draw_chunk(weights, &sizes, seed, chunk as u64, out)
                    }
                });
        }
        Ok(NullScores {
            sizes,
            n_perm,
            scores,
        })
    }

    /// Null scores for sets of size index `d`.
    fn of_size(&self, d: usize) -> impl Iterator<Item = f64> + '_ {
        let stride = self.sizes.len();
        self.scores.iter().skip(d).step_by(stride).copied()
    }

    /// Where `es` falls in the null of its size.
    pub fn summarize(&self, size: usize, es: f64) -> Option<NullSummary> {
        let d = self.sizes.binary_search(&size).ok()?;
        let positive = es >= 0.0;
        let (mut n_same_sign, mut n_as_extreme, mut sum_same_sign) = (0usize, 0usize, 0.0);
        for s in self.of_size(d) {
            let same = if positive { s >= 0.0 } else { s <= 0.0 };
            if same {
                n_same_sign += 1;
                sum_same_sign += s;
                if (positive && s >= es) || (!positive && s <= es) {
                    n_as_extreme += 1;
                }
            }
        }
        Some(NullSummary {
            n_same_sign,
            n_as_extreme,
            mean_same_sign: if n_same_sign > 0 {
                sum_same_sign / n_same_sign as f64
            } else {
                f64::NAN
            },
        })
    }
}

/// A set's score against the null scores of its size and sign.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NullSummary {
    /// Null scores of the same sign as the observed one (zero counts for both signs).
    pub n_same_sign: usize,
    /// Of those, the ones at least as extreme as the observed score.
    pub n_as_extreme: usize,
    /// Their mean: the normaliser of NES.
    pub mean_same_sign: f64,
}

fn draw_chunk(weights: &[f64], sizes: &[usize], seed: u64, chunk: u64, out: &mut [f64]) {
    let n = weights.len();
    let largest = *sizes.last().expect("sizes are not empty");
    let mut rng = rng::stream(seed, &[chunk]);
    let mut pool: Vec<u32> = (0..n as u32).collect();
    let mut subset: Vec<u32> = Vec::with_capacity(largest);
    for perm_scores in out.chunks_mut(sizes.len()) {
        subset.clear();
        let mut total = 0.0;
        let mut next = 0;
        for i in 0..largest {
            // Partial Fisher-Yates: pool[..=i] is a uniform random i+1 subset, whatever
            // order the pool was left in by the previous permutation.
            let j = rng.random_range(i..n);
            pool.swap(i, j);
            let g = pool[i];
            let at = subset.partition_point(|&h| h < g);
            subset.insert(at, g);
            total += weights[g as usize];
            if subset.len() == sizes[next] {
                perm_scores[next] = signed_score(weights, &subset, total);
                next += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws_whatever_the_threads() {
        let weights: Vec<f64> = (0..500).map(|i| 1.0 + (i as f64).sqrt()).collect();
        let sizes = [5, 17, 40];
        let one =
            crate::with_threads(1, || NullScores::draw(&weights, &sizes, 100, 7).unwrap()).unwrap();
        let two =
            crate::with_threads(2, || NullScores::draw(&weights, &sizes, 100, 7).unwrap()).unwrap();
        assert_eq!(one.scores, two.scores);
        let other = NullScores::draw(&weights, &sizes, 100, 8).unwrap();
        assert_ne!(one.scores, other.scores);
    }

    #[test]
    fn null_scores_are_centred_for_flat_weights() {
        // With equal weights the null is symmetric: about half the scores are positive.
        let weights = vec![1.0; 400];
        let null = NullScores::draw(&weights, &[20], 2000, 3).unwrap();
        let pos = null.summarize(20, 0.1).unwrap().n_same_sign as f64 / 2000.0;
        assert!((pos - 0.5).abs() < 0.05, "{pos}");
    }

    #[test]
    fn summary_counts_scores_as_extreme() {
        let null = NullScores {
            sizes: vec![3],
            n_perm: 5,
            scores: vec![0.5, -0.2, 0.1, 0.7, -0.6],
        };
        let s = null.summarize(3, 0.5).unwrap();
        assert_eq!((s.n_same_sign, s.n_as_extreme), (3, 2));
        assert!((s.mean_same_sign - 1.3 / 3.0).abs() < 1e-15);
        let s = null.summarize(3, -0.3).unwrap();
        assert_eq!((s.n_same_sign, s.n_as_extreme), (2, 1));
        assert!(null.summarize(4, 0.1).is_none());
    }
}

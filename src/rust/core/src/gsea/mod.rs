//! Preranked gene-set enrichment: the weighted Kolmogorov-Smirnov enrichment score
//! (Subramanian et al. 2005), its null by gene-label permutation, and an adaptive
//! multilevel splitting estimate for p-values far below 1 / permutations.
//!
//! A ranking is the vector of gene weights |statistic|^p in rank order (largest statistic
//! first); a gene set is the sorted vector of its genes' rank positions (0-based).

pub mod multilevel;
pub mod permutation;

/// The running sum of a set over a ranking: its extremes and where they are reached.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Enrichment {
    /// Signed enrichment score: the deviation from zero of larger magnitude.
    pub es: f64,
    /// Largest value of the running sum (>= 0).
    pub max_dev: f64,
    /// Smallest value of the running sum (<= 0).
    pub min_dev: f64,
    /// Index (into the set) of the hit at which the score is reached: the peak hit for a
    /// positive score, the first hit after the trough for a negative one. The leading edge
    /// is the hits up to it (positive) or from it on (negative).
    pub extreme_hit: usize,
}

/// Running sum of the set `hits` (sorted rank positions) over `weights`: each hit steps up
/// by its weight over the set's total weight, each miss steps down by 1 / (n - k). The sum
/// is evaluated only at the hits and just before them, where its extremes lie. `None` when
/// the set is empty, holds every gene, or has zero total weight.
pub fn enrichment(weights: &[f64], hits: &[u32]) -> Option<Enrichment> {
    let total: f64 = hits.iter().map(|&h| weights[h as usize]).sum();
    enrichment_with_total(weights, hits, total)
}

/// As [`enrichment`], given the set's total weight (kept by a caller that grows the set).
pub(crate) fn enrichment_with_total(
    weights: &[f64],
    hits: &[u32],
    total: f64,
) -> Option<Enrichment> {
    let n = weights.len();
    let k = hits.len();
    if k == 0 || k >= n || total <= 0.0 {
        return None;
    }
    let miss_step = 1.0 / (n - k) as f64;
    let (mut cum, mut max_dev, mut min_dev) = (0.0, 0.0, 0.0);
    let (mut max_hit, mut min_hit) = (0, 0);
    for (j, &h) in hits.iter().enumerate() {
        let misses = (h as usize - j) as f64 * miss_step;
        let before = cum / total - misses;
        if before < min_dev {
            min_dev = before;
            min_hit = j;
        }
        cum += weights[h as usize];
        let after = cum / total - misses;
        if after > max_dev {
            max_dev = after;
            max_hit = j;
        }
    }
    let positive = max_dev >= -min_dev;
    Some(Enrichment {
        es: if positive { max_dev } else { min_dev },
        max_dev,
        min_dev,
        extreme_hit: if positive { max_hit } else { min_hit },
    })
}

/// Signed enrichment score of a set of total weight `total`; 0 when undefined (a null set
/// with zero weight).
pub(crate) fn signed_score(weights: &[f64], hits: &[u32], total: f64) -> f64 {
    enrichment_with_total(weights, hits, total).map_or(0.0, |e| e.es)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running sum over every gene, as GSEA defines it.
    fn brute_force(weights: &[f64], hits: &[u32]) -> (f64, f64) {
        let n = weights.len();
        let total: f64 = hits.iter().map(|&h| weights[h as usize]).sum();
        let (mut run, mut hi, mut lo) = (0.0, 0.0f64, 0.0f64);
        for (i, w) in weights.iter().enumerate() {
            if hits.contains(&(i as u32)) {
                run += w / total;
            } else {
                run -= 1.0 / (n - hits.len()) as f64;
            }
            hi = hi.max(run);
            lo = lo.min(run);
        }
        (hi, lo)
    }

    #[test]
    fn matches_the_running_sum_over_every_gene() {
        let weights: Vec<f64> = (0..60)
            .map(|i| ((60 - i) as f64 * 0.37).sin().abs() + 0.1)
            .collect();
        for hits in [
            vec![0u32, 3, 7, 20],
            vec![40, 50, 59],
            vec![1, 2, 30, 31, 32, 58],
            vec![59],
        ] {
            let e = enrichment(&weights, &hits).unwrap();
            let (hi, lo) = brute_force(&weights, &hits);
            assert!((e.max_dev - hi).abs() < 1e-14 && (e.min_dev - lo).abs() < 1e-14);
            let es = if hi >= -lo { hi } else { lo };
            assert!((e.es - es).abs() < 1e-14);
        }
    }

    #[test]
    fn top_set_scores_one_and_leading_edge_is_whole_set() {
        let weights = vec![1.0; 10];
        let e = enrichment(&weights, &[0, 1, 2]).unwrap();
        assert!((e.es - 1.0).abs() < 1e-15);
        assert_eq!(e.extreme_hit, 2);
        let e = enrichment(&weights, &[7, 8, 9]).unwrap();
        assert!((e.es + 1.0).abs() < 1e-15);
        assert_eq!(e.extreme_hit, 0);
    }

    #[test]
    fn a_kept_total_gives_the_same_score() {
        let weights: Vec<f64> = (0..50).map(|i| (i as f64 * 0.7).cos().abs()).collect();
        let hits = [2u32, 9, 10, 33, 47];
        let total: f64 = [47u32, 2, 33, 10, 9]
            .iter()
            .map(|&h| weights[h as usize])
            .sum();
        let e = enrichment(&weights, &hits).unwrap();
        assert!((signed_score(&weights, &hits, total) - e.es).abs() < 1e-14);
        assert_eq!(signed_score(&weights, &hits, 0.0), 0.0);
    }

    #[test]
    fn degenerate_sets_have_no_score() {
        assert!(enrichment(&[1.0, 2.0], &[]).is_none());
        assert!(enrichment(&[1.0, 2.0], &[0, 1]).is_none());
        assert!(enrichment(&[0.0, 2.0, 1.0], &[0]).is_none());
    }
}

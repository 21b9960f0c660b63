//! Benjamini-Hochberg false discovery rates.
//!
//! `bh_adjust` is `p.adjust(p, "BH")` exactly. `LogPHistogram` serves screens that keep only
//! some of the pairs they test: it counts every tested p-value in narrow bins of log p, so the
//! FDR of a kept p-value can still be taken over all tests without storing them.

/// Benjamini-Hochberg adjusted p-values, identical to R's `p.adjust(p, "BH")`.
/// NaN entries are missing: they stay NaN and do not count towards the number of tests.
pub fn bh_adjust(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    let n = order.len();
    let mut out = vec![f64::NAN; p.len()];
    // Largest p first, as p.adjust's order(p, decreasing = TRUE); ties do not change the result.
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
    let mut running = f64::INFINITY;
    for (pos, &idx) in order.iter().enumerate() {
        let rank = (n - pos) as f64;
        running = running.min(n as f64 / rank * p[idx]);
        out[idx] = running.min(1.0);
    }
    out
}

/// Counts of log p-values in bins of width `width` on the natural-log scale:
/// bin k holds `-(k + 1) * width < log p <= -k * width`; the last bin takes everything smaller.
#[derive(Clone, Debug, PartialEq)]
pub struct LogPHistogram {
    pub width: f64,
    pub counts: Vec<f64>,
}

/// 100 bins per decade: a kept pair's FDR is at most 2.3% larger than the exact BH value.
pub const DEFAULT_BIN_WIDTH: f64 = std::f64::consts::LN_10 / 100.0;
/// Bins down to p = 1e-400 (log scale), below which all p-values share the last bin.
pub const DEFAULT_BINS: usize = 40_000;

impl LogPHistogram {
    pub fn new(width: f64, bins: usize) -> Self {
        LogPHistogram {
            width,
            counts: vec![0.0; bins],
        }
    }

    pub fn with_defaults() -> Self {
        Self::new(DEFAULT_BIN_WIDTH, DEFAULT_BINS)
    }

    pub fn bin_of(&self, log_p: f64) -> usize {
        let k = (-log_p / self.width).floor();
        if k <= 0.0 {
            0
        } else {
            (k as usize).min(self.counts.len() - 1)
        }
    }

    /// Lower edge of bin k on the log-p scale (its upper edge is `-k * width`).
    pub fn upper_log_p(&self, k: usize) -> f64 {
        -(k as f64) * self.width
    }

    pub fn add(&mut self, log_p: f64) {
        if !log_p.is_nan() {
            let k = self.bin_of(log_p);
            self.counts[k] += 1.0;
        }
    }

    pub fn merge(&mut self, other: &LogPHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    pub fn total(&self) -> f64 {
        self.counts.iter().sum()
    }
}

/// BH false discovery rates of some kept p-values (natural log scale), over all the tests that
/// `hist` counted (the kept ones included). Each term of the BH minimum is replaced by an upper
/// bound, so the result is never below the exact `p.adjust` value and exceeds it by at most a
/// factor `exp(width)`. It is exact for the smallest p-values when all of them were kept.
pub fn bh_from_histogram(kept_log_p: &[f64], hist: &LogPHistogram) -> Vec<f64> {
    let m = hist.total();
    let nb = hist.counts.len();
    // at_or_below[k]: number of tests with log p <= -k * width (bins k and beyond).
    let mut at_or_below = vec![0.0; nb + 1];
    for k in (0..nb).rev() {
        at_or_below[k] = at_or_below[k + 1] + hist.counts[k];
    }
    // bin_bound[k]: min over bins j <= k (larger p) of m * p_upper(j) / at_or_below(j).
    let mut bin_bound = vec![f64::INFINITY; nb];
    let mut running = f64::INFINITY;
    for k in 0..nb {
        if hist.counts[k] > 0.0 {
            running = running.min(m * hist.upper_log_p(k).exp() / at_or_below[k]);
        }
        bin_bound[k] = running;
    }
    // Rank of each kept p among the kept ones that share or precede its bin gives a lower
    // bound on its rank among all tests.
    let mut order: Vec<usize> = (0..kept_log_p.len())
        .filter(|&i| !kept_log_p[i].is_nan())
        .collect();
    order.sort_by(|&a, &b| kept_log_p[a].total_cmp(&kept_log_p[b]));
    let mut out = vec![f64::NAN; kept_log_p.len()];
    let mut kept_in_bin = 0.0;
    let mut current_bin = usize::MAX;
    let mut own_terms = Vec::with_capacity(order.len());
    for &i in &order {
        let k = hist.bin_of(kept_log_p[i]);
        if k != current_bin {
            current_bin = k;
            kept_in_bin = 0.0;
        }
        kept_in_bin += 1.0;
        let rank_lower = at_or_below[k + 1] + kept_in_bin;
        own_terms.push((i, m * kept_log_p[i].exp() / rank_lower, k));
    }
    // Step-up: each kept p also takes the minimum over the kept p-values above it.
    let mut running = f64::INFINITY;
    for &(i, term, k) in own_terms.iter().rev() {
        running = running.min(term);
        out[i] = running.min(bin_bound[k]).min(1.0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bh_matches_p_adjust() {
        // p.adjust(c(0.01, 0.04, 0.03, NA, 0.5, 0.03), "BH")
        let p = [0.01, 0.04, 0.03, f64::NAN, 0.5, 0.03];
        let q = bh_adjust(&p);
        let expected = [0.05, 0.05, 0.05, f64::NAN, 0.5, 0.05];
        for (a, b) in q.iter().zip(expected) {
            assert!(
                (a.is_nan() && b.is_nan()) || (a - b).abs() < 1e-15,
                "{a} vs {b}"
            );
        }
    }

    #[test]
    fn histogram_fdr_bounds_exact_fdr() {
        let m = 5000;
        let p: Vec<f64> = (0..m)
            .map(|i| ((i as f64 + 0.5) / m as f64).powf(3.0))
            .collect();
        let exact = bh_adjust(&p);
        let mut hist = LogPHistogram::with_defaults();
        p.iter().for_each(|v| hist.add(v.ln()));
        let kept: Vec<usize> = (0..m).filter(|i| i % 7 == 0).collect();
        let kept_log_p: Vec<f64> = kept.iter().map(|&i| p[i].ln()).collect();
        let approx = bh_from_histogram(&kept_log_p, &hist);
        for (a, &i) in approx.iter().zip(&kept) {
            assert!(*a >= exact[i] * (1.0 - 1e-12), "{a} < {}", exact[i]);
            assert!(
                *a <= exact[i] * DEFAULT_BIN_WIDTH.exp() * (1.0 + 1e-12),
                "{a} >> {}",
                exact[i]
            );
        }
    }
}

//! Mann-Whitney U (Wilcoxon rank-sum) tests of continuous features against binary
//! indicators, as `wilcox.test(x[g], x[!g])`: U of the indicator's TRUE group, normal
//! approximation with tie and continuity correction, or the exact distribution where
//! `wilcox.test()` uses it (both groups under 50 and no ties).

use super::pairs::{run_block, BlockOutput, BlockPosition, KeepRule, PairResult};
use super::{cross_product, Block, Reason};
use crate::dist::norm_cdf;
use crate::dist::Tail;
use crate::rank::average_ranks;
use std::collections::HashMap;

/// When to use the exact distribution, as `wilcox.test(exact = )`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exact {
    /// Exact when both groups have fewer than 50 observations and there are no ties.
    Auto,
    /// Exact whenever there are no ties.
    Always,
    Never,
}

#[derive(Clone, Copy, Debug)]
pub struct MwuOptions {
    pub exact: Exact,
    pub continuity: bool,
}

/// Null distribution of U for group sizes (m, n): cumulative counts of U <= u.
pub struct UDistribution {
    cumulative: Vec<f64>,
    total: f64,
}

impl UDistribution {
    /// The counts are the coefficients of the Gaussian binomial [m + n choose m]_q,
    /// built as the product over i of (1 - q^(n+i)) / (1 - q^i).
    pub fn new(m: usize, n: usize) -> Self {
        let len = m * n + 1;
        let mut c = vec![0.0; len];
        c[0] = 1.0;
        for i in 1..=m {
            // multiply by (1 - q^(n+i)), from the top so terms are read before written
            for u in (n + i..len).rev() {
                c[u] -= c[u - n - i];
            }
            // divide by (1 - q^i): a running sum with stride i
            for u in i..len {
                c[u] += c[u - i];
            }
        }
        let mut cumulative = c;
        for u in 1..len {
            cumulative[u] += cumulative[u - 1];
        }
        let total = cumulative[len - 1];
        UDistribution { cumulative, total }
    }

    /// P(U <= u).
    pub fn lower(&self, u: usize) -> f64 {
        self.cumulative[u.min(self.cumulative.len() - 1)] / self.total
    }

    /// Two-sided p-value for an observed U, as `wilcox.test()`: twice the smaller tail.
    pub fn two_sided(&self, u: usize) -> f64 {
        let max = self.cumulative.len() - 1;
        // P(U >= u) = P(U <= max - u) by symmetry; sum the smaller side for accuracy.
        let p = if 2 * u > max {
            self.lower(max - u)
        } else {
            self.lower(u)
        };
        (2.0 * p).min(1.0)
    }
}

/// Mann-Whitney test from the ranks of the pooled sample.
fn mwu_from_ranks(
    rank_sum_1: f64,
    n1: f64,
    n2: f64,
    ties: f64,
    opts: MwuOptions,
    exact: Option<&UDistribution>,
) -> PairResult {
    let n = n1 + n2;
    if n1 == 0.0 || n2 == 0.0 {
        return PairResult::missing(n, Reason::EmptyGroup);
    }
    let u = rank_sum_1 - n1 * (n1 + 1.0) / 2.0;
    let auc = u / (n1 * n2);
    let estimate = 2.0 * auc - 1.0;
    let log_p = match exact {
        Some(dist) => dist.two_sided(u.round() as usize).ln(),
        None => {
            let z = u - n1 * n2 / 2.0;
            let sigma = ((n1 * n2 / 12.0) * ((n + 1.0) - ties / (n * (n - 1.0)))).sqrt();
            if sigma.is_nan() || sigma <= 0.0 {
                return PairResult::missing(n, Reason::ZeroVariance);
            }
            // R's sign(0) is 0; Rust's 0.0.signum() is 1.
            let correction = if opts.continuity && z != 0.0 {
                0.5 * z.signum()
            } else {
                0.0
            };
            let zc = (z - correction) / sigma;
            let lower = norm_cdf(zc, Tail::Lower, true);
            let upper = norm_cdf(zc, Tail::Upper, true);
            (std::f64::consts::LN_2 + lower.min(upper)).min(0.0)
        }
    };
    PairResult {
        estimate,
        statistic: u,
        df: f64::NAN,
        n,
        log_p,
        extra: auc,
        reason: Reason::Ok,
    }
}

fn use_exact(opts: MwuOptions, n1: usize, n2: usize, ties: f64) -> bool {
    ties == 0.0
        && match opts.exact {
            Exact::Auto => n1 < 50 && n2 < 50,
            Exact::Always => true,
            Exact::Never => false,
        }
}

/// One feature against one indicator, over the samples where both are observed.
pub fn mwu_pair(x: &[f64], g: &[f64], opts: MwuOptions) -> PairResult {
    let (vals, grp): (Vec<f64>, Vec<bool>) = x
        .iter()
        .zip(g)
        .filter(|(a, b)| !a.is_nan() && !b.is_nan())
        .map(|(a, b)| (*a, *b != 0.0))
        .unzip();
    let mut ranks = vec![0.0; vals.len()];
    let ties = average_ranks(&vals, &mut ranks);
    let n1 = grp.iter().filter(|&&b| b).count();
    let n2 = grp.len() - n1;
    let r1: f64 = ranks
        .iter()
        .zip(&grp)
        .filter(|(_, &b)| b)
        .map(|(r, _)| r)
        .sum();
    let dist =
        (n1 > 0 && n2 > 0 && use_exact(opts, n1, n2, ties)).then(|| UDistribution::new(n1, n2));
    mwu_from_ranks(r1, n1 as f64, n2 as f64, ties, opts, dist.as_ref())
}

/// All features of `x` against all indicators of `groups` (1 = first group, 0 = second,
/// NaN = not in the test). Rank sums of complete features are one matrix product.
pub fn mwu_block(
    x: &Block,
    groups: &Block,
    opts: MwuOptions,
    pos: BlockPosition,
    rule: KeepRule,
) -> BlockOutput {
    let nx = x.n_features;
    let ng = groups.n_features;
    let mut ties = vec![0.0; nx];
    let mut scratch = vec![0.0; x.n_samples];
    let x_na = x.missing_features();
    let g_na = groups.missing_features();
    let ranks = x.sample_major(|f, v| {
        ties[f] = average_ranks(v, &mut scratch);
        v.iter_mut()
            .zip(&scratch)
            .for_each(|(d, r)| *d = if r.is_nan() { 0.0 } else { *r });
    });
    let indicators = groups.sample_major(|_, v| {
        v.iter_mut()
            .for_each(|u| *u = if *u == 1.0 { 1.0 } else { 0.0 })
    });
    let rank_sums = cross_product(&ranks, &indicators);
    let n = x.n_samples;
    let n1: Vec<usize> = (0..ng)
        .map(|j| indicators.col(j).iter().filter(|&&v| v == 1.0).count())
        .collect();
    // Exact null distributions, one per group size that needs it.
    let mut exact: HashMap<usize, UDistribution> = HashMap::new();
    for j in 0..ng {
        let (a, b) = (n1[j], n - n1[j]);
        if !g_na[j]
            && a > 0
            && b > 0
            && use_exact(opts, a, b, 0.0)
            && (0..nx).any(|i| !x_na[i] && ties[i] == 0.0)
        {
            exact.entry(a).or_insert_with(|| UDistribution::new(a, b));
        }
    }
    let gf: Vec<Vec<f64>> = (0..ng).map(|f| groups.feature(f)).collect();
    run_block(nx, ng, pos, rule, |i, j| {
        if x_na[i] || g_na[j] {
            return mwu_pair(&x.feature(i), &gf[j], opts);
        }
        let (a, b) = (n1[j], n - n1[j]);
        let dist = if use_exact(opts, a, b, ties[i]) {
            exact.get(&a)
        } else {
            None
        };
        mwu_from_ranks(rank_sums[(i, j)], a as f64, b as f64, ties[i], opts, dist)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_distribution_matches_enumeration() {
        // sizes 3 and 4: all 35 splits of ranks 1..7
        let d = UDistribution::new(3, 4);
        let mut counts = [0usize; 13];
        for a in 1..=7usize {
            for b in a + 1..=7 {
                for c in b + 1..=7 {
                    counts[a + b + c - 6] += 1;
                }
            }
        }
        let mut cum = 0;
        for (u, c) in counts.iter().enumerate() {
            cum += c;
            assert!((d.lower(u) - cum as f64 / 35.0).abs() < 1e-15);
        }
    }

    #[test]
    fn wilcox_reference_values() {
        let opts = MwuOptions {
            exact: Exact::Auto,
            continuity: true,
        };
        // wilcox.test(c(1.1, 2.2, 3.3, 4.4), c(0.5, 0.6, 2.5)): W = 10, p = 8 / 35
        let r = mwu_pair(
            &[1.1, 2.2, 3.3, 4.4, 0.5, 0.6, 2.5],
            &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0],
            opts,
        );
        assert_eq!(r.statistic, 10.0);
        assert!((r.log_p.exp() - 8.0 / 35.0).abs() < 1e-14);
        // with ties: wilcox.test(c(1, 2, 2, 3), c(2, 4, 5)): W = 2, p = 0.1990898521 (normal)
        let r = mwu_pair(
            &[1.0, 2.0, 2.0, 3.0, 2.0, 4.0, 5.0],
            &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0],
            opts,
        );
        assert_eq!(r.statistic, 2.0);
        assert!((r.log_p.exp() - 0.1990898521).abs() < 1e-9);
        // U = n1 n2 / 2: no continuity correction, as R's sign(0) = 0.
        // wilcox.test(c(0, 0, 1, 2), c(0, 0, 1, 2)): W = 8, p = 1
        let r = mwu_pair(
            &[0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 1.0, 2.0],
            &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
            opts,
        );
        assert_eq!(r.statistic, 8.0);
        assert_eq!(r.log_p, 0.0);
    }
}

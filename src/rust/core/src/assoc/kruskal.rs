//! Kruskal-Wallis tests of continuous features against grouping factors, as
//! `kruskal.test(x, g)`: H with tie correction on (levels present - 1) df. The effect size is
//! epsilon-squared, H / (n - 1).

use super::pairs::{run_block, BlockOutput, BlockPosition, KeepRule, PairResult};
use super::{cross_product, one_hot, Block, Reason};
use crate::dist::chisq_upper_log_p;
use crate::rank::average_ranks;

/// H from the rank sums and sizes of the groups present.
fn kruskal_from_sums(sums: &[f64], sizes: &[f64], ties: f64) -> PairResult {
    let n: f64 = sizes.iter().sum();
    let k = sizes.iter().filter(|&&s| s > 0.0).count();
    if k < 2 {
        return PairResult::missing(n, Reason::OneGroup);
    }
    let between: f64 = sums
        .iter()
        .zip(sizes)
        .filter(|(_, &s)| s > 0.0)
        .map(|(r, s)| r * r / s)
        .sum();
    let correction = 1.0 - ties / (n * n * n - n);
    if correction.is_nan() || correction <= 0.0 {
        return PairResult::missing(n, Reason::ZeroVariance);
    }
    let h = (12.0 * between / (n * (n + 1.0)) - 3.0 * (n + 1.0)) / correction;
    let df = (k - 1) as f64;
    PairResult {
        estimate: h / (n - 1.0),
        statistic: h,
        df,
        n,
        log_p: chisq_upper_log_p(h, df),
        extra: f64::NAN,
        reason: Reason::Ok,
    }
}

/// One feature against one factor (level codes 0, 1, ...; NaN missing).
pub fn kruskal_pair(x: &[f64], g: &[f64], n_levels: usize) -> PairResult {
    let (vals, grp): (Vec<f64>, Vec<usize>) = x
        .iter()
        .zip(g)
        .filter(|(a, b)| !a.is_nan() && !b.is_nan())
        .map(|(a, b)| (*a, *b as usize))
        .unzip();
    let mut ranks = vec![0.0; vals.len()];
    let ties = average_ranks(&vals, &mut ranks);
    let mut sums = vec![0.0; n_levels];
    let mut sizes = vec![0.0; n_levels];
    for (r, &l) in ranks.iter().zip(&grp) {
        sums[l] += r;
        sizes[l] += 1.0;
    }
    kruskal_from_sums(&sums, &sizes, ties)
}

/// All features of `x` against all factors of `groups`; `n_levels[j]` is factor j's level count.
pub fn kruskal_block(
    x: &Block,
    groups: &Block,
    n_levels: &[usize],
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
    let gf: Vec<Vec<f64>> = (0..ng).map(|f| groups.feature(f)).collect();
    let (onehot, offsets) = one_hot(groups, n_levels);
    let total_levels: usize = n_levels.iter().sum();
    let sizes: Vec<f64> = (0..total_levels)
        .map(|c| onehot.col(c).iter().sum())
        .collect();
    let sums = cross_product(&ranks, &onehot);
    let xf: Vec<Vec<f64>> = (0..nx).map(|f| x.feature(f)).collect();
    run_block(nx, ng, pos, rule, |i, j| {
        if x_na[i] || g_na[j] {
            return kruskal_pair(&xf[i], &gf[j], n_levels[j]);
        }
        let cols = offsets[j]..offsets[j] + n_levels[j];
        let level_sums: Vec<f64> = cols.clone().map(|c| sums[(i, c)]).collect();
        kruskal_from_sums(&level_sums, &sizes[cols], ties[i])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kruskal_reference_value() {
        // kruskal.test(c(2.9, 3.0, 2.5, 2.6, 3.2, 3.8, 2.7, 4.0, 2.4, 2.8, 3.4, 3.7, 2.2, 2.0),
        //              rep(1:3, c(5, 4, 5))): H = 0.77143, df = 2, p = 0.68
        let x = [
            2.9, 3.0, 2.5, 2.6, 3.2, 3.8, 2.7, 4.0, 2.4, 2.8, 3.4, 3.7, 2.2, 2.0,
        ];
        let g: Vec<f64> = [0.0; 5]
            .iter()
            .chain(&[1.0; 4])
            .chain(&[2.0; 5])
            .copied()
            .collect();
        let r = kruskal_pair(&x, &g, 3);
        assert!(
            (r.statistic - 0.771_428_571_428_571_4).abs() < 1e-12,
            "{}",
            r.statistic
        );
        assert_eq!(r.df, 2.0);
    }
}

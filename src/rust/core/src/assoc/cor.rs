//! Pearson and Spearman correlations for all pairs of two blocks, with the t-test of
//! `cor.test()`: t = r sqrt((n - 2) / (1 - r^2)) on n - 2 degrees of freedom.

use super::pairs::{
    keep_pairs, keep_top, run_block, BlockOutput, BlockPosition, KeepRule, PairResult, PairTable,
};
use super::{cross_product, Block, Reason};
use crate::dist::{t_quantile, t_two_sided_log_p, Tail};
use crate::fdr::LogPHistogram;
use crate::rank::average_ranks;
use faer::Mat;
use rayon::prelude::*;

/// A kept pair: block-local x and y indices and its result.
type Candidate = (usize, usize, PairResult);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorMethod {
    Pearson,
    Spearman,
}

/// Result of a correlation with its t-test, from r and the number of complete pairs.
pub fn cor_result(r: f64, n: f64) -> PairResult {
    if n < 3.0 {
        return PairResult::missing(n, Reason::TooFewObservations);
    }
    if r.is_nan() {
        return PairResult::missing(n, Reason::ZeroVariance);
    }
    let r = r.clamp(-1.0, 1.0);
    let df = n - 2.0;
    let t = r * (df / (1.0 - r * r)).sqrt();
    let log_p = t_two_sided_log_p(t, df);
    PairResult {
        estimate: r,
        statistic: t,
        df,
        n,
        log_p,
        extra: f64::NAN,
        reason: Reason::Ok,
    }
}

/// Correlation of two vectors over their complete observations, ranking them first for
/// Spearman (ranks recomputed on the complete pairs, as `cor.test()` does).
pub fn cor_pair(x: &[f64], y: &[f64], method: CorMethod) -> PairResult {
    let (mut a, mut b): (Vec<f64>, Vec<f64>) = x
        .iter()
        .zip(y)
        .filter(|(u, v)| !u.is_nan() && !v.is_nan())
        .map(|(u, v)| (*u, *v))
        .unzip();
    if method == CorMethod::Spearman {
        let mut ra = vec![0.0; a.len()];
        let mut rb = vec![0.0; b.len()];
        average_ranks(&a, &mut ra);
        average_ranks(&b, &mut rb);
        a = ra;
        b = rb;
    }
    let n = a.len() as f64;
    let r = match (unit_centered(&mut a), unit_centered(&mut b)) {
        (true, true) => a.iter().zip(&b).map(|(u, v)| u * v).sum(),
        _ => f64::NAN,
    };
    cor_result(r, n)
}

/// Centres `v` and scales it to unit length; false when it has no variance.
fn unit_centered(v: &mut [f64]) -> bool {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    v.iter_mut().for_each(|u| *u -= mean);
    let norm = v.iter().map(|u| u * u).sum::<f64>().sqrt();
    if norm.is_nan() || norm <= 0.0 || norm <= 1e-14 * mean.abs() * n.sqrt() {
        return false;
    }
    v.iter_mut().for_each(|u| *u /= norm);
    true
}

/// Features prepared for a product: centred, unit length, ranked first for Spearman.
/// Columns of zero variance are left at zero and flagged.
fn standardized(block: &Block, method: CorMethod) -> (Mat<f64>, Vec<bool>) {
    let mut constant = vec![false; block.n_features];
    let mut ranks = vec![0.0; block.n_samples];
    let m = block.sample_major(|f, v| {
        if method == CorMethod::Spearman {
            average_ranks(v, &mut ranks);
            v.copy_from_slice(&ranks);
        }
        if !unit_centered(v) {
            v.iter_mut().for_each(|u| *u = 0.0);
            constant[f] = true;
        }
    });
    (m, constant)
}

/// All pairs of `x` and `y` features. One matrix product gives every r of complete features;
/// a pair that involves a feature with missing values is computed on its complete
/// observations (reranked for Spearman), as `cor.test()` does. Masked products of
/// uncentred sums were tried for Pearson and lose precision when a feature has a large
/// value where its partner is missing, so those pairs are computed directly.
pub fn cor_block(
    x: &Block,
    y: &Block,
    method: CorMethod,
    pos: BlockPosition,
    rule: KeepRule,
) -> BlockOutput {
    let x_na = x.missing_features();
    let y_na = y.missing_features();
    let any_na = x_na.iter().chain(&y_na).any(|&b| b);
    if !any_na {
        return complete_block(x, y, method, pos, rule);
    }
    let nx = x.n_features;
    let ny = y.n_features;
    let (xs, x_const) = standardized(x, method);
    let (ys, y_const) = standardized(y, method);
    let r = cross_product(&xs, &ys);
    let xf: Vec<Vec<f64>> = (0..nx).map(|f| x.feature(f)).collect();
    let yf: Vec<Vec<f64>> = (0..ny).map(|f| y.feature(f)).collect();
    let n = x.n_samples as f64;
    run_block(nx, ny, pos, rule, |i, j| {
        if x_na[i] || y_na[j] {
            cor_pair(&xf[i], &yf[j], method)
        } else if x_const[i] || y_const[j] {
            cor_result(f64::NAN, n)
        } else {
            cor_result(r[(i, j)], n)
        }
    })
}

/// The common case: no missing values, so every pair has the same n and the p-value is a
/// decreasing function of |r|. Only kept pairs get a p-value; the others are binned by |r|
/// against precomputed bin edges.
fn complete_block(
    x: &Block,
    y: &Block,
    method: CorMethod,
    pos: BlockPosition,
    rule: KeepRule,
) -> BlockOutput {
    let n = x.n_samples as f64;
    let (xs, x_const) = standardized(x, method);
    let (ys, y_const) = standardized(y, method);
    let r = cross_product(&xs, &ys);
    let pair = |i: usize, j: usize| {
        if x_const[i] || y_const[j] {
            cor_result(f64::NAN, n)
        } else {
            cor_result(r[(i, j)], n)
        }
    };
    if rule.all || n < 3.0 {
        return keep_pairs(x.n_features, y.n_features, pos, rule, pair);
    }
    let edges = RBinEdges::new(n - 2.0);
    let r_min = edges.r_for_log_p(rule.max_log_p);
    let (nx, ny) = (x.n_features, y.n_features);
    // Bin and filter each column in parallel; p-values only for candidates.
    // One histogram per worker (fold), not per column: they are 40,000 bins each.
    let (histogram, mut candidates) = (0..ny)
        .into_par_iter()
        .fold(
            || (LogPHistogram::with_defaults(), Vec::<Candidate>::new()),
            |(mut hist, mut kept), j| {
                for i in 0..nx {
                    if !pos.tested(i, j) {
                        continue;
                    }
                    if x_const[i] || y_const[j] {
                        continue;
                    }
                    let a = r[(i, j)].abs().min(1.0);
                    hist.counts[edges.bin(a)] += 1.0;
                    if rule.top == 0 && a >= r_min {
                        let res = cor_result(r[(i, j)], n);
                        if res.log_p <= rule.max_log_p {
                            kept.push((i, j, res));
                        }
                    }
                }
                (hist, kept)
            },
        )
        .reduce(
            || (LogPHistogram::with_defaults(), Vec::new()),
            |(mut h1, mut k1), (h2, k2)| {
                h1.merge(&h2);
                k1.extend(k2);
                (h1, k1)
            },
        );
    if rule.top > 0 {
        candidates = strongest_pairs(&r, nx, ny, pos, rule.top, r_min, |i, j| {
            x_const[i] || y_const[j]
        })
        .into_iter()
        .map(|(i, j)| (i, j, cor_result(r[(i, j)], n)))
        .filter(|c| c.2.log_p <= rule.max_log_p)
        .collect();
        keep_top(&mut candidates, nx, ny, pos.symmetric, rule.top);
    }
    let mut pairs = PairTable::default();
    for (i, j, res) in &candidates {
        pairs.push(*i, *j, res);
    }
    BlockOutput { pairs, histogram }
}

/// With a common n, the `top` pairs by p-value of each x feature (and each y feature of a
/// symmetric screen) are those with the largest |r|: select them without any p-value.
fn strongest_pairs(
    r: &Mat<f64>,
    nx: usize,
    ny: usize,
    pos: BlockPosition,
    top: usize,
    r_min: f64,
    skip: impl Fn(usize, usize) -> bool + Sync,
) -> Vec<(usize, usize)> {
    let usable = |i: usize, j: usize| pos.tested(i, j) && !skip(i, j) && r[(i, j)].abs() >= r_min;
    let select = |mut idx: Vec<(usize, usize)>| {
        let by_strength =
            |a: &(usize, usize), b: &(usize, usize)| r[*b].abs().total_cmp(&r[*a].abs());
        if idx.len() > top {
            idx.select_nth_unstable_by(top - 1, by_strength);
            idx.truncate(top);
        }
        idx
    };
    let mut out: Vec<(usize, usize)> = (0..nx)
        .into_par_iter()
        .flat_map_iter(|i| select((0..ny).filter(|&j| usable(i, j)).map(|j| (i, j)).collect()))
        .collect();
    if pos.symmetric {
        out.extend(
            (0..ny)
                .into_par_iter()
                .flat_map_iter(|j| {
                    select((0..nx).filter(|&i| usable(i, j)).map(|i| (i, j)).collect())
                })
                .collect::<Vec<_>>(),
        );
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Bin edges on the |r| scale matching the log-p bins of `LogPHistogram` for a fixed df:
/// |r| >= edge[k] exactly when log p <= -k * width.
struct RBinEdges {
    df: f64,
    edges: Vec<f64>,
}

impl RBinEdges {
    fn new(df: f64) -> Self {
        let hist = LogPHistogram::with_defaults();
        let edges = (0..hist.counts.len())
            .map(|k| Self::r_at(df, hist.upper_log_p(k)))
            .collect();
        RBinEdges { df, edges }
    }

    /// |r| whose two-sided p-value has natural log `log_p`.
    fn r_at(df: f64, log_p: f64) -> f64 {
        if log_p >= 0.0 {
            return 0.0;
        }
        let t = t_quantile(log_p - std::f64::consts::LN_2, df, Tail::Upper, true);
        t / (t * t + df).sqrt()
    }

    fn r_for_log_p(&self, log_p: f64) -> f64 {
        if log_p.is_infinite() {
            0.0
        } else {
            Self::r_at(self.df, log_p)
        }
    }

    /// The bin of a pair with this |r|: the last edge at or below it.
    fn bin(&self, abs_r: f64) -> usize {
        self.edges
            .partition_point(|&e| e <= abs_r)
            .saturating_sub(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_r(x: &[f64], y: &[f64]) -> f64 {
        let n = x.len() as f64;
        let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
        let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
        let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
        let syy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
        sxy / (sxx * syy).sqrt()
    }

    fn data(nf: usize, ns: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..nf * ns)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            })
            .collect()
    }

    fn all() -> KeepRule {
        KeepRule {
            all: true,
            max_log_p: f64::INFINITY,
            top: 0,
        }
    }

    #[test]
    fn block_matches_naive_pearson() {
        let (nx, ny, ns) = (7, 5, 30);
        let xd = data(nx, ns, 1);
        let yd = data(ny, ns, 2);
        let x = Block::new(&xd, nx, ns).unwrap();
        let y = Block::new(&yd, ny, ns).unwrap();
        let pos = BlockPosition {
            x_offset: 0,
            y_offset: 0,
            symmetric: false,
        };
        let out = cor_block(&x, &y, CorMethod::Pearson, pos, all());
        assert_eq!(out.pairs.len(), nx * ny);
        for k in 0..out.pairs.len() {
            let (i, j) = (out.pairs.i[k], out.pairs.j[k]);
            let r = naive_r(&x.feature(i), &y.feature(j));
            assert!((out.pairs.estimate[k] - r).abs() < 1e-13);
        }
    }

    #[test]
    fn pairwise_complete_pearson_equals_complete_case_pearson() {
        let (nx, ny, ns) = (4, 3, 25);
        let mut xd = data(nx, ns, 3);
        let yd = data(ny, ns, 4);
        xd[5] = f64::NAN;
        xd[13] = f64::NAN;
        xd[9] = 1e8; // a large value where a partner is missing must not cost precision
        let x = Block::new(&xd, nx, ns).unwrap();
        let y = Block::new(&yd, ny, ns).unwrap();
        let pos = BlockPosition {
            x_offset: 0,
            y_offset: 0,
            symmetric: false,
        };
        let out = cor_block(&x, &y, CorMethod::Pearson, pos, all());
        for k in 0..out.pairs.len() {
            let (i, j) = (out.pairs.i[k], out.pairs.j[k]);
            let direct = cor_pair(&x.feature(i), &y.feature(j), CorMethod::Pearson);
            assert!((out.pairs.estimate[k] - direct.estimate).abs() < 1e-12);
            assert_eq!(out.pairs.n[k], direct.n);
        }
    }

    #[test]
    fn filtered_block_keeps_what_the_full_block_has_below_the_threshold() {
        let (nx, ns) = (40, 12);
        let xd = data(nx, ns, 5);
        let x = Block::new(&xd, nx, ns).unwrap();
        let pos = BlockPosition {
            x_offset: 0,
            y_offset: 0,
            symmetric: true,
        };
        let full = cor_block(&x, &x, CorMethod::Spearman, pos, all());
        let max_log_p = 0.2f64.ln();
        let rule = KeepRule {
            all: false,
            max_log_p,
            top: 0,
        };
        let kept = cor_block(&x, &x, CorMethod::Spearman, pos, rule);
        let expected = full
            .pairs
            .log_p
            .iter()
            .filter(|&&lp| lp <= max_log_p)
            .count();
        assert_eq!(kept.pairs.len(), expected);
        assert_eq!(kept.histogram.total() as usize, nx * (nx - 1) / 2);
        // the histogram puts each pair in the bin of its exact p-value
        let mut direct = LogPHistogram::with_defaults();
        full.pairs.log_p.iter().for_each(|&lp| direct.add(lp));
        let moved: f64 = kept
            .histogram
            .counts
            .iter()
            .zip(&direct.counts)
            .map(|(a, b)| (a - b).abs())
            .sum();
        assert!(moved <= 2.0, "{moved} pairs binned differently");
    }
}

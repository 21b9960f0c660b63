//! Mann-Whitney U (Wilcoxon rank-sum) tests of continuous features against binary
//! indicators, as `wilcox.test(x[g], x[!g])`: U of the indicator's TRUE group, normal
//! approximation with tie and continuity correction, or the exact distribution where
//! `wilcox.test()` uses it (both groups under 50 and no ties).

use super::pairs::{run_block, BlockOutput, BlockPosition, KeepRule, PairResult, PairTable};
use super::{cross_product, Block, Reason};
use crate::dist::norm_cdf;
use crate::dist::Tail;
use crate::fdr::LogPHistogram;
use crate::input::{CscView, RowSlice};
use crate::rank::{average_ranks, order_key, sparse_average_ranks};
use rayon::prelude::*;
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
    let untied = (0..nx).any(|i| !x_na[i] && ties[i] == 0.0);
    let exact = exact_distributions(&n1, n, &g_na, untied, opts);
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

/// Exact null distributions, one per group size that needs it (`untied`: some feature
/// has no ties).
fn exact_distributions(
    n1: &[usize],
    n: usize,
    g_na: &[bool],
    untied: bool,
    opts: MwuOptions,
) -> HashMap<usize, UDistribution> {
    let mut exact = HashMap::new();
    for (j, &a) in n1.iter().enumerate() {
        let b = n - a;
        if untied && !g_na[j] && a > 0 && b > 0 && use_exact(opts, a, b, 0.0) {
            exact.entry(a).or_insert_with(|| UDistribution::new(a, b));
        }
    }
    exact
}

/// Features per task of the sparse kernel (enough work per task to amortise scheduling).
const SPARSE_FEATURES_PER_TASK: usize = 64;

/// All features of a sparse `x` (rows of a dgCMatrix) against complete indicators `groups`
/// (1 = first group, 0 = second; no NaN), with the results of [`mwu_block`] on the dense
/// matrix. Each feature is ranked once from its non-zeros, the zeros being one tied group
/// (see [`sparse_average_ranks`]); an indicator's rank sum is the ranks of its non-zero
/// members plus the zeros' rank times its count of zeros. O(nnz log nnz) per feature for
/// any number of indicators; nothing is densified. Features are done `chunk` at a time,
/// which bounds the memory to a chunk's entries and pairs.
pub fn mwu_sparse(
    x: &CscView,
    groups: &Block,
    opts: MwuOptions,
    pos: BlockPosition,
    rule: KeepRule,
    chunk: usize,
) -> Result<BlockOutput, String> {
    let n = x.ncol;
    if groups.n_samples != n {
        return Err("x and groups have different numbers of samples".into());
    }
    if groups.data.iter().any(|v| v.is_nan()) {
        return Err("the sparse Mann-Whitney kernel needs complete indicators".into());
    }
    let members = Members::of(groups);
    let chunk = chunk.max(1);
    // Fixed parts of the rows, each walked down by one task with its own cursors: the
    // transposition runs in parallel too, and the output order does not depend on the
    // number of threads.
    let part_rows = x.nrow.div_ceil(ROW_PARTS).max(1);
    let firsts: Vec<usize> = (0..x.nrow).step_by(part_rows).collect();
    let parts: Vec<Result<BlockOutput, String>> = firsts
        .into_par_iter()
        .map(|first| {
            let last = (first + part_rows).min(x.nrow);
            let mut cursor = x.column_cursors(first);
            let mut out = empty_output();
            for start in (first..last).step_by(chunk) {
                if crate::cancelled() {
                    return Err("interrupted by the user".to_string());
                }
                let end = (start + chunk).min(last);
                let rows = x.next_rows(&mut cursor, start, end);
                let part = sparse_chunk(&rows, end - start, n, &members, opts, rule, pos, start);
                append(&mut out, part, start);
            }
            Ok(out)
        })
        .collect();
    let mut out = empty_output();
    for part in parts {
        append(&mut out, part?, 0);
    }
    Ok(out)
}

/// Rows of the sparse kernel done by one task (see [`mwu_sparse`]).
const ROW_PARTS: usize = 8;

fn empty_output() -> BlockOutput {
    BlockOutput {
        pairs: PairTable::default(),
        histogram: LogPHistogram::with_defaults(),
    }
}

/// The pairs of the `nf` features of `rows`, which start at feature `start`.
#[allow(clippy::too_many_arguments)]
fn sparse_chunk(
    rows: &RowSlice,
    nf: usize,
    n: usize,
    members: &Members,
    opts: MwuOptions,
    rule: KeepRule,
    pos: BlockPosition,
    start: usize,
) -> BlockOutput {
    let ng = members.n1.len();
    let (rank_sums, ties) = sparse_rank_sums(rows, nf, n, members);
    let untied = ties.contains(&0.0);
    let exact = exact_distributions(&members.n1, n, &vec![false; ng], untied, opts);
    let chunk_pos = BlockPosition {
        x_offset: pos.x_offset + start,
        ..pos
    };
    run_block(nf, ng, chunk_pos, rule, |i, j| {
        let (a, b) = (members.n1[j], n - members.n1[j]);
        let dist = if use_exact(opts, a, b, ties[i]) {
            exact.get(&a)
        } else {
            None
        };
        mwu_from_ranks(
            rank_sums[i * ng + j],
            a as f64,
            b as f64,
            ties[i],
            opts,
            dist,
        )
    })
}

/// For each observation, the indicators it belongs to (row-compressed), and each
/// indicator's size.
struct Members {
    ptr: Vec<usize>,
    of: Vec<usize>,
    n1: Vec<usize>,
}

impl Members {
    fn of(groups: &Block) -> Self {
        let ng = groups.n_features;
        let mut ptr = vec![0];
        let mut of = Vec::new();
        let mut n1 = vec![0; ng];
        // Block data are column-major, features fastest: one observation is contiguous.
        for sample in groups.data.chunks_exact(ng.max(1)).take(groups.n_samples) {
            for (j, &v) in sample.iter().enumerate().take(ng) {
                if v == 1.0 {
                    of.push(j);
                    n1[j] += 1;
                }
            }
            ptr.push(of.len());
        }
        ptr.resize(groups.n_samples + 1, of.len());
        Members { ptr, of, n1 }
    }
}

/// Rank sums (features x indicators, row-major) and tie terms of the rows of `rows`.
fn sparse_rank_sums(
    rows: &RowSlice,
    nf: usize,
    n: usize,
    members: &Members,
) -> (Vec<f64>, Vec<f64>) {
    let ng = members.n1.len();
    let mut rank_sums = vec![0.0; nf * ng];
    let mut ties = vec![0.0; nf];
    if ng == 0 {
        return (rank_sums, ties);
    }
    rank_sums
        .par_chunks_mut(SPARSE_FEATURES_PER_TASK * ng)
        .zip(ties.par_chunks_mut(SPARSE_FEATURES_PER_TASK))
        .enumerate()
        .for_each(|(task, (sums, task_ties))| {
            let mut nonzero: Vec<(u64, u32)> = Vec::new();
            let mut ranks = Vec::new();
            let mut counts = vec![0usize; ng];
            for (k, (row_sums, tie)) in sums.chunks_exact_mut(ng).zip(task_ties).enumerate() {
                let f = task * SPARSE_FEATURES_PER_TASK + k;
                let (lo, hi) = (rows.ptr[f], rows.ptr[f + 1]);
                nonzero.clear();
                nonzero.extend(
                    rows.vals[lo..hi]
                        .iter()
                        .zip(&rows.cols[lo..hi])
                        .filter(|(v, _)| **v != 0.0)
                        .map(|(v, c)| (order_key(*v), *c)),
                );
                let (zero_rank, t) = sparse_average_ranks(&mut nonzero, n, &mut ranks);
                *tie = t;
                counts.iter_mut().for_each(|c| *c = 0);
                for (e, r) in nonzero.iter().zip(&ranks) {
                    let s = e.1 as usize;
                    for &j in &members.of[members.ptr[s]..members.ptr[s + 1]] {
                        row_sums[j] += r;
                        counts[j] += 1;
                    }
                }
                for j in 0..ng {
                    row_sums[j] += zero_rank * (members.n1[j] - counts[j]) as f64;
                }
            }
        });
    (rank_sums, ties)
}

/// Appends the pairs of a chunk whose features start at `start` to `out`.
fn append(out: &mut BlockOutput, part: BlockOutput, start: usize) {
    let (o, p) = (&mut out.pairs, part.pairs);
    o.i.extend(p.i.iter().map(|i| i + start));
    o.j.extend(p.j);
    o.estimate.extend(p.estimate);
    o.statistic.extend(p.statistic);
    o.df.extend(p.df);
    o.n.extend(p.n);
    o.log_p.extend(p.log_p);
    o.extra.extend(p.extra);
    o.reason.extend(p.reason);
    out.histogram.merge(&part.histogram);
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

    #[test]
    fn sparse_kernel_matches_dense_kernel() {
        // 3 features x 12 observations: negatives, ties, an explicit zero, a feature of zeros
        let dense_rows = [
            [0.0, 1.5, 0.0, -2.0, 1.5, 0.0, 3.0, 0.0, -2.0, 0.0, 0.0, 7.0],
            [0.0; 12],
            [
                1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0,
            ],
        ];
        let (nf, n) = (3, 12);
        let (mut p, mut i, mut x) = (vec![0i32], Vec::new(), Vec::new());
        for c in 0..n {
            for (r, row) in dense_rows.iter().enumerate() {
                // an explicit zero stored for feature 0, observation 0
                if row[c] != 0.0 || (r == 0 && c == 0) {
                    i.push(r as i32);
                    x.push(row[c]);
                }
            }
            p.push(i.len() as i32);
        }
        let csc = CscView::new(nf, n, &p, &i, &x).unwrap();
        let dense: Vec<f64> = (0..n)
            .flat_map(|c| dense_rows.iter().map(move |r| r[c]))
            .collect();
        // two indicators: a split and its complement's subset (overlapping memberships)
        let g1 = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0];
        let g2 = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let groups: Vec<f64> = (0..n).flat_map(|c| [g1[c], g2[c]]).collect();
        let xb = Block::new(&dense, nf, n).unwrap();
        let gb = Block::new(&groups, 2, n).unwrap();
        let pos = BlockPosition {
            x_offset: 0,
            y_offset: 0,
            symmetric: false,
        };
        let rule = KeepRule {
            all: true,
            max_log_p: f64::INFINITY,
            top: 0,
        };
        for exact in [Exact::Auto, Exact::Never] {
            let opts = MwuOptions {
                exact,
                continuity: true,
            };
            let want = mwu_block(&xb, &gb, opts, pos, rule).pairs;
            for chunk in [1, 2, 64] {
                let got = mwu_sparse(&csc, &gb, opts, pos, rule, chunk).unwrap().pairs;
                let key = |t: &PairTable| {
                    let mut v: Vec<_> = (0..t.len())
                        .map(|k| (t.i[k], t.j[k], t.statistic[k], t.log_p[k], t.reason[k]))
                        .collect();
                    v.sort_by_key(|a| (a.0, a.1));
                    format!("{v:?}")
                };
                assert_eq!(key(&got), key(&want));
            }
        }
    }
}

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
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

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

/// Centres `v` and scales it to unit length; false when it has no variance. Values are
/// first divided by their largest magnitude (squares of values near 1e308 would overflow)
/// and centred in two passes (a large common offset would otherwise leave its rounding
/// error in the spread); a spread below one unit in the last place of the mean is rounding.
fn unit_centered(v: &mut [f64]) -> bool {
    let n = v.len() as f64;
    let largest = v.iter().fold(0.0_f64, |m, u| m.max(u.abs()));
    if !(largest > 0.0 && largest.is_finite()) {
        return false;
    }
    v.iter_mut().for_each(|u| *u /= largest);
    let rough = v.iter().sum::<f64>() / n;
    let mean = rough + v.iter().map(|u| u - rough).sum::<f64>() / n;
    v.iter_mut().for_each(|u| *u -= mean);
    let norm = v.iter().map(|u| u * u).sum::<f64>().sqrt();
    if norm.is_nan() || norm <= 0.0 || norm <= f64::EPSILON * mean.abs() * n.sqrt() {
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
    if rule.all || n < 3.0 {
        return keep_pairs(x.n_features, y.n_features, pos, rule, |i, j| {
            if x_const[i] || y_const[j] {
                cor_result(f64::NAN, n)
            } else {
                cor_result(r[(i, j)], n)
            }
        });
    }
    let edges = RBinEdges::shared(n - 2.0);
    let scan = PairScan {
        r: &r,
        x_const: &x_const,
        y_const: &y_const,
        pos,
        edges: &edges,
        r_min: edges.r_for_log_p(rule.max_log_p),
        n,
        rule,
    };
    let (nx, ny) = (x.n_features, y.n_features);
    // One pass over r, in parallel over runs of rows: each task reads contiguous pieces of
    // every column and owns the strongest pairs of its rows. Bins are counted per worker
    // (fold), not per task, as integers: a float count's add is a long dependency chain
    // when consecutive pairs share a bin, as most small |r| do.
    let row_runs = nx.div_ceil(ROWS_PER_TASK);
    let n_bins = LogPHistogram::with_defaults().counts.len();
    let (bin_counts, mut candidates) = (0..row_runs)
        .into_par_iter()
        .fold(
            || (vec![0u64; n_bins], Vec::<Candidate>::new()),
            |(mut counts, mut kept), run| {
                let rows = run * ROWS_PER_TASK..((run + 1) * ROWS_PER_TASK).min(nx);
                scan.rows(rows, &mut counts, &mut kept);
                (counts, kept)
            },
        )
        .reduce(
            || (vec![0u64; n_bins], Vec::new()),
            |(mut c1, mut k1), (c2, k2)| {
                c1.iter_mut().zip(&c2).for_each(|(a, b)| *a += b);
                k1.extend(k2);
                (c1, k1)
            },
        );
    let mut histogram = LogPHistogram::with_defaults();
    for (h, c) in histogram.counts.iter_mut().zip(&bin_counts) {
        *h = *c as f64;
    }
    if rule.top > 0 {
        if pos.symmetric {
            candidates.extend(scan.strongest_per_column());
        }
        candidates.sort_unstable_by_key(|c| (c.0, c.1));
        candidates.dedup_by_key(|c| (c.0, c.1));
        candidates.retain(|c| c.2.log_p <= rule.max_log_p);
        keep_top(&mut candidates, nx, ny, pos.symmetric, rule.top);
    }
    let mut pairs = PairTable::default();
    for (i, j, res) in &candidates {
        pairs.push(*i, *j, res);
    }
    BlockOutput { pairs, histogram }
}

/// The matrices of a screen that keeps every pair (`assoc_cor(output = "matrix")`),
/// column-major `x features x y features`, written in place.
pub struct CorMatrices<'a> {
    pub estimate: &'a mut [f64],
    pub statistic: &'a mut [f64],
    pub p_value: &'a mut [f64],
    pub fdr: &'a mut [f64],
    pub n: &'a mut [f64],
}

/// Every pair of complete features of `x` and `y` (`y = None`: pairs within `x`, both
/// triangles filled, diagonal missing) written straight into `out`: r, t, p, the
/// Benjamini-Hochberg FDR over all tested pairs (each unordered pair once) and n, with
/// `missing` (R's NA) where a pair has no result. The values are those of [`cor_block`]
/// with every pair kept; no table of pairs is built.
pub fn cor_matrices(
    x: &Block,
    y: Option<&Block>,
    method: CorMethod,
    missing: f64,
    out: CorMatrices,
) -> Result<(), String> {
    let symmetric = y.is_none();
    let y = y.unwrap_or(x);
    let (nx, ny) = (x.n_features, y.n_features);
    if x.n_samples != y.n_samples {
        return Err("x and y have different numbers of samples".into());
    }
    let cells = nx * ny;
    let slices = [
        &out.estimate,
        &out.statistic,
        &out.p_value,
        &out.fdr,
        &out.n,
    ];
    if slices.iter().any(|m| m.len() != cells) {
        return Err(format!("result matrices must have {nx} x {ny} cells"));
    }
    if x.data.iter().chain(y.data).any(|v| v.is_nan()) {
        return Err("the matrices of complete features need data without missing values".into());
    }
    let n = x.n_samples as f64;
    let (xs, x_const) = standardized(x, method);
    let (ys, y_const) = if symmetric {
        (xs.clone(), x_const.clone())
    } else {
        standardized(y, method)
    };
    let r = cross_product(&xs, &ys);
    let na = |v: f64| if v.is_nan() { missing } else { v };
    // Tested pairs: i < j within one set. The p-values of tested pairs are collected for
    // the FDR (NaN where there is none: not counted, as in p.adjust).
    out.estimate
        .par_chunks_mut(nx.max(1))
        .zip(out.statistic.par_chunks_mut(nx.max(1)))
        .zip(out.p_value.par_chunks_mut(nx.max(1)))
        .zip(out.n.par_chunks_mut(nx.max(1)))
        .enumerate()
        .for_each(|(j, (((est, stat), p), count))| {
            if crate::cancelled() {
                return;
            }
            let column = r.col_as_slice(j);
            for i in 0..nx {
                if symmetric && i >= j {
                    // Filled from the upper triangle below; the diagonal is not a pair.
                    (est[i], stat[i], p[i], count[i]) = (missing, missing, f64::NAN, missing);
                    continue;
                }
                let res = if x_const[i] || y_const[j] {
                    cor_result(f64::NAN, n)
                } else {
                    cor_result(column[i], n)
                };
                est[i] = na(res.estimate);
                stat[i] = na(res.statistic);
                p[i] = res.log_p.exp();
                count[i] = na(res.n);
            }
        });
    if crate::cancelled() {
        return Err("interrupted by the user".into());
    }
    bh_in_place(out.p_value, out.fdr);
    for m in [&mut *out.p_value, &mut *out.fdr] {
        m.par_iter_mut().for_each(|v| *v = na(*v));
    }
    if symmetric {
        let matrices = [out.estimate, out.statistic, out.p_value, out.fdr, out.n];
        matrices
            .into_par_iter()
            .for_each(|m| mirror_upper(m, nx, missing));
    }
    Ok(())
}

/// Benjamini-Hochberg FDR of `p` into `fdr` (NaN: not a test), as [`crate::fdr::bh_adjust`]
/// (ties get one value whatever their order, so an unstable parallel sort gives the same).
fn bh_in_place(p: &[f64], fdr: &mut [f64]) {
    let mut order: Vec<usize> = (0..p.len()).filter(|&k| !p[k].is_nan()).collect();
    order.par_sort_unstable_by(|&a, &b| p[b].total_cmp(&p[a]));
    fdr.par_iter_mut().for_each(|v| *v = f64::NAN);
    let tests = order.len() as f64;
    let mut running = f64::INFINITY;
    for (pos, &k) in order.iter().enumerate() {
        let rank = tests - pos as f64;
        running = running.min(tests / rank * p[k]);
        fdr[k] = running.min(1.0);
    }
}

/// Copies the strict upper triangle of a square column-major matrix onto the lower one and
/// sets the diagonal to `missing`, in tiles so both reads and writes stay in cache.
fn mirror_upper(m: &mut [f64], n: usize, missing: f64) {
    const TILE: usize = 64;
    for jb in (0..n).step_by(TILE) {
        for ib in (jb..n).step_by(TILE) {
            for j in jb..(jb + TILE).min(n) {
                for i in ib.max(j + 1)..(ib + TILE).min(n) {
                    // (i, j) with i > j takes (j, i)
                    m[j * n + i] = m[i * n + j];
                }
            }
        }
        for d in jb..(jb + TILE).min(n) {
            m[d * n + d] = missing;
        }
    }
}

/// Rows per parallel task of the pass over r (2 KiB of each column).
const ROWS_PER_TASK: usize = 256;

/// The pass over the correlations of a complete block: bins every tested pair and collects
/// the candidates for keeping (with `top`, the strongest pairs of each feature by |r|,
/// which with a common n are those of smallest p).
struct PairScan<'a> {
    r: &'a Mat<f64>,
    x_const: &'a [bool],
    y_const: &'a [bool],
    pos: BlockPosition,
    edges: &'a RBinEdges,
    /// |r| at `rule.max_log_p`: no pair below it can be kept.
    r_min: f64,
    n: f64,
    rule: KeepRule,
}

impl PairScan<'_> {
    /// Tested x features of column j among `rows` (pairs with a constant feature have no
    /// p-value and are neither binned nor kept).
    fn tested_rows(&self, rows: &Range<usize>, j: usize) -> impl Iterator<Item = usize> + '_ {
        let end = if self.pos.symmetric {
            // x_offset + i < y_offset + j
            (self.pos.y_offset + j).saturating_sub(self.pos.x_offset)
        } else {
            usize::MAX
        };
        let rows = rows.start..rows.end.min(end).max(rows.start);
        let column_const = self.y_const[j];
        rows.filter(move |&i| !column_const && !self.x_const[i])
    }

    /// Counts the pairs of `rows` in their bins and adds their candidates to `kept`.
    fn rows(&self, rows: Range<usize>, bin_counts: &mut [u64], kept: &mut Vec<Candidate>) {
        let mut strongest: Vec<Strongest> = rows
            .clone()
            .map(|_| Strongest::new(self.rule.top))
            .collect();
        // Per row, the |r| a pair needs to be a candidate; read by every pair, so kept
        // apart from the heaps.
        let mut floor = vec![self.r_min; rows.len()];
        for j in 0..self.r.ncols() {
            let column = self.r.col_as_slice(j);
            for i in self.tested_rows(&rows, j) {
                let a = column[i].abs().min(1.0);
                bin_counts[self.edges.bin(a)] += 1;
                let local = i - rows.start;
                if a < floor[local] {
                    continue;
                }
                if self.rule.top > 0 {
                    floor[local] = strongest[local].offer(a, j).max(self.r_min);
                } else {
                    let res = cor_result(column[i], self.n);
                    if res.log_p <= self.rule.max_log_p {
                        kept.push((i, j, res));
                    }
                }
            }
        }
        for (i, best) in rows.zip(strongest) {
            kept.extend(
                best.partners()
                    .map(|j| (i, j, cor_result(self.r[(i, j)], self.n))),
            );
        }
    }

    /// The strongest pairs of each y feature (the other member of a symmetric screen).
    fn strongest_per_column(&self) -> Vec<Candidate> {
        let nx = self.r.nrows();
        (0..self.r.ncols())
            .into_par_iter()
            .flat_map_iter(|j| {
                let column = self.r.col_as_slice(j);
                let mut best = Strongest::new(self.rule.top);
                let mut floor = self.r_min;
                for i in self.tested_rows(&(0..nx), j) {
                    let a = column[i].abs().min(1.0);
                    if a >= floor {
                        floor = best.offer(a, i).max(self.r_min);
                    }
                }
                best.partners()
                    .map(|i| (i, j, cor_result(column[i], self.n)))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// The `top` largest |r| offered for one feature, with their partners; ties keep the
/// partner offered first.
struct Strongest {
    top: usize,
    /// Min-heap on |r|, so the weakest kept pair is the one to replace.
    heap: BinaryHeap<Reverse<(TotalOrder, usize)>>,
}

/// An f64 ordered by `total_cmp`.
#[derive(Clone, Copy, PartialEq)]
struct TotalOrder(f64);

impl Eq for TotalOrder {}

impl PartialOrd for TotalOrder {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TotalOrder {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl Strongest {
    fn new(top: usize) -> Self {
        Strongest {
            top,
            heap: BinaryHeap::new(),
        }
    }

    /// Offers a pair; returns the |r| a later pair must reach to be worth offering.
    fn offer(&mut self, abs_r: f64, partner: usize) -> f64 {
        if self.heap.len() < self.top {
            self.heap.push(Reverse((TotalOrder(abs_r), partner)));
        } else if let Some(mut weakest) = self.heap.peek_mut() {
            if abs_r > weakest.0 .0 .0 {
                *weakest = Reverse((TotalOrder(abs_r), partner));
            }
        }
        match self.heap.peek() {
            Some(weakest) if self.heap.len() == self.top => weakest.0 .0 .0,
            _ => 0.0,
        }
    }

    fn partners(self) -> impl Iterator<Item = usize> {
        self.heap.into_iter().map(|Reverse((_, partner))| partner)
    }
}

/// Bin edges on the |r| scale matching the log-p bins of `LogPHistogram` for a fixed df:
/// |r| >= edge[k] exactly when log p <= -k * width.
struct RBinEdges {
    df: f64,
    edges: Vec<f64>,
    /// `edges_at_or_below[c]`: number of edges <= c / LOOKUP_CELLS, for c = 0..=LOOKUP_CELLS,
    /// then the number of edges. The edges of a pair with |r| in cell c lie between
    /// entries c and c + 1, which are equal for most cells: the bin is then found at once.
    edges_at_or_below: Vec<u32>,
}

/// Cells of the uniform lookup on |r| in [0, 1]: a power of two, so the cell of |r| is
/// exact. Bins are about 1e-3 wide in |r| near 0 for n = 1,000, so most cells hold no edge.
const LOOKUP_CELLS: usize = 1 << 16;

impl RBinEdges {
    /// The edges for `df`, kept from the previous block when it had the same df: the
    /// blocks of a screen share n, and the edges cost 40,000 t quantiles.
    fn shared(df: f64) -> Arc<Self> {
        static LAST: Mutex<Option<Arc<RBinEdges>>> = Mutex::new(None);
        let last = || LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(edges) = last().as_ref().filter(|edges| edges.df == df) {
            return Arc::clone(edges);
        }
        // Computed unlocked (in parallel, on the caller's pool).
        let edges = Arc::new(Self::new(df));
        *last() = Some(Arc::clone(&edges));
        edges
    }

    fn new(df: f64) -> Self {
        let mut edges = Self::exact_edges(df);
        // Within ~1e-12 of |r| = 1 the edges of small df (n < 66) are not monotone, being
        // rounded: each becomes the smallest at or after it, so "the last edge at or below
        // |r|" is a search over sorted edges (a NaN edge, where t is infinite, is never
        // below |r|).
        for k in (0..edges.len() - 1).rev() {
            edges[k] = edges[k].min(edges[k + 1]);
        }
        let mut below = 0;
        let edges_at_or_below = (0..=LOOKUP_CELLS)
            .map(|c| {
                let cell_start = c as f64 / LOOKUP_CELLS as f64;
                below += edges[below..].partition_point(|&e| e <= cell_start);
                below as u32
            })
            .chain(std::iter::once(edges.len() as u32))
            .collect();
        RBinEdges {
            df,
            edges,
            edges_at_or_below,
        }
    }

    /// |r| at the upper log-p edge of each histogram bin.
    fn exact_edges(df: f64) -> Vec<f64> {
        let hist = LogPHistogram::with_defaults();
        (0..hist.counts.len())
            .into_par_iter()
            .map(|k| Self::r_at(df, hist.upper_log_p(k)))
            .collect()
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

    /// The bin of a pair with this |r| (in [0, 1]): the last edge at or below it.
    fn bin(&self, abs_r: f64) -> usize {
        let cell = (abs_r * LOOKUP_CELLS as f64) as usize;
        let lo = self.edges_at_or_below[cell] as usize;
        let hi = self.edges_at_or_below[cell + 1] as usize;
        let at_or_below = if lo == hi {
            lo
        } else {
            lo + self.edges[lo..hi].partition_point(|&e| e <= abs_r)
        };
        at_or_below.saturating_sub(1)
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

    /// A filtered block keeps the pairs that the full block gives under the same rule.
    fn assert_keeps_as_full_block(x: &Block, y: &Block, pos: BlockPosition, rule: KeepRule) {
        let full = cor_block(x, y, CorMethod::Pearson, pos, all());
        let mut expected: Vec<Candidate> = (0..full.pairs.len())
            .map(|k| {
                let res = cor_result(full.pairs.estimate[k], full.pairs.n[k]);
                (full.pairs.i[k], full.pairs.j[k], res)
            })
            .filter(|c| c.2.log_p <= rule.max_log_p)
            .collect();
        keep_top(
            &mut expected,
            x.n_features,
            y.n_features,
            pos.symmetric,
            rule.top,
        );
        let mut expected: Vec<_> = expected.iter().map(|c| (c.0, c.1)).collect();
        let out = cor_block(x, y, CorMethod::Pearson, pos, rule);
        let mut kept: Vec<_> = out
            .pairs
            .i
            .iter()
            .copied()
            .zip(out.pairs.j.clone())
            .collect();
        expected.sort_unstable();
        kept.sort_unstable();
        assert!(!kept.is_empty());
        assert_eq!(kept, expected, "{pos:?}, {rule:?}");
    }

    #[test]
    fn top_keeps_the_strongest_pairs_of_each_feature() {
        // More x features than one task's rows, a constant feature on each side.
        let (nx, ny, ns) = (ROWS_PER_TASK + 45, 30, 15);
        let mut xd = data(nx, ns, 6);
        let mut yd = data(ny, ns, 7);
        (0..ns).for_each(|s| xd[s * nx + 3] = 1.5);
        (0..ns).for_each(|s| yd[s * ny + 4] = -2.0);
        let x = Block::new(&xd, nx, ns).unwrap();
        let y = Block::new(&yd, ny, ns).unwrap();
        for (symmetric, x_offset, y_offset) in [(false, 0, 0), (true, 40, 20), (true, 0, 0)] {
            let pos = BlockPosition {
                x_offset,
                y_offset,
                symmetric,
            };
            for (top, max_log_p) in [(1, f64::INFINITY), (4, f64::INFINITY), (3, 0.3f64.ln())] {
                let rule = KeepRule {
                    all: false,
                    max_log_p,
                    top,
                };
                assert_keeps_as_full_block(&x, &y, pos, rule);
                let out = cor_block(&x, &y, CorMethod::Pearson, pos, rule);
                let tested = (0..nx)
                    .flat_map(|i| (0..ny).map(move |j| (i, j)))
                    .filter(|&(i, j)| pos.tested(i, j) && i != 3 && j != 4)
                    .count();
                assert_eq!(out.histogram.total() as usize, tested);
            }
        }
    }

    #[test]
    fn shared_edges_are_those_of_their_df() {
        for df in [998.0, 10.0, 10.0, 998.0] {
            let shared = RBinEdges::shared(df);
            assert_eq!(shared.df, df);
            assert_eq!(shared.edges, RBinEdges::new(df).edges);
        }
    }

    #[test]
    fn bin_is_the_last_edge_at_or_below_abs_r() {
        let mut s = 11u64;
        let mut uniform = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let neighbours = |a: f64| {
            let bits = a.to_bits();
            [
                a,
                f64::from_bits(bits + 1),
                f64::from_bits(bits.saturating_sub(1)),
            ]
        };
        for df in [1.0, 10.0, 63.0, 64.0, 98.0, 998.0, 19998.0, 1e6] {
            let lookup = RBinEdges::new(df);
            let exact = RBinEdges::exact_edges(df);
            let mut values: Vec<f64> = exact
                .iter()
                .copied()
                .chain((0..=LOOKUP_CELLS).map(|c| c as f64 / LOOKUP_CELLS as f64))
                .flat_map(neighbours)
                .filter(|a| (0.0..=1.0).contains(a))
                .collect();
            if exact.windows(2).all(|w| w[0] <= w[1]) {
                // Sorted edges (n >= 66): the same bin as a binary search over all of them.
                assert!(df >= 64.0);
                // small |r| are the common case
                values.extend((0..200_000).map(|k| uniform() * if k % 2 == 0 { 1.0 } else { 0.1 }));
                for a in values {
                    let searched = exact.partition_point(|&e| e <= a).saturating_sub(1);
                    assert_eq!(lookup.bin(a), searched, "df {df}, |r| {a}");
                }
            } else {
                // Otherwise by the definition (fewer values: this one is a linear scan).
                assert!(df < 64.0);
                values.retain(|&a| a > 0.999 || uniform() < 0.02);
                for a in values {
                    let last = exact.iter().rposition(|&e| e <= a).unwrap_or(0);
                    assert_eq!(lookup.bin(a), last, "df {df}, |r| {a}");
                }
            }
        }
    }

    #[test]
    fn shift_and_scale_leave_r_unchanged() {
        let (ns, nf) = (40, 3);
        let base = data(nf, ns, 11);
        let y = Block::new(&base, nf, ns).unwrap();
        for (shift, scale) in [(1e10, 1.0), (0.0, 1e300), (0.0, 1e-300)] {
            let moved: Vec<f64> = base.iter().map(|v| v * scale + shift).collect();
            let x = Block::new(&moved, nf, ns).unwrap();
            for i in 0..nf {
                for j in 0..nf {
                    let r = cor_pair(&x.feature(i), &y.feature(j), CorMethod::Pearson);
                    let expect = naive_r(&y.feature(i), &y.feature(j));
                    assert!(
                        (r.estimate - expect).abs() < 1e-4,
                        "{shift} {scale}: {} vs {expect}",
                        r.estimate
                    );
                }
            }
        }
    }

    #[test]
    fn matrices_match_the_kept_pairs() {
        let (nx, ny, ns) = (6, 4, 20);
        let mut xd = data(nx, ns, 3);
        // feature 2 of x is constant: no result for its pairs
        (0..ns).for_each(|s| xd[s * nx + 2] = 1.0);
        let yd = data(ny, ns, 4);
        let x = Block::new(&xd, nx, ns).unwrap();
        let y = Block::new(&yd, ny, ns).unwrap();
        let missing = -999.0;
        for (yb, symmetric) in [(Some(&y), false), (None, true)] {
            let ncol = if symmetric { nx } else { ny };
            let mut m = vec![vec![0.0; nx * ncol]; 5];
            let [e, t, p, f, n] = m.as_mut_slice() else {
                unreachable!()
            };
            let out = CorMatrices {
                estimate: e,
                statistic: t,
                p_value: p,
                fdr: f,
                n,
            };
            cor_matrices(&x, yb, CorMethod::Pearson, missing, out).unwrap();
            let pos = BlockPosition {
                x_offset: 0,
                y_offset: 0,
                symmetric,
            };
            let pairs = cor_block(&x, yb.unwrap_or(&x), CorMethod::Pearson, pos, all()).pairs;
            let p_all: Vec<f64> = pairs.log_p.iter().map(|l| l.exp()).collect();
            let fdr = crate::fdr::bh_adjust(&p_all);
            let or_missing = |v: f64| if v.is_nan() { missing } else { v };
            for k in 0..pairs.len() {
                let (i, j) = (pairs.i[k], pairs.j[k]);
                for (a, b) in [(i, j), (j, i)]
                    .into_iter()
                    .take(if symmetric { 2 } else { 1 })
                {
                    let cell = b * nx + a;
                    assert_eq!(m[0][cell], or_missing(pairs.estimate[k]));
                    assert_eq!(m[1][cell], or_missing(pairs.statistic[k]));
                    assert_eq!(m[2][cell], or_missing(p_all[k]));
                    assert_eq!(m[3][cell], or_missing(fdr[k]));
                    assert_eq!(m[4][cell], pairs.n[k]);
                }
            }
            if symmetric {
                assert!((0..nx).all(|d| m.iter().all(|mat| mat[d * nx + d] == missing)));
            }
            assert!(m[0][2] == missing && m[3][2] == missing);
        }
    }
}

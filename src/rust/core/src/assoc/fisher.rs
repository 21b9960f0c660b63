//! Fisher's exact test for all pairs of binary features, as `fisher.test(table(a, b))`:
//! the two-sided p-value sums the tables no more likely than the observed one (with R's
//! relative tolerance 1e-7), computed on the log scale so it never underflows. The 2x2
//! counts of every pair come from products of indicator matrices (one product when no value
//! is missing, else four). Pairs share margins (a feature's count of ones recurs across its
//! partners), so a block tabulates the law of each distinct set of margins once and reads
//! the p-values of its pairs from it.

use super::pairs::{run_block, BlockOutput, BlockPosition, KeepRule, PairResult};
use super::{cross_product, Block};
use crate::dist::hyper_pmf;
use faer::Mat;
use rayon::prelude::*;

/// `fisher.test`'s tolerance for "no more likely than the observed table".
const REL_ERR: f64 = 1.0 + 1e-7;
/// Terms below this fraction of a running sum no longer change it.
const NEGLIGIBLE: f64 = 1e-18;

/// The hypergeometric law of the top-left cell of a 2x2 table with fixed margins:
/// `m` = first column total, `n` = second column total, `k` = first row total.
#[derive(Clone, Copy, Debug)]
pub struct Margins {
    pub m: f64,
    pub n: f64,
    pub k: f64,
}

impl Margins {
    fn lo(&self) -> f64 {
        (self.k - self.n).max(0.0)
    }
    fn hi(&self) -> f64 {
        self.k.min(self.m)
    }
    /// P(X = x + 1) / P(X = x).
    fn up(&self, x: f64) -> f64 {
        (self.m - x) * (self.k - x) / ((x + 1.0) * (self.n - self.k + x + 1.0))
    }
    fn log_pmf(&self, x: f64) -> f64 {
        hyper_pmf(x, self.m, self.n, self.k, true)
    }
    fn mode(&self) -> f64 {
        ((self.k + 1.0) * (self.m + 1.0) / (self.m + self.n + 2.0))
            .floor()
            .clamp(self.lo(), self.hi())
    }
}

/// Sum of the probabilities of points `start`, `start + step`, ... relative to a reference,
/// from `first` (the relative probability at `start`) until they vanish or the support ends.
fn tail_sum(mg: &Margins, start: f64, step: f64, first: f64) -> f64 {
    let (lo, hi) = (mg.lo(), mg.hi());
    let mut x = start;
    let mut v = first;
    let mut sum = 0.0;
    while x >= lo && x <= hi && v > 0.0 {
        sum += v;
        if v < NEGLIGIBLE * sum {
            break;
        }
        v *= if step > 0.0 {
            mg.up(x)
        } else {
            1.0 / mg.up(x - 1.0)
        };
        x += step;
    }
    sum
}

/// Natural log of the two-sided p-value of `fisher.test` for top-left cell `x`.
pub fn fisher_two_sided_log_p(x: f64, mg: &Margins) -> f64 {
    let (lo, hi) = (mg.lo(), mg.hi());
    if lo == hi {
        return 0.0;
    }
    let mode = mg.mode();
    let log_rel_x = (mg.log_pmf(x) - mg.log_pmf(mode)).min(0.0); // log(d_x / d_mode)
                                                                 // Total mass relative to the mode.
    let total =
        tail_sum(mg, mode, 1.0, 1.0) + tail_sum(mg, mode - 1.0, -1.0, 1.0 / mg.up(mode - 1.0));
    // Direction from the mode towards x (the side x lies on) and away from it.
    let out = if x > mode { 1.0 } else { -1.0 };
    // x and everything beyond it on its side, relative to d_x.
    let mut selected = tail_sum(mg, x, out, 1.0);
    // Points between x and the mode that are as unlikely as x (only near-ties of d_x).
    let mut v = 1.0;
    let mut p = x - out;
    while (p - mode) * out >= 0.0 && p >= lo && p <= hi {
        v *= if out > 0.0 {
            1.0 / mg.up(p)
        } else {
            mg.up(p - 1.0)
        };
        if v > REL_ERR {
            break;
        }
        selected += v;
        p -= out;
    }
    // The other side: walk from the mode until the probability drops to d_x * REL_ERR,
    // tracking the scale so nothing underflows, then sum the rest of that tail.
    let target = log_rel_x + REL_ERR.ln();
    let mut y = mode - out;
    let mut log_scale = 0.0;
    let mut w = 1.0; // d_y / d_mode = w * exp(log_scale)
    let step_ratio = |y: f64| {
        if out > 0.0 {
            1.0 / mg.up(y)
        } else {
            mg.up(y - 1.0)
        }
    };
    let mut crossed = false;
    while y >= lo && y <= hi {
        w *= step_ratio(y);
        if w < 1e-250 {
            w *= 1e250;
            log_scale -= 250.0 * std::f64::consts::LN_10;
        }
        if w.ln() + log_scale <= target {
            crossed = true;
            break;
        }
        y -= out;
    }
    if crossed {
        let first = (w.ln() + log_scale - log_rel_x).exp();
        selected += tail_sum(mg, y, -out, first);
    }
    (selected.ln() + log_rel_x - total.ln()).min(0.0)
}

/// Points less likely than this fraction of the mode are not tabulated: a table then ends
/// about 20 standard deviations from the mode, and a pair beyond it (p below about 1e-100)
/// takes the walk of `fisher_two_sided_log_p`.
const TABLE_CLIP: f64 = 1e-100;

/// The law of the top-left cell for one set of margins, tabulated relative to the mode
/// where it is not clipped, with the mass of the clipped tails summed once.
struct MarginLaw {
    /// The first tabulated point.
    start: f64,
    mode_at: usize,
    /// d_y / d_mode: non-decreasing up to `mode_at`, non-increasing after it.
    weight: Vec<f64>,
    /// `mass_below[t]`: relative mass of the points before index t, clipped tail included.
    mass_below: Vec<f64>,
    /// `mass_from[t]`: relative mass of the points from index t on, clipped tail included.
    mass_from: Vec<f64>,
    log_total: f64,
}

impl MarginLaw {
    fn new(mg: &Margins) -> Self {
        let (lo, hi) = (mg.lo(), mg.hi());
        let mode = mg.mode();
        // From the mode down, by the ratio of successive probabilities.
        let mut below_mode = Vec::new();
        let (mut w, mut y) = (1.0, mode);
        while y > lo {
            let next = w / mg.up(y - 1.0);
            if next < TABLE_CLIP {
                break;
            }
            below_mode.push(next);
            (w, y) = (next, y - 1.0);
        }
        let start = y;
        let tail_below = if y > lo {
            tail_sum(mg, y - 1.0, -1.0, w / mg.up(y - 1.0))
        } else {
            0.0
        };
        let mut weight: Vec<f64> = below_mode.into_iter().rev().collect();
        let mode_at = weight.len();
        weight.push(1.0);
        let (mut w, mut y) = (1.0, mode);
        while y < hi {
            let next = w * mg.up(y);
            if next < TABLE_CLIP {
                break;
            }
            weight.push(next);
            (w, y) = (next, y + 1.0);
        }
        let tail_above = if y < hi {
            tail_sum(mg, y + 1.0, 1.0, w * mg.up(y))
        } else {
            0.0
        };
        // Both running sums start in their tail, small terms first.
        let mass_below: Vec<f64> = std::iter::once(tail_below)
            .chain(weight.iter().scan(tail_below, |acc, w| {
                *acc += w;
                Some(*acc)
            }))
            .collect();
        let mut mass_from: Vec<f64> = std::iter::once(tail_above)
            .chain(weight.iter().rev().scan(tail_above, |acc, w| {
                *acc += w;
                Some(*acc)
            }))
            .collect();
        mass_from.reverse();
        let log_total = (mass_below[weight.len()] + tail_above).ln();
        MarginLaw {
            start,
            mode_at,
            weight,
            mass_below,
            mass_from,
            log_total,
        }
    }

    /// Natural log of the two-sided p-value for top-left cell `x`; None outside the table.
    fn log_p(&self, x: f64) -> Option<f64> {
        let offset = x - self.start;
        if offset < 0.0 || offset >= self.weight.len() as f64 {
            return None;
        }
        // The points no more likely than x are the `below` first and those from `from` on.
        let as_likely = self.weight[offset as usize] * REL_ERR;
        let below = self.weight[..=self.mode_at].partition_point(|&w| w <= as_likely);
        let from = self.mode_at + self.weight[self.mode_at..].partition_point(|&w| w > as_likely);
        if below > from {
            return Some(0.0); // every point
        }
        let selected = self.mass_below[below] + self.mass_from[from];
        Some((selected.ln() - self.log_total).min(0.0))
    }
}

/// Conditional maximum-likelihood odds ratio, as `fisher.test()$estimate` (which finds it
/// with `uniroot` to about 1e-4; this solves to machine precision).
pub fn conditional_mle(x: f64, mg: &Margins) -> f64 {
    let (lo, hi) = (mg.lo(), mg.hi());
    if x <= lo {
        return 0.0;
    }
    if x >= hi {
        return f64::INFINITY;
    }
    let support: Vec<f64> = (lo as i64..=hi as i64).map(|v| v as f64).collect();
    let log_d: Vec<f64> = support.iter().map(|&s| mg.log_pmf(s)).collect();
    let moments = |theta: f64| {
        let lw: Vec<f64> = log_d
            .iter()
            .zip(&support)
            .map(|(d, s)| d + theta * s)
            .collect();
        let max = lw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = lw.iter().map(|v| (v - max).exp()).collect();
        let sw: f64 = w.iter().sum();
        let mean = w.iter().zip(&support).map(|(a, s)| a * s).sum::<f64>() / sw;
        let var = w
            .iter()
            .zip(&support)
            .map(|(a, s)| a * (s - mean).powi(2))
            .sum::<f64>()
            / sw;
        (mean, var)
    };
    // Newton on the log odds ratio, with bisection safeguards.
    let (mut a, mut b) = (-50.0f64, 50.0f64);
    let mut theta = 0.0;
    for _ in 0..200 {
        let (mean, var) = moments(theta);
        let f = mean - x;
        if f.abs() < 1e-12 * x.max(1.0) {
            break;
        }
        if f > 0.0 {
            b = theta;
        } else {
            a = theta;
        }
        let next = theta - f / var;
        theta = if var > 0.0 && next > a && next < b {
            next
        } else {
            0.5 * (a + b)
        };
        if b - a < 1e-15 {
            break;
        }
    }
    theta.exp()
}

/// Counts of a 2x2 table of two binary vectors over their complete observations: `n11`
/// (both 1), `n10`, `n01`, `n00`.
#[derive(Clone, Copy, Debug)]
struct TwoByTwo {
    n11: f64,
    n10: f64,
    n01: f64,
    n00: f64,
}

impl TwoByTwo {
    /// Margins of `table(a, b)`, whose rows are a = 0, 1 and columns b = 0, 1: the law of
    /// its top-left cell, `n00`.
    fn margins(&self) -> Margins {
        Margins {
            m: self.n00 + self.n10,
            n: self.n01 + self.n11,
            k: self.n00 + self.n01,
        }
    }

    /// The test's result, given its log p-value.
    fn result(&self, log_p: f64, want_mle: bool) -> PairResult {
        // The products are exact integers: one rounding before the log.
        let log_or = ((self.n11 * self.n00) / (self.n10 * self.n01)).ln();
        PairResult {
            estimate: if log_or.is_nan() { f64::NAN } else { log_or },
            statistic: self.n11,
            df: f64::NAN,
            n: self.n11 + self.n10 + self.n01 + self.n00,
            log_p,
            extra: if want_mle {
                conditional_mle(self.n00, &self.margins())
            } else {
                f64::NAN
            },
            reason: super::Reason::Ok,
        }
    }
}

/// All pairs of binary features of `a` and `b` (1 / 0 / NaN).
pub fn fisher_block(
    a: &Block,
    b: &Block,
    want_mle: bool,
    pos: BlockPosition,
    rule: KeepRule,
) -> BlockOutput {
    let complete = !a.missing_features().contains(&true) && !b.missing_features().contains(&true);
    let counts = if complete {
        BlockCounts::complete(a, b)
    } else {
        BlockCounts::pairwise(a, b)
    };
    let nx = a.n_features;
    let log_p = block_log_p(&counts, nx, b.n_features, pos);
    run_block(nx, b.n_features, pos, rule, |i, j| {
        counts.table(i, j).result(log_p[i + j * nx], want_mle)
    })
}

/// The 2x2 counts of every pair of a block.
struct BlockCounts {
    n11: Mat<f64>,
    n10: Mat<f64>,
    n01: Mat<f64>,
    n00: Mat<f64>,
}

/// Samples x features indicator matrix of `level` (0 or 1) in each feature of `block`.
fn indicator(block: &Block, level: f64) -> Mat<f64> {
    block.sample_major(|_, v| {
        v.iter_mut()
            .for_each(|u| *u = if *u == level { 1.0 } else { 0.0 })
    })
}

impl BlockCounts {
    /// Counts over the samples where both features are observed: a product of indicator
    /// matrices for each cell.
    fn pairwise(a: &Block, b: &Block) -> Self {
        let (a1, a0, b1, b0) = (
            indicator(a, 1.0),
            indicator(a, 0.0),
            indicator(b, 1.0),
            indicator(b, 0.0),
        );
        BlockCounts {
            n11: cross_product(&a1, &b1),
            n10: cross_product(&a1, &b0),
            n01: cross_product(&a0, &b1),
            n00: cross_product(&a0, &b0),
        }
    }

    /// Without missing values every table follows from its count of joint ones and the
    /// features' counts of ones: one product instead of four (all counts are exact).
    fn complete(a: &Block, b: &Block) -> Self {
        let (a1, b1) = (indicator(a, 1.0), indicator(b, 1.0));
        let n11 = cross_product(&a1, &b1);
        let ones = |m: &Mat<f64>| -> Vec<f64> {
            (0..m.ncols())
                .map(|f| m.col_as_slice(f).iter().sum())
                .collect()
        };
        let (a_ones, b_ones) = (ones(&a1), ones(&b1));
        let samples = a.n_samples as f64;
        let (nx, ny) = (n11.nrows(), n11.ncols());
        BlockCounts {
            n10: Mat::from_fn(nx, ny, |i, j| a_ones[i] - n11[(i, j)]),
            n01: Mat::from_fn(nx, ny, |i, j| b_ones[j] - n11[(i, j)]),
            n00: Mat::from_fn(nx, ny, |i, j| samples - a_ones[i] - b_ones[j] + n11[(i, j)]),
            n11,
        }
    }

    fn table(&self, i: usize, j: usize) -> TwoByTwo {
        TwoByTwo {
            n11: self.n11[(i, j)],
            n10: self.n10[(i, j)],
            n01: self.n01[(i, j)],
            n00: self.n00[(i, j)],
        }
    }
}

/// log p of every tested pair of a block (index i + j * nx; NaN where not tested). Pairs are
/// grouped by margins: a law shared by several pairs is tabulated once for all of them.
fn block_log_p(counts: &BlockCounts, nx: usize, ny: usize, pos: BlockPosition) -> Vec<f64> {
    // Margins are counts of samples.
    let margins_key = |mg: &Margins| [mg.m as u32, mg.n as u32, mg.k as u32];
    let mut by_margins: Vec<([u32; 3], usize)> = (0..ny)
        .flat_map(|j| (0..nx).map(move |i| (i, j)))
        .filter(|&(i, j)| pos.tested(i, j))
        .map(|(i, j)| (margins_key(&counts.table(i, j).margins()), i + j * nx))
        .collect();
    by_margins.par_sort_unstable();
    let cell = |index: usize| counts.table(index % nx, index / nx);
    let computed: Vec<(usize, f64)> = by_margins
        .par_chunk_by(|a, b| a.0 == b.0)
        .flat_map_iter(|group| {
            let mg = cell(group[0].1).margins();
            // One pair alone: its walk costs about as much as a table.
            let law = (group.len() > 1).then(|| MarginLaw::new(&mg));
            group.iter().map(move |&(_, index)| {
                let x = cell(index).n00;
                let log_p = law
                    .as_ref()
                    .and_then(|law| law.log_p(x))
                    .unwrap_or_else(|| fisher_two_sided_log_p(x, &mg));
                (index, log_p)
            })
        })
        .collect();
    let mut log_p = vec![f64::NAN; nx * ny];
    for (index, lp) in computed {
        log_p[index] = lp;
    }
    log_p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct transcription of fisher.test's two-sided p on the probability scale.
    fn naive(x: f64, mg: &Margins) -> f64 {
        let support: Vec<f64> = (mg.lo() as i64..=mg.hi() as i64)
            .map(|v| v as f64)
            .collect();
        let ld: Vec<f64> = support.iter().map(|&s| mg.log_pmf(s)).collect();
        let max = ld.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let d: Vec<f64> = ld.iter().map(|v| (v - max).exp()).collect();
        let s: f64 = d.iter().sum();
        let dx = d[(x - mg.lo()) as usize];
        d.iter().filter(|&&v| v <= dx * REL_ERR).sum::<f64>() / s
    }

    #[test]
    fn matches_direct_sum_over_the_support() {
        for &(n11, n10, n01, n00) in &[
            (3.0, 1.0, 1.0, 3.0),
            (10.0, 2.0, 3.0, 15.0),
            (0.0, 5.0, 7.0, 2.0),
            (40.0, 60.0, 55.0, 45.0),
            (1.0, 0.0, 0.0, 1.0),
        ] {
            let mg = Margins {
                m: n00 + n10,
                n: n01 + n11,
                k: n00 + n01,
            };
            let ours = fisher_two_sided_log_p(n00, &mg).exp();
            let direct = naive(n00, &mg);
            assert!(
                (ours - direct).abs() <= 1e-12 * direct,
                "{ours} vs {direct}"
            );
        }
    }

    #[test]
    fn tiny_p_stays_positive() {
        // fisher.test(matrix(c(500, 0, 0, 500), 2)): p < 1e-300
        let lp = fisher_two_sided_log_p(
            500.0,
            &Margins {
                m: 500.0,
                n: 500.0,
                k: 500.0,
            },
        );
        assert!(lp.is_finite() && lp < -600.0);
    }

    #[test]
    fn tabulated_law_gives_the_p_value_of_every_point() {
        // Symmetric laws (exact ties), zero cells, one point, and laws whose tails are clipped.
        for &(m, n, k) in &[
            (4.0, 4.0, 4.0),
            (10.0, 10.0, 7.0),
            (12.0, 3.0, 5.0),
            (900.0, 100.0, 800.0),
            (500.0, 500.0, 500.0),
            (30.0, 970.0, 400.0),
            (0.0, 5.0, 3.0),
            (5.0, 5.0, 10.0),
        ] {
            let mg = Margins { m, n, k };
            let law = MarginLaw::new(&mg);
            let log_mode = mg.log_pmf(mg.mode());
            for x in mg.lo() as i64..=mg.hi() as i64 {
                let x = x as f64;
                let walked = fisher_two_sided_log_p(x, &mg);
                match law.log_p(x) {
                    Some(tabulated) => {
                        let p = naive(x, &mg);
                        assert!(
                            (tabulated - walked).abs() <= 1e-12 * walked.abs().max(1.0),
                            "{mg:?}, x = {x}: {tabulated} vs {walked}"
                        );
                        if p > 1e-290 {
                            assert!((tabulated.exp() - p).abs() <= 1e-12 * p, "{mg:?}, x = {x}");
                        }
                    }
                    None => assert!(mg.log_pmf(x) - log_mode < TABLE_CLIP.ln() + 1e-9),
                }
            }
        }
    }

    #[test]
    fn block_equals_the_test_of_each_table() {
        // Random binary features, some rare, with missing values: margins repeat for some
        // pairs and not for others.
        let (na, nb, ns) = (9, 14, 60);
        let mut s = 3u64;
        let mut uniform = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut binary = |nf: usize, missing: bool| -> Vec<f64> {
            let rate: Vec<f64> = (0..nf).map(|f| [0.5, 0.1, 0.03][f % 3]).collect();
            (0..nf * ns)
                .map(|v| {
                    let u = uniform();
                    if missing && v % 17 == 0 {
                        f64::NAN
                    } else if u < rate[v % nf] {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let (with_na, complete, bd) = (binary(na, true), binary(na, false), binary(nb, false));
        let b = Block::new(&bd, nb, ns).unwrap();
        let rule = KeepRule {
            all: true,
            max_log_p: f64::INFINITY,
            top: 0,
        };
        for (ad, symmetric) in [
            (&with_na, false),
            (&with_na, true),
            (&complete, false),
            (&complete, true),
        ] {
            let a = Block::new(ad, na, ns).unwrap();
            let other = if symmetric { &a } else { &b };
            let pos = BlockPosition {
                x_offset: 0,
                y_offset: 0,
                symmetric,
            };
            let out = fisher_block(&a, other, true, pos, rule);
            let expected_pairs = if symmetric {
                na * (na - 1) / 2
            } else {
                na * nb
            };
            assert_eq!(out.pairs.len(), expected_pairs);
            for k in 0..out.pairs.len() {
                let (x, y) = (a.feature(out.pairs.i[k]), other.feature(out.pairs.j[k]));
                let mut t = TwoByTwo {
                    n11: 0.0,
                    n10: 0.0,
                    n01: 0.0,
                    n00: 0.0,
                };
                for (u, v) in x.iter().zip(&y).filter(|(u, v)| !u.is_nan() && !v.is_nan()) {
                    match (*u == 1.0, *v == 1.0) {
                        (true, true) => t.n11 += 1.0,
                        (true, false) => t.n10 += 1.0,
                        (false, true) => t.n01 += 1.0,
                        (false, false) => t.n00 += 1.0,
                    }
                }
                let direct = t.result(fisher_two_sided_log_p(t.n00, &t.margins()), true);
                let got = out.pairs.log_p[k];
                assert!(
                    (got - direct.log_p).abs() <= 1e-12 * direct.log_p.abs().max(1.0),
                    "{t:?}: {got} vs {}",
                    direct.log_p
                );
                assert_eq!(out.pairs.statistic[k], direct.statistic);
                assert_eq!(out.pairs.n[k], direct.n);
                assert_eq!(out.pairs.extra[k], direct.extra);
                let same = |u: f64, v: f64| u == v || (u.is_nan() && v.is_nan());
                assert!(same(out.pairs.estimate[k], direct.estimate));
            }
        }
    }
}

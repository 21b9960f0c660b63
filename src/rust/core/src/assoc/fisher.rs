//! Fisher's exact test for all pairs of binary features, as `fisher.test(table(a, b))`:
//! the two-sided p-value sums the tables no more likely than the observed one (with R's
//! relative tolerance 1e-7), computed on the log scale so it never underflows. The 2x2
//! counts of every pair come from four matrix products of indicator matrices.

use super::pairs::{run_block, BlockOutput, BlockPosition, KeepRule, PairResult};
use super::{cross_product, Block};
use crate::dist::hyper_pmf;

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

/// 2x2 test of two binary vectors (1 / 0 / NaN), over their complete observations.
/// Counts: `n11` (both 1), `n10`, `n01`, `n00`.
pub fn fisher_from_counts(n11: f64, n10: f64, n01: f64, n00: f64, want_mle: bool) -> PairResult {
    // Rows of table(a, b) are a = 0, 1; columns b = 0, 1.
    let mg = Margins {
        m: n00 + n10,
        n: n01 + n11,
        k: n00 + n01,
    };
    let total = n11 + n10 + n01 + n00;
    let log_or = (n11.ln() + n00.ln()) - (n10.ln() + n01.ln());
    PairResult {
        estimate: if log_or.is_nan() { f64::NAN } else { log_or },
        statistic: n11,
        df: f64::NAN,
        n: total,
        log_p: fisher_two_sided_log_p(n00, &mg),
        extra: if want_mle {
            conditional_mle(n00, &mg)
        } else {
            f64::NAN
        },
        reason: super::Reason::Ok,
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
    let indicator = |blk: &Block, level: f64| {
        blk.sample_major(|_, v| {
            v.iter_mut()
                .for_each(|u| *u = if *u == level { 1.0 } else { 0.0 })
        })
    };
    let (a1, a0, b1, b0) = (
        indicator(a, 1.0),
        indicator(a, 0.0),
        indicator(b, 1.0),
        indicator(b, 0.0),
    );
    let n11 = cross_product(&a1, &b1);
    let n10 = cross_product(&a1, &b0);
    let n01 = cross_product(&a0, &b1);
    let n00 = cross_product(&a0, &b0);
    run_block(a.n_features, b.n_features, pos, rule, |i, j| {
        fisher_from_counts(n11[(i, j)], n10[(i, j)], n01[(i, j)], n00[(i, j)], want_mle)
    })
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
}

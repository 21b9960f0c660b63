//! Gaussian-copula simulation of counts: gene-gene correlation kept by drawing correlated
//! normals per cell and mapping them through each gene's quantile function (negative
//! binomial, Poisson when the size is infinite, zero-inflated when a gene has a
//! zero-inflation probability). The correlation is estimated from the normal scores of
//! randomised quantile residuals (Dunn & Smyth 1996) and then corrected for the
//! attenuation of discrete counts by a Hermite expansion of the scores' correlation as a
//! function of the latent one. Every draw comes from a seeded stream keyed by the cell, so
//! results depend neither on threads nor on how cells are split into blocks.

use crate::dist::{nb_cdf, nb_quantile, norm_cdf, norm_quantile, Tail};
use crate::rng;
use rand::Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

/// One gene's marginal at one cell: NB(`mu`, `size`) (Poisson for an infinite size), with
/// a point mass `zero` at 0 (zero inflation; 0 for none).
#[derive(Clone, Copy, Debug)]
pub struct Marginal {
    pub mu: f64,
    pub size: f64,
    pub zero: f64,
}

impl Marginal {
    /// `P(Y <= y)`.
    pub fn cdf(&self, y: f64) -> f64 {
        if y < 0.0 {
            return 0.0;
        }
        self.zero + (1.0 - self.zero) * nb_cdf(y, self.mu, self.size)
    }

    /// Smallest `y` with `P(Y <= y) >= u`.
    pub fn quantile(&self, u: f64) -> f64 {
        if u <= self.zero {
            return 0.0;
        }
        let v = ((u - self.zero) / (1.0 - self.zero)).clamp(1e-300, 1.0 - 1e-16);
        nb_quantile(v, self.mu, self.size)
    }

    /// `P(Y = k + 1) / P(Y = k)` of the count part.
    fn pmf_ratio(&self, k: f64) -> f64 {
        if self.size.is_infinite() {
            self.mu / (k + 1.0)
        } else {
            (k + self.size) / (k + 1.0) * self.mu / (self.mu + self.size)
        }
    }
}

fn marginal(mu: &[f64], size: &[f64], zero: &[f64], n_genes: usize, k: usize) -> Marginal {
    Marginal {
        mu: mu[k],
        size: size[k],
        zero: zero[k % n_genes],
    }
}

/// A uniform draw strictly inside (0, 1).
fn open_uniform(s: &mut rng::Stream) -> f64 {
    ((s.random::<u64>() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Normal scores `qnorm(u)` of randomised quantile residuals, `u ~ U(F(y - 1), F(y))`
/// under each gene's marginal (`mu`, `size` per entry, `zero` per gene). Matrices genes x
/// cells, column-major; the block's first cell is cell `first_cell` of the data, whose
/// stream `[0, cell]` gives one uniform per gene in gene order.
pub fn normal_scores(
    y: &[f64],
    mu: &[f64],
    size: &[f64],
    zero: &[f64],
    n_genes: usize,
    first_cell: usize,
    seed: u64,
) -> Vec<f64> {
    let g = n_genes.max(1);
    let mut out = vec![0.0; y.len()];
    out.par_chunks_mut(g).enumerate().for_each(|(j, col)| {
        let mut s = rng::stream(seed, &[0, (first_cell + j) as u64]);
        for (i, z) in col.iter_mut().enumerate() {
            let k = i + j * g;
            let m = marginal(mu, size, zero, g, k);
            let hi = m.cdf(y[k]);
            let lo = m.cdf(y[k] - 1.0);
            let u = lo + open_uniform(&mut s) * (hi - lo);
            *z = norm_quantile(u.clamp(1e-300, 1.0 - 1e-16));
        }
    });
    out
}

/// Counts genes x cells (column-major) from the marginals joined by a Gaussian copula:
/// `l` holds one lower Cholesky factor (genes x genes, column-major) per level, side by
/// side, and `level[j]` is the factor of cell `j`. Cell `j` of draw `d` uses stream
/// `[1, d, j]` (standard normals from `rand_distr`).
#[allow(clippy::too_many_arguments)]
pub fn simulate(
    mu: &[f64],
    size: &[f64],
    zero: &[f64],
    n_genes: usize,
    l: &[f64],
    level: &[usize],
    seed: u64,
    draw: u64,
) -> Vec<f64> {
    let g = n_genes.max(1);
    // Row i of each factor made contiguous (its transpose, column-major), for the products.
    let rows: Vec<f64> = l
        .chunks(g * g)
        .flat_map(|lk| (0..g * g).map(move |k| lk[(k / g) + (k % g) * g]))
        .collect();
    let mut out = vec![0.0; mu.len()];
    out.par_chunks_mut(g).enumerate().for_each(|(j, col)| {
        let mut s = rng::stream(seed, &[1, draw, j as u64]);
        let e: Vec<f64> = (0..g).map(|_| s.sample(StandardNormal)).collect();
        let lj = &rows[level[j] * g * g..(level[j] + 1) * g * g];
        for (i, y) in col.iter_mut().enumerate() {
            let z: f64 = lj[i * g..=i * g + i]
                .iter()
                .zip(&e)
                .map(|(a, b)| a * b)
                .sum();
            let u = norm_cdf(z, Tail::Lower, false).clamp(1e-300, 1.0 - 1e-16);
            *y = marginal(mu, size, zero, g, i + j * g).quantile(u);
        }
    });
    out
}

/// Probabilities beyond which the tails of a marginal are lumped into one bin.
const TAIL: f64 = 1e-10;
/// Most cut points per marginal: wider supports are binned in strides of several counts.
const MAX_CUTS: f64 = 2000.0;

/// Normalised Hermite coefficients `E[m(Y) He_n(X)] / sqrt(n!)`, n = 1..=`n_terms`, of the
/// normal score's conditional mean `m(Y) = E[X | Y]`, where the count `Y` is `X ~ N(0, 1)`
/// cut at `qnorm(F(k))`. Two genes whose latent normals correlate `rho` have scores that
/// correlate `sum_n rho^n a_n b_n` (Mehler's formula; the randomisation is independent
/// between genes), so the coefficients give the attenuation of any latent correlation.
pub fn hermite_coefficients(m: Marginal, n_terms: usize) -> Vec<f64> {
    let mut a = vec![0.0; n_terms];
    // The counts from the lower TAIL quantile up (zero inflation is a point mass at 0
    // that the cdf includes); quantiles are searched only when the lower tail is needed.
    let f0 = m.cdf(0.0);
    if f0 >= 1.0 - TAIL || !f0.is_finite() {
        return a; // (almost) a point mass: the score carries no information
    }
    let k0 = if f0 >= TAIL { 0.0 } else { m.quantile(TAIL) };
    let sd = (m.mu + m.mu * m.mu / m.size).sqrt();
    let stride = ((m.mu + 8.0 * sd - k0) / MAX_CUTS).ceil().max(1.0);
    // A bound on the walk, should rounding keep the accumulated cdf below 1 - TAIL.
    let k_hi = k0 + m.mu + 40.0 * sd + 10.0;
    let mut f = m.cdf(k0);
    let mut pmf = if k0 == 0.0 {
        (1.0 - m.zero) * nb_cdf(0.0, m.mu, m.size)
    } else {
        (1.0 - m.zero) * (nb_cdf(k0, m.mu, m.size) - nb_cdf(k0 - 1.0, m.mu, m.size))
    };
    let mut cuts: Vec<f64> = Vec::new();
    let mut probs: Vec<f64> = Vec::new();
    let mut k = k0;
    let mut last = 0.0;
    while f < 1.0 - TAIL && k <= k_hi {
        if f > last {
            cuts.push(norm_quantile(f));
            probs.push(f);
            last = f;
        }
        for _ in 0..stride as usize {
            pmf *= m.pmf_ratio(k);
            k += 1.0;
            f += pmf;
        }
    }
    if cuts.is_empty() {
        return a;
    }
    let phi = |c: f64| (-0.5 * c * c).exp() / (2.0 * std::f64::consts::PI).sqrt();
    // Conditional means of the bins: below the first cut, between cuts, above the last.
    let nc = cuts.len();
    let mut means = Vec::with_capacity(nc + 1);
    means.push(-phi(cuts[0]) / probs[0]);
    for i in 1..nc {
        means.push((phi(cuts[i - 1]) - phi(cuts[i])) / (probs[i] - probs[i - 1]));
    }
    means.push(phi(cuts[nc - 1]) / (1.0 - probs[nc - 1]));
    // a_n = sum over cuts of (jump of m) phi(c) He_{n-1}(c); normalised Hermite recursion.
    for (i, &c) in cuts.iter().enumerate() {
        let w = (means[i + 1] - means[i]) * phi(c);
        let (mut h_prev, mut h) = (0.0, 1.0);
        for (n, an) in a.iter_mut().enumerate() {
            *an += w * h / ((n + 1) as f64).sqrt();
            let next = (c * h - (n as f64).sqrt() * h_prev) / ((n + 1) as f64).sqrt();
            h_prev = h;
            h = next;
        }
    }
    a
}

/// Hermite coefficients of every entry (genes x cells, column-major) as `n_terms` stacked
/// genes x cells matrices.
pub fn hermite_matrix(
    mu: &[f64],
    size: &[f64],
    zero: &[f64],
    n_genes: usize,
    n_terms: usize,
) -> Vec<f64> {
    let per: Vec<Vec<f64>> = (0..mu.len())
        .into_par_iter()
        .map(|k| hermite_coefficients(marginal(mu, size, zero, n_genes, k), n_terms))
        .collect();
    let mut out = vec![0.0; mu.len() * n_terms];
    for (k, a) in per.iter().enumerate() {
        for (n, v) in a.iter().enumerate() {
            out[n * mu.len() + k] = *v;
        }
    }
    out
}

/// Latent correlations: for each pair, the `rho` in [-1, 1] whose expected score
/// correlation `sum_n rho^n s[n]` equals the observed `r` (bisection; the expansion is
/// increasing in `rho` for the monotone conditional means). `r` is genes x genes, `s` the
/// `n_terms` stacked genes x genes matrices of mean coefficient products.
pub fn latent_correlation(r: &[f64], s: &[f64], n_genes: usize) -> Vec<f64> {
    let gg = n_genes * n_genes;
    let n_terms = s.len() / gg.max(1);
    let mut out = vec![0.0; gg];
    out.par_chunks_mut(n_genes.max(1))
        .enumerate()
        .for_each(|(h, col)| {
            for (g, v) in col.iter_mut().enumerate() {
                let k = g + h * n_genes;
                if g == h {
                    *v = 1.0;
                    continue;
                }
                let f = |rho: f64| {
                    (0..n_terms).fold((0.0, 1.0), |(acc, p), n| {
                        let p = p * rho;
                        (acc + p * s[n * gg + k], p)
                    })
                };
                let target = r[k];
                if !target.is_finite() || f(1.0).0 <= f(-1.0).0 {
                    *v = f64::NAN;
                    continue;
                }
                let (mut lo, mut hi) = (-1.0, 1.0);
                for _ in 0..60 {
                    let mid = 0.5 * (lo + hi);
                    if f(mid).0 < target {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                *v = 0.5 * (lo + hi);
            }
        });
    out
}

/// Zero-inflation probability of each gene (counts `y`, genes x cells) by maximum
/// likelihood with its NB means and sizes held at `mu`, `size`: the zeros in excess of the
/// NB's. 0 when the NB alone has as many zeros as the data can support.
pub fn zero_inflation(y: &[f64], mu: &[f64], size: &[f64], n_genes: usize) -> Vec<f64> {
    let g = n_genes.max(1);
    let n_cells = y.len() / g;
    (0..n_genes)
        .into_par_iter()
        .map(|i| {
            let mut p0 = Vec::new();
            let mut positive = 0.0;
            for j in 0..n_cells {
                let k = i + j * g;
                if y[k] == 0.0 {
                    p0.push(nb_cdf(0.0, mu[k], size[k]));
                } else {
                    positive += 1.0;
                }
            }
            // Score of the log-likelihood in pi: decreasing (the likelihood is concave).
            let score = |pi: f64| {
                p0.iter()
                    .map(|&q| (1.0 - q) / (pi + (1.0 - pi) * q))
                    .sum::<f64>()
                    - positive / (1.0 - pi)
            };
            if p0.is_empty() || score(0.0) <= 0.0 {
                return 0.0;
            }
            if positive == 0.0 {
                return 1.0;
            }
            let (mut lo, mut hi) = (0.0, 1.0);
            for _ in 0..60 {
                let mid = 0.5 * (lo + hi);
                if score(mid) > 0.0 {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            0.5 * (lo + hi)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nb(mu: f64, size: f64) -> Marginal {
        Marginal {
            mu,
            size,
            zero: 0.0,
        }
    }

    #[test]
    fn scores_of_nb_counts_are_standard_normal() {
        let n = 20000;
        let (mu, size, zero) = (vec![3.0; n], vec![2.0; n], [0.0]);
        let y = simulate(&mu, &size, &zero, 1, &[1.0], &vec![0; n], 7, 0);
        let z = normal_scores(&y, &mu, &size, &zero, 1, 0, 8);
        let mean = z.iter().sum::<f64>() / n as f64;
        let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.04);
        let ymean = y.iter().sum::<f64>() / n as f64;
        assert!((ymean - 3.0).abs() < 0.1);
    }

    /// Monte Carlo correlation of the scores of two genes with latent correlation `rho`.
    fn score_correlation(ma: Marginal, mb: Marginal, rho: f64, n: usize) -> f64 {
        let mu: Vec<f64> = (0..n).flat_map(|_| [ma.mu, mb.mu]).collect();
        let size: Vec<f64> = (0..n).flat_map(|_| [ma.size, mb.size]).collect();
        let zero = [ma.zero, mb.zero];
        let l = [1.0, rho, 0.0, (1.0_f64 - rho * rho).sqrt()];
        let y = simulate(&mu, &size, &zero, 2, &l, &vec![0; n], 3, 0);
        let z = normal_scores(&y, &mu, &size, &zero, 2, 0, 4);
        let (a, b): (Vec<f64>, Vec<f64>) = (0..n).map(|j| (z[2 * j], z[2 * j + 1])).unzip();
        a.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>() / n as f64
    }

    #[test]
    fn hermite_expansion_predicts_the_attenuated_score_correlation() {
        let rho: f64 = 0.7;
        let cases = [
            (nb(0.5, 2.0), nb(3.0, 4.0)),
            (
                nb(5.0, 1.0),
                Marginal {
                    mu: 2.0,
                    size: f64::INFINITY,
                    zero: 0.0,
                },
            ),
            (
                Marginal {
                    mu: 4.0,
                    size: 3.0,
                    zero: 0.3,
                },
                nb(500.0, 2.0),
            ),
        ];
        for (ma, mb) in cases {
            let (a, b) = (hermite_coefficients(ma, 12), hermite_coefficients(mb, 12));
            // a_1 is the variance of the conditional mean: at most 1.
            assert!(a[0] > 0.0 && a[0] <= 1.0 && b[0] > 0.0 && b[0] <= 1.0);
            let predicted: f64 = (0..12).map(|n| rho.powi(n as i32 + 1) * a[n] * b[n]).sum();
            let simulated = score_correlation(ma, mb, rho, 200_000);
            assert!(
                (predicted - simulated).abs() < 0.01,
                "{predicted} vs {simulated}"
            );
            assert!(predicted < rho);
        }
    }

    #[test]
    fn latent_correlation_inverts_the_expansion() {
        let (ma, mb) = (nb(0.8, 2.0), nb(2.0, 5.0));
        let (a, b) = (hermite_coefficients(ma, 10), hermite_coefficients(mb, 10));
        let s: Vec<f64> = (0..10)
            .flat_map(|n| [a[n] * a[n], a[n] * b[n], a[n] * b[n], b[n] * b[n]])
            .collect();
        for rho in [-0.6_f64, 0.2, 0.8] {
            let r: f64 = (0..10).map(|n| rho.powi(n as i32 + 1) * a[n] * b[n]).sum();
            let out = latent_correlation(&[1.0, r, r, 1.0], &s, 2);
            assert!((out[1] - rho).abs() < 1e-9 && (out[2] - rho).abs() < 1e-9 && out[0] == 1.0);
        }
    }

    #[test]
    fn zero_inflation_is_recovered() {
        let n = 20000;
        let (mu, size) = (vec![4.0; n], vec![2.0; n]);
        let y = simulate(&mu, &size, &[0.25], 1, &[1.0], &vec![0; n], 11, 0);
        let pi = zero_inflation(&y, &mu, &size, 1)[0];
        assert!((pi - 0.25).abs() < 0.02, "{pi}");
        let y0 = simulate(&mu, &size, &[0.0], 1, &[1.0], &vec![0; n], 12, 0);
        assert!(zero_inflation(&y0, &mu, &size, 1)[0] < 0.02);
    }
}

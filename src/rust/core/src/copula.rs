//! Gaussian-copula simulation of negative binomial counts: gene-gene correlation kept by
//! drawing correlated normal scores per cell and mapping them through each gene's NB
//! quantile function; the correlation is estimated from the normal scores of randomised
//! quantile residuals (Dunn & Smyth 1996) of a fitted model. Every draw comes from a
//! seeded stream keyed by the task (gene or cell), so results do not depend on threads.

use crate::dist::{nb_cdf, nb_quantile, norm_cdf, norm_quantile, Tail};
use crate::rng;
use rand::Rng;
use rayon::prelude::*;

/// A uniform draw strictly inside (0, 1).
fn open_uniform(s: &mut rng::Stream) -> f64 {
    ((s.random::<u64>() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Normal scores `qnorm(u)` of randomised quantile residuals, `u ~ U(F(y - 1), F(y))`
/// under each gene's fitted NB (`mu`, `size` per entry). All matrices genes x cells,
/// column-major. Gene `g` draws from stream `[0, g]`.
pub fn normal_scores(y: &[f64], mu: &[f64], size: &[f64], n_genes: usize, seed: u64) -> Vec<f64> {
    let n_cells = y.len() / n_genes.max(1);
    let rows: Vec<Vec<f64>> = (0..n_genes)
        .into_par_iter()
        .map(|g| {
            let mut s = rng::stream(seed, &[0, g as u64]);
            (0..n_cells)
                .map(|j| {
                    let k = g + j * n_genes;
                    let hi = nb_cdf(y[k], mu[k], size[k]);
                    let lo = if y[k] > 0.0 {
                        nb_cdf(y[k] - 1.0, mu[k], size[k])
                    } else {
                        0.0
                    };
                    let u = lo + open_uniform(&mut s) * (hi - lo);
                    norm_quantile(u.clamp(1e-300, 1.0 - 1e-16))
                })
                .collect()
        })
        .collect();
    let mut out = vec![0.0; n_genes * n_cells];
    for (g, row) in rows.iter().enumerate() {
        for (j, z) in row.iter().enumerate() {
            out[g + j * n_genes] = *z;
        }
    }
    out
}

/// Counts genes x cells (column-major) from the NB marginals `mu`, `size` joined by a
/// Gaussian copula with correlation `l l'` (`l` lower triangular, genes x genes,
/// column-major). Cell `j` of draw `d` uses stream `[1, d, j]`.
pub fn simulate(
    mu: &[f64],
    size: &[f64],
    n_genes: usize,
    l: &[f64],
    seed: u64,
    draw: u64,
) -> Vec<f64> {
    let n_cells = mu.len() / n_genes.max(1);
    let cols: Vec<Vec<f64>> = (0..n_cells)
        .into_par_iter()
        .map(|j| {
            let mut s = rng::stream(seed, &[1, draw, j as u64]);
            let e: Vec<f64> = (0..n_genes)
                .map(|_| norm_quantile(open_uniform(&mut s)))
                .collect();
            (0..n_genes)
                .map(|g| {
                    let z: f64 = (0..=g).map(|c| l[g + c * n_genes] * e[c]).sum();
                    let u = norm_cdf(z, Tail::Lower, false).clamp(1e-300, 1.0 - 1e-16);
                    let k = g + j * n_genes;
                    nb_quantile(u, mu[k], size[k])
                })
                .collect()
        })
        .collect();
    cols.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_of_nb_counts_are_standard_normal() {
        let n = 20000;
        let (mu, size) = (vec![3.0; n], vec![2.0; n]);
        let ident = [1.0];
        let y = simulate(&mu, &size, 1, &ident, 7, 0);
        let z = normal_scores(&y, &mu, &size, 1, 8);
        let mean = z.iter().sum::<f64>() / n as f64;
        let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.04);
        let ymean = y.iter().sum::<f64>() / n as f64;
        assert!((ymean - 3.0).abs() < 0.1);
    }

    #[test]
    fn the_copula_correlation_is_recovered() {
        let (n, rho) = (20000, 0.7);
        let mu = vec![5.0; 2 * n];
        let size = vec![4.0; 2 * n];
        let l = [1.0, rho, 0.0, (1.0_f64 - rho * rho).sqrt()];
        let y = simulate(&mu, &size, 2, &l, 3, 0);
        let z = normal_scores(&y, &mu, &size, 2, 4);
        let (a, b): (Vec<f64>, Vec<f64>) = (0..n).map(|j| (z[2 * j], z[2 * j + 1])).unzip();
        let cor = a.iter().zip(&b).map(|(x, y)| x * y).sum::<f64>() / n as f64;
        // Discreteness attenuates the latent correlation a little.
        assert!(cor > 0.6 && cor < 0.72, "{cor}");
    }
}

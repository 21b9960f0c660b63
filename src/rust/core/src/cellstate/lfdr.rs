//! False discovery rates of Mahalanobis distances from null genes (kompot's
//! `compute_fdr_statistics`, reference/kompot.md section 2.4): an empirical p-value, and a
//! local FDR `f0 / f_mix` from monotone (non-increasing) densities of the null and of all
//! real distances, each a Gaussian KDE of the sample reflected at 0 (Scott's bandwidth),
//! made monotone by PAVA and normalised on a 500-point grid.

use rayon::prelude::*;

const GRID_POINTS: usize = 500;
const GRID_STRETCH: f64 = 1.05;
/// Mixture densities below this share of their maximum give a local FDR of 1.
const DENSITY_FLOOR: f64 = 1e-10;

/// Empirical p-values and local FDRs of `real` distances against `null` ones (NaN in, NaN out).
pub struct NullFdr {
    pub p_value: Vec<f64>,
    pub local_fdr: Vec<f64>,
}

pub fn null_gene_fdr(real: &[f64], null: &[f64]) -> Result<NullFdr, String> {
    let mut null: Vec<f64> = null.iter().copied().filter(|v| v.is_finite()).collect();
    let finite: Vec<f64> = real.iter().copied().filter(|v| v.is_finite()).collect();
    if null.len() < 2 || finite.len() < 2 {
        return Err("at least 2 real and 2 null distances are needed for the local FDR".into());
    }
    null.sort_by(f64::total_cmp);
    let n_null = null.len() as f64;
    let raw_p: Vec<f64> = real
        .iter()
        .map(|&d| {
            if d.is_finite() {
                (null.len() - null.partition_point(|&v| v < d)) as f64 / n_null
            } else {
                f64::NAN
            }
        })
        .collect();
    let floor = raw_p
        .iter()
        .copied()
        .filter(|&p| p > 0.0)
        .fold(f64::INFINITY, f64::min);
    let floor = if floor.is_finite() {
        floor
    } else {
        1.0 / n_null
    };
    let p_value = raw_p
        .iter()
        .map(|&p| if p == 0.0 { floor } else { p })
        .collect();

    let top = finite
        .iter()
        .chain(null.iter())
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
        * GRID_STRETCH;
    let grid: Vec<f64> = (0..GRID_POINTS)
        .map(|k| top * k as f64 / (GRID_POINTS - 1) as f64)
        .collect();
    let f0 = monotone_density(&null, &grid);
    let fmix = monotone_density(&finite, &grid);
    let fmax = fmix.iter().copied().fold(0.0, f64::max);
    let ratio: Vec<f64> = f0
        .iter()
        .zip(&fmix)
        .map(|(&a, &b)| {
            if b > DENSITY_FLOOR * fmax {
                (a / b).clamp(0.0, 1.0)
            } else {
                1.0
            }
        })
        .collect();
    let lfdr_grid = pava_decreasing(&ratio);
    let local_fdr = real
        .iter()
        .map(|&d| {
            if d.is_finite() {
                interpolate(&grid, &lfdr_grid, d)
            } else {
                f64::NAN
            }
        })
        .collect();
    Ok(NullFdr { p_value, local_fdr })
}

/// Non-increasing density on `grid` of a non-negative sample: reflected KDE, PAVA,
/// clipped at 0, normalised by the trapezoid rule.
pub fn monotone_density(sample: &[f64], grid: &[f64]) -> Vec<f64> {
    let n = 2 * sample.len();
    // The reflected sample has mean 0: its unbiased variance is 2 sum d^2 / (n - 1).
    let var = 2.0 * sample.iter().map(|d| d * d).sum::<f64>() / (n - 1) as f64;
    let h = (n as f64).powf(-0.2) * var.sqrt();
    let norm = 1.0 / (n as f64 * h * (2.0 * std::f64::consts::PI).sqrt());
    let kde: Vec<f64> = grid
        .par_iter()
        .map(|&x| {
            let s: f64 = sample
                .iter()
                .map(|&d| {
                    let a = (x - d) / h;
                    let b = (x + d) / h;
                    (-0.5 * a * a).exp() + (-0.5 * b * b).exp()
                })
                .sum();
            2.0 * norm * s
        })
        .collect();
    let mono: Vec<f64> = pava_decreasing(&kde)
        .into_iter()
        .map(|v| v.max(0.0))
        .collect();
    let area: f64 = (1..grid.len())
        .map(|k| 0.5 * (mono[k] + mono[k - 1]) * (grid[k] - grid[k - 1]))
        .sum();
    if area > 0.0 {
        mono.into_iter().map(|v| v / area).collect()
    } else {
        mono
    }
}

/// Least-squares non-increasing fit (pool adjacent violators, equal weights).
pub fn pava_decreasing(y: &[f64]) -> Vec<f64> {
    let mut blocks: Vec<(f64, usize)> = Vec::with_capacity(y.len());
    for &v in y {
        let mut cur = (v, 1usize);
        while let Some(&(prev, w)) = blocks.last() {
            if prev < cur.0 {
                blocks.pop();
                let total = w + cur.1;
                cur = (
                    (prev * w as f64 + cur.0 * cur.1 as f64) / total as f64,
                    total,
                );
            } else {
                break;
            }
        }
        blocks.push(cur);
    }
    blocks
        .into_iter()
        .flat_map(|(v, w)| std::iter::repeat_n(v, w))
        .collect()
}

/// Linear interpolation, 1 left of the grid and 0 right of it.
fn interpolate(x: &[f64], y: &[f64], at: f64) -> f64 {
    if at < x[0] {
        return 1.0;
    }
    if at > x[x.len() - 1] {
        return 0.0;
    }
    let k = x.partition_point(|&v| v <= at).clamp(1, x.len() - 1);
    let (x0, x1) = (x[k - 1], x[k]);
    let t = if x1 > x0 { (at - x0) / (x1 - x0) } else { 0.0 };
    y[k - 1] + t * (y[k] - y[k - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pava_pools_violators() {
        assert_eq!(
            pava_decreasing(&[3.0, 1.0, 2.0, 0.0]),
            vec![3.0, 1.5, 1.5, 0.0]
        );
    }

    #[test]
    fn large_distances_get_low_local_fdr() {
        let null: Vec<f64> = (0..500).map(|k| (k % 50) as f64 / 25.0).collect();
        let mut real = null.clone();
        real.extend((0..100).map(|k| 8.0 + k as f64 / 50.0));
        let fdr = null_gene_fdr(&real, &null).unwrap();
        assert!(fdr.local_fdr[550] < 0.05);
        assert!(fdr.local_fdr[10] > 0.5);
        // Zero p-values take the smallest positive one (10 null values at the top).
        assert!((fdr.p_value[550] - 10.0 / 500.0).abs() < 1e-15);
    }
}

//! Differential abundance by neighbourhood counts with replicates (`method = "neighbourhood"`).
//!
//! Each landmark's neighbourhood is its `k` nearest cells of the two conditions pooled: a
//! k-nearest-neighbour density estimate, whose radius adapts to the local density and to the
//! dimension of the embedding (a fixed length scale cannot: in 10+ dimensions any fixed
//! scale large enough to smooth is so large that every density is flat). Within one
//! neighbourhood the volume is common to all samples, so the ratio of two samples' densities
//! there is the ratio of their cell fractions in it.
//!
//! The test is across samples, as miloR's: per landmark and sample the log fraction
//! `ln((c + 1/2) / N_s)`, less a per-sample normalisation (the half-sample mode over landmarks
//! of the sample's deviation from the landmark mean, so that a global change of composition is not
//! a shift everywhere); a two-group t statistic whose variance is moderated across
//! landmarks (limma's empirical Bayes prior, fitted by moments of log variances); and
//! miloR's spatial FDR (Benjamini-Hochberg weighted by the inverse distance to the k-th
//! neighbour, which corrects for overlapping neighbourhoods in dense regions). A shift seen
//! in one replicate only inflates that landmark's variance and is not called.
//!
//! Without replicates (one sample per condition) the landmark statistic is the Wald z of
//! the log ratio of the two conditions' fractions, cells being the units.
//!
//! Per cell, the same test on the mean counts of the neighbourhoods holding the cell, with
//! Benjamini-Hochberg over cells: pooling the overlapping neighbourhoods carries the
//! power that one neighbourhood lacks beyond 3-4 dimensions, where a neighbourhood's
//! radius is wide against any region and its counts are diluted by cells outside it;
//! the replicates stay the units, so a shift in one replicate is still not called.
//! The default `k` grows with the intrinsic dimension of the cells (Levina and Bickel's
//! maximum-likelihood estimate, averaged as MacKay and Ghahramani do).
//!
//! With replicates, neighbourhoods are taken in the embedding stretched along the
//! directions that separate the samples (`metric`), so that they are narrow across the
//! edge of a region that changes along a few directions of a high-dimensional embedding.

use super::metric::SampleMetric;
use super::{knn, sample_without_replacement, Points};
use crate::dist;
use crate::rng;

/// Pseudo-count of the log fractions.
const PSEUDO_COUNT: f64 = 0.5;

/// What the test needs: the cells of both conditions, the sample of each cell (0-based,
/// dense), and the condition (0 or 1) of each sample.
pub struct NeighbourhoodData<'a> {
    pub cells: &'a Points,
    pub sample_of: &'a [usize],
    pub condition_of_sample: &'a [usize],
}

/// Per-landmark results; fold changes are condition 1 over condition 0 (natural log).
#[derive(Debug, Clone)]
pub struct LandmarkTest {
    /// Cells of each landmark's neighbourhood (indices into `cells`).
    pub members: Vec<Vec<usize>>,
    /// Distance to the k-th neighbour (the neighbourhood radius).
    pub radius: Vec<f64>,
    /// Counts, landmark-major (`counts[l * n_samples + s]`).
    pub counts: Vec<f64>,
    /// Normalised mean log fraction of each condition.
    pub log_abundance: [Vec<f64>; 2],
    pub estimate: Vec<f64>,
    pub std_error: Vec<f64>,
    pub statistic: Vec<f64>,
    /// Residual degrees of freedom of the t (infinite for the z without replicates).
    pub df: Vec<f64>,
    pub log_p: Vec<f64>,
    pub spatial_fdr: Vec<f64>,
    /// Prior degrees of freedom and variance of the moderation (NaN without replicates).
    pub prior_df: f64,
    pub prior_var: f64,
}

/// Neighbours of each query cell of the intrinsic dimension, and the number of query cells.
const DIMENSION_NEIGHBOURS: usize = 20;
const DIMENSION_QUERIES: usize = 500;

/// Intrinsic dimension of the cells: per query cell, Levina and Bickel's maximum-likelihood
/// estimate from the distances `T_1 <= ... <= T_K` to its `K = 20` nearest other cells,
/// `1 / mean_j ln(T_K / T_j)` over `j < K`, combined over up to 500 query cells as the
/// inverse of the mean inverse (MacKay and Ghahramani). The query cells are evenly spaced
/// in the cells' order (which runs sample by sample), not drawn, so the default `k` does
/// not depend on a seed. NaN when no query cell has positive distances (all cells
/// duplicated).
pub fn intrinsic_dimension(cells: &Points) -> f64 {
    let k = DIMENSION_NEIGHBOURS.min(cells.n.saturating_sub(1));
    if k < 2 {
        return f64::NAN;
    }
    let n_queries = cells.n.min(DIMENSION_QUERIES);
    let queries: Vec<usize> = (0..n_queries).map(|q| q * cells.n / n_queries).collect();
    let query = cells.subset(&queries);
    // The query cell itself is among its reference's nearest: ask for one more and drop it.
    let inverse: Vec<f64> = knn(&query, cells, k + 1, false)
        .iter()
        .zip(&queries)
        .filter_map(|(nb, &q)| {
            let d: Vec<f64> = nb
                .iter()
                .filter(|b| b.1 != q)
                .take(k)
                .map(|b| b.0)
                .collect();
            let last = *d.last()?;
            if d.len() < k || d[0] <= 0.0 {
                return None;
            }
            Some(d[..k - 1].iter().map(|&t| (last / t).ln()).sum::<f64>() / (k - 1) as f64)
        })
        .collect();
    if inverse.is_empty() {
        return f64::NAN;
    }
    inverse.len() as f64 / inverse.iter().sum::<f64>()
}

/// Default cells per neighbourhood for `n` cells in `n_samples` samples of intrinsic
/// dimension `d`: a fraction `0.006 d^1.2` of the cells (about 1.4% at d = 2, 4% at d = 5,
/// 10% at d = 10: beyond 3-4 dimensions a neighbourhood must widen before its counts carry
/// a change, which it dilutes with cells from outside), but at least 15 cells per sample
/// (the test's counts), between 30 and an eighth of the cells, and at most `n`. Chosen on
/// the issue-15 simulations. An undefined dimension counts as 2.
pub fn default_k(n: usize, n_samples: usize, dimension: f64) -> usize {
    let d = if dimension.is_finite() && dimension > 0.0 {
        dimension
    } else {
        2.0
    };
    let k = ((0.006 * d.powf(1.2) * n as f64).round() as usize).max(15 * n_samples);
    k.clamp(30, 30.max(n / 8)).min(n)
}

/// Rows of `n_landmarks` distinct cells, drawn with the seeded stream, in increasing order;
/// every row when `n_landmarks` reaches `n` (no draw: the result does not depend on the seed).
fn random_landmark_rows(n: usize, n_landmarks: usize, seed: u64) -> Vec<usize> {
    if n_landmarks >= n {
        return (0..n).collect();
    }
    let mut stream = rng::stream(seed, &[0x6e62]);
    let mut idx = sample_without_replacement(n, n_landmarks, &mut stream);
    idx.sort_unstable();
    idx
}

/// The neighbourhood test as `diff_abundance()` runs it: landmarks and cells in the metric
/// stretched along the directions that separate the samples (`metric`; Euclidean without
/// replicates), `k` from the intrinsic dimension of the stretched cells or the metric's
/// effective dimension, whichever is lower, unless given; then the per-landmark and
/// per-cell tests.
pub struct NeighbourhoodFit {
    /// In the embedding's coordinates.
    pub landmarks: Points,
    pub test: LandmarkTest,
    pub cells: CellTests,
    pub k: usize,
    pub intrinsic_dimension: f64,
    pub metric: SampleMetric,
}

/// `landmarks` in the embedding's coordinates, or `n_landmarks` random cells (every cell
/// when `n_landmarks` reaches their number).
pub fn fit_neighbourhoods(
    data: &NeighbourhoodData<'_>,
    landmarks: Option<Points>,
    n_landmarks: usize,
    k: Option<usize>,
    seed: u64,
) -> Result<NeighbourhoodFit, String> {
    let n_samples = data.condition_of_sample.len();
    let (_, replicated) = sample_sizes(data)?;
    let metric = if replicated {
        SampleMetric::from_samples(data.cells, data.sample_of, n_samples)
    } else {
        SampleMetric::identity(data.cells.dim)
    };
    let cells = metric.apply(data.cells);
    let (landmarks, stretched_landmarks) = match landmarks {
        Some(given) => {
            let stretched = metric.apply(&given);
            (given, stretched)
        }
        None => {
            let rows = random_landmark_rows(cells.n, n_landmarks, seed);
            (data.cells.subset(&rows), cells.subset(&rows))
        }
    };
    let stretched = NeighbourhoodData {
        cells: &cells,
        sample_of: data.sample_of,
        condition_of_sample: data.condition_of_sample,
    };
    let dimension = intrinsic_dimension(&cells);
    // f64::min ignores a NaN dimension (all cells duplicated).
    let k = k.unwrap_or_else(|| {
        default_k(
            cells.n,
            n_samples,
            dimension.min(metric.effective_dimension()),
        )
    });
    let test = neighbourhood_test(&stretched, &stretched_landmarks, k)?;
    let cell_results = cell_tests(&test, &stretched, &stretched_landmarks)?;
    Ok(NeighbourhoodFit {
        landmarks,
        test,
        cells: cell_results,
        k,
        intrinsic_dimension: dimension,
        metric,
    })
}

/// Counts of every sample in the `k`-nearest-cell neighbourhood of every landmark, and the
/// moderated test of the two conditions at each landmark.
pub fn neighbourhood_test(
    data: &NeighbourhoodData<'_>,
    landmarks: &Points,
    k: usize,
) -> Result<LandmarkTest, String> {
    let n_samples = data.condition_of_sample.len();
    if data.sample_of.len() != data.cells.n || data.sample_of.iter().any(|&s| s >= n_samples) {
        return Err("every cell needs a sample among the samples given".into());
    }
    if k < 2 || k > data.cells.n {
        return Err("`k` must be between 2 and the number of cells".into());
    }
    let neighbours = knn(landmarks, data.cells, k, false);
    if crate::cancelled() {
        return Err("interrupted".into());
    }
    let m = landmarks.n;
    let mut counts = vec![0.0; m * n_samples];
    let mut members = Vec::with_capacity(m);
    let mut radius = Vec::with_capacity(m);
    for (l, nb) in neighbours.iter().enumerate() {
        for &(_, i) in nb {
            counts[l * n_samples + data.sample_of[i]] += 1.0;
        }
        radius.push(nb.last().map_or(f64::NAN, |b| b.0));
        members.push(nb.iter().map(|b| b.1).collect());
    }
    let tests = sample_tests(data, &counts)?;
    // miloR's weights: inverse distance to the k-th neighbour (0 for a zero radius).
    let weights: Vec<f64> = radius
        .iter()
        .map(|&r| if r > 0.0 { 1.0 / r } else { 0.0 })
        .collect();
    let p: Vec<f64> = tests.log_p.iter().map(|v| v.exp()).collect();
    let spatial_fdr = weighted_bh(&p, &weights);
    Ok(LandmarkTest {
        members,
        radius,
        counts,
        log_abundance: tests.log_abundance,
        estimate: tests.estimate,
        std_error: tests.std_error,
        statistic: tests.statistic,
        df: tests.df,
        log_p: tests.log_p,
        spatial_fdr,
        prior_df: tests.prior_df,
        prior_var: tests.prior_var,
    })
}

/// The test of every row of `counts` (row-major, one column per sample): moderated t
/// across replicates, or the Wald z of the pooled fractions with one sample per condition.
fn sample_tests(data: &NeighbourhoodData<'_>, counts: &[f64]) -> Result<Tests, String> {
    let (sizes, replicated) = sample_sizes(data)?;
    Ok(if replicated {
        replicate_tests(counts, &sizes, data.condition_of_sample)
    } else {
        pooled_tests(counts, &sizes, data.condition_of_sample)
    })
}

/// Cells of every sample, and whether both conditions have at least two samples.
fn sample_sizes(data: &NeighbourhoodData<'_>) -> Result<(Vec<f64>, bool), String> {
    let mut sizes = vec![0.0; data.condition_of_sample.len()];
    for &s in data.sample_of {
        sizes[s] += 1.0;
    }
    let per_condition =
        [0, 1].map(|c| data.condition_of_sample.iter().filter(|&&x| x == c).count());
    if per_condition.contains(&0) || sizes.contains(&0.0) {
        return Err("each condition needs at least one sample with cells".into());
    }
    Ok((sizes, per_condition.iter().all(|&n| n >= 2)))
}

/// Whether each row's log fold change rests on more than one sample: with any one sample
/// left out, the difference of the conditions' mean normalised log fractions keeps its
/// sign and at least half its size. A region shifted in one replicate only fails when that
/// replicate is left out, however much the moderated variance shrinks its t.
#[allow(clippy::needless_range_loop)] // landmark-major arrays indexed together
fn leave_one_out_stable(counts: &[f64], sizes: &[f64], condition_of_sample: &[usize]) -> Vec<bool> {
    let s_n = sizes.len();
    let y = normalised_log_fractions(counts, sizes);
    let n_c = [0, 1].map(|c| condition_of_sample.iter().filter(|&&x| x == c).count() as f64);
    y.chunks(s_n)
        .map(|row| {
            let mut sum = [0.0; 2];
            for s in 0..s_n {
                sum[condition_of_sample[s]] += row[s];
            }
            let est = sum[1] / n_c[1] - sum[0] / n_c[0];
            (0..s_n).all(|s| {
                let c = condition_of_sample[s];
                let mut part = sum;
                part[c] -= row[s];
                let mut n = n_c;
                n[c] -= 1.0;
                let left = part[1] / n[1] - part[0] / n[0];
                left * est > 0.0 && left.abs() >= 0.5 * est.abs()
            })
        })
        .collect()
}

struct Tests {
    log_abundance: [Vec<f64>; 2],
    estimate: Vec<f64>,
    std_error: Vec<f64>,
    statistic: Vec<f64>,
    df: Vec<f64>,
    log_p: Vec<f64>,
    prior_df: f64,
    prior_var: f64,
}

/// Normalised log fractions, landmark-major: `ln((c + 1/2) / N_s)` less the half-sample
/// mode of each sample's deviations from the landmark means.
#[allow(clippy::needless_range_loop)] // landmark-major arrays indexed together
fn normalised_log_fractions(counts: &[f64], sizes: &[f64]) -> Vec<f64> {
    let s_n = sizes.len();
    let m = counts.len() / s_n;
    let mut y: Vec<f64> = counts
        .iter()
        .enumerate()
        .map(|(i, &c)| ((c + PSEUDO_COUNT) / sizes[i % s_n]).ln())
        .collect();
    let means: Vec<f64> = (0..m)
        .map(|l| y[l * s_n..(l + 1) * s_n].iter().sum::<f64>() / s_n as f64)
        .collect();
    for s in 0..s_n {
        let mut dev: Vec<f64> = (0..m).map(|l| y[l * s_n + s] - means[l]).collect();
        let offset = half_sample_mode(&mut dev);
        for l in 0..m {
            y[l * s_n + s] -= offset;
        }
    }
    y
}

/// Bickel's half-sample mode: repeatedly keep the half of the sorted values with the
/// smallest range; the mode of the last two or three. Unlike the median it stays at the
/// bulk when a changed region pulls one tail (a planted 3x region moves the median of the
/// other landmarks by a third of its own log fold change).
fn half_sample_mode(x: &mut [f64]) -> f64 {
    x.sort_by(f64::total_cmp);
    let mut v: &[f64] = x;
    while v.len() > 3 {
        let h = v.len().div_ceil(2);
        let start = (0..=v.len() - h)
            .min_by(|&a, &b| (v[a + h - 1] - v[a]).total_cmp(&(v[b + h - 1] - v[b])))
            .unwrap();
        v = &v[start..start + h];
    }
    match v.len() {
        3 if v[1] - v[0] < v[2] - v[1] => 0.5 * (v[0] + v[1]),
        3 if v[1] - v[0] > v[2] - v[1] => 0.5 * (v[1] + v[2]),
        3 => v[1],
        2 => 0.5 * (v[0] + v[1]),
        _ => v[0],
    }
}

fn median(x: &mut [f64]) -> f64 {
    x.sort_by(f64::total_cmp);
    let n = x.len();
    if n % 2 == 1 {
        x[n / 2]
    } else {
        0.5 * (x[n / 2 - 1] + x[n / 2])
    }
}

/// Two-group t at every landmark with the variance moderated across landmarks.
#[allow(clippy::needless_range_loop)] // landmark-major arrays indexed together
fn replicate_tests(counts: &[f64], sizes: &[f64], condition_of_sample: &[usize]) -> Tests {
    let s_n = sizes.len();
    let m = counts.len() / s_n;
    let y = normalised_log_fractions(counts, sizes);
    let n_c = [0, 1].map(|c| condition_of_sample.iter().filter(|&&x| x == c).count() as f64);
    let resid_df = n_c[0] + n_c[1] - 2.0;
    let mut log_abundance = [vec![0.0; m], vec![0.0; m]];
    let mut s2 = vec![0.0; m];
    for l in 0..m {
        let row = &y[l * s_n..(l + 1) * s_n];
        for c in 0..2 {
            log_abundance[c][l] = (0..s_n)
                .filter(|&s| condition_of_sample[s] == c)
                .map(|s| row[s])
                .sum::<f64>()
                / n_c[c];
        }
        s2[l] = (0..s_n)
            .map(|s| (row[s] - log_abundance[condition_of_sample[s]][l]).powi(2))
            .sum::<f64>()
            / resid_df;
    }
    let (prior_df, prior_var) = fit_f_dist(&s2, resid_df);
    let scale = (1.0 / n_c[0] + 1.0 / n_c[1]).sqrt();
    let mut out = Tests {
        log_abundance,
        estimate: vec![0.0; m],
        std_error: vec![0.0; m],
        statistic: vec![0.0; m],
        df: vec![0.0; m],
        log_p: vec![0.0; m],
        prior_df,
        prior_var,
    };
    for l in 0..m {
        let post = if prior_df.is_infinite() {
            prior_var
        } else {
            (prior_df * prior_var + resid_df * s2[l]) / (prior_df + resid_df)
        };
        let est = out.log_abundance[1][l] - out.log_abundance[0][l];
        let se = post.sqrt() * scale;
        let t = est / se;
        // limma caps the total df at the pooled residual df.
        let df = (resid_df + prior_df).min(resid_df * m as f64);
        out.estimate[l] = est;
        out.std_error[l] = se;
        out.statistic[l] = t;
        out.df[l] = df;
        out.log_p[l] = dist::t_two_sided_log_p(t, df);
    }
    out
}

/// One sample per condition: Wald z of the log ratio of the two fractions.
#[allow(clippy::needless_range_loop)] // landmark-major arrays indexed together
fn pooled_tests(counts: &[f64], sizes: &[f64], condition_of_sample: &[usize]) -> Tests {
    let s_n = sizes.len();
    let m = counts.len() / s_n;
    let mut c_size = [0.0; 2];
    for s in 0..s_n {
        c_size[condition_of_sample[s]] += sizes[s];
    }
    let mut c_counts = vec![[0.0; 2]; m];
    for l in 0..m {
        for s in 0..s_n {
            c_counts[l][condition_of_sample[s]] += counts[l * s_n + s];
        }
    }
    let collapsed: Vec<f64> = c_counts.iter().flat_map(|c| c.to_vec()).collect();
    let y = normalised_log_fractions(&collapsed, &c_size);
    let mut out = Tests {
        log_abundance: [vec![0.0; m], vec![0.0; m]],
        estimate: vec![0.0; m],
        std_error: vec![0.0; m],
        statistic: vec![0.0; m],
        df: vec![f64::INFINITY; m],
        log_p: vec![0.0; m],
        prior_df: f64::NAN,
        prior_var: f64::NAN,
    };
    for l in 0..m {
        let est = y[2 * l + 1] - y[2 * l];
        let se =
            (1.0 / (c_counts[l][0] + PSEUDO_COUNT) + 1.0 / (c_counts[l][1] + PSEUDO_COUNT)).sqrt();
        out.log_abundance[0][l] = y[2 * l];
        out.log_abundance[1][l] = y[2 * l + 1];
        out.estimate[l] = est;
        out.std_error[l] = se;
        out.statistic[l] = est / se;
        out.log_p[l] = dist::norm_two_sided_log_p(est / se);
    }
    out
}

/// limma's `fitFDist` without covariates: prior degrees of freedom and variance of
/// sample variances `s2` with `df` degrees of freedom each, by moments of `ln s2`.
/// Infinite prior df when the log variances vary no more than sampling alone explains;
/// variances are floored at 1e-5 of their median, as limma's.
pub fn fit_f_dist(s2: &[f64], df: f64) -> (f64, f64) {
    // limma's guard against zero variances: floor at 1e-5 of the median.
    let mut sorted: Vec<f64> = s2.iter().map(|v| v.max(0.0)).collect();
    if sorted.len() < 2 {
        return (0.0, sorted.first().copied().unwrap_or(f64::NAN));
    }
    let mut med = median(&mut sorted);
    if med <= 0.0 {
        med = 1.0;
    }
    let ok: Vec<f64> = s2.iter().map(|v| v.max(1e-5 * med)).collect();
    let half = df / 2.0;
    let e: Vec<f64> = ok
        .iter()
        .map(|v| v.ln() - dist::digamma(half) + half.ln())
        .collect();
    let n = e.len() as f64;
    let mean = e.iter().sum::<f64>() / n;
    let var = e.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) - dist::trigamma(half);
    if var > 0.0 {
        let d0 = 2.0 * trigamma_inverse(var);
        let s0 = (mean + dist::digamma(d0 / 2.0) - (d0 / 2.0).ln()).exp();
        (d0, s0)
    } else {
        (f64::INFINITY, mean.exp())
    }
}

/// limma's `trigammaInverse`: the `y` with `trigamma(y) = x`, by Newton's method.
pub fn trigamma_inverse(x: f64) -> f64 {
    if x > 1e7 {
        return 1.0 / x.sqrt();
    }
    if x < 1e-6 {
        return 1.0 / x;
    }
    let mut y = 0.5 + 1.0 / x;
    for _ in 0..50 {
        let tri = dist::trigamma(y);
        let dif = tri * (1.0 - tri / x) / psigamma2(y);
        y += dif;
        if -dif / y < 1e-8 {
            break;
        }
    }
    y
}

/// The second derivative of digamma (tetragamma), by the asymptotic series after
/// recurrence to y >= 6.
fn psigamma2(y: f64) -> f64 {
    let mut acc = 0.0;
    let mut y = y;
    while y < 6.0 {
        acc -= 2.0 / y.powi(3);
        y += 1.0;
    }
    let inv = 1.0 / y;
    let inv2 = inv * inv;
    acc - inv2
        - inv2 * inv
        - inv2
            * inv2
            * (0.5 - inv2 * (1.0 / 6.0 - inv2 * (1.0 / 6.0 - inv2 * (0.3 - inv2 * 5.0 / 6.0))))
}

/// miloR's `graphSpatialFDR`: Benjamini-Hochberg with weights,
/// `adj_(i) = min_{j >= i} sum(w) p_(j) / sum_{k <= j} w_(k)` over p sorted increasingly.
pub fn weighted_bh(p: &[f64], w: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let total: f64 = order.iter().map(|&i| w[i]).sum();
    let mut adj = vec![f64::NAN; p.len()];
    let mut cum = 0.0;
    let raw: Vec<f64> = order
        .iter()
        .map(|&i| {
            cum += w[i];
            total * p[i] / cum
        })
        .collect();
    let mut running = f64::INFINITY;
    for (pos, &i) in order.iter().enumerate().rev() {
        running = running.min(raw[pos]);
        adj[i] = running.min(1.0);
    }
    adj
}

/// Per-cell tests: each cell's counts are the mean counts, per sample, of the
/// neighbourhoods holding it (of its nearest landmark when none does), tested as a
/// landmark's are (normalised log fractions, moderated t across replicates); `fdr` is
/// Benjamini-Hochberg over the cells. Fold changes are condition 1 over condition 0.
pub struct CellTests {
    pub estimate: Vec<f64>,
    pub statistic: Vec<f64>,
    pub log_p: Vec<f64>,
    pub fdr: Vec<f64>,
    /// The log fold change rests on more than one sample (`leave_one_out_stable`); all true
    /// without replicates.
    pub stable: Vec<bool>,
    pub n_neighbourhoods: Vec<i32>,
}

pub fn cell_tests(
    test: &LandmarkTest,
    data: &NeighbourhoodData<'_>,
    landmarks: &Points,
) -> Result<CellTests, String> {
    let n = data.cells.n;
    let s_n = data.condition_of_sample.len();
    let mut holding: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (l, mem) in test.members.iter().enumerate() {
        for &i in mem {
            holding[i].push(l);
        }
    }
    let lonely: Vec<usize> = (0..n).filter(|&i| holding[i].is_empty()).collect();
    if !lonely.is_empty() {
        let nearest = knn(&data.cells.subset(&lonely), landmarks, 1, false);
        for (&i, nb) in lonely.iter().zip(&nearest) {
            holding[i].push(nb[0].1);
        }
    }
    let mut counts = vec![0.0; n * s_n];
    for (i, ls) in holding.iter().enumerate() {
        let row = &mut counts[i * s_n..(i + 1) * s_n];
        for &l in ls {
            for (c, &v) in row.iter_mut().zip(&test.counts[l * s_n..(l + 1) * s_n]) {
                *c += v;
            }
        }
        let held = ls.len() as f64;
        row.iter_mut().for_each(|c| *c /= held);
    }
    let tests = sample_tests(data, &counts)?;
    let p: Vec<f64> = tests.log_p.iter().map(|v| v.exp()).collect();
    let (sizes, replicated) = sample_sizes(data)?;
    let stable = if replicated {
        leave_one_out_stable(&counts, &sizes, data.condition_of_sample)
    } else {
        vec![true; n]
    };
    Ok(CellTests {
        stable,
        fdr: crate::fdr::bh_adjust(&p),
        estimate: tests.estimate,
        statistic: tests.statistic,
        log_p: tests.log_p,
        n_neighbourhoods: (0..n)
            .map(|i| {
                if lonely.binary_search(&i).is_ok() {
                    0
                } else {
                    holding[i].len() as i32
                }
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn half_sample_mode_finds_the_bulk_of_a_skewed_sample() {
        let mut rng = crate::rng::stream(2, &[]);
        // 60% peaked around 0 (triangular on +-0.4), 40% near 2: the median is pulled into
        // the bulk's upper tail (about +0.17), the mode stays at its peak.
        let mut x: Vec<f64> = (0..2000)
            .map(|i| {
                let bulk = (rng.random::<f64>() + rng.random::<f64>() - 1.0) * 0.4;
                bulk + if i % 5 < 2 { 2.0 } else { 0.0 }
            })
            .collect();
        let med = median(&mut x.clone());
        let mode = half_sample_mode(&mut x);
        assert!(mode.abs() < 0.1 && mode < med - 0.05, "{mode} {med}");
        assert_eq!(half_sample_mode(&mut [1.0, 2.0, 2.5]), 2.25);
    }

    #[test]
    fn weighted_bh_with_equal_weights_is_bh() {
        let p = [0.01, 0.04, 0.03, 0.5, 0.002, 0.9];
        let w = [1.0; 6];
        let a = weighted_bh(&p, &w);
        let b = crate::fdr::bh_adjust(&p);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-12, "{a:?} {b:?}");
        }
    }

    #[test]
    fn trigamma_inverse_inverts_trigamma() {
        for y in [0.05, 0.7, 3.0, 40.0, 900.0] {
            let x = dist::trigamma(y);
            assert!((trigamma_inverse(x) - y).abs() < 1e-6 * y, "{y}");
        }
    }

    #[test]
    fn fit_f_dist_recovers_a_scaled_chisq_prior() {
        // s2 = s0 * chi2_d / d exactly (no prior variation): prior df infinite or huge.
        let mut rng = crate::rng::stream(1, &[]);
        let df = 4.0;
        let s2: Vec<f64> = (0..4000)
            .map(|_| {
                let chi: f64 = (0..4)
                    .map(|_| {
                        let u: f64 = rng.random::<f64>().max(1e-300);
                        let v: f64 = rng.random::<f64>();
                        let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
                        z * z
                    })
                    .sum();
                0.3 * chi / df
            })
            .collect();
        let (d0, s0) = fit_f_dist(&s2, df);
        assert!(d0 > 50.0, "{d0}");
        assert!((s0 - 0.3).abs() < 0.03, "{s0}");
    }

    fn blobs(n: usize, seed: u64) -> Points {
        let mut rng = crate::rng::stream(seed, &[]);
        Points {
            coords: (0..n * 3).map(|_| rng.random::<f64>() * 4.0).collect(),
            n,
            dim: 3,
        }
    }

    #[test]
    fn counts_sum_to_k_and_a_global_size_change_is_not_a_shift() {
        let cells = blobs(1200, 3);
        // Six samples, sample 5 three times the others' size: composition unchanged.
        let sample_of: Vec<usize> = (0..cells.n)
            .map(|i| if i >= 600 { 5 } else { i % 5 })
            .collect();
        let cond = [0, 0, 0, 1, 1, 1];
        let data = NeighbourhoodData {
            cells: &cells,
            sample_of: &sample_of,
            condition_of_sample: &cond,
        };
        let lm = cells.subset(&random_landmark_rows(cells.n, 100, 2));
        let t = neighbourhood_test(&data, &lm, 40).unwrap();
        for l in 0..lm.n {
            assert_eq!(t.counts[l * 6..(l + 1) * 6].iter().sum::<f64>(), 40.0);
        }
        assert!(t.spatial_fdr.iter().all(|&f| f > 0.1));
        let cell = cell_tests(&t, &data, &lm).unwrap();
        // Cells' tests are correlated (shared neighbourhoods): a chance cluster can pass BH,
        // but the bulk is not shifted.
        let called = cell.fdr.iter().filter(|&&f| f < 0.1).count();
        assert!(called < cells.n / 20, "{called}");
        let cell_median = median(&mut cell.estimate.clone());
        assert!(cell_median.abs() < 0.1, "{cell_median}");
        let med = {
            let mut e = t.estimate.clone();
            median(&mut e)
        };
        assert!(med.abs() < 0.1, "{med}");
    }

    #[test]
    fn intrinsic_dimension_of_a_cube_and_of_a_plane_in_six_dimensions() {
        let cube = blobs(3000, 5);
        let d = intrinsic_dimension(&cube);
        assert!((d - 3.0).abs() < 0.4, "{d}");
        // A 2-D sheet, linearly embedded in 6 dimensions.
        let mut rng = crate::rng::stream(6, &[]);
        let coords: Vec<f64> = (0..3000)
            .flat_map(|_| {
                let (u, v): (f64, f64) = (rng.random(), rng.random());
                vec![u, v, u + v, u - v, 2.0 * u, 0.5 * v]
            })
            .collect();
        let sheet = Points {
            coords,
            n: 3000,
            dim: 6,
        };
        let d = intrinsic_dimension(&sheet);
        assert!((d - 2.0).abs() < 0.3, "{d}");
        assert!(intrinsic_dimension(&blobs(2, 1)).is_nan());
    }

    #[test]
    fn every_cell_is_a_landmark_without_a_draw_when_asked_for_all() {
        assert_eq!(random_landmark_rows(7, 7, 1), (0..7).collect::<Vec<_>>());
        assert_eq!(random_landmark_rows(7, 9, 2), (0..7).collect::<Vec<_>>());
        let drawn = random_landmark_rows(50, 10, 3);
        assert_eq!(drawn.len(), 10);
        assert!(drawn.windows(2).all(|w| w[0] < w[1]));
        assert_ne!(drawn, random_landmark_rows(50, 10, 4));
    }

    #[test]
    fn default_k_grows_with_the_dimension_within_its_bounds() {
        assert_eq!(default_k(4800, 2, 2.0), 66);
        assert_eq!(default_k(4800, 6, 2.0), 90);
        assert!(default_k(4800, 6, 5.0) > default_k(4800, 6, 3.0));
        assert_eq!(default_k(4800, 6, 40.0), 600);
        assert_eq!(default_k(600, 6, 2.0), 75);
        assert_eq!(default_k(600, 2, 2.0), 30);
        assert_eq!(default_k(20, 2, 2.0), 20);
        assert_eq!(default_k(4800, 6, f64::NAN), default_k(4800, 6, 2.0));
    }

    #[test]
    fn cell_counts_are_the_mean_counts_of_the_neighbourhoods_holding_the_cell() {
        let cells = blobs(600, 8);
        let sample_of: Vec<usize> = (0..cells.n).map(|i| i % 6).collect();
        let cond = [0, 0, 0, 1, 1, 1];
        let data = NeighbourhoodData {
            cells: &cells,
            sample_of: &sample_of,
            condition_of_sample: &cond,
        };
        let lm = cells.subset(&random_landmark_rows(cells.n, 60, 3));
        let t = neighbourhood_test(&data, &lm, 30).unwrap();
        let cell = cell_tests(&t, &data, &lm).unwrap();
        // Brute force: each cell's holding neighbourhoods, their mean counts, then the same
        // landmark test on those rows.
        let mut counts = vec![0.0; cells.n * 6];
        for i in 0..cells.n {
            let mut held: Vec<usize> = (0..lm.n).filter(|&l| t.members[l].contains(&i)).collect();
            assert_eq!(held.len() as i32, cell.n_neighbourhoods[i]);
            if held.is_empty() {
                let x = cells.point(i);
                held.push(
                    (0..lm.n)
                        .min_by(|&a, &b| {
                            super::super::sq_dist(x, lm.point(a))
                                .total_cmp(&super::super::sq_dist(x, lm.point(b)))
                        })
                        .unwrap(),
                );
            }
            for s in 0..6 {
                counts[i * 6 + s] =
                    held.iter().map(|&l| t.counts[l * 6 + s]).sum::<f64>() / held.len() as f64;
            }
        }
        let sizes = [100.0; 6];
        let reference = replicate_tests(&counts, &sizes, &cond);
        let p: Vec<f64> = reference.log_p.iter().map(|v| v.exp()).collect();
        let fdr = crate::fdr::bh_adjust(&p);
        for (i, f) in fdr.iter().enumerate() {
            assert!((cell.estimate[i] - reference.estimate[i]).abs() < 1e-12);
            assert!((cell.statistic[i] - reference.statistic[i]).abs() < 1e-12);
            assert!((cell.fdr[i] - f).abs() < 1e-12);
        }
        assert!(cell.n_neighbourhoods.contains(&0));
    }

    #[test]
    fn a_shift_in_one_replicate_is_not_stable_and_one_in_all_is() {
        // Three samples per condition, 40 rows of 1,000 cells each; row 0 doubled in
        // sample 3 only, row 1 doubled in samples 3-5; the rest flat.
        let cond = [0, 0, 0, 1, 1, 1];
        let sizes = [40_000.0; 6];
        let mut counts = vec![1000.0; 40 * 6];
        counts[3] = 2000.0;
        for s in 3..6 {
            counts[6 + s] = 2000.0;
        }
        // Tiny jitter so that the flat rows have a sign.
        for (i, c) in counts.iter_mut().enumerate().skip(12) {
            *c += (i % 6) as f64;
        }
        let stable = leave_one_out_stable(&counts, &sizes, &cond);
        assert!(!stable[0]);
        assert!(stable[1]);
    }
}

//! Binding of preranked gene-set enrichment (sceffects-core `gsea`). Rankings arrive as
//! weights in rank order; sets as sorted 0-based rank positions.

use crate::pooled;
use crate::{fail, seed_of, RResult};
use extendr_api::prelude::*;
use sceffects_core::gsea::multilevel::set_tail_probabilities;
use sceffects_core::gsea::permutation::NullScores;
use sceffects_core::gsea::{enrichment, Enrichment};

fn positions_of(sets: &List) -> RResult<Vec<Vec<u32>>> {
    sets.values()
        .map(|s| {
            s.as_integer_slice()
                .map(|v| v.iter().map(|&p| p as u32).collect())
                .ok_or_else(|| fail("gene-set positions must be integer vectors"))
        })
        .collect()
}

/// Enrichment score of each set: es, largest and smallest running sum, and the 0-based
/// index in the set of the hit that ends (positive) or starts (negative) the leading edge.
#[extendr]
fn rs_gsea_scores(weights: &[f64], sets: List) -> RResult<Robj> {
    let scores: Vec<Option<Enrichment>> = positions_of(&sets)?
        .iter()
        .map(|hits| enrichment(weights, hits))
        .collect();
    let field = |f: fn(&Enrichment) -> f64| -> Vec<f64> {
        scores
            .iter()
            .map(|e| e.as_ref().map_or(f64::NAN, f))
            .collect()
    };
    Ok(list!(
        es = field(|e| e.es),
        max_dev = field(|e| e.max_dev),
        min_dev = field(|e| e.min_dev),
        extreme_hit = field(|e| e.extreme_hit as f64)
    )
    .into())
}

/// Permutation null of each set's score (sets of one size share their draws): null scores
/// of the observed sign, those as extreme, and their mean.
#[extendr]
fn rs_gsea_permutation(
    weights: &[f64],
    sizes: &[i32],
    es: &[f64],
    n_perm: i32,
    seed: f64,
    threads: i32,
) -> RResult<Robj> {
    let sizes: Vec<usize> = sizes.iter().map(|&s| s as usize).collect();
    let null = pooled(threads, || {
        NullScores::draw(weights, &sizes, n_perm as usize, seed_of(seed))
    })
    .map_err(fail)?
    .map_err(fail)?;
    let summaries: Vec<_> = sizes
        .iter()
        .zip(es)
        .map(|(&s, &e)| null.summarize(s, e))
        .collect();
    let field = |f: fn(&sceffects_core::gsea::permutation::NullSummary) -> f64| -> Vec<f64> {
        summaries
            .iter()
            .map(|s| s.as_ref().map_or(f64::NAN, f))
            .collect()
    };
    Ok(list!(
        n_same_sign = field(|s| s.n_same_sign as f64),
        n_as_extreme = field(|s| s.n_as_extreme as f64),
        mean_same_sign = field(|s| s.mean_same_sign)
    )
    .into())
}

/// Multilevel estimates of P(ES as extreme as observed) for each set: natural-log p,
/// whether p is only bounded and the variance of the log p.
#[extendr]
fn rs_gsea_multilevel(
    weights: &[f64],
    sizes: &[i32],
    es: &[f64],
    sample_size: i32,
    eps: f64,
    seed: f64,
    threads: i32,
) -> RResult<Robj> {
    let sizes: Vec<usize> = sizes.iter().map(|&s| s as usize).collect();
    let estimates = pooled(threads, || {
        set_tail_probabilities(
            weights,
            &sizes,
            es,
            sample_size as usize,
            eps,
            seed_of(seed),
        )
    })
    .map_err(fail)?;
    let log_p: Vec<f64> = estimates.iter().map(|e| e.log_p).collect();
    let beyond: Vec<bool> = estimates.iter().map(|e| e.beyond).collect();
    let log_var: Vec<f64> = estimates.iter().map(|e| e.log_var).collect();
    Ok(list!(log_p = log_p, beyond = beyond, log_var = log_var).into())
}

extendr_module! {
    mod gsea;
    fn rs_gsea_scores;
    fn rs_gsea_permutation;
    fn rs_gsea_multilevel;
}

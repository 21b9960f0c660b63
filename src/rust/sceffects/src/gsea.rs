//! Binding of preranked gene-set enrichment (sceffects-core `gsea`). Rankings arrive as
//! weights in rank order; sets as sorted 0-based rank positions.

use crate::{fail, RResult};
use extendr_api::prelude::*;
use rayon::prelude::*;
use sceffects_core::gsea::multilevel::tail_probabilities;
use sceffects_core::gsea::permutation::NullScores;
use sceffects_core::gsea::{enrichment, Enrichment};
use sceffects_core::with_threads;
use std::collections::BTreeMap;

fn positions_of(sets: &List) -> RResult<Vec<Vec<u32>>> {
    sets.values()
        .map(|s| {
            s.as_integer_slice()
                .map(|v| v.iter().map(|&p| p as u32).collect())
                .ok_or_else(|| fail("gene-set positions must be integer vectors"))
        })
        .collect()
}

fn seed_of(seed: f64) -> u64 {
    seed as i64 as u64
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
    let mut distinct: Vec<usize> = sizes.iter().map(|&s| s as usize).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let null = with_threads(threads as usize, || {
        NullScores::draw(weights, &distinct, n_perm as usize, seed_of(seed))
    })
    .map_err(fail)?;
    let summaries: Vec<_> = sizes
        .iter()
        .zip(es)
        .map(|(&s, &e)| null.summarize(s as usize, e))
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

/// Multilevel estimates of P(ES as extreme as observed) for each set: one ladder per size
/// and sign, reaching the most extreme score of that group. Negative scores use the
/// reversed ranking. Returns natural-log p, the levels used and whether p is only bounded.
#[extendr]
fn rs_gsea_multilevel(
    weights: &[f64],
    sizes: &[i32],
    es: &[f64],
    n_particles: i32,
    eps: f64,
    seed: f64,
    threads: i32,
) -> RResult<Robj> {
    let reversed: Vec<f64> = weights.iter().rev().copied().collect();
    let mut groups: BTreeMap<(usize, bool), Vec<usize>> = BTreeMap::new();
    for (i, (&s, &e)) in sizes.iter().zip(es).enumerate() {
        groups.entry((s as usize, e < 0.0)).or_default().push(i);
    }
    let groups: Vec<_> = groups.into_iter().collect();
    let estimates = with_threads(threads as usize, || {
        groups
            .par_iter()
            .map(|&((size, negative), ref members)| {
                let ranking = if negative { &reversed } else { weights };
                let targets: Vec<f64> = members.iter().map(|&i| es[i].abs()).collect();
                let key = 2 * size as u64 + u64::from(negative);
                tail_probabilities(
                    ranking,
                    size,
                    &targets,
                    n_particles as usize,
                    eps,
                    seed_of(seed),
                    key,
                )
            })
            .collect::<Vec<_>>()
    })
    .map_err(fail)?;
    let n = sizes.len();
    let (mut log_p, mut levels, mut beyond) = (vec![f64::NAN; n], vec![0.0; n], vec![false; n]);
    for ((_, members), group) in groups.iter().zip(estimates) {
        for (&i, e) in members.iter().zip(group) {
            log_p[i] = e.log_p;
            levels[i] = e.levels as f64;
            beyond[i] = e.beyond;
        }
    }
    Ok(list!(log_p = log_p, levels = levels, beyond = beyond).into())
}

extendr_module! {
    mod gsea;
    fn rs_gsea_scores;
    fn rs_gsea_permutation;
    fn rs_gsea_multilevel;
}

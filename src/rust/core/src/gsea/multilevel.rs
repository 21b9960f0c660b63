//! Adaptive multilevel splitting for tail probabilities of the enrichment score
//! (Cérou & Guyader 2007; applied to GSEA by Korotkevich et al. 2021).
//!
//! Estimating P(ES >= t) for a positive t and sets of size k: start from `n` uniform
//! random k-subsets; at each level keep the `m` particles whose largest running-sum value
//! is highest (a quarter), duplicate them back to `n`, and let each walk by random swaps of
//! one gene that keep it above the level (a Metropolis chain whose stationary law is
//! uniform on the sets above the level). Every level multiplies the probability by the
//! surviving fraction m / n, so p = 1e-10 takes ~17 levels. Negative scores are handled by
//! the caller on the reversed ranking.
//!
//! The accuracy is asked for as fgsea's: the particles of a ladder that halves the
//! probability at each level. Keeping a quarter of ~1.5 times as many particles gives the
//! same variance of log p per unit of log p (each level's surviving fraction is a Beta
//! order statistic: variance trigamma(m + 1) - trigamma(n + 1) of its log) at ~3/4 of the
//! walks (the cost per unit of log p, n / ln(n / m), is least near m / n = 1/5).

use super::enrichment;
use crate::dist::trigamma;
use crate::rng;
use rand::Rng;
use rayon::prelude::*;
use std::collections::BTreeMap;

/// Swap proposals per particle and level, per gene of the set (about 5 in 6 are kept in
/// large sets). Over 200-250 seeds at k = 300 and 500 (p ~ 1e-13, 1e-15) the spread of
/// log p was 0.94 and 0.99 times its formula with 1 per gene, 1.08 and 1.06 with 0.75.
const TRIES_PER_GENE: f64 = 1.0;

/// Fewest swap proposals per particle and level. A deep score of a small set rests on a
/// few genes that k proposals rarely replace, so the copies of one survivor stayed alike:
/// at k = 15-30 and p ~ 1e-15 the spread of log p over seeds was 1.3-1.8 times its formula
/// with k proposals, and matched it with 200 (with m / n = 1/2 as well as 1/4).
const MIN_TRIES: usize = 200;

/// Fraction of the particles kept at each level.
const KEEP: f64 = 0.25;

/// Particles per level `n` and survivors `m` of a ladder keeping about a quarter, as
/// accurate as one of `sample_size` particles halved at each level: the variance of log p
/// per unit of log p, (trigamma(m + 1) - trigamma(n + 1)) / ln(n / m), is at most
/// (trigamma((s + 1) / 2) - trigamma(s + 1)) / ln 2, with the fewest particles.
pub fn ladder_shape(sample_size: usize) -> (usize, usize) {
    let s = sample_size.max(3) as f64;
    let per_unit = (trigamma((s + 1.0) / 2.0) - trigamma(s + 1.0)) / std::f64::consts::LN_2;
    (sample_size.max(3)..)
        .map(|n| (n, ((n as f64 * KEEP).round() as usize).max(1)))
        .find(|&(n, m)| level_variance(n, m) / (n as f64 / m as f64).ln() <= per_unit)
        .expect("a large enough ladder exists")
}

/// Variance of the log of one level's surviving fraction, for `m` kept of `n`.
fn level_variance(n: usize, m: usize) -> f64 {
    trigamma(m as f64 + 1.0) - trigamma(n as f64 + 1.0)
}

/// The estimate of P(ES >= target) for one target.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TailEstimate {
    /// Natural log of the estimated probability (an upper bound when `beyond`).
    pub log_p: f64,
    /// The target lies beyond every particle of the last level (stopped by `eps`).
    pub beyond: bool,
    /// Variance of `log_p` (NaN when `beyond`): each level passed adds its surviving
    /// fraction's, and the last stage the fraction of its particles at the target's.
    pub log_var: f64,
}

/// One level's particles: the level they exceed, the log-probability of exceeding it,
/// and each particle's (largest running-sum value, whether that is its signed score).
struct Stage {
    level: f64,
    log_weight: f64,
    particles: Vec<(f64, bool)>,
}

struct Particle {
    hits: Vec<u32>,
    total: f64,
}

/// Estimates P(ES >= t) for each positive `targets` t, for sets of size `size` over
/// `weights`, as accurate as `sample_size` particles halved per level (see
/// [`ladder_shape`]); the ladder stops at the largest target or once the
/// probability falls below `eps`. Deterministic for `seed` and `key` (the caller's
/// identity of this ladder), whatever the threads.
pub fn tail_probabilities(
    weights: &[f64],
    size: usize,
    targets: &[f64],
    sample_size: usize,
    eps: f64,
    seed: u64,
    key: u64,
) -> Vec<TailEstimate> {
    let highest = targets.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (n, m) = ladder_shape(sample_size);
    let stages = ladder(weights, size, highest, (n, m), eps, seed, key);
    targets.iter().map(|&t| estimate(&stages, m, t)).collect()
}

/// Multilevel estimates of P(ES as extreme as observed) for sets of sizes `sizes` with
/// scores `es`: one ladder per size and sign, reaching the most extreme score of that
/// group; negative scores run on the reversed ranking. Ladders are keyed by size and sign,
/// so each set's estimate does not depend on the other sets or the threads.
pub fn set_tail_probabilities(
    weights: &[f64],
    sizes: &[usize],
    es: &[f64],
    sample_size: usize,
    eps: f64,
    seed: u64,
) -> Vec<TailEstimate> {
    let reversed: Vec<f64> = weights.iter().rev().copied().collect();
    let mut groups: BTreeMap<(usize, bool), Vec<usize>> = BTreeMap::new();
    for (i, (&s, &e)) in sizes.iter().zip(es).enumerate() {
        groups.entry((s, e < 0.0)).or_default().push(i);
    }
    let groups: Vec<_> = groups.into_iter().collect();
    let estimates: Vec<Vec<TailEstimate>> = groups
        .par_iter()
        .map(|&((size, negative), ref members)| {
            if crate::cancelled() {
                return Vec::new();
            }
            let ranking = if negative { &reversed } else { weights };
            let targets: Vec<f64> = members.iter().map(|&i| es[i].abs()).collect();
            let key = 2 * size as u64 + u64::from(negative);
            tail_probabilities(ranking, size, &targets, sample_size, eps, seed, key)
        })
        .collect();
    let mut out = vec![
        TailEstimate {
            log_p: f64::NAN,
            beyond: false,
            log_var: f64::NAN,
        };
        sizes.len()
    ];
    for ((_, members), group) in groups.iter().zip(estimates) {
        for (&i, e) in members.iter().zip(group) {
            out[i] = e;
        }
    }
    out
}

fn ladder(
    weights: &[f64],
    size: usize,
    highest: f64,
    (n, m): (usize, usize),
    eps: f64,
    seed: u64,
    key: u64,
) -> Vec<Stage> {
    let mut particles: Vec<Particle> = (0..n)
        .into_par_iter()
        .map(|i| random_particle(weights, size, &mut rng::stream(seed, &[key, 0, i as u64])))
        .collect();
    let mut stages: Vec<Stage> = Vec::new();
    let (mut level, mut log_weight) = (f64::NEG_INFINITY, 0.0);
    loop {
        let scored: Vec<(f64, bool)> = particles
            .par_iter()
            .map(|p| {
                let e = enrichment(weights, &p.hits).expect("particles have positive weight");
                (e.max_dev, e.max_dev >= -e.min_dev)
            })
            .collect();
        let mut sorted: Vec<f64> = scored.iter().map(|s| s.0).collect();
        sorted.sort_by(f64::total_cmp);
        let next_level = sorted[n - m - 1];
        let survivors: Vec<usize> = (0..n).filter(|&i| scored[i].0 > next_level).collect();
        stages.push(Stage {
            level,
            log_weight,
            particles: scored,
        });
        if next_level >= highest || log_weight < eps.ln() || survivors.is_empty() {
            return stages;
        }
        log_weight += (survivors.len() as f64 / n as f64).ln();
        level = next_level;
        let depth = stages.len() as u64;
        let starts = block_starts(&particles);
        let totals: Vec<f64> = survivors
            .iter()
            .map(|&s| particles[s].hits.iter().map(|&h| weights[h as usize]).sum())
            .collect();
        particles = (0..n)
            .into_par_iter()
            .map(|i| {
                let parent = i % survivors.len();
                let mut p = Particle {
                    hits: particles[survivors[parent]].hits.clone(),
                    total: totals[parent],
                };
                walk_above(
                    weights,
                    &mut p,
                    &starts,
                    level,
                    &mut rng::stream(seed, &[key, depth, i as u64]),
                );
                p
            })
            .collect();
    }
}

fn estimate(stages: &[Stage], m: usize, target: f64) -> TailEstimate {
    let at = stages.partition_point(|s| s.level < target) - 1;
    let stage = &stages[at];
    let n = stage.particles.len();
    let passed = at as f64 * level_variance(n, m);
    let n = n as f64;
    let above = stage
        .particles
        .iter()
        .filter(|&&(score, signed)| signed && score >= target)
        .count();
    if above == 0 {
        TailEstimate {
            log_p: stage.log_weight - n.ln(),
            beyond: true,
            log_var: f64::NAN,
        }
    } else {
        TailEstimate {
            log_p: stage.log_weight + (above as f64 / n).ln(),
            beyond: false,
            log_var: passed + trigamma(above as f64 + 1.0) - trigamma(n + 1.0),
        }
    }
}

/// A uniform random set of `size` positions with positive total weight.
fn random_particle(weights: &[f64], size: usize, rng: &mut rng::Stream) -> Particle {
    let n = weights.len();
    let mut pool: Vec<u32> = (0..n as u32).collect();
    loop {
        for i in 0..size {
            let j = rng.random_range(i..n);
            pool.swap(i, j);
        }
        let mut hits = pool[..size].to_vec();
        hits.sort_unstable();
        let total: f64 = hits.iter().map(|&h| weights[h as usize]).sum();
        if total > 0.0 {
            return Particle { hits, total };
        }
    }
}

/// A hit at which the running sum exceeds the level: its position, the weight summed up to
/// it and its index in the set. Kept across moves so most moves are checked in O(1).
#[derive(Clone, Copy)]
struct Witness {
    position: u32,
    cum: f64,
    index: usize,
}

fn running_value(w: &Witness, total: f64, miss_step: f64) -> f64 {
    w.cum / total - (w.position as usize - w.index) as f64 * miss_step
}

/// Rank positions cut into blocks, with each block's hit weight and count for one set.
/// A block whose hits cannot reach the level is skipped whole, so a failed check costs
/// about sqrt(k), not k. The bound of a block is all its weight counted at its start, or,
/// when its hits are unchanged since a check visited them, their highest running sum
/// relative to the block's start, as it was then (`peak`, at `peak_inverse` = 1 / total),
/// plus what a smaller total can add (the block's weight times the change of 1 / total).
struct Blocks {
    /// First position of each block after the first.
    starts: Vec<u32>,
    weight: Vec<f64>,
    count: Vec<usize>,
    peak: Vec<f64>,
    peak_inverse: Vec<f64>,
    /// `peak` holds for the block's hits as they are.
    known: Vec<bool>,
}

impl Blocks {
    fn new(starts: &[u32], weights: &[f64], hits: &[u32]) -> Self {
        let mut b = Blocks {
            starts: starts.to_vec(),
            weight: vec![0.0; starts.len() + 1],
            count: vec![0; starts.len() + 1],
            peak: vec![0.0; starts.len() + 1],
            peak_inverse: vec![0.0; starts.len() + 1],
            known: vec![false; starts.len() + 1],
        };
        let mut block = 0;
        for &h in hits {
            while block < starts.len() && starts[block] <= h {
                block += 1;
            }
            b.weight[block] += weights[h as usize];
            b.count[block] += 1;
        }
        b
    }

    fn block_of(&self, position: u32) -> usize {
        self.starts.partition_point(|&s| s <= position)
    }

    fn add(&mut self, block: usize, weight: f64, sign: isize) {
        self.known[block] = false;
        self.weight[block] += sign as f64 * weight;
        self.count[block] = (self.count[block] as isize + sign) as usize;
    }

    fn start(&self, block: usize) -> usize {
        if block == 0 {
            0
        } else {
            self.starts[block - 1] as usize
        }
    }
}

/// A proposed move: `outgoing` (a member, at index `out_at`) leaves the set and `incoming`
/// (not a member, inserted at index `in_at` of the current set) enters it.
struct Swap {
    outgoing: u32,
    incoming: u32,
    out_at: usize,
    in_at: usize,
    out_block: usize,
    in_block: usize,
}

impl Swap {
    /// The move of `hits[out_at]` out and `incoming` in (at index `in_at` of `hits`).
    fn new(hits: &[u32], blocks: &Blocks, out_at: usize, incoming: u32, in_at: usize) -> Self {
        let outgoing = hits[out_at];
        Swap {
            outgoing,
            incoming,
            out_at,
            in_at,
            out_block: blocks.block_of(outgoing),
            in_block: blocks.block_of(incoming),
        }
    }
}

/// The hit with the highest running sum, if that exceeds `level`, skipping blocks that
/// cannot beat the best so far; with `swap`, of the set after that move, read from the set
/// before it (so a rejected move costs no change to the set). The highest hit, not the
/// first above the level, so that later moves leave it above the level more often.
fn find_witness(
    weights: &[f64],
    hits: &[u32],
    blocks: &mut Blocks,
    swap: Option<&Swap>,
    total: f64,
    miss_step: f64,
    level: f64,
) -> Option<Witness> {
    // Running weight, hits before the block in the set after the move, and before it now.
    // Blocks and hits are screened with a product by 1 / total, within a margin far above
    // its rounding (and that of the running block sums); a hit passing it is checked exactly.
    let (mut cum, mut index, mut stored) = (0.0, 0, 0);
    let inverse = 1.0 / total;
    let mut best: Option<Witness> = None;
    let mut threshold = level;
    for b in 0..blocks.weight.len() {
        let (mut weight, mut count) = (blocks.weight[b], blocks.count[b]);
        let (mut leaving, mut entering) = (None, None);
        if let Some(s) = swap {
            if b == s.out_block {
                weight -= weights[s.outgoing as usize];
                count -= 1;
                leaving = Some(s.outgoing);
            }
            if b == s.in_block {
                weight += weights[s.incoming as usize];
                count += 1;
                entering = Some(s.incoming);
            }
        }
        let misses_before = (blocks.start(b) - index) as f64;
        let base = cum * inverse - misses_before * miss_step;
        let unchanged = leaving.is_none() && entering.is_none();
        let bound = if unchanged && blocks.known[b] {
            base + blocks.peak[b] + (weight * (inverse - blocks.peak_inverse[b])).max(0.0)
        } else {
            base + weight * inverse
        };
        if bound > threshold - 1e-12 {
            let mut w = Witness {
                position: 0,
                cum,
                index,
            };
            let mut peak = f64::NEG_INFINITY;
            let mut visit = |position: u32| {
                w.position = position;
                w.cum += weights[position as usize];
                let misses = (position as usize - w.index) as f64 * miss_step;
                let screen = w.cum * inverse - misses;
                if screen > peak {
                    peak = screen;
                }
                if screen > threshold - 1e-12 {
                    let value = running_value(&w, total, miss_step);
                    if value > threshold {
                        threshold = value;
                        best = Some(w);
                    }
                }
                w.index += 1;
            };
            for &position in &hits[stored..stored + blocks.count[b]] {
                if let Some(e) = entering.filter(|&e| e < position) {
                    entering = None;
                    visit(e);
                }
                if Some(position) != leaving {
                    visit(position);
                }
            }
            if let Some(e) = entering {
                visit(e);
            }
            if unchanged {
                blocks.peak[b] = peak - base;
                blocks.peak_inverse[b] = inverse;
                blocks.known[b] = true;
            }
        }
        cum += weight;
        index += count;
        stored += blocks.count[b];
    }
    best
}

/// Block boundaries for a level: about sqrt(k) blocks with equal numbers of hits, at the
/// median positions over the particles (as fgsea does).
fn block_starts(particles: &[Particle]) -> Vec<u32> {
    let k = particles[0].hits.len();
    let n_blocks = ((k as f64).sqrt() as usize).max(1);
    (1..n_blocks)
        .map(|b| {
            let at = b * k / n_blocks;
            let mut column: Vec<u32> = particles.iter().map(|p| p.hits[at]).collect();
            let mid = column.len() / 2;
            *column.select_nth_unstable(mid).1
        })
        .collect()
}

/// Metropolis walk on sets above `level`: swap a random member for a random gene, keep
/// the swap if the set stays above. The number of tries is fixed: stopping after a number
/// of kept swaps would favour sets deep inside the region, where more swaps are kept.
/// A move is checked on the set as it is and applied only when kept.
fn walk_above(
    weights: &[f64],
    p: &mut Particle,
    starts: &[u32],
    level: f64,
    rng: &mut rng::Stream,
) {
    let n = weights.len();
    let k = p.hits.len();
    let miss_step = 1.0 / (n - k) as f64;
    let mut blocks = Blocks::new(starts, weights, &p.hits);
    let mut witness = find_witness(
        weights,
        &p.hits,
        &mut blocks,
        None,
        p.total,
        miss_step,
        level,
    );
    let tries = ((TRIES_PER_GENE * k as f64).ceil() as usize).max(MIN_TRIES);
    for _ in 0..tries {
        let out_at = rng.random_range(0..k);
        let incoming = rng.random_range(0..n as u32);
        let in_at = p.hits.partition_point(|&h| h < incoming);
        if p.hits.get(in_at) == Some(&incoming) {
            continue;
        }
        let outgoing = p.hits[out_at];
        let (w_out, w_in) = (weights[outgoing as usize], weights[incoming as usize]);
        let total = p.total - w_out + w_in;
        if total <= 0.0 {
            continue;
        }
        let moved = witness.filter(|w| w.position != outgoing).map(|mut w| {
            if outgoing < w.position {
                w.cum -= w_out;
                w.index -= 1;
            }
            if incoming < w.position {
                w.cum += w_in;
                w.index += 1;
            }
            w
        });
        let swap = Swap::new(&p.hits, &blocks, out_at, incoming, in_at);
        let still_above = moved
            .filter(|w| running_value(w, total, miss_step) > level)
            .or_else(|| {
                find_witness(
                    weights,
                    &p.hits,
                    &mut blocks,
                    Some(&swap),
                    total,
                    miss_step,
                    level,
                )
            });
        if let Some(w) = still_above {
            witness = Some(w);
            p.total = total;
            blocks.add(swap.out_block, w_out, -1);
            blocks.add(swap.in_block, w_in, 1);
            apply(&mut p.hits, &swap);
        }
    }
}

/// Replaces `swap.outgoing` by `swap.incoming` in the sorted `hits`, shifting only the hits
/// between the two.
fn apply(hits: &mut [u32], swap: &Swap) {
    if swap.in_at > swap.out_at {
        hits.copy_within(swap.out_at + 1..swap.in_at, swap.out_at);
        hits[swap.in_at - 1] = swap.incoming;
    } else {
        hits.copy_within(swap.in_at..swap.out_at, swap.in_at + 1);
        hits[swap.in_at] = swap.incoming;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gsea::permutation::NullScores;
    use std::f64::consts::LN_2;

    fn weights(n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| 3.0 * (1.0 - i as f64 / n as f64).powi(2) + 0.05)
            .collect()
    }

    /// 400,000 plain-permutation scores of sets of `size`, highest first, and their tail
    /// probability at a score.
    fn plain_null(w: &[f64], size: usize, seed: u64) -> (Vec<f64>, impl Fn(f64) -> f64) {
        let mut scores = NullScores::draw(w, &[size], 400_000, seed).unwrap().scores;
        scores.sort_by(|a, b| b.total_cmp(a));
        let sorted = scores.clone();
        let tail = move |t: f64| sorted.partition_point(|&s| s >= t) as f64 / 4e5;
        (scores, tail)
    }

    #[test]
    fn agrees_with_plain_permutation_where_that_is_feasible() {
        let w = weights(300);
        let size = 12;
        let (scores, plain_tail) = plain_null(&w, size, 11);
        // Targets with plain-permutation tail probabilities of about 1e-2 and 1e-3 (errors
        // 1.6% and 5%); the multilevel estimate averaged over 8 ladders (errors 6-7%).
        let targets = [scores[4000], scores[400]];
        let runs: Vec<Vec<TailEstimate>> = (0..8)
            .map(|seed| tail_probabilities(&w, size, &targets, 301, 1e-50, seed, 1))
            .collect();
        for (j, t) in targets.iter().enumerate() {
            let plain = plain_tail(*t);
            assert!(runs.iter().all(|r| !r[j].beyond));
            let mean = runs.iter().map(|r| r[j].log_p.exp()).sum::<f64>() / 8.0;
            assert!(
                (0.75..1.33).contains(&(mean / plain)),
                "target {t}: {mean} vs {plain}"
            );
        }
    }

    /// Mean and standard deviation of the log of the estimates of P(ES >= target) over
    /// `seeds` ladders, and the root mean reported variance.
    fn spread(w: &[f64], size: usize, target: f64, seeds: u64) -> (f64, f64, f64, f64) {
        let est: Vec<TailEstimate> = (0..seeds)
            .map(|seed| tail_probabilities(w, size, &[target], 101, 1e-50, 100 + seed, 1)[0])
            .collect();
        assert!(est.iter().all(|e| !e.beyond));
        let r = seeds as f64;
        let mean_p = est.iter().map(|e| e.log_p.exp()).sum::<f64>() / r;
        let mean = est.iter().map(|e| e.log_p).sum::<f64>() / r;
        let sd = (est.iter().map(|e| (e.log_p - mean).powi(2)).sum::<f64>() / (r - 1.0)).sqrt();
        let reported = (est.iter().map(|e| e.log_var).sum::<f64>() / r).sqrt();
        (mean_p, mean, sd, reported)
    }

    #[test]
    fn unbiased_with_the_reported_error_against_plain_permutation() {
        // p ~ 1e-3 (5 levels): the mean estimate (unbiased for p) against 4e5 permutations
        // (5% error), and the spread of log p over 60 seeds against the reported error.
        let w = weights(300);
        let size = 12;
        let (scores, plain_tail) = plain_null(&w, size, 3);
        let target = scores[400];
        let plain = plain_tail(target);
        let (mean_p, _, sd, reported) = spread(&w, size, target, 60);
        assert!(
            (0.8..1.25).contains(&(mean_p / plain)),
            "{mean_p} vs {plain}"
        );
        assert!((0.7..1.4).contains(&(sd / reported)), "{sd} vs {reported}");
    }

    #[test]
    fn deep_estimates_spread_as_reported() {
        // 12 genes of 2000 at p ~ 1e-13: with as many proposals as genes the copies of a
        // survivor stayed alike and log p spread 1.4-1.8 times the reported error. 300 genes
        // of 3000 at p ~ 1e-7: 300 proposals per particle and level.
        for (n_genes, size, target, range) in [
            (2000, 12, 0.98, -39.5..-35.5),
            (3000, 300, 0.5, -24.0..-12.0),
        ] {
            let (_, mean, sd, reported) = spread(&weights(n_genes), size, target, 40);
            assert!(range.contains(&mean), "{size}: {mean}");
            assert!(
                (0.7..1.3).contains(&(sd / reported)),
                "{size}: {sd} vs {reported}"
            );
        }
    }

    #[test]
    fn ladder_is_as_accurate_as_halving_with_the_fewest_particles() {
        assert_eq!(ladder_shape(101), (149, 37));
        for s in [11, 51, 101, 501, 1001] {
            let halving = (trigamma((s as f64 + 1.0) / 2.0) - trigamma(s as f64 + 1.0)) / LN_2;
            let per_unit =
                |(n, m): (usize, usize)| level_variance(n, m) / (n as f64 / m as f64).ln();
            let (n, m) = ladder_shape(s);
            assert!(per_unit((n, m)) <= halving && m * 3 < n && m * 5 > n);
            let m1 = ((n - 1) as f64 * KEEP).round() as usize;
            assert!(n == s || per_unit((n - 1, m1)) > halving, "{s}");
        }
    }

    #[test]
    fn deterministic_whatever_the_threads() {
        let w = weights(200);
        let run = |threads| {
            crate::with_threads(threads, || {
                tail_probabilities(&w, 10, &[0.6, 0.8], 51, 1e-30, 3, 9)
            })
            .unwrap()
        };
        assert_eq!(run(1), run(2));
    }

    #[test]
    fn a_move_is_checked_as_if_it_were_made() {
        let w = weights(200);
        let mut rng = rng::stream(2, &[]);
        let starts = [20, 60, 130];
        for _ in 0..2000 {
            let mut hits: Vec<u32> = (0..200).filter(|_| rng.random_bool(0.08)).collect();
            if hits.len() < 2 {
                continue;
            }
            let out_at = rng.random_range(0..hits.len());
            let incoming = rng.random_range(0..200u32);
            if hits.contains(&incoming) {
                continue;
            }
            let level = rng.random_range(0.0..0.8);
            let mut blocks = Blocks::new(&starts, &w, &hits);
            let total: f64 = hits.iter().map(|&h| w[h as usize]).sum();
            let outgoing = hits[out_at];
            let in_at = hits.partition_point(|&h| h < incoming);
            let swap = Swap::new(&hits, &blocks, out_at, incoming, in_at);
            let after = total - w[outgoing as usize] + w[incoming as usize];
            let miss_step = 1.0 / (200 - hits.len()) as f64;
            let found = find_witness(&w, &hits, &mut blocks, Some(&swap), after, miss_step, level);
            apply(&mut hits, &swap);
            let max_dev = enrichment(&w, &hits).unwrap().max_dev;
            assert_eq!(found.is_some(), max_dev > level, "{hits:?} {level}");
            if let Some(f) = found {
                assert_eq!(hits[f.index], f.position);
                let cum: f64 = hits[..=f.index].iter().map(|&h| w[h as usize]).sum();
                assert!((f.cum - cum).abs() < 1e-12);
                // The witness is the highest hit.
                assert!((running_value(&f, after, miss_step) - max_dev).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn checks_with_the_peaks_of_unchanged_blocks_are_exact() {
        // A walk on one set: blocks keep the peaks seen by earlier checks while their hits
        // are unchanged; every check must still match the running sum over every gene.
        let w = weights(300);
        let mut rng = rng::stream(4, &[]);
        let mut hits: Vec<u32> = (0..40).map(|i| i * 3).collect();
        let level = enrichment(&w, &hits).unwrap().max_dev * 0.8;
        let mut blocks = Blocks::new(&[10, 30, 70, 150], &w, &hits);
        let miss_step = 1.0 / (300 - 40) as f64;
        let mut total: f64 = hits.iter().map(|&h| w[h as usize]).sum();
        let (mut kept, mut with_peaks) = (0, 0);
        for _ in 0..5000 {
            let out_at = rng.random_range(0..hits.len());
            let incoming = rng.random_range(0..300u32);
            if hits.contains(&incoming) {
                continue;
            }
            let outgoing = hits[out_at];
            let in_at = hits.partition_point(|&h| h < incoming);
            let swap = Swap::new(&hits, &blocks, out_at, incoming, in_at);
            let (w_out, w_in) = (w[outgoing as usize], w[incoming as usize]);
            let after = total - w_out + w_in;
            with_peaks += usize::from(blocks.known.iter().any(|&k| k));
            let found = find_witness(&w, &hits, &mut blocks, Some(&swap), after, miss_step, level);
            let mut moved = hits.clone();
            apply(&mut moved, &swap);
            let max_dev = enrichment(&w, &moved).unwrap().max_dev;
            assert_eq!(found.is_some(), max_dev > level);
            if found.is_some() {
                kept += 1;
                hits = moved;
                total = after;
                blocks.add(swap.out_block, w_out, -1);
                blocks.add(swap.in_block, w_in, 1);
            }
        }
        assert!(
            kept > 100 && kept < 4500 && with_peaks > 1000,
            "{kept} {with_peaks}"
        );
    }

    #[test]
    fn walk_keeps_sets_above_the_level() {
        let w = weights(200);
        let mut rng = rng::stream(1, &[]);
        let mut p = Particle {
            hits: (0..10).collect(),
            total: (0..10).map(|i| w[i]).sum(),
        };
        walk_above(&w, &mut p, &[3, 40, 100], 0.7, &mut rng);
        assert!(p.hits.windows(2).all(|h| h[0] < h[1]));
        assert!(enrichment(&w, &p.hits).unwrap().max_dev > 0.7);
        assert!((p.total - p.hits.iter().map(|&h| w[h as usize]).sum::<f64>()).abs() < 1e-12);
    }
}

//! The results of one block pair, and the rule that decides which pairs are kept.

use super::Reason;
use crate::fdr::LogPHistogram;
use rayon::prelude::*;

/// Which pairs of a block to return.
#[derive(Clone, Copy, Debug)]
pub struct KeepRule {
    /// Keep every pair (no histogram needed: the caller adjusts all p-values exactly).
    pub all: bool,
    /// Keep pairs with log p at or below this (natural log; `f64::INFINITY` for no limit).
    pub max_log_p: f64,
    /// Keep, per feature, only its `top` pairs with the smallest p (0: no limit).
    pub top: usize,
}

/// Global position of a block pair: feature offsets, and whether x and y are the same set
/// (then only pairs with global x index < global y index are tested).
#[derive(Clone, Copy, Debug)]
pub struct BlockPosition {
    pub x_offset: usize,
    pub y_offset: usize,
    pub symmetric: bool,
}

impl BlockPosition {
    pub fn tested(&self, i: usize, j: usize) -> bool {
        !self.symmetric || self.x_offset + i < self.y_offset + j
    }
}

/// One tested pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairResult {
    pub estimate: f64,
    pub statistic: f64,
    pub df: f64,
    pub n: f64,
    pub log_p: f64,
    /// A second effect measure some tests add (AUC, conditional MLE odds ratio, ...).
    pub extra: f64,
    pub reason: Reason,
}

impl PairResult {
    pub fn missing(n: f64, reason: Reason) -> Self {
        PairResult {
            estimate: f64::NAN,
            statistic: f64::NAN,
            df: f64::NAN,
            n,
            log_p: f64::NAN,
            extra: f64::NAN,
            reason,
        }
    }
}

/// Kept pairs of a block, as columns; `i`, `j` are block-local feature indices.
#[derive(Clone, Debug, Default)]
pub struct PairTable {
    pub i: Vec<usize>,
    pub j: Vec<usize>,
    pub estimate: Vec<f64>,
    pub statistic: Vec<f64>,
    pub df: Vec<f64>,
    pub n: Vec<f64>,
    pub log_p: Vec<f64>,
    pub extra: Vec<f64>,
    pub reason: Vec<u8>,
}

impl PairTable {
    pub fn push(&mut self, i: usize, j: usize, r: &PairResult) {
        self.i.push(i);
        self.j.push(j);
        self.estimate.push(r.estimate);
        self.statistic.push(r.statistic);
        self.df.push(r.df);
        self.n.push(r.n);
        self.log_p.push(r.log_p);
        self.extra.push(r.extra);
        self.reason.push(r.reason as u8);
    }

    pub fn len(&self) -> usize {
        self.i.len()
    }

    pub fn is_empty(&self) -> bool {
        self.i.is_empty()
    }
}

/// What a block returns: its kept pairs, and the histogram of all its tested p-values.
#[derive(Clone, Debug)]
pub struct BlockOutput {
    pub pairs: PairTable,
    pub histogram: LogPHistogram,
}

/// Computes `test(i, j)` for every tested pair of an `nx` x `ny` block in parallel and keeps
/// pairs by `rule`.
pub fn run_block<F>(
    nx: usize,
    ny: usize,
    pos: BlockPosition,
    rule: KeepRule,
    test: F,
) -> BlockOutput
where
    F: Fn(usize, usize) -> PairResult + Sync,
{
    let columns: Vec<Vec<PairResult>> = (0..ny)
        .into_par_iter()
        .map(|j| (0..nx).map(|i| test(i, j)).collect())
        .collect();
    keep_pairs(nx, ny, pos, rule, |i, j| columns[j][i])
}

/// Applies `rule` to the results of a block (`result(i, j)` for tested pairs).
pub fn keep_pairs(
    nx: usize,
    ny: usize,
    pos: BlockPosition,
    rule: KeepRule,
    result: impl Fn(usize, usize) -> PairResult,
) -> BlockOutput {
    let mut histogram = LogPHistogram::with_defaults();
    let mut pairs = PairTable::default();
    let mut candidates: Vec<(usize, usize, PairResult)> = Vec::new();
    for j in 0..ny {
        for i in 0..nx {
            if !pos.tested(i, j) {
                continue;
            }
            let r = result(i, j);
            if rule.all {
                pairs.push(i, j, &r);
                continue;
            }
            histogram.add(r.log_p);
            if r.log_p <= rule.max_log_p {
                candidates.push((i, j, r));
            }
        }
    }
    if !rule.all {
        keep_top(&mut candidates, nx, ny, pos.symmetric, rule.top);
        for (i, j, r) in &candidates {
            pairs.push(*i, *j, r);
        }
    }
    BlockOutput { pairs, histogram }
}

/// Orders pairs by p-value, then by the size of the effect.
pub fn stronger(a: &PairResult, b: &PairResult) -> std::cmp::Ordering {
    a.log_p
        .total_cmp(&b.log_p)
        .then(b.estimate.abs().total_cmp(&a.estimate.abs()))
}

/// Keeps the pairs that are among the `top` strongest of their x feature (and, for a
/// symmetric screen, of their y feature too).
pub fn keep_top(
    candidates: &mut Vec<(usize, usize, PairResult)>,
    nx: usize,
    ny: usize,
    symmetric: bool,
    top: usize,
) {
    if top == 0 {
        return;
    }
    candidates.sort_by(|a, b| stronger(&a.2, &b.2));
    let mut per_x = vec![0usize; nx];
    let mut per_y = vec![0usize; ny];
    candidates.retain(|(i, j, _)| {
        let keep_x = per_x[*i] < top;
        let keep_y = symmetric && per_y[*j] < top;
        per_x[*i] += 1;
        per_y[*j] += 1;
        keep_x || keep_y
    });
}

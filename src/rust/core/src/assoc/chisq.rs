//! Pearson's chi-square test of independence for all pairs of categorical features, as
//! `chisq.test(a, b)`: levels absent from a pair's complete observations are dropped, 2x2
//! tables get Yates' continuity correction. The effect size is Cramer's V (uncorrected).
//! All contingency tables of a block come from one product of one-hot matrices.

use super::pairs::{run_block, BlockOutput, BlockPosition, KeepRule, PairResult};
use super::{cross_product, one_hot, Block, Reason};
use crate::dist::chisq_upper_log_p;

/// Chi-square test of a contingency table given as rows of counts.
pub fn chisq_table(table: &[Vec<f64>], yates: bool) -> PairResult {
    let cols = table.first().map_or(0, |r| r.len());
    let row_tot: Vec<f64> = table.iter().map(|r| r.iter().sum()).collect();
    let col_tot: Vec<f64> = (0..cols)
        .map(|c| table.iter().map(|r| r[c]).sum())
        .collect();
    let n: f64 = row_tot.iter().sum();
    let rows: Vec<usize> = (0..table.len()).filter(|&r| row_tot[r] > 0.0).collect();
    let keep_cols: Vec<usize> = (0..cols).filter(|&c| col_tot[c] > 0.0).collect();
    if rows.len() < 2 || keep_cols.len() < 2 {
        return PairResult::missing(n, Reason::OneLevel);
    }
    let expected = |r: usize, c: usize| row_tot[r] * col_tot[c] / n;
    let correction = if yates && rows.len() == 2 && keep_cols.len() == 2 {
        let mut m = 0.5f64;
        for &r in &rows {
            for &c in &keep_cols {
                m = m.min((table[r][c] - expected(r, c)).abs());
            }
        }
        m
    } else {
        0.0
    };
    let (mut stat, mut raw) = (0.0, 0.0);
    for &r in &rows {
        for &c in &keep_cols {
            let e = expected(r, c);
            let d = (table[r][c] - e).abs();
            stat += (d - correction).powi(2) / e;
            raw += d * d / e;
        }
    }
    let df = ((rows.len() - 1) * (keep_cols.len() - 1)) as f64;
    let v = (raw / (n * (rows.len().min(keep_cols.len()) - 1) as f64)).sqrt();
    PairResult {
        estimate: v,
        statistic: stat,
        df,
        n,
        log_p: chisq_upper_log_p(stat, df),
        extra: f64::NAN,
        reason: Reason::Ok,
    }
}

/// All pairs of categorical features of `a` and `b`.
#[allow(clippy::too_many_arguments)]
pub fn chisq_block(
    a: &Block,
    a_levels: &[usize],
    b: &Block,
    b_levels: &[usize],
    yates: bool,
    pos: BlockPosition,
    rule: KeepRule,
) -> BlockOutput {
    let (ha, oa) = one_hot(a, a_levels);
    let (hb, ob) = one_hot(b, b_levels);
    let counts = cross_product(&ha, &hb);
    run_block(a.n_features, b.n_features, pos, rule, |i, j| {
        let table: Vec<Vec<f64>> = (0..a_levels[i])
            .map(|r| {
                (0..b_levels[j])
                    .map(|c| counts[(oa[i] + r, ob[j] + c)])
                    .collect()
            })
            .collect();
        chisq_table(&table, yates)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chisq_reference_values() {
        // chisq.test(matrix(c(12, 5, 7, 9), 2)): X-squared = 1.4559963788, df = 1 (Yates)
        let r = chisq_table(&[vec![12.0, 7.0], vec![5.0, 9.0]], true);
        assert!(
            (r.statistic - 1.455_996_378_8).abs() < 1e-9,
            "{}",
            r.statistic
        );
        // chisq.test(matrix(c(10, 20, 30, 25, 15, 5), 2)): df = 2, no correction
        let r = chisq_table(&[vec![10.0, 30.0, 15.0], vec![20.0, 25.0, 5.0]], true);
        assert_eq!(r.df, 2.0);
        assert!(
            (r.statistic - 8.569_214_876_0).abs() < 1e-9,
            "{}",
            r.statistic
        );
    }
}

//! Binding of the all-vs-all association tests (sceffects-core `assoc`): one block pair of
//! a screen at a time.

use crate::input::CscSlots;
use crate::{fail, pooled, RResult};
use extendr_api::prelude::*;
use sceffects_core::assoc::pairs::{BlockOutput, BlockPosition, KeepRule};
use sceffects_core::assoc::{chisq, cor, fisher, kruskal, mwu, Block};

fn block_of(m: &RMatrix<f64>) -> RResult<Block<'_>> {
    Block::new(m.data(), m.nrows(), m.ncols()).map_err(fail)
}

fn output_list(out: BlockOutput) -> RResult<Robj> {
    let p = out.pairs;
    let to_i32 = |v: &[usize]| v.iter().map(|&k| k as i32 + 1).collect::<Vec<i32>>();
    let reason: Vec<i32> = p.reason.iter().map(|&r| r as i32).collect();
    let list = List::from_names_and_values(
        [
            "i",
            "j",
            "estimate",
            "statistic",
            "df",
            "n",
            "log_p",
            "extra",
            "reason",
            "histogram",
        ],
        [
            to_i32(&p.i).into_robj(),
            to_i32(&p.j).into_robj(),
            p.estimate.into_robj(),
            p.statistic.into_robj(),
            p.df.into_robj(),
            p.n.into_robj(),
            p.log_p.into_robj(),
            p.extra.into_robj(),
            reason.into_robj(),
            out.histogram.counts.into_robj(),
        ],
    )?;
    Ok(list.into_robj())
}

/// The Mann-Whitney settings named in `options`.
fn mwu_options(options: &List) -> mwu::MwuOptions {
    let exact = match options
        .dollar("exact")
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .as_deref()
    {
        Some("always") => mwu::Exact::Always,
        Some("never") => mwu::Exact::Never,
        _ => mwu::Exact::Auto,
    };
    mwu::MwuOptions {
        exact,
        continuity: flag(options, "continuity"),
    }
}

fn flag(options: &List, name: &str) -> bool {
    options
        .dollar(name)
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// One block pair of an association screen. `test` picks the kernel; `options` holds its
/// settings by name; `x_levels`/`y_levels` are level counts for categorical features.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rs_assoc_block(
    test: &str,
    x: RMatrix<f64>,
    y: RMatrix<f64>,
    x_levels: &[i32],
    y_levels: &[i32],
    offsets: &[i32],
    symmetric: bool,
    keep_all: bool,
    max_log_p: f64,
    top: i32,
    options: List,
    threads: i32,
) -> RResult<Robj> {
    let xb = block_of(&x)?;
    let yb = block_of(&y)?;
    if xb.n_samples != yb.n_samples {
        return Err(fail("x and y have different numbers of samples"));
    }
    let pos = BlockPosition {
        x_offset: offsets[0] as usize,
        y_offset: offsets[1] as usize,
        symmetric,
    };
    let rule = KeepRule {
        all: keep_all,
        max_log_p,
        top: top.max(0) as usize,
    };
    let levels = |v: &[i32]| v.iter().map(|&l| l as usize).collect::<Vec<usize>>();
    let (xl, yl) = (levels(x_levels), levels(y_levels));
    let out = match test {
        "pearson" => pooled(threads, || {
            cor::cor_block(&xb, &yb, cor::CorMethod::Pearson, pos, rule)
        }),
        "spearman" => pooled(threads, || {
            cor::cor_block(&xb, &yb, cor::CorMethod::Spearman, pos, rule)
        }),
        "mwu" => {
            let o = mwu_options(&options);
            pooled(threads, || mwu::mwu_block(&xb, &yb, o, pos, rule))
        }
        "kruskal" => pooled(threads, || kruskal::kruskal_block(&xb, &yb, &yl, pos, rule)),
        "fisher" => {
            let mle = flag(&options, "mle");
            pooled(threads, || fisher::fisher_block(&xb, &yb, mle, pos, rule))
        }
        "chisq" => {
            let yates = flag(&options, "yates");
            pooled(threads, || {
                chisq::chisq_block(&xb, &xl, &yb, &yl, yates, pos, rule)
            })
        }
        other => return Err(fail(format!("unknown test '{other}'"))),
    }
    .map_err(fail)?;
    output_list(out)
}

/// The Mann-Whitney tests of every feature (row) of a dgCMatrix `x` against complete
/// indicators `y`, from its non-zeros (sceffects-core `mwu::mwu_sparse`), `block_size`
/// features at a time; `y_offset` places `y` in the screen.
#[extendr]
#[allow(clippy::too_many_arguments)]
fn rs_mwu_sparse(
    x: Robj,
    y: RMatrix<f64>,
    y_offset: i32,
    keep_all: bool,
    max_log_p: f64,
    top: i32,
    options: List,
    threads: i32,
    block_size: i32,
) -> RResult<Robj> {
    let slots = CscSlots::of(&x)?;
    let view = slots.view()?;
    let yb = block_of(&y)?;
    let pos = BlockPosition {
        x_offset: 0,
        y_offset: y_offset as usize,
        symmetric: false,
    };
    let rule = KeepRule {
        all: keep_all,
        max_log_p,
        top: top.max(0) as usize,
    };
    let o = mwu_options(&options);
    let chunk = block_size.max(1) as usize;
    let out = pooled(threads, || mwu::mwu_sparse(&view, &yb, o, pos, rule, chunk))
        .and_then(|r| r)
        .map_err(fail)?;
    output_list(out)
}

/// The five matrices of a correlation screen keeping every pair, written by the core
/// (sceffects-core `cor::cor_matrices`); `y = NULL` for pairs within `x`. `dimnames` are
/// set on each.
#[extendr]
fn rs_cor_matrices(
    x: RMatrix<f64>,
    y: Nullable<RMatrix<f64>>,
    method: &str,
    dimnames: List,
    threads: i32,
) -> RResult<Robj> {
    let method = match method {
        "pearson" => cor::CorMethod::Pearson,
        "spearman" => cor::CorMethod::Spearman,
        other => return Err(fail(format!("unknown method '{other}'"))),
    };
    let xb = block_of(&x)?;
    let y = match y {
        Nullable::NotNull(m) => Some(m),
        Nullable::Null => None,
    };
    let yb = y.as_ref().map(block_of).transpose()?;
    let ny = yb.as_ref().map_or(xb.n_features, |b| b.n_features);
    let mut m: Vec<RMatrix<f64>> = (0..5)
        .map(|_| RMatrix::<f64>::new(xb.n_features, ny))
        .collect();
    {
        let [e, t, p, f, n] = m.as_mut_slice() else {
            unreachable!()
        };
        let out = cor::CorMatrices {
            estimate: e.data_mut(),
            statistic: t.data_mut(),
            p_value: p.data_mut(),
            fdr: f.data_mut(),
            n: n.data_mut(),
        };
        let missing = <f64 as CanBeNA>::na();
        pooled(threads, || {
            cor::cor_matrices(&xb, yb.as_ref(), method, missing, out)
        })
        .and_then(|r| r)
        .map_err(fail)?;
    }
    let mut values: Vec<Robj> = m.into_iter().map(|a| a.into_robj()).collect();
    for v in values.iter_mut() {
        v.set_attrib("dimnames", dimnames.clone())?;
    }
    Ok(
        List::from_names_and_values(["estimate", "statistic", "p_value", "fdr", "n"], values)?
            .into_robj(),
    )
}

/// Sum of the entries of the product of two blocks (benchmark floor).
#[extendr]
fn rs_crossprod(x: RMatrix<f64>, y: RMatrix<f64>, threads: i32) -> RResult<f64> {
    let (xb, yb) = (block_of(&x)?, block_of(&y)?);
    pooled(threads, || {
        sceffects_core::assoc::product_checksum(&xb, &yb)
    })
    .map_err(fail)
}

extendr_module! {
    mod assoc;
    fn rs_assoc_block;
    fn rs_crossprod;
    fn rs_mwu_sparse;
    fn rs_cor_matrices;
}

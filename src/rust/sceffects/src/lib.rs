//! extendr binding of sceffects: borrows R memory, calls sceffects-core, builds R results.
//! No statistics here: one module per capability, each only adapting R values. Errors go
//! through `fail()`, which escapes `%` (extendr 0.9 passes error messages to Rf_error as a
//! format string).

use extendr_api::prelude::*;
use std::ffi::{c_int, c_void};

mod assoc;
mod balance;
mod copula;
mod did;
mod gsea;
mod input;
mod lmm;
mod manifold;
mod nb;
mod project;
mod pvalues;

pub(crate) type RResult<T> = std::result::Result<T, Error>;

/// The `threads` argument (checked in R) as a pool size.
pub(crate) fn threads_of(threads: i32) -> usize {
    threads.max(1) as usize
}

/// A seed from R (a whole number >= 0, passed as a double).
pub(crate) fn seed_of(seed: f64) -> u64 {
    seed as i64 as u64
}

/// R's 1-based indices as 0-based.
pub(crate) fn zero_based(idx: &[i32]) -> Vec<usize> {
    idx.iter().map(|&i| (i - 1) as usize).collect()
}

extern "C" {
    fn R_ToplevelExec(fun: Option<unsafe extern "C" fn(*mut c_void)>, data: *mut c_void) -> c_int;
    fn R_CheckUserInterrupt();
}

unsafe extern "C" fn check_interrupt(_: *mut c_void) {
    R_CheckUserInterrupt();
}

/// Whether the user pressed Ctrl-C: R's check, run where its long jump cannot escape.
fn interrupt_pending() -> bool {
    // SAFETY: called on R's main thread; R_ToplevelExec catches the jump of an interrupt.
    unsafe { R_ToplevelExec(Some(check_interrupt), std::ptr::null_mut()) == 0 }
}

/// Runs `f` on a local pool of `threads` threads while R's main thread watches for Ctrl-C.
pub(crate) fn pooled<T: Send>(threads: i32, f: impl FnOnce() -> T + Send) -> Result<T, String> {
    sceffects_core::with_threads_polled(threads_of(threads), f, interrupt_pending)
}

pub(crate) fn fail(msg: impl std::fmt::Display) -> Error {
    Error::Other(msg.to_string().replace('%', "%%"))
}

/// Called when the package loads: see `never_use_the_global_pool`.
#[extendr]
fn rs_init() {
    sceffects_core::never_use_the_global_pool();
}

/// The reason text of every status code of every kind of fit (NA for a result).
#[extendr]
fn rs_reason_table() -> RResult<Robj> {
    let table = sceffects_core::reasons::reason_table();
    let names: Vec<&str> = table.iter().map(|(kind, _)| *kind).collect();
    let texts: Vec<Robj> = table
        .iter()
        .map(|(_, t)| {
            t.iter()
                .map(|r| r.map(String::from))
                .collect::<Vec<Option<String>>>()
                .into_robj()
        })
        .collect();
    Ok(List::from_names_and_values(names, texts)?.into_robj())
}

extendr_module! {
    mod sceffects;
    use assoc;
    use balance;
    use copula;
    use did;
    use gsea;
    use input;
    use lmm;
    use manifold;
    use nb;
    use project;
    use pvalues;
    fn rs_init;
    fn rs_reason_table;
}

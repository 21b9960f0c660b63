//! sceffects-core: the numerics of sceffects, with no R in sight. Functions take plain
//! slices in R's column-major layout and return plain Rust values; the binding crate
//! borrows R memory, calls them and builds R results.

pub mod assoc;
pub mod cellstate;
pub mod clustered;
pub mod dist;
pub mod fdr;
pub mod gsea;
pub mod input;
pub mod lmm;
pub mod nb;
pub mod project;
pub mod rank;
pub mod rng;

/// Makes faer sequential unless a call passes its own parallelism. faer's default,
/// `Par::rayon(0)`, starts rayon's global pool on first use outside a local pool; a process
/// forked after that (BiocParallel's MulticoreParam) inherits a global pool whose threads
/// do not exist in the child, and hangs on its first parallel faer call.
pub fn never_use_the_global_pool() {
    faer::set_global_parallelism(faer::Par::Seq);
}

/// Runs `f` on a local rayon pool of `threads` threads (never the global pool, so each call
/// honours its own `threads` argument, and forked processes never wait on threads they do
/// not have).
pub fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> Result<T, String> {
    never_use_the_global_pool();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| format!("could not start {threads} threads: {e}"))?;
    Ok(pool.install(f))
}

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

/// Runs `f` on a local rayon pool of `threads` threads (never the global pool, so each call
/// honours its own `threads` argument).
pub fn with_threads<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> Result<T, String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| format!("could not start {threads} threads: {e}"))?;
    Ok(pool.install(f))
}

//! sceffects-core: the numerics of sceffects, with no R in sight. Functions take plain
//! slices in R's column-major layout and return plain Rust values; the binding crate
//! borrows R memory, calls them and builds R results.

pub mod assoc;
pub mod balance;
pub mod cellstate;
pub mod clustered;
pub mod copula;
pub mod dist;
pub mod fdr;
pub mod gsea;
pub mod input;
pub mod linalg;
pub mod lmm;
pub mod median;
pub mod nb;
pub mod ols;
pub mod project;
pub mod rank;
pub mod reasons;
pub mod rng;
pub mod vmath;
pub mod wald;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static CANCELLED: AtomicBool = AtomicBool::new(false);

/// Whether the running call was interrupted: long loops check this and stop early (their
/// partial results are discarded by [`with_threads_polled`]).
pub fn cancelled() -> bool {
    CANCELLED.load(Ordering::Relaxed)
}

/// A zeroed buffer of `len` values, or an error naming `what` and the size when the memory
/// cannot be had (an infallible allocation would abort the whole R process).
pub fn try_zeroed(len: usize, what: &str) -> Result<Vec<f64>, String> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        format!(
            "not enough memory for {what}: {:.1} GB needed",
            len as f64 * 8.0 / 1e9
        )
    })?;
    v.resize(len, 0.0);
    Ok(v)
}

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
    with_threads_polled(threads, f, || false)
}

/// As [`with_threads`], calling `interrupted` on this thread every 50 ms while the pool
/// works; once it returns true, [`cancelled`] is raised for the loops to stop, and the
/// result is an error.
pub fn with_threads_polled<T: Send>(
    threads: usize,
    f: impl FnOnce() -> T + Send,
    mut interrupted: impl FnMut() -> bool,
) -> Result<T, String> {
    never_use_the_global_pool();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| format!("could not start {threads} threads: {e}"))?;
    CANCELLED.store(false, Ordering::Relaxed);
    let (sender, receiver) = std::sync::mpsc::channel();
    let out = std::thread::scope(|scope| {
        scope.spawn(|| sender.send(pool.install(f)));
        loop {
            match receiver.recv_timeout(Duration::from_millis(50)) {
                Ok(value) => break Some(value),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if !cancelled() && interrupted() {
                        CANCELLED.store(true, Ordering::Relaxed);
                    }
                }
                // The work panicked: the scope passes the panic on.
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break None,
            }
        }
    });
    let was_cancelled = CANCELLED.swap(false, Ordering::Relaxed);
    match out {
        Some(_) if was_cancelled => Err("interrupted by the user".into()),
        Some(value) => Ok(value),
        None => Err("the computation stopped unexpectedly".into()),
    }
}

# Threads, progress and seeded randomness, shared by every capability.

# Evaluates `expr` after set.seed(seed), then restores the user's RNG state.
with_seed <- function(seed, expr) {
  old <- if (exists(".Random.seed", envir = globalenv())) get(".Random.seed", envir = globalenv())
  on.exit(if (is.null(old)) rm(".Random.seed", envir = globalenv()) else assign(".Random.seed", old, envir = globalenv()))
  set.seed(seed)
  expr
}

# The `threads` argument: a positive whole number, by default the option
# `sceffects.threads`, else 2.
resolve_threads <- function(threads = NULL) {
  if (is.null(threads)) threads <- getOption("sceffects.threads", 2L)
  if (!is.numeric(threads) || length(threads) != 1L || is.na(threads) || threads < 1 ||
      threads != round(threads)) {
    stop("`threads` must be a single whole number >= 1.", call. = FALSE)
  }
  as.integer(threads)
}

# Runs `step(k)` for k in seq_len(n) with a cli progress bar; R checks for Ctrl-C between
# steps, and each step is a short call into the core.
with_progress <- function(n, label, step) {
  out <- vector("list", n)
  if (n > 1L) {
    id <- cli::cli_progress_bar(label, total = n, clear = TRUE, .envir = environment())
    on.exit(cli::cli_progress_done(id), add = TRUE)
  }
  for (k in seq_len(n)) {
    out[[k]] <- step(k)
    if (n > 1L) cli::cli_progress_update(id = id)
  }
  out
}

# Contiguous chunks of 1..n with at most `size` indices each.
split_blocks <- function(n, size) {
  if (n == 0L) return(list())
  starts <- seq(1L, n, by = size)
  lapply(starts, function(s) s:min(n, s + size - 1L))
}

# Runs `one(chunk)` for every chunk of features: in this process with a progress bar (so
# Ctrl-C is honoured between chunks), or spread over the workers of `BPPARAM`.
run_chunks <- function(chunks, one, BPPARAM, label) {
  if (is.null(BPPARAM) || length(chunks) == 1L) {
    with_progress(length(chunks), label, function(k) one(chunks[[k]]))
  } else {
    BiocParallel::bplapply(chunks, one, BPPARAM = BPPARAM)
  }
}

# A `seed` argument: a whole number >= 0 (a double, for the core); NULL draws one from R's
# generator, so that set.seed() makes the call reproducible.
resolve_seed <- function(seed) {
  if (is.null(seed)) return(as.double(sample.int(.Machine$integer.max, 1L)))
  if (!is.numeric(seed) || length(seed) != 1L || !is.finite(seed) || seed != round(seed) || seed < 0) {
    stop("`seed` must be a single whole number >= 0.", call. = FALSE)
  }
  as.double(seed)
}

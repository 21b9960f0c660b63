# Threads, progress and seeded randomness, shared by every capability.

# Evaluates `expr` after set.seed(seed), then restores the user's RNG state.
with_seed <- function(seed, expr) {
  force(seed)  # a seed drawn from the user's generator (seed = NULL) advances it, as set.seed() users expect
  old <- if (exists(".Random.seed", envir = globalenv())) get(".Random.seed", envir = globalenv())
  on.exit(if (is.null(old)) rm(".Random.seed", envir = globalenv()) else assign(".Random.seed", old, envir = globalenv()))
  set.seed(seed)
  expr
}

# The `threads` argument: a positive whole number, by default the option
# `sceffects.threads`, else 2. More than 4 threads per core only costs memory (each is an
# OS thread with its own stack), so larger requests are refused rather than honoured.
resolve_threads <- function(threads = NULL) {
  if (is.null(threads)) threads <- getOption("sceffects.threads", 2L)
  most <- max_threads()
  if (!is.numeric(threads) || length(threads) != 1L || is.na(threads) || threads < 1 ||
      threads != round(threads)) {
    stop("`threads` must be a single whole number >= 1.", call. = FALSE)
  }
  if (threads > most) {
    stop(sprintf("`threads` = %s is more than %d (4 per core on this machine): use at most %d.",
                 format(threads), most, most), call. = FALSE)
  }
  as.integer(threads)
}

# detectCores() runs a shell command (milliseconds, more than a small did_table's fit), so
# the count is read once per session.
max_threads <- function() {
  if (is.null(machine$cores)) machine$cores <- max(1L, parallel::detectCores(logical = TRUE), na.rm = TRUE)
  4L * machine$cores
}
machine <- new.env(parent = emptyenv())

# `BPPARAM`: NULL (run here) or a BiocParallelParam; checked on every call, whether or not
# the work is split.
check_bpparam <- function(BPPARAM) {
  if (!is.null(BPPARAM) && !is(BPPARAM, "BiocParallelParam")) {
    stop(sprintf("`BPPARAM` must be NULL or a BiocParallel parameter object such as MulticoreParam(2) or SnowParam(2), not %s.",
                 if (is.character(BPPARAM)) sprintf("the string \"%s\"", BPPARAM[1L]) else class(BPPARAM)[1L]),
         call. = FALSE)
  }
  invisible(BPPARAM)
}

# Runs `step(k)` for k in seq_len(n) with a cli progress bar (none when messages are off,
# see local_verbose()); R checks for Ctrl-C between steps, and each step is a short call
# into the core.
with_progress <- function(n, label, step, show = TRUE) {
  out <- vector("list", n)
  show <- show && n > 1L && !isFALSE(getOption("sceffects.verbose"))
  if (show) {
    id <- cli::cli_progress_bar(label, total = n, clear = TRUE, .envir = environment())
    on.exit(cli::cli_progress_done(id), add = TRUE)
  }
  for (k in seq_len(n)) {
    out[[k]] <- step(k)
    if (show) cli::cli_progress_update(id = id)
  }
  out
}

# The one chunk planner: contiguous chunks of features 1..n, as few as the limits allow.
# A chunk holds at most `block_size` features; a DelayedArray is realised at most
# `delayed_rows` features at a time, and at most the option `sceffects.block_memory` as
# doubles (features x `n_samples`), in whole multiples of the file's `chunk_rows` when
# that fits; a chunk read as a dense block holds at most `max_values` values; and with
# `BPPARAM` there is at least one chunk per worker, so every worker gets a share. Results
# never depend on the plan: features are independent.
plan_chunks <- function(n, block_size = NULL, BPPARAM = NULL, delayed = FALSE,
                        max_values = NULL, n_samples = 1L, delayed_rows = 2048L, chunk_rows = NULL) {
  if (n == 0L) return(list())
  size <- n
  if (!is.null(block_size)) size <- min(size, block_size)
  if (delayed) {
    fits <- max(1, floor(block_memory() / (8 * max(1L, n_samples))))
    size <- min(size, delayed_rows, fits)
    # Whole chunks of the file, so that no chunk is decompressed twice.
    if (!is.null(chunk_rows) && chunk_rows > 1L && fits >= chunk_rows) {
      size <- max(chunk_rows, floor(min(fits, max(size, chunk_rows)) / chunk_rows) * chunk_rows)
    }
  }
  if (!is.null(max_values)) size <- min(size, floor(max_values / max(1L, n_samples)))
  if (!is.null(BPPARAM)) size <- min(size, ceiling(n / max(1L, BiocParallel::bpnworkers(BPPARAM))))
  size <- max(1L, as.integer(size))
  starts <- seq(1L, n, by = size)
  lapply(starts, function(s) s:min(n, s + size - 1L))
}

# Runs `one(chunk)` for every chunk of features: in this process with a progress bar (so
# Ctrl-C is honoured between chunks), or spread over the workers of `BPPARAM`.
# With a feature source `src`, `one(rows, src)` gets the source as its second argument,
# and a worker receives only its block: the chunk's rows of an in-memory source (then
# numbered 1..length(chunk), and `src$chunk` holds the chunk), or the file recipe of an on-disk one, which the worker
# reads itself. Sources bound in `one`'s environment are not shipped.
run_chunks <- function(chunks, one, BPPARAM, label, src = NULL) {
  check_bpparam(BPPARAM)
  if (is.null(BPPARAM) || length(chunks) == 1L) {
    if (is.null(src)) return(with_progress(length(chunks), label, function(k) one(chunks[[k]])))
    return(with_progress(length(chunks), label, function(k) one(chunks[[k]], src)))
  }
  if (is.null(src)) return(BiocParallel::bplapply(chunks, one, BPPARAM = BPPARAM))
  one <- without_sources(one)
  # `one` travels inside each task, not through bplapply's `...` (which SnowParam workers
  # of BiocParallel 1.32 keep passing to later calls).
  tasks <- lapply(chunks, function(rows) {
    piece <- subset_source(src, rows, realise = TRUE)
    piece$chunk <- rows
    list(piece = piece, one = one)
  })
  BiocParallel::bplapply(tasks, run_shipped, BPPARAM = BPPARAM)
}

# A worker's task: its block opened (read from the file for a recipe), then `one`.
run_shipped <- function(task) {
  piece <- open_source(task$piece)
  task$one(seq_len(piece$n_features), piece)
}

# `f` with an environment that holds no feature source, so that serialising it for a
# worker does not carry the data (closures bound there are cleaned the same way). The
# rest of the environment, and its parents, stay as they are.
without_sources <- function(f, depth = 2L) {
  env <- environment(f)
  if (is.null(env) || isNamespace(env) || identical(env, globalenv()) || depth == 0L) return(f)
  clean <- new.env(parent = parent.env(env))
  for (nm in ls(env, all.names = TRUE)) {
    v <- get(nm, envir = env)
    if (inherits(v, "sceffects_features")) next
    if (is.function(v) && !is.primitive(v)) v <- without_sources(v, depth - 1L)
    assign(nm, v, envir = clean)
  }
  environment(f) <- clean
  f
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

# Messages: shown when the call's `verbose` is TRUE and the option `sceffects.verbose` is
# not FALSE, so `options(sceffects.verbose = FALSE)` quiets the whole package.
say <- function(msg, verbose = TRUE) {
  if (isTRUE(verbose) && !isFALSE(getOption("sceffects.verbose"))) message(msg)
  invisible()
}

# A function's `verbose` argument, checked, for everything the call does: with FALSE the
# option `sceffects.verbose` is FALSE until that function returns, so every say() below it
# (input layer, helpers) is quiet without passing `verbose` down.
local_verbose <- function(verbose, envir = parent.frame()) {
  verbose <- check_flag(verbose, "verbose")
  if (!verbose) {
    old <- options(sceffects.verbose = FALSE)
    do.call(on.exit, list(bquote(options(.(old))), add = TRUE), envir = envir)
  }
  verbose
}

# Up to `n` names, with how many more there are: "a, b, c and 12 more".
name_list <- function(x, n = 10L) {
  x <- as.character(x)
  if (length(x) <= n) return(paste(x, collapse = ", "))
  sprintf("%s and %d more", paste(x[seq_len(n)], collapse = ", "), length(x) - n)
}

# Arguments in `...` that the function does not use are an error, not silently dropped.
check_dots_used <- function(..., call_name) {
  if (...length() == 0L) return(invisible())
  nms <- names(list(...))
  nms <- if (is.null(nms)) rep("", ...length()) else nms
  shown <- ifelse(nms == "", "<unnamed>", nms)
  stop(sprintf("%s() has no argument%s %s.", call_name, if (length(shown) > 1L) "s" else "",
               paste0("`", shown, "`", collapse = ", ")), call. = FALSE)
}

# A request whose planned memory is beyond what the machine has is refused up front, with
# the size it would need; `fix` says which argument to change.
check_memory <- function(bytes, what, fix) {
  available <- available_memory()
  if (is.finite(bytes) && bytes > available) {
    stop(sprintf("%s would need %s of memory; %s is available. %s", what, format_bytes(bytes),
                 format_bytes(available), fix), call. = FALSE)
  }
  invisible(bytes)
}

# Bytes of memory available to this process: the option `sceffects.max_memory` when set,
# else MemAvailable from /proc/meminfo (Linux), else no limit.
available_memory <- function() {
  opt <- getOption("sceffects.max_memory")
  if (!is.null(opt)) return(as.numeric(opt))
  info <- tryCatch(readLines("/proc/meminfo", n = 5L, warn = FALSE), error = function(e) character())
  line <- grep("^MemAvailable:", info, value = TRUE)
  if (length(line) == 1L) as.numeric(sub("^MemAvailable:\\s+(\\d+).*$", "\\1", line)) * 1024 else Inf
}

format_bytes <- function(bytes) {
  units <- c("B", "KB", "MB", "GB", "TB", "PB")
  k <- max(0L, min(length(units) - 1L, floor(log(max(bytes, 1), 1024))))
  sprintf("%.3g %s", bytes / 1024^k, units[k + 1L])
}

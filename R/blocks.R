# The block reader for on-disk input, and what BiocParallel workers receive.
#
# A DelayedArray that is an HDF5 dataset as stored (HDF5Array::HDF5Array(), TENxMatrix())
# gets a "recipe": file path, dataset or group name, and the rows of the file it stands for.
# The file is then read in its own layout: row blocks of a dense dataset (aligned to its
# chunks), column blocks of a TENx (CSC) file read straight from its data / indices /
# indptr datasets as dgCMatrix. Per-cell work (group sums, per-cell scores) is additive
# over column blocks, so it is one pass over the file. Peak memory per block is the option
# `sceffects.block_memory` (bytes, default 1 GB). Workers receive only their block of an
# in-memory source, or the recipe with their row or column range, and open the file
# themselves.

# Bytes one block may take: the option `sceffects.block_memory` (default 1 GB).
block_memory <- function() {
  v <- getOption("sceffects.block_memory", 1e9)
  if (!is.numeric(v) || length(v) != 1L || !is.finite(v) || v < 1e6) {
    stop("option `sceffects.block_memory` must be a number of bytes >= 1e6 (e.g. options(sceffects.block_memory = 2e9)).",
         call. = FALSE)
  }
  as.numeric(v)
}

# The recipe of a DelayedArray that is an HDF5 dataset as stored (dimnames may be set), or
# NULL: any other delayed operation is read through DelayedArray.
disk_recipe <- function(x) {
  if (!is(x, "DelayedArray") || length(dim(x)) != 2L ||
      !DelayedArray::isPristine(x, ignore.dimnames = TRUE)) return(NULL)
  seed <- DelayedArray::seed(x)
  if (is(seed, "TENxMatrixSeed") || is(seed, "CSC_H5SparseMatrixSeed")) {
    return(list(format = "tenx", path = seed@filepath, name = seed@group, dim = dim(x),
                rows = seq_len(nrow(x))))
  }
  if (is(seed, "HDF5ArraySeed") && !isTRUE(seed@as_sparse)) {
    chunk_rows <- if (length(seed@chunkdim) == 2L) seed@chunkdim[1L] else nrow(x)
    return(list(format = "dense", path = seed@filepath, name = seed@name, dim = dim(x),
                rows = seq_len(nrow(x)), chunk_rows = max(1L, as.integer(chunk_rows))))
  }
  NULL
}

# A source restricted to features `rows`. `realise = TRUE` (for shipping to a worker)
# holds the block in memory unless the source has a recipe, which then names the rows.
subset_source <- function(src, rows, realise = FALSE) {
  if (length(rows) == src$n_features && identical(as.integer(rows), seq_len(src$n_features))) {
    if (!realise || src$kind != "delayed" || !is.null(src$recipe)) return(src)
  }
  out <- src
  out$names <- src$names[rows]
  out$n_features <- length(rows)
  if (!is.null(src$levels)) out$levels <- src$levels[rows]
  if (!is.null(src$recipe)) {
    out$recipe$rows <- src$recipe$rows[rows]
    out$data <- if (realise) NULL else src$data[rows, , drop = FALSE]
    return(out)
  }
  if (src$kind == "delayed" && realise) {
    out$data <- feature_rows(src, rows)
    out$kind <- "dense"
    return(out)
  }
  out$data <- src$data[rows, , drop = FALSE]
  out
}

# A shipped source opened on a worker: a recipe is read from its file (the worker's rows).
open_source <- function(src) {
  if (is.null(src$recipe) || !is.null(src$data)) return(src)
  src$data <- read_recipe_rows(src$recipe, src$recipe$rows)
  src$kind <- if (is(src$data, "dgCMatrix")) "sparse" else "dense"
  if (src$kind == "dense") check_block_values(src$data, src$arg, allow_na = isTRUE(src$allow_na))
  src$recipe <- NULL
  src
}

# Rows `rows` of the file (all columns): a dense matrix from a dense dataset, a dgCMatrix
# from a TENx file (one pass over its column blocks).
read_recipe_rows <- function(recipe, rows) {
  if (recipe$format == "dense") {
    b <- HDF5Array::h5mread(recipe$path, recipe$name, starts = list(as.integer(rows), NULL))
    storage.mode(b) <- "double"
    return(b)
  }
  parts <- tenx_pass(whole_file(recipe), rows_step(function(block, cols) block, rows), NULL, label = NULL)
  do.call(cbind, parts)
}

# Opens a TENx file for reading: its handle and column pointers (as doubles, so files
# past 2^31 non-zeros work).
tenx_open <- function(recipe) {
  fid <- rhdf5::H5Fopen(recipe$path, flags = "H5F_ACC_RDONLY")
  indptr <- as.numeric(rhdf5::h5read(fid, paste0(recipe$name, "/indptr"), bit64conversion = "double"))
  list(fid = fid, indptr = indptr, name = recipe$name, n_rows = recipe$dim[1L])
}

# Columns `first..last` of an open TENx file as a dgCMatrix (all rows of the file).
tenx_columns <- function(file, first, last) {
  lo <- file$indptr[first]
  hi <- file$indptr[last + 1L]
  n <- hi - lo
  read <- function(what) {
    if (n == 0) return(numeric())
    rhdf5::h5read(file$fid, paste0(file$name, "/", what), start = lo + 1, count = n, bit64conversion = "double")
  }
  methods::new("dgCMatrix", i = as.integer(read("indices")), p = as.integer(file$indptr[first:(last + 1L)] - lo),
               x = as.double(read("data")), Dim = c(as.integer(file$n_rows), as.integer(last - first + 1L)))
}

# Column blocks of columns `first..last` whose non-zeros (about 16 bytes each as read) and
# dense results (`bytes_per_column`) fit in the block memory.
plan_column_blocks <- function(indptr, first, last, bytes_per_column = 0) {
  budget <- block_memory()
  starts <- first
  s <- first
  while (s <= last) {
    nnz <- indptr[(s + 1L):(last + 1L)] - indptr[s]
    cost <- 16 * nnz + bytes_per_column * seq_along(nnz)
    e <- s - 1L + max(1L, sum(cost <= budget))
    if (e < last) starts <- c(starts, e + 1L)
    s <- e + 1L
  }
  Map(function(a, b) c(a, b), starts, c(starts[-1L] - 1L, last))
}

# One pass over the column blocks of a TENx file: `step(block, cols)` per block, results
# folded with `combine` (or returned as a list when NULL). With `BPPARAM`, each worker
# gets a range of columns (balanced by non-zeros), opens the file and folds its own blocks.
tenx_pass <- function(recipe, step, combine, BPPARAM = NULL, label = "Reading column blocks",
                      bytes_per_column = 0) {
  if (!identical(as.integer(recipe$rows), seq_len(recipe$dim[1L]))) step <- rows_step(step, recipe$rows)
  n_cols <- recipe$dim[2L]
  if (n_cols == 0L) return(if (is.null(combine)) list() else NULL)
  if (is.null(BPPARAM) || BiocParallel::bpnworkers(BPPARAM) < 2L) {
    return(tenx_range(list(recipe = recipe, first = 1L, last = n_cols, step = step, combine = combine,
                           bytes_per_column = bytes_per_column, label = label)))
  }
  file <- tenx_open(recipe)
  rhdf5::H5Fclose(file$fid)
  # Ranges of about equal non-zeros, one per worker.
  k <- BiocParallel::bpnworkers(BPPARAM)
  cuts <- unique(c(0L, findInterval(file$indptr[n_cols + 1L] * seq_len(k - 1L) / k, file$indptr[-1L]), n_cols))
  tasks <- lapply(seq_len(length(cuts) - 1L), function(j) {
    list(recipe = recipe, first = cuts[j] + 1L, last = cuts[j + 1L], step = step, combine = combine,
         bytes_per_column = bytes_per_column, label = NULL)
  })
  tasks <- Filter(function(t) t$first <= t$last, tasks)
  parts <- BiocParallel::bplapply(tasks, tenx_range, BPPARAM = BPPARAM)
  if (is.null(combine)) unlist(parts, recursive = FALSE) else Reduce(combine, parts)
}

# A recipe for every row of its file.
whole_file <- function(recipe) {
  recipe$rows <- seq_len(recipe$dim[1L])
  recipe
}

# `step` on rows `rows` of each block.
rows_step <- function(step, rows) {
  force(step)
  force(rows)
  function(block, cols) step(block[rows, , drop = FALSE], cols)
}

# The blocks of one column range (run here or on a worker, which opens the file itself).
tenx_range <- function(task) {
  file <- tenx_open(task$recipe)
  on.exit(rhdf5::H5Fclose(file$fid))
  blocks <- plan_column_blocks(file$indptr, task$first, task$last, task$bytes_per_column)
  out <- NULL
  parts <- with_progress(length(blocks), task$label %||% "", function(k) {
    cols <- blocks[[k]][1L]:blocks[[k]][2L]
    part <- task$step(tenx_columns(file, cols[1L], cols[length(cols)]), cols)
    if (is.null(task$combine)) return(part)
    out <<- if (is.null(out)) part else task$combine(out, part)
    NULL
  }, show = !is.null(task$label))
  if (is.null(task$combine)) parts else out
}

# Sums of every feature of a source over groups of samples (`group` 1-based, 0 = left
# out): features x groups. A TENx file is one pass over its column blocks (spread over
# the workers of `BPPARAM` by column range); anything else goes by blocks of features
# (a dense HDF5 dataset in its row chunks, whose ranges the workers read themselves).
source_group_sums <- function(src, group, n_groups, threads, BPPARAM = NULL, arg = src$arg) {
  group <- as.integer(group)
  if (!is.null(src$recipe) && src$recipe$format == "tenx") {
    step <- group_sum_step(group, n_groups, threads, arg)
    return(tenx_pass(src$recipe, step, `+`, BPPARAM, "Summing cells per group",
                     bytes_per_column = 0))
  }
  if (src$kind != "delayed") return(group_sums(src$data, group, n_groups, threads, arg))
  chunks <- plan_chunks(src$n_features, BPPARAM = BPPARAM, delayed = TRUE, n_samples = src$n_samples,
                        chunk_rows = src$recipe$chunk_rows)
  do.call(rbind, run_chunks(chunks, function(rows, s) group_sums(feature_rows(s, rows), group, n_groups, threads, arg),
                            BPPARAM, "Summing cells per group", src = src))
}

# The step of a column pass that adds one block's group sums (a function whose
# environment holds only what a worker needs).
group_sum_step <- function(group, n_groups, threads, arg) {
  force(group)
  force(n_groups)
  force(threads)
  force(arg)
  function(block, cols) group_sums(block, group[cols], n_groups, threads, arg)
}

# Column sums of a source (library sizes): one pass over a TENx file's column blocks.
source_column_sums <- function(src, BPPARAM = NULL) {
  if (!is.null(src$recipe) && src$recipe$format == "tenx") {
    return(unlist(tenx_pass(src$recipe, function(block, cols) Matrix::colSums(block), NULL, BPPARAM,
                            "Summing cells")))
  }
  switch(src$kind,
    dense = colSums(src$data),
    sparse = Matrix::colSums(src$data),
    delayed = Reduce(`+`, lapply(plan_chunks(src$n_features, delayed = TRUE, n_samples = src$n_samples,
                                             chunk_rows = src$recipe$chunk_rows),
                                 function(rows) colSums(read_block(src, rows)))))
}

# Writes a genes x cells count matrix to a TENx (CSC) HDF5 file block by block, never
# holding more than one block: `block(k)` returns the dgCMatrix of column block k (all
# rows, integer counts), for k in 1..n_blocks. Used by the atlas benchmark and the tests
# (HDF5Array's own writer needs the whole matrix as a DelayedArray).
write_tenx <- function(path, block, n_blocks, genes, group = "matrix", level = 1L) {
  if (file.exists(path)) stop(sprintf("`path` %s exists: remove it or choose another.", path), call. = FALSE)
  rhdf5::h5createFile(path)
  rhdf5::h5createGroup(path, group)
  name <- function(x) paste0(group, "/", x)
  for (ds in c("data", "indices")) {
    rhdf5::h5createDataset(path, name(ds), dims = 0, maxdims = rhdf5::H5Sunlimited(), chunk = 65536L,
                           storage.mode = "integer", level = level)
  }
  indptr <- 0
  barcodes <- character()
  nnz <- 0
  for (k in seq_len(n_blocks)) {
    b <- block(k)
    n <- length(b@x)
    if (n > 0L) {
      for (ds in c("data", "indices")) {
        rhdf5::h5set_extent(path, name(ds), nnz + n)
        rhdf5::h5write(if (ds == "data") as.integer(b@x) else b@i, path, name(ds), start = nnz + 1, count = n)
      }
    }
    indptr <- c(indptr, nnz + b@p[-1L])
    nnz <- nnz + n
    barcodes <- c(barcodes, colnames(b) %||% character())
  }
  rhdf5::h5write(indptr, path, name("indptr"))  # doubles: past 2^31 non-zeros
  rhdf5::h5write(as.integer(c(length(genes), length(indptr) - 1L)), path, name("shape"))
  rhdf5::h5write(as.character(genes), path, name("genes"))
  if (length(barcodes)) rhdf5::h5write(barcodes, path, name("barcodes"))
  invisible(path)
}

# Atlas scale: a simulated trial written as a TENx HDF5 file in blocks (never held in
# memory), then participant-visit DiD, gene-set scores for 50 sets and NB on pseudobulk,
# read by the block reader; serial, and with BatchtoolsParam(workers = 2, cluster =
# "multicore") and SnowParam(2). Also: a small in-memory DiD (5000 x 13k) serial vs
# SnowParam / MulticoreParam / BatchtoolsParam, the cost of shipping blocks to workers.
# Usage: Rscript inst/bench/atlas.R [scale] [write]   scale 1 = 1,000,000 cells x 20,000
# genes, 5% non-zero (~1e9 non-zeros, several GB on disk); default 0.05. Writing the file
# takes longer than the benchmark (~7 s per 10,000 cells): with SCEFFECTS_ATLAS_FILE set,
# the file is written there once and reused by later runs of the same scale (`write`
# writes it and stops, so that the timed run can follow on a quiet machine).
suppressPackageStartupMessages({ library(sceffects); library(BiocParallel); library(SummarizedExperiment) })
args <- commandArgs(trailingOnly = TRUE)
scale <- if (length(args) >= 1) as.numeric(args[1]) else 0.05
write_only <- identical(args[2], "write")
n_genes <- 20000L
n_cells <- as.integer(round(1e6 * scale))
density <- 0.05
options(sceffects.verbose = FALSE)
median_time <- function(f, reps = 3L) stats::median(vapply(seq_len(reps), function(i) system.time(f())[["elapsed"]], 0))
peak_rss_mb <- function() as.numeric(sub("\\D+(\\d+).*", "\\1", grep("^VmHWM", readLines("/proc/self/status"), value = TRUE))) / 1024
quiet <- function(expr) suppressMessages(suppressWarnings(expr))
cat(sprintf("machine: %d cores; R %s\nload: %s\n", parallel::detectCores(), getRversion(), system("uptime", intern = TRUE)))
cat(sprintf("scale %.3g of 1e6 cells: %d genes x %d cells, %.0f%% non-zero\n", scale, n_genes, n_cells, 100 * density))

# --- Small in-memory DiD: shipping only each worker's block ---------------------------
if (!write_only) {
sce <- quiet(simulate_trial(n_genes = 5000, n_cells = 13000, seed = 1))
design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
                       baseline = "Pre", followup = "Post")
t_serial <- median_time(function() quiet(did_table(sce, design, threads = 2L)))
params <- list(SnowParam = SnowParam(2), MulticoreParam = MulticoreParam(2),
               BatchtoolsParam = BatchtoolsParam(workers = 2, cluster = "multicore"))
for (nm in names(params)) {
  p <- params[[nm]]
  t_start <- system.time({ bpstart(p); quiet(did_table(sce, design, threads = 1L, BPPARAM = p)) })[["elapsed"]]
  t_par <- median_time(function() quiet(did_table(sce, design, threads = 1L, BPPARAM = p)))
  bpstop(p)
  cat(sprintf("small DiD 5000 x 13000 in memory: serial %.3f s, %s(2) %.3f s (%.2fx serial; first call with worker start-up %.1f s)\n",
              t_serial, nm, t_par, t_par / t_serial, t_start))
}
rm(sce)
}

# --- Write the trial to a TENx file in column blocks ----------------------------------
n_participants <- 20L
cells_per_pv <- ceiling(n_cells / (2 * n_participants))
participant <- rep(rep(sprintf("P%02d", seq_len(n_participants)), each = cells_per_pv), 2)[seq_len(n_cells)]
visit <- rep(c("Pre", "Post"), each = n_participants * cells_per_pv)[seq_len(n_cells)]
arm <- ifelse(as.integer(substring(participant, 2)) <= n_participants / 2, "Responder", "Non-responder")
cd <- S4Vectors::DataFrame(participant = participant, visit = visit, response = arm)
kept_file <- Sys.getenv("SCEFFECTS_ATLAS_FILE")
path <- if (nzchar(kept_file)) kept_file else file.path(tempdir(), "atlas.h5")
block_cells <- 10000L
starts <- seq(1L, n_cells, by = block_cells)
set.seed(1)
rate <- stats::rgamma(n_genes, 2, 2)
effect <- seq_len(n_genes) <= 40L
lifted <- visit == "Post" & arm == "Responder"
simulate_block <- function(k) {
  cols <- starts[k]:min(n_cells, starts[k] + block_cells - 1L)
  nnz <- stats::rbinom(1, n_genes * length(cols), density)
  i <- sample.int(n_genes, nnz, replace = TRUE, prob = rate)
  j <- sample.int(length(cols), nnz, replace = TRUE)
  lift <- 1 + (effect[i] & lifted[cols][j])
  Matrix::sparseMatrix(i = i, j = j, x = 1 + stats::rpois(nnz, rate[i] * lift), dims = c(n_genes, length(cols)))
}
genes <- sprintf("GENE%05d", seq_len(n_genes))
file_shape <- if (nzchar(kept_file) && file.exists(path)) as.integer(rhdf5::h5read(path, "matrix/shape"))
if (identical(file_shape, c(n_genes, n_cells))) {
  cat(sprintf("reusing %s (written by an earlier run of this scale)\n", path))
} else {
  unlink(path)
  t_write <- system.time(sceffects:::write_tenx(path, simulate_block, length(starts), genes))[["elapsed"]]
  cat(sprintf("wrote %s in %.1f s (%d column blocks of %d cells)\n", path, t_write, length(starts), block_cells))
}
size_mb <- file.size(path) / 2^20
cat(sprintf("file: %.0f MB\n", size_mb))
if (write_only) quit(save = "no")

# TENxMatrix() fails on Debian's HDF5Array 1.26 + rhdf5 2.42; build the seed from the file then.
tenx <- function(path, group = "matrix") {
  x <- tryCatch(suppressMessages(HDF5Array::TENxMatrix(path, group)), error = function(e) NULL)
  if (!is.null(x)) return(x)
  indptr <- as.numeric(rhdf5::h5read(path, paste0(group, "/indptr"), bit64conversion = "double"))
  shape <- as.integer(rhdf5::h5read(path, paste0(group, "/shape")))
  seed <- methods::new("TENxMatrixSeed", filepath = normalizePath(path), group = group, dim = shape,
                       indptr_ranges = data.frame(start = indptr[-length(indptr)] + 1, width = as.integer(diff(indptr))),
                       dimnames = list(as.character(rhdf5::h5read(path, paste0(group, "/genes"))), NULL))
  DelayedArray::DelayedArray(seed)
}
x <- tenx(path)
se <- SummarizedExperiment(list(counts = x), colData = cd)

# One read of the file: every column block as a dgCMatrix, nothing computed.
recipe <- sceffects:::disk_recipe(x)
t_read <- system.time(sceffects:::tenx_pass(recipe, function(block, cols) length(block@x), `+`, label = NULL))[["elapsed"]]
cat(sprintf("one read of the file (column blocks as dgCMatrix): %.1f s, %.0f MB/s of file\n", t_read, size_mb / t_read))

set.seed(2)  # the same sets whether the file was written by this run or reused
sets <- stats::setNames(lapply(seq_len(50), function(k) genes[sample.int(n_genes, 100)]), sprintf("set%02d", 1:50))
run_all <- function(BPPARAM) {
  t_did <- system.time(d <- quiet(did_table(se, design, assay = "counts", BPPARAM = BPPARAM)))[["elapsed"]]
  t_sets <- system.time(s <- score_gene_sets(x, sets, BPPARAM = BPPARAM))[["elapsed"]]
  t_nb <- system.time({
    pb <- pseudobulk(se, c("participant", "visit"), BPPARAM = BPPARAM, verbose = FALSE)
    pb <- pb[rowSums(SummarizedExperiment::assay(pb)) > 0, ]
    nb <- quiet(nb_regression(pb, ~ visit * response, size_factors = FALSE, offset = log(pb$lib_size)))
  })[["elapsed"]]
  c(did = t_did, sets = t_sets, nb = t_nb, top = sum(d$fdr[effect] < 0.05, na.rm = TRUE))
}
serial <- run_all(NULL)
cat(sprintf("serial: participant-visit DiD %.1f s (%d of 40 planted genes at FDR 5%%), gene-set scores (50 sets) %.1f s, NB pseudobulk %.1f s\n",
            serial["did"], serial["top"], serial["sets"], serial["nb"]))
for (nm in c("BatchtoolsParam", "SnowParam")) {
  p <- if (nm == "SnowParam") SnowParam(2) else BatchtoolsParam(workers = 2, cluster = "multicore")
  # Started workers with sceffects loaded, as in a session that has used them before
  # (BatchtoolsParam starts new R processes for every call: that cost stays in its times).
  t_up <- system.time({
    bpstart(p)
    # rhdf5 and HDF5Array too: loading them on a worker's first read costs seconds.
    bplapply(1:2, function(i) vapply(c("sceffects", "rhdf5", "HDF5Array"), requireNamespace, TRUE, quietly = TRUE),
             BPPARAM = p)
  })[["elapsed"]]
  cat(sprintf("%s(2): workers started and sceffects loaded in %.1f s\n", nm, t_up))
  r <- run_all(p)
  bpstop(p)
  cat(sprintf("%s(2): DiD %.1f s (%.2fx serial), gene sets %.1f s (%.2fx), NB pseudobulk %.1f s (%.2fx)\n", nm,
              r["did"], r["did"] / serial["did"], r["sets"], r["sets"] / serial["sets"], r["nb"], r["nb"] / serial["nb"]))
}
cat(sprintf("peak RSS of this process: %.0f MB\nload: %s\n", peak_rss_mb(), system("uptime", intern = TRUE)))
if (!nzchar(kept_file)) unlink(path)

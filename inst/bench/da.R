# Differential abundance: the simulation study of issue 15. Per case (isotropic Gaussian in
# d = 2, 5, 10, 20; a curved 2-D sheet in 10 and 30 dims), 3 replicates x 800 cells per
# condition, each replicate with its own smooth abundance noise; a planted 3x region (12%
# of the base cells) in all B replicates, a 5x region in replicate B1 only; and a null
# (replicate noise only). Per method: AUC of the per-cell statistic (planted vs background
# cells), sensitivity (planted cells called up) and false-positive rate (background cells
# called) at the method's default threshold, the fraction of the one-replicate region
# called, the fraction of cells called under the null, and the time (seconds, planted run).
# Methods: sceffects "neighbourhood" (the default), sceffects "kompot" (with sample
# variance), and miloR (k = 30, prop = 0.1, d = all dims, ~ condition, spatial FDR < 0.1;
# a cell is called when a neighbourhood holding it is).
# Usage: R_LIBS=/work/peerlib:$WT/lib Rscript inst/bench/da.R [seeds] [n_per_sample] [methods]
# (methods comma-separated, default all three: neighbourhood,kompot,miloR)
suppressPackageStartupMessages(library(sceffects))
args <- commandArgs(trailingOnly = TRUE)
seeds <- if (length(args) >= 1) seq_len(as.integer(args[1])) else 1:2
n_per <- if (length(args) >= 2) as.integer(args[2]) else 800L
has_milo <- requireNamespace("miloR", quietly = TRUE)
options(sceffects.verbose = FALSE, cli.progress_show_after = Inf)
sim <- sceffects:::simulate_da_cells

auc <- function(score, truth) {
  ok <- !is.na(score)
  r <- rank(score[ok]); n1 <- sum(truth[ok]); n0 <- sum(!truth[ok])
  (sum(r[truth[ok]]) - n1 * (n1 + 1) / 2) / (n1 * n0)
}

run_ours <- function(d, method) {
  sce <- SingleCellExperiment::SingleCellExperiment(
    reducedDims = list(PCA = d$embedding),
    colData = S4Vectors::DataFrame(condition = d$condition, sample = d$sample))
  time <- system.time(out <- suppressWarnings(
    diff_abundance(sce, "condition", "A", "B", sample = "sample", method = method, threads = 2L)))[["elapsed"]]
  cd <- SummarizedExperiment::colData(out)
  if (method == "kompot") {
    list(score = cd$da_lfc_zscore_sample_var, up = cd$da_direction_sample_var %in% "up",
         called = cd$da_direction_sample_var %in% c("up", "down"), time = time)
  } else {
    list(score = cd$da_statistic, up = cd$da_direction %in% "up",
         called = cd$da_direction %in% c("up", "down"), time = time)
  }
}

run_milo <- function(d) {
  time <- system.time({
    sce <- SingleCellExperiment::SingleCellExperiment(
      assays = list(counts = matrix(0L, 1, nrow(d$embedding), dimnames = list("g", rownames(d$embedding)))),
      reducedDims = list(PCA = unname(d$embedding)),
      colData = S4Vectors::DataFrame(condition = d$condition, sample = d$sample))
    milo <- miloR::Milo(sce)
    nd <- ncol(d$embedding)
    milo <- suppressMessages(miloR::buildGraph(milo, k = 30, d = nd, reduced.dim = "PCA"))
    milo <- suppressMessages(miloR::makeNhoods(milo, prop = 0.1, k = 30, d = nd, refined = TRUE, reduced_dims = "PCA"))
    milo <- miloR::countCells(milo, meta.data = as.data.frame(SummarizedExperiment::colData(milo)), sample = "sample")
    design <- unique(data.frame(sample = d$sample, condition = d$condition))
    rownames(design) <- design$sample
    design <- design[colnames(miloR::nhoodCounts(milo)), , drop = FALSE]
    res <- suppressMessages(suppressWarnings(miloR::testNhoods(milo, design = ~ condition, design.df = design,
                                                               reduced.dim = "PCA")))
  })[["elapsed"]]
  # testNhoods() returns one row per column of nhoods(), numbered in `Nhood`.
  res <- res[order(res$Nhood), , drop = FALSE]
  member <- methods::as(miloR::nhoods(milo), "dgCMatrix")
  sig <- !is.na(res$SpatialFDR) & res$SpatialFDR < 0.1
  n_in <- Matrix::rowSums(member)
  score <- as.vector(member %*% (sign(res$logFC) * -log10(res$PValue))) / n_in
  up_n <- as.vector(member %*% as.numeric(sig & res$logFC > 0))
  any_n <- as.vector(member %*% as.numeric(sig))
  list(score = ifelse(n_in > 0, score, NA), up = up_n > 0, called = any_n > 0, time = time)
}

cases <- list(list("isotropic", 2), list("isotropic", 5), list("isotropic", 10), list("isotropic", 20),
              list("curved", 10), list("curved", 30))
methods <- c("neighbourhood", "kompot", if (has_milo) "miloR")
if (length(args) >= 3) methods <- intersect(strsplit(args[3], ",")[[1]], methods)
rows <- list()
for (cs in cases) for (seed in seeds) {
  planted <- sim(cs[[1]], cs[[2]], n_per_sample = n_per, seed = seed)
  null <- sim(cs[[1]], cs[[2]], n_per_sample = n_per, fold = 1, odd_fold = 1, seed = seed + 100L)
  background <- !planted$planted & !planted$odd
  for (m in methods) {
    run <- function(d) if (m == "miloR") run_milo(d) else run_ours(d, m)
    p <- run(planted)
    n0 <- run(null)
    rows[[length(rows) + 1L]] <- data.frame(
      case = sprintf("%s d=%d", cs[[1]], cs[[2]]), seed = seed, method = m,
      auc = auc(p$score[planted$planted | background], planted$planted[planted$planted | background]),
      sensitivity = mean(p$up[planted$planted & !planted$odd]), fpr = mean(p$called[background]),
      one_replicate = mean(p$called[planted$odd & !planted$planted & planted$sample == "B1"]),
      null_called = mean(n0$called), seconds = p$time)
    cat(sprintf("%-14s seed %d %-13s AUC %.3f sens %.2f FPR %.3f one-rep %.2f null %.3f  %.1f s\n",
                rows[[length(rows)]]$case, seed, m, rows[[length(rows)]]$auc, rows[[length(rows)]]$sensitivity,
                rows[[length(rows)]]$fpr, rows[[length(rows)]]$one_replicate, rows[[length(rows)]]$null_called,
                rows[[length(rows)]]$seconds))
  }
}
res <- do.call(rbind, rows)
cat("\nMedians over seeds:\n")
agg <- aggregate(cbind(auc, sensitivity, fpr, one_replicate, null_called, seconds) ~ case + method, res, stats::median)
print(agg[order(agg$case, agg$method), ], digits = 3, row.names = FALSE)

# Scale: 20,000 cells (isotropic, 10 dims), the default method.
big <- sim("isotropic", 10, n_per_sample = 20000 %/% 6, seed = 9)
big_run <- run_ours(big, "neighbourhood")
cat(sprintf("\n20,000 cells (isotropic, d = 10), method = \"neighbourhood\": %.1f s\n", big_run$time))
if ("miloR" %in% methods) cat(sprintf("miloR on the same: %.1f s\n", run_milo(big)$time))

# Sparse Wilcoxon, one-vs-rest: assoc_mwu() against presto::wilcoxauc() on the same
# dgCMatrix, in one run. Usage (presto in a private library):
#   R_LIBS=/work/peerlib:$PWD/lib Rscript inst/bench/wilcoxon.R [scale]
# scale 1 = the issue's size: 20,000 genes x 5,000 cells, 10% non-zero, 10 groups.
suppressPackageStartupMessages({library(sceffects); library(Matrix)})
args <- commandArgs(trailingOnly = TRUE)
scale <- if (length(args)) as.numeric(args[1]) else 1
reps <- 5L
threads <- 2L
set.seed(14)
genes <- round(20000 * scale)
cells <- 5000L
nnz <- round(0.1 * genes * cells)
# Log-normalised counts: few distinct values, so most non-zeros are tied, as in real data.
x <- sparseMatrix(i = sample.int(genes, nnz, TRUE), j = sample.int(cells, nnz, TRUE),
                  x = log1p(rpois(nnz, 2) + 1), dims = c(genes, cells),
                  dimnames = list(paste0("g", seq_len(genes)), paste0("c", seq_len(cells))))
x@x <- log1p(round(expm1(x@x)))  # duplicates were summed: back to log1p of a count
groups <- factor(sample(paste0("type", 1:10), cells, TRUE))
timed <- function(f) {
  times <- numeric(reps)
  for (k in seq_len(reps)) times[k] <- system.time(value <- f())[["elapsed"]]
  list(median = stats::median(times), value = value)
}
cat(sprintf("machine: %d cores; load: %s\n", parallel::detectCores(), system("uptime", intern = TRUE)))
cat(sprintf("%d x %d dgCMatrix, %.1f%% non-zero, %d groups one-vs-rest; threads = %d; medians of %d\n",
            genes, cells, 100 * length(x@x) / (genes * cells), nlevels(groups), threads, reps))
ours <- timed(function() assoc_mwu(x, groups, threads = threads))
cat(sprintf("  assoc_mwu:         %.3f s\n", ours$median))
if (requireNamespace("presto", quietly = TRUE)) {
  peer <- timed(function() presto::wilcoxauc(x, groups))
  cat(sprintf("  presto::wilcoxauc: %.3f s -> presto / ours = %.2fx\n", peer$median,
              peer$median / ours$median))
  # Same U for every gene and group.
  key_ours <- paste(ours$value$feature_x, sub("^groups:", "", ours$value$feature_y))
  key_peer <- paste(peer$value$feature, peer$value$group)
  u_peer <- peer$value$statistic[match(key_ours, key_peer)]
  cat(sprintf("  max |U ours - U presto| = %.3g over %d pairs\n",
              max(abs(ours$value$statistic - u_peer)), length(u_peer)))
  # Machine-readable line for inst/bench/run-all.R: work, ours (s), peer (s), peer, target.
  cat(sprintf("RESULT\tWilcoxon %d x %d dgCMatrix, 10 groups one-vs-rest\t%.4g\t%.4g\tpresto::wilcoxauc\t>= 3x\n",
              genes, cells, ours$median, peer$median))
} else {
  cat("  presto is not installed: run with R_LIBS=/work/peerlib:<lib>\n")
}
cat(sprintf("load after: %s\n", system("uptime", intern = TRUE)))

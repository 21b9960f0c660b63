# Pearson with p-values as matrices: assoc_cor(output = "matrix") against bare cor() and
# WGCNA::corAndPvalue() on the same data, in one run; the first call of each is reported
# apart from the median of the next `reps`. Usage:
#   R_LIBS=/work/peerlib:$PWD/lib Rscript inst/bench/cor-matrix.R [features] [samples]
suppressPackageStartupMessages(library(sceffects))
args <- commandArgs(trailingOnly = TRUE)
p <- if (length(args) >= 1) as.integer(args[1]) else 2000L
n <- if (length(args) >= 2) as.integer(args[2]) else 1000L
reps <- 3L
threads <- 2L
set.seed(14)
x <- matrix(rnorm(p * n), p, dimnames = list(paste0("x", seq_len(p)), NULL))
y <- matrix(rnorm(p * n), p, dimnames = list(paste0("y", seq_len(p)), NULL))
runs <- function(f) {
  times <- vapply(seq_len(reps + 1L), function(k) system.time(f())[["elapsed"]], 0)
  c(first = times[1], median = stats::median(times[-1]))
}
cat(sprintf("machine: %d cores; load: %s\n", parallel::detectCores(), system("uptime", intern = TRUE)))
cat(sprintf("%d x %d features, n = %d; threads = %d; first call, then median of %d\n",
            p, p, n, threads, reps))
ours <- runs(function() assoc_cor(x, y, output = "matrix", threads = threads))
tx <- t(x)
ty <- t(y)
bare <- runs(function() stats::cor(tx, ty))
show <- function(label, t) cat(sprintf("  %-34s first %.2f s, median %.2f s\n", label, t[["first"]], t[["median"]]))
show("assoc_cor(output = \"matrix\")", ours)
show("cor() (no p-values)", bare)
cat(sprintf("  ours / cor(): first %.2fx, median %.2fx (target <= 1.3x)\n",
            ours[["first"]] / bare[["first"]], ours[["median"]] / bare[["median"]]))
# Machine-readable line for inst/bench/run-all.R: work, ours (s), peer (s), peer, target.
cat(sprintf("RESULT\tPearson + p, %d x %d on %d samples, matrix output (first call)\t%.4g\t%.4g\tcor()\t>= 0.77x\n",
            p, p, n, ours[["first"]], bare[["first"]]))
cat(sprintf("RESULT\tPearson + p, %d x %d on %d samples, matrix output (median)\t%.4g\t%.4g\tcor()\t>= 0.77x\n",
            p, p, n, ours[["median"]], bare[["median"]]))
if (requireNamespace("WGCNA", quietly = TRUE)) {
  suppressMessages(WGCNA::disableWGCNAThreads())
  wg <- runs(function() WGCNA::corAndPvalue(tx, ty))
  show("WGCNA::corAndPvalue", wg)
  cat(sprintf("  WGCNA / ours: median %.2fx\n", wg[["median"]] / ours[["median"]]))
  m <- assoc_cor(x, y, output = "matrix", threads = threads)
  ref <- WGCNA::corAndPvalue(tx, ty)
  cat(sprintf("  max |r ours - r WGCNA| = %.2g; max relative p difference = %.2g\n",
              max(abs(m$estimate - ref$cor)), max(abs(m$p_value - ref$p) / ref$p)))
}
cat(sprintf("load after: %s\n", system("uptime", intern = TRUE)))

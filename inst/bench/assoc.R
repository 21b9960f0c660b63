# Association-screen benchmarks: ours and the base-R peer on the same data in one run,
# ratios printed. Usage: Rscript inst/bench/assoc.R [scale]   (scale 1 = the issue's sizes;
# smaller scales shrink the feature counts for a quick run). Medians of `reps` runs.
suppressPackageStartupMessages(library(sceffects))
args <- commandArgs(trailingOnly = TRUE)
scale <- if (length(args)) as.numeric(args[1]) else 1
reps <- 3L
threads <- 2L
set.seed(42)
median_time <- function(expr_fn, reps) {
  stats::median(vapply(seq_len(reps), function(i) system.time(expr_fn())[["elapsed"]], 0))
}
cat(sprintf("machine: %d cores, %s; R %s; threads = %d; scale = %g\n",
            parallel::detectCores(), Sys.info()[["machine"]], getRversion(), threads, scale))

# 1. Pearson with p-values vs the bare matrix product of the same shape.
n <- 1000L
p <- max(200L, round(20000 * scale))
x <- matrix(rnorm(p * n), p, dimnames = list(paste0("x", seq_len(p)), NULL))
y <- matrix(rnorm(p * n), p, dimnames = list(paste0("y", seq_len(p)), NULL))
t_pearson <- median_time(function() assoc_cor(x, y, top = 10, threads = threads), 1L)
t_spearman <- median_time(function() assoc_cor(x, y, method = "spearman", top = 10, threads = threads), 1L)
t_product <- median_time(function() sceffects:::bare_crossprod(x, y, threads), 1L)
sub <- 2000L
t_rcor <- median_time(function() stats::cor(t(x[seq_len(sub), ]), t(y[seq_len(sub), ])), 1L)
cat(sprintf("\nPearson %d x %d features, n = %d (p-values, top 10 per feature, FDR over all pairs)\n", p, p, n))
cat(sprintf("  assoc_cor pearson:  %.2f s\n  assoc_cor spearman: %.2f s (%.2fx Pearson)\n", t_pearson, t_spearman, t_spearman / t_pearson))
cat(sprintf("  bare product x %%*%% t(y) (faer, %d threads): %.2f s -> assoc_cor / product = %.2fx\n", threads, t_product, t_pearson / t_product))
cat(sprintf("  R cor() alone on %d x %d: %.2f s; extrapolated to %d x %d: %.1f s -> %.1fx slower than assoc_cor\n",
            sub, sub, t_rcor, p, p, t_rcor * (p / sub)^2, t_rcor * (p / sub)^2 / t_pearson))

# 2. Mann-Whitney: continuous x binary vs a wilcox.test() loop on a sample of pairs.
pc <- max(200L, round(20000 * scale))
xc <- x[seq_len(pc), ]
g <- matrix(runif(100 * n) < 0.3, 100, dimnames = list(paste0("mut", 1:100), NULL))
t_mwu <- median_time(function() assoc_mwu(xc, g, threads = threads), reps)
pairs <- 300L
t_loop <- system.time(for (k in seq_len(pairs)) {
  i <- sample.int(pc, 1L); j <- sample.int(100L, 1L)
  stats::wilcox.test(xc[i, g[j, ]], xc[i, !g[j, ]])
})[["elapsed"]]
per_pair <- t_loop / pairs
cat(sprintf("\nMann-Whitney %d x 100 pairs, n = %d\n  assoc_mwu: %.2f s; wilcox.test loop: %.0f us/pair -> %.0f s for all -> %.0fx faster\n",
            pc, n, t_mwu, 1e6 * per_pair, per_pair * pc * 100, per_pair * pc * 100 / t_mwu))

# 3. Fisher: 100 x 2,048 binary features on 1,000 samples.
a <- matrix(runif(100 * n) < 0.2, 100, dimnames = list(paste0("a", 1:100), NULL))
b <- matrix(runif(2048 * n) < 0.1, 2048, dimnames = list(paste0("b", 1:2048), NULL))
t_fisher <- median_time(function() assoc_fisher(a, b, threads = threads), reps)
t_floop <- system.time(for (k in seq_len(pairs)) {
  stats::fisher.test(a[sample.int(100L, 1L), ], b[sample.int(2048L, 1L), ])
})[["elapsed"]] / pairs
cat(sprintf("\nFisher 100 x 2,048 pairs (204,800), n = %d\n  assoc_fisher: %.3f s; fisher.test: %.0f us/table -> %.0f s for all -> %.0fx faster\n",
            n, t_fisher, 1e6 * t_floop, t_floop * 204800, t_floop * 204800 / t_fisher))
# Machine-readable line for inst/bench/run-all.R: work, ours (s), peer (s), peer, target.
cat(sprintf("RESULT\tFisher 100 x 2048 binary on %d samples\t%.4g\t%.4g\tfisher.test loop (timed on %d tables)\tours < 0.2 s\n",
            n, t_fisher, t_floop * 204800, pairs))

# 4. Memory: peak R heap for a filtered screen grows with the block size, not the pairs.
sub_mem <- seq_len(min(4000L, p))
gc(reset = TRUE)
invisible(assoc_cor(x[sub_mem, ], y[sub_mem, ], top = 5, threads = threads))
peak <- sum(gc()[, 6])
cat(sprintf("\nPeak R memory during a %d x %d filtered screen: %.0f MB (the input x and y are %.0f MB)\n",
            length(sub_mem), length(sub_mem), peak, 2 * object.size(x[sub_mem, ]) / 2^20))

# diff_expression() with `sample` on simulate_manifold() (per-sample shifts left in):
# calibration on unplanted genes and power on planted genes, for the stratum-centred
# statistic with replicate-aware null genes (null = "cell_state", the default) against
# null = "cells"; `sample` given, or not with the variants *_nosample.
# Rscript inst/bench/de-null.R [n_cells] [seeds] [variants]
#   variants: comma list of cells, cell_state, cells_nosample, cell_state_nosample
# 2026-12-03 (branch de17), 3,000 cells, seeds 1:3, load ~3 (2 cores), means over seeds
# (unplanted genes: p < 0.05, p < 0.1; planted: BH 10%, is_de (then kompot's local FDR < 0.05);
# one-replicate genes: BH 10%):
#   cell_state + sample    0.048 0.093 | 0.967 0.633 | 0.017   AUC 0.999, df2 12.4
#   cell_state, no sample  0.155 0.227 | 0.983 0.933 | 0.933   (sample shifts called)
#   cells + sample         0.637 0.699 | 1.000 0.750 | 0.967
# The prototype (commit "WIP prototype", offsets not yet shrunk by the cells' noise:
# 0.041 0.080 | 0.967 0.633 | 0.017); there, centring alone (no offsets) with sample:
# 0.103 0.164 | 0.983 0.933 | 0.167; the uncentred strata: 0.044 0.124 | 0 0 | 0.
# Without the per-sample shifts (sd 0 instead of 0.05), cell_state + sample: 0.016 0.057.
# 2026-12-03 20:33, main after is_de became fdr < fdr_threshold (0.05) with the default null,
# load 0.5: cell_state + sample 0.048 0.093 | 0.967 0.950 (de_called) | 0.017, unplanted BH 10%
# 0.006.
suppressMessages(library(sceffects))
options(sceffects.verbose = FALSE)
args <- commandArgs(TRUE)
n_cells <- if (length(args) >= 1) as.integer(args[1]) else 3000L
seeds <- if (length(args) >= 2) eval(parse(text = args[2])) else 1:3
variants <- if (length(args) >= 3) strsplit(args[3], ",")[[1]] else c("cells", "cell_state", "cell_state_nosample")
auc <- function(a, b) mean(outer(a, b, ">")) + 0.5 * mean(outer(a, b, "=="))
rows <- list()
for (s in seeds) {
  sim <- simulate_manifold(n_cells = n_cells, n_genes = 400, n_de_genes = 20, n_odd_genes = 20, seed = s)
  truth <- SummarizedExperiment::rowData(sim)
  un <- !truth$de & !truth$odd_replicate
  for (v in variants) {
    tm <- system.time(de <- diff_expression(sim, "condition", "young", "old", seed = 42, n_landmarks = 200,
                                            null_genes = 1000, threads = 1, sample = if (!grepl("nosample", v)) "sample",
                                            null = sub("_nosample", "", v)))[["elapsed"]]
    p <- de$p_value[un]
    rows[[length(rows) + 1]] <- data.frame(
      seed = s, variant = v, p05 = mean(p < .05), p10 = mean(p < .1),
      ks_D = unname(suppressWarnings(stats::ks.test(p, "punif"))$statistic),
      pe10 = mean(de$p_empirical[un] < .1), unpl_bh10 = mean(de$fdr[un] < .1),
      de_bh10 = mean(de$fdr[truth$de] < .1), de_called = mean(de$is_de[truth$de]),
      odd_bh10 = mean(de$fdr[truth$odd_replicate] < .1),
      auc = auc(-de$log_p[truth$de], -de$log_p[un]), df2 = attr(de, "null_fit")$df2, seconds = tm)
    print(rows[[length(rows)]], digits = 3, row.names = FALSE)
  }
}
res <- do.call(rbind, rows)
cat("\nMeans over seeds:\n")
print(aggregate(. ~ variant, res[, -1], mean), digits = 3, row.names = FALSE)

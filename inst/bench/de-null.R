# diff_expression() calibration on genes that vary along the manifold without a condition
# effect (issue 15): null genes permuted across all cells (null = "cells", the old null)
# against null genes permuted within strata of similar cell state (null = "cell_state").
# Rscript inst/bench/de-null.R [n_cells] [seeds] [sample]
suppressMessages(library(sceffects))
args <- commandArgs(TRUE)
n_cells <- if (length(args) >= 1) as.integer(args[1]) else 2000L
seeds <- if (length(args) >= 2) eval(parse(text = args[2])) else 1:3
sample <- if (length(args) >= 3 && args[3] == "sample") "sample" else NULL
options(sceffects.verbose = FALSE)
ks <- function(p) suppressWarnings(stats::ks.test(p[!is.na(p)], "punif"))
auc <- function(a, b) mean(outer(a, b, ">")) + 0.5 * mean(outer(a, b, "=="))
rows <- list()
for (s in seeds) {
  sim <- simulate_manifold(n_cells = n_cells, n_genes = 400, n_de_genes = 20, n_odd_genes = 20, seed = s)
  truth <- SummarizedExperiment::rowData(sim)
  unplanted <- !truth$de & !truth$odd_replicate
  for (null in c("cells", "cell_state")) {
    tm <- system.time(de <- diff_expression(sim, "condition", "young", "old", seed = 42, n_landmarks = 200,
                                            null_genes = 1000, threads = 1, null = null,
                                            sample = sample))[["elapsed"]]
    p <- de$p_value[unplanted]
    pe <- de$p_empirical[unplanted]
    k <- ks(p)
    rows[[length(rows) + 1]] <- data.frame(
      seed = s, null = null, p05 = mean(p < 0.05), p10 = mean(p < 0.1), ks_D = unname(k$statistic),
      ks_p = k$p.value, pe05 = mean(pe < 0.05), pe10 = mean(pe < 0.1), ks_D_emp = unname(ks(pe)$statistic),
      de_p05 = mean(de$p_value[truth$de] < 0.05), de_fdr10 = mean(de$fdr[truth$de] < 0.1),
      de_med_p = stats::median(de$p_value[truth$de]),
      auc = auc(-de$log_p[truth$de], -de$log_p[unplanted]),
      auc_dist = auc(de$mahalanobis[truth$de], de$mahalanobis[unplanted]),
      unpl_fdr10 = mean(de$fdr[unplanted] < 0.1), lfdr_de = mean(de$is_de[truth$de]),
      lfdr_unpl = mean(de$is_de[unplanted]),
      df1 = attr(de, "null_fit")$df1, df2 = attr(de, "null_fit")$df2, scale = attr(de, "null_fit")$scale, seconds = tm)
    print(rows[[length(rows)]], digits = 3, row.names = FALSE)
  }
}
res <- do.call(rbind, rows)
cat("\nMeans over seeds:\n")
print(aggregate(. ~ null, res[, -1], mean), digits = 3, row.names = FALSE)

# diff_expression() with `sample` on simulate_manifold() (per-sample shifts left in):
# calibration on unplanted genes and power on planted genes, for the stratum-centred
# statistic (issue 15 follow-up) against the uncentred cell-state null and null = "cells".
# Rscript inst/bench/de-null-sample.R [n_cells] [seeds] [variants]
#   variants: comma list of cells, cell_state, centred, offsets (sceffects.de_centre option)
suppressMessages(library(sceffects))
options(sceffects.verbose = FALSE)
args <- commandArgs(TRUE)
n_cells <- if (length(args) >= 1) as.integer(args[1]) else 3000L
seeds <- if (length(args) >= 2) eval(parse(text = args[2])) else 1:3
variants <- if (length(args) >= 3) strsplit(args[3], ",")[[1]] else c("cell_state", "centred", "offsets")
auc <- function(a, b) mean(outer(a, b, ">")) + 0.5 * mean(outer(a, b, "=="))
rows <- list()
for (s in seeds) {
  sim <- simulate_manifold(n_cells = n_cells, n_genes = 400, n_de_genes = 20, n_odd_genes = 20, seed = s)
  truth <- SummarizedExperiment::rowData(sim)
  un <- !truth$de & !truth$odd_replicate
  for (v in variants) {
    centre <- switch(v, cells = "none", cell_state = "none", centred = "pooled", offsets = "offsets", v)
    old <- options(sceffects.de_centre = centre)
    tm <- system.time(de <- diff_expression(sim, "condition", "young", "old", seed = 42, n_landmarks = 200,
                                            null_genes = 1000, threads = 1, sample = "sample",
                                            null = if (v == "cells") "cells" else "cell_state"))[["elapsed"]]
    options(old)
    p <- de$p_value[un]
    rows[[length(rows) + 1]] <- data.frame(
      seed = s, variant = v, p05 = mean(p < .05), p10 = mean(p < .1),
      ks_D = unname(suppressWarnings(stats::ks.test(p, "punif"))$statistic),
      pe10 = mean(de$p_empirical[un] < .1), unpl_bh10 = mean(de$fdr[un] < .1),
      de_bh10 = mean(de$fdr[truth$de] < .1), de_lfdr = mean(de$is_de[truth$de]),
      odd_bh10 = mean(de$fdr[truth$odd_replicate] < .1),
      auc = auc(-de$log_p[truth$de], -de$log_p[un]), df2 = attr(de, "null_fit")$df2, seconds = tm)
    print(rows[[length(rows)]], digits = 3, row.names = FALSE)
  }
}
res <- do.call(rbind, rows)
cat("\nMeans over seeds:\n")
print(aggregate(. ~ variant, res[, -1], mean), digits = 3, row.names = FALSE)

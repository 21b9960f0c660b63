# Experiment for a follow-up of issue 15 (not what diff_expression() does): genes centred
# by their means in the strata of cell state before the fit, with null genes permuted
# within the same strata. Centring removes the trajectory from real and null genes alike
# (a within-stratum permutation leaves the stratum means unchanged), so the distance
# measures the within-stratum condition contrast. Compared with null = "cells" and the
# default null = "cell_state" on uncentred genes.
# Rscript inst/bench/de-null-centred.R [seeds]   (simulate_manifold, 3,000 cells, 400 genes)
suppressMessages(library(sceffects))
options(sceffects.verbose = FALSE)
args <- commandArgs(TRUE)
seeds <- if (length(args) >= 1) eval(parse(text = args[1])) else 1:2
auc <- function(a, b) mean(outer(a, b, ">")) + 0.5 * mean(outer(a, b, "=="))
# simulate_manifold() with and without its per-sample shifts (sd 0.05 on the log mean): a
# sample shift is a real (small) difference between the two conditions' cells.
sim_data <- sceffects:::simulate_manifold_data
txt <- deparse(sim_data)
stopifnot(sum(grepl("0, 0.05)", txt, fixed = TRUE)) == 1L)
no_shift <- eval(parse(text = sub("0, 0.05)", "0, 0)", txt, fixed = TRUE)), envir = asNamespace("sceffects"))
for (shift in c(TRUE, FALSE)) {
  for (s in seeds) {
    sim <- sceffects:::with_seed(s, (if (shift) sim_data else no_shift)(3000, 400, 10, 3, 20, 20, 1, c("young", "old")))
    truth <- SummarizedExperiment::rowData(sim)
    un <- !truth$de & !truth$odd_replicate
    y <- as.matrix(SummarizedExperiment::assay(sim, "logcounts"))
    emb <- SingleCellExperiment::reducedDim(sim, "DM")
    # The strata diff_expression(seed = 42) uses (all cells are in the two conditions).
    st <- sceffects:::rs_manifold_strata(emb, seq_len(ncol(y)), 30L, 20L, 42, 1L)
    centred <- y - (t(rowsum(t(y), st)) / rep(tabulate(st), each = nrow(y)))[, st]
    for (what in c("cells", "cell_state", "centred")) {
      de <- diff_expression(if (what == "centred") centred else y, sim$condition, "young", "old", reduction = emb,
                            seed = 42, n_landmarks = 200, null_genes = 1000, threads = 1,
                            null = if (what == "cells") "cells" else "cell_state")
      p <- de$p_value[un]
      cat(sprintf("shifts %-5s seed %d %-10s unplanted: p<0.05 %.3f p<0.1 %.3f KS D %.3f p_emp<0.1 %.3f BH10 %.3f | planted: p<0.05 %.2f BH10 %.2f lfdr %.2f median log10 p %.1f AUC %.3f\n",
                  shift, s, what, mean(p < .05), mean(p < .1), suppressWarnings(stats::ks.test(p, "punif"))$statistic,
                  mean(de$p_empirical[un] < .1), mean(de$fdr[un] < .1), mean(de$p_value[truth$de] < .05),
                  mean(de$fdr[truth$de] < .1), mean(de$is_de[truth$de]), stats::median(log10(de$p_value[truth$de])),
                  auc(-de$log_p[truth$de], -de$log_p[un])))
    }
  }
}

# Differential abundance, issue 15: why the default misses the planted region on isotropic
# embeddings of 5+ dimensions. Per case (the simulation of inst/bench/da.R: 6 samples x 800
# cells, a 3x half-space z1 > q(0.88) in all B replicates, smooth replicate noise):
# - oracle: the region known, a two-group t test of the samples' log fractions in it (3 vs 3);
#   its log fold change is what a pure neighbourhood would see, its p what any test of that
#   region across these replicates can reach;
# - default: diff_abundance(method = "neighbourhood") as shipped: k, the median per-cell log
#   fold change of the planted cells (against the oracle's: the dilution by background cells
#   in the k-nearest neighbourhoods), sensitivity and false-positive rate;
# - true direction x4: the same, on the embedding with z1 (the planted axis, known only to
#   the simulation) stretched 4-fold, so that neighbourhoods are narrow across the region's
#   edge; an oracle of what an adapted metric could gain at the same k and test.
# Usage: R_LIBS=$WT/lib Rscript inst/bench/da-diagnosis.R [seeds]
suppressPackageStartupMessages(library(sceffects))
args <- commandArgs(trailingOnly = TRUE)
seeds <- if (length(args) >= 1) seq_len(as.integer(args[1])) else 1:3
options(sceffects.verbose = FALSE, cli.progress_show_after = Inf)
sim <- sceffects:::simulate_da_cells

oracle <- function(d) {
  counts <- table(factor(d$sample), d$planted)
  y <- log((counts[, "TRUE"] + 0.5) / rowSums(counts))
  b <- startsWith(names(y), "B")
  c(lfc = mean(y[b]) - mean(y[!b]), p = stats::t.test(y[b], y[!b], var.equal = TRUE)$p.value)
}

ours <- function(d, stretch = 1) {
  emb <- d$embedding
  emb[, 1L] <- emb[, 1L] * stretch
  out <- suppressWarnings(diff_abundance(emb, d$condition, "A", "B", sample = d$sample, seed = 1))
  planted <- d$planted & !d$odd
  background <- !d$planted & !d$odd
  c(k = attr(out, "fit")$k, lfc = stats::median(out$da_lfc[planted]),
    sensitivity = mean(out$da_direction[planted] %in% "up"),
    fpr = mean(out$da_direction[background] %in% c("up", "down")))
}

rows <- list()
for (n_dims in c(2L, 5L, 10L, 20L)) for (seed in seeds) {
  d <- sim("isotropic", n_dims, seed = seed)
  o <- oracle(d)
  a <- ours(d)
  s <- ours(d, 4)
  rows[[length(rows) + 1L]] <- data.frame(d = n_dims, seed = seed, oracle_lfc = o[["lfc"]], oracle_p = o[["p"]],
                                          k = a[["k"]], lfc = a[["lfc"]], sensitivity = a[["sensitivity"]],
                                          fpr = a[["fpr"]], x4_lfc = s[["lfc"]], x4_sensitivity = s[["sensitivity"]],
                                          x4_fpr = s[["fpr"]])
}
res <- do.call(rbind, rows)
print(res, digits = 2, row.names = FALSE)
cat("\nMedians over seeds:\n")
print(stats::aggregate(. ~ d, res[, names(res) != "seed"], stats::median), digits = 2, row.names = FALSE)

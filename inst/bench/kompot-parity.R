# Agreement with kompot 0.8.0 / Mellon 1.7.1 themselves (not in CI: needs a Python
# environment with `pip install kompot==0.8.0`). Same small simulated data, landmarks,
# length scale and dimension on both sides; prints the largest differences.
# Usage: Rscript inst/bench/kompot-parity.R [path to python]
suppressPackageStartupMessages(library(sceffects))
args <- commandArgs(trailingOnly = TRUE)
python <- if (length(args)) args[1] else "python3"
out <- tempfile("kompot-parity")
dir.create(out)
sce <- simulate_manifold(n_cells = 900, n_genes = 30, n_dims = 4, n_de_genes = 5, n_odd_genes = 5, seed = 7)
emb <- SingleCellExperiment::reducedDim(sce, "DM")
y <- as.matrix(SingleCellExperiment::logcounts(sce))
u <- emb[seq(1, 900, by = 6), ]
write.csv(emb, file.path(out, "emb.csv"), row.names = FALSE)
write.csv(t(y), file.path(out, "y.csv"), row.names = FALSE)
write.csv(u, file.path(out, "u.csv"), row.names = FALSE)
write.csv(data.frame(condition = sce$condition, sample = sce$sample), file.path(out, "obs.csv"), row.names = FALSE)
ls <- 1.3
de <- diff_expression(sce, "condition", "young", "old", landmarks = unname(u), length_scale = ls, null_genes = 0, null = "cells")
desv <- diff_expression(sce, "condition", "young", "old", landmarks = unname(u), length_scale = ls, null_genes = 0, sample = "sample", null = "cells")
write.csv(data.frame(mean_lfc = de$mean_lfc, d = de$mahalanobis, d_sv = desv$mahalanobis), file.path(out, "ours_de.csv"), row.names = FALSE)
da <- diff_abundance(emb, sce$condition, "young", "old", method = "kompot", landmarks = unname(u), dimension = 2.5, length_scale = 0.8)
write.csv(data.frame(ld1 = da$da_log_density_young, ld2 = da$da_log_density_old, var = attr(da, "fit")$variance, z = da$da_lfc_zscore), file.path(out, "ours_da.csv"), row.names = FALSE)
cat("diagonal shortcut:", attr(de, "diagonal_shortcut"), "\n")
system2(python, c(system.file("bench", "kompot-parity.py", package = "sceffects"), out))

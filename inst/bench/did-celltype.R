# Per-cell-type DiD and median aggregation (issue 16): aggregate =
# "participant_visit_celltype" (every cell type's participant-visits summed in one pass)
# against one did_table() per cell type on the subset (one pass each), and the median
# aggregate against the mean and against R's per-gene tapply(median) on a sample of genes;
# medians of 3, same run.
# Usage: Rscript inst/bench/did-celltype.R [n_genes] [n_cells]   (default 5000 x 13000)
suppressPackageStartupMessages(library(sceffects))
args <- commandArgs(trailingOnly = TRUE)
n_genes <- if (length(args) >= 1) as.integer(args[1]) else 5000L
n_cells <- if (length(args) >= 2) as.integer(args[2]) else 13000L
threads <- 2L
median_time <- function(f, reps = 3L) stats::median(vapply(seq_len(reps), function(i) system.time(f())[["elapsed"]], 0))
quiet <- function(expr) suppressMessages(suppressWarnings(expr))
cat(sprintf("machine: %d cores; R %s; threads = %d\nload: %s\n", parallel::detectCores(), getRversion(), threads,
            system("uptime", intern = TRUE)))

sce <- simulate_trial(n_genes = n_genes, n_cells = n_cells, seed = 1)
design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
                       celltype = "cell_type", baseline = "Pre", followup = "Post")
types <- sort(unique(sce$cell_type))
cat(sprintf("%d genes x %d cells, %d cell types\n", n_genes, n_cells, length(types)))

t_shared <- median_time(function() quiet(did_table(sce, design, aggregate = "participant_visit_celltype", threads = threads)))
t_loop <- median_time(function() {
  for (ct in types) quiet(did_table(sce[, sce$cell_type == ct], design, threads = threads))
})
cat(sprintf("per cell type, one call (one pass): %.2f s; a did_table() per cell type: %.2f s (%.1fx)\n",
            t_shared, t_loop, t_loop / t_shared))

t_mean <- median_time(function() quiet(did_table(sce, design, threads = threads)))
t_median <- median_time(function() quiet(did_table(sce, design, summary = "median", threads = threads)))
m <- SingleCellExperiment::logcounts(sce)
key <- paste(sce$participant, sce$visit)
sample_genes <- sample(rownames(m), 200)
t_r <- system.time(for (g in sample_genes) tapply(as.numeric(m[g, ]), key, stats::median))[["elapsed"]]
per_gene_r <- t_r / length(sample_genes)
cat(sprintf("participant-visit means: %.2f s; medians (core, sparse): %.2f s (%.2fx the means)\n", t_mean, t_median,
            t_median / t_mean))
cat(sprintf("R medians alone, tapply(median) per gene: %.2f ms/gene, %.1f s for all genes (%.0fx the whole median DiD)\n",
            1000 * per_gene_r, per_gene_r * n_genes, per_gene_r * n_genes / t_median))

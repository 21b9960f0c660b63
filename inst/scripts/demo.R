# The main job of sceffects today: an all-vs-all association screen on real data that is
# available offline, the ALL leukaemia study (Chiaretti et al. 2004; Bioconductor's ALL):
# 12,625 probe sets on 128 patients with clinical covariates.
# Usage: Rscript demo.R [output directory]
suppressPackageStartupMessages({
  library(sceffects)
  library(ALL)
})
out_dir <- commandArgs(trailingOnly = TRUE)[1]
if (is.na(out_dir)) out_dir <- "."
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
data(ALL)
expr <- Biobase::exprs(ALL)
clinical <- Biobase::pData(ALL)
cat(sprintf("ALL: %d probe sets x %d patients\n", nrow(expr), ncol(expr)))

# 1. Every probe set against T- vs B-lineage and against sex (Mann-Whitney).
groups <- data.frame(T_lineage = startsWith(as.character(clinical$BT), "T"),
                     male = ifelse(is.na(clinical$sex), NA, clinical$sex == "M"))
t0 <- Sys.time()
mwu <- assoc_mwu(expr, groups)
cat(sprintf("\nMann-Whitney: %d tests in %.2f s\n", nrow(mwu), as.numeric(Sys.time() - t0, units = "secs")))
print(head(mwu, 10))

# 2. All pairs among the 3,000 most variable probe sets (4.5 million correlations),
#    keeping each probe set's 5 strongest partners; FDR over all pairs.
top_var <- expr[order(apply(expr, 1, stats::var), decreasing = TRUE)[1:3000], ]
t0 <- Sys.time()
cors <- assoc_cor(top_var, method = "spearman", top = 5)
cat(sprintf("\nSpearman, all pairs of 3,000 probe sets: %.2f s\n", as.numeric(Sys.time() - t0, units = "secs")))
print(head(cors, 10))

# 3. Clinical covariates against each other (Fisher and chi-square).
binary <- data.frame(T_lineage = groups$T_lineage, male = groups$male,
                     relapse = clinical$relapse, transplant = clinical$transplant,
                     BCR_ABL = clinical$mol.biol == "BCR/ABL")
print(assoc_fisher(binary, mle = TRUE))
categorical <- clinical[, c("BT", "sex", "remission", "mol.biol", "kinet")]
print(assoc_chisq(categorical))

png(file.path(out_dir, "volcano_mwu.png"), width = 1600, height = 1200, res = 200)
print(plot_volcano(mwu[mwu$feature_y == "T_lineage", ], label = 8))
invisible(dev.off())
png(file.path(out_dir, "pvalues_mwu_sex.png"), width = 1600, height = 900, res = 200)
print(plot_pvalues(mwu[mwu$feature_y == "male", ]))
invisible(dev.off())
utils::write.csv(mwu, file.path(out_dir, "mwu_results.csv"), row.names = FALSE)
cat(sprintf("\nWrote %s\n", paste(file.path(out_dir, c("volcano_mwu.png", "pvalues_mwu_sex.png", "mwu_results.csv")), collapse = ", ")))

# 4. Difference in differences on a simulated trial shaped like Sade-Feldman 2018
#    (25 participants, 10 paired: 3 responders vs 7 non-responders; 13,000 cells).
sce <- simulate_trial(n_genes = 5000, n_cells = 13000, seed = 1)
design <- trial_design("participant", "visit", "response", treated = "Responder",
                       control = "Non-responder", celltype = "cell_type",
                       baseline = "Pre", followup = "Post")
sce <- score_gene_sets(sce, S4Vectors::metadata(sce)$gene_sets)
t0 <- Sys.time()
did <- suppressWarnings(did_table(sce, design))
cat(sprintf("\nDifference in differences, %d genes (participant-visit means, CR2): %.2f s\n",
            nrow(did), as.numeric(Sys.time() - t0, units = "secs")))
print(head(did[order(did$p_value), ], 10))
signatures <- suppressWarnings(did_table(sce, design, features = names(S4Vectors::metadata(sce)$gene_sets),
                                         bootstrap = 999))
print(signatures)
png(file.path(out_dir, "forest_did_signatures.png"), width = 1600, height = 1000, res = 200)
print(plot_forest(signatures))
invisible(dev.off())
png(file.path(out_dir, "volcano_did.png"), width = 1600, height = 1200, res = 200)
print(plot_volcano(did, label = 8))
invisible(dev.off())
utils::write.csv(did, file.path(out_dir, "did_results.csv"), row.names = FALSE)
cat(sprintf("Wrote %s\n", paste(file.path(out_dir, c("forest_did_signatures.png", "volcano_did.png", "did_results.csv")), collapse = ", ")))

# 5. Gene-set enrichment of that DiD: one DiD over all genes, ranked once (signed -log10 p).
t0 <- Sys.time()
enrichment <- suppressWarnings(gsea_did(sce, design, collections = list(simulated = S4Vectors::metadata(sce)$gene_sets),
                                        min_size = 10, seed = 1))
cat(sprintf("\nGSEA of the DiD (DiD over all genes included): %.2f s\n", as.numeric(Sys.time() - t0, units = "secs")))
print(enrichment[, c("collection", "set", "size", "es", "nes", "p_value", "fdr", "log2err", "p_method")])
png(file.path(out_dir, "gsea_did.png"), width = 1600, height = 1000, res = 200)
print(plot_gsea(enrichment))
invisible(dev.off())
cat(sprintf("Wrote %s\n", file.path(out_dir, "gsea_did.png")))

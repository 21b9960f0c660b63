# Balances benchmark: balances() on phyloseq's GlobalPatterns (19,216 taxa x 26 samples,
# its whole tree, pseudocount 1), time (median of 3) and peak memory of the process
# (VmHWM, which includes the Rust core's allocations) and of R's heap (gc's max used).
# For scale, the dense basis route (the former implementation, basis %*% log(x)) is timed
# on a subtree of n_dense taxa in the same run, and a 10,000-tip caterpillar is timed too.
# Usage: Rscript inst/bench/balances.R [n_dense]   (default 2000)
suppressPackageStartupMessages({ library(sceffects); library(phyloseq); library(ape) })
args <- commandArgs(trailingOnly = TRUE)
n_dense <- if (length(args) >= 1) as.integer(args[1]) else 2000L
median_time <- function(f, reps = 3L) stats::median(vapply(seq_len(reps), function(i) system.time(f())[["elapsed"]], 0))
vm_hwm <- function() {
  line <- grep("^VmHWM", readLines("/proc/self/status"), value = TRUE)
  as.numeric(gsub("[^0-9]", "", line)) / 1024
}
cat(sprintf("machine: %d cores, %s; R %s; phyloseq %s, ape %s\n", parallel::detectCores(), Sys.info()[["machine"]],
            getRversion(), packageVersion("phyloseq"), packageVersion("ape")))

data("GlobalPatterns", package = "phyloseq")
gp <- GlobalPatterns
cat(sprintf("GlobalPatterns: %d taxa x %d samples; tree: %d tips, binary: %s\n", ntaxa(gp), nsamples(gp),
            Ntip(phy_tree(gp)), is.binary(phy_tree(gp))))
tree <- phy_tree(gp)
if (!is.binary(tree)) tree <- multi2di(tree, random = FALSE)
invisible(gc(reset = TRUE))
hwm0 <- vm_hwm()
t_gp <- median_time(function() balances(gp, tree, pseudocount = 1))
b <- balances(gp, tree, pseudocount = 1)
heap <- sum(gc()[, 6L])
cat(sprintf("balances(GlobalPatterns): %d balances x %d samples, median %.2f s; process peak %.0f MB (%.0f MB before), R heap max %.0f MB\n",
            nrow(b), ncol(b), t_gp, vm_hwm(), hwm0, heap))

# The dense route on a subtree of n_dense taxa (keep.tip keeps it binary), against the tree pass.
sub <- keep.tip(tree, tree$tip.label[seq_len(n_dense)])
x_sub <- as(otu_table(gp), "matrix")[sub$tip.label, ] + 1
t_tree <- median_time(function() balances(x_sub, sub))
t_dense <- median_time(function() {
  basis <- balance_basis(sub)
  basis %*% log(x_sub[colnames(basis), ])
})
diff <- max(abs(balances(x_sub, sub) - balance_basis(sub) %*% log(x_sub[colnames(balance_basis(sub)), ])))
cat(sprintf("%d-taxon subtree: tree pass %.3f s, dense basis route %.3f s (ratio dense/tree %.1f); max |difference| %.1e\n",
            n_dense, t_tree, t_dense, t_dense / t_tree, diff))

cat10k <- stree(10000, "left")
cat10k$tip.label <- paste0("p", 1:10000)
x_cat <- matrix(rgamma(10000 * 26, 2), 10000, dimnames = list(cat10k$tip.label, NULL))
t_cat <- median_time(function() balances(x_cat, cat10k))
cat(sprintf("10,000-tip caterpillar x 26 samples: median %.2f s; process peak %.0f MB\n", t_cat, vm_hwm()))

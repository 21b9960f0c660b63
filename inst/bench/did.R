# Difference-in-differences benchmark: did_table on a simulated trial shaped like
# Sade-Feldman 2018, against an R loop of lm + sandwich::vcovCL on a sample of genes (the
# per-gene cost of the usual R approach) in the same run; ratios printed.
# Usage: Rscript inst/bench/did.R [n_genes] [n_cells]   (default 55737 x 13000)
suppressPackageStartupMessages({ library(sceffects); library(sandwich) })
args <- commandArgs(trailingOnly = TRUE)
n_genes <- if (length(args) >= 1) as.integer(args[1]) else 55737L
n_cells <- if (length(args) >= 2) as.integer(args[2]) else 13000L
threads <- 2L
reps <- 3L
median_time <- function(f, reps) stats::median(vapply(seq_len(reps), function(i) system.time(f())[["elapsed"]], 0))
cat(sprintf("machine: %d cores, %s; R %s; threads = %d\nload: %s\n", parallel::detectCores(), Sys.info()[["machine"]],
            getRversion(), threads, system("uptime", intern = TRUE)))

t_sim <- system.time(sce <- simulate_trial(n_genes = n_genes, n_cells = n_cells, seed = 1))[["elapsed"]]
m <- SingleCellExperiment::logcounts(sce)
input_mb <- as.numeric(utils::object.size(m)) / 2^20
cat(sprintf("simulate_trial: %d genes x %d cells, %.1f%% non-zero, dgCMatrix %.0f MB, simulated in %.1f s\n",
            n_genes, n_cells, 100 * length(m@x) / prod(dim(m)), input_mb, t_sim))
design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
                       celltype = "cell_type", baseline = "Pre", followup = "Post")
quiet <- function(expr) suppressMessages(suppressWarnings(expr))

t_pv <- median_time(function() quiet(did_table(sce, design, threads = threads)), reps)
t_pv1 <- median_time(function() quiet(did_table(sce, design, threads = 1L)), reps)
t_cr1 <- median_time(function() quiet(did_table(sce, design, vcov = "CR1", threads = threads)), reps)
t_boot <- median_time(function() quiet(did_table(sce, design, bootstrap = 999, threads = threads)), 1L)
t_cell <- median_time(function() quiet(did_table(sce, design, aggregate = "cell", threads = threads)), 1L)

# The group-sum kernel alone (one pass over the non-zeros into genes x participant-visits),
# per non-zero, next to this machine's memory bandwidth: a stream-like copy of a vector the
# size of the matrix's values and row indices, timed in the same run.
cd0 <- SummarizedExperiment::colData(sce)
pv_key <- paste(cd0$participant, cd0$visit)
pv_group <- match(pv_key, unique(pv_key))
t_sums <- median_time(function() sceffects:::rs_group_sums(m, pv_group, max(pv_group), threads), 5L)
bytes <- 12 * length(m@x)  # 8-byte value + 4-byte row index per non-zero
src_vec <- runif(bytes / 8)
t_copy <- median_time(function() { dst <- src_vec + 0; invisible(dst) }, 5L)
# a copy reads and writes each byte
bandwidth <- 2 * bytes / t_copy
rm(src_vec)

# The R peer: per gene, participant-visit means, lm with participant fixed effects, vcovCL.
cd <- as.data.frame(SummarizedExperiment::colData(sce))
key <- paste(cd$participant, cd$visit)
pv <- unique(data.frame(key = key, participant = cd$participant, post = as.numeric(cd$visit == "Post"),
                        trt = as.numeric(cd$response == "Responder")))
pv$n <- as.numeric(table(key)[pv$key])
paired <- names(which(table(pv$participant) == 2))
pv <- pv[pv$participant %in% paired, ]
# Means are computed before timing, so the loop is timed at its best (lm + vcovCL only).
sample_genes <- sample(rownames(m), 200)
means <- lapply(sample_genes, function(g) tapply(as.numeric(m[g, ]), key, mean)[pv$key])
t_loop <- system.time(for (y in means) {
  d <- pv
  d$y <- y / sd(y)
  if (!all(is.finite(d$y))) next
  fit <- lm(y ~ post + post:trt + factor(participant), data = d, weights = n)
  se <- sqrt(vcovCL(fit, cluster = ~participant, type = "HC1")["post:trt", "post:trt"])
})[["elapsed"]] / length(sample_genes)

# Peak resident memory of the whole process during did_table (Linux: clear_refs resets it).
vm <- function(field) as.numeric(sub("[^0-9]*([0-9]+).*", "\\1", grep(field, readLines("/proc/self/status"), value = TRUE))) / 1024
invisible(gc())
before <- vm("VmRSS")
reset <- tryCatch({ writeLines("5", "/proc/self/clear_refs"); TRUE }, error = function(e) FALSE)
invisible(quiet(did_table(sce, design, threads = threads)))
peak_extra <- vm("VmHWM") - before

cat(sprintf("\nAll %d genes, participant_visit:\n", n_genes))
cat(sprintf("  CR2 (default): %.2f s with %d threads, %.2f s with 1 thread\n", t_pv, threads, t_pv1))
cat(sprintf("  CR1:           %.2f s\n", t_cr1))
cat(sprintf("  CR2 + 999-draw wild cluster bootstrap: %.2f s\n", t_boot))
cat(sprintf("  cell level, CR2: %.2f s\n", t_cell))
cat(sprintf("  group sums alone: %.3f s for %.3g non-zeros = %.2f ns per non-zero = %.2f GB/s of values and indices\n",
            t_sums, length(m@x), 1e9 * t_sums / length(m@x), bytes / t_sums / 1e9))
cat(sprintf("  memory bandwidth (copy of %.0f MB, read + write): %.2f GB/s -> group sums at %.0f%% of it\n",
            bytes / 2^20, bandwidth / 1e9, 100 * (bytes / t_sums) / bandwidth))
cat(sprintf("R loop lm + vcovCL: %.2f ms/gene -> %.0f s for all genes -> did_table is %.0fx faster\n",
            1000 * t_loop, t_loop * n_genes, t_loop * n_genes / t_pv))
# Machine-readable line for inst/bench/run-all.R: work, ours (s), peer (s), peer, target.
cat(sprintf("RESULT\tDiD %d x %d dgCMatrix, participant-visit CR2\t%.4g\t%.4g\tlm + vcovCL loop (timed on 200 genes)\t>= 200x\n",
            n_genes, n_cells, t_pv, t_loop * n_genes))
cat(sprintf("RESULT\tDiD group sums, %.3g non-zeros (%.2f ns each)\t%.4g\t%.4g\tcopy at memory bandwidth\t-\n",
            length(m@x), 1e9 * t_sums / length(m@x), t_sums, t_copy))
cat(sprintf("sctrial (reference notes: 12-20 ms/gene): %.0f-%.0f s -> %.0f-%.0fx\n", 0.012 * n_genes,
            0.020 * n_genes, 0.012 * n_genes / t_pv, 0.020 * n_genes / t_pv))
cat(sprintf("Peak memory added by did_table (process RSS%s): %.0f MB = %.2fx the input matrix (%.0f MB)\n",
            if (reset) "" else ", peak not reset: upper bound", peak_extra, peak_extra / input_mb, input_mb))

# Event study (issue 16): four visits against two, on the same genes and cells. The peer is
# the per-gene R route, lm + clubSandwich coef_test and Wald_test (HTZ), timed on a sample.
# Sizes: SCEFFECTS_BENCH_EVENT="n_genes n_cells" (default 20000 x 20000).
event_size <- as.integer(strsplit(Sys.getenv("SCEFFECTS_BENCH_EVENT", "20000 20000"), " ")[[1]])
sce4 <- simulate_trial(n_genes = event_size[1], n_cells = event_size[2], visits = c("Pre", "C1", "C2", "C3"), seed = 1)
design4 <- trial_design("participant", "visit", "response", "Responder", "Non-responder", baseline = "Pre", followup = "C3")
t_two <- median_time(function() quiet(did_table(sce4, design4, threads = threads)), reps)
t_four <- median_time(function() quiet(did_table(sce4, design4, visits = "all", threads = threads)), reps)
cd4 <- as.data.frame(SummarizedExperiment::colData(sce4))
key4 <- paste(cd4$participant, cd4$visit)
pv4 <- unique(data.frame(key = key4, participant = cd4$participant, visit = as.character(cd4$visit),
                         trt = as.numeric(cd4$response == "Responder")))
pv4$n <- as.numeric(table(key4)[pv4$key])
pv4 <- pv4[pv4$participant %in% names(which(table(pv4$participant) >= 2)), ]
for (v in c("C1", "C2", "C3")) {
  pv4[[paste0("v", v)]] <- as.numeric(pv4$visit == v)
  pv4[[paste0("d", v)]] <- pv4[[paste0("v", v)]] * pv4$trt
}
m4 <- SingleCellExperiment::logcounts(sce4)
genes4 <- sample(rownames(m4), 20)
means4 <- lapply(genes4, function(g) tapply(as.numeric(m4[g, ]), key4, mean)[pv4$key])
t_loop4 <- if (requireNamespace("clubSandwich", quietly = TRUE)) system.time(for (y in means4) {
  d <- pv4
  d$y <- y / sd(y)
  if (!all(is.finite(d$y))) next
  fit <- lm(y ~ vC1 + vC2 + vC3 + dC1 + dC2 + dC3 + factor(participant), data = d, weights = n)
  clubSandwich::coef_test(fit, vcov = "CR2", cluster = d$participant)
  clubSandwich::Wald_test(fit, clubSandwich::constrain_zero(c("dC1", "dC2", "dC3")), vcov = "CR2",
                          cluster = d$participant, test = "HTZ")
})[["elapsed"]] / length(genes4) else NA_real_
cat(sprintf("\nEvent study, %d genes x %d cells, visits Pre, C1, C2, C3 (median of %d):\n", event_size[1], event_size[2], reps))
cat(sprintf("  two visits (Pre -> C3): %.2f s; four visits (3 terms + joint HTZ test): %.2f s -> %.2fx the two-visit time\n",
            t_two, t_four, t_four / t_two))
cat(sprintf("  R loop lm + clubSandwich coef_test + Wald_test: %.1f ms/gene -> %.0f s for all genes -> did_table is %.0fx faster\n",
            1000 * t_loop4, t_loop4 * event_size[1], t_loop4 * event_size[1] / t_four))

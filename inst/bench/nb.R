# Negative binomial regression benchmarks: ours and the peers on the same data in one run,
# medians and ratios printed. Usage: Rscript inst/bench/nb.R [scale]   (scale 1 = the
# issue's sizes; a smaller scale shrinks the large data set's genes for a quick run).
suppressPackageStartupMessages({
  library(sceffects)
  library(Matrix)
})
args <- commandArgs(trailingOnly = TRUE)
scale <- if (length(args)) as.numeric(args[1]) else 1
reps <- 3L
threads <- 2L
median_time <- function(expr_fn, reps) {
  stats::median(vapply(seq_len(reps), function(i) system.time(expr_fn())[["elapsed"]], 0))
}
cat(sprintf("machine: %d cores, %s; R %s; threads = %d; scale = %g\n",
            parallel::detectCores(), Sys.info()[["machine"]], getRversion(), threads, scale))

# 1. dispersion ~ 1, mean ~ one covariate, 2,000 genes x 1,000 cells: ours vs glmGamPoi.
set.seed(1)
n <- 1000L
g <- 2000L
cells <- data.frame(x1 = rnorm(n))
b0 <- rnorm(g, 0, 1)
b1 <- rnorm(g, 0, 0.3)
size <- exp(rnorm(g, 0.5, 0.7))
mu <- exp(b0 + outer(b1, cells$x1))
y <- matrix(rnbinom(g * n, size = size, mu = mu), g, n, dimnames = list(paste0("g", seq_len(g)), NULL))
t_ours <- median_time(function() nb_regression(y, ~ x1, ~ 1, data = cells, threads = threads), reps)
fit <- nb_regression(y, ~ x1, ~ 1, data = cells, threads = threads)
cat(sprintf("\n1. dispersion ~ 1, mean ~ x1, %d genes x %d cells (dense)\n", g, n))
cat(sprintf("  nb_regression: %.2f s (median of %d); converged %d of %d genes\n", t_ours, reps,
            sum(fit$converged), g))
if (requireNamespace("glmGamPoi", quietly = TRUE)) {
  gp <- function(cr) glmGamPoi::glm_gp(y, design = ~ x1, col_data = cells, size_factors = FALSE,
                                        overdispersion = TRUE, overdispersion_shrinkage = FALSE,
                                        do_cox_reid_adjustment = cr)
  t_gp <- median_time(function() gp(TRUE), reps)
  t_gp_ml <- median_time(function() gp(FALSE), reps)
  ml <- gp(FALSE)
  ok <- fit$converged
  d_beta <- max(abs(t(ml$Beta)[, ok] - coef(fit)[, ok]))
  d_size <- stats::median(abs(log(1 / ml$overdispersions[ok]) - coef(fit, "dispersion")[1, ok]))
  cat(sprintf("  glmGamPoi::glm_gp (Cox-Reid, default): %.2f s -> nb_regression is %.1fx faster\n",
              t_gp, t_gp / t_ours))
  cat(sprintf("  glmGamPoi::glm_gp (plain ML, the same estimator): %.2f s -> %.1fx faster\n",
              t_gp_ml, t_gp_ml / t_ours))
  # Machine-readable line for inst/bench/run-all.R: work, ours (s), peer (s), peer, target.
  cat(sprintf("RESULT\tNB %d x %d, dispersion ~ 1\t%.4g\t%.4g\tglmGamPoi::glm_gp plain ML\t>= 10x\n",
              g, n, t_ours, t_gp_ml))
  cat(sprintf("  agreement with plain-ML glm_gp: max |beta diff| = %.2g, median |log size diff| = %.2g\n",
              d_beta, d_size))
  gene_diff <- apply(abs(t(ml$Beta) - coef(fit)), 2, max)
  gene_diff[!ok] <- NA
  worst <- order(-gene_diff)[1:3]
  d_mass <- max(vapply(worst, function(j) {
    ref <- MASS::glm.nb(y[j, ] ~ x1, data = cells, control = glm.control(epsilon = 1e-12, maxit = 100))
    max(abs(stats::coef(ref) - coef(fit)[, j]))
  }, 0))
  cat(sprintf("  on the 3 genes that differ most, nb_regression vs MASS::glm.nb: max |beta diff| = %.2g\n",
              d_mass))
} else {
  cat("  glmGamPoi not installed: no comparison\n")
}

# 1b. Two covariates, 1,500 genes x 1,500 cells: ours vs plain-ML glm_gp.
n2 <- 1500L
g2 <- 1500L
cells2 <- data.frame(x1 = rnorm(n2), x2 = rnorm(n2))
mu2 <- exp(rnorm(g2, 0, 1) + outer(rnorm(g2, 0, 0.3), cells2$x1) + outer(rnorm(g2, 0, 0.3), cells2$x2))
y2 <- matrix(rnbinom(g2 * n2, size = exp(rnorm(g2, 0.5, 0.7)), mu = mu2), g2, n2,
             dimnames = list(paste0("g", seq_len(g2)), NULL))
t_ours2 <- median_time(function() nb_regression(y2, ~ x1 + x2, ~ 1, data = cells2, threads = threads), reps)
cat(sprintf("\n1b. dispersion ~ 1, mean ~ x1 + x2, %d genes x %d cells (dense)\n  nb_regression: %.2f s\n",
            g2, n2, t_ours2))
if (requireNamespace("glmGamPoi", quietly = TRUE)) {
  t_gp2 <- median_time(function() glmGamPoi::glm_gp(y2, design = ~ x1 + x2, col_data = cells2, size_factors = FALSE,
                                                     overdispersion = TRUE, overdispersion_shrinkage = FALSE,
                                                     do_cox_reid_adjustment = FALSE), reps)
  cat(sprintf("  glmGamPoi::glm_gp (plain ML): %.2f s -> %.1fx faster\n", t_gp2, t_gp2 / t_ours2))
  cat(sprintf("RESULT\tNB %d x %d, two covariates\t%.4g\t%.4g\tglmGamPoi::glm_gp plain ML\t>= 10x\n",
              g2, n2, t_ours2, t_gp2))
}

# 2. glmmTMB per gene (nbinom2 + dispformula), on a sample of genes of data set 3's shape.
n3 <- 10000L
cells3 <- data.frame(x1 = rnorm(n3), x2 = rnorm(n3), batch = factor(sample(c("a", "b"), n3, TRUE)))
sim_block <- function(genes) {
  b0 <- rnorm(genes, -0.5, 1)
  b1 <- rnorm(genes, 0, 0.3)
  b2 <- rnorm(genes, 0, 0.3)
  g0 <- rnorm(genes, 0.5, 0.5)
  g1 <- rnorm(genes, 0, 0.5)
  mu <- exp(b0 + outer(b1, cells3$x1) + outer(b2, cells3$x2))
  size <- exp(g0 + outer(g1, as.numeric(cells3$batch == "b")))
  m <- matrix(rnbinom(length(mu), size = size, mu = mu), genes)
  methods::as(m, "CsparseMatrix")
}
if (requireNamespace("glmmTMB", quietly = TRUE)) {
  sample_genes <- 5L
  ys <- as.matrix(sim_block(sample_genes))
  t_tmb <- system.time(for (k in seq_len(sample_genes)) {
    d <- cbind(cells3[seq_len(1000), ], y = ys[k, seq_len(1000)])
    glmmTMB::glmmTMB(y ~ x1 + x2, dispformula = ~ batch, family = glmmTMB::nbinom2, data = d)
  })[["elapsed"]] / sample_genes
  t_tmb_10k <- system.time(for (k in seq_len(2L)) {
    d <- cbind(cells3, y = ys[k, ])
    glmmTMB::glmmTMB(y ~ x1 + x2, dispformula = ~ batch, family = glmmTMB::nbinom2, data = d)
  })[["elapsed"]] / 2
  cat(sprintf("\n2. glmmTMB (nbinom2, dispformula = ~ batch, mean ~ x1 + x2): %.2f s a gene at 1,000 cells, %.2f s a gene at 10,000 cells\n",
              t_tmb, t_tmb_10k))
  cat(sprintf("   -> 20,000 genes x 10,000 cells with glmmTMB: about %.1f hours (one core)\n",
              t_tmb_10k * 20000 / 3600))
} else {
  t_tmb_10k <- NA
  cat("\n2. glmmTMB not installed: no per-gene timing\n")
}

# 3. 20,000 genes x 10,000 cells, sparse, mean ~ x1 + x2, dispersion ~ batch.
g3 <- max(500L, round(20000 * scale))
big <- do.call(rbind, lapply(split(seq_len(g3), ceiling(seq_len(g3) / 1000)), function(k) sim_block(length(k))))
rownames(big) <- paste0("g", seq_len(g3))
cat(sprintf("\n3. %d genes x %d cells, dgCMatrix (%.0f%% non-zero), mean ~ x1 + x2, dispersion ~ batch\n",
            g3, n3, 100 * length(big@x) / prod(dim(big))))
timing <- system.time(fit3 <- nb_regression(big, ~ x1 + x2, ~ batch, data = cells3, threads = threads))
t_big <- timing[["elapsed"]]
cat(sprintf("  nb_regression: %.1f s elapsed, %.1f s CPU (one run; target < 90 s on 2 cores at scale 1); converged %d, flagged %d\n",
            t_big, timing[["user.self"]] + timing[["sys.self"]], sum(fit3$converged), sum(!fit3$converged)))
print(table(fit3$reason, useNA = "ifany"))
if (!is.na(t_tmb_10k)) {
  cat(sprintf("  vs glmmTMB extrapolated to the same genes: %.0fx faster\n", t_tmb_10k * g3 / t_big))
}

# 4. scDesigner's recovery check: 10,000 cells, 20 genes, 2 mean and 2 dispersion
#    covariates, no intercepts; mean absolute error of beta and gamma.
set.seed(7)
n4 <- 10000L
obs <- data.frame(matrix(rnorm(n4 * 4), n4, dimnames = list(NULL, c("mean_dim0", "mean_dim1",
                                                                   "dispersion_dim0", "dispersion_dim1"))))
B <- matrix(rnorm(2 * 20), 2)
D <- matrix(rnorm(2 * 20), 2)
mu4 <- exp(as.matrix(obs[, 1:2]) %*% B)
r4 <- exp(as.matrix(obs[, 3:4]) %*% D)
y4 <- t(matrix(rnbinom(length(mu4), size = r4, mu = mu4), n4))
rownames(y4) <- paste0("gene", 1:20)
t4 <- system.time(fit4 <- nb_regression(y4, ~ mean_dim0 + mean_dim1 - 1,
                                        ~ dispersion_dim0 + dispersion_dim1 - 1, data = obs,
                                        threads = threads))[["elapsed"]]
cat(sprintf("\n4. scDesigner recovery check (10,000 cells, 20 genes): %.2f s, converged %d of 20\n",
            t4, sum(fit4$converged)))
cat(sprintf("  mean absolute error: beta %.4f, gamma %.4f (scDesigner notebook, Adam 40 epochs: 0.029, 0.048)\n",
            mean(abs(coef(fit4) - B)), mean(abs(coef(fit4, "dispersion") - D))))

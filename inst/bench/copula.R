# Gaussian-copula simulator: nb_copula() (scores, correlation, attenuation correction) and
# simulate(copula =) against the R route scDesign takes (randomised quantile residuals
# with pnbinom/qnorm and cor(); correlated normals by a Cholesky factor and qnbinom), same
# data, same run; medians of 3. Usage: R_LIBS=... Rscript inst/bench/copula.R [genes] [cells]
library(sceffects)
args <- as.integer(commandArgs(TRUE))
g <- if (length(args) >= 1) args[1] else 300L
n <- if (length(args) >= 2) args[2] else 10000L
set.seed(1)
cells <- data.frame(dose = rnorm(n))
f <- rnorm(n)
y <- t(sapply(seq_len(g), function(i) rnbinom(n, size = 2, mu = exp(-0.5 + 0.3 * cells$dose + 0.4 * f))))
rownames(y) <- paste0("g", seq_len(g))
ys <- Matrix::Matrix(y, sparse = TRUE)
fit <- nb_regression(ys, mean = ~ dose, data = cells, verbose = FALSE)
mu <- predict(fit)
size <- predict(fit, type = "dispersion")
med <- function(f) median(replicate(3, system.time(f())[["elapsed"]]))
r_copula <- function() {
  u <- runif(length(y))
  p <- pnbinom(y - 1, size = size, mu = mu) + u * dnbinom(y, size = size, mu = mu)
  cor(t(matrix(qnorm(p), g)))
}
r_simulate <- function(r) {
  z <- t(chol(r)) %*% matrix(rnorm(g * n), g)
  matrix(qnbinom(pnorm(z), size = size, mu = mu), g)
}
cop <- nb_copula(fit, ys, seed = 1)
t_ours <- med(function() nb_copula(fit, ys, seed = 1))
t_r <- med(r_copula)
s_ours <- med(function() simulate(fit, seed = 1, copula = cop))
s_r <- med(function() r_simulate(cop$correlation))
cat(sprintf("%d genes x %d sparse cells, threads %d\n", g, n, sceffects:::resolve_threads(NULL)))
cat(sprintf("nb_copula (with the attenuation correction): %.2f s; R route without correction: %.2f s (ratio %.2f)\n",
            t_ours, t_r, t_ours / t_r))
cat(sprintf("simulate(copula =): %.2f s; R route (chol + qnbinom): %.2f s (ratio %.2f)\n", s_ours, s_r, s_ours / s_r))
cat("uptime:", system("uptime", intern = TRUE), "\n")

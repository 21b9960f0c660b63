# Gene-gene correlation for simulating from nb_regression() fits: a Gaussian copula
# estimated from the normal scores of randomised quantile residuals, then used by
# simulate() to draw correlated counts with the fitted NB marginals (core `copula`).

#' Gaussian copula of a negative binomial fit (gene-gene correlation for simulation)
#'
#' Estimates the correlation between genes that [nb_regression()]'s independent NB
#' marginals leave out, as scDesign's Gaussian copula: each count is turned into a normal
#' score by its randomised quantile residual (Dunn and Smyth 1996: `u` uniform between
#' the fitted NB distribution function at `y - 1` and at `y`, then `qnorm(u)`), and the
#' genes' correlation is that of their scores. `simulate(fit, copula = cop)` then draws
#' correlated counts with the fitted marginals.
#'
#' The scores of discrete counts correlate less than the latent normals behind them
#' (attenuation, larger at small means), and the copula is used as estimated: counts
#' simulated from it correlate slightly less than the data (about 0.07 less for a latent
#' correlation of 0.6 at means near 3); no correction for this is made.
#'
#' @param fit An [nb_regression()] fit.
#' @param x The counts the fit was made on (genes x cells, same genes and cells).
#' @param assay Assay of a SummarizedExperiment.
#' @param seed Seed of the randomisation of the residuals (`NULL` draws it from R's
#'   generator, so `set.seed()` makes it reproducible); the result does not depend on
#'   `threads`.
#' @param threads Threads of the core (default `getOption("sceffects.threads", 2)`).
#' @return An object of class `sceffects_nb_copula`: `correlation` (genes x genes) and
#'   `genes`.
#' @export
#' @examples
#' set.seed(1)
#' cells <- data.frame(dose = rnorm(300))
#' shared <- rnorm(300)
#' counts <- t(sapply(1:4, function(g) rnbinom(300, size = 5, mu = exp(1 + 0.3 * cells$dose + 0.5 * shared))))
#' rownames(counts) <- paste0("gene", 1:4)
#' fit <- nb_regression(counts, mean = ~ dose, data = cells)
#' cop <- nb_copula(fit, counts, seed = 1)
#' round(cop$correlation, 2)
#' sim <- simulate(fit, seed = 2, copula = cop)
#' round(cor(t(sim)), 2)
nb_copula <- function(fit, x, assay = NULL, seed = NULL, threads = NULL) {
  check_nb_fit(fit, "fit")
  seed <- resolve_seed(seed)
  threads <- resolve_threads(threads)
  genes <- names(fit$loglik)
  y <- feature_matrix(x, "x", assay)
  if (!is.matrix(y)) y <- as.matrix(y)
  if (!identical(rownames(y), genes) || ncol(y) != fit$n_obs) {
    stop(sprintf("`x` must be the counts `fit` was made on: %d genes (%s) x %d cells.", length(genes),
                 name_list(genes, 3L), fit$n_obs), call. = FALSE)
  }
  check_count_values(y, "`x`")
  failed <- genes[is.na(fit$loglik) | fit$status == 2L]
  if (length(failed)) {
    stop(sprintf("`fit` has genes without a fit or all zero (%s): refit without them.", name_list(failed)), call. = FALSE)
  }
  storage.mode(y) <- "double"
  mu <- predict(fit, type = "mean")
  size <- predict(fit, type = "dispersion")
  z <- rs_nb_normal_scores(y, mu, size, seed, threads)
  r <- stats::cor(t(z))
  dimnames(r) <- list(genes, genes)
  structure(list(correlation = r, genes = genes), class = "sceffects_nb_copula")
}

#' @export
print.sceffects_nb_copula <- function(x, ...) {
  off <- x$correlation[lower.tri(x$correlation)]
  cat(sprintf("Gaussian copula of %d genes; gene-gene correlations from %.2f to %.2f (median |r| %.3f)\n",
              length(x$genes), min(off), max(off), stats::median(abs(off))))
  invisible(x)
}

# Counts of `nsim` data sets drawn by the core with the copula's correlation (its lower
# Cholesky factor, the correlation nudged towards the identity if not positive definite).
simulate_copula <- function(object, copula, mu, size, nsim, seed, threads) {
  if (!inherits(copula, "sceffects_nb_copula")) stop("`copula` must be made by nb_copula().", call. = FALSE)
  if (!identical(copula$genes, rownames(mu))) {
    stop("`copula` was estimated for other genes than the fit's: use nb_copula() on this fit.", call. = FALSE)
  }
  if (anyNA(mu) || anyNA(size)) stop("`object` has genes without a fit: refit without them to use a copula.", call. = FALSE)
  r <- copula$correlation
  l <- NULL
  for (shrink in c(0, 1e-8, 1e-6, 1e-4, 1e-2)) {
    l <- tryCatch(t(chol((1 - shrink) * r + shrink * diag(nrow(r)))), error = function(e) NULL)
    if (!is.null(l)) break
  }
  seed <- resolve_seed(seed)
  threads <- resolve_threads(threads)
  storage.mode(mu) <- storage.mode(size) <- "double"
  lapply(seq_len(nsim) - 1L, function(d) {
    y <- rs_nb_copula_simulate(mu, size, l, seed, d, threads)
    dimnames(y) <- dimnames(mu)
    y
  })
}

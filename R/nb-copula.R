# Gene-gene correlation for simulating from nb_regression() fits: a Gaussian copula
# estimated from the normal scores of randomised quantile residuals, corrected for the
# attenuation of discrete counts, then used by simulate() to draw correlated counts with
# the fitted marginals (core `copula`).

#' Gaussian copula of a negative binomial fit (gene-gene correlation for simulation)
#'
#' Estimates the correlation between genes that [nb_regression()]'s independent marginals
#' leave out, as scDesign's Gaussian copula, and the marginal family counts are drawn
#' from. Each count is turned into a normal score by its randomised quantile residual
#' (Dunn and Smyth 1996: `u` uniform between the marginal distribution function at `y - 1`
#' and at `y`, then `qnorm(u)`).
#'
#' Which correlation is matched: the copula's `correlation` is that of the latent
#' normals, chosen per pair of genes so that the expected correlation of the normal
#' scores of counts drawn from it equals the scores' correlation in the data. Discrete
#' counts attenuate a latent correlation (the scores of counts near a mean of 0.5 keep
#' about two thirds of it); the attenuation of each pair is computed exactly from the
#' Hermite expansion of the scores' conditional means (Mehler's formula, 12 terms),
#' averaged over at most `max_cells` cells evenly spread over the data (per group), and
#' inverted. Counts simulated from the copula therefore have the data's score
#' correlation, and, when the model holds, the data's count correlation.
#'
#' Marginals (`family`): `"nb"` the fitted NB; `"poisson"` Poisson with the fitted means;
#' `"zinb"` the fitted NB with a zero-inflation probability per gene, estimated by maximum
#' likelihood with the NB means and sizes held at the fit's: the zeros in excess of the
#' fitted NB (0 when there are none).
#'
#' The counts are read one block of cells at a time (a dgCMatrix or DelayedArray is never
#' densified whole); the genes x genes correlation is accumulated over blocks.
#'
#' @param fit An [nb_regression()] fit.
#' @param x The counts the fit was made on (genes x cells, same genes and cells).
#' @param group `NULL` (one correlation for all cells), or the name of a column of the
#'   fit's metadata (a factor, or values used as one): one correlation per level, used by
#'   `simulate()` for the cells of that level (looked up in `newdata` when given there).
#' @param family Marginal distribution: `"nb"`, `"poisson"` or `"zinb"` (see Details).
#' @param assay Assay of a SummarizedExperiment.
#' @param max_cells Most cells per group whose marginals enter the attenuation correction.
#' @param block_size Cells read per block.
#' @param seed Seed of the randomisation of the residuals (`NULL` draws it from R's
#'   generator, so `set.seed()` makes it reproducible); the result depends neither on
#'   `threads` nor on `block_size`.
#' @param threads Threads of the core (default `getOption("sceffects.threads", 2)`).
#' @return An object of class `sceffects_nb_copula`: `correlation` (genes x genes; with
#'   `group`, a list of them named by level), `score_correlation` (the scores' correlation
#'   before the correction, same shape), `family`, `zero_inflation` (per gene; 0 unless
#'   `"zinb"`), `group` and `genes`.
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
nb_copula <- function(fit, x, group = NULL, family = c("nb", "poisson", "zinb"), assay = NULL,
                      max_cells = 2000L, block_size = 1000L, seed = NULL, threads = NULL) {
  check_nb_fit(fit, "fit")
  family <- match_choice(family, "family")
  max_cells <- check_count(max_cells, "max_cells", min = 10)
  block_size <- check_count(block_size, "block_size", min = 1)
  seed <- resolve_seed(seed)
  threads <- resolve_threads(threads)
  genes <- names(fit$loglik)
  src <- numeric_features(x, "x", assay = assay)
  if (!identical(src$names, genes) || src$n_samples != fit$n_obs) {
    stop(sprintf("`x` must be the counts `fit` was made on: %d genes (%s) x %d cells.", length(genes),
                 name_list(genes, 3L), fit$n_obs), call. = FALSE)
  }
  check_count_values(count_values_of(src$data), "`x`")
  failed <- genes[is.na(fit$loglik) | fit$status == 2L]
  if (length(failed)) {
    stop(sprintf("`fit` has genes without a fit or all zero (%s): refit without them.", name_list(failed)), call. = FALSE)
  }
  levels <- copula_levels(fit, group, fit$data, "group")
  zero <- if (family == "zinb") copula_zero_inflation(fit, src, block_size, threads) else rep(0, length(genes))
  scores <- copula_score_moments(fit, src, family, zero, levels, block_size, seed, threads)
  latent <- lapply(names(scores), function(lv) {
    cells <- which(levels == lv)
    cells <- cells[unique(round(seq(1, length(cells), length.out = min(max_cells, length(cells)))))]
    copula_latent(fit, scores[[lv]], cells, family, zero, threads)
  })
  names(latent) <- names(scores)
  one <- function(v) if (is.null(group)) v[[1L]] else v
  structure(list(correlation = one(latent), score_correlation = one(scores), family = family,
                 zero_inflation = stats::setNames(zero, genes), group = group, genes = genes),
            class = "sceffects_nb_copula")
}

# The copula level of each cell: one level "all", or the values of column `group` of `data`.
copula_levels <- function(fit, group, data, arg, known = NULL) {
  if (is.null(group)) return(factor(rep("all", NROW(data))))
  if (!is.character(group) || length(group) != 1L || !group %in% names(data)) {
    stop(sprintf("`%s` must be the name of a column of the fit's metadata (or of `newdata`), e.g. one of %s.",
                 arg, name_list(names(fit$data))), call. = FALSE)
  }
  v <- data[[group]]
  if (anyNA(v)) stop(sprintf("`%s`: column %s has missing values.", arg, group), call. = FALSE)
  lv <- factor(as.character(v), levels = known %||% unique(as.character(v)))
  if (anyNA(lv)) {
    stop(sprintf("`%s`: column %s has levels without a copula (%s).", arg, group,
                 name_list(setdiff(unique(as.character(v)), known))), call. = FALSE)
  }
  lv
}

# Means, sizes (infinite for Poisson) of all genes at cells `cols`, as the fit predicts.
copula_marginals <- function(fit, cols, family) {
  eta <- t(fit$coefficients$mean) %*% t(fit$mean$x[cols, , drop = FALSE])
  mu <- exp(sweep(eta, 2L, fit$offset[cols], `+`))
  size <- if (family == "poisson") {
    matrix(Inf, nrow(mu), ncol(mu))
  } else {
    s <- exp(t(fit$coefficients$dispersion) %*% t(fit$dispersion$x[cols, , drop = FALSE]))
    s[fit$status == 4L & colSums(!is.na(fit$coefficients$dispersion)) == 0L, ] <- Inf
    s
  }
  storage.mode(mu) <- storage.mode(size) <- "double"
  dimnames(mu) <- dimnames(size) <- NULL
  list(mu = mu, size = size)
}

# Dense double counts of all genes at cells `cols` (one block of cells).
read_cells <- function(src, cols) {
  b <- src$data[, cols, drop = FALSE]
  if (!is.matrix(b)) b <- as.matrix(b)
  if (src$kind == "delayed") check_count_values(b, "`x`")
  storage.mode(b) <- "double"
  dimnames(b) <- NULL
  b
}

# Zero inflation per gene, genes read in blocks (the ML needs all cells of a gene).
copula_zero_inflation <- function(fit, src, block_size, threads) {
  cells <- seq_len(src$n_samples)
  chunks <- plan_chunks(src$n_features, block_size, delayed = src$kind == "delayed",
                        max_values = 2e7, n_samples = src$n_samples)
  m <- copula_marginals(fit, cells, "nb")
  unlist(lapply(chunks, function(rows) {
    rs_nb_zero_inflation(read_block(src, rows), m$mu[rows, , drop = FALSE], m$size[rows, , drop = FALSE], threads)
  }))
}

# Correlation of the normal scores per level, accumulated over blocks of cells.
copula_score_moments <- function(fit, src, family, zero, levels, block_size, seed, threads) {
  g <- src$n_features
  check_memory(8 * g * g * (nlevels(levels) + 1), sprintf("the copula of %d genes", g),
               "Select fewer genes (e.g. the most variable ones).")
  acc <- lapply(levels(levels), function(lv) list(n = 0, s = numeric(g), ss = matrix(0, g, g)))
  names(acc) <- levels(levels)
  for (cols in plan_chunks(src$n_samples, block_size)) {
    m <- copula_marginals(fit, cols, family)
    z <- rs_nb_normal_scores(read_cells(src, cols), m$mu, m$size, zero, min(cols) - 1L, seed, threads)
    for (lv in unique(as.character(levels[cols]))) {
      zl <- z[, levels[cols] == lv, drop = FALSE]
      acc[[lv]]$n <- acc[[lv]]$n + ncol(zl)
      acc[[lv]]$s <- acc[[lv]]$s + rowSums(zl)
      acc[[lv]]$ss <- acc[[lv]]$ss + tcrossprod(zl)
    }
  }
  lapply(acc, function(a) {
    if (a$n < 3) stop("`group`: every level needs at least 3 cells.", call. = FALSE)
    cv <- (a$ss - tcrossprod(a$s) / a$n) / (a$n - 1)
    sd <- sqrt(diag(cv))
    r <- cv / tcrossprod(sd)
    diag(r) <- 1
    dimnames(r) <- list(src$names, src$names)
    r
  })
}

# Latent correlation of one level: the expected score correlation sum_n rho^n S_n, with
# S_n the mean product of the genes' Hermite coefficients over `cells`, inverted per pair.
copula_latent <- function(fit, r, cells, family, zero, threads, n_terms = 12L) {
  g <- nrow(r)
  m <- copula_marginals(fit, cells, family)
  a <- rs_copula_hermite(m$mu, m$size, zero, n_terms, threads)
  nc <- length(cells)
  s <- do.call(cbind, lapply(seq_len(n_terms), function(n) {
    an <- a[, (n - 1L) * nc + seq_len(nc), drop = FALSE]
    tcrossprod(an) / nc
  }))
  out <- rs_copula_latent(unname(r), s, threads)
  # A gene (almost) constant at these cells carries no information: keep its scores' value.
  out[is.na(out)] <- r[is.na(out)]
  dimnames(out) <- dimnames(r)
  out
}

#' @export
print.sceffects_nb_copula <- function(x, ...) {
  cors <- if (is.list(x$correlation)) x$correlation else list(x$correlation)
  off <- unlist(lapply(cors, function(r) r[lower.tri(r)]))
  cat(sprintf("Gaussian copula of %d genes (%s marginals%s); latent gene-gene correlations from %.2f to %.2f (median |r| %.3f)\n",
              length(x$genes), x$family,
              if (is.null(x$group)) "" else sprintf(", one per level of %s: %d", x$group, length(cors)),
              min(off), max(off), stats::median(abs(off))))
  invisible(x)
}

# Lower Cholesky factor of a correlation matrix, nudged towards the identity when it is
# not positive definite (the per-pair latent correlations need not form one).
copula_factor <- function(r) {
  for (shrink in c(0, 1e-8, 1e-6, 1e-4, 1e-2, 0.05, 0.2)) {
    l <- tryCatch(t(chol((1 - shrink) * r + shrink * diag(nrow(r)))), error = function(e) NULL)
    if (!is.null(l)) return(l)
  }
  e <- eigen(r, symmetric = TRUE)
  p <- e$vectors %*% (pmax(e$values, 1e-6) * t(e$vectors))
  t(chol(stats::cov2cor(p)))
}

# Counts of `nsim` data sets drawn by the core with the copula's marginals and correlation
# (per level of its group for the cells of that level).
simulate_copula <- function(object, copula, mu, size, newdata, nsim, seed, threads) {
  if (!inherits(copula, "sceffects_nb_copula")) stop("`copula` must be made by nb_copula().", call. = FALSE)
  if (!identical(copula$genes, rownames(mu))) {
    stop("`copula` was estimated for other genes than the fit's: use nb_copula() on this fit.", call. = FALSE)
  }
  if (anyNA(mu) || anyNA(size)) stop("`object` has genes without a fit: refit without them to use a copula.", call. = FALSE)
  cors <- if (is.null(copula$group)) list(all = copula$correlation) else copula$correlation
  levels <- copula_levels(object, copula$group, newdata %||% object$data, "copula", known = names(cors))
  l <- do.call(cbind, lapply(cors, copula_factor))
  if (copula$family == "poisson") size[] <- Inf
  seed <- resolve_seed(seed)
  threads <- resolve_threads(threads)
  storage.mode(mu) <- storage.mode(size) <- "double"
  lapply(seq_len(nsim) - 1L, function(d) {
    y <- rs_nb_copula_simulate(mu, size, unname(copula$zero_inflation), l, as.integer(levels) - 1L, seed, d, threads)
    dimnames(y) <- dimnames(mu)
    y
  })
}

# Differential abundance and expression on a manifold, against a direct dense
# implementation of reference/kompot.md written here in plain R.

# --- The reference, dense and literal ------------------------------------------------

ref_matern <- function(a, b, ls) {
  r2 <- outer(rowSums(a^2), rowSums(b^2), "+") - 2 * a %*% t(b)
  rho <- sqrt(5) * sqrt(pmax(r2 + 1e-12, 0)) / ls
  (1 + rho + rho^2 / 3) * exp(-rho)
}

ref_nn <- function(x) {
  d <- as.matrix(stats::dist(x))
  diag(d) <- Inf
  r <- apply(d, 1, min)
  r[r <= 0] <- min(r[r > 0])
  r
}

# Mellon's density of cells `x` with landmarks `u`, at `at`: normalised log density and
# variance (MAP by plain Newton from the ridge start).
ref_density <- function(x, u, at, d, ls) {
  n <- nrow(x); m <- nrow(u)
  r <- ref_nn(x)
  mle <- lgamma(d / 2 + 1) - d / 2 * log(pi) - d * log(r)
  mu <- unname(stats::quantile(mle, 0.01, type = 7)) - 10
  lp <- t(chol(ref_matern(u, u, ls) + 1e-6 * diag(m)))
  phi <- t(forwardsolve(lp, t(ref_matern(x, u, ls))))
  z <- solve(crossprod(phi) + diag(m), crossprod(phi, mle - mu))
  for (it in 1:200) {
    lam <- drop(exp(phi %*% z + mu - mle))
    g <- z - crossprod(phi, 1 - lam)
    step <- solve(diag(m) + crossprod(phi * sqrt(lam)), g)
    z <- z - step
    if (max(abs(step)) < 1e-14) break
  }
  lam <- drop(exp(phi %*% z + mu - mle))
  s2 <- 1 / pmax(1 + colSums(phi^2 * lam), 1e-8)
  a <- forwardsolve(lp, t(ref_matern(at, u, ls)))
  k0 <- ref_matern(matrix(0, 1, 1), matrix(0, 1, 1), ls)[1, 1]
  list(log_density = drop(mu + crossprod(a, z)) - log(n),
       variance = k0 - colSums(a^2) + colSums(a^2 * s2), mu = mu)
}

# kompot's DE for genes `y` (genes x cells): mean_lfc over all cells and the Mahalanobis
# distance, with the sample variance by an explicit Cholesky per gene.
ref_de <- function(emb, y, cells, samples, u, ls) {
  m <- nrow(u)
  kuu <- ref_matern(u, u, ls)
  lp <- t(chol(kuu + 1e-6 * diag(m)))
  a_u <- forwardsolve(lp, kuu)
  fit <- function(cc) {
    a <- forwardsolve(lp, t(ref_matern(emb[cc, , drop = FALSE], u, ls)))
    lb <- t(chol(diag(m) + a %*% t(a)))
    w <- backsolve(t(lp), backsolve(t(lb), forwardsolve(lb, a %*% t(y[, cc, drop = FALSE]))))
    cvec <- forwardsolve(lb, a_u)
    list(w = w, sigma = kuu - crossprod(a_u) + crossprod(cvec))
  }
  f1 <- fit(cells[[1]]); f2 <- fit(cells[[2]])
  dw <- f2$w - f1$w
  mean_lfc <- colMeans(ref_matern(emb, u, ls) %*% dw)
  delta <- kuu %*% dw
  cov <- f1$sigma + f2$sigma
  if (is.null(samples)) {
    share <- sum(diag(cov)) / sum(abs(cov))
    dist <- if (m > 10 && share > 0.95) {
      sqrt(colSums(delta^2 / pmax(diag(cov), 1e-8)))
    } else {
      sqrt(colSums(forwardsolve(t(chol(cov + 1e-8 * diag(m))), delta)^2))
    }
    return(list(mean_lfc = mean_lfc, mahalanobis = dist, shortcut = m > 10 && share > 0.95))
  }
  dev <- lapply(samples, function(ss) {
    ws <- lapply(ss, function(cc) fit(cc)$w)
    wbar <- Reduce(`+`, ws) / length(ws)
    lapply(ws, function(w) kuu %*% (w - wbar) / sqrt(length(ws) - 1))
  })
  dev <- unlist(dev, recursive = FALSE)
  dist <- vapply(seq_len(nrow(y)), function(g) {
    cg <- cov + Reduce(`+`, lapply(dev, function(f) tcrossprod(f[, g])))
    lg <- t(chol(cg + 1e-8 * diag(m)))
    sqrt(sum(forwardsolve(lg, delta[, g])^2))
  }, 0)
  list(mean_lfc = mean_lfc, mahalanobis = dist)
}

ref_pava_decreasing <- function(y) -stats::isoreg(-y)$yf

ref_monotone_density <- function(d, grid) {
  s <- c(-d, d)
  h <- length(s)^(-1 / 5) * stats::sd(s)
  kde <- 2 * vapply(grid, function(g) mean(stats::dnorm(g, s, h)), 0)
  f <- pmax(ref_pava_decreasing(kde), 0)
  f / sum(diff(grid) * (utils::head(f, -1) + utils::tail(f, -1)) / 2)
}

ref_null_fdr <- function(real, null) {
  p <- vapply(real, function(v) mean(null >= v), 0)
  p[p == 0] <- min(p[p > 0])
  grid <- seq(0, 1.05 * max(c(real, null)), length.out = 500)
  f0 <- ref_monotone_density(null, grid)
  fm <- ref_monotone_density(real, grid)
  raw <- ifelse(fm > 1e-10 * max(fm), pmin(pmax(f0 / fm, 0), 1), 1)
  lfdr <- stats::approx(grid, ref_pava_decreasing(raw), xout = real, yleft = 1, yright = 0)$y
  list(p_value = p, local_fdr = lfdr)
}

# --- Data -----------------------------------------------------------------------------

small <- simulate_manifold(n_cells = 240, n_genes = 12, n_dims = 3, n_de_genes = 3, n_odd_genes = 3, seed = 3)
emb <- SingleCellExperiment::reducedDim(small, "DM")
cells <- list(which(small$condition == "young"), which(small$condition == "old"))
u <- emb[seq(1, 240, by = 8), ]
rownames(u) <- NULL

# Genes centred by their means in the strata of cell state that diff_expression(seed =
# seed) uses with null = "cell_state" (base R: rowsum over the strata).
ref_centred <- function(y, emb, cells, seed) {
  cc <- unlist(cells)
  st <- sceffects:::rs_manifold_strata(emb, cc, 30L, 20L, seed, 1L)
  means <- t(rowsum(t(y[, cc, drop = FALSE]), st)) / rep(tabulate(st), each = nrow(y))
  y[, cc] <- y[, cc, drop = FALSE] - means[, st, drop = FALSE]
  y
}

test_that("densities, variances, z and tail probabilities equal the dense reference", {
  res <- diff_abundance(emb, small$condition, "young", "old", method = "kompot", landmarks = u, dimension = 2.3,
                        length_scale = 0.6)
  r1 <- ref_density(emb[cells[[1]], ], u, emb, 2.3, 0.6)
  r2 <- ref_density(emb[cells[[2]], ], u, emb, 2.3, 0.6)
  expect_equal(res$da_log_density_young, r1$log_density, tolerance = 1e-8)
  expect_equal(res$da_log_density_old, r2$log_density, tolerance = 1e-8)
  expect_equal(attr(res, "fit")$variance, r1$variance + r2$variance, tolerance = 1e-8)
  expect_equal(attr(res, "fit")$mu, c(r1$mu, r2$mu), tolerance = 1e-10)
  lfc <- r2$log_density - r1$log_density
  z <- lfc / sqrt(r1$variance + r2$variance + 1e-12)
  expect_equal(res$da_lfc, lfc, tolerance = 1e-8)
  expect_equal(res$da_lfc_zscore, z, tolerance = 1e-8)
  expect_equal(res$da_neg_log10_ptp, -stats::pnorm(-abs(z), log.p = TRUE) / log(10), tolerance = 1e-8)
  dir <- ifelse(-stats::pnorm(-abs(z), log.p = TRUE) / log(10) > -log10(0.05) & abs(lfc) > 1,
                ifelse(lfc > 0, "up", "down"), "neutral")
  expect_equal(as.character(res$da_direction), dir)
})

test_that("sample variance of densities is the variance of per-sample log densities", {
  res <- diff_abundance(emb, small$condition, "young", "old", method = "kompot", sample = small$sample,
                        landmarks = u, dimension = 2.3, length_scale = 0.6)
  v <- 0
  for (c in c("young", "old")) {
    ld <- vapply(sort(unique(small$sample[small$condition == c])), function(s) {
      ref_density(emb[small$sample == s, ], u, emb, 2.3, 0.6)$log_density
    }, numeric(nrow(emb)))
    v <- v + ref_density(emb[small$condition == c, ], u, emb, 2.3, 0.6)$variance +
      apply(ld, 1, stats::var)
  }
  expect_equal(attr(res, "fit")$variance, v, tolerance = 1e-8)
  expect_true("da_lfc_zscore_sample_var" %in% names(res))
})

test_that("heuristics: length scale and fractal dimension as Mellon's", {
  res <- diff_abundance(emb, small$condition, "young", "old", method = "kompot", landmarks = u)
  fit <- attr(res, "fit")
  r <- lapply(cells, function(cc) ref_nn(emb[cc, ]))
  expect_equal(fit$length_scale, vapply(r, function(v) 10 * exp(mean(log(v)) + 3), 0), tolerance = 1e-10)
  # Fewer than 500 cells per condition: every cell is a query; slope of log rank on log distance.
  frac <- vapply(cells, function(cc) {
    x <- emb[cc, ]
    d <- as.matrix(stats::dist(x))
    mean(apply(d, 1, function(row) {
      nb <- order(row)[1:10]
      dd <- sort(as.vector(stats::dist(x[nb, ])))
      stats::coef(stats::lm(log(seq_along(dd)) ~ log(dd)))[2]
    }))
  }, 0)
  expect_equal(fit$dimension, frac, tolerance = 1e-8)
})

test_that("mean log fold changes and Mahalanobis distances equal the dense reference", {
  # kompot's statistic: null = "cells" leaves the genes as they are.
  y <- as.matrix(SummarizedExperiment::assay(small, "logcounts"))
  res <- diff_expression(small, "condition", "young", "old", landmarks = u, length_scale = 1.7,
                         null_genes = 0, fold_change = TRUE, null = "cells")
  ref <- ref_de(emb, y, cells, NULL, u, 1.7)
  expect_equal(res$mean_lfc, ref$mean_lfc, tolerance = 1e-8)
  expect_equal(res$mahalanobis, ref$mahalanobis, tolerance = 1e-8)
  expect_equal(unname(rowMeans(attr(res, "fold_change"))), ref$mean_lfc, tolerance = 1e-8)
  expect_true(all(is.na(res$p_value)))
  # The other path of the shared covariance (diagonal shortcut or Cholesky) too.
  res_ls <- diff_expression(small, "condition", "young", "old", landmarks = u, length_scale = 0.01,
                            null_genes = 0, null = "cells")
  ref_ls <- ref_de(emb, y, cells, NULL, u, 0.01)
  expect_true(attr(res_ls, "diagonal_shortcut"))
  expect_false(identical(ref$shortcut, ref_ls$shortcut))
  expect_equal(res_ls$mahalanobis, ref_ls$mahalanobis, tolerance = 1e-8)
  # The default (null = "cell_state"): the same statistic of the genes centred by their
  # stratum means, with or without null genes.
  for (n0 in c(0, 30)) {
    cen <- diff_expression(small, "condition", "young", "old", landmarks = u, length_scale = 1.7,
                           null_genes = n0, seed = 42)
    ref_c <- ref_de(emb, ref_centred(y, emb, cells, 42), cells, NULL, u, 1.7)
    expect_equal(cen$mahalanobis, ref_c$mahalanobis, tolerance = 1e-8)
    expect_equal(cen$mean_lfc, ref_c$mean_lfc, tolerance = 1e-8)
  }
  expect_false(isTRUE(all.equal(cen$mahalanobis, res$mahalanobis, tolerance = 1e-3)))
})

test_that("low-rank sample-variance distance equals the per-gene Cholesky form", {
  y <- as.matrix(SummarizedExperiment::assay(small, "logcounts"))
  res <- diff_expression(small, "condition", "young", "old", sample = "sample", landmarks = u,
                         length_scale = 1.7, null_genes = 0, null = "cells")
  samples <- lapply(c("young", "old"), function(c) {
    ss <- sort(unique(small$sample[small$condition == c]))
    lapply(ss, function(s) which(small$sample == s))
  })
  ref <- ref_de(emb, y, cells, samples, u, 1.7)
  expect_equal(res$mahalanobis, ref$mahalanobis, tolerance = 1e-8)
  expect_equal(res$mean_lfc, ref$mean_lfc, tolerance = 1e-8)
})

test_that("null-gene p-values and local FDR equal the reference", {
  set.seed(5)
  null <- abs(stats::rnorm(300)) * 2
  real <- c(abs(stats::rnorm(200)) * 2, 6 + stats::rexp(40))
  got <- sceffects:::rs_manifold_null_fdr(real, null, 1L)
  ref <- ref_null_fdr(real, null)
  expect_equal(got$p_value, ref$p_value, tolerance = 1e-12)
  expect_equal(got$local_fdr, ref$local_fdr, tolerance = 1e-8)
})

sim <- simulate_manifold(n_cells = 1200, n_genes = 120, n_de_genes = 12, n_odd_genes = 12, seed = 11)
truth <- SummarizedExperiment::rowData(sim)

test_that("planted genes are found; one-replicate genes are demoted by sample variance", {
  plain <- diff_expression(sim, "condition", "young", "old", seed = 42, n_landmarks = 150, null_genes = 300)
  sv <- diff_expression(sim, "condition", "young", "old", seed = 42, sample = "sample", n_landmarks = 150,
                        null_genes = 300)
  auc <- function(a, b) mean(outer(a, b, ">"))
  null_genes <- !truth$de & !truth$odd_replicate
  expect_gt(auc(plain$mahalanobis[truth$de], plain$mahalanobis[null_genes]), 0.8)
  expect_gt(auc(sv$mahalanobis[truth$de], sv$mahalanobis[null_genes]), 0.8)
  # Calls (BH of the fitted null's p) from null genes permuted within strata of cell state
  # (the old null across all cells also called unplanted trajectory genes).
  expect_equal(plain$is_de, !is.na(plain$fdr) & plain$fdr < 0.05)
  expect_gte(mean(plain$is_de[truth$de]), 0.5)
  expect_lte(mean(plain$is_de[null_genes]), 0.05)
  # One odd replicate: sample variance lowers these genes more than the planted ones.
  rel <- sv$mahalanobis / plain$mahalanobis
  expect_lt(stats::median(rel[truth$odd_replicate]), stats::median(rel[truth$de]))
  expect_lt(auc(sv$mahalanobis[truth$odd_replicate], sv$mahalanobis[truth$de]),
            auc(plain$mahalanobis[truth$odd_replicate], plain$mahalanobis[truth$de]))
  expect_lte(mean(sv$is_de[truth$odd_replicate]), mean(plain$is_de[truth$odd_replicate]))
  expect_equal(sign(plain$mean_lfc[truth$de]), sign(truth$effect[truth$de]))
})

test_that("planted abundance changes are found; one replicate's cluster is demoted", {
  # A length scale that resolves the small cluster carried by one replicate.
  da <- diff_abundance(sim, "condition", "young", "old", method = "kompot", seed = 42, sample = "sample", n_landmarks = 150, ls_factor = 2)
  da <- diff_abundance(da, "condition", "young", "old", method = "kompot", seed = 42, n_landmarks = 150, ls_factor = 2)
  late <- da$t > 0.8 & !da$odd_cluster
  early <- da$t < 0.2
  expect_gt(mean(da$da_lfc[late]), mean(da$da_lfc[early]) + 1)
  expect_true(mean(da$da_direction[early] == "down") > 0.5)
  expect_true(all(abs(da$da_lfc_zscore_sample_var) <= abs(da$da_lfc_zscore) + 1e-12))
  expect_gt(mean(da$da_direction[da$odd_cluster] == "up"), 0.8)
  expect_lt(mean(da$da_direction_sample_var[da$odd_cluster] == "up"), 0.2)
  ratio <- da$da_lfc_zscore_sample_var / da$da_lfc_zscore
  # Sample variance shrinks z in the odd cluster clearly more than elsewhere (0.13-0.5 of
  # the shrinkage elsewhere over landmark seeds 1-3).
  expect_lt(stats::median(ratio[da$odd_cluster]), 0.6 * stats::median(ratio[!da$odd_cluster]))
  expect_s3_class(da$da_direction, "factor")
})

test_that("p-values are uniform under the null", {
  set.seed(2)
  n <- 800
  emb0 <- matrix(stats::rnorm(n * 3), n, 3, dimnames = list(paste0("c", 1:n), NULL))
  y <- matrix(log1p(stats::rpois(150 * n, 2)), 150, n, dimnames = list(paste0("g", 1:150), paste0("c", 1:n)))
  sce0 <- SingleCellExperiment::SingleCellExperiment(list(logcounts = y),
    colData = S4Vectors::DataFrame(group = sample(c("a", "b"), n, TRUE)),
    reducedDims = list(PCA = emb0))
  res <- diff_expression(sce0, "group", "a", "b", seed = 42, n_landmarks = 80, null_genes = 600)
  expect_gt(suppressWarnings(stats::ks.test(res$p_value, "punif")$p.value), 0.01)
})

# The scaled F of the fitted null by maximum likelihood, with R's df() and optim().
ref_scaled_f <- function(t) {
  t <- t[is.finite(t) & t > 0]
  nll <- function(th) {
    v <- -sum(stats::df(t / exp(th[3]), exp(th[1]), exp(th[2]), log = TRUE) - th[3])
    if (is.finite(v)) v else 1e300
  }
  fit <- stats::optim(c(log(4), log(20), log(mean(t))), nll, control = list(maxit = 5000, reltol = 1e-14))
  fit <- stats::optim(fit$par, nll, method = "BFGS", control = list(reltol = 1e-14))
  list(df1 = exp(fit$par[1]), df2 = exp(fit$par[2]), scale = exp(fit$par[3]), log_lik = -fit$value)
}

test_that("the fitted null is the ML scaled F of distance^2 / variance (R's optim and df), p from pf", {
  set.seed(8)
  v0 <- stats::runif(400, 0.2, 3)
  d0 <- sqrt(v0 * 1.4 * stats::rf(400, 5, 12))
  v <- stats::runif(50, 0.2, 3)
  d <- sqrt(v * c(1.4 * stats::rf(45, 5, 12), 60, 80, 120, 200, 400))
  got <- sceffects:::rs_manifold_null_tail(d, v, d0, v0)
  ref <- ref_scaled_f(d0^2 / v0)
  expect_equal(got$log_lik, ref$log_lik, tolerance = 1e-6)
  expect_equal(c(got$df1, got$df2, got$scale), c(ref$df1, ref$df2, ref$scale), tolerance = 1e-3)
  expect_equal(got$log_p, stats::pf(d^2 / v / got$scale, got$df1, got$df2, lower.tail = FALSE, log.p = TRUE),
               tolerance = 1e-10)
  expect_error(sceffects:::rs_manifold_null_tail(d, v, d0[1:10], v0[1:10]), "at least 20 null genes")
})

test_that("diff_expression p-values: the fitted null of the null genes, empirical p and local FDR kept", {
  # The null genes' distances and variances, as diff_expression() hands them to the fit.
  box <- new.env()
  suppressMessages(trace("rs_manifold_null_tail", where = asNamespace("sceffects"), print = FALSE,
                         tracer = bquote(assign("nulls", list(d = null, v = null_variance), envir = .(box)))))
  res <- diff_expression(sim, "condition", "young", "old", seed = 42, n_landmarks = 60, null_genes = 200)
  suppressMessages(untrace("rs_manifold_null_tail", where = asNamespace("sceffects")))
  nulls <- box$nulls
  y <- as.matrix(SummarizedExperiment::assay(sim, "logcounts"))
  # Null = "cell_state" (default): the variance of the stratum-centred gene.
  y <- ref_centred(y, SingleCellExperiment::reducedDim(sim, "DM"),
                   lapply(c("young", "old"), function(c) which(sim$condition == c)), 42)
  var_g <- unname(apply(y[, sim$condition %in% c("young", "old")], 1, stats::var))
  fit <- attr(res, "null_fit")
  ref_fit <- ref_scaled_f(nulls$d^2 / nulls$v)
  # Here the nulls are a scaled chi-square: df2 runs off to its cap (optim's further still).
  expect_equal(c(fit$df1, fit$scale), c(ref_fit$df1, ref_fit$scale), tolerance = 1e-3)
  expect_gte(fit$log_lik, ref_fit$log_lik - 1e-4)
  expect_true(fit$df2 > 1e4 && ref_fit$df2 > 1e4 || abs(fit$df2 / ref_fit$df2 - 1) < 1e-3)
  expect_equal(res$log_p, stats::pf(res$mahalanobis^2 / var_g / fit$scale, fit$df1, fit$df2,
                                    lower.tail = FALSE, log.p = TRUE), tolerance = 1e-10)
  expect_equal(res$p_value, exp(res$log_p))
  expect_equal(res$fdr, stats::p.adjust(res$p_value, "BH"))
  ref <- ref_null_fdr(res$mahalanobis, nulls$d)
  expect_equal(res$p_empirical, ref$p_value, tolerance = 1e-12)
  expect_equal(res$local_fdr, ref$local_fdr, tolerance = 1e-8)
  expect_match(attr(res, "fdr_note"), "fitted")
  few <- diff_expression(sim, "condition", "young", "old", seed = 42, n_landmarks = 60, null_genes = 10)
  expect_true(all(is.na(few$p_value)) && !anyNA(few$p_empirical))
  expect_match(attr(few, "fdr_note"), "at least 20")
})

test_that("calibration: uniform p under a null; planted genes far below the empirical floor; volcano spreads", {
  set.seed(4)
  n <- 900
  emb0 <- matrix(stats::rnorm(n * 4), n, 4, dimnames = list(paste0("c", 1:n), NULL))
  # Genes of different means (hence variances), none related to cell state or condition.
  mu <- rep(c(0.3, 1, 4), length.out = 240)
  y <- matrix(log1p(stats::rpois(240 * n, mu)), 240, n, dimnames = list(paste0("g", 1:240), rownames(emb0)))
  sce0 <- SingleCellExperiment::SingleCellExperiment(list(logcounts = y),
    colData = S4Vectors::DataFrame(group = sample(c("a", "b"), n, TRUE)), reducedDims = list(PCA = emb0))
  res <- diff_expression(sce0, "group", "a", "b", seed = 7, n_landmarks = 60, null_genes = 500)
  expect_gt(stats::ks.test(res$p_value, "punif")$p.value, 0.01)
  deciles <- table(cut(res$p_value, seq(0, 1, 0.1)))
  expect_true(all(deciles >= 8 & deciles <= 42))
  expect_lte(sum(res$p_value < 0.01), 8)
  # Planted genes (simulate_manifold, shifted in every replicate): median p below the
  # empirical floor 1 / 301, a third of them 30x below it (the null genes, permuted within
  # strata of cell state, keep the trajectory, so the null is wider than across all cells).
  truth <- SummarizedExperiment::rowData(sim)
  de <- diff_expression(sim, "condition", "young", "old", seed = 42, n_landmarks = 150, null_genes = 300)
  expect_lt(stats::median(de$p_value[truth$de]), 1 / 301)
  expect_gte(sum(de$p_value[truth$de] < 1 / 301 / 30), 4)
  # With the null across all cells, the median planted gene is 1000x below the floor.
  old <- diff_expression(sim, "condition", "young", "old", seed = 42, n_landmarks = 150, null_genes = 300,
                         null = "cells")
  expect_lt(stats::median(old$p_value[truth$de]), 1e-3 / 301)
  expect_true(all(de$p_empirical >= 1 / 300))
  p <- plot_volcano(de)
  built <- ggplot2::ggplot_build(p)
  expect_gt(length(unique(round(built$data[[1]]$y, 6))), 100)
  expect_gt(diff(range(built$data[[1]]$y)), 5)
})

test_that("calibration on genes that vary along the manifold without a condition effect (issue 15)", {
  # simulate_manifold(): every gene follows the trajectory; the unplanted ones have no
  # condition effect, but the conditions sit at different places along it. Null genes
  # permuted across all cells lose that dependence (p < 0.1 for about half of these genes);
  # the default centres every gene by its stratum means and permutes null genes within
  # the strata of similar cell state.
  unplanted <- !truth$de & !truth$odd_replicate
  # Without `sample`, the samples' own shifts (sd 0.05 on the log mean) are real
  # differences between the two conditions' cells and some are called (about 20% at
  # p < 0.1 here and in inst/bench/de-null.R; calibrated with `sample`, below).
  res <- diff_expression(sim, "condition", "young", "old", seed = 42, n_landmarks = 150, null_genes = 300)
  p <- res$p_value[unplanted]
  expect_lte(mean(p < 0.05), 0.15)
  expect_lte(mean(p < 0.1), 0.3)
  expect_lte(mean(res$p_empirical[unplanted] < 0.1), 0.3)
  expect_match(attr(res, "fdr_note"), "within strata of similar cell state")
  expect_identical(attr(res, "null_permutation", exact = TRUE), "cell_state")
  # The planted genes rank first and pass BH 10% (the uncentred statistic with the same
  # null passed none at 3,000 cells: inst/bench/RESULTS.md).
  auc <- function(a, b) mean(outer(a, b, ">"))
  expect_gt(auc(-res$log_p[truth$de], -res$log_p[unplanted]), 0.9)
  expect_gte(mean(res$fdr[truth$de] < 0.1), 0.8)
  # The old null (across all cells) on the same genes: far too many small p; kompot's
  # statistic of the genes as they are.
  old <- diff_expression(sim, "condition", "young", "old", seed = 42, n_landmarks = 150, null_genes = 300,
                         null = "cells")
  expect_gt(mean(old$p_value[unplanted] < 0.1), 0.3)
  expect_false(isTRUE(all.equal(old$mahalanobis, res$mahalanobis, tolerance = 1e-3)))
  expect_match(attr(old, "fdr_note"), "across all cells")
})

test_that("with `sample`, genes shifted per sample (no condition effect) are calibrated; planted ones pass BH", {
  # simulate_manifold() shifts every gene in every sample (sd 0.05 on the log mean): no
  # condition effect, but the two conditions' cells differ by the samples' shifts. Null
  # genes carry their source gene's per-sample offsets (within-condition centred), so the
  # null has the real genes' between-sample spread.
  unplanted <- !truth$de & !truth$odd_replicate
  sv <- diff_expression(sim, "condition", "young", "old", seed = 42, sample = "sample", n_landmarks = 150,
                        null_genes = 300)
  p <- sv$p_value[unplanted]
  expect_lte(mean(p < 0.05), 0.07)
  expect_lte(mean(p < 0.1), 0.13)
  expect_gt(suppressWarnings(stats::ks.test(p, "punif")$p.value), 0.01)
  expect_gte(mean(sv$fdr[truth$de] < 0.1), 0.8)
  # Genes shifted in one replicate only are not condition effects: few pass BH 10%.
  expect_lte(mean(sv$fdr[truth$odd_replicate] < 0.1), 0.2)
  # The old null on the same data: far too many small p.
  old <- diff_expression(sim, "condition", "young", "old", seed = 42, sample = "sample", n_landmarks = 150,
                         null_genes = 300, null = "cells")
  expect_gt(mean(old$p_value[unplanted] < 0.1), 0.3)
})

test_that("null genes are permuted within the strata, which are the nearest k-means centres", {
  cc <- which(sim$condition %in% c("young", "old"))
  emb <- SingleCellExperiment::reducedDim(sim, "DM")
  strata <- sceffects:::rs_manifold_strata(emb, cc, 30L, 100L, 5, 1L)
  expect_length(strata, length(cc))
  # Reference: each cell's nearest of the k-means centres (R's distances), numbered by
  # first appearance.
  centres <- sceffects:::rs_manifold_landmarks(emb, cc, round(length(cc) / 30), 100L, 5, 1L)
  d2 <- outer(rowSums(emb[cc, ]^2), rowSums(centres^2), "+") - 2 * emb[cc, ] %*% t(centres)
  nearest <- max.col(-d2, ties.method = "first")
  expect_identical(strata, match(nearest, unique(nearest)))
  expect_true(stats::median(table(strata)) >= 15 && stats::median(table(strata)) <= 45)
  # gene_block(): every gene is centred by its stratum means (cells outside the two
  # conditions untouched), and each null gene's centred values are a permutation within
  # every stratum.
  y <- as.matrix(SummarizedExperiment::assay(sim, "logcounts")[1:6, ])
  input <- list(cells = list(cc[seq(1, length(cc), 2)], cc[seq(2, length(cc), 2)]))
  input$strata <- sceffects:::rs_manifold_strata(emb, unlist(input$cells), 30L, 100L, 5, 1L)
  src <- sceffects:::numeric_features(y, "x")
  cells <- unlist(input$cells)
  yc <- y
  means <- t(rowsum(t(y[, cells]), input$strata)) / rep(tabulate(input$strata), each = 6)
  yc[, cells] <- y[, cells] - means[, input$strata]
  expect_equal(sceffects:::gene_block(src, list(rows = 1:6, null = NULL), input), yc, tolerance = 1e-12)
  block <- sceffects:::gene_block(src, list(rows = 1:6, null = 101:106), input)
  for (g in 1:6) {
    for (s in unique(input$strata)) {
      at <- cells[input$strata == s]
      expect_equal(sort(unname(block[g, at])), sort(unname(yc[g, at])), tolerance = 1e-12)
    }
  }
  expect_gt(mean(abs(block[, cells] - yc[, cells]) > 1e-9), 0.2)
  expect_identical(sceffects:::gene_block(src, list(rows = 1:6, null = 101:106), input), block)
  # With samples: the same permutation plus the source gene's per-sample offsets (sample
  # means of the centred gene minus their condition's mean, times sqrt(m / (m - 1)),
  # shrunk by the cells' noise in a sample mean), each moved to a random sample with a
  # random sign.
  sam <- lapply(input$cells, function(c) split(c, sim$sample[c]))
  with_s <- input
  with_s$sample_cells <- sceffects:::de_sample_cells(sam)
  block_s <- sceffects:::gene_block(src, list(rows = 1:6, null = 101:106), with_s)
  added <- block_s - block
  flat <- unlist(sam, recursive = FALSE)
  for (g in 1:6) {
    per <- vapply(flat, function(i) added[g, i[1]], 0)
    for (j in seq_along(flat)) expect_equal(unname(added[g, flat[[j]]]), rep(per[[j]], length(flat[[j]])))
    o <- vapply(flat, function(i) mean(yc[g, i]), 0)
    ref <- unlist(lapply(1:2, function(k) {
      ss <- sam[[k]]
      v <- o[rep(1:2, lengths(sam)) == k]
      within <- sum(vapply(ss, function(i) sum((yc[g, i] - mean(yc[g, i]))^2), 0)) / sum(lengths(ss) - 1)
      shrink <- sqrt(max(0, 1 - within * mean(1 / lengths(ss)) / stats::var(v)))
      (v - mean(v)) * sqrt(length(v) / (length(v) - 1)) * shrink
    }))
    expect_equal(sort(abs(unname(per))), sort(abs(unname(ref))), tolerance = 1e-10)
  }
  expect_gt(mean(abs(added[, cells]) > 0), 0.2)
  old <- sceffects:::gene_block(src, list(rows = 1:6, null = 101:106), input[c("cells")])
  expect_identical(sort(unname(old[1, cells])), sort(unname(y[1, cells])))
  # Across all cells, values move between strata.
  moved <- vapply(unique(input$strata), function(s) {
    at <- cells[input$strata == s]
    !identical(sort(unname(old[1, at])), sort(unname(y[1, at])))
  }, TRUE)
  expect_gt(mean(moved), 0.5)
})

test_that("add_results puts per-cell fold changes in an assay; the user's object is unchanged", {
  de <- diff_expression(sim, "condition", "young", "old", seed = 42, n_landmarks = 60, null_genes = 30,
                        features = c(7, 3), fold_change = TRUE)
  sim0 <- sim
  out <- add_results(sim, de, prefix = "de")
  expect_identical(sim, sim0)
  expect_true("de_fold_change" %in% SummarizedExperiment::assayNames(out))
  fc <- SummarizedExperiment::assay(out, "de_fold_change")
  expect_identical(dimnames(fc), dimnames(sim))
  expect_equal(fc[c(7, 3), ], attr(de, "fold_change"), ignore_attr = TRUE)
  expect_equal(unname(rowMeans(fc[c(7, 3), ])), de$mean_lfc, tolerance = 1e-8)
  expect_true(all(is.na(fc[-c(7, 3), ])))
  expect_equal(SummarizedExperiment::rowData(out)$de_p_value[c(7, 3)], de$p_value)
  expect_identical(SummarizedExperiment::assay(out, "logcounts"), SummarizedExperiment::assay(sim, "logcounts"))
  # Without fold changes, no assay.
  plain <- diff_expression(sim, "condition", "young", "old", seed = 42, n_landmarks = 60, null_genes = 0, features = 1:3)
  expect_identical(SummarizedExperiment::assayNames(add_results(sim, plain, "de")), "logcounts")
  expect_error(add_results(sim[, 1:100], de, "de"), "`x` must have the cells")
})

test_that("results do not depend on threads; sparse and dense agree; genes subset", {
  a <- diff_expression(sim, "condition", "young", "old", seed = 42, n_landmarks = 60, null_genes = 50, threads = 1)
  b <- diff_expression(sim, "condition", "young", "old", seed = 42, n_landmarks = 60, null_genes = 50, threads = 2,
                       block_size = 17)
  expect_equal(a$mahalanobis, b$mahalanobis, tolerance = 1e-10)
  expect_equal(a$local_fdr, b$local_fdr, tolerance = 1e-10)
  dense <- sim
  SummarizedExperiment::assay(dense, "logcounts") <- as.matrix(SummarizedExperiment::assay(sim, "logcounts"))
  d <- diff_expression(dense, "condition", "young", "old", seed = 42, n_landmarks = 60, null_genes = 50)
  expect_equal(a$mahalanobis, d$mahalanobis, tolerance = 1e-10)
  s <- diff_expression(sim, "condition", "young", "old", seed = 42, n_landmarks = 60, null_genes = 0,
                       features = rownames(sim)[c(5, 2)])
  expect_equal(s$feature, rownames(sim)[c(5, 2)])
  expect_equal(s$mahalanobis, a$mahalanobis[c(5, 2)], tolerance = 1e-10)
})

test_that("BiocParallel backends give the same results", {
  skip_if_not_installed("BiocParallel")
  a <- diff_expression(sim, "condition", "young", "old", seed = 42, n_landmarks = 60, null_genes = 50, block_size = 40)
  b <- diff_expression(sim, "condition", "young", "old", seed = 42, n_landmarks = 60, null_genes = 50, block_size = 40,
                       BPPARAM = BiocParallel::MulticoreParam(2))
  expect_equal(a$mahalanobis, b$mahalanobis, tolerance = 1e-12)
  expect_equal(a$local_fdr, b$local_fdr, tolerance = 1e-12)
})

test_that("constant genes give NA rows with a reason", {
  x <- small
  SummarizedExperiment::assay(x, "logcounts")[2, ] <- 0
  res <- diff_expression(x, "condition", "young", "old", landmarks = u, length_scale = 1.7, null_genes = 20)
  expect_true(is.na(res$mahalanobis[2]))
  expect_match(res$reason[2], "constant")
  expect_false(anyNA(res$mahalanobis[-2]))
})

test_that("dry_run prints a plan and computes nothing", {
  expect_output(plan <- diff_expression(sim, "condition", "young", "old", sample = "sample",
                                        dry_run = TRUE), "plan")
  expect_s3_class(plan, "sceffects_de_plan")
  expect_gt(plan$peak_gib, 0)
})

test_that("bad input stops with a message naming the argument", {
  expect_error(diff_expression(emb, "condition", "young", "old"), "`x`")
  expect_error(diff_abundance(small, "nope", "young", "old"), "`groupby`")
  expect_error(diff_abundance(small, "condition", "young", "adult"), "`condition2`")
  expect_error(diff_abundance(small, "condition", "young", "young"), "differ")
  expect_error(diff_abundance(small, "condition", "young", "old", reduction = "UMAP"), "`reduction`")
  expect_error(diff_abundance(small, "condition", "young", "old", sample = "condition"), "`sample`")
  expect_error(diff_abundance(small, "condition", "young", "old", n_landmarks = -1), "`n_landmarks`")
  expect_error(diff_abundance(small, "condition", "young", "old", landmarks = u[, 1:2]), "`landmarks`")
  expect_error(diff_abundance(small, "condition", "young", "old", seed = "a"), "`seed`")
  expect_error(diff_expression(small, "condition", "young", "old", features = "nope"), "`features`")
  expect_error(diff_expression(small, "condition", "young", "old", assay = "counts"), "`assay`")
  expect_error(diff_expression(small, "condition", "young", "old", null_genes = 1), "`null_genes`")
  bad <- small
  SingleCellExperiment::reducedDim(bad, "DM")[1, 1] <- NA
  expect_error(diff_abundance(bad, "condition", "young", "old"), "`reduction`")
})

test_that("landmarks: 0 rows refused, and a plan beyond memory refused up front with its size", {
  lm0 <- u[0, , drop = FALSE]
  expect_error(diff_abundance(small, "condition", "young", "old", landmarks = lm0), "`landmarks` has 0 rows")
  expect_error(diff_expression(small, "condition", "young", "old", landmarks = lm0), "`landmarks` has 0 rows")
  expect_error(diff_expression(small, "condition", "young", "old", block_size = 0), "`block_size` must be a single whole number >= 1")
  expect_error(diff_expression(small, "condition", "young", "old", block_size = 2.5), "`block_size`")
  expect_error(diff_expression(small, "condition", "young", "old", BPPARAM = "two"), "`BPPARAM`")
  old <- options(sceffects.max_memory = 2e4)
  on.exit(options(old))
  expect_error(diff_abundance(small, "condition", "young", "old", method = "kompot", n_landmarks = 40),
               "diff_abundance\\(\\) with 40 landmarks and [0-9,]+ cells would need .* of memory.*`n_landmarks`")
  expect_error(diff_expression(small, "condition", "young", "old", n_landmarks = 40, null_genes = 0),
               "diff_expression\\(\\) with 40 landmarks .*would need")
  # the plan itself is still available
  expect_output(diff_expression(small, "condition", "young", "old", n_landmarks = 40, dry_run = TRUE), "plan")
})

test_that("a flat density fit warns and makes no up/down calls", {
  sce <- simulate_manifold(n_cells = 400, n_genes = 40, seed = 2)
  emb <- SingleCellExperiment::reducedDim(sce, 1)
  # A length scale far beyond the data: both densities are flat, their ratio the same at
  # every cell, and with a small lfc_threshold every cell would be called at once.
  expect_warning(r <- diff_abundance(emb, sce$condition, "young", "old", method = "kompot", n_landmarks = 30,
                                     length_scale = 1e6, lfc_threshold = 0.01),
                 "density fit is flat.*not trustworthy")
  expect_true(all(is.na(r$da_direction)))
  expect_true(attr(r, "fit")$flat)
  expect_lt(sd(r$da_lfc), 1e-3)
  expect_silent(ok <- diff_abundance(emb, sce$condition, "young", "old", method = "kompot", n_landmarks = 30))
  expect_false(anyNA(ok$da_direction))
  expect_false(attr(ok, "fit")$flat)
})

test_that("a flat neighbourhood fit (every neighbourhood the same cells) warns and makes no calls", {
  d <- sceffects:::simulate_da_cells("isotropic", 3, n_per_sample = 60, seed = 1)
  n <- nrow(d$embedding)
  expect_warning(r <- diff_abundance(d$embedding, d$condition, "A", "B", sample = d$sample, k = n, seed = 1),
                 "neighbourhood fit is flat.*k = 360 of 360")
  expect_true(all(is.na(r$da_direction)))
  expect_true(attr(r, "fit")$flat)
  # Half the cells per neighbourhood: the neighbourhoods differ, no warning.
  expect_silent(ok <- diff_abundance(d$embedding, d$condition, "A", "B", sample = d$sample, k = n / 2,
                                     seed = 1, verbose = FALSE))
  expect_false(attr(ok, "fit")$flat)
  expect_false(anyNA(ok$da_direction))
})

test_that("HSMMSingleCell's PCA, where the default fit is flat, gets no calls and a warning", {
  skip_if_not_installed("HSMMSingleCell")
  e <- new.env()
  utils::data("HSMM_expr_matrix", "HSMM_sample_sheet", package = "HSMMSingleCell", envir = e)
  keep <- e$HSMM_sample_sheet$Hours %in% c(0, 72)
  expr <- log1p(as.matrix(e$HSMM_expr_matrix[, keep]))
  expr <- expr[rowSums(expr > 0) > 10, ]
  top <- order(-apply(expr, 1, stats::var))[1:2000]
  pcs <- stats::prcomp(t(expr[top, ]), rank. = 10)$x
  hours <- paste0("h", e$HSMM_sample_sheet$Hours[keep])
  # Before: lfc -1.00 +- 0.004 at every cell and 57 of 118 cells called "down".
  expect_warning(r <- diff_abundance(pcs, hours, "h0", "h72", method = "kompot"), "density fit is flat")
  expect_true(all(is.na(r$da_direction)))
})

test_that("the user's objects are left unchanged", {
  small0 <- small
  u0 <- u
  suppressWarnings(diff_abundance(small, "condition", "young", "old", landmarks = u))
  expect_identical(small, small0)
  expect_identical(u, u0)
})

test_that("diff_expression() takes an expression matrix with the embedding as `reduction` (issue 13)", {
  ref <- diff_expression(small, "condition", "young", "old", landmarks = u, length_scale = 1.7, null_genes = 20, seed = 42)
  y <- SummarizedExperiment::assay(small, "logcounts")
  emb <- SingleCellExperiment::reducedDim(small)
  cond <- small$condition
  from_matrix <- diff_expression(y, cond, "young", "old", reduction = emb, landmarks = u,
                                 length_scale = 1.7, null_genes = 20, seed = 42)
  expect_equal(as.data.frame(from_matrix), as.data.frame(ref))
  from_sparse <- diff_expression(methods::as(as.matrix(y), "CsparseMatrix"), cond, "young", "old",
                                 reduction = unname(emb), landmarks = u, length_scale = 1.7, null_genes = 20, seed = 42)
  expect_equal(from_sparse$mahalanobis, ref$mahalanobis, tolerance = 1e-10)
  se <- SummarizedExperiment::SummarizedExperiment(list(logcounts = y))
  expect_equal(diff_expression(se, cond, "young", "old", reduction = emb, landmarks = u,
                               length_scale = 1.7, null_genes = 0, seed = 42)$mahalanobis, ref$mahalanobis)
  expect_error(diff_expression(y, cond, "young", "old", landmarks = u), "`reduction` must be the embedding")
  expect_error(diff_expression(y, cond, "young", "old", reduction = t(emb), landmarks = u),
               "`reduction` has .* rows but `x` has .* cells.*t\\(reduction\\)")
  expect_error(diff_expression(y, cond[-1], "young", "old", reduction = emb, landmarks = u), "`groupby`")
  expect_error(diff_expression(as.data.frame(as.matrix(y)), cond, "young", "old", reduction = emb), "orientation is ambiguous")
})

# --- method = "neighbourhood" (issue 15) ----------------------------------------------

# The neighbourhood test in plain R: k nearest cells of each landmark by brute force,
# per-sample log fractions normalised by median deviations, limma's moderated t, and
# miloR's spatial FDR.
ref_neighbourhood <- function(emb, condition, sample, lm, k, c1, c2) {
  keep <- condition %in% c(c1, c2)
  emb <- emb[keep, , drop = FALSE]; sample <- sample[keep]; condition <- condition[keep]
  metric <- ref_stretch(emb, sample)
  emb <- metric$apply(emb); lm <- metric$apply(lm)
  d2 <- outer(rowSums(lm^2), rowSums(emb^2), "+") - 2 * lm %*% t(emb)
  member <- t(apply(d2, 1, function(r) seq_along(r) %in% order(r)[1:k]))
  radius <- sqrt(pmax(apply(d2, 1, function(r) sort(r)[k]), 0))
  samples <- c(sort(unique(sample[condition == c1])), sort(unique(sample[condition == c2])))
  counts <- sapply(samples, function(s) rowSums(member[, sample == s, drop = FALSE]))
  sizes <- table(sample)[samples]
  y <- log(sweep(counts + 0.5, 2, sizes, "/"))
  y <- sweep(y, 2, apply(y - rowMeans(y), 2, half_sample_mode))
  group <- factor(ifelse(samples %in% sample[condition == c2], "b", "a"))
  fit <- limma::eBayes(limma::lmFit(y, stats::model.matrix(~ group)))
  p <- fit$p.value[, 2]
  w <- 1 / radius
  o <- order(p)
  adj <- numeric(length(p))
  adj[o] <- rev(cummin(rev(sum(w) * p[o] / cumsum(w[o]))))
  list(member = member, counts = unname(counts), sizes = as.numeric(sizes), group = group,
       estimate = unname(fit$coefficients[, 2]),
       t = unname(fit$t[, 2]), df = unname(fit$df.total), p = unname(p), fdr = pmin(adj, 1),
       keep = keep)
}

da_sim <- function(...) sceffects:::simulate_da_cells(...)

# The neighbourhoods' metric in plain R: discriminant analysis with the samples as classes
# (between-sample scatter of the sample means against the pooled within-sample covariance),
# each of the top S - 1 directions stretched by its eigenvalue over their median, at most
# 16 (none below 1; none with fewer than 3 directions), orthonormalised in the embedding's
# coordinates.
ref_stretch <- function(emb, sample) {
  sizes <- as.vector(table(sample)); means <- rowsum(emb, sample) / sizes
  within <- crossprod(emb - means[match(sample, rownames(means)), , drop = FALSE]) / (nrow(emb) - nrow(means))
  centred <- sweep(means, 2, colSums(means * sizes) / sum(sizes))
  between <- crossprod(centred * sqrt(sizes)) / (nrow(means) - 1)
  ew <- eigen(within, symmetric = TRUE)
  root <- ew$vectors %*% diag(1 / sqrt(ew$values), ncol(emb)) %*% t(ew$vectors)
  eb <- eigen(root %*% between %*% root, symmetric = TRUE)
  r <- min(ncol(emb), nrow(means) - 1)
  stretch <- pmin(eb$values[seq_len(r)] / stats::median(eb$values[seq_len(r)]), 16)
  keep <- stretch > 1 & r >= 3
  dirs <- qr.Q(qr(root %*% eb$vectors[, seq_len(r), drop = FALSE]))[, keep, drop = FALSE]
  list(stretch = stretch[keep], directions = dirs,
       apply = function(x) x + (x %*% dirs) %*% diag(stretch[keep] - 1, sum(keep)) %*% t(dirs))
}

# Bickel's half-sample mode, literally.
half_sample_mode <- function(x) {
  x <- sort(x)
  while (length(x) > 3) {
    h <- ceiling(length(x) / 2)
    i <- which.min(x[h:length(x)] - x[seq_len(length(x) - h + 1)])
    x <- x[i:(i + h - 1)]
  }
  if (length(x) < 3) return(mean(x))
  gaps <- diff(x)
  if (gaps[1] < gaps[2]) mean(x[1:2]) else if (gaps[1] > gaps[2]) mean(x[2:3]) else x[2]
}

test_that("neighbourhood counts, moderated t, p-values and spatial FDR equal limma and miloR's formula", {
  d <- da_sim("isotropic", 4, n_per_sample = 150, seed = 4)
  lm <- d$embedding[seq(1, nrow(d$embedding), by = 9), ]
  res <- diff_abundance(d$embedding, d$condition, "A", "B", sample = d$sample, landmarks = lm, k = 40)
  reg <- attr(res, "fit")$regions
  ref <- ref_neighbourhood(d$embedding, d$condition, d$sample, lm, 40, "A", "B")
  expect_equal(unname(attr(reg, "counts")), ref$counts)
  expect_equal(reg$estimate, ref$estimate, tolerance = 1e-10)
  expect_equal(reg$statistic, ref$t, tolerance = 1e-8)
  expect_equal(reg$df, ref$df, tolerance = 1e-8)
  expect_equal(reg$p_value, ref$p, tolerance = 1e-8)
  expect_equal(reg$fdr, ref$fdr, tolerance = 1e-8)
  expect_s3_class(reg, "sceffects_results")
  # The metric: stretches and directions (up to sign) as in R.
  fit <- attr(res, "fit")
  metric <- ref_stretch(d$embedding, d$sample)
  expect_gt(length(metric$stretch), 0)
  expect_equal(fit$stretch, metric$stretch, tolerance = 1e-8)
  expect_equal(unname(abs(colSums(fit$stretch_directions * metric$directions))), rep(1, length(metric$stretch)),
               tolerance = 1e-8)
  # Per cell: the mean counts of the neighbourhoods holding it (its nearest landmark's when
  # none does), the same limma test, BH over cells; a call also needs every leave-one-
  # sample-out log fold change to keep its sign and half its size.
  e <- metric$apply(d$embedding)
  lm <- metric$apply(lm)
  nearest <- max.col(-(outer(rowSums(e^2), rowSums(lm^2), "+") - 2 * e %*% t(lm)), ties.method = "first")
  hold <- t(ref$member) * 1
  none <- rowSums(hold) == 0
  expect_true(any(none))
  hold[cbind(which(none), nearest[none])] <- 1
  cell_counts <- (hold %*% ref$counts) / rowSums(hold)
  y <- log(sweep(cell_counts + 0.5, 2, ref$sizes, "/"))
  y <- sweep(y, 2, apply(y - rowMeans(y), 2, half_sample_mode))
  fit <- limma::eBayes(limma::lmFit(y, stats::model.matrix(~ ref$group)))
  cell_fdr <- stats::p.adjust(fit$p.value[, 2], "BH")
  expect_equal(res$da_lfc, unname(fit$coefficients[, 2]), tolerance = 1e-10)
  expect_equal(res$da_statistic, unname(fit$t[, 2]), tolerance = 1e-8)
  expect_equal(res$da_fdr, unname(cell_fdr), tolerance = 1e-8)
  est <- fit$coefficients[, 2]
  stable <- Reduce(`&`, lapply(seq_along(ref$group), function(s) {
    g <- ref$group[-s]
    left <- rowMeans(y[, -s][, g == "b", drop = FALSE]) - rowMeans(y[, -s][, g == "a", drop = FALSE])
    left * est > 0 & abs(left) >= 0.5 * abs(est)
  }))
  expect_false(all(stable))
  expect_equal(as.character(res$da_direction),
               unname(ifelse(cell_fdr < 0.1 & stable, ifelse(est > 0, "up", "down"), "neutral")))
})

# AUC of `score` for `truth` (Mann-Whitney).
auc_of <- function(score, truth) {
  r <- rank(score)
  (sum(r[truth]) - sum(truth) * (sum(truth) + 1) / 2) / (sum(truth) * sum(!truth))
}

check_calls <- function(shape, n_dims, seed) {
  d <- da_sim(shape, n_dims, n_per_sample = 400, seed = seed)
  res <- diff_abundance(d$embedding, d$condition, "A", "B", sample = d$sample, seed = 42)
  background <- !d$planted & !d$odd
  list(auc = auc_of(res$da_statistic[d$planted | background], d$planted[d$planted | background]),
       sensitivity = mean(res$da_direction[d$planted & !d$odd] == "up"),
       fpr = mean(res$da_direction[background] != "neutral"),
       one_replicate = mean(res$da_direction[d$odd & !d$planted & d$sample == "B1"] != "neutral"))
}

test_that("a planted 3x region is found in 2 and 30 dimensions; one replicate's region is not called", {
  # 400 cells per sample (k = 80). Seeds 1-3 gave: isotropic d = 2 AUC 0.99-1.00,
  # sensitivity 0.35-0.63, FPR <= 0.011, one-replicate region <= 0.06; curved sheet in 30
  # dims AUC 0.986-0.994, sensitivity 0.56-0.81, FPR 0.005-0.07, one-replicate region 0.
  iso <- check_calls("isotropic", 2L, 1L)
  expect_gt(iso$auc, 0.97)
  expect_gt(iso$sensitivity, 0.3)
  expect_lt(iso$fpr, 0.03)
  expect_lt(iso$one_replicate, 0.1)
  curved <- check_calls("curved", 30L, 2L)
  expect_gt(curved$auc, 0.97)
  expect_gt(curved$sensitivity, 0.4)
  expect_lt(curved$fpr, 0.03)
  expect_lt(curved$one_replicate, 0.05)
})

test_that("a planted 3x region is found in 10 isotropic dimensions; a null there calls nothing", {
  # 800 cells per sample. The metric stretches the planted axis (z1, where the B samples'
  # means sit apart) 13-fold, so k falls from ~420 (intrinsic dimension ~9.4) to 90 (15
  # per sample). With seed = 42, simulation seeds 1-4 gave sensitivity 0.56, 0.90, 0.66,
  # 0.58 (before the stretch: 0, 0.83, 0, 0.87), false-positive rate 0.024-0.041, and no
  # null cell called.
  d <- da_sim("isotropic", 10L, n_per_sample = 800, seed = 2)
  res <- diff_abundance(d$embedding, d$condition, "A", "B", sample = d$sample, seed = 42)
  fit <- attr(res, "fit")
  expect_gt(fit$stretch[1], 8)
  expect_gt(abs(fit$stretch_directions[1, 1]), 0.9)
  expect_lt(fit$k, 150)
  background <- !d$planted & !d$odd
  expect_gt(auc_of(res$da_statistic[d$planted | background], d$planted[d$planted | background]), 0.95)
  expect_gt(mean(res$da_direction[d$planted & !d$odd] == "up"), 0.5)
  expect_lt(mean(res$da_direction[d$odd & !d$planted & d$sample == "B1"] != "neutral"), 0.05)
  null <- da_sim("isotropic", 10L, n_per_sample = 800, fold = 1, odd_fold = 1, seed = 102)
  res0 <- diff_abundance(null$embedding, null$condition, "A", "B", sample = null$sample, seed = 42)
  expect_lt(mean(res0$da_direction != "neutral"), 0.01)
})

test_that("the metric stretches where the samples differ, and a null with strong replicate noise stays calibrated", {
  # The stretch follows the samples, never the conditions: replicate noise 3x the
  # default's (each sample's own smooth abundance field) is stretched as much as a
  # condition effect would be, yet the landmark p-values stay uniform. Over 24 such nulls
  # (seeds 301-324, 300 cells per sample): 6.1% of landmark p-values below 0.05 (5.5%
  # before the stretch); cells called in 2 runs (32% and 53% of the cells: there the
  # three B samples happen to sit on one side of the most stretched direction, which a
  # test across 3 vs 3 samples cannot tell from an effect), 3.5% on average (before: 4
  # runs, at most 7%, 0.6% on average). BH over cells holds the FDR, not the fraction
  # called when it errs: correlated cells err together.
  runs <- lapply(1:6, function(s) {
    null <- da_sim("isotropic", 10L, n_per_sample = 300, fold = 1, odd_fold = 1, noise = 0.8, seed = 300 + s)
    res <- diff_abundance(null$embedding, null$condition, "A", "B", sample = null$sample, seed = 42)
    fit <- attr(res, "fit")
    c(stretch = fit$stretch[1], called = mean(res$da_direction != "neutral"), p05 = mean(fit$regions$p_value < 0.05))
  })
  runs <- do.call(rbind, runs)
  expect_true(all(runs[, "stretch"] > 3))
  expect_lt(mean(runs[, "p05"]), 0.1)
  expect_equal(stats::median(runs[, "called"]), 0)
})

test_that("replicate noise alone, and a global change of cell numbers, call (almost) nothing", {
  null <- da_sim("curved", 10L, n_per_sample = 400, fold = 1, odd_fold = 1, seed = 5)
  res <- diff_abundance(null$embedding, null$condition, "A", "B", sample = null$sample, seed = 42)
  expect_lt(mean(res$da_direction != "neutral"), 0.01)
  p <- attr(res, "fit")$regions$p_value
  # Landmark p-values under the null: no excess of small ones.
  expect_lt(mean(p < 0.05), 0.1)
  more <- da_sim("isotropic", 5L, n_per_sample = 300, fold = 1, odd_fold = 1, size_factor = c(1, 2), seed = 6)
  res <- diff_abundance(more$embedding, more$condition, "A", "B", sample = more$sample, seed = 42)
  expect_lt(mean(res$da_direction != "neutral"), 0.01)
  expect_lt(abs(stats::median(res$da_lfc)), 0.1)
})

test_that("neighbourhood method: SCE output, region table for plot_volcano, plot_da, argument checks", {
  sce <- simulate_manifold(n_cells = 600, n_genes = 40, seed = 1)
  out <- diff_abundance(sce, "condition", "young", "old", sample = "sample", seed = 42)
  expect_true(all(c("da_lfc", "da_statistic", "da_fdr", "da_direction") %in% names(SummarizedExperiment::colData(out))))
  fit <- S4Vectors::metadata(out)$diff_abundance
  expect_equal(fit$method, "neighbourhood")
  # simulate_manifold(): old cells are shifted late in every replicate.
  expect_gt(mean(out$da_lfc[out$t > 0.8]), 0.3)
  expect_lt(mean(out$da_lfc[out$t < 0.2]), -0.3)
  expect_s3_class(plot_volcano(fit$regions), "ggplot")
  expect_s3_class(plot_da(out), "ggplot")
  expect_error(plot_da(sce), "`x` must be a SingleCellExperiment returned by diff_abundance")
  expect_error(plot_da(out, dims = c(1, 99)), "`dims`")
  expect_message(diff_abundance(sce, "condition", "young", "old"), "no `sample`")
  expect_silent(diff_abundance(sce, "condition", "young", "old", verbose = FALSE))
  expect_error(diff_abundance(sce, "condition", "young", "old", dimension = 2), "`dimension` applies to method = \"kompot\"")
  expect_error(diff_abundance(sce, "condition", "young", "old", method = "kompot", k = 10), "`k` applies")
  expect_error(diff_abundance(sce, "condition", "young", "old", method = "milo"), "`method`")
  expect_error(diff_abundance(sce, "condition", "young", "old", k = 1), "`k`")
  expect_error(diff_abundance(sce, "condition", "young", "old", k = 10^5), "`k`")
  expect_error(diff_abundance(sce, "condition", "young", "old", fdr_threshold = 1), "`fdr_threshold`")
  expect_error(diff_abundance(sce, "condition", "young", "old", foo = 1), "unused argument")
  # Same seed, same result; threads do not matter.
  again <- diff_abundance(sce, "condition", "young", "old", sample = "sample", threads = 1, seed = 42)
  expect_identical(again$da_lfc, out$da_lfc)
  # Every cell is a landmark by default, so the seed does not matter; with fewer landmarks
  # it chooses them.
  other_seed <- diff_abundance(sce, "condition", "young", "old", sample = "sample", seed = 7)
  expect_identical(other_seed$da_lfc, out$da_lfc)
  expect_equal(nrow(S4Vectors::metadata(out)$diff_abundance$regions), ncol(sce))
  few <- lapply(c(42, 7), function(s) diff_abundance(sce, "condition", "young", "old", sample = "sample",
                                                     n_landmarks = 100, seed = s)$da_lfc)
  expect_false(identical(few[[1]], few[[2]]))
  expect_error(diff_abundance(sce, "condition", "young", "old", n_landmarks = 1), "`n_landmarks`")
})

test_that("HSMMSingleCell's PCA: the neighbourhood method makes no all-cells call", {
  skip_if_not_installed("HSMMSingleCell")
  e <- new.env()
  utils::data("HSMM_expr_matrix", "HSMM_sample_sheet", package = "HSMMSingleCell", envir = e)
  keep <- e$HSMM_sample_sheet$Hours %in% c(0, 72)
  expr <- log1p(round(as.matrix(e$HSMM_expr_matrix[, keep])))
  expr <- expr[rowSums(expr > 0) > 10, ]
  top <- order(-apply(expr, 1, stats::var))[1:2000]
  pcs <- stats::prcomp(t(expr[top, ]), rank. = 10)$x
  hours <- paste0("h", e$HSMM_sample_sheet$Hours[keep])
  r <- diff_abundance(pcs, hours, "h0", "h72", verbose = FALSE, seed = 42)
  expect_gt(stats::sd(r$da_lfc), 0.2)
  expect_lt(max(table(r$da_direction)) / nrow(r), 0.95)
})

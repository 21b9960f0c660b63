# Gaussian-copula simulation from nb_regression() fits: normal scores of randomised
# quantile residuals against a direct R computation, recovery of a planted gene-gene
# correlation, simulated data that keep the fitted correlation and recover the fitted
# coefficients on refitting, reproducibility for a seed whatever the threads.

copula_data <- function(n = 3000, seed = 1) {
  set.seed(seed)
  cells <- data.frame(dose = rnorm(n))
  # latent correlated normals mapped through NB quantiles: a Gaussian copula with
  # correlation 0.6 between genes 1-2, 0 with gene 3
  r <- matrix(c(1, 0.6, 0, 0.6, 1, 0, 0, 0, 1), 3)
  z <- t(chol(r)) %*% matrix(rnorm(3 * n), 3)
  mu <- exp(outer(c(1, 0.5, 1.5), rep(1, n)) + outer(c(0.3, -0.2, 0), cells$dose))
  counts <- matrix(qnbinom(pnorm(z), size = 4, mu = mu), 3, dimnames = list(paste0("gene", 1:3), NULL))
  list(cells = cells, counts = counts)
}

test_that("normal scores are randomised quantile residuals under the fitted NB (issue 17)", {
  d <- copula_data(n = 400)
  fit <- nb_regression(d$counts, mean = ~ dose, data = d$cells)
  mu <- predict(fit, type = "mean")
  size <- predict(fit, type = "dispersion")
  z <- sceffects:::rs_nb_normal_scores(d$counts + 0, mu, size, 5, 1L)
  # each score lies in the normal image of its count's probability interval
  lo <- qnorm(pnbinom(d$counts - 1, size = size, mu = mu))
  hi <- qnorm(pnbinom(d$counts, size = size, mu = mu))
  expect_true(all(z >= lo - 1e-9 & z <= hi + 1e-9))
  expect_equal(sceffects:::rs_nb_normal_scores(d$counts + 0, mu, size, 5, 2L), z)
})

test_that("nb_copula() recovers a planted correlation; simulate() keeps it and the marginals (issue 17)", {
  d <- copula_data()
  fit <- nb_regression(d$counts, mean = ~ dose, data = d$cells)
  cop <- nb_copula(fit, d$counts, seed = 1)
  expect_s3_class(cop, "sceffects_nb_copula")
  # discreteness attenuates the latent 0.6 slightly
  expect_equal(cop$correlation[1, 2], 0.6, tolerance = 0.1)
  expect_lt(abs(cop$correlation[1, 3]), 0.06)
  sim <- simulate(fit, seed = 2, copula = cop)
  expect_equal(dim(sim), dim(d$counts))
  expect_true(all(sim >= 0 & sim == round(sim)))
  refit <- nb_regression(sim, mean = ~ dose, data = d$cells)
  # the simulated data recover the fitted coefficients within their standard errors
  se <- sqrt(vapply(rownames(d$counts), function(g) diag(vcov(fit, g))[1:2], numeric(2)))
  expect_true(all(abs(coef(refit) - coef(fit)) < 4 * se))
  # and the fitted gene-gene correlation, up to the attenuation of discrete counts (the
  # scores of counts near a mean of 3 correlate ~0.07 less than their latent normals)
  cop_sim <- nb_copula(refit, sim, seed = 3)
  expect_lt(max(abs(cop_sim$correlation - cop$correlation)), 0.1)
  expect_gt(cop_sim$correlation[1, 2], 0.4)
  # without a copula the genes are independent
  ind <- nb_copula(refit, simulate(fit, seed = 4), seed = 5)
  expect_lt(abs(ind$correlation[1, 2]), 0.06)
})

test_that("copula simulation is reproducible for a seed whatever the threads; bad input is named", {
  d <- copula_data(n = 500)
  fit <- nb_regression(d$counts, mean = ~ dose, data = d$cells)
  cop <- nb_copula(fit, d$counts, seed = 1)
  a <- simulate(fit, seed = 9, copula = cop, threads = 1)
  expect_identical(simulate(fit, seed = 9, copula = cop, threads = 2), a)
  two <- simulate(fit, nsim = 2, seed = 9, copula = cop)
  expect_identical(two[[1]], a)
  expect_false(identical(two[[2]], a))
  set.seed(3)
  b <- simulate(fit, copula = cop)
  set.seed(3)
  expect_identical(simulate(fit, copula = cop), b)
  expect_error(nb_copula(fit, d$counts[1:2, ]), "`x` must be the counts `fit` was made on")
  expect_error(nb_copula(d$counts, d$counts), "`fit` must be made by nb_regression")
  expect_error(simulate(fit, copula = cop$correlation), "`copula` must be made by nb_copula")
  other <- nb_regression(d$counts[1:2, ], mean = ~ dose, data = d$cells)
  expect_error(simulate(other, copula = cop), "`copula` was estimated for other genes")
  expect_error(nb_copula(fit, d$counts, seed = -1), "`seed`")
  counts0 <- d$counts
  nb_copula(fit, d$counts)
  expect_identical(d$counts, counts0)
})

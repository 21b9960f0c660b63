# Gaussian-copula simulation from nb_regression() fits: normal scores of randomised
# quantile residuals against a direct R computation; the latent correlation recovered
# after the attenuation correction, and kept by simulated counts; per-group copulas;
# Poisson and ZINB marginals (zero inflation against optimize()); what-if edits checked
# by refitting; reproducibility for a seed whatever the threads and blocks.

# Latent correlated normals mapped through NB quantiles: a Gaussian copula with
# correlation `rho` between genes 1-2 (means near 3 and 1.6) and 1-3 (gene 3 near 0.4),
# and 0 between 2 and 3 when rho[2] is 0.
copula_data <- function(n = 3000, seed = 1, rho = c(0.6, 0.5), size = 4) {
  set.seed(seed)
  cells <- data.frame(dose = rnorm(n))
  r <- matrix(c(1, rho[1], rho[2], rho[1], 1, 0, rho[2], 0, 1), 3)
  z <- t(chol(r)) %*% matrix(rnorm(3 * n), 3)
  mu <- exp(outer(c(1, 0.5, -1), rep(1, n)) + outer(c(0.3, -0.2, 0), cells$dose))
  counts <- matrix(qnbinom(pnorm(z), size = size, mu = mu), 3, dimnames = list(paste0("gene", 1:3), NULL))
  list(cells = cells, counts = counts, r = r)
}

coef_se <- function(fit) {
  k <- seq_len(nrow(coef(fit)))
  se <- sqrt(vapply(names(fit$loglik), function(g) diag(vcov(fit, g))[k], numeric(length(k))))
  matrix(se, length(k), dimnames = dimnames(coef(fit)))
}

# |actual - expected| within an absolute tolerance.
expect_near <- function(actual, expected, tol) expect_lt(max(abs(actual - expected)), tol)

test_that("normal scores are randomised quantile residuals under the fitted NB (issue 17)", {
  d <- copula_data(n = 400)
  fit <- nb_regression(d$counts, mean = ~ dose, data = d$cells)
  mu <- predict(fit, type = "mean")
  size <- predict(fit, type = "dispersion")
  z <- sceffects:::rs_nb_normal_scores(d$counts + 0, mu, size, rep(0, 3), 0L, 5, 1L)
  lo <- qnorm(pnbinom(d$counts - 1, size = size, mu = mu))
  hi <- qnorm(pnbinom(d$counts, size = size, mu = mu))
  expect_true(all(z >= lo - 1e-9 & z <= hi + 1e-9))
  expect_equal(sceffects:::rs_nb_normal_scores(d$counts + 0, mu, size, rep(0, 3), 0L, 5, 2L), z)
  # with zero inflation 0.3 the zeros' interval starts at 0 and ends at 0.3 + 0.7 F(0)
  zi <- sceffects:::rs_nb_normal_scores(d$counts + 0, mu, size, rep(0.3, 3), 0L, 5, 1L)
  hi0 <- qnorm(0.3 + 0.7 * pnbinom(d$counts, size = size, mu = mu))
  expect_true(all(zi <= hi0 + 1e-9))
})

test_that("nb_copula() recovers the latent correlation; simulated counts keep the data's correlation (issue 17)", {
  d <- copula_data()
  fit <- nb_regression(d$counts, mean = ~ dose, data = d$cells)
  cop <- nb_copula(fit, d$counts, seed = 1)
  expect_s3_class(cop, "sceffects_nb_copula")
  # the scores are attenuated, most for gene 3 (mean 0.4); the correction undoes it
  expect_lt(cop$score_correlation[1, 3], 0.45)
  expect_near(cop$correlation[1, 2], 0.6, 0.05)
  expect_near(cop$correlation[1, 3], 0.5, 0.06)
  expect_lt(abs(cop$correlation[2, 3]), 0.06)
  sim <- simulate(fit, seed = 2, copula = cop)
  expect_true(all(sim >= 0 & sim == round(sim)))
  # the simulated counts correlate as the data do (Pearson, on the counts themselves)
  expect_lt(max(abs(cor(t(sim)) - cor(t(d$counts)))), 0.05)
  refit <- nb_regression(sim, mean = ~ dose, data = d$cells)
  expect_true(all(abs(coef(refit) - coef(fit)) < 4 * coef_se(fit)))
  cop_sim <- nb_copula(refit, sim, seed = 3)
  expect_lt(max(abs(cop_sim$correlation - cop$correlation)), 0.06)
  # without a copula the genes are independent
  ind <- nb_copula(refit, simulate(fit, seed = 4), seed = 5)
  expect_lt(max(abs(ind$correlation[lower.tri(ind$correlation)])), 0.06)
})

test_that("nb_copula() reads blocks of cells: the same for any block size, sparse or dense, any threads", {
  d <- copula_data(n = 600)
  fit <- nb_regression(d$counts, mean = ~ dose, data = d$cells)
  a <- nb_copula(fit, d$counts, seed = 1, block_size = 1000)
  expect_equal(nb_copula(fit, d$counts, seed = 1, block_size = 70, threads = 1)$correlation, a$correlation,
               tolerance = 1e-12)
  expect_equal(nb_copula(fit, Matrix::Matrix(d$counts, sparse = TRUE), seed = 1, block_size = 70)$correlation,
               a$correlation, tolerance = 1e-12)
  expect_equal(unname(a$score_correlation), cor(t(sceffects:::rs_nb_normal_scores(
    d$counts + 0, predict(fit), predict(fit, type = "dispersion"), rep(0, 3), 0L, 1, 1L))), tolerance = 1e-10)
})

test_that("a copula per group: each level's correlation is recovered and used for its cells (issue 17)", {
  a <- copula_data(n = 2500, seed = 2, rho = c(0.7, 0))
  b <- copula_data(n = 2500, seed = 3, rho = c(-0.4, 0))
  counts <- cbind(a$counts, b$counts)
  cells <- rbind(a$cells, b$cells)
  cells$grp <- rep(c("A", "B"), each = 2500)
  fit <- nb_regression(counts, mean = ~ dose, data = cells)
  cop <- nb_copula(fit, counts, group = "grp", seed = 1)
  expect_named(cop$correlation, c("A", "B"))
  expect_near(cop$correlation$A[1, 2], 0.7, 0.05)
  expect_near(cop$correlation$B[1, 2], -0.4, 0.05)
  sim <- simulate(fit, seed = 2, copula = cop)
  for (g in c("A", "B")) {
    cells_g <- cells$grp == g
    expect_near(cor(sim[1, cells_g], sim[2, cells_g]), cor(counts[1, cells_g], counts[2, cells_g]), 0.07)
  }
  # newdata: the group is looked up there
  nd <- data.frame(dose = 0, grp = rep(c("B", "A"), c(3000, 3000)))
  s2 <- simulate(fit, seed = 3, copula = cop, newdata = nd)
  expect_lt(cor(s2[1, 1:3000], s2[2, 1:3000]), -0.2)
  expect_gt(cor(s2[1, 3001:6000], s2[2, 3001:6000]), 0.4)
  expect_error(nb_copula(fit, counts, group = "nope"), "`group` must be the name of a column")
  expect_error(simulate(fit, copula = cop, newdata = data.frame(dose = 0, grp = "C")), "levels without a copula")
})

test_that("ZINB marginals: zero inflation by ML (optimize()), simulated zeros as the data's; Poisson marginals", {
  d <- copula_data(n = 3000, seed = 4)
  set.seed(5)
  counts <- d$counts
  counts[1, runif(3000) < 0.3] <- 0
  fit <- nb_regression(counts, mean = ~ dose, data = d$cells)
  cop <- nb_copula(fit, counts, family = "zinb", seed = 1)
  mu <- predict(fit)
  size <- predict(fit, type = "dispersion")
  for (g in 1:3) {
    p0 <- dnbinom(0, size = size[g, ], mu = mu[g, ])
    zero <- counts[g, ] == 0
    ll <- function(pi) sum(log(pi + (1 - pi) * p0[zero])) + sum(!zero) * log(1 - pi)
    ref <- optimize(ll, c(0, 0.999), maximum = TRUE, tol = 1e-10)$maximum
    if (ll(0) >= ll(1e-6)) ref <- 0
    expect_near(unname(cop$zero_inflation[g]), ref, 1e-5)
  }
  expect_gt(cop$zero_inflation[1], 0.03)
  expect_lt(max(cop$zero_inflation[2:3]), 0.02)
  sim <- simulate(fit, seed = 2, copula = cop)
  expect_near(rowMeans(sim == 0), rowMeans(counts == 0), 0.02)
  nb_only <- simulate(fit, seed = 2, copula = nb_copula(fit, counts, seed = 1))
  expect_lt(mean(nb_only[1, ] == 0), mean(sim[1, ] == 0) - 0.02)
  # Poisson marginals: counts drawn with the fitted means and Poisson variance
  pois <- nb_copula(fit, counts, family = "poisson", seed = 1)
  expect_equal(unname(pois$zero_inflation), rep(0, 3))
  sp <- simulate(fit, seed = 3, copula = pois, newdata = data.frame(dose = rep(0, 20000)))
  m0 <- exp(coef(fit)[1, ])
  expect_equal(unname(rowMeans(sp)), unname(m0), tolerance = 0.03)
  expect_near(unname(apply(sp, 1, var) / rowMeans(sp)), rep(1, 3), 0.05)
  expect_error(nb_copula(fit, counts, family = "zip"), "`family` must be one of")
})

test_that("copula simulation is reproducible for a seed whatever the threads; bad input is named", {
  d <- copula_data(n = 500)
  fit <- nb_regression(d$counts, mean = ~ dose, data = d$cells)
  cop <- nb_copula(fit, d$counts, seed = 1, family = "zinb")
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
  expect_error(nb_copula(fit, d$counts, bogus = 1), "unused argument")
  counts0 <- d$counts
  nb_copula(fit, d$counts)
  expect_identical(d$counts, counts0)
})

test_that("edit_fit(): scaled, removed and swapped parameters are recovered by refitting (issue 17)", {
  set.seed(6)
  n <- 4000
  cells <- data.frame(dose = rnorm(n), batch = factor(sample(c("a", "b"), n, TRUE)))
  counts <- t(sapply(1:4, function(g) rnbinom(n, size = 3, mu = exp(1 + 0.3 * cells$dose + 0.5 * (cells$batch == "b")))))
  rownames(counts) <- paste0("gene", 1:4)
  fit <- nb_regression(counts, mean = ~ dose + batch, data = cells)
  fit0 <- fit
  doubled <- edit_fit(fit, coef = "dose", scale = 2)
  expect_identical(fit, fit0)
  expect_equal(coef(doubled)["dose", ], 2 * coef(fit)["dose", ])
  cop <- nb_copula(fit, counts, seed = 1)
  refit <- nb_regression(simulate(doubled, seed = 1, copula = cop), mean = ~ dose + batch, data = cells)
  expect_true(all(abs(coef(refit) - coef(doubled)) < 4 * coef_se(refit)))
  none <- edit_fit(fit, coef = "batchb", value = 0, genes = c("gene1", "gene3"))
  refit <- nb_regression(simulate(none, seed = 2), mean = ~ dose + batch, data = cells)
  expect_true(all(abs(coef(refit)["batchb", c(1, 3)]) < 4 * coef_se(refit)["batchb", c(1, 3)]))
  expect_true(all(coef(refit)["batchb", c(2, 4)] > 0.3))
  # swapping a and b: b's cells get a's means, so the batch effect changes sign
  swapped <- edit_fit(fit, swap = list(batch = c("a", "b")))
  refit <- nb_regression(simulate(swapped, seed = 3), mean = ~ dose + batch, data = cells)
  expect_true(all(abs(coef(refit)["batchb", ] + coef(fit)["batchb", ]) < 4 * coef_se(refit)["batchb", ]))
  expect_true(all(abs(coef(refit)["dose", ] - coef(fit)["dose", ]) < 4 * coef_se(refit)["dose", ]))
  # dispersion edits: size scaled on the log scale
  wider <- edit_fit(fit, coef = "(Intercept)", value = log(20), component = "dispersion")
  refit <- nb_regression(simulate(wider, seed = 4), mean = ~ dose + batch, data = cells)
  se_d <- sqrt(vapply(1:4, function(g) vcov(refit, g)["dispersion:(Intercept)", "dispersion:(Intercept)"], 1))
  expect_true(all(abs(coef(refit, "dispersion")[1, ] - log(20)) < 4 * se_d))
  expect_match(swapped$edits, "swapped")
  expect_error(edit_fit(fit, coef = "dos", scale = 2), "`coef` must name coefficients")
  expect_error(edit_fit(fit, coef = "dose"), "`value` or `scale`")
  expect_error(edit_fit(fit, coef = "dose", value = 0, scale = 2), "`value` or `scale`")
  expect_error(edit_fit(fit), "`coef` or `swap`")
  expect_error(edit_fit(fit, swap = list(batch = c("a", "z"))), "two different levels")
  expect_error(edit_fit(fit, swap = list(nope = c("a", "b"))), "`swap` must be a named list")
  expect_error(edit_fit(fit, coef = "dose", scale = c(1, 2)), "`scale` must be one finite number")
  expect_error(edit_fit(fit, coef = "dose", scale = 2, genes = "gene9"), "`gene`")
})

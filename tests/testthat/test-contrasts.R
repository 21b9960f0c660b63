# contrast(): linear hypotheses of NB and LMM fits against hand computations with vcov,
# per-gene MASS::glm.nb with the observed information, and lmerTest::contest1D(); the
# parser of character contrasts; bad contrasts and unknown arguments.

nb_cells <- function(n, seed) {
  set.seed(seed)
  data.frame(dose = factor(sample(c("none", "low", "high"), n, replace = TRUE), levels = c("none", "low", "high")),
             age = rnorm(n), batch = factor(sample(c("a", "b"), n, replace = TRUE)))
}

nb_counts <- function(cells, n_genes, seed) {
  set.seed(seed)
  mu <- exp(1 + 0.3 * (cells$dose == "low") + 0.6 * (cells$dose == "high") + 0.2 * cells$age)
  size <- exp(1 - 0.5 * (cells$batch == "b"))
  y <- t(replicate(n_genes, rnbinom(nrow(cells), size = size, mu = mu * exp(rnorm(1, 0, 0.5)))))
  rownames(y) <- sprintf("gene%02d", seq_len(n_genes))
  y
}

cells <- nb_cells(300, 11)
counts <- nb_counts(cells, 6, 12)

# Hand Wald tests of L b = 0 from the fit's own coefficients and covariances.
hand_wald <- function(b, v, l) {
  est <- sum(l * b)
  se <- sqrt(drop(t(l) %*% v %*% l))
  c(estimate = est, std_error = se, statistic = est / se, p_value = 2 * pnorm(-abs(est / se)))
}

# Observed information of the NB log-likelihood in (beta, log size) at (b, g), by its
# analytic second derivatives: the covariance a Wald test of glm.nb's fit uses when the
# size is estimated jointly.
nb_observed_vcov <- function(x, y, b, g) {
  mu <- drop(exp(x %*% b))
  r <- exp(g)
  d_eta2 <- -r * mu * (r + y) / (r + mu)^2
  d_eta_g <- r * (y - mu) * mu / (r + mu)^2
  d_g <- r * (digamma(y + r) - digamma(r) + log(r) + 1 - log(r + mu) - (r + y) / (r + mu))
  d_g2 <- d_g + r^2 * (trigamma(y + r) - trigamma(r) + 1 / r - 1 / (r + mu) - (mu - y) / (r + mu)^2)
  h <- rbind(cbind(crossprod(x, d_eta2 * x), crossprod(x, d_eta_g)),
             cbind(crossprod(d_eta_g, x), sum(d_g2)))
  solve(-h)
}

test_that("NB contrasts equal a hand Wald test with vcov, for vectors, matrices and expressions", {
  fit <- nb_regression(counts, mean = ~ dose + age, dispersion = ~ batch, data = cells)
  l <- c(0, -1, 1, 0)
  res <- contrast(fit, "dosehigh - doselow")
  expect_s3_class(res, "sceffects_results")
  expect_identical(names(res), c("feature", "contrast", "estimate", "std_error", "statistic", "df",
                                 "p_value", "log_p", "fdr", "reason"))
  expect_identical(unique(res$contrast), "dosehigh - doselow")
  v_all <- vcov(fit, gene = NULL)
  expect_identical(dim(v_all), c(6L, 6L, 6L))
  for (g in rownames(counts)) {
    ref <- hand_wald(coef(fit)[, g], vcov(fit, g)[1:4, 1:4], l)
    row <- res[res$feature == g, ]
    expect_equal(unname(unlist(row[c("estimate", "std_error", "statistic", "p_value")])), unname(ref),
                 tolerance = 1e-12)
    expect_equal(v_all[, , g], vcov(fit, g))
  }
  expect_equal(res$df, rep(Inf, 6))
  expect_equal(res$log_p, log(res$p_value), tolerance = 1e-12)
  expect_equal(res$fdr, p.adjust(res$p_value, "BH"), tolerance = 1e-12)
  # the same hypothesis as a named vector, an unnamed vector, a matrix and with "= 0"
  same <- list(c(doselow = -1, dosehigh = 1), l, rbind(l), "dosehigh - doselow = 0",
               "`dosehigh` - doselow", "-(doselow - dosehigh)", "2 * dosehigh / 2 - doselow")
  for (s in same) expect_equal(contrast(fit, s)$estimate, res$estimate, tolerance = 1e-12)
  # a right-hand side other than 0 is subtracted
  expect_equal(contrast(fit, "dosehigh - doselow = 0.5")$estimate, res$estimate - 0.5, tolerance = 1e-12)
  # summary(contrast =) is the same table (it was silently ignored)
  expect_equal(summary(fit, contrast = "dosehigh - doselow"), res)
})

test_that("NB dispersion and both-component contrasts use the right block of vcov", {
  fit <- nb_regression(counts, mean = ~ dose + age, dispersion = ~ batch, data = cells)
  res <- contrast(fit, "(Intercept) + batchb", component = "dispersion")
  both <- contrast(fit, c(`mean:age` = 1, `dispersion:batchb` = -2), component = "both")
  for (g in rownames(counts)) {
    v <- vcov(fit, g)
    ref <- hand_wald(coef(fit, "dispersion")[, g], v[5:6, 5:6], c(1, 1))
    expect_equal(unname(unlist(res[res$feature == g, c("estimate", "std_error", "statistic", "p_value")])),
                 unname(ref), tolerance = 1e-12)
    ref <- hand_wald(c(coef(fit)[, g], coef(fit, "dispersion")[, g]), v, c(0, 0, 0, 1, 0, -2))
    expect_equal(unname(unlist(both[both$feature == g, c("estimate", "std_error", "statistic", "p_value")])),
                 unname(ref), tolerance = 1e-12)
  }
  expect_equal(summary(fit, component = "dispersion", contrast = "(Intercept) + batchb"), res)
  expect_equal(contrast(fit, "`(Intercept)` + batchb", component = "dispersion")$estimate, res$estimate)
})

test_that("NB contrasts equal per-gene MASS::glm.nb with a hand Wald test on the observed information", {
  fit <- nb_regression(counts, mean = ~ dose + age, data = cells, tol = 1e-14)
  l <- rbind(high_vs_low = c(0, -1, 1, 0), mean_dose = c(0, 0.5, 0.5, 0))
  res <- contrast(fit, l)
  x <- model.matrix(~ dose + age, cells)
  for (g in rownames(counts)) {
    ref <- MASS::glm.nb(counts[g, ] ~ dose + age, data = cells,
                        control = glm.control(epsilon = 1e-14, maxit = 200))
    v <- nb_observed_vcov(x, counts[g, ], coef(ref), log(ref$theta))[1:4, 1:4]
    for (h in rownames(l)) {
      want <- hand_wald(coef(ref), v, l[h, ])
      row <- res[res$feature == g & res$contrast == h, ]
      expect_equal(unname(unlist(row[c("estimate", "std_error", "statistic", "p_value")])), unname(want),
                   tolerance = 1e-8)
    }
  }
})

test_that("a joint Wald chi-square tests all rows together", {
  fit <- nb_regression(counts, mean = ~ dose + age, data = cells)
  l <- rbind(low = c(0, 1, 0, 0), high = c(0, 0, 1, 0))
  res <- contrast(fit, l, joint = TRUE)
  expect_identical(unique(res$contrast), c("low", "high", "joint"))
  joint <- res[res$contrast == "joint", ]
  for (g in rownames(counts)) {
    b <- drop(l %*% coef(fit)[, g])
    s <- l %*% vcov(fit, g)[1:4, 1:4] %*% t(l)
    chi2 <- drop(t(b) %*% solve(s, b))
    expect_equal(joint$statistic[joint$feature == g], chi2, tolerance = 1e-10)
    expect_equal(joint$p_value[joint$feature == g], pchisq(chi2, 2, lower.tail = FALSE), tolerance = 1e-10)
  }
  expect_equal(joint$df, rep(2, 6))
  expect_error(contrast(fit, rbind(l, l[1, ] * 2), joint = TRUE), "linearly independent")
})

test_that("bad contrasts give clear errors naming `contrast`; unknown arguments error", {
  fit <- nb_regression(counts[1:2, ], mean = ~ dose + age, data = cells)
  expect_error(contrast(fit, c(1, -1)), "`contrast` has 2 weights .* 4 coefficients")
  expect_error(contrast(fit, c(0, 1, NA, 0)), "`contrast` has missing")
  expect_error(contrast(fit, c(doselow = 1, dosemid = -1)), "`contrast` names dosemid")
  expect_error(contrast(fit, "dosehigh - dosemid"), "`contrast` names dosemid, which is not a coefficient")
  expect_error(contrast(fit, "dosehigh * doselow"), "`contrast`: .* is not linear")
  expect_error(contrast(fit, "log(dosehigh)"), "`contrast`: .* is not linear")
  expect_error(contrast(fit, "dosehigh -"), "`contrast` \"dosehigh -\" is not one expression")
  expect_error(contrast(fit, NA_character_), "`contrast` has a missing")
  expect_error(contrast(fit, c(0, 0, 0, 0)), "`contrast` has no nonzero weight")
  expect_error(contrast(fit, list(1)), "`contrast` must be a numeric vector")
  expect_error(contrast(fit), "`contrast` is missing")
  expect_error(contrast(fit, "age", component = "size"), "`component` must be one of")
  expect_error(contrast(fit, "age", foo = 1), "contrast\\(\\) has no argument `foo`")
  expect_error(contrast(fit, "age", joint = NA), "`joint`")
  expect_error(summary(fit, contrast = "age", foo = 1), "summary\\(\\) has no argument `foo`")
  expect_error(contrast(data.frame(), "a"), "`fit` must be an nb_regression\\(\\) fit or an lmm_table\\(\\) result")
})

test_that("LMM contrasts equal lmerTest::contest1D: estimate, SE, Satterthwaite df and p", {
  skip_if_not_installed("lme4")
  skip_if_not_installed("lmerTest")
  set.seed(21)
  data <- data.frame(subject = factor(rep(1:12, each = 5)), time = rep(0:4, 12),
                     arm = factor(rep(c("a", "b", "c"), each = 20)))
  y <- t(vapply(1:3, function(k) {
    u <- rnorm(12)[data$subject] + rnorm(12, 0, 0.3)[data$subject] * data$time
    0.2 * data$time + 0.5 * (data$arm == "b") + u + rnorm(60)
  }, numeric(60)))
  rownames(y) <- paste0("r", 1:3)
  fit <- lmm_table(y, ~ time + arm + (1 + time | subject), data, threads = 1)
  exprs <- c(b_vs_c = "armb - armc", "time + armb / 2")
  res <- contrast(fit, exprs)
  expect_equal(summary(fit, contrast = exprs), res)
  l <- rbind(c(0, 0, 1, -1), c(0, 1, 0.5, 0))
  for (k in 1:3) {
    ref <- lme4_reference(r ~ time + arm + (1 + time | subject), cbind(data, r = y[k, ]))
    for (h in 1:2) {
      want <- lmerTest::contest1D(ref, l[h, ])
      row <- res[res$feature == rownames(y)[k] & res$contrast == c("b_vs_c", "time + armb / 2")[h], ]
      expect_equal(row$estimate, want$Estimate, tolerance = 1e-6)
      expect_equal(row$std_error, want$`Std. Error`, tolerance = 1e-6)
      expect_equal(row$df, want$df, tolerance = 1e-6)
      expect_equal(row$statistic, want$`t value`, tolerance = 1e-6)
      expect_equal(row$p_value, want$`Pr(>|t|)`, tolerance = 1e-6)
    }
  }
  # The gap above is the two optimisers' theta (1e-8 relative); at our theta the contrast
  # arithmetic is exact, and the df, a Richardson derivative of the deviance in both
  # tools, agrees to 1e-8.
  fits <- lmm_fits(fit)
  for (k in 1:3) {
    theta <- unname(unlist(fits[k, grep("^theta_", names(fits))]))
    at_ours <- suppressMessages(lmerTest::lmer(r ~ time + arm + (1 + time | subject), cbind(data, r = y[k, ]),
                                               start = list(theta = theta),
                                               control = lme4::lmerControl(optimizer = NULL)))
    for (h in 1:2) {
      want <- lmerTest::contest1D(at_ours, l[h, ])
      row <- res[res$feature == rownames(y)[k] & res$contrast == c("b_vs_c", "time + armb / 2")[h], ]
      expect_equal(row$estimate, want$Estimate, tolerance = 1e-10)
      expect_equal(row$std_error, want$`Std. Error`, tolerance = 1e-10)
      expect_equal(row$statistic, want$`t value`, tolerance = 1e-10)
      expect_equal(row$df, want$df, tolerance = 2e-8)
      expect_equal(row$p_value, want$`Pr(>|t|)`, tolerance = 1e-8)
    }
  }
  # a single coefficient has the df of lmm_table() itself
  one <- contrast(fit, "time")
  expect_equal(one$df, fit$df[fit$term == "time"], tolerance = 1e-8)
  expect_equal(one$std_error, fit$std_error[fit$term == "time"], tolerance = 1e-12)
  # Wald z fits give z-tests
  z <- contrast(lmm_table(y, ~ time + arm + (1 + time | subject), data, p_values = "z", threads = 1), exprs)
  expect_equal(z$df, rep(Inf, 6))
  expect_equal(z$p_value, 2 * pnorm(-abs(z$statistic)), tolerance = 1e-12)
  expect_error(contrast(fit, c(0, 1), threads = 1), "`contrast` has 2 weights")
  expect_error(contrast(fit, "time", bar = 2), "contrast\\(\\) has no argument `bar`")
})

test_that("features without a fit give NA rows with their reason, left out of the FDR", {
  y <- rbind(counts[1:3, ], zero = 0)
  fit <- suppressWarnings(nb_regression(y, mean = ~ dose + age, data = cells))
  res <- contrast(fit, c("dosehigh - doselow", "age"), joint = FALSE)
  zero <- res[res$feature == "zero", ]
  expect_true(all(is.na(zero$estimate) & is.na(zero$p_value) & is.na(zero$fdr)))
  expect_identical(zero$reason, rep("all counts are zero", 2))
  ok <- res[res$feature != "zero" & res$contrast == "age", ]
  expect_equal(ok$fdr, p.adjust(ok$p_value, "BH"), tolerance = 1e-12)
  # the shared plots take a contrast table
  expect_s3_class(plot_volcano(res), "ggplot")
  expect_s3_class(plot_pvalues(res), "ggplot")

  set.seed(3)
  data <- data.frame(subject = factor(rep(1:8, each = 4)), time = rep(0:3, 8))
  m <- rbind(a = rnorm(32) + rnorm(8)[data$subject], flat = 1)
  lfit <- lmm_table(m, ~ time + (1 | subject), data, threads = 1)
  lres <- contrast(lfit, "(Intercept) + 2 * time")
  expect_identical(lres$reason, c(NA, "no residual variance"))
  expect_true(is.na(lres$df[2]) && is.na(lres$p_value[2]) && !is.na(lres$df[1]))
})

test_that("difference-in-differences tables are refused with the reason", {
  trial <- simulate_trial(n_genes = 250, n_cells = 600, seed = 3)
  design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
                         celltype = "cell_type", baseline = "Pre", followup = "Post")
  tab <- suppressMessages(suppressWarnings(did_table(trial[1:5, ], design)))
  expect_error(contrast(tab, c(1)), "`fit` must be an nb_regression\\(\\) fit .* no covariance")
})

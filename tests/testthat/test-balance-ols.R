# Linear models without random terms (gneiss's `ols`) through lmm_table() and
# balance_lmm(): every statistic against lm() per response, cross-validated prediction
# errors against refitting lm() by hand, calibration under a null.

ols_data <- function(n = 30, n_resp = 4, seed = 1) {
  set.seed(seed)
  data <- data.frame(ph = rnorm(n), site = factor(rep(c("a", "b", "c"), length.out = n)))
  y <- t(vapply(seq_len(n_resp), function(k) 0.5 * k * data$ph + c(a = 0, b = 1, c = -1)[data$site] + rnorm(n),
                numeric(n)))
  rownames(y) <- paste0("y", seq_len(n_resp) - 1L)
  list(y = y, data = data)
}

test_that("a formula without random terms is OLS, equal to lm() per response (issue 17)", {
  d <- ols_data()
  for (rhs in c("~ ph + site", "~ ph * site", "~ 0 + ph + site", "~ ph")) {
    fit <- lmm_table(d$y, as.formula(rhs), d$data)
    expect_match(attr(fit, "method"), "OLS")
    tab <- as.data.frame(fit)
    fits <- lmm_fits(fit)
    for (k in seq_len(nrow(d$y))) {
      ref <- lm(as.formula(paste("y", rhs)), cbind(d$data, y = d$y[k, ]))
      s <- summary(ref)
      rows <- tab[tab$feature == rownames(d$y)[k], ]
      expect_equal(rows$term, rownames(s$coefficients))
      expect_equal(rows$estimate, unname(coef(ref)), tolerance = 1e-10)
      expect_equal(rows$std_error, unname(s$coefficients[, 2]), tolerance = 1e-10)
      expect_equal(rows$statistic, unname(s$coefficients[, 3]), tolerance = 1e-10)
      expect_equal(rows$df, rep(ref$df.residual, nrow(rows)))
      expect_equal(rows$p_value, unname(s$coefficients[, 4]), tolerance = 1e-10)
      expect_equal(rows$r_squared, rep(s$r.squared, nrow(rows)), tolerance = 1e-10)
      expect_equal(fits$r_squared[k], s$r.squared, tolerance = 1e-10)
      expect_equal(fits$adj_r_squared[k], s$adj.r.squared, tolerance = 1e-10)
      expect_equal(fits$sigma[k], s$sigma, tolerance = 1e-10)
      expect_equal(fits$logLik[k], as.numeric(logLik(ref, REML = TRUE)), tolerance = 1e-10)
      expect_equal(fits$loo_mse[k], mean((residuals(ref) / (1 - hatvalues(ref)))^2), tolerance = 1e-10)
      expect_equal(vcov(fit, k), vcov(ref), tolerance = 1e-10)
      expect_equal(unname(fitted(fit)[k, ]), unname(fitted(ref)), tolerance = 1e-10)
    }
    ml <- lmm_fits(lmm_table(d$y, as.formula(rhs), d$data, REML = FALSE))
    ref <- lm(as.formula(paste("y", rhs)), cbind(d$data, y = d$y[1, ]))
    expect_equal(ml$logLik[1], as.numeric(logLik(ref)), tolerance = 1e-10)
  }
  fit <- lmm_table(d$y, ~ ph + site, d$data)
  expect_equal(fit$fdr[fit$term == "ph"], p.adjust(fit$p_value[fit$term == "ph"], "BH"))
  z <- as.data.frame(lmm_table(d$y, ~ ph + site, d$data, p_values = "z"))
  expect_equal(z$p_value, 2 * pnorm(-abs(z$statistic)), tolerance = 1e-10)
  # a contrast is t with the residual df, as lm's
  con <- contrast(fit, "siteb - sitec")
  ref <- lm(y ~ ph + site, cbind(d$data, y = d$y[2, ]))
  l <- c(0, 0, 1, -1)
  est <- sum(l * coef(ref))
  se <- sqrt(drop(t(l) %*% vcov(ref) %*% l))
  expect_equal(con$estimate[2], est, tolerance = 1e-10)
  expect_equal(con$std_error[2], se, tolerance = 1e-10)
  expect_equal(con$df[2], ref$df.residual)
  expect_equal(con$p_value[2], 2 * pt(-abs(est / se), ref$df.residual), tolerance = 1e-10)
  pred <- predict(fit, newdata = data.frame(ph = c(0, 1), site = c("a", "c")))
  expect_equal(unname(pred[1, ]), unname(predict(ref <- lm(y ~ ph + site, cbind(d$data, y = d$y[1, ])),
                                                   data.frame(ph = c(0, 1), site = c("a", "c")))), tolerance = 1e-10)
  expect_length(nlme::ranef(fit), 0L)
})

test_that("balance_lmm() without groups or random terms fits OLS per balance, as gneiss's ols (issue 17)", {
  set.seed(2)
  parts <- paste0("taxon", 1:5)
  tree <- list(list("taxon1", "taxon2"), list("taxon3", list("taxon4", "taxon5")))
  meta <- data.frame(ph = runif(25, 4, 8))
  x <- matrix(rpois(5 * 25, 40) + 1, 5, dimnames = list(parts, paste0("s", 1:25)))
  fit <- balance_lmm(x, ~ ph, meta, tree)
  b <- balances(x, tree)
  for (k in rownames(b)) {
    ref <- summary(lm(b[k, ] ~ ph, meta))
    rows <- fit[fit$feature == k, ]
    expect_equal(rows$estimate, unname(ref$coefficients[, 1]), tolerance = 1e-10)
    expect_equal(rows$p_value, unname(ref$coefficients[, 4]), tolerance = 1e-10)
    expect_equal(1 - rows$r_squared[1], 1 - ref$r.squared, tolerance = 1e-10)
  }
  prop <- predict(fit, type = "proportion")
  expect_equal(unname(colSums(prop)), rep(1, 25))
  expect_equal(balances(prop, tree), predict(fit), ignore_attr = TRUE)
})

test_that("prediction_error(): leave-one-out and k-fold equal refitting lm() by hand (issue 17)", {
  d <- ols_data(n = 24, n_resp = 3, seed = 3)
  fit <- lmm_table(d$y, ~ ph + site, d$data)
  brute <- function(fold) {
    do.call(rbind, lapply(sort(unique(fold)), function(k) {
      train <- fold != k
      rss <- tss <- pred <- 0
      for (r in seq_len(nrow(d$y))) {
        dd <- cbind(d$data, y = d$y[r, ])
        m <- lm(y ~ ph + site, dd[train, ])
        rss <- rss + sum(residuals(m)^2)
        tss <- tss + sum((dd$y[train] - mean(dd$y[train]))^2)
        pred <- pred + sum((dd$y[!train] - predict(m, dd[!train, ]))^2)
      }
      data.frame(fold = k, n_test = sum(!train), model_mse = rss / (sum(train) * nrow(d$y)),
                 r_squared = 1 - rss / tss, pred_mse = pred / (sum(!train) * nrow(d$y)))
    }))
  }
  loo <- prediction_error(fit)
  expect_equal(loo, brute(seq_len(24)), tolerance = 1e-10)
  # the mean LOO error is the per-response PRESS / n averaged over responses
  expect_equal(mean(loo$pred_mse), mean(lmm_fits(fit)$loo_mse), tolerance = 1e-10)
  k4 <- prediction_error(fit, folds = 4, seed = 7)
  set.seed(7)
  fold <- sample(rep_len(1:4, 24))
  expect_equal(k4, brute(fold), tolerance = 1e-10)
  expect_equal(prediction_error(fit, folds = 4, seed = 7), k4)
  set.seed(5)
  a <- prediction_error(fit, folds = 3)
  set.seed(5)
  expect_equal(prediction_error(fit, folds = 3), a)
  expect_error(prediction_error(fit, folds = 1), "`folds` must be a single whole number >= 2")
  expect_error(prediction_error(fit, folds = 25), "`folds` = 25 is too large")
  mixed <- lmm_table(d$y, ~ ph + (1 | site), d$data)
  expect_error(prediction_error(mixed), "`fit` must be a linear model without random terms")
  # a fold without level c of site leaves a rank-deficient training design: NA errors
  lone <- d
  lone$data$site <- factor(c("c", rep(c("a", "b"), length.out = 23)))
  lo <- prediction_error(lmm_table(lone$y, ~ ph + site, lone$data))
  expect_true(is.na(lo$pred_mse[1]))
  expect_false(anyNA(lo$pred_mse[-1]))
})

test_that("OLS p-values are uniform under the null; constant responses get NA rows with a reason", {
  set.seed(6)
  data <- data.frame(g = rnorm(40))
  y <- matrix(rnorm(2000 * 40), 2000, dimnames = list(paste0("r", 1:2000), NULL))
  p <- as.data.frame(lmm_table(y, ~ g, data))
  p <- p$p_value[p$term == "g"]
  expect_gt(suppressWarnings(ks.test(p, "punif"))$p.value, 0.001)
  y[3, ] <- 2
  fit <- lmm_table(y[1:5, ], ~ g, data)
  rows <- fit[fit$feature == "r3", ]
  expect_true(all(is.na(rows$estimate)) && all(!is.na(rows$reason)))
  expect_true(is.na(lmm_fits(fit)$r_squared[3]))
  expect_error(lmm_table(y[1:5, ], ~ g + I(2 * g), data), "rank-deficient")
})

# Mixed models for many responses: agreement with lme4 (fixed effects, variance
# components, REML criterion / logLik) and lmerTest (Satterthwaite df and p), singular
# fits, null calibration, bad input.

expect_matches_lme4 <- function(fit, ref, feature = 1L) {
  s <- summary(ref)$coefficients
  ours <- as.data.frame(fit)
  ours <- ours[ours$feature == unique(ours$feature)[feature], ]
  expect_equal(ours$estimate, unname(s[, "Estimate"]), tolerance = 1e-6)
  expect_equal(ours$std_error, unname(s[, "Std. Error"]), tolerance = 1e-6)
  expect_equal(ours$df, unname(s[, "df"]), tolerance = 1e-4)
  expect_equal(ours$p_value, unname(s[, "Pr(>|t|)"]), tolerance = 1e-4)
  fits <- lmm_fits(fit)[feature, ]
  expect_equal(fits$sigma, sigma(ref), tolerance = 1e-6)
  expect_equal(unname(unlist(fits[grep("^theta_", names(fits))])), unname(lme4::getME(ref, "theta")),
               tolerance = 1e-5)
  vc <- as.data.frame(lme4::VarCorr(ref))
  sds <- vc$sdcor[vc$grp != "Residual" & is.na(vc$var2)]
  expect_equal(unname(unlist(fits[grep("^sd_", names(fits))])), sds, tolerance = 1e-6)
  expect_equal(unname(logLik(fit)[feature]), as.numeric(logLik(ref)), tolerance = 1e-6)
  if (lme4::isREML(ref)) expect_equal(fits$REMLcrit, unname(lme4::REMLcrit(ref)), tolerance = 1e-6)
  expect_equal(fits$singular, lme4::isSingular(ref))
}

test_that("sleepstudy: random intercept and correlated slope equal lme4 and lmerTest", {
  skip_if_not_installed("lme4")
  skip_if_not_installed("lmerTest")
  data("sleepstudy", package = "lme4", envir = environment())
  y <- matrix(sleepstudy$Reaction, 1, dimnames = list("Reaction", NULL))
  for (rhs in c("Days + (1 | Subject)", "Days + (Days | Subject)", "Days + (Days || Subject)",
                "Days + (1 | Subject) + (0 + Days | Subject)")) {
    for (reml in c(TRUE, FALSE)) {
      fit <- lmm_table(y, stats::as.formula(paste("~", rhs)), sleepstudy, REML = reml, threads = 1)
      ref <- lme4_reference(stats::as.formula(paste("Reaction ~", rhs)), sleepstudy, REML = reml)
      expect_matches_lme4(fit, ref)
      re <- lme4::ranef(ref)
      expect_equal(matrix(nlme::ranef(fit)$Subject[, , 1], 18L), unname(as.matrix(do.call(cbind, re))), tolerance = 1e-5)
      expect_equal(c(fitted(fit)), unname(fitted(ref)), tolerance = 1e-6)
      expect_equal(c(residuals(fit)), unname(residuals(ref)), tolerance = 1e-5)
    }
  }
})

test_that("Orthodont: factor covariates and a random slope equal lme4 and lmerTest", {
  skip_if_not_installed("lme4")
  skip_if_not_installed("lmerTest")
  skip_if_not_installed("nlme")
  data("Orthodont", package = "nlme", envir = environment())
  orth <- as.data.frame(Orthodont)
  orth$Subject <- factor(as.character(orth$Subject))
  orth$Sex <- factor(as.character(orth$Sex))
  y <- matrix(orth$distance, 1, dimnames = list("distance", NULL))
  for (rhs in c("age + Sex + (1 | Subject)", "age * Sex + (age | Subject)")) {
    fit <- lmm_table(y, stats::as.formula(paste("~", rhs)), orth, threads = 1)
    ref <- lme4_reference(stats::as.formula(paste("distance ~", rhs)), orth)
    expect_matches_lme4(fit, ref)
  }
})

test_that("crossed and nested grouping factors equal lme4 and lmerTest", {
  skip_if_not_installed("lme4")
  skip_if_not_installed("lmerTest")
  data("Penicillin", package = "lme4", envir = environment())
  y <- matrix(Penicillin$diameter, 1, dimnames = list("diameter", NULL))
  fit <- lmm_table(y, ~ 1 + (1 | plate) + (1 | sample), Penicillin)
  ref <- lme4_reference(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin)
  expect_matches_lme4(fit, ref)
  re <- nlme::ranef(fit)
  expect_equal(unname(re$plate[, 1, 1]), unname(lme4::ranef(ref)$plate[, 1]), tolerance = 1e-5)
  expect_equal(c(fitted(fit)), unname(fitted(ref)), tolerance = 1e-6)
  data("Pastes", package = "lme4", envir = environment())
  pastes <- cbind(Pastes, x = rep(c(-1, 0, 1), length.out = nrow(Pastes)))
  y <- matrix(pastes$strength, 1, dimnames = list("strength", NULL))
  fit <- lmm_table(y, ~ x + (1 | batch) + (1 | sample), pastes)
  ref <- lme4_reference(strength ~ x + (1 | batch) + (1 | sample), pastes)
  expect_matches_lme4(fit, ref)
  # a correlated slope per subject and an intercept per site
  set.seed(21)
  d <- data.frame(subject = factor(rep(1:30, each = 5)), time = rep(0:4, 30), site = factor(rep(1:6, each = 25)))
  d$y <- rnorm(6, sd = 2)[d$site] + rnorm(30)[d$subject] + rnorm(30, sd = 0.5)[d$subject] * d$time + rnorm(150)
  fit <- lmm_table(matrix(d$y, 1, dimnames = list("y", NULL)), ~ time + (1 + time | subject) + (1 | site), d)
  ref <- lme4_reference(y ~ time + (1 + time | subject) + (1 | site), d)
  expect_matches_lme4(fit, ref)
  expect_equal(unname(nlme::ranef(fit)$subject[, , 1]), unname(as.matrix(lme4::ranef(ref)$subject)), tolerance = 1e-5)
  expect_equal(c(predict(fit)), unname(fitted(ref)), tolerance = 1e-6)
})

simulate_longitudinal <- function(n_resp, n_subj = 20, n_visit = 5, sd_slope = 0.3, seed = 1) {
  set.seed(seed)
  data <- data.frame(subject = factor(rep(seq_len(n_subj), each = n_visit)),
                     time = rep(seq_len(n_visit) - 1, n_subj),
                     treatment = factor(rep(rep(c("a", "b"), length.out = n_subj), each = n_visit)))
  y <- t(vapply(seq_len(n_resp), function(k) {
    b0 <- rnorm(n_subj, sd = 1)
    b1 <- 0.5 * b0 + rnorm(n_subj, sd = sd_slope)
    0.2 * data$time + b0[data$subject] + b1[data$subject] * data$time + rnorm(nrow(data), sd = 0.7)
  }, numeric(nrow(data))))
  rownames(y) <- paste0("balance", seq_len(n_resp))
  list(y = y, data = data)
}

test_that("simulated balances with a correlated random slope equal lme4 and lmerTest", {
  skip_if_not_installed("lme4")
  skip_if_not_installed("lmerTest")
  sim <- simulate_longitudinal(4)
  fit <- lmm_table(sim$y, ~ time + treatment + (1 + time | subject), sim$data, threads = 2)
  for (k in seq_len(4)) {
    d <- cbind(sim$data, y = sim$y[k, ])
    ref <- lme4_reference(y ~ time + treatment + (1 + time | subject), d)
    expect_matches_lme4(fit, ref, feature = k)
  }
  # the same answer whatever the number of threads
  again <- lmm_table(sim$y, ~ time + treatment + (1 + time | subject), sim$data, threads = 1)
  expect_identical(coef(again), coef(fit))
})

test_that("the optimum is never worse than lme4's, near and on the boundary", {
  skip_if_not_installed("lme4")
  set.seed(5)
  data <- data.frame(subject = factor(rep(1:12, each = 4)), time = rep(0:3, 12))
  n <- 45
  sd_b0 <- rep(c(0, 0.3, 1), length.out = n)
  sd_b1 <- sample(rep(c(0, 0.1, 0.5), length.out = n))
  y <- t(vapply(seq_len(n), function(k) {
    b0 <- rnorm(12, sd = sd_b0[k])
    b1 <- rnorm(12, sd = sd_b1[k])
    b0[data$subject] + b1[data$subject] * data$time + rnorm(48)
  }, numeric(48)))
  rownames(y) <- paste0("r", seq_len(n))
  fits <- lmm_fits(lmm_table(y, ~ time + (1 + time | subject), data))
  lme4_crit <- vapply(seq_len(n), function(k) {
    d <- cbind(data, y = y[k, ])
    lme4::REMLcrit(suppressMessages(lme4::lmer(y ~ time + (1 + time | subject), d)))
  }, numeric(1))
  expect_true(all(fits$converged))
  expect_true(all(fits$REMLcrit <= lme4_crit + 1e-6))
  expect_true(any(fits$singular))
})

test_that("singular fits are flagged as lme4 does", {
  skip_if_not_installed("lme4")
  set.seed(3)
  data <- data.frame(subject = factor(rep(1:10, each = 4)), time = rep(0:3, 10))
  # subject means all equal: no between-subject variance, the optimum is at theta = 0
  noise <- rnorm(40)
  y <- matrix(noise - ave(noise, data$subject) + 0.1 * data$time, 1, dimnames = list("noise", NULL))
  fit <- lmm_table(y, ~ time + (1 | subject), data)
  ref <- lme4_reference(y ~ time + (1 | subject), cbind(data, y = y[1, ]))
  expect_equal(lmm_fits(fit)$singular, lme4::isSingular(ref))
  expect_true(lmm_fits(fit)$singular)
  expect_equal(fit$estimate, unname(lme4::fixef(ref)), tolerance = 1e-6)
  expect_equal(unname(logLik(fit)), as.numeric(logLik(ref)), tolerance = 1e-6)
  expect_equal(fit$df, unname(summary(ref)$coefficients[, "df"]), tolerance = 1e-4)
  expect_equal(fit$p_value, unname(summary(ref)$coefficients[, "Pr(>|t|)"]), tolerance = 1e-4)
})

test_that("p-values are uniform under the null (KS)", {
  sim <- simulate_longitudinal(400, n_subj = 12, n_visit = 4, seed = 7)
  fit <- lmm_table(sim$y, ~ time + treatment + (1 | subject), sim$data)
  p <- fit$p_value[fit$term == "treatmentb"]
  expect_gt(stats::ks.test(p, "punif")$p.value, 0.01)
  z <- lmm_table(sim$y, ~ time + treatment + (1 | subject), sim$data, p_values = "z")
  expect_true(all(is.infinite(z$df)))
  expect_equal(z$estimate, fit$estimate)
  expect_equal(z$p_value, 2 * stats::pnorm(-abs(z$statistic)), tolerance = 1e-12)
})

test_that("methods: coef, fixef, ranef, predict, summary, constant responses", {
  skip_if_not_installed("lme4")
  sim <- simulate_longitudinal(3, n_subj = 8, n_visit = 4)
  y <- rbind(sim$y, flat = 2)
  fit <- lmm_table(y, ~ time + (1 | subject), sim$data)
  expect_s3_class(fit, "sceffects_results")
  expect_equal(dim(coef(fit)), c(4L, 2L))
  expect_identical(nlme::fixef(fit), coef(fit))
  expect_equal(dim(nlme::ranef(fit)$subject), c(8L, 1L, 4L))
  expect_true(all(is.na(fit$estimate[fit$feature == "flat"])))
  expect_equal(unique(fit$reason[fit$feature == "flat"]), "no residual variance")
  pop <- predict(fit, newdata = sim$data[1:4, ], re.form = NA)
  expect_equal(unname(pop[1, ]), unname(coef(fit)[1, 1] + coef(fit)[1, 2] * sim$data$time[1:4]))
  expect_equal(predict(fit)[, 1:4], predict(fit, newdata = sim$data[1:4, ]), ignore_attr = TRUE)
  for (k in 1:3) {
    ref <- lme4::lmer(y ~ time + (1 | subject), data = cbind(sim$data, y = sim$y[k, ]))
    expect_equal(unname(residuals(fit)[k, ]), unname(stats::residuals(ref)), tolerance = 1e-4)
  }
  expect_output(print(summary(fit)), "responses")
  expect_equal(dim(vcov(fit, "balance1")), c(2L, 2L))
  # gneiss's layout (a data.frame with samples in rows) and a SummarizedExperiment
  gneiss_layout <- as.data.frame(t(sim$y))
  expect_equal(coef(lmm_table(gneiss_layout, ~ time + (1 | subject), sim$data)), coef(fit)[1:3, ])
  # named samples are matched by name, as gneiss joins table and metadata
  named <- sim$y
  colnames(named) <- paste0("sample", seq_len(ncol(named)))
  meta <- sim$data
  rownames(meta) <- colnames(named)
  shuffled <- meta[rev(seq_len(nrow(meta))), ]
  expect_equal(coef(lmm_table(named, ~ time + (1 | subject), shuffled)), coef(fit)[1:3, ])
  expect_error(lmm_table(named, ~ time + (1 | subject), shuffled[-1, ]), "`data` has no row for sample")
  se <- SummarizedExperiment::SummarizedExperiment(list(balance = sim$y), colData = S4Vectors::DataFrame(sim$data))
  expect_equal(coef(lmm_table(se, ~ time + (1 | subject))), coef(fit)[1:3, ])
  sparse <- Matrix::Matrix(pmax(round(sim$y), 0), sparse = TRUE)
  expect_equal(coef(lmm_table(sparse, ~ time + (1 | subject), sim$data)),
               coef(lmm_table(as.matrix(sparse), ~ time + (1 | subject), sim$data)))
})

test_that("BiocParallel workers give the same table", {
  skip_if_not_installed("BiocParallel")
  skip_on_os("windows")
  sim <- simulate_longitudinal(30, n_subj = 8, n_visit = 3)
  one <- lmm_table(sim$y, ~ time + (1 | subject), sim$data)
  split <- lmm_table(sim$y, ~ time + (1 | subject), sim$data, BPPARAM = BiocParallel::MulticoreParam(2))
  expect_equal(as.data.frame(split), as.data.frame(one), ignore_attr = TRUE)
})

test_that("bad input stops with a message naming the argument", {
  sim <- simulate_longitudinal(2, n_subj = 6, n_visit = 3)
  expect_error(lmm_table(sim$y, y ~ time + (1 | subject), sim$data), "`formula` must be one-sided")
  expect_error(lmm_table(sim$y, ~ time + (1 | subject) + (1 | subject), sim$data), "repeats the random effect")
  expect_error(lmm_table(sim$y, ~ dose + (1 | subject), sim$data), "`data` has no column dose")
  expect_error(lmm_table(`dimnames<-`(t(sim$y), list(1:18, NULL)), ~ time + (1 | subject), sim$data), "`data` has 18 rows")
  bad <- sim$data
  bad$time[2] <- NA
  expect_error(lmm_table(sim$y, ~ time + (1 | subject), bad), "`data` has missing values in time")
  bad <- sim$data
  bad$time2 <- 2 * bad$time
  expect_error(lmm_table(sim$y, ~ time + time2 + (1 | subject), bad), "rank-deficient")
  expect_error(lmm_table(sim$y, ~ time + (1 + time | subject), sim$data[, c("subject", "time")][rep(1:6, 3), ][1:18, ]),
               NA)
  yy <- sim$y
  yy[1, 1] <- Inf
  expect_error(lmm_table(yy, ~ time + (1 | subject), sim$data), "`x` contains infinite values")
  expect_error(lmm_table(sim$y, ~ time + (1 | subject), sim$data, REML = NA), "`REML`")
  yy[1, 1] <- NA
  expect_error(lmm_table(yy, ~ time + (1 | subject), sim$data), "`x` contains NA values")
  expect_error(lmm_table(sim$y, ~ time + (1 + time | subject), sim$data[1:18, ][order(sim$data$time), ][, c("subject", "time")] |>
                 transform(subject = factor(rep(1:9, 2)))), "not identifiable")
})

test_that("a response without residual variance has NA estimate and p-value, outside the FDR", {
  sim <- simulate_longitudinal(3, n_subj = 8, n_visit = 4)
  y <- rbind(sim$y, flat = 2, linear = 1 + 0.5 * sim$data$time)
  fit <- lmm_table(y, ~ time + (1 | subject), sim$data)
  for (f in c("flat", "linear")) {
    rows <- fit[fit$feature == f, ]
    expect_true(all(is.na(rows$estimate) & is.na(rows$std_error) & is.na(rows$statistic) &
                      is.na(rows$p_value) & is.na(rows$log_p) & is.na(rows$fdr)))
    expect_equal(unique(rows$reason), "no residual variance")
  }
  time_rows <- fit[fit$term == "time", ]
  expect_equal(time_rows$fdr, p.adjust(time_rows$p_value, "BH"))
  expect_equal(sum(!is.na(time_rows$fdr)), 3L)
  z <- lmm_table(y, ~ time + (1 | subject), sim$data, p_values = "z")
  expect_true(all(is.na(z$p_value[z$feature %in% c("flat", "linear")])))
})

test_that("predict() without the grouping column says so; re.form = NA does not need it", {
  sim <- simulate_longitudinal(2, n_subj = 6, n_visit = 3)
  fit <- lmm_table(sim$y, ~ time + (1 | subject), sim$data)
  expect_error(predict(fit, newdata = data.frame(time = 1)), "`newdata` has no column subject.*re.form = NA")
  expect_error(predict(fit, newdata = data.frame(subject = "1")), "`newdata` has no column time")
  expect_equal(dim(predict(fit, newdata = data.frame(time = 1:2), re.form = NA)), c(2L, 2L))
  expect_error(predict(fit, newdata = as.matrix(sim$data)), "`newdata` must be a data.frame")
  expect_error(predict(fit, re.form = ~ 0), "`re.form`")
  expect_error(predict(fit, level = 0), "predict\\(\\) has no argument `level`")
  expect_error(coef(fit, 2), "coef\\(\\) has no argument")
  expect_error(fitted(fit, foo = 1), "fitted\\(\\)")
  expect_error(vcov(fit, 1.5), "`feature`")
  expect_error(vcov(fit, 0), "`feature`")
})

test_that("lme4's nesting operator a/b is a and b:a, as lme4 expands it (issue 17)", {
  skip_if_not_installed("lme4")
  skip_if_not_installed("lmerTest")
  set.seed(17)
  d <- data.frame(site = factor(rep(c("A", "B", "C", "D", "E", "F"), each = 20)),
                  subject = factor(rep(rep(1:5, each = 4), 6)), time = rep(0:3, 30))
  site_eff <- rnorm(6, sd = 1.5)
  subj_eff <- rnorm(30, sd = 0.8)
  d$y <- 0.3 * d$time + site_eff[d$site] + subj_eff[interaction(d$subject, d$site)] + rnorm(120, sd = 0.5)
  y <- matrix(d$y, 1, dimnames = list("y", NULL))
  fit <- lmm_table(y, ~ time + (1 | site/subject), d)
  ref <- lme4_reference(y ~ time + (1 | site/subject), d)
  expect_matches_lme4(fit, ref)
  expect_equal(sort(names(nlme::ranef(fit))), sort(names(lme4::ranef(ref))))
  expect_equal(unname(nlme::ranef(fit)[["subject:site"]][, 1, 1]),
               unname(lme4::ranef(ref)[["subject:site"]][nlme::ranef(fit)[["subject:site"]] |> rownames(), 1]),
               tolerance = 1e-5)
  expect_equal(coef(fit), coef(lmm_table(y, ~ time + (1 | site) + (1 | subject:site), d)))
  # three levels: a/b/c is a + b:a + c:b:a
  d$rep <- factor(rep(1:2, 60))
  fit3 <- lmm_table(y, ~ time + (1 | site/subject/rep), d)
  ref3 <- suppressMessages(lme4::lmer(y ~ time + (1 | site/subject/rep), d))
  expect_setequal(names(nlme::ranef(fit3)), names(lme4::ranef(ref3)))
  expect_setequal(rownames(nlme::ranef(fit3)[["rep:(subject:site)"]]), rownames(lme4::ranef(ref3)[["rep:(subject:site)"]]))
  sim <- simulate_longitudinal(2, n_subj = 8, n_visit = 3)
  sim$data$site <- factor(rep(c("s1", "s2"), length.out = nrow(sim$data)))
  expect_error(lmm_table(sim$y, ~ time + (1 | log(subject)), sim$data), "grouping factor log\\(subject\\) must be a column")
  d <- sim$data
  d$site_subject <- interaction(d$site, d$subject, sep = ":", drop = TRUE)
  d$site_chr <- as.character(d$site)
  d$subject_chr <- as.character(d$subject)
  a <- lmm_table(sim$y, ~ time + (1 | site_chr:subject_chr), d)
  b <- lmm_table(sim$y, ~ time + (1 | site_subject), d)
  expect_equal(coef(a), coef(b))
})

test_that("BPPARAM is checked up front; the user's objects are left unchanged", {
  sim <- simulate_longitudinal(2, n_subj = 6, n_visit = 3)
  expect_error(lmm_table(sim$y, ~ time + (1 | subject), sim$data, BPPARAM = 2), "`BPPARAM`")
  y0 <- sim$y
  d0 <- sim$data
  fit <- lmm_table(sim$y, ~ time + (1 | subject), sim$data)
  predict(fit, newdata = sim$data)
  expect_identical(sim$y, y0)
  expect_identical(sim$data, d0)
})

test_that("a data.frame is read in gneiss's layout with a message; an ExpressionSet with its pData (issue 13)", {
  sim <- simulate_longitudinal(3, n_subj = 8, n_visit = 4)
  ref <- coef(lmm_table(sim$y, ~ time + (1 | subject), sim$data))
  expect_message(fit <- lmm_table(as.data.frame(t(sim$y)), ~ time + (1 | subject), sim$data),
                 "`x` is a data.frame: read as colData")
  expect_equal(coef(fit), ref)
  skip_if_not_installed("Biobase")
  y <- sim$y
  colnames(y) <- paste0("s", seq_len(ncol(y)))
  pd <- sim$data
  rownames(pd) <- colnames(y)
  eset <- Biobase::ExpressionSet(assayData = y, phenoData = Biobase::AnnotatedDataFrame(pd))
  expect_equal(coef(lmm_table(eset, ~ time + (1 | subject))), ref)
})

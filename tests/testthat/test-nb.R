# Negative binomial regression against MASS::glm.nb (dispersion ~ 1) and glmmTMB
# (nbinom2 + dispformula) on the same data, calibration under a null, bad input and
# degenerate genes.

sim_cells <- function(n, seed) {
  set.seed(seed)
  data.frame(dose = rnorm(n), batch = factor(sample(c("a", "b", "c"), n, replace = TRUE)))
}

sim_counts <- function(cells, n_genes, seed, beta = c(1, 0.4), gamma = c(0.7, -0.8)) {
  set.seed(seed)
  mu <- exp(beta[1] + beta[2] * cells$dose)
  size <- exp(gamma[1] + gamma[2] * (cells$batch == "b"))
  y <- t(replicate(n_genes, rnbinom(nrow(cells), size = size, mu = mu * exp(rnorm(1, 0, 0.5)))))
  rownames(y) <- sprintf("gene%02d", seq_len(n_genes))
  y
}

# Relative difference with a floor of 1 on the scale (coefficients near 0).
expect_close <- function(object, expected, tol = 1e-5) {
  object <- unname(as.numeric(object))
  expected <- unname(as.numeric(expected))
  expect_true(all(abs(object - expected) <= tol * pmax(1, abs(expected))),
              info = sprintf("max difference %g", max(abs(object - expected))))
}

# glmmTMB's optimiser (nlminb) stops where the log-likelihood is flat to ~1e-8, so its
# coefficients can sit ~1e-5 from the optimum along weakly determined directions: they
# must agree to 1e-5 relative or within 1e-4 standard errors, and our log-likelihood must
# be at least glmmTMB's (and equal to 1e-9 relative).
expect_tmb <- function(fit, gene, ref) {
  se <- sqrt(diag(vcov(fit, gene)))
  ours <- c(coef(fit)[, gene], coef(fit, "dispersion")[, gene])
  theirs <- c(glmmTMB::fixef(ref)$cond, glmmTMB::fixef(ref)$disp)
  diff <- abs(ours - theirs)
  expect_true(all(diff <= 1e-5 * pmax(1, abs(theirs)) | diff <= 1e-4 * se),
              info = sprintf("%s: max difference %g", gene, max(diff)))
  expect_gte(unname(logLik(fit)[gene]), as.numeric(logLik(ref)) - 1e-9 * abs(as.numeric(logLik(ref))))
  expect_close(logLik(fit)[gene], logLik(ref), tol = 1e-9)
}

cells <- sim_cells(400, 1)
counts <- sim_counts(cells, 12, 2)

test_that("dispersion ~ 1 equals MASS::glm.nb: coefficients, theta and logLik", {
  fit <- nb_regression(counts, mean = ~ dose + batch, data = cells)
  expect_true(all(fit$converged))
  for (g in rownames(counts)) {
    ref <- MASS::glm.nb(counts[g, ] ~ dose + batch, data = cells,
                        control = glm.control(epsilon = 1e-12, maxit = 100))
    expect_close(coef(fit)[, g], coef(ref))
    expect_close(exp(coef(fit, "dispersion")[, g]), ref$theta)
    expect_close(logLik(fit)[g], logLik(ref))
  }
  expect_equal(nobs(fit), 400L)
  expect_equal(unname(AIC(fit)), -2 * unname(fit$loglik) + 2 * 5)
  expect_equal(unname(BIC(fit)), -2 * unname(fit$loglik) + log(400) * 5)
})

test_that("grouped dispersion fits (count tables, large counts, interleaved groups) equal glm.nb", {
  # dispersion ~ 1 and ~ 0 + batch take the grouped path: counts below 64 through tables,
  # larger ones through the gamma functions; the batches interleave, so the model holds
  # the cells reordered. With mean ~ 0 + batch too, each batch is its own glm.nb fit.
  set.seed(11)
  cells <- sim_cells(600, 4)
  mu <- exp(c(1, 4, 2.5)[as.integer(cells$batch)] + 0.3 * cells$dose)
  size <- c(0.8, 3, 20)[as.integer(cells$batch)]
  y <- rbind(large = rnbinom(600, size = size, mu = mu), small = rnbinom(600, size = 2, mu = 3))
  expect_true(max(y["large", ]) > 64 && min(y["large", ]) < 64)
  fit <- nb_regression(y, ~ dose, ~ 1, data = cells)
  for (g in rownames(y)) {
    ref <- MASS::glm.nb(y[g, ] ~ dose, data = cells, control = glm.control(epsilon = 1e-12, maxit = 100))
    expect_close(coef(fit)[, g], coef(ref))
    expect_close(exp(coef(fit, "dispersion")[, g]), ref$theta)
    expect_close(logLik(fit)[g], logLik(ref))
  }
  by_batch <- nb_regression(y, ~ 0 + batch, ~ 0 + batch, data = cells)
  for (b in levels(cells$batch)) {
    ref <- MASS::glm.nb(y["large", cells$batch == b] ~ 1, control = glm.control(epsilon = 1e-12, maxit = 100))
    expect_close(coef(by_batch)[paste0("batch", b), "large"], coef(ref))
    expect_close(exp(coef(by_batch, "dispersion")[paste0("batch", b), "large"]), ref$theta)
  }
})

test_that("a real count data set (MASS::quine) equals glm.nb", {
  quine <- MASS::quine
  y <- matrix(quine$Days, 1, dimnames = list("Days", NULL))
  fit <- nb_regression(y, mean = ~ Eth + Sex + Age + Lrn, data = quine)
  ref <- MASS::glm.nb(Days ~ Eth + Sex + Age + Lrn, data = quine,
                      control = glm.control(epsilon = 1e-12, maxit = 100))
  expect_close(coef(fit)[, 1], coef(ref))
  expect_close(exp(coef(fit, "dispersion")), ref$theta)
  expect_close(logLik(fit), logLik(ref))
})

test_that("dispersion formulas equal glmmTMB nbinom2 + dispformula: coefficients, logLik, vcov", {
  skip_if_not_installed("glmmTMB")
  fit <- nb_regression(counts[1:4, ], mean = ~ dose + batch, dispersion = ~ batch + dose, data = cells)
  for (g in rownames(counts)[1:4]) {
    d <- cbind(cells, y = counts[g, ])
    ref <- suppressWarnings(glmmTMB::glmmTMB(y ~ dose + batch, dispformula = ~ batch + dose,
                                             family = glmmTMB::nbinom2, data = d))
    expect_tmb(fit, g, ref)
    v <- vcov(ref, full = TRUE)
    expect_close(vcov(fit, g), v, tol = 1e-4)
  }
  quine <- MASS::quine
  y <- matrix(quine$Days, 1, dimnames = list("Days", NULL))
  fit <- nb_regression(y, mean = ~ Eth + Age, dispersion = ~ Eth + Sex, data = quine)
  ref <- suppressWarnings(glmmTMB::glmmTMB(Days ~ Eth + Age, dispformula = ~ Eth + Sex,
                                           family = glmmTMB::nbinom2, data = quine))
  expect_tmb(fit, "Days", ref)
})

test_that("real single-cell counts (SeuratObject::pbmc_small) equal glmmTMB", {
  skip_if_not_installed("glmmTMB")
  skip_if_not_installed("SeuratObject")
  pbmc <- SeuratObject::pbmc_small
  y <- SeuratObject::GetAssayData(pbmc, slot = "counts")
  meta <- pbmc[[]]
  meta$log_depth <- log(meta$nCount_RNA) - mean(log(meta$nCount_RNA))
  keep <- order(-Matrix::rowSums(y))[1:5]
  fit <- nb_regression(y[keep, ], mean = ~ log_depth, dispersion = ~ groups, data = meta)
  for (g in rownames(y)[keep]) {
    d <- cbind(meta, y = y[g, ])
    ref <- suppressWarnings(glmmTMB::glmmTMB(y ~ log_depth, dispformula = ~ groups,
                                             family = glmmTMB::nbinom2, data = d))
    expect_tmb(fit, g, ref)
  }
})

test_that("dense, sparse, SummarizedExperiment and thread counts give the same fit", {
  dense <- nb_regression(counts, ~ dose, ~ batch, data = cells, threads = 1)
  sparse <- nb_regression(methods::as(counts, "CsparseMatrix"), ~ dose, ~ batch, data = cells,
                          threads = 2, block_size = 5)
  se <- SummarizedExperiment::SummarizedExperiment(list(counts = counts), colData = cells)
  # size factors off: the same counts as the matrix (an SE's default uses them, see below)
  from_se <- nb_regression(se, ~ dose, ~ batch, size_factors = FALSE)
  expect_identical(coef(dense), coef(sparse))
  expect_identical(coef(dense, "dispersion"), coef(from_se, "dispersion"))
  expect_identical(logLik(dense), logLik(from_se))
})

test_that("DelayedArray, BiocParallel chunks and size-factor offsets give the same fit", {
  skip_if_not_installed("DelayedArray")
  skip_if_not_installed("BiocParallel")
  dense <- nb_regression(counts, ~ dose, ~ batch, data = cells)
  delayed <- nb_regression(DelayedArray::DelayedArray(counts), ~ dose, ~ batch, data = cells, block_size = 5)
  expect_identical(coef(dense), coef(delayed))
  split <- nb_regression(counts, ~ dose, ~ batch, data = cells, block_size = 4,
                         BPPARAM = BiocParallel::SerialParam())
  expect_identical(coef(dense, "dispersion"), coef(split, "dispersion"))
  sf <- exp(rnorm(400, 0, 0.2))
  sce <- SingleCellExperiment::SingleCellExperiment(list(counts = counts), colData = cells)
  SingleCellExperiment::sizeFactors(sce) <- sf
  with_sf <- nb_regression(sce, ~ dose, offset = "size_factors")
  expect_identical(coef(with_sf), coef(nb_regression(counts, ~ dose, data = cells, offset = log(sf))))
})

test_that("summary is a results table of Wald tests", {
  fit <- nb_regression(counts, ~ dose, ~ batch, data = cells)
  tab <- summary(fit)
  expect_s3_class(tab, "sceffects_results")
  expect_true(all(c("feature", "component", "term", "estimate", "std_error", "statistic", "df",
                    "p_value", "fdr", "converged", "reason") %in% names(tab)))
  expect_equal(nrow(tab), 12 * 5)
  row <- tab[tab$feature == "gene03" & tab$term == "batchb", ]
  expect_equal(row$component, "dispersion")
  expect_equal(row$std_error, sqrt(vcov(fit, "gene03")["dispersion:batchb", "dispersion:batchb"]))
  expect_equal(row$p_value, 2 * pnorm(-abs(row$estimate / row$std_error)))
  dose <- summary(fit, "mean")
  dose <- dose[dose$term == "dose", ]
  expect_equal(dose$fdr, p.adjust(dose$p_value, "BH"))
  expect_output(print(fit), "12 genes x 400 observations")
})

test_that("predict rebuilds the designs with the fit's levels; offsets enter the mean", {
  fit <- nb_regression(counts, ~ dose + batch, ~ batch, data = cells, offset = rep(log(2), 400))
  new <- data.frame(dose = c(0, 1), batch = factor(c("c", "a"), levels = c("c", "a")))
  b <- coef(fit)[, "gene01"]
  eta <- c(b[1] + b["batchc"], b[1] + b["dose"])
  expect_equal(unname(predict(fit, new, "link")["gene01", ]), unname(eta))
  expect_equal(unname(predict(fit, new, "mean", offset = c(1, 1))["gene01", ]), unname(exp(eta + 1)))
  g <- coef(fit, "dispersion")[, "gene01"]
  expect_equal(unname(predict(fit, new, "dispersion")["gene01", ]), unname(exp(c(g[1] + g["batchc"], g[1]))))
  fitted <- predict(fit)
  expect_equal(dim(fitted), c(12L, 400L))
  expect_equal(unname(fitted["gene01", 1]),
               unname(exp(log(2) + b[1] + b["dose"] * cells$dose[1] + sum(b[c("batchb", "batchc")] *
                                                                       (cells$batch[1] == c("b", "c"))))))
  expect_error(predict(fit, data.frame(dose = 1, batch = "z")), "z")
})

test_that("simulate is seeded and its refit gives back the parameters within their SEs", {
  big_cells <- sim_cells(3000, 5)
  truth <- nb_regression(sim_counts(big_cells, 1, 6, gamma = c(0.5, -0.5)), ~ dose, ~ batch, data = big_cells)
  a <- simulate(truth, seed = 9)
  expect_identical(a, simulate(truth, seed = 9))
  expect_false(identical(a, simulate(truth, seed = 10)))
  sims <- simulate(truth, nsim = 20, seed = 1)
  expect_length(sims, 20)
  refits <- sapply(sims, function(y) {
    f <- nb_regression(y, ~ dose, ~ batch, data = big_cells)
    c(coef(f)[, 1], coef(f, "dispersion")[, 1])
  })
  se <- sqrt(diag(vcov(truth, 1)))
  est <- c(coef(truth)[, 1], coef(truth, "dispersion")[, 1])
  z <- (rowMeans(refits) - est) / (se / sqrt(20))
  expect_true(all(abs(z) < 4))
  expect_equal(apply(refits, 1, sd) / se, rep(1, 5), tolerance = 0.5, ignore_attr = TRUE)
  sce <- SingleCellExperiment::SingleCellExperiment(list(counts = counts[1:3, ]), colData = cells)
  sim_sce <- simulate(nb_regression(sce, ~ dose), seed = 1)
  expect_s4_class(sim_sce, "SingleCellExperiment")
  expect_equal(dim(sim_sce), c(3L, 400L))
  sparse_fit <- nb_regression(methods::as(counts[1:3, ], "CsparseMatrix"), ~ dose, data = cells)
  expect_s4_class(simulate(sparse_fit, seed = 1), "dgCMatrix")
})

test_that("anova gives per-gene likelihood-ratio tests equal to glm.nb fits", {
  fit0 <- nb_regression(counts, ~ batch, data = cells)
  fit1 <- nb_regression(counts, ~ batch + dose, data = cells)
  tab <- anova(fit0, fit1)
  ref0 <- MASS::glm.nb(counts[1, ] ~ batch, data = cells, control = glm.control(epsilon = 1e-12))
  ref1 <- MASS::glm.nb(counts[1, ] ~ batch + dose, data = cells, control = glm.control(epsilon = 1e-12))
  lr <- 2 * (as.numeric(logLik(ref1)) - as.numeric(logLik(ref0)))
  expect_equal(tab$statistic[1], lr, tolerance = 1e-6)
  expect_equal(tab$p_value[1], pchisq(lr, 1, lower.tail = FALSE), tolerance = 1e-6)
  expect_equal(tab$df[1], 1)
  expect_error(anova(fit1, fit0), "more parameters")
  expect_error(anova(fit0), "two fits")
})

test_that("Wald and likelihood-ratio p-values are uniform under the null", {
  null_cells <- sim_cells(200, 21)
  set.seed(22)
  size <- exp(1.5 * (null_cells$batch == "a"))
  y <- matrix(rnbinom(400 * 200, size = rep(size, each = 400), mu = 4), 400, 200,
              dimnames = list(paste0("g", 1:400), NULL))
  fit1 <- nb_regression(y, ~ dose, ~ batch, data = null_cells)
  fit0 <- nb_regression(y, ~ 1, ~ batch, data = null_cells)
  wald <- summary(fit1, "mean")
  wald <- wald$p_value[wald$term == "dose"]
  lrt <- anova(fit0, fit1)$p_value
  expect_gt(suppressWarnings(ks.test(wald, "punif"))$p.value, 0.001)
  expect_gt(suppressWarnings(ks.test(lrt, "punif"))$p.value, 0.001)
  # Dispersion terms under their own null: one size for every batch.
  set.seed(23)
  y_same <- matrix(rnbinom(400 * 200, size = 2, mu = 4), 400, 200, dimnames = list(paste0("g", 1:400), NULL))
  same1 <- nb_regression(y_same, ~ dose, ~ batch, data = null_cells)
  same0 <- nb_regression(y_same, ~ dose, ~ 1, data = null_cells)
  disp_wald <- summary(same1, "dispersion")
  disp_wald <- disp_wald$p_value[disp_wald$term == "batchb"]
  expect_gt(suppressWarnings(ks.test(disp_wald, "punif"))$p.value, 0.001)
  expect_gt(suppressWarnings(ks.test(anova(same0, same1)$p_value, "punif"))$p.value, 0.001)
  disp0 <- nb_regression(y, ~ dose, ~ 1, data = null_cells)
  disp_lrt <- anova(disp0, fit1)  # dispersion differs by batch: strong signal
  expect_gt(mean(disp_lrt$p_value < 0.05, na.rm = TRUE), 0.5)
})

test_that("degenerate genes give NA rows with a reason, not a crash", {
  group <- data.frame(g = factor(rep(c("a", "b"), 50)))
  set.seed(3)
  y <- rbind(zero = rep(0, 100),
             flat = rep(3, 100),
             separated = ifelse(group$g == "a", rnbinom(100, size = 2, mu = 5), 0),
             ok = rnbinom(100, size = 2, mu = 5))
  fit <- nb_regression(y, ~ g, data = group)
  expect_equal(unname(fit$converged), c(FALSE, FALSE, FALSE, TRUE))
  expect_match(fit$reason[["zero"]], "all counts are zero")
  expect_match(fit$reason[["flat"]], "Poisson limit")
  expect_match(fit$reason[["separated"]], "separation")
  expect_true(all(is.na(coef(fit)[, "zero"])))
  expect_true(all(is.na(coef(fit)[, "separated"])))
  # Poisson limit: the mean is the Poisson fit, the size infinite.
  expect_equal(unname(coef(fit)[, "flat"]), c(log(3), 0), tolerance = 1e-8)
  expect_true(is.na(coef(fit, "dispersion")[, "flat"]))
  expect_true(all(is.infinite(predict(fit, type = "dispersion")["flat", ])))
  tab <- summary(fit)
  expect_true(all(is.na(tab$p_value[tab$feature == "zero"])))
  expect_true(all(!is.na(tab$reason[tab$feature == "separated"])))
  sim <- simulate(fit, seed = 1)
  expect_true(all(sim["zero", ] == 0))
  expect_true(all(is.na(sim["separated", ])))
})

test_that("bad input stops with a message naming the argument", {
  bad <- counts
  bad[1, 1] <- -1
  expect_error(nb_regression(bad, ~ dose, data = cells), "`x`.*negative")
  bad[1, 1] <- 1.5
  expect_error(nb_regression(bad, ~ dose, data = cells), "`x`.*non-integer")
  bad[1, 1] <- NA
  expect_error(nb_regression(bad, ~ dose, data = cells), "`x`")
  expect_error(nb_regression(counts, ~ dose, data = cells[1:10, ]), "`data` has 10 rows")
  expect_error(nb_regression(counts, ~ nothing, data = cells), "`mean` uses variables not in `data`")
  expect_error(nb_regression(counts, y ~ dose, data = cells), "`mean` must be a one-sided formula")
  expect_error(nb_regression(counts, ~ dose, dispersion = "batch", data = cells), "`dispersion`")
  collinear <- cbind(cells, dose2 = 2 * cells$dose)
  expect_error(nb_regression(counts, ~ dose + dose2, data = collinear), "`mean`.*rank-deficient")
  with_na <- cells
  with_na$dose[3] <- NA
  expect_error(nb_regression(counts, ~ dose, data = with_na), "missing values")
  expect_error(nb_regression(counts, ~ dose, data = cells, offset = 1:3), "`offset`")
  expect_error(nb_regression(counts, ~ dose, data = cells, offset = "size_factors"), "`offset`")
  expect_error(nb_regression(counts, ~ dose, data = cells, tol = -1), "`tol`")
  expect_error(nb_regression(counts, ~ dose, data = cells, threads = 0), "`threads`")
  expect_error(vcov(nb_regression(counts[1:2, ], ~ dose, data = cells), "nope"), "`gene`")
})

test_that("a size past the Poisson limit on the way to a finite optimum does not stop the fit", {
  # Continuous dispersion covariate: at its extremes some sizes pass the limit (log size
  # > 10 and > log mean + 15) during the iterations; the fit stopped there, up to 3
  # log-likelihood units below glmmTMB, on these seeds.
  for (seed in c(35, 60)) {
    set.seed(seed)
    n <- 10000
    d <- data.frame(m0 = 1, m1 = rnorm(n), d0 = 1, d1 = rnorm(n))
    d$y <- rnbinom(n, mu = exp(-1 + 0.5 * d$m1), size = exp(2 + 3 * d$d1))
    y <- matrix(d$y, 1, dimnames = list("g", NULL))
    fit <- nb_regression(y, mean = ~ m0 + m1 - 1, dispersion = ~ d0 + d1 - 1, data = d)
    expect_true(fit$converged[1])
    ref <- glmmTMB::glmmTMB(y ~ m0 + m1 - 1, dispformula = ~ d0 + d1 - 1,
                            family = glmmTMB::nbinom2, data = d)
    expect_tmb(fit, "g", ref)
  }
})

test_that("methods refuse nonsense arguments, naming them", {
  fit <- nb_regression(counts[1:3, ], ~ dose + batch, ~ batch, data = cells)
  for (g in list(0, NA, 1.5, "nope", c(1, 2), 4, TRUE)) {
    expect_error(vcov(fit, gene = g), "`gene`")
  }
  expect_error(vcov(fit), "`gene` is missing")
  expect_equal(vcov(fit, 2), vcov(fit, "gene02"))
  expect_error(summary(fit, component = "x"), "`component` must be one of \"both\", \"mean\", \"dispersion\"")
  # vcov(gene = NULL) gives every gene; summary(contrast =) tests the contrast (both were
  # refused before contrast() existed).
  expect_equal(vcov(fit, gene = NULL)[, , "gene02"], vcov(fit, 2))
  expect_equal(summary(fit, contrast = "dose"), contrast(fit, "dose"))
  expect_error(coef(fit, component = "foo"), "`component` must be one of \"mean\", \"dispersion\"")
  expect_error(coef(fit, "mean", 3), "coef\\(\\) has no argument `<unnamed>`")
  expect_equal(coef(fit, "dispersion"), fit$coefficients$dispersion)
  expect_error(predict(fit, cells, se.fit = TRUE), "predict\\(\\) has no argument `se.fit`")
  expect_error(predict(fit, type = "response"), "`type` must be one of")
  expect_error(logLik(fit, REML = TRUE), "logLik\\(\\) has no argument `REML`")
  expect_error(nobs(fit, 1), "nobs\\(\\)")
  expect_error(BIC(fit, foo = 1), "BIC\\(\\)")
  expect_error(AIC(fit, k = -1), "`k`")
})

test_that("predict() checks newdata: variables, levels, NA, type, rows", {
  fit <- nb_regression(counts[1:3, ], ~ dose + batch, ~ batch, data = cells)
  nd <- data.frame(dose = c(0, 1), batch = factor(c("a", "b"), levels = c("a", "b", "c")))
  expect_equal(dim(predict(fit, nd)), c(3L, 2L))
  expect_error(predict(fit, nd["dose"]), "`newdata` lacks the variable batch")
  expect_error(predict(fit, data.frame(dose = 0, batch = "z")), "`newdata`\\$batch has level z not seen in the fit")
  expect_error(predict(fit, data.frame(dose = NA, batch = "a")), "`newdata` has missing values in dose")
  expect_error(predict(fit, as.matrix(data.frame(dose = 0, batch = 1))), "`newdata` must be a data.frame")
  expect_error(predict(fit, nd[0, ]), "`newdata` has no rows")
  expect_error(predict(fit, nd, offset = c(NA, 1)), "`offset`")
  expect_error(simulate(fit, newdata = nd[0, ], seed = 1), "`newdata` has no rows")
})

test_that("simulate() checks nsim and seed, and refuses more memory than there is up front", {
  fit <- nb_regression(counts[1:3, ], ~ dose, data = cells)
  expect_error(simulate(fit, nsim = 0), "`nsim` must be a single whole number >= 1")
  expect_error(simulate(fit, nsim = NA), "`nsim`")
  expect_error(simulate(fit, nsim = 2.5), "`nsim`")
  expect_error(simulate(fit, seed = NA), "`seed`")
  expect_error(simulate(fit, seed = "a"), "`seed`")
  expect_error(simulate(fit, seed = 1, foo = 2), "simulate\\(\\) has no argument `foo`")
  # 3 genes x 400 cells x 1e8 draws x 8 bytes = 960 GB: refused before any draw.
  expect_error(simulate(fit, nsim = 1e8, seed = 1), "would need 894 GB of memory")
  old <- options(sceffects.max_memory = 1e4)
  on.exit(options(old))
  expect_error(simulate(fit, nsim = 2, seed = 1), "would need 18.8 KB.*`nsim`")
  options(old)
  expect_length(simulate(fit, nsim = 2, seed = 1), 2L)
})

test_that("anova() needs exactly two nb_regression() fits", {
  fit <- nb_regression(counts[1:3, ], ~ dose, data = cells)
  expect_error(anova(fit), "anova\\(\\) compares two fits.*given 1")
  expect_error(anova(fit, fit, fit), "given 3")
  expect_error(anova(fit, lm(dose ~ 1, cells)), "second fit must also be made by nb_regression")
})

test_that("block_size must be a whole number >= 1; BPPARAM is checked up front", {
  expect_error(nb_regression(counts, ~ dose, data = cells, block_size = 0), "`block_size` must be a single whole number >= 1")
  expect_error(nb_regression(counts, ~ dose, data = cells, block_size = 2.5), "`block_size`")
  expect_error(nb_regression(counts, ~ dose, data = cells, block_size = -1), "`block_size`")
  expect_error(nb_regression(counts, ~ dose, data = cells, BPPARAM = "multicore"), "`BPPARAM`")
})

test_that("nb_regression() and its methods leave the user's objects unchanged", {
  y <- counts[1:3, ]
  storage.mode(y) <- "integer"
  y0 <- y
  d <- cells
  d0 <- d
  fit <- nb_regression(y, ~ dose + batch, data = d)
  nd <- d[1:5, ]
  nd0 <- nd
  predict(fit, nd)
  simulate(fit, seed = 1, newdata = nd)
  expect_identical(y, y0)
  expect_identical(d, d0)
  expect_identical(nd, nd0)
})

test_that("on an SCE, size factors are used by default as glmGamPoi: stored, else normed_sum (issue 13)", {
  skip_if_not_installed("glmGamPoi")
  sce <- SingleCellExperiment::SingleCellExperiment(list(counts = counts), colData = cells)
  # none stored: glmGamPoi's "normed_sum", said once
  msgs <- testthat::capture_messages(fit <- nb_regression(sce, ~ dose))
  expect_length(msgs, 1L)
  expect_match(msgs, "normed_sum")
  ref_sf <- glmGamPoi::glm_gp(counts, design = ~ 1, size_factors = "normed_sum")$size_factors
  expect_equal(unname(fit$size_factors), unname(ref_sf), tolerance = 1e-12)
  expect_identical(coef(fit), coef(nb_regression(counts, ~ dose, data = cells, offset = log(ref_sf))))
  # glmGamPoi's mean coefficients at our dispersion, with the same size factors
  for (g in rownames(counts)[1:3]) {
    ref <- glmGamPoi::glm_gp(counts[g, , drop = FALSE], design = ~ dose, col_data = cells,
                             size_factors = ref_sf, overdispersion = exp(-coef(fit, "dispersion")[, g]))
    expect_close(coef(fit)[, g], ref$Beta[1, ], tol = 1e-6)
  }
  # and MASS::glm.nb with offset(log(sf)), dispersion included
  g <- "gene04"
  ref <- MASS::glm.nb(counts[g, ] ~ dose + offset(log(ref_sf)), data = cells,
                      control = glm.control(epsilon = 1e-12, maxit = 100))
  expect_close(coef(fit)[, g], coef(ref), tol = 1e-6)
  expect_close(exp(coef(fit, "dispersion")[, g]), ref$theta, tol = 1e-6)
  # stored size factors win, and are said so
  sf <- exp(rnorm(400, 0, 0.3))
  SingleCellExperiment::sizeFactors(sce) <- sf
  expect_message(stored <- nb_regression(sce, ~ dose), "using sizeFactors\\(x\\)")
  expect_identical(coef(stored), coef(nb_regression(counts, ~ dose, data = cells, offset = log(sf))))
  expect_equal(unname(stored$size_factors), sf)
  # predictions of the fitted cells carry them
  expect_equal(unname(predict(stored)[1, ]), unname(exp(coef(stored)[1, 1] + coef(stored)[2, 1] * cells$dose) * sf))
  # off, quiet, user offsets on top, numbers, a matrix asking for them
  expect_silent(off <- nb_regression(sce, ~ dose, size_factors = FALSE))
  expect_identical(coef(off), coef(nb_regression(counts, ~ dose, data = cells)))
  expect_silent(nb_regression(sce, ~ dose, verbose = FALSE))
  both <- nb_regression(sce, ~ dose, offset = rep(0.5, 400), verbose = FALSE)
  expect_identical(coef(both), coef(nb_regression(counts, ~ dose, data = cells, offset = log(sf) + 0.5)))
  expect_identical(coef(nb_regression(counts, ~ dose, data = cells, size_factors = sf)), coef(stored))
  expect_message(m <- nb_regression(counts, ~ dose, data = cells, size_factors = TRUE), "normed_sum")
  expect_identical(coef(m), coef(fit))
  expect_error(nb_regression(counts, ~ dose, data = cells, size_factors = c(1, 2)), "`size_factors` must be")
  expect_error(nb_regression(counts, ~ dose, data = cells, size_factors = -sf), "`size_factors` must be")
  expect_error(nb_regression(counts, ~ dose, data = cells, size_factors = NA), "`size_factors` must be")
  # the legacy offset = "size_factors" is not doubled
  expect_identical(coef(nb_regression(sce, ~ dose, offset = "size_factors")), coef(stored))
})

test_that("nb_regression() takes an ExpressionSet with pData() and refuses a data.frame (issue 13)", {
  skip_if_not_installed("Biobase")
  named <- counts
  colnames(named) <- paste0("cell", seq_len(400))
  pd <- cells
  rownames(pd) <- colnames(named)
  eset <- Biobase::ExpressionSet(assayData = named, phenoData = Biobase::AnnotatedDataFrame(pd))
  ref <- nb_regression(counts, ~ dose, data = cells)
  expect_identical(coef(nb_regression(eset, ~ dose)), coef(ref))
  expect_error(nb_regression(as.data.frame(counts), ~ dose, data = cells),
               "`x` is a data.frame, whose orientation is ambiguous")
})

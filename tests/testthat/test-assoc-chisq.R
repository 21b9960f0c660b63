# assoc_chisq() against chisq.test() on the ALL clinical covariates and simulated data.

skip_if_not_installed("ALL")
skip_if_not_installed("Biobase")

all_env <- new.env()
utils::data("ALL", package = "ALL", envir = all_env)
pheno <- Biobase::pData(all_env$ALL)
clin <- data.frame(sex = pheno$sex, BT = pheno$BT, remission = pheno$remission,
                   mol = pheno$mol.biol, kinet = pheno$kinet, relapse = pheno$relapse,
                   t411 = pheno$`t(4;11)`, mdr = pheno$mdr, transplant = pheno$transplant,
                   citog = pheno$citog)

rel_err <- function(a, b) ifelse(a == b, 0, abs(a - b) / abs(b))

# chisq.test(a, b) for every row of a results table, plus Cramer's V from the uncorrected
# statistic of the table with empty levels dropped.
expect_chisq_matches <- function(r, da, db, correct = TRUE, tol = 1e-10) {
  for (k in seq_len(nrow(r))) {
    a <- da[[r$feature_x[k]]]
    b <- db[[r$feature_y[k]]]
    ok <- !is.na(a) & !is.na(b)
    ct <- suppressWarnings(stats::chisq.test(a, b, correct = correct))
    expect_lte(rel_err(r$statistic[k], unname(ct$statistic)), tol)
    expect_identical(r$df[k], unname(as.numeric(ct$parameter)))
    expect_lte(rel_err(r$p_value[k], ct$p.value), tol)
    expect_identical(r$n[k], as.integer(sum(ok)))
    raw <- suppressWarnings(stats::chisq.test(a, b, correct = FALSE))
    tab <- table(factor(a[ok]), factor(b[ok]))
    v <- sqrt(unname(raw$statistic) / (sum(ok) * (min(dim(tab)) - 1)))
    expect_equal(r$estimate[k], v, tolerance = 1e-10)
  }
}

test_that("ALL clinical covariates: all pairs match chisq.test (Yates for 2x2)", {
  r <- assoc_chisq(clin)
  expect_equal(nrow(r), choose(ncol(clin), 2))
  expect_true(all(c("feature_x", "feature_y", "estimate", "statistic", "df", "p_value",
                    "log_p", "fdr", "n", "reason") %in% names(r)))
  expect_chisq_matches(r, clin, clin, correct = TRUE)
  expect_true(all(is.na(r$reason)))
  expect_equal(r$fdr, p.adjust(r$p_value, "BH"), tolerance = 1e-12)
  # p-values underflow-safe: log_p agrees with log of chisq.test's p
  p_ref <- vapply(seq_len(nrow(r)), function(k) suppressWarnings(
    stats::chisq.test(clin[[r$feature_x[k]]], clin[[r$feature_y[k]]])$p.value), 0)
  expect_equal(r$log_p, log(p_ref), tolerance = 1e-10)
})

test_that("correct = FALSE matches chisq.test(correct = FALSE)", {
  r <- assoc_chisq(clin, correct = FALSE)
  expect_chisq_matches(r, clin, clin, correct = FALSE)
  two <- r$df == 1
  expect_true(any(two))
  ry <- assoc_chisq(clin)
  m <- match(paste(r$feature_x, r$feature_y), paste(ry$feature_x, ry$feature_y))
  # the correction only changes 2x2 tables
  expect_equal(r$statistic[!two], ry$statistic[m][!two], tolerance = 1e-12)
  expect_true(all(ry$statistic[m][two] <= r$statistic[two] + 1e-12))
})

test_that("a vs b, with characters, integers and logicals", {
  a <- clin[, c("sex", "BT", "relapse")]
  b <- data.frame(cr = as.character(pheno$CR), age_band = as.integer(cut(pheno$age, c(0, 20, 40, 80))),
                  fusion = pheno$`fusion protein`)
  r <- assoc_chisq(a, b)
  expect_equal(nrow(r), 9L)
  expect_chisq_matches(r, a, b)
  # a single vector against a data.frame
  r <- assoc_chisq(clin$sex, b)
  expect_equal(unique(r$feature_x), "x")
  expect_chisq_matches(r, list(x = clin$sex), b)
})

test_that("simulated tables with unused levels and NA", {
  set.seed(51)
  n <- 150
  d <- data.frame(
    u = factor(sample(c("a", "b", "c"), n, TRUE), levels = c("a", "b", "c", "never")),
    v = sample(c("x", "y"), n, TRUE),
    w = sample(1:4, n, TRUE),
    z = sample(c(TRUE, FALSE), n, TRUE, prob = c(0.1, 0.9))
  )
  d$v[sample(n, 10)] <- NA
  d$w[sample(n, 5)] <- NA
  d$w[d$u == "c" & !is.na(d$w) & d$w == 4] <- 3   # level 4 of w never meets level c of u
  for (correct in c(TRUE, FALSE)) {
    r <- assoc_chisq(d, correct = correct)
    expect_equal(nrow(r), 6L)
    expect_chisq_matches(r, d, d, correct = correct)
  }
  # unused levels do not count in df
  r <- assoc_chisq(d[, c("u", "v")])
  expect_identical(r$df, 2)
})

test_that("a single-level pair gives reason 'fewer than 2 levels'", {
  d <- data.frame(a = c("x", "x", "y", "y", "x"), b = c("u", "u", "u", "u", "u"),
                  c = c("p", "q", "p", NA, "q"))
  r <- assoc_chisq(d)
  ab <- r[r$feature_x == "a" & r$feature_y == "b", ]
  expect_identical(ab$reason, "fewer than 2 levels")
  expect_true(is.na(ab$p_value))
  expect_error(stats::chisq.test(d$a, d$b))
  ac <- r[r$feature_x == "a" & r$feature_y == "c", ]
  expect_true(is.na(ac$reason))
  expect_equal(ac$p_value, suppressWarnings(stats::chisq.test(d$a, d$c))$p.value, tolerance = 1e-12)
  # one level left after dropping NA
  d2 <- data.frame(a = c("x", "x", "y", "y"), c = c("p", "q", NA, NA))
  expect_identical(assoc_chisq(d2)$reason, "fewer than 2 levels")
})

test_that("non-integer numbers are rejected; threads do not change results", {
  expect_error(assoc_chisq(data.frame(a = c(1.5, 2, 3), b = c(1, 2, 3))), "non-integer")
  expect_identical(assoc_chisq(clin, threads = 1), assoc_chisq(clin, threads = 2))
})

test_that("categorical features in rows of a matrix, dgCMatrix or SummarizedExperiment (issue 13)", {
  set.seed(48)
  m <- matrix(sample(0:2, 5 * 60, TRUE), 5, dimnames = list(paste0("f", 1:5), NULL))
  ref <- as.data.frame(assoc_chisq(m))
  d <- as.data.frame(t(m))
  expect_chisq_matches(assoc_chisq(m), d, d)
  expect_equal(as.data.frame(assoc_chisq(Matrix::Matrix(m, sparse = TRUE))), ref)
  se <- SummarizedExperiment::SummarizedExperiment(list(codes = m))
  expect_equal(as.data.frame(assoc_chisq(se)), ref)
  expect_equal(as.data.frame(assoc_chisq(se, se, assay = "codes"))[, c("p_value", "n")],
               as.data.frame(assoc_chisq(m, m))[, c("p_value", "n")])
  # a data.frame of integer columns is ambiguous: read as colData, with a message;
  # one with factor or character columns is plainly colData, and silent
  expect_message(assoc_chisq(d), "`x` is a data.frame: read as colData, its 5 columns are the features")
  expect_silent(assoc_chisq(clin[, 1:3]))
  expect_silent(assoc_chisq(S4Vectors::DataFrame(clin[, 1:3])))
})

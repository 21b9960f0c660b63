# assoc_fisher() against fisher.test() (p-value, conditional MLE) and against direct
# computations on the 2x2 tables.

rel_err <- function(a, b) ifelse(a == b, 0, abs(a - b) / abs(b))

two_by_two <- function(a, b) {
  ok <- !is.na(a) & !is.na(b)
  table(factor(as.logical(a[ok]), c(FALSE, TRUE)), factor(as.logical(b[ok]), c(FALSE, TRUE)))
}

# Conditional MLE of the odds ratio solved tightly with uniroot on the log scale:
# E[X | theta] = x for the top-left cell X of the table (non-central hypergeometric).
mle_ref <- function(tab) {
  m <- sum(tab[, 1]); n <- sum(tab[, 2]); k <- sum(tab[1, ]); x <- tab[1, 1]
  lo <- max(0, k - n); hi <- min(k, m)
  if (x == lo) return(0)
  if (x == hi) return(Inf)
  s <- lo:hi
  ld <- stats::dhyper(s, m, n, k, log = TRUE)
  f <- function(th) {
    w <- ld + th * s
    w <- exp(w - max(w))
    sum(s * w) / sum(w) - x
  }
  exp(stats::uniroot(f, c(-60, 60), tol = 1e-13, maxiter = 10000)$root)
}

# Random binary features, features in rows: some rare (zero cells), some correlated.
random_binary <- function(n, n_features) {
  base <- stats::runif(n) < 0.5
  rows <- lapply(seq_len(n_features), function(i) {
    switch(sample(3, 1),
           stats::runif(n) < stats::runif(1, 0.01, 0.99),
           xor(base, stats::runif(n) < stats::runif(1, 0, 0.3)),
           stats::runif(n) < stats::runif(1, 0, 0.08))
  })
  m <- do.call(rbind, rows)
  rownames(m) <- paste0("m", seq_len(n_features))
  m
}

test_that("p-values match fisher.test over many random 2x2 tables, zero cells included", {
  set.seed(41)
  n_zero <- 0
  for (n in c(4, 10, 30, 100, 300)) {
    a <- random_binary(n, 12)
    r <- assoc_fisher(a, mle = TRUE)
    expect_equal(nrow(r), choose(12, 2))
    for (k in seq_len(nrow(r))) {
      tab <- two_by_two(a[r$feature_x[k], ], a[r$feature_y[k], ])
      ft <- stats::fisher.test(tab)
      n_zero <- n_zero + any(tab == 0)
      expect_lte(rel_err(r$p_value[k], ft$p.value), 1e-10)
      expect_identical(r$statistic[k], as.numeric(tab[2, 2]))
      expect_identical(r$n[k], as.integer(sum(tab)))
      expect_equal(r$estimate[k], log(tab[2, 2] * tab[1, 1] / (tab[2, 1] * tab[1, 2])),
                   tolerance = 1e-12)
      est <- unname(ft$estimate)
      if (is.finite(est) && est > 0.05 && est < 20) {
        # fisher.test finds its estimate with uniroot to about 1e-4
        expect_lte(rel_err(r$odds_ratio_mle[k], est), 1e-3)
      }
      if (est == 0 || is.infinite(est)) expect_identical(r$odds_ratio_mle[k], est)
    }
  }
  expect_gt(n_zero, 20)
})

test_that("a vs b matches fisher.test and the table orientation is table(a, b)", {
  set.seed(42)
  a <- random_binary(80, 6)
  b <- random_binary(80, 4)
  rownames(b) <- paste0("b", 1:4)
  r <- assoc_fisher(a, b)
  expect_equal(nrow(r), 24L)
  expect_true(all(r$feature_x %in% rownames(a)) && all(r$feature_y %in% rownames(b)))
  for (k in seq_len(nrow(r))) {
    tab <- table(factor(a[r$feature_x[k], ], c(FALSE, TRUE)), factor(b[r$feature_y[k], ], c(FALSE, TRUE)))
    expect_lte(rel_err(r$p_value[k], stats::fisher.test(tab)$p.value), 1e-10)
    expect_identical(r$statistic[k], as.numeric(tab[2, 2]))
  }
  expect_equal(r$fdr, p.adjust(r$p_value, "BH"), tolerance = 1e-12)
})

test_that("conditional MLE agrees with a tight uniroot solution", {
  set.seed(43)
  for (n in c(10, 60, 250)) {
    a <- random_binary(n, 10)
    r <- assoc_fisher(a, mle = TRUE)
    for (k in seq_len(nrow(r))) {
      tab <- two_by_two(a[r$feature_x[k], ], a[r$feature_y[k], ])
      ref <- mle_ref(tab)
      if (is.finite(ref) && ref > 0) {
        expect_lte(rel_err(r$odds_ratio_mle[k], ref), 1e-8)
      } else {
        expect_identical(r$odds_ratio_mle[k], ref)
      }
    }
  }
  # a specific table, checked against fisher.test's estimate too
  tab <- matrix(c(12, 5, 7, 9), 2)
  a <- rep(c(0, 1, 0, 1), c(12, 5, 7, 9))
  b <- rep(c(0, 0, 1, 1), c(12, 5, 7, 9))
  r <- assoc_fisher(rbind(a = a), rbind(b = b), mle = TRUE)
  expect_equal(unclass(two_by_two(a, b)), tab, ignore_attr = TRUE)
  ft <- stats::fisher.test(tab)
  expect_lte(rel_err(r$odds_ratio_mle, unname(ft$estimate)), 1e-3)
  expect_lte(rel_err(r$odds_ratio_mle, mle_ref(tab)), 1e-8)
  expect_lte(rel_err(r$p_value, ft$p.value), 1e-10)
  expect_equal(r$estimate, log(12 * 9 / (5 * 7)), tolerance = 1e-12)
  # without mle = TRUE there is no such column
  expect_false("odds_ratio_mle" %in% names(assoc_fisher(rbind(a = a), rbind(b = b))))
})

test_that("tiny p-values: log_p is exact where p underflows", {
  a <- rep(c(TRUE, FALSE), each = 100)
  r <- assoc_fisher(rbind(a = a), rbind(b = a))
  ft <- stats::fisher.test(two_by_two(a, a))
  expect_gt(ft$p.value, 1e-300)
  expect_lte(rel_err(r$log_p, log(ft$p.value)), 1e-10)
  expect_lte(rel_err(r$p_value, ft$p.value), 1e-10)
  expect_identical(r$estimate, Inf)
  # 1000 samples: p = 2 / choose(1000, 500) is far below double precision
  a <- rep(c(TRUE, FALSE), each = 500)
  r <- assoc_fisher(rbind(a = a), rbind(b = a))
  expect_true(is.finite(r$log_p))
  expect_equal(r$log_p, log(2) - lchoose(1000, 500), tolerance = 1e-12)
  # a strong but imperfect association with p < 1e-300: sum dhyper on the log scale
  set.seed(44)
  a <- rep(c(TRUE, FALSE), each = 600)
  b <- xor(a, seq_along(a) %% 40 == 0)
  tab <- two_by_two(a, b)
  m <- sum(tab[, 1]); n <- sum(tab[, 2]); k <- sum(tab[1, ]); x <- tab[1, 1]
  s <- max(0, k - n):min(k, m)
  ld <- stats::dhyper(s, m, n, k, log = TRUE)
  keep <- ld <= ld[s == x] + log(1 + 1e-7)
  ref <- max(ld[keep]) + log(sum(exp(ld[keep] - max(ld[keep]))))
  r <- assoc_fisher(rbind(a = a), rbind(b = b))
  expect_lt(ref, log(1e-300))
  expect_equal(r$log_p, ref, tolerance = 1e-10)
})

test_that("NA are handled pairwise; data.frame input with logical columns", {
  set.seed(45)
  a <- random_binary(50, 5)
  a[2, 3] <- NA
  a[4, 10:12] <- NA
  r <- assoc_fisher(a)
  expect_equal(nrow(r), 10L)
  for (k in seq_len(nrow(r))) {
    x <- a[r$feature_x[k], ]
    y <- a[r$feature_y[k], ]
    tab <- two_by_two(x, y)
    expect_identical(r$n[k], as.integer(sum(!is.na(x) & !is.na(y))))
    expect_lte(rel_err(r$p_value[k], stats::fisher.test(tab)$p.value), 1e-10)
  }
  d <- as.data.frame(t(a))
  expect_equal(as.data.frame(assoc_fisher(d))[, c("feature_x", "feature_y", "p_value", "n")],
               as.data.frame(r)[, c("feature_x", "feature_y", "p_value", "n")])
  expect_error(assoc_fisher(rbind(a = c(0, 1, 2))), "0/1")
})

test_that("a feature with a single value gives p = 1 as fisher.test on the 2x2 table", {
  r <- assoc_fisher(rbind(a = c(1, 1, 1, 0)), rbind(b = c(1, 1, 1, 1)))
  tab <- two_by_two(c(1, 1, 1, 0), c(1, 1, 1, 1))
  expect_equal(r$p_value, stats::fisher.test(tab)$p.value)
})

test_that("threads and blocks do not change results", {
  set.seed(46)
  a <- random_binary(60, 30)
  expect_identical(assoc_fisher(a, threads = 1), assoc_fisher(a, threads = 2))
  x <- assoc_fisher(a, block_size = 7)
  y <- assoc_fisher(a)
  key <- function(r) paste(r$feature_x, r$feature_y)
  expect_equal(x$p_value[order(key(x))], y$p_value[order(key(y))], tolerance = 1e-14)
})

test_that("SummarizedExperiment, ExpressionSet and dgCMatrix (kept sparse) give the matrix's answer (issue 13)", {
  set.seed(47)
  a <- random_binary(40, 6)
  b <- random_binary(40, 3)
  rownames(b) <- paste0("b", 1:3)
  ref <- as.data.frame(assoc_fisher(a, b))
  sparse <- Matrix::Matrix(a, sparse = TRUE)
  expect_s4_class(sparse, "lgCMatrix")
  expect_equal(as.data.frame(assoc_fisher(sparse, b)), ref)
  dgc <- methods::as(sparse + 0, "CsparseMatrix")
  expect_s4_class(dgc, "dgCMatrix")
  expect_equal(as.data.frame(assoc_fisher(dgc, b)), ref)
  by_pair <- function(r) as.data.frame(r)[order(r$feature_x, r$feature_y), c("feature_x", "feature_y", "p_value", "n")]
  expect_equal(by_pair(assoc_fisher(dgc, Matrix::Matrix(b, sparse = TRUE), block_size = 2)), by_pair(ref),
               ignore_attr = TRUE)
  se <- SummarizedExperiment::SummarizedExperiment(list(mutations = a))
  expect_equal(as.data.frame(assoc_fisher(se, b, assay = "mutations")), ref)
  expect_error(assoc_fisher(se, b, assay = "counts"), "not an assay of `x`")
  eset <- Biobase::ExpressionSet(assayData = a)
  expect_equal(as.data.frame(assoc_fisher(eset, b)), ref)
  # NA in a sparse matrix leaves that sample out, as in a dense one
  a_na <- a
  a_na[2, 5] <- NA
  expect_equal(as.data.frame(assoc_fisher(methods::as(a_na + 0, "CsparseMatrix"), b)),
               as.data.frame(assoc_fisher(a_na, b)))
  bad <- dgc
  bad[3, 4] <- 2
  expect_error(assoc_fisher(bad), sprintf("feature %s must be logical or 0/1", rownames(a)[3]))
  # colData-style inputs: a DataFrame is read with features in columns, and says so
  expect_message(r <- assoc_fisher(S4Vectors::DataFrame(t(a) == 1)), "`x` is a data.frame: read as colData")
  expect_equal(as.data.frame(r)[, c("feature_x", "feature_y", "p_value")],
               as.data.frame(assoc_fisher(a))[, c("feature_x", "feature_y", "p_value")])
})

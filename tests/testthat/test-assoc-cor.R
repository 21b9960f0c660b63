# assoc_cor() against cor.test() / cor() on the ALL leukaemia expression data and on
# simulated data.

skip_if_not_installed("ALL")
skip_if_not_installed("Biobase")

all_env <- new.env()
utils::data("ALL", package = "ALL", envir = all_env)
expr <- Biobase::exprs(all_env$ALL)
X <- expr[1:60, ]        # first block of probes
Y <- expr[1001:1030, ]   # a second block

rel_err <- function(a, b) abs(a - b) / abs(b)
pair_key <- function(r) paste(r$feature_x, r$feature_y, sep = "~")
sorted_df <- function(r) {
  r <- as.data.frame(r)
  r <- r[order(r$feature_x, r$feature_y), , drop = FALSE]
  rownames(r) <- NULL
  r
}

# cor.test on the complete cases of every pair of a results table.
cor_test_ref <- function(r, x, y, method) {
  t(vapply(seq_len(nrow(r)), function(k) {
    a <- x[r$feature_x[k], ]
    b <- y[r$feature_y[k], ]
    ok <- !is.na(a) & !is.na(b)
    if (sum(ok) < 3) return(c(NA, NA, NA, sum(ok)))
    ct <- suppressWarnings(stats::cor.test(a[ok], b[ok], method = method, exact = FALSE))
    rho <- unname(ct$estimate)
    tstat <- rho * sqrt((sum(ok) - 2) / (1 - rho^2))
    c(rho, if (method == "pearson") unname(ct$statistic) else tstat, ct$p.value, sum(ok))
  }, numeric(4)))
}

test_that("Pearson on ALL data matches cor.test (estimate, t, df, p)", {
  r <- assoc_cor(X, Y, method = "pearson")
  expect_s3_class(r, "data.frame")
  expect_named(r, c("feature_x", "feature_y", "estimate", "statistic", "df", "p_value",
                    "log_p", "fdr", "n", "reason"))
  expect_equal(nrow(r), nrow(X) * nrow(Y))
  expect_setequal(pair_key(r), as.vector(outer(rownames(X), rownames(Y), paste, sep = "~")))
  ref <- cor_test_ref(r, X, Y, "pearson")
  expect_lte(max(rel_err(r$estimate, ref[, 1])), 1e-8)
  expect_lte(max(rel_err(r$statistic, ref[, 2])), 1e-8)
  expect_lte(max(rel_err(r$p_value, ref[, 3])), 1e-8)
  expect_equal(r$df, rep(ncol(X) - 2, nrow(r)))
  expect_equal(r$n, rep(ncol(X), nrow(r)))
  expect_true(all(is.na(r$reason)))
  expect_equal(r$log_p, log(ref[, 3]), tolerance = 1e-8)
  expect_equal(r$fdr, p.adjust(ref[, 3], "BH"), tolerance = 1e-8)
  expect_false(is.unsorted(r$p_value))
})

test_that("Spearman on ALL data matches cor.test(method = 'spearman', exact = FALSE)", {
  r <- assoc_cor(X, Y, method = "spearman")
  ref <- cor_test_ref(r, X, Y, "spearman")
  expect_lte(max(rel_err(r$estimate, ref[, 1])), 1e-8)
  expect_lte(max(rel_err(r$statistic, ref[, 2])), 1e-8)
  expect_lte(max(rel_err(r$p_value, ref[, 3])), 1e-8)
  expect_equal(r$fdr, p.adjust(ref[, 3], "BH"), tolerance = 1e-8)
})

test_that("Spearman with ties matches cor.test", {
  set.seed(11)
  x <- matrix(round(rnorm(8 * 40)), 8, dimnames = list(paste0("x", 1:8), NULL))
  y <- matrix(sample(1:4, 3 * 40, TRUE), 3, dimnames = list(paste0("y", 1:3), NULL))
  r <- assoc_cor(x, y, method = "spearman")
  ref <- cor_test_ref(r, x, y, "spearman")
  expect_lte(max(rel_err(r$estimate, ref[, 1])), 1e-8)
  expect_lte(max(rel_err(r$p_value, ref[, 3])), 1e-8)
})

test_that("within x (y = NULL) gives choose(n, 2) pairs matching cor.test", {
  xs <- X[1:25, ]
  for (method in c("pearson", "spearman")) {
    r <- assoc_cor(xs, method = method)
    expect_equal(nrow(r), choose(nrow(xs), 2))
    ix <- match(r$feature_x, rownames(xs))
    iy <- match(r$feature_y, rownames(xs))
    expect_true(all(ix != iy))
    expect_equal(anyDuplicated(paste(pmin(ix, iy), pmax(ix, iy))), 0L)
    ref <- cor_test_ref(r, xs, xs, method)
    expect_lte(max(rel_err(r$estimate, ref[, 1])), 1e-8)
    expect_lte(max(rel_err(r$p_value, ref[, 3])), 1e-8)
    expect_equal(r$fdr, p.adjust(ref[, 3], "BH"), tolerance = 1e-8)
  }
})

test_that("output = 'matrix' equals cor()", {
  m <- assoc_cor(X[1:12, ], Y[1:5, ], output = "matrix")
  expect_named(m, c("estimate", "statistic", "p_value", "fdr", "n"), ignore.order = TRUE)
  ref <- stats::cor(t(X[1:12, ]), t(Y[1:5, ]))
  expect_equal(dim(m$estimate), dim(ref))
  expect_equal(dimnames(m$estimate), dimnames(ref))
  expect_lte(max(abs(m$estimate - ref)), 1e-12)
  expect_equal(m$n, matrix(ncol(X), 12, 5, dimnames = dimnames(ref)))
  p_ref <- 2 * pt(-abs(ref * sqrt((ncol(X) - 2) / (1 - ref^2))), ncol(X) - 2)
  expect_lte(max(rel_err(m$p_value, p_ref)), 1e-8)

  # within x: a symmetric matrix equal to cor() off the diagonal
  ms <- assoc_cor(X[1:12, ], output = "matrix", method = "spearman")
  refs <- stats::cor(t(X[1:12, ]), method = "spearman")
  off <- row(refs) != col(refs)
  expect_lte(max(abs(ms$estimate[off] - refs[off])), 1e-12)
  expect_equal(ms$estimate, t(ms$estimate))
  expect_error(assoc_cor(X[1:5, ], output = "matrix", top = 2), "matrix")
})

test_that("output = 'matrix' (written by the core) equals the long table, constant features included", {
  x <- X[1:15, ]
  x[4, ] <- 2   # constant: NA with every partner
  for (method in c("pearson", "spearman")) {
    for (y in list(Y[1:5, ], NULL)) {
      m <- assoc_cor(x, y, method = method, output = "matrix")
      long <- assoc_cor(x, y, method = method)
      cells <- cbind(match(long$feature_x, rownames(x)),
                     match(long$feature_y, rownames(if (is.null(y)) x else y)))
      expect_identical(m$estimate[cells], long$estimate)
      expect_identical(m$statistic[cells], long$statistic)
      expect_identical(m$p_value[cells], long$p_value)
      expect_identical(m$fdr[cells], long$fdr)
      expect_identical(m$n[cells], as.numeric(long$n))
      if (is.null(y)) {
        # both triangles, the diagonal NA, the FDR over each unordered pair once
        for (k in names(m)) expect_identical(m[[k]], t(m[[k]]))
        expect_true(all(is.na(diag(m$estimate))) && all(is.na(diag(m$n))))
        up <- upper.tri(m$p_value)
        expect_equal(m$fdr[up], p.adjust(m$p_value[up], "BH"), tolerance = 1e-14)
      } else {
        expect_equal(as.vector(m$fdr), p.adjust(as.vector(m$p_value), "BH"), tolerance = 1e-14)
      }
      expect_true(all(is.na(m$estimate[4, ])))
      expect_equal(sum(!is.na(m$estimate)), if (is.null(y)) 14 * 13 else 14 * 5)
    }
  }
})

test_that("na_action = 'pairwise' matches cor.test on complete cases (Pearson and Spearman)", {
  set.seed(12)
  xn <- X[1:20, ]
  yn <- Y[1:6, ]
  xn[sample(length(xn), 250)] <- NA
  yn[sample(length(yn), 60)] <- NA
  xn[3, 1:126] <- NA   # leaves 2 observations: fewer than 3 with every y
  for (method in c("pearson", "spearman")) {
    r <- assoc_cor(xn, yn, method = method, na_action = "pairwise")
    expect_equal(nrow(r), 20 * 6)
    ref <- cor_test_ref(r, xn, yn, method)
    expect_equal(r$n, as.integer(ref[, 4]))
    ok <- !is.na(ref[, 1])
    expect_lte(max(rel_err(r$estimate[ok], ref[ok, 1])), 1e-8)
    expect_lte(max(rel_err(r$statistic[ok], ref[ok, 2])), 1e-8)
    expect_lte(max(rel_err(r$p_value[ok], ref[ok, 3])), 1e-8)
    expect_true(all(is.na(r$estimate[!ok])))
    expect_true(all(r$reason[!ok] == "fewer than 3 complete observations"))
    expect_true(all(is.na(r$reason[ok])))
    expect_equal(r$fdr[ok], p.adjust(ref[ok, 3], "BH"), tolerance = 1e-8)
  }
  # within x with NA, and the matrix output against cor(use = "pairwise")
  m <- assoc_cor(xn[-3, ], na_action = "pairwise", output = "matrix")
  refm <- stats::cor(t(xn[-3, ]), use = "pairwise.complete.obs")
  off <- row(refm) != col(refm)
  expect_lte(max(abs(m$estimate[off] - refm[off])), 1e-12)
})

test_that("pairwise Pearson is accurate when a feature is large where the other is missing", {
  # x has a huge value at the sample where y is missing: cor.test on the complete cases
  # is an ordinary correlation (r = 0.8).
  x <- rbind(a = c(1e8, 0, 1, 2, 3, 4))
  y <- rbind(b = c(NA, 1, 3, 2, 5, 4))
  r <- assoc_cor(x, y, na_action = "pairwise")
  ref <- stats::cor.test(x[1, -1], y[1, -1])
  expect_identical(r$reason, NA_character_)
  expect_equal(r$estimate, unname(ref$estimate), tolerance = 1e-8,
               label = sprintf("estimate %s (cor.test: %s)", r$estimate, unname(ref$estimate)))
  expect_equal(r$p_value, ref$p.value, tolerance = 1e-8,
               label = sprintf("p_value %s (cor.test: %s)", r$p_value, ref$p.value))
  expect_identical(r$n, 5L)

  set.seed(13)
  x <- rbind(a = c(1e6, rnorm(20)))
  y <- rbind(b = c(NA, rnorm(20)))
  r <- assoc_cor(x, y, na_action = "pairwise")
  ref <- stats::cor.test(x[1, -1], y[1, -1])
  expect_lte(rel_err(r$estimate, unname(ref$estimate)), 1e-8)
  expect_lte(rel_err(r$p_value, ref$p.value), 1e-8)
})

test_that("constant features give NA with reason 'zero variance'", {
  set.seed(14)
  x <- rbind(a = rnorm(10), const = rep(3, 10), c = rnorm(10))
  for (method in c("pearson", "spearman")) {
    r <- assoc_cor(x, method = method)
    bad <- r$feature_x == "const" | r$feature_y == "const"
    expect_equal(sum(bad), 2L)
    expect_true(all(is.na(r$estimate[bad])))
    expect_true(all(is.na(r$p_value[bad])))
    expect_true(all(r$reason[bad] == "zero variance"))
    ref <- suppressWarnings(stats::cor(x[1, ], x[2, ]))
    expect_true(is.na(ref))
    good <- which(!bad)
    expect_equal(r$estimate[good], stats::cor(x["a", ], x["c", ], method = method),
                 tolerance = 1e-10)
    # the remaining pair's fdr only counts tested pairs
    expect_equal(r$fdr[good], r$p_value[good])
  }
  # constant on the complete cases only (pairwise)
  x <- rbind(a = c(1, 2, 3, NA, NA), c = c(0.1, 0.1, 0.1, 1, 2))
  r <- assoc_cor(x, na_action = "pairwise")
  expect_identical(r$reason, "zero variance")
  expect_identical(r$n, 3L)
})

test_that("fewer than 3 observations gives the reason", {
  r <- assoc_cor(rbind(a = c(1, 2), b = c(2, 1)))
  expect_identical(r$reason, "fewer than 3 complete observations")
  expect_true(is.na(r$p_value))
  expect_identical(r$n, 2L)
  x <- rbind(a = c(1, 2, 3, NA, NA), b = c(NA, 1, 5, 2, 4), c = c(3, 1, 2, 5, 4))
  r <- assoc_cor(x, na_action = "pairwise", method = "spearman")
  ab <- r[r$feature_x == "a" & r$feature_y == "b", ]
  expect_identical(ab$reason, "fewer than 3 complete observations")
  expect_identical(ab$n, 2L)
  bc <- r[r$feature_x == "b" & r$feature_y == "c", ]
  ref <- suppressWarnings(stats::cor.test(x["b", -1], x["c", -1], method = "spearman", exact = FALSE))
  expect_equal(bc$estimate, unname(ref$estimate), tolerance = 1e-10)
  expect_equal(bc$p_value, ref$p.value, tolerance = 1e-10)
})

test_that("NA with the default na_action is an error that mentions na_action", {
  xn <- X[1:5, ]
  xn[2, 7] <- NA
  expect_error(assoc_cor(xn), "na_action")
  expect_error(assoc_cor(X[1:5, ], xn), "na_action")
  xinf <- X[1:5, ]
  xinf[1, 1] <- Inf
  expect_error(assoc_cor(xinf), "infinite")
})

test_that("NA in a DelayedArray with the default na_action is an error too", {
  skip_if_not_installed("DelayedArray")
  xn <- X[1:5, ]
  xn[2, 7] <- NA
  expect_error(assoc_cor(xn), "na_action")                               # dense: errors
  expect_error(assoc_cor(DelayedArray::DelayedArray(xn)), "na_action")    # delayed: must too
  expect_error(assoc_cor(X[1:5, ], DelayedArray::DelayedArray(xn)), "na_action")
})

test_that("top = k keeps, per x feature, its k pairs of smallest p (x vs y)", {
  full <- assoc_cor(X, Y)
  for (k in c(1, 3)) {
    r <- assoc_cor(X, Y, top = k)
    counts <- table(r$feature_x)
    expect_equal(length(counts), nrow(X))
    expect_true(all(counts <= k))
    expected <- unlist(lapply(split(full, full$feature_x), function(d) {
      pair_key(d[order(d$p_value), ][seq_len(k), ])
    }))
    expect_setequal(pair_key(r), expected)
    # p-values as in the full run
    m <- match(pair_key(r), pair_key(full))
    expect_equal(r$p_value, full$p_value[m], tolerance = 1e-12)
    # several blocks give the same
    rb <- assoc_cor(X, Y, top = k, block_size = 7)
    expect_setequal(pair_key(rb), expected)
  }
})

test_that("top = k within x keeps every feature's k best pairs", {
  xs <- X[1:30, ]
  full <- assoc_cor(xs)
  for (k in c(1, 2)) {
    r <- assoc_cor(xs, top = k)
    best <- unique(unlist(lapply(rownames(xs), function(f) {
      d <- full[full$feature_x == f | full$feature_y == f, ]
      pair_key(d[order(d$p_value), ][seq_len(k), ])
    })))
    expect_true(all(best %in% pair_key(r)))
  }
})

test_that("top = k within x keeps only pairs that are among the k best of one of their features", {
  # a ~ b and a ~ c are the best pairs of b and c; b ~ c is the best pair of no feature.
  x <- rbind(a = 1:8, b = c(2, 1, 3:8), c = c(1:6, 8, 7))
  full <- assoc_cor(x)
  expect_equal(nrow(full), 3L)
  r <- assoc_cor(x, top = 1)
  expect_setequal(pair_key(r), c("a~b", "a~c"))

  xs <- X[1:30, ]
  full <- assoc_cor(xs)
  k <- 1
  allowed <- unique(unlist(lapply(rownames(xs), function(f) {
    d <- full[full$feature_x == f | full$feature_y == f, ]
    pair_key(d[order(d$p_value), ][seq_len(k), ])
  })))
  r <- assoc_cor(xs, top = k)
  expect_true(all(pair_key(r) %in% allowed))
})

test_that("p_max keeps exactly the pairs with p <= p_max, with conservative FDR", {
  for (method in c("pearson", "spearman")) {
    full <- assoc_cor(X, Y, method = method)
    for (pm in c(0.01, 1e-4)) {
      r <- assoc_cor(X, Y, method = method, p_max = pm)
      expect_setequal(pair_key(r), pair_key(full)[full$p_value <= pm])
      expect_true(all(r$p_value <= pm))
      m <- match(pair_key(r), pair_key(full))
      expect_equal(r$p_value, full$p_value[m], tolerance = 1e-12)
      exact <- p.adjust(full$p_value, "BH")[m]   # BH over all pairs, computed by R
      expect_true(all(r$fdr >= exact * (1 - 1e-12)))
      expect_true(all(r$fdr <= exact * 1.024))
    }
    # within x, with several blocks
    fullx <- assoc_cor(X, method = method)
    r <- assoc_cor(X, method = method, p_max = 1e-3, block_size = 7)
    expect_setequal(pair_key(r), pair_key(fullx)[fullx$p_value <= 1e-3])
    m <- match(pair_key(r), pair_key(fullx))
    exact <- p.adjust(fullx$p_value, "BH")[m]
    expect_true(all(r$fdr >= exact * (1 - 1e-12)))
    expect_true(all(r$fdr <= exact * 1.024))
  }
  # top: the kept pairs' fdr is still over all pairs
  r <- assoc_cor(X, Y, top = 2)
  full <- assoc_cor(X, Y)
  m <- match(pair_key(r), pair_key(full))
  exact <- p.adjust(full$p_value, "BH")[m]
  expect_true(all(r$fdr >= exact * (1 - 1e-12) & r$fdr <= exact * 1.024))
  expect_error(assoc_cor(X[1:3, ], p_max = 0), "p_max")
  expect_error(assoc_cor(X[1:3, ], top = 0), "top")
})

test_that("dgCMatrix input gives the same as dense", {
  set.seed(15)
  s <- Matrix::rsparsematrix(40, 50, 0.3)
  rownames(s) <- paste0("s", 1:40)
  d <- as.matrix(s)
  for (method in c("pearson", "spearman")) {
    ref <- assoc_cor(d, method = method)
    expect_equal(sorted_df(assoc_cor(s, method = method)), sorted_df(ref), tolerance = 1e-12)
    expect_equal(sorted_df(assoc_cor(s, method = method, block_size = 7)), sorted_df(ref),
                 tolerance = 1e-12)
    # and against cor() directly
    m <- assoc_cor(s, method = method, output = "matrix")
    refm <- stats::cor(t(d), method = method)
    off <- row(refm) != col(refm)
    expect_lte(max(abs(m$estimate[off] - refm[off])), 1e-12)
  }
  xs <- Matrix::Matrix(X[1:20, ], sparse = TRUE)
  expect_s4_class(xs, "dgCMatrix")
  expect_equal(sorted_df(assoc_cor(xs, Y)), sorted_df(assoc_cor(X[1:20, ], Y)), tolerance = 1e-12)
  expect_equal(sorted_df(assoc_cor(X[1:20, ], Matrix::Matrix(Y, sparse = TRUE))),
               sorted_df(assoc_cor(X[1:20, ], Y)), tolerance = 1e-12)
})

test_that("SummarizedExperiment and SingleCellExperiment inputs use the named assay", {
  skip_if_not_installed("SummarizedExperiment")
  ref <- sorted_df(assoc_cor(X[1:20, ], Y))
  se <- SummarizedExperiment::SummarizedExperiment(
    assays = list(counts = round(2^X[1:20, ]), logcounts = X[1:20, ]))
  expect_equal(sorted_df(assoc_cor(se, Y, assay = "logcounts")), ref, tolerance = 1e-12)
  expect_equal(sorted_df(assoc_cor(se, Y, assay = 2)), ref, tolerance = 1e-12)
  expect_error(assoc_cor(se, Y, assay = "nope"), "logcounts")
  skip_if_not_installed("SingleCellExperiment")
  sce <- SingleCellExperiment::SingleCellExperiment(
    assays = list(counts = round(2^X[1:20, ]), logcounts = X[1:20, ]))
  expect_equal(sorted_df(assoc_cor(sce, Y, assay = "logcounts")), ref, tolerance = 1e-12)
  # the first assay by default
  refc <- sorted_df(assoc_cor(round(2^X[1:20, ]), Y))
  expect_equal(sorted_df(assoc_cor(sce, Y)), refc, tolerance = 1e-12)
})

test_that("DelayedArray input gives the same as dense", {
  skip_if_not_installed("DelayedArray")
  ref <- sorted_df(assoc_cor(X[1:20, ], Y, method = "spearman"))
  da <- DelayedArray::DelayedArray(X[1:20, ])
  expect_equal(sorted_df(assoc_cor(da, Y, method = "spearman")), ref, tolerance = 1e-12)
  expect_equal(sorted_df(assoc_cor(da, Y, method = "spearman", block_size = 7)), ref,
               tolerance = 1e-12)
  expect_equal(sorted_df(assoc_cor(X[1:20, ], DelayedArray::DelayedArray(Y), method = "spearman")),
               ref, tolerance = 1e-12)
})

test_that("data.frame (features in columns) and vector inputs", {
  ref <- sorted_df(assoc_cor(X[1:5, ]))
  expect_equal(sorted_df(assoc_cor(as.data.frame(t(X[1:5, ])))), ref, tolerance = 1e-12)
  v <- X[1, ]
  r <- assoc_cor(v, Y)
  expect_equal(nrow(r), nrow(Y))
  ct <- stats::cor.test(v, Y[r$feature_y[1], ])
  expect_equal(r$p_value[1], ct$p.value, tolerance = 1e-10)
})

test_that("a small block_size gives the same as the default", {
  for (method in c("pearson", "spearman")) {
    expect_equal(sorted_df(assoc_cor(X, Y, method = method, block_size = 7)),
                 sorted_df(assoc_cor(X, Y, method = method)), tolerance = 1e-12)
    expect_equal(sorted_df(assoc_cor(X, method = method, block_size = 7)),
                 sorted_df(assoc_cor(X, method = method)), tolerance = 1e-12)
  }
  xn <- X[1:20, ]
  xn[5, 3] <- NA
  expect_equal(sorted_df(assoc_cor(xn, na_action = "pairwise", block_size = 3)),
               sorted_df(assoc_cor(xn, na_action = "pairwise")), tolerance = 1e-12)
})

test_that("threads = 1 and threads = 2 give identical results", {
  for (method in c("pearson", "spearman")) {
    expect_identical(assoc_cor(X, Y, method = method, threads = 1),
                     assoc_cor(X, Y, method = method, threads = 2))
    expect_identical(assoc_cor(X, method = method, threads = 1, p_max = 0.01),
                     assoc_cor(X, method = method, threads = 2, p_max = 0.01))
  }
  expect_error(assoc_cor(X[1:3, ], threads = 0), "threads")
})

test_that("feature names and sample layout are validated", {
  xd <- X[1:5, ]
  rownames(xd)[2] <- rownames(xd)[1]
  expect_error(assoc_cor(xd), "duplicated")
  xn <- X[1:5, ]
  rownames(xn) <- NULL
  expect_error(assoc_cor(xn), "rownames")
  expect_error(assoc_cor(X, t(Y)), "rows")
  expect_error(assoc_cor(X, Y[, 1:100]), "samples")
  y2 <- Y
  colnames(y2) <- rev(colnames(Y))
  expect_error(assoc_cor(X, y2), "order")
  expect_error(assoc_cor(matrix(letters[1:6], 2, dimnames = list(c("a", "b"), NULL))), "numeric")
})

test_that("the user's input objects are not modified", {
  x <- X[1:20, ]
  y <- Y
  x_copy <- unserialize(serialize(x, NULL))
  y_copy <- unserialize(serialize(y, NULL))
  invisible(assoc_cor(x, y, method = "spearman"))
  invisible(assoc_cor(x, method = "spearman", p_max = 0.5))
  expect_identical(x, x_copy)
  expect_identical(y, y_copy)
  xn <- x
  xn[2, 3] <- NA
  xn_copy <- unserialize(serialize(xn, NULL))
  invisible(assoc_cor(xn, method = "spearman", na_action = "pairwise"))
  invisible(assoc_cor(xn, method = "pearson", na_action = "pairwise"))
  expect_identical(xn, xn_copy)
  s <- Matrix::Matrix(x, sparse = TRUE)
  s_copy <- unserialize(serialize(s, NULL))
  invisible(assoc_cor(s, method = "spearman"))
  expect_identical(s, s_copy)
  xi <- round(x)
  storage.mode(xi) <- "integer"
  xi_copy <- unserialize(serialize(xi, NULL))
  invisible(assoc_cor(xi, y))
  expect_identical(xi, xi_copy)
})

test_that("a data.frame is read as colData with a message, never flipped silently (issue 13)", {
  ref <- sorted_df(assoc_cor(X[1:5, ]))
  df <- as.data.frame(t(X[1:5, ]))
  expect_message(out <- assoc_cor(df), "`x` is a data.frame: read as colData, its 5 columns are the features")
  expect_equal(sorted_df(out), ref, tolerance = 1e-12)
  # the message can be turned off with the package's option
  old <- options(sceffects.verbose = FALSE)
  on.exit(options(old))
  expect_silent(assoc_cor(df))
  options(old)
  # a colData-style DataFrame is read the same way, and for `y` too
  expect_message(assoc_cor(X[1:3, ], S4Vectors::DataFrame(df)), "`y` is a data.frame")
  # a matrix is never messaged about
  expect_silent(assoc_cor(X[1:5, ]))
})

test_that("an ExpressionSet is read through exprs() or a named assayData element (issue 13)", {
  eset <- Biobase::ExpressionSet(assayData = X[1:6, ])
  expect_equal(sorted_df(assoc_cor(eset)), sorted_df(assoc_cor(X[1:6, ])))
  expect_equal(sorted_df(assoc_cor(eset, Y, assay = "exprs")), sorted_df(assoc_cor(X[1:6, ], Y)))
  expect_error(assoc_cor(eset, assay = "counts"), "not an assayData element of `x`; it has: exprs")
  expect_equal(sorted_df(assoc_mwu(eset, rep(c(TRUE, FALSE), length.out = ncol(X)))),
               sorted_df(assoc_mwu(X[1:6, ], rep(c(TRUE, FALSE), length.out = ncol(X)))))
})

# assoc_mwu() against wilcox.test() on the ALL data and on simulated data.

skip_if_not_installed("ALL")
skip_if_not_installed("Biobase")

all_env <- new.env()
utils::data("ALL", package = "ALL", envir = all_env)
X <- Biobase::exprs(all_env$ALL)[1:60, ]
pheno <- Biobase::pData(all_env$ALL)

rel_err <- function(a, b) ifelse(a == b, 0, abs(a - b) / abs(b))

# wilcox.test(x[g], x[!g]) on the complete cases of every row of a results table.
# `ind` maps feature_y to a logical indicator (NA = left out).
wilcox_ref <- function(r, x, ind, ...) {
  t(vapply(seq_len(nrow(r)), function(k) {
    v <- x[r$feature_x[k], ]
    g <- ind[[r$feature_y[k]]]
    ok <- !is.na(v) & !is.na(g)
    w <- suppressWarnings(stats::wilcox.test(v[ok & g], v[ok & !g], ...))
    c(unname(w$statistic), w$p.value, sum(ok & g), sum(ok & !g))
  }, numeric(4)))
}

expect_mwu_matches <- function(r, x, ind, ..., tol = 1e-10) {
  ref <- wilcox_ref(r, x, ind, ...)
  expect_equal(r$statistic, ref[, 1], tolerance = 0)
  expect_lte(max(rel_err(r$p_value, ref[, 2])), tol)
  expect_equal(r$n, as.integer(ref[, 3] + ref[, 4]))
  # AUC and rank-biserial correlation from wilcox.test's W
  expect_equal(r$auc, ref[, 1] / (ref[, 3] * ref[, 4]), tolerance = 1e-12)
  expect_equal(r$estimate, 2 * ref[, 1] / (ref[, 3] * ref[, 4]) - 1, tolerance = 1e-12)
  invisible(ref)
}

test_that("ALL data, sex as a logical indicator with NA, matches wilcox.test", {
  male <- pheno$sex == "M"
  expect_true(anyNA(male))
  r <- assoc_mwu(X, male)
  expect_equal(nrow(r), nrow(X))
  expect_true(all(c("feature_x", "feature_y", "estimate", "statistic", "auc", "p_value",
                    "log_p", "fdr", "n", "reason") %in% names(r)))
  ref <- expect_mwu_matches(r, X, list(groups = male))
  expect_equal(r$fdr, p.adjust(ref[, 2], "BH"), tolerance = 1e-10)
  expect_equal(r$log_p, log(ref[, 2]), tolerance = 1e-10)
  expect_true(all(r$n == sum(!is.na(male))))
  # 0/1 coding gives the same
  r01 <- assoc_mwu(X, as.numeric(male))
  expect_equal(r01$p_value, r$p_value, tolerance = 0)
})

test_that("factor groups give one indicator per level, each level against the rest", {
  r <- assoc_mwu(X[1:15, ], pheno$sex)
  expect_setequal(unique(r$feature_y), c("groups:F", "groups:M"))
  ind <- list(`groups:F` = pheno$sex == "F", `groups:M` = pheno$sex == "M")
  expect_mwu_matches(r, X, ind)
  # a multi-level factor: ALL's B/T subtype
  bt <- pheno$BT
  r <- assoc_mwu(X[1:10, ], bt)
  lv <- levels(droplevels(bt))
  expect_setequal(unique(r$feature_y), paste0("groups:", lv))
  expect_equal(nrow(r), 10 * length(lv))
  ind <- stats::setNames(lapply(lv, function(l) bt == l), paste0("groups:", lv))
  expect_mwu_matches(r, X, ind)
  # a data.frame of grouping columns: names are column:level
  d <- data.frame(sex = pheno$sex, relapse = pheno$relapse)
  r <- assoc_mwu(X[1:10, ], d)
  expect_setequal(unique(r$feature_y), c("sex:F", "sex:M", "relapse"))
  ind <- list(`sex:F` = pheno$sex == "F", `sex:M` = pheno$sex == "M", relapse = pheno$relapse)
  expect_mwu_matches(r, X, ind)
})

test_that("simulated data with ties: normal approximation with correction", {
  set.seed(21)
  x <- matrix(round(rnorm(12 * 40), 1), 12, dimnames = list(paste0("f", 1:12), NULL))
  g <- rep(c(TRUE, FALSE), c(15, 25))
  r <- assoc_mwu(x, g)
  expect_mwu_matches(r, x, list(groups = g))
  r <- assoc_mwu(x, g, correct = FALSE)
  expect_mwu_matches(r, x, list(groups = g), correct = FALSE)
  # all-tied feature: no variance
  r <- assoc_mwu(rbind(a = rep(1, 6)), rep(c(TRUE, FALSE), 3))
  expect_identical(r$reason, "zero variance")
  expect_true(is.na(r$p_value))
})

test_that("exact distribution for small groups without ties", {
  set.seed(22)
  x <- matrix(rnorm(20 * 12), 20, dimnames = list(paste0("f", 1:20), NULL))
  g <- rep(c(TRUE, FALSE), c(5, 7))
  r <- assoc_mwu(x, g)
  expect_mwu_matches(r, x, list(groups = g), tol = 1e-12)
  # exact p by full enumeration of the 792 splits, for the first feature
  f <- r$feature_x[1]
  rk <- rank(x[f, ])
  u_obs <- sum(rk[g]) - 5 * 6 / 2
  u_all <- combn(12, 5, function(i) sum(i) - 15)
  p_enum <- min(1, 2 * min(mean(u_all <= u_obs), mean(u_all >= u_obs)))
  expect_equal(r$p_value[1], p_enum, tolerance = 1e-12)
  # largest groups that still use the exact law (49 and 49) and a huge effect
  set.seed(23)
  x <- rbind(a = rnorm(98), b = c(1:49 + 100, 1:49))
  g <- rep(c(TRUE, FALSE), c(49, 49))
  x["a", g] <- x["a", g] + 3
  r <- assoc_mwu(x, g)
  expect_mwu_matches(r, x, list(groups = g), tol = 1e-10)
  # p = 2 / choose(98, 49): compare on the log scale
  b <- r[r$feature_x == "b", ]
  expect_equal(b$log_p, log(2) - lchoose(98, 49), tolerance = 1e-12)
})

test_that("exact p-values match pwilcox over the whole range of U", {
  # one feature per value of U: group 1 (the first m samples) gets ranks giving that U
  for (mn in list(c(45, 45), c(10, 49), c(3, 12))) {
    m <- mn[1]
    n <- mn[2]
    us <- unique(round(seq(0, m * n, length.out = 120)))
    x <- t(vapply(us, function(u) {
      q <- u %/% m
      rem <- u %% m
      rk <- (1:m) + q
      if (rem > 0) rk[(m - rem + 1):m] <- rk[(m - rem + 1):m] + 1
      as.numeric(c(rk, setdiff(seq_len(m + n), rk)))
    }, numeric(m + n)))
    rownames(x) <- paste0("u", us)
    g <- rep(c(TRUE, FALSE), c(m, n))
    r <- assoc_mwu(x, g)
    r <- r[match(rownames(x), r$feature_x), ]
    expect_equal(r$statistic, us)
    ref <- vapply(us, function(u) {
      p <- if (u > m * n / 2) stats::pwilcox(u - 1, m, n, lower.tail = FALSE) else stats::pwilcox(u, m, n)
      min(2 * p, 1)
    }, 0)
    expect_lte(max(rel_err(r$p_value, ref)), 1e-12)
  }
})

test_that("exact = TRUE and exact = FALSE follow wilcox.test", {
  set.seed(24)
  x <- rbind(a = rnorm(120), b = rnorm(120), c = round(rnorm(120)))
  g <- rep(c(TRUE, FALSE), c(60, 60))
  x["a", g] <- x["a", g] + 0.4
  expect_mwu_matches(assoc_mwu(x, g, exact = TRUE), x, list(groups = g), exact = TRUE)
  expect_mwu_matches(assoc_mwu(x, g), x, list(groups = g))
  x <- x[, 1:30]
  g <- g[1:30] & seq_len(30) %% 2 == 0
  expect_mwu_matches(assoc_mwu(x, g, exact = FALSE), x, list(groups = g), exact = FALSE)
  expect_mwu_matches(assoc_mwu(x, g, exact = FALSE, correct = FALSE), x, list(groups = g),
                     exact = FALSE, correct = FALSE)
  expect_mwu_matches(assoc_mwu(x, g, exact = TRUE), x, list(groups = g), exact = TRUE)
  expect_error(assoc_mwu(x, g, exact = "yes"), "exact")
})

test_that("NA in groups and in x (pairwise) use the complete cases", {
  set.seed(25)
  x <- matrix(rnorm(8 * 36), 8, dimnames = list(paste0("f", 1:8), NULL))
  x[1, 1:3] <- NA
  x[2, c(5, 30)] <- NA
  x[3, ] <- round(x[3, ])
  x[3, 7] <- NA
  g <- rep(c(TRUE, FALSE), 18)
  g[c(2, 11)] <- NA
  expect_error(assoc_mwu(x, g), "na_action")
  r <- assoc_mwu(x, g, na_action = "pairwise")
  expect_mwu_matches(r, x, list(groups = g), tol = 1e-12)
  r <- assoc_mwu(x, g, na_action = "pairwise", exact = FALSE, correct = FALSE)
  expect_mwu_matches(r, x, list(groups = g), exact = FALSE, correct = FALSE)
  # several indicators as a logical matrix with indicators in rows
  gm <- rbind(g1 = g, g2 = rep(c(TRUE, TRUE, FALSE), 12))
  r <- assoc_mwu(x, gm, na_action = "pairwise")
  expect_equal(nrow(r), 16L)
  expect_mwu_matches(r, x, list(g1 = gm[1, ], g2 = gm[2, ]), tol = 1e-12)
})

test_that("an empty group gives NA with reason", {
  set.seed(26)
  x <- rbind(a = rnorm(5), b = rnorm(5))
  r <- assoc_mwu(x, rep(TRUE, 5))
  expect_true(all(r$reason == "an empty group"))
  expect_true(all(is.na(r$p_value)))
  expect_true(all(is.na(r$estimate)))
  expect_error(stats::wilcox.test(x[1, ], numeric(0)))
  # empty only after the NA of x are dropped
  x <- rbind(a = c(NA, NA, 1, 2, 3), b = c(1, 2, 3, 4, 5))
  r <- assoc_mwu(x, c(TRUE, TRUE, FALSE, FALSE, FALSE), na_action = "pairwise")
  expect_identical(r$reason[r$feature_x == "a"], "an empty group")
  expect_identical(r$n[r$feature_x == "a"], 3L)
  expect_true(is.na(r$reason[r$feature_x == "b"]))
})

test_that("threads and block sizes do not change results", {
  g <- pheno$sex == "M"
  expect_identical(assoc_mwu(X, g, threads = 1), assoc_mwu(X, g, threads = 2))
  a <- assoc_mwu(X, pheno$BT, block_size = 7)
  b <- assoc_mwu(X, pheno$BT)
  key <- function(r) paste(r$feature_x, r$feature_y)
  expect_equal(a$p_value[order(key(a))], b$p_value[order(key(b))], tolerance = 1e-14)
})

test_that("a factor level without samples is dropped with a message, not tested as an empty group", {
  set.seed(27)
  x <- rbind(a = rnorm(12), b = rnorm(12))
  g <- factor(rep(c("lo", "hi"), 6), levels = c("lo", "hi", "none"))
  expect_message(r <- assoc_mwu(x, g), "`groups`: groups has level without samples, dropped: none")
  expect_setequal(unique(r$feature_y), c("groups:lo", "groups:hi"))
  expect_true(all(is.na(r$reason)))
  expect_equal(r, suppressMessages(assoc_mwu(x, droplevels(g))))
  d <- data.frame(tissue = g)
  expect_message(r2 <- assoc_mwu(x, d), "tissue has level without samples")
  expect_false(any(grepl("none", r2$feature_y)))
  old <- options(sceffects.verbose = FALSE)
  on.exit(options(old))
  expect_silent(assoc_mwu(x, g))
})

test_that("flags and block sizes of every assoc_* function are checked", {
  set.seed(28)
  x <- rbind(a = rnorm(12), b = rnorm(12))
  g <- rep(c(TRUE, FALSE), 6)
  expect_error(assoc_mwu(x, g, correct = NA), "`correct` must be TRUE or FALSE")
  expect_error(assoc_mwu(x, g, correct = "yes"), "`correct`")
  bin <- rbind(m1 = g, m2 = rev(g))
  expect_error(assoc_fisher(bin, mle = NA), "`mle` must be TRUE or FALSE")
  expect_error(assoc_chisq(data.frame(u = rep(1:2, 6), v = rep(1:3, 4)), correct = NA), "`correct` must be TRUE or FALSE")
  for (bs in list(2.5, 0, -1, NA, "a")) {
    expect_error(assoc_cor(x, block_size = bs), "`block_size` must be a single whole number >= 1")
    expect_error(assoc_mwu(x, g, block_size = bs), "`block_size`")
    expect_error(assoc_kruskal(x, rep(1:3, 4), block_size = bs), "`block_size`")
    expect_error(assoc_fisher(bin, block_size = bs), "`block_size`")
    expect_error(assoc_chisq(data.frame(u = rep(1:2, 6), v = rep(1:3, 4)), block_size = bs), "`block_size`")
  }
  expect_error(assoc_cor(x, top = 2.5), "`top`")
  expect_error(assoc_cor(x, top = 0), "`top`")
  expect_equal(assoc_cor(x, block_size = 1), assoc_cor(x))
})

test_that("assoc_* leave the user's objects unchanged", {
  set.seed(29)
  x <- rbind(a = rnorm(12), b = rnorm(12))
  storage.mode(x) <- "double"
  x0 <- x
  g <- factor(rep(c("lo", "hi"), 6), levels = c("lo", "hi", "none"))
  g0 <- g
  suppressMessages(assoc_mwu(x, g))
  assoc_cor(x, method = "spearman")
  expect_identical(x, x0)
  expect_identical(g, g0)
})

test_that("a dgCMatrix is ranked from its non-zeros: same as dense and as wilcox.test", {
  set.seed(27)
  # Many ties (few distinct values), negatives below the zeros, explicit stored zeros, an
  # all-zero feature, a feature without zeros, and a group with no non-zero of feature f1.
  d <- matrix(0, 30, 90, dimnames = list(paste0("f", 1:30), NULL))
  nz <- sample(length(d), 700)
  d[nz] <- sample(c(-2, -1, 0.5, 1, 1, 2, 3), 700, TRUE)
  d[3, ] <- 0
  d[4, ] <- round(rnorm(90), 1)
  grp <- factor(sample(c("a", "b", "c", "d"), 90, TRUE))
  d[1, grp == "d"] <- 0
  d[1, grp != "d"][1:5] <- c(1, 1, 2, -1, 3)
  s <- Matrix::Matrix(d, sparse = TRUE)
  s@x[s@i == 5L][1:3] <- 0   # explicit zeros are zeros
  expect_s4_class(s, "dgCMatrix")
  expect_true(any(s@x == 0))
  key <- function(r) r[order(r$feature_x, r$feature_y), ]
  dense_of <- as.matrix(s)
  for (args in list(list(), list(exact = FALSE, correct = FALSE), list(block_size = 7))) {
    rs <- do.call(assoc_mwu, c(list(s, grp), args))
    rd <- do.call(assoc_mwu, c(list(dense_of, grp), args))
    expect_identical(key(rs)[, c("feature_x", "feature_y", "statistic", "reason", "n")],
                     key(rd)[, c("feature_x", "feature_y", "statistic", "reason", "n")])
    expect_equal(key(rs)$p_value, key(rd)$p_value, tolerance = 1e-14)
    expect_equal(key(rs)$fdr, key(rd)$fdr, tolerance = 1e-14)
  }
  r <- assoc_mwu(s, grp)
  ok <- is.na(r$reason)
  ind <- stats::setNames(lapply(levels(grp), function(l) grp == l), paste0("groups:", levels(grp)))
  expect_mwu_matches(r[ok, ], dense_of, ind, tol = 1e-12)
  expect_true(all(r$reason[r$feature_x == "f3"] == "zero variance"))
  # several overlapping indicators (a logical matrix), a data.frame of them, and `top`
  gm <- rbind(g1 = grp %in% c("a", "b"), g2 = grp == "b", g3 = seq_len(90) %% 3 == 0)
  r <- assoc_mwu(s, gm)
  expect_identical(is.na(r$reason), r$feature_x != "f3")
  expect_mwu_matches(r[r$feature_x != "f3", ], dense_of,
                     list(g1 = gm[1, ], g2 = gm[2, ], g3 = gm[3, ]), tol = 1e-12)
  expect_identical(key(assoc_mwu(s, gm, top = 1)), key(assoc_mwu(dense_of, gm, top = 1)))
  # NA in the groups takes the dense path, with the same results as dense input
  gn <- gm[1, ]
  gn[c(4, 9)] <- NA
  expect_identical(key(assoc_mwu(s, gn)), key(assoc_mwu(dense_of, gn)))
})

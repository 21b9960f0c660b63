# assoc_kruskal() against kruskal.test() on the ALL data and on simulated data.

skip_if_not_installed("ALL")
skip_if_not_installed("Biobase")

all_env <- new.env()
utils::data("ALL", package = "ALL", envir = all_env)
X <- Biobase::exprs(all_env$ALL)[1:60, ]
pheno <- Biobase::pData(all_env$ALL)

rel_err <- function(a, b) ifelse(a == b, 0, abs(a - b) / abs(b))

# kruskal.test on the complete cases of every row of a results table; `fac` maps
# feature_y to the grouping vector.
kruskal_ref <- function(r, x, fac) {
  t(vapply(seq_len(nrow(r)), function(k) {
    v <- x[r$feature_x[k], ]
    g <- fac[[r$feature_y[k]]]
    ok <- !is.na(v) & !is.na(g)
    kt <- stats::kruskal.test(v[ok], factor(g[ok]))
    c(unname(kt$statistic), unname(kt$parameter), kt$p.value, sum(ok))
  }, numeric(4)))
}

expect_kruskal_matches <- function(r, x, fac, tol = 1e-10) {
  ref <- kruskal_ref(r, x, fac)
  expect_lte(max(rel_err(r$statistic, ref[, 1])), tol)
  expect_equal(r$df, ref[, 2], tolerance = 0)
  expect_lte(max(rel_err(r$p_value, ref[, 3])), tol)
  expect_equal(r$n, as.integer(ref[, 4]))
  expect_equal(r$estimate, ref[, 1] / (ref[, 4] - 1), tolerance = 1e-10)
  invisible(ref)
}

test_that("ALL data against the B/T subtype matches kruskal.test", {
  bt <- pheno$BT
  expect_true(is.factor(bt))
  r <- assoc_kruskal(X, bt)
  expect_equal(nrow(r), nrow(X))
  expect_true(all(c("feature_x", "feature_y", "estimate", "statistic", "df", "p_value",
                    "log_p", "fdr", "n", "reason") %in% names(r)))
  ref <- expect_kruskal_matches(r, X, list(groups = bt))
  expect_equal(r$fdr, p.adjust(ref[, 3], "BH"), tolerance = 1e-10)
  expect_equal(r$log_p, log(ref[, 3]), tolerance = 1e-10)
  expect_true(all(r$df == nlevels(droplevels(bt)) - 1))
  # B vs T only (first letter of BT)
  bt2 <- factor(substr(as.character(bt), 1, 1))
  expect_kruskal_matches(assoc_kruskal(X, bt2), X, list(groups = bt2))
})

test_that("a data.frame of clinical factors (with NA) matches kruskal.test", {
  d <- data.frame(BT = pheno$BT, sex = pheno$sex, mol = pheno$mol.biol, kinet = pheno$kinet)
  expect_true(anyNA(d$sex) && anyNA(d$kinet))
  r <- assoc_kruskal(X[1:20, ], d)
  expect_equal(nrow(r), 20 * 4)
  expect_setequal(unique(r$feature_y), names(d))
  expect_kruskal_matches(r, X, as.list(d))
  expect_equal(r$n[r$feature_y == "sex"], rep(sum(!is.na(d$sex)), 20))
})

test_that("simulated data with ties and NA (pairwise) match kruskal.test", {
  set.seed(31)
  x <- matrix(round(rnorm(10 * 45)), 10, dimnames = list(paste0("f", 1:10), NULL))
  x[1, 1:4] <- NA
  x[2, 40] <- NA
  g <- factor(rep(c("lung", "skin", "gut"), each = 15))
  g[c(3, 33)] <- NA
  expect_error(assoc_kruskal(x, g), "na_action")
  r <- assoc_kruskal(x, g, na_action = "pairwise")
  expect_kruskal_matches(r, x, list(groups = g))
  # integer and character codes
  gi <- rep(1:4, length.out = 45)
  expect_kruskal_matches(assoc_kruskal(x, gi, na_action = "pairwise"), x, list(groups = gi))
  gc <- as.character(g)
  expect_kruskal_matches(assoc_kruskal(x, gc, na_action = "pairwise"), x, list(groups = gc))
})

test_that("unused levels are dropped from the df", {
  set.seed(32)
  x <- matrix(rnorm(5 * 30), 5, dimnames = list(paste0("f", 1:5), NULL))
  g <- factor(sample(c("a", "b", "c"), 30, TRUE), levels = c("a", "b", "c", "unused"))
  r <- assoc_kruskal(x, g)
  expect_true(all(r$df == 2))
  expect_kruskal_matches(r, x, list(groups = g))
  # a level that is present only where x is missing
  x[1, g == "c"] <- NA
  r <- assoc_kruskal(x, g, na_action = "pairwise")
  expect_equal(r$df[r$feature_x == "f1"], 1)
  expect_kruskal_matches(r, x, list(groups = g))
})

test_that("a single group gives the reason", {
  set.seed(33)
  x <- rbind(a = rnorm(12), b = rnorm(12))
  r <- assoc_kruskal(x, factor(rep("only", 12)))
  expect_true(all(r$reason == "fewer than 2 groups"))
  expect_true(all(is.na(r$p_value)))
  expect_error(stats::kruskal.test(x[1, ], factor(rep("only", 12))))
  # one group left after missing values
  g <- factor(rep(c("u", "v"), 6))
  x[1, g == "v"] <- NA
  r <- assoc_kruskal(x, g, na_action = "pairwise")
  expect_identical(r$reason[r$feature_x == "a"], "fewer than 2 groups")
  expect_true(is.na(r$reason[r$feature_x == "b"]))
})

test_that("threads do not change results", {
  expect_identical(assoc_kruskal(X, pheno$BT, threads = 1),
                   assoc_kruskal(X, pheno$BT, threads = 2))
})

# fdr_bh() must be p.adjust(p, "BH") exactly.

test_that("fdr_bh is identical to p.adjust(BH) on random p with ties", {
  set.seed(101)
  for (rep in 1:20) {
    n <- sample(c(1, 2, 10, 100, 2000), 1)
    p <- runif(n)^sample(c(1, 3, 10), 1)
    # ties
    if (n > 2) p[sample(n, n %/% 3)] <- sample(p, n %/% 3, replace = TRUE)
    p <- round(p, sample(c(2, 4, 16), 1))
    expect_identical(fdr_bh(p), p.adjust(p, "BH"))
    expect_true(identical(fdr_bh(p), p.adjust(p, "BH")))
  }
  p <- c(0, 1, 1e-300, 5e-324, 0.5, 0.5, 1, 0)
  expect_identical(fdr_bh(p), p.adjust(p, "BH"))
  expect_identical(fdr_bh(numeric(0)), p.adjust(numeric(0), "BH"))
})

test_that("fdr_bh keeps names", {
  set.seed(102)
  p <- stats::setNames(runif(50), paste0("g", 1:50))
  expect_identical(fdr_bh(p), p.adjust(p, "BH"))
  expect_named(fdr_bh(p), names(p))
})

test_that("NA p-values stay missing, do not count as tests, and other values match", {
  set.seed(103)
  p <- stats::setNames(round(runif(200), 3), paste0("f", 1:200))
  p[sample(200, 25)] <- NA
  ours <- fdr_bh(p)
  ref <- p.adjust(p, "BH")
  expect_identical(is.na(ours), is.na(ref))
  expect_identical(ours[!is.na(ref)], ref[!is.na(ref)])
  expect_named(ours, names(p))
})

test_that("fdr_bh is identical to p.adjust(BH) when p has NA (NA stays NA, not NaN)", {
  # p.adjust returns NA_real_ where p is NA; an exact replacement must too.
  set.seed(104)
  p <- stats::setNames(c(round(runif(30), 2), NA, NA), paste0("f", 1:32))
  # expect_identical() (waldo) treats NA and NaN alike, so use identical() itself
  expect_true(identical(fdr_bh(p), p.adjust(p, "BH")))
  expect_true(identical(fdr_bh(c(0.01, NA, 0.03)), p.adjust(c(0.01, NA, 0.03), "BH")))
  expect_false(any(is.nan(fdr_bh(c(0.01, NA, 0.03)))))
})

test_that("fdr_bh rejects p-values outside [0, 1] and non-numeric input", {
  expect_error(fdr_bh(c(0.1, 1.2)), "\\[0, 1\\]")
  expect_error(fdr_bh(c(-0.1, 0.2)), "\\[0, 1\\]")
  expect_error(fdr_bh(c(-1e-12, NA)), "\\[0, 1\\]")
  expect_error(fdr_bh(c("0.1", "0.2")), "numeric")
})

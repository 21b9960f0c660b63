# p_tail() against R's own distribution functions (pt, pnorm, pchisq, pf, phyper) on a
# grid that includes extreme statistics and extreme degrees of freedom, both tails, and
# both the probability and the log scale.

# Compares p_tail(dist, ...) with `ref(lower.tail, log.p)` for all four tail/log settings.
# Probability scale: relative error <= tol wherever the R value is > 1e-300; where R's value
# is <= 1e-300 (underflow territory) the log values must agree instead.
# Log scale: relative error <= tol where R's log value is finite and non-zero, identical
# values otherwise (0 or -Inf).
expect_tails_match <- function(dist, q, a = NA_real_, b = NA_real_, c = NA_real_, ref,
                               tol = 1e-10) {
  for (lower in c(TRUE, FALSE)) {
    ours <- p_tail(dist, q, a, b, c, lower_tail = lower, log_p = FALSE)
    theirs <- ref(lower, FALSE)
    expect_length(ours, length(theirs))
    expect_false(anyNA(ours))
    big <- theirs > 1e-300
    rel <- abs(ours[big] - theirs[big]) / theirs[big]
    expect_lte(max(c(0, rel)), tol, label = sprintf("%s lower=%s max rel error (p scale)", dist, lower))
    if (any(!big)) {
      ours_log <- p_tail(dist, q[!big], rep_len(a, length(q))[!big], rep_len(b, length(q))[!big],
                         rep_len(c, length(q))[!big], lower_tail = lower, log_p = TRUE)
      theirs_log <- ref(lower, TRUE)[!big]
      fin <- is.finite(theirs_log) & theirs_log != 0
      expect_lte(max(c(0, abs(ours_log[fin] - theirs_log[fin]) / abs(theirs_log[fin]))), tol)
      expect_identical(ours_log[!fin], theirs_log[!fin])
      # and the probability-scale values agree where R's underflow to 0 or denormals
      expect_equal(ours[!big], theirs[!big], tolerance = 1e-10)
    }
    ours_log <- p_tail(dist, q, a, b, c, lower_tail = lower, log_p = TRUE)
    theirs_log <- ref(lower, TRUE)
    fin <- is.finite(theirs_log) & theirs_log != 0
    rel <- abs(ours_log[fin] - theirs_log[fin]) / abs(theirs_log[fin])
    expect_lte(max(c(0, rel)), tol, label = sprintf("%s lower=%s max rel error (log scale)", dist, lower))
    expect_identical(ours_log[!fin], theirs_log[!fin])
  }
}

test_that("t tails match pt() including huge statistics and extreme df", {
  q <- c(-1e160, -1e6, -1e3, -50, -3, -0.5, 0, 0.5, 3, 50, 1e3, 1e6, 1e160)
  g <- expand.grid(q = q, df = c(0.5, 1, 2, 10, 126, 1e6, 1e9))
  expect_tails_match("t", g$q, g$df,
                     ref = function(lt, lg) pt(g$q, g$df, lower.tail = lt, log.p = lg))
  # the specific extremes of the brief
  expect_equal(p_tail("t", 1e160, 1, lower_tail = FALSE), pt(1e160, 1, lower.tail = FALSE),
               tolerance = 1e-12)
  expect_gt(p_tail("t", 1e160, 1, lower_tail = FALSE), 0)
  expect_equal(p_tail("t", -1e6, 1, log_p = TRUE), pt(-1e6, 1, log.p = TRUE), tolerance = 1e-12)
})

test_that("normal tails match pnorm() down to z = -38 and beyond", {
  z <- c(-1e3, -40, -38, -37.5, -30, -10, -1, 0, 1, 10, 30, 37.5, 38, 40)
  expect_tails_match("norm", z, ref = function(lt, lg) pnorm(z, lower.tail = lt, log.p = lg))
  # a and b are ignored for the normal
  expect_equal(p_tail("norm", -38, a = 5, b = 7), pnorm(-38), tolerance = 1e-12)
  expect_equal(p_tail("norm", -38, log_p = TRUE), pnorm(-38, log.p = TRUE), tolerance = 1e-14)
})

test_that("chi-square tails match pchisq() up to x = 5000", {
  g <- expand.grid(q = c(0, 1e-8, 0.5, 1, 5, 50, 500, 1500, 5000),
                   df = c(0.5, 1, 2, 7, 100, 1e4))
  expect_tails_match("chisq", g$q, g$df,
                     ref = function(lt, lg) pchisq(g$q, g$df, lower.tail = lt, log.p = lg))
  expect_equal(p_tail("chisq", 5000, 1, lower_tail = FALSE, log_p = TRUE),
               pchisq(5000, 1, lower.tail = FALSE, log.p = TRUE), tolerance = 1e-12)
})

test_that("F tails match pf() with tiny and huge df", {
  g <- expand.grid(q = c(0, 0.01, 0.5, 1, 3, 50, 1e4), df1 = c(0.01, 1, 5, 1e6),
                   df2 = c(0.01, 1, 20, 1e6))
  expect_tails_match("f", g$q, g$df1, g$df2,
                     ref = function(lt, lg) pf(g$q, g$df1, g$df2, lower.tail = lt, log.p = lg))
})

test_that("hypergeometric tails match phyper()", {
  g <- expand.grid(q = 0:40, m = c(10, 30, 500), n = c(20, 40, 600), k = c(12, 30))
  g <- rbind(g, expand.grid(q = c(0, 50, 100, 150, 200, 250, 290, 300), m = 500, n = 600, k = 300))
  expect_tails_match("hyper", g$q, g$m, g$n, g$k,
                     ref = function(lt, lg) phyper(g$q, g$m, g$n, g$k, lower.tail = lt, log.p = lg))
  # far tails of a large urn, where the probability underflows
  q <- c(0, 1, 2, 498, 499, 500)
  expect_tails_match("hyper", q, 500, 500, 500,
                     ref = function(lt, lg) phyper(q, 500, 500, 500, lower.tail = lt, log.p = lg))
})

test_that("parameters are recycled and unknown distributions are rejected", {
  expect_equal(p_tail("t", c(-2, -1, 0, 1), c(3, 30)), pt(c(-2, -1, 0, 1), c(3, 30)),
               tolerance = 1e-14)
  expect_equal(p_tail("chisq", 3, c(1, 2, 5)), pchisq(3, c(1, 2, 5)), tolerance = 1e-14)
  expect_error(p_tail("gamma", 1, 2))
})

test_that("p_tail() checks its flags and gives length 0 for empty input, as pt()", {
  expect_error(p_tail("t", 1, 5, lower_tail = NA), "`lower_tail` must be TRUE or FALSE")
  expect_error(p_tail("t", 1, 5, lower_tail = "yes"), "`lower_tail`")
  expect_error(p_tail("norm", 1, log_p = NA), "`log_p` must be TRUE or FALSE")
  expect_error(p_tail("norm", "1"), "`q` must be numeric")
  expect_identical(p_tail("norm", numeric(0)), numeric(0))
  expect_identical(p_tail("t", numeric(0), 5), numeric(0))
  expect_identical(p_tail("t", 1:3, numeric(0)), numeric(0))
  expect_length(pt(numeric(0), 5), 0L)
  expect_equal(p_tail("t", -2, 5, lower_tail = FALSE), pt(-2, 5, lower.tail = FALSE), tolerance = 1e-14)
})

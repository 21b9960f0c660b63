# Under simulated nulls the p-values must be uniform (continuous tests) or never
# anti-conservative (Fisher's exact test, whose p-values are discrete). Fixed seeds.

ks_p <- function(p) suppressWarnings(stats::ks.test(p, "punif")$p.value)

test_that("Pearson and Spearman p-values are uniform under the null", {
  set.seed(61)
  x <- matrix(rnorm(200 * 30), 200, dimnames = list(paste0("g", 1:200), NULL))
  y <- matrix(rnorm(5 * 30), 5, dimnames = list(paste0("t", 1:5), NULL))
  for (method in c("pearson", "spearman")) {
    p <- assoc_cor(x, y, method = method)$p_value
    expect_length(p, 1000)
    expect_false(anyNA(p))
    expect_gt(ks_p(p), 0.001)
    for (alpha in c(0.01, 0.05, 0.1)) expect_lt(mean(p <= alpha), alpha + 0.03)
  }
  # within x: 200 choose 2 dependent pairs, still uniform marginally
  p <- assoc_cor(x[1:60, ])$p_value
  expect_gt(ks_p(p), 0.001)
})

test_that("Mann-Whitney p-values are uniform under the null (exact and normal)", {
  set.seed(62)
  x <- matrix(rnorm(200 * 60), 200, dimnames = list(paste0("g", 1:200), NULL))
  g <- rbind(g1 = rep(c(TRUE, FALSE), 30), g2 = sample(rep(c(TRUE, FALSE), c(20, 40))),
             g3 = sample(rep(c(TRUE, FALSE), c(25, 35))))
  p <- assoc_mwu(x, g)$p_value                    # exact (groups under 50, no ties)
  expect_length(p, 600)
  expect_gt(ks_p(p), 0.001)
  for (alpha in c(0.01, 0.05, 0.1)) expect_lt(mean(p <= alpha), alpha + 0.03)
  p <- assoc_mwu(x, g, exact = FALSE)$p_value     # normal approximation with correction
  expect_gt(ks_p(p), 0.001)
  # with ties
  xt <- round(x)
  p <- assoc_mwu(xt, g)$p_value
  expect_gt(ks_p(p), 0.001)
})

test_that("Kruskal-Wallis p-values are uniform under the null", {
  set.seed(63)
  x <- matrix(rnorm(300 * 45), 300, dimnames = list(paste0("g", 1:300), NULL))
  f <- data.frame(a = rep(c("u", "v", "w"), 15), b = sample(rep(1:5, 9)))
  p <- assoc_kruskal(x, f)$p_value
  expect_length(p, 600)
  expect_gt(ks_p(p), 0.001)
  for (alpha in c(0.01, 0.05, 0.1)) expect_lt(mean(p <= alpha), alpha + 0.03)
})

test_that("Fisher p-values are not anti-conservative under the null", {
  set.seed(64)
  a <- matrix(runif(60 * 80) < 0.3, 60, dimnames = list(paste0("a", 1:60), NULL))
  b <- matrix(runif(20 * 80) < 0.5, 20, dimnames = list(paste0("b", 1:20), NULL))
  p <- assoc_fisher(a, b)$p_value
  expect_length(p, 1200)
  expect_false(anyNA(p))
  for (alpha in c(0.01, 0.05, 0.1)) expect_lte(mean(p <= alpha), alpha + 0.015)
  # conservative but not degenerate: some small p-values occur
  expect_gt(mean(p <= 0.1), 0.03)
})

test_that("chi-square p-values are roughly uniform under the null", {
  set.seed(65)
  d <- as.data.frame(replicate(40, sample(c("x", "y", "z"), 200, TRUE)))
  p <- assoc_chisq(d)$p_value
  expect_length(p, choose(40, 2))
  expect_gt(ks_p(p), 0.001)
})

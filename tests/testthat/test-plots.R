# plot_volcano() and plot_pvalues() on results of several tests.

skip_if_not_installed("ggplot2")

set.seed(71)
x <- matrix(rnorm(20 * 40), 20, dimnames = list(paste0("g", 1:20), NULL))
grp <- rep(c(TRUE, FALSE), 20)
x[1, grp] <- x[1, grp] + 2
bin <- matrix(runif(6 * 40) < 0.4, 6, dimnames = list(paste0("m", 1:6), NULL))
results <- list(cor = assoc_cor(x), mwu = assoc_mwu(x, grp), fisher = assoc_fisher(bin))

test_that("plot_volcano returns a buildable ggplot of -log10 p against the estimate", {
  for (nm in names(results)) {
    r <- results[[nm]]
    p <- plot_volcano(r)
    expect_true(inherits(p, "ggplot"), label = nm)
    b <- ggplot2::ggplot_build(p)
    pts <- b$data[[1]]
    expect_equal(nrow(pts), nrow(r))
    # the points are (estimate, -log10 p), computed here from the table with base R
    finite <- is.finite(r$estimate)
    expect_equal(sort(pts$y), sort(-log10(r$p_value)), tolerance = 1e-10)
    expect_equal(sort(pts$x[is.finite(pts$x)]), sort(r$estimate[finite]), tolerance = 1e-10)
  }
})

test_that("plot_pvalues returns a buildable ggplot with histogram and QQ panels", {
  for (nm in names(results)) {
    r <- results[[nm]]
    p <- plot_pvalues(r)
    expect_true(inherits(p, "ggplot"), label = nm)
    b <- ggplot2::ggplot_build(p)
    hist_counts <- b$data[[1]]$count
    expect_equal(sum(hist_counts), sum(!is.na(r$p_value)))
    qq <- b$data[[3]]
    expect_equal(nrow(qq), sum(!is.na(r$p_value)))
    expect_equal(sort(qq$x), sort(-log10(stats::ppoints(nrow(qq)))), tolerance = 1e-10)
    expect_equal(sort(qq$y), sort(-log10(r$p_value)), tolerance = 1e-10)
  }
})

test_that("plots use log_p where p underflows", {
  set.seed(72)
  a <- rep(c(TRUE, FALSE), each = 600)   # p = 2 / choose(1200, 600) < 1e-300
  r <- assoc_fisher(rbind(a = a, b = a, c = rev(a) & runif(1200) < 0.5))
  expect_true(any(r$p_value == 0 & is.finite(r$log_p)))
  b <- ggplot2::ggplot_build(plot_volcano(r))
  expect_true(all(is.finite(b$data[[1]]$y)))
  expect_equal(max(b$data[[1]]$y), -min(r$log_p) / log(10), tolerance = 1e-10)
})

test_that("plots reject tables without estimate or p_value", {
  expect_error(plot_volcano(data.frame(a = 1, b = 2)), "estimate")
  expect_error(plot_volcano(data.frame(estimate = 1)), "p_value")
  expect_error(plot_pvalues(data.frame(p_value = 0.5)), "estimate")
  expect_error(plot_pvalues(list(estimate = 1, p_value = 0.5)), "results")
})

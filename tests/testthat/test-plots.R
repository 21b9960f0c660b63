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

test_that("plots refuse bad counts, cut-offs, negative standard errors and p-values outside [0, 1]", {
  r <- results$cor
  expect_error(plot_volcano(r, label = -1), "`label` must be a single whole number >= 0")
  expect_error(plot_volcano(r, label = 2.5), "`label`")
  expect_error(plot_volcano(r, fdr_max = 2), "`fdr_max`")
  expect_error(plot_pvalues(r, bins = 0), "`bins`")
  tab <- data.frame(feature = paste0("g", 1:4), estimate = c(1, -1, 0.5, 2), std_error = c(0.2, 0.3, 0.1, 0.5),
                    df = 10, p_value = c(0.01, 0.2, 0.03, 0.5))
  expect_s3_class(plot_forest(tab, n = 2), "ggplot")
  expect_error(plot_forest(tab, n = 0), "`n` must be a single whole number >= 1")
  expect_error(plot_forest(tab, n = -2), "`n`")
  expect_error(plot_forest(tab, alpha = -0.1), "`alpha`")
  neg <- tab
  neg$std_error[2] <- -0.3
  expect_error(plot_forest(neg), "`results` column `std_error` must hold numbers >= 0; 1 are negative")
  bad_p <- tab
  bad_p$p_value[1] <- 1.5
  expect_error(plot_volcano(bad_p), "`results` column `p_value` must hold probabilities in \\[0, 1\\]")
  expect_error(plot_pvalues(bad_p), "column `p_value`")
  expect_error(plot_forest(bad_p), "column `p_value`")
  bad_p$p_value[1] <- -0.01
  expect_error(plot_volcano(bad_p), "column `p_value`")
})

test_that("plot_top_genes_heatmap() and plot_gsea() refuse n = 0 or negative", {
  sce <- simulate_manifold(n_cells = 200, n_genes = 40, seed = 1)
  res <- data.frame(feature = rownames(sce), statistic = seq_len(nrow(sce)))
  expect_s3_class(plot_top_genes_heatmap(sce, res, "sample", n = 3), "ggplot")
  expect_error(plot_top_genes_heatmap(sce, res, "sample", n = 0), "`n` must be a single whole number >= 1")
  expect_error(plot_top_genes_heatmap(sce, res, "sample", n = -2), "`n`")
  g <- data.frame(set = c("a", "b"), nes = c(1, -2), fdr = c(0.1, 0.01), size = c(20, 30))
  expect_s3_class(plot_gsea(g), "ggplot")
  expect_error(plot_gsea(g, n = 0), "`n`")
  expect_error(plot_gsea(g, fdr_max = -1), "`fdr_max`")
})

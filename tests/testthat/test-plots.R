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
  expect_error(plot_forest(tab, fdr_max = -0.1), "`fdr_max`")
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
  res$symbol <- paste0("SYM", seq_len(nrow(res)))
  res$symbol[nrow(res)] <- NA
  p <- plot_top_genes_heatmap(sce, res, "sample", n = 3, label_by = "symbol")
  shown <- ggplot2::ggplot_build(p)$layout$panel_params[[1]]$y$get_labels()
  expect_setequal(shown, c(rownames(sce)[nrow(res)], paste0("SYM", nrow(res) - 1:2)))
  expect_error(plot_top_genes_heatmap(sce, res, "sample", label_by = "gene"), "`label_by` must name a column")
  g <- data.frame(set = c("a", "b"), nes = c(1, -2), fdr = c(0.1, 0.01), size = c(20, 30))
  expect_s3_class(plot_gsea(g), "ggplot")
  expect_error(plot_gsea(g, n = 0), "`n`")
  expect_error(plot_gsea(g, fdr_max = -1), "`fdr_max`")
})

# --- Every capability's table, on small data --------------------------------------------

# -log10 p as the plots draw it: from log_p where the table has it.
minus_log10_p <- function(r) if (!is.null(r$log_p)) -r$log_p / log(10) else -log10(r$p_value)

capability_tables <- function() {
  set.seed(73)
  design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
                         celltype = "cell_type", baseline = "Pre", followup = "Post")
  plain <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
                        baseline = "Pre", followup = "Post")
  sce <- simulate_trial(n_genes = 200, n_cells = 800, n_effect_genes = 5, seed = 3)
  genes <- rownames(sce)
  stats <- stats::setNames(stats::rnorm(400), paste0("g", 1:400))
  sets <- stats::setNames(lapply(1:6, function(i) names(stats)[(i - 1) * 30 + 1:30]), paste0("s", 1:6))
  trial_sets <- list(a = genes[1:15], b = genes[16:40], c = genes[41:70])
  cells <- data.frame(dose = stats::runif(80), batch = factor(rep(c("a", "b"), 40)))
  counts <- matrix(stats::rnbinom(6 * 80, mu = 5 * exp(cells$dose), size = 3), 6, byrow = TRUE,
                   dimnames = list(paste0("g", 1:6), NULL))
  meta <- data.frame(patient = factor(rep(1:8, each = 4)), time = rep(0:3, 8),
                     treatment = factor(rep(c("A", "B"), each = 16)))
  y <- matrix(stats::rnorm(4 * 32) + rep(meta$time, each = 4), 4, dimnames = list(paste0("y", 1:4), NULL))
  parts <- paste0("taxon", 1:5)
  tree <- list(list("taxon1", "taxon2"), list("taxon3", list("taxon4", "taxon5")))
  comp <- matrix(stats::rpois(5 * 32, 40) + 1, 5, dimnames = list(parts, paste0("s", 1:32)))
  x <- matrix(stats::rnorm(12 * 30), 12, dimnames = list(paste0("f", 1:12), NULL))
  grp <- rep(c("u", "v", "w"), 10)
  bin <- matrix(stats::runif(5 * 30) < 0.4, 5, dimnames = list(paste0("m", 1:5), NULL))
  manifold <- simulate_manifold(n_cells = 240, n_genes = 12, n_dims = 3, n_de_genes = 3, n_odd_genes = 3, seed = 3)
  q <- function(e) suppressMessages(suppressWarnings(e))
  list(
    did_table = q(did_table(sce, design)),
    between_arm = q(between_arm(sce, plain, visit = "Pre")),
    within_arm = q(within_arm(sce, plain, arm = "Non-responder")),
    abundance_did = q(abundance_did(sce, design)),
    gsea = q(gsea(stats, sets, nperm = 200, seed = 1)),
    gsea_did = q(gsea_did(sce, plain, collections = list(sim = trial_sets), min_size = 5, nperm = 200, seed = 1)),
    nb_summary = q(summary(nb_regression(counts, mean = ~ dose + batch, dispersion = ~ batch, data = cells))),
    lmm_table = q(lmm_table(y, ~ time + treatment + (1 | patient), meta)),
    balance_lmm = q(balance_lmm(comp, ~ time, meta, tree, groups = "patient")),
    assoc_cor = assoc_cor(x),
    assoc_mwu = assoc_mwu(x, grp == "u"),
    assoc_fisher = assoc_fisher(bin),
    assoc_chisq = q(assoc_chisq(bin)),
    assoc_kruskal = assoc_kruskal(x, grp),
    diff_expression = q(diff_expression(manifold, "condition", "young", "old", n_landmarks = 30, null_genes = 30))
  )
}
tables <- capability_tables()

# The rows a plot shows: one term of a table with several per feature (the default term).
default_rows <- function(r) {
  keys <- if (!is.null(r$component)) paste(r$component, r$term, sep = ":") else r$term
  if (is.null(keys)) return(rep(TRUE, nrow(r)))
  choices <- unique(keys)
  keys == choices[!grepl("Intercept", choices)][1]
}

test_that("every capability's table gives a volcano plot of its p-values", {
  for (nm in names(tables)) {
    r <- as.data.frame(tables[[nm]])
    rows <- default_rows(r)
    b <- suppressMessages(ggplot2::ggplot_build(plot_volcano(tables[[nm]])))
    pts <- b$data[[1]]
    expect_equal(nrow(pts), sum(rows), label = nm)
    expect_equal(sort(pts$y), sort(minus_log10_p(r)[rows]), tolerance = 1e-10, label = nm)
    effect <- if (!is.null(r$estimate)) r$estimate else r$nes
    expect_equal(sort(pts$x), sort(effect[rows]), tolerance = 1e-10, label = nm)
  }
})

test_that("every capability's table gives a p-value histogram and QQ plot", {
  for (nm in names(tables)) {
    r <- as.data.frame(tables[[nm]])
    rows <- default_rows(r) & !is.na(r$p_value)
    b <- suppressMessages(ggplot2::ggplot_build(plot_pvalues(tables[[nm]])))
    expect_equal(sum(b$data[[1]]$count), sum(rows), label = nm)
    expect_equal(sort(b$data[[3]]$y), sort(minus_log10_p(r)[rows]), tolerance = 1e-10, label = nm)
  }
})

test_that("plot_volcano() keeps every label on a dense table and gives the text room", {
  set.seed(74)
  n <- 400
  dense <- data.frame(feature = paste0("a_rather_long_gene_name_", 1:n), estimate = stats::rnorm(n),
                      p_value = stats::runif(n, 1e-4, 2e-4))
  p <- plot_volcano(dense, label = 30)
  b <- ggplot2::ggplot_build(p)
  text_layer <- which(vapply(p$layers, function(l) inherits(l$geom, "GeomText"), logical(1)))
  expect_false(isTRUE(p$layers[[text_layer]]$geom_params$check_overlap))
  txt <- b$data[[text_layer]]
  expect_equal(nrow(txt), 30L)
  expect_true(all(nzchar(txt$label)))
  top <- order(-log10(dense$p_value), decreasing = TRUE)[1:30]
  expect_setequal(txt$label, dense$feature[top])
  # labels on one side of a point never share a line: a text line apart at least
  gap <- 0.04 * diff(range(-log10(dense$p_value)))
  for (h in unique(txt$hjust)) {
    expect_true(all(diff(sort(txt$y[txt$hjust == h])) >= gap))
  }
  # nothing is clipped: no clipping at the panel, and the axes hold the labels and their text
  expect_equal(p$coordinates$clip, "off")
  ranges <- b$layout$panel_params[[1]]
  expect_true(all(txt$x >= ranges$x.range[1] & txt$x <= ranges$x.range[2]))
  expect_true(all(txt$y >= ranges$y.range[1] & txt$y <= ranges$y.range[2]))
  blank <- which(vapply(p$layers, function(l) inherits(l$geom, "GeomBlank"), logical(1)))
  ends <- b$data[[blank]]$x
  expect_true(all(ends >= ranges$x.range[1] & ends <= ranges$x.range[2]))
  expect_true(all(abs(ends - txt$x) > 0))
})

test_that("plot_volcano(label_by =) labels with a column of the table, e.g. gene symbols", {
  r <- data.frame(feature = paste0("g", 1:20), estimate = seq(-1, 1, length.out = 20), p_value = (1:20) / 40)
  r$symbol <- paste0("SYM", seq_len(nrow(r)))
  r$symbol[which.min(r$p_value)] <- NA
  b <- ggplot2::ggplot_build(plot_volcano(r, label = 3, label_by = "symbol"))
  top <- order(r$p_value)[1:3]
  expect_setequal(b$data[[3]]$label, c(r$feature[top[1]], r$symbol[top[2:3]]))
  expect_error(plot_volcano(r, label_by = "gene_symbol"), "`label_by` must name a column of `results`")
  expect_error(plot_volcano(r, label_by = 2), "`label_by`")
})

test_that("plots of a table with several terms show one, by default the first effect, and say so", {
  nb <- tables$nb_summary
  expect_message(b <- ggplot2::ggplot_build(plot_volcano(nb)), "plotting term `mean:dose`.*`term =`")
  rows <- nb$component == "mean" & nb$term == "dose"
  expect_equal(sort(b$data[[1]]$y), sort(-nb$log_p[rows] / log(10)), tolerance = 1e-10)
  # a term of one component only, or component:term
  expect_silent(b2 <- ggplot2::ggplot_build(plot_volcano(nb, term = "dose")))
  expect_equal(b2$data[[1]]$y, b$data[[1]]$y)
  disp <- nb$component == "dispersion" & nb$term == "batchb"
  b3 <- ggplot2::ggplot_build(plot_pvalues(nb, term = "dispersion:batchb"))
  expect_equal(sort(b3$data[[3]]$y), sort(-nb$log_p[disp] / log(10)), tolerance = 1e-10)
  expect_error(plot_volcano(nb, term = "(Intercept)"), "names 2 terms.*mean:\\(Intercept\\)")
  expect_error(plot_volcano(nb, term = "age"), "`term` = \"age\" is not a term of `results`: use one of")
  expect_error(plot_volcano(tables$assoc_cor, term = "dose"), "`term` applies only to tables with a `term`")
  expect_error(plot_volcano(nb, term = c("a", "b")), "`term` must be a single term name")
  lmm <- tables$lmm_table
  expect_message(plot_pvalues(lmm), "plotting term `time`")
  b4 <- ggplot2::ggplot_build(plot_forest(lmm, term = "treatmentB", n = 50))
  expect_equal(nrow(b4$data[[3]]), sum(lmm$term == "treatmentB"))
  # a quiet session hears nothing
  withr_opt <- options(sceffects.verbose = FALSE)
  on.exit(options(withr_opt))
  expect_silent(plot_volcano(nb))
})

test_that("plot_pvalues() names the axes of both panels", {
  p <- plot_pvalues(tables$assoc_cor)
  b <- ggplot2::ggplot_build(p)
  expect_equal(as.character(b$layout$layout$panel), c("p-value", "expected -log10(p)"))
  expect_equal(p$labels$y, "count")
  expect_equal(p$scales$get_scales("y")$secondary.axis$name, "observed -log10(p)")
  expect_equal(p$facet$params$strip.position, "bottom")
})

test_that("plot_forest() highlights by FDR, not raw p", {
  tab <- data.frame(feature = paste0("g", 1:4), estimate = c(1, -1, 0.5, 2), std_error = c(0.2, 0.3, 0.1, 0.5),
                    df = 10, p_value = c(0.01, 0.2, 0.03, 0.5), fdr = c(0.2, 0.4, 0.01, 0.6))
  pts <- ggplot2::ggplot_build(plot_forest(tab))$data[[3]]
  red <- pts$colour == "firebrick"
  expect_equal(sort(levels(plot_forest(tab)$data$name)[pts$y[red]]), "g3")
  # without an fdr column, the BH FDR of the p-values: 0.04 for p = 0.01, 0.06 for p = 0.03
  tab$fdr <- NULL
  pts <- ggplot2::ggplot_build(plot_forest(tab))$data[[3]]
  expect_equal(sum(pts$colour == "firebrick"), 1L)
  pts <- ggplot2::ggplot_build(plot_forest(tab, fdr_max = 0.06))$data[[3]]
  expect_equal(sum(pts$colour == "firebrick"), 2L)
})

test_that("plot_gsea() gives significant sets the largest dots and a binned FDR legend", {
  g <- data.frame(set = c("small", "big", "mid", "null"), nes = c(2.5, 1.2, -1.8, 0.3),
                  fdr = c(0.0004, 0.2, 0.03, 0.9), size = c(10, 500, 60, 200))
  p <- plot_gsea(g)
  pts <- ggplot2::ggplot_build(p)$data[[3]]
  size_of <- function(s) pts$size[pts$x == g$nes[g$set == s]]
  expect_gt(size_of("small"), size_of("mid"))
  expect_gt(size_of("mid"), size_of("big"))
  expect_gt(size_of("big"), size_of("null"))
  bins <- c("< 0.001", "< 0.01", "< 0.05", "<= 0.25", "ns (> 0.25)")
  for (aes in c("colour", "size")) {
    sc <- p$scales$get_scales(aes)
    expect_true(sc$is_discrete())
    expect_equal(as.character(sc$get_breaks()), bins)
    expect_equal(sc$name, "FDR")
  }
  expect_equal(as.character(sceffects:::fdr_bins(c(0, 0.001, 0.0099, 0.05, 0.25, 0.2501, NA), 0.25)),
               bins[c(1, 2, 2, 4, 4, 5, 5)])
  expect_equal(levels(sceffects:::fdr_bins(0.01, 0.05)), c("< 0.001", "< 0.01", "<= 0.05", "ns (> 0.05)"))
  # the set size is in the set's label
  expect_true("small (10)" %in% levels(p$data$label))
})

# One API: the same idea has the same argument and the same behaviour in every function.

test_that("one chunk planner honours every limit and covers the features once", {
  covers <- function(chunks, n) expect_identical(unlist(chunks), seq_len(n))
  covers(sceffects:::plan_chunks(10L), 10L)
  expect_length(sceffects:::plan_chunks(10L), 1L)
  expect_length(sceffects:::plan_chunks(0L), 0L)
  ch <- sceffects:::plan_chunks(10L, block_size = 3L)
  covers(ch, 10L)
  expect_equal(lengths(ch), c(3L, 3L, 3L, 1L))
  covers(sceffects:::plan_chunks(5000L, delayed = TRUE), 5000L)
  expect_true(all(lengths(sceffects:::plan_chunks(5000L, delayed = TRUE)) <= 2048L))
  expect_true(all(lengths(sceffects:::plan_chunks(100L, max_values = 1000, n_samples = 100L)) <= 10L))
  bp <- BiocParallel::SerialParam()
  expect_length(sceffects:::plan_chunks(10L, BPPARAM = BiocParallel::MulticoreParam(2)), 2L)
  expect_length(sceffects:::plan_chunks(1L, BPPARAM = BiocParallel::MulticoreParam(2)), 1L)
  expect_length(sceffects:::plan_chunks(10L, BPPARAM = bp), 1L)
})

test_that("every feature-parallel function takes BPPARAM and gives the same result with workers", {
  skip_on_os("windows")
  bp <- BiocParallel::MulticoreParam(2)
  set.seed(3)
  x <- matrix(rnorm(60 * 30), 60, dimnames = list(paste0("g", 1:60), NULL))
  y <- rbind(drug = x[1, ] + rnorm(30), dose = rnorm(30))
  grp <- factor(rep(c("a", "b", "c"), 10))
  same <- function(a, b) {
    key <- function(t) paste(t$feature_x, t$feature_y)
    expect_equal(a[order(key(a)), ], b[order(key(b)), ], ignore_attr = TRUE)
  }
  same(assoc_cor(x, block_size = 16), assoc_cor(x, block_size = 16, BPPARAM = bp))
  same(assoc_cor(x, top = 3, block_size = 16), assoc_cor(x, top = 3, block_size = 16, BPPARAM = bp))
  same(assoc_cor(x, y, p_max = 0.5, block_size = 16), assoc_cor(x, y, p_max = 0.5, block_size = 16, BPPARAM = bp))
  m_serial <- assoc_cor(x, block_size = 16, output = "matrix")
  expect_equal(assoc_cor(x, block_size = 16, output = "matrix", BPPARAM = bp), m_serial)
  same(suppressMessages(assoc_mwu(x, grp, block_size = 16)),
       suppressMessages(assoc_mwu(x, grp, block_size = 16, BPPARAM = bp)))
  same(assoc_kruskal(x, grp, block_size = 16), assoc_kruskal(x, grp, block_size = 16, BPPARAM = bp))
  b <- x > 0
  same(assoc_fisher(b, block_size = 16), assoc_fisher(b, block_size = 16, BPPARAM = bp))
  cat_x <- matrix(sample(c("u", "v", "w"), 40 * 30, TRUE), 40, dimnames = list(paste0("c", 1:40), NULL))
  same(assoc_chisq(cat_x, block_size = 16), assoc_chisq(cat_x, block_size = 16, BPPARAM = bp))
  expect_error(assoc_cor(x, BPPARAM = "multicore"), "`BPPARAM` must be NULL or a BiocParallel")

  sce <- simulate_trial(n_genes = 260, n_cells = 1500, seed = 2)
  design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
                         baseline = "Pre", followup = "Post")
  expect_equal(between_arm(sce, design, "Pre", verbose = FALSE),
               between_arm(sce, design, "Pre", BPPARAM = bp, verbose = FALSE), ignore_attr = TRUE)
  sets <- S4Vectors::metadata(sce)$gene_sets
  expect_equal(score_gene_sets(sce, sets, add = FALSE),
               score_gene_sets(sce, sets, add = FALSE, BPPARAM = bp), tolerance = 1e-12)

  stats <- stats::setNames(rnorm(2000), paste0("g", 1:2000))
  stats[1:40] <- stats[1:40] + 6
  gs <- list(top = paste0("g", 1:40), mid = paste0("g", 20:70), rand = paste0("g", sample(2000, 50)))
  serial <- gsea(stats, gs, nperm = 200, eps = 1e-30, seed = 7, verbose = FALSE)
  expect_true(any(serial$p_method == "multilevel"))
  expect_equal(gsea(stats, gs, nperm = 200, eps = 1e-30, seed = 7, BPPARAM = bp, verbose = FALSE),
               serial, ignore_attr = TRUE)
})

test_that("seed = NULL follows set.seed(); a number fixes the result; the user's RNG is kept", {
  set.seed(11)
  a <- simulate_trial(n_genes = 250, n_cells = 400)
  set.seed(11)
  b <- simulate_trial(n_genes = 250, n_cells = 400)
  expect_identical(as.matrix(SummarizedExperiment::assay(a)), as.matrix(SummarizedExperiment::assay(b)))
  c2 <- simulate_trial(n_genes = 250, n_cells = 400)
  expect_false(identical(as.matrix(SummarizedExperiment::assay(a)), as.matrix(SummarizedExperiment::assay(c2))))
  set.seed(5)
  before <- .Random.seed
  simulate_trial(n_genes = 250, n_cells = 400, seed = 3)
  expect_identical(.Random.seed, before)
  defaults <- function(f) formals(f)$seed
  for (f in list(did_table, diff_abundance, diff_expression, gsea, gsea_did, simulate_trial,
                 simulate_manifold, abundance_did, trial_power)) {
    expect_null(defaults(f))
  }
})

test_that("verbose = FALSE silences every messaging function, and the option does too", {
  d <- data.frame(a = c(1, 2, 3, 4, 5), b = c(2, 1, 4, 3, 6))
  expect_message(assoc_cor(d), "read as colData")
  expect_silent(assoc_cor(d, verbose = FALSE))
  expect_silent(withr_quiet <- local({
    old <- options(sceffects.verbose = FALSE)
    on.exit(options(old))
    assoc_cor(d)
  }))
  # The option is restored after a quiet call.
  expect_message(assoc_cor(d), "read as colData")
  expect_silent(assoc_mwu(matrix(rnorm(12), 2, dimnames = list(c("u", "v"), NULL)), factor(c("a", "b", "a", "b", "a", "b"), levels = c("a", "b", "z")),
                          verbose = FALSE))
  stats <- stats::setNames(c(1, 1, 2, 3, 4, 5), letters[1:6])
  expect_message(gsea(stats, list(s = c("a", "b", "zz")), min_size = 1, nperm = 20, seed = 1), "not in the ranking")
  expect_silent(gsea(stats, list(s = c("a", "b", "zz")), min_size = 1, nperm = 20, seed = 1, verbose = FALSE))
  tab <- data.frame(feature = rep(c("g1", "g2"), each = 2), term = rep(c("(Intercept)", "dose"), 2),
                    estimate = c(1, 2, 3, 4), std_error = 1, p_value = c(0.5, 0.01, 0.2, 0.03))
  expect_message(plot_volcano(tab), "plotting term `dose`")
  expect_silent(plot_volcano(tab, verbose = FALSE))
  expect_silent(plot_pvalues(tab, verbose = FALSE))
  expect_silent(plot_forest(tab, verbose = FALSE))
  expect_error(assoc_cor(d, verbose = "no"), "`verbose` must be TRUE or FALSE")
  for (f in c("assoc_cor", "assoc_mwu", "assoc_kruskal", "assoc_fisher", "assoc_chisq", "gsea",
              "gsea_did", "score_gene_sets", "plot_volcano", "plot_pvalues", "plot_forest",
              "did_table", "between_arm", "nb_regression", "harmonize_response", "abundance_did")) {
    expect_true("verbose" %in% names(formals(get(f))), info = f)
  }
})

test_that("a choice argument's error names the argument and its choices; partial matching stays", {
  x <- matrix(rnorm(40), 4, dimnames = list(paste0("g", 1:4), NULL))
  expect_error(assoc_cor(x, method = "kendall"), "`method` must be one of \"pearson\", \"spearman\"")
  expect_error(assoc_cor(x, output = "wide"), "`output` must be one of \"long\", \"matrix\"")
  expect_error(assoc_mwu(x, rep(c(TRUE, FALSE), 5), output = "wide"), "`output` must be one of")
  expect_equal(assoc_cor(x, method = "spear"), assoc_cor(x, method = "spearman"))
  expect_error(p_tail("gamma", 1), "`dist` must be one of")
  sce <- simulate_trial(n_genes = 250, n_cells = 400, seed = 1)
  design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
                         baseline = "Pre", followup = "Post")
  expect_error(did_table(sce, design, vcov = "HC3"), "`vcov` must be one of \"CR2\", \"CR1\"")
  expect_error(within_arm(sce, design, "Responder", aggregate = "mean"), "`aggregate` must be one of")
})

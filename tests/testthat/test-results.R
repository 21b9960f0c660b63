# One results constructor and the way back into the user's object.

test_that("results_table orders the vocabulary, turns NaN into NA and derives p, log p and FDR", {
  df <- data.frame(extra = 1:4, reason = NA_character_, log_p = log(c(0.01, 0.2, NaN, 0.03)),
                   estimate = c(1, NaN, 2, 3), term = c("a", "a", "b", "b"), feature = paste0("g", 1:4))
  r <- sceffects:::results_table(df, "test", fdr_by = "term")
  expect_equal(names(r), c("feature", "term", "estimate", "p_value", "log_p", "fdr", "extra", "reason"))
  expect_true(is.na(r$estimate[2]) && is.na(r$log_p[3]) && is.na(r$p_value[3]))
  expect_equal(r$p_value, c(0.01, 0.2, NA, 0.03))
  expect_equal(r$fdr, c(p.adjust(c(0.01, 0.2), "BH"), NA, 0.03))
  expect_s3_class(r, "sceffects_results")
})

sce <- simulate_trial(n_genes = 300, n_cells = 1500, seed = 2)
design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
                       baseline = "Pre", followup = "Post")

test_that("per-feature tables of every capability go into rowData, matched by feature", {
  did <- suppressMessages(suppressWarnings(did_table(sce, design, features = rownames(sce)[1:40])))
  out <- add_results(sce, did, prefix = "did")
  rd <- SummarizedExperiment::rowData(out)
  at <- match(did$feature, rownames(sce))
  expect_equal(rd$did_estimate[at], did$estimate)
  expect_equal(rd$did_fdr[at], did$fdr)
  expect_true(all(is.na(rd$did_estimate[-at])))
  # the assays are the user's, not copies
  expect_identical(SummarizedExperiment::assay(out), SummarizedExperiment::assay(sce))
  expect_identical(SummarizedExperiment::rowData(sce), SummarizedExperiment::rowData(simulate_trial(n_genes = 300, n_cells = 1500, seed = 2)))

  between <- suppressMessages(between_arm(sce, design, "Post", features = rownames(sce)[1:20]))
  expect_equal(SummarizedExperiment::rowData(add_results(sce, between, "pre"))$pre_p_value[1:20], between$p_value[match(rownames(sce)[1:20], between$feature)])

  counts <- SummarizedExperiment::assay(simulate_trial(n_genes = 300, n_cells = 300, counts = TRUE, seed = 3), "counts")
  cells <- data.frame(dose = rnorm(300))
  nb <- summary(suppressMessages(nb_regression(counts[1:5, ], ~ dose, data = cells)))
  small <- SummarizedExperiment::SummarizedExperiment(list(counts = counts[1:8, ]))
  rd <- SummarizedExperiment::rowData(add_results(small, nb, "nb"))
  dose <- nb[nb$term == "dose" & nb$component == "mean", ]
  expect_equal(rd$nb_mean_dose_estimate[match(dose$feature, rownames(small))], dose$estimate)
  expect_true(all(is.na(rd$nb_mean_dose_estimate[6:8])))

  lmm <- lmm_table(counts[1:4, ], ~ dose + (1 | g), data.frame(dose = cells$dose, g = rep(1:10, 30)))
  rd <- SummarizedExperiment::rowData(add_results(small, lmm, "lmm", columns = c("estimate", "p_value")))
  expect_equal(sort(grep("^lmm_", names(rd), value = TRUE)),
               sort(c("lmm_X.Intercept._estimate", "lmm_X.Intercept._p_value", "lmm_dose_estimate", "lmm_dose_p_value")))

  m <- simulate_manifold(n_cells = 400, n_genes = 50, seed = 4)
  de <- diff_expression(m, "condition", "young", "old", n_landmarks = 40, null_genes = 0,
                        features = rownames(m)[1:12], seed = 1)
  rd <- SummarizedExperiment::rowData(add_results(m, de, "de"))
  expect_equal(rd$de_statistic[match(de$feature, rownames(m))], de$statistic)
  expect_equal(rd$de_p_value[match(de$feature, rownames(m))], de$p_value)
  expect_true(all(is.na(rd$de_statistic[13:50])))

  within <- suppressMessages(within_arm(sce, design, "Responder", features = rownames(sce)[1:10]))
  rd <- SummarizedExperiment::rowData(add_results(sce, within, "resp"))
  expect_equal(rd$resp_estimate[match(within$feature, rownames(sce))], within$estimate)
})

test_that("add_results refuses what cannot go into rowData, naming the argument", {
  did <- suppressMessages(suppressWarnings(did_table(sce, design, features = rownames(sce)[1:10])))
  expect_error(add_results(SummarizedExperiment::assay(sce), did, "did"), "`x`")
  pairs <- assoc_cor(matrix(rnorm(60), 3, 20, dimnames = list(letters[1:3], NULL)))
  expect_error(add_results(sce, pairs, "cor"), "`results`")
  expect_error(add_results(sce, did, ""), "`prefix`")
  expect_error(add_results(sce, did, "did", columns = "nope"), "`columns`")
  expect_error(add_results(sce, rbind(did, did), "did"), "several rows per feature")
})

test_that("gsea tables speak the vocabulary: feature and estimate", {
  set.seed(1)
  stats <- stats::setNames(rnorm(500), paste0("G", 1:500))
  r <- gsea(stats, list(a = paste0("G", 1:30), b = paste0("G", 31:80)), nperm = 100, seed = 1)
  expect_equal(r$feature, r$set)
  expect_equal(r$estimate, r$nes)
  expect_equal(names(r)[1:2], c("feature", "estimate"))
})

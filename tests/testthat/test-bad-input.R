# The bad-input battery: every exported function that computes, called the right way and
# then with one thing wrong. Each wrong call must stop with a message naming the argument,
# and no call may modify the user's objects. Per-capability cases (degenerate features,
# designs, methods) live in test-bad-input-<area>.R beside this file.

set.seed(20261202)
mat <- matrix(rnorm(8 * 30), 8, 30, dimnames = list(paste0("f", 1:8), paste0("s", 1:30)))
grp <- rep(c("a", "b"), 15)
counts <- matrix(rpois(6 * 40, 5), 6, 40, dimnames = list(paste0("g", 1:6), paste0("c", 1:40)))
cells <- data.frame(dose = rnorm(40), subject = factor(rep(1:8, each = 5)))
trial <- simulate_trial(n_genes = 300, n_cells = 600, seed = 3)
design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
                       celltype = "cell_type", baseline = "Pre", followup = "Post")
stats <- stats::setNames(rnorm(300), paste0("G", 1:300))
sets <- list(one = paste0("G", 1:20), two = paste0("G", 21:45))
tree <- ape::rtree(6, tip.label = paste0("t", 1:6))
comp <- matrix(rpois(6 * 40, 20) + 1, 6, 40, dimnames = list(paste0("t", 1:6), paste0("c", 1:40)))
manifold <- simulate_manifold(n_cells = 300, n_genes = 40, n_dims = 5, seed = 2)

# One valid call per function; `...` carries the argument under test.
valid_calls <- list(
  assoc_cor = function(...) assoc_cor(mat, ...),
  assoc_mwu = function(...) assoc_mwu(mat, grp, ...),
  assoc_kruskal = function(...) assoc_kruskal(mat, grp, ...),
  assoc_fisher = function(...) assoc_fisher(mat > 0, ...),
  assoc_chisq = function(...) assoc_chisq(mat > 0, ...),
  did_table = function(...) suppressMessages(suppressWarnings(did_table(trial[1:20, ], design, ...))),
  between_arm = function(...) suppressMessages(suppressWarnings(between_arm(trial[1:20, ], design, "Post", ...))),
  score_gene_sets = function(...) suppressWarnings(score_gene_sets(trial, list(s = rownames(trial)[1:5]), add = FALSE, ...)),
  nb_regression = function(...) suppressMessages(nb_regression(counts, ~ dose, data = cells, ...)),
  pseudobulk = function(...) pseudobulk(counts, "subject", data = cells, verbose = FALSE, ...),
  lmm_table = function(...) lmm_table(counts, ~ dose + (1 | subject), cells, ...),
  prediction_error = function(...) prediction_error(lmm_table(counts, ~ dose, cells), folds = 4, ...),
  gsea = function(...) suppressMessages(gsea(stats, sets, min_size = 5, nperm = 50, ...)),
  diff_expression = function(...) suppressMessages(suppressWarnings(
    diff_expression(manifold, "condition", "young", "old", features = rownames(manifold)[1:5], n_landmarks = 50,
                    null_genes = 20, ...))),
  diff_abundance = function(...) suppressMessages(suppressWarnings(
    diff_abundance(manifold, "condition", "young", "old", n_landmarks = 50, ...)))
)

has_arg <- function(f, arg) arg %in% names(formals(get(f, envir = asNamespace("sceffects"))))

test_that("every valid call in the battery runs", {
  for (f in names(valid_calls)) expect_error(valid_calls[[f]](), NA, label = f)
})

test_that("threads: NA, text, fractions, zero and absurd counts are refused by name", {
  for (f in names(valid_calls)) {
    if (!has_arg(f, "threads")) next
    for (bad in list(NA, "a", 1.5, 0, 1e6, 1e10, c(1, 2))) {
      expect_error(valid_calls[[f]](threads = bad), "`threads`", label = sprintf("%s(threads = %s)", f, format(bad)))
    }
  }
})

test_that("seed: NA, text and negative values are refused by name", {
  for (f in names(valid_calls)) {
    if (!has_arg(f, "seed")) next
    for (bad in list(NA, "a", -1, 1.5)) {
      expect_error(valid_calls[[f]](seed = bad), "`seed`", label = sprintf("%s(seed = %s)", f, format(bad)))
    }
  }
})

test_that("BPPARAM: anything but NULL or a BiocParallelParam is refused by name, even for one chunk", {
  for (f in names(valid_calls)) {
    if (!has_arg(f, "BPPARAM")) next
    for (bad in list("a", "multicore", 2)) {
      expect_error(valid_calls[[f]](BPPARAM = bad), "`BPPARAM`", label = sprintf("%s(BPPARAM = %s)", f, format(bad)))
    }
  }
})

test_that("block and chunk sizes must be whole numbers >= 1", {
  for (f in names(valid_calls)) {
    for (arg in "block_size") {
      if (!has_arg(f, arg)) next
      for (bad in list(2.5, 0, -1, NA, "a")) {
        args <- stats::setNames(list(bad), arg)
        expect_error(do.call(valid_calls[[f]], args), sprintf("`%s`", arg),
                     label = sprintf("%s(%s = %s)", f, arg, format(bad)))
      }
    }
  }
})

test_that("counts of draws too large to run are refused by name, not with an internal message", {
  expect_error(valid_calls$did_table(bootstrap = 1e10), "`bootstrap`")
  expect_error(valid_calls$did_table(bootstrap = 2e9), "`bootstrap`")
  expect_error(gsea(stats, sets, nperm = 1e12), "`nperm`")
  expect_error(gsea(stats, sets, min_size = 1e10), "`min_size`")
})

test_that("arguments a function does not have are an error, also through `...`", {
  expect_error(suppressMessages(abundance_did(trial, design, covariates = "x")), "covariates")
  expect_error(suppressMessages(abundance_did(trial, design, bogus_argument = 1)), "bogus_argument")
  expect_error(suppressMessages(within_arm(trial[1:20, ], design, "Responder", bogus_argument = 1)), "bogus_argument")
  expect_error(suppressMessages(gsea_did(trial[1:20, ], design, list(c1 = list(s = rownames(trial)[1:5])), bogus_argument = 1)),
               "bogus_argument")
  expect_error(balance_lmm(comp, ~ dose + (1 | subject), cells, tree, bogus_argument = 1), "bogus_argument")
})

test_that("flags are TRUE or FALSE, never a silent NA", {
  expect_error(assoc_mwu(mat, grp, correct = NA), "`correct`")
  expect_error(assoc_chisq(mat > 0, correct = NA), "`correct`")
  expect_error(valid_calls$did_table(standardize = NA), "`standardize`")
  expect_error(p_tail("norm", 1, lower_tail = NA), "`lower_tail`")
  expect_error(p_tail("norm", 1, log_p = NA), "`log_p`")
})

test_that("NA and infinite values in numeric input are refused by the argument's name", {
  bad_na <- mat; bad_na[2, 3] <- NA
  bad_inf <- mat; bad_inf[2, 3] <- Inf
  for (x in list(bad_na, bad_inf)) {
    expect_error(assoc_cor(x), "`x`")
    expect_error(assoc_mwu(x, grp), "`x`")
    expect_error(assoc_kruskal(x, grp), "`x`")
    expect_error(lmm_table(x[, 1:30], ~ 1 + (1 | g), data.frame(g = rep(1:6, 5))), "`x`")
  }
  na_counts <- counts; na_counts[1, 1] <- NA
  expect_error(nb_regression(na_counts, ~ dose, data = cells), "NA")
  expect_error(gsea(c(stats[-1], G1 = NA), sets, min_size = 5), "`stats`")
  expect_error(gsea(c(stats[-1], G1 = Inf), sets, min_size = 5), "`stats`")
})

test_that("duplicated or missing feature names are refused", {
  dup <- mat; rownames(dup)[2] <- rownames(dup)[1]
  expect_error(assoc_cor(dup), "duplicated")
  expect_error(assoc_mwu(dup, grp), "duplicated")
  nonames <- mat; rownames(nonames) <- NULL
  expect_error(assoc_cor(nonames), "feature names")
  dup_counts <- counts; rownames(dup_counts)[2] <- rownames(dup_counts)[1]
  expect_error(nb_regression(dup_counts, ~ dose, data = cells), "duplicated")
  dup_stats <- stats; names(dup_stats)[2] <- names(dup_stats)[1]
  expect_error(gsea(dup_stats, sets, min_size = 5), "`stats`")
  no_rownames <- trial[1:20, ]; rownames(no_rownames) <- NULL
  expect_error(suppressMessages(did_table(no_rownames, design)), "rownames|feature names")
})

test_that("wrong orientation (samples in rows) is named, never silently flipped", {
  expect_error(assoc_mwu(t(mat), grp), "rows|columns|samples")
  expect_error(assoc_kruskal(t(mat), grp), "rows|columns|samples")
  expect_error(nb_regression(t(counts), ~ dose, data = cells), "rows|columns|cells|samples")
  expect_error(lmm_table(t(counts), ~ dose + (1 | subject), cells), "rows|columns|samples|observations")
})

test_that("one feature works and zero features give an empty table or a clear error", {
  expect_equal(unique(assoc_mwu(mat[1, , drop = FALSE], grp)$feature_x), "f1")
  expect_equal(ncol(coef(suppressMessages(nb_regression(counts[1, , drop = FALSE], ~ dose, data = cells)))), 1L)
  expect_equal(unique(lmm_table(counts[1, , drop = FALSE], ~ dose + (1 | subject), cells)$feature), "g1")
  empty <- mat[0, , drop = FALSE]
  for (f in list(function() assoc_cor(empty), function() assoc_mwu(empty, grp))) {
    out <- tryCatch(f(), error = function(e) e)
    if (inherits(out, "error")) expect_match(conditionMessage(out), "`x`") else expect_equal(nrow(out), 0L)
  }
  out <- tryCatch(suppressMessages(did_table(trial[0, ], design)), error = function(e) e)
  if (inherits(out, "error")) expect_match(conditionMessage(out), "`x`|no features|genes") else expect_equal(nrow(out), 0L)
})

test_that("constant and all-zero features give NA rows with a reason, not a crash", {
  flat <- mat; flat[1, ] <- 3; flat[2, ] <- 0
  r <- assoc_mwu(flat, grp)
  expect_setequal(r$feature_x, rownames(mat))
  constant_rows <- r$feature_x %in% c("f1", "f2")
  expect_true(all(is.na(r$p_value[constant_rows]) & !is.na(r$reason[constant_rows])))
  z <- counts; z[1, ] <- 0
  fit <- suppressMessages(nb_regression(z, ~ dose, data = cells))
  expect_false(fit$converged[["g1"]])
  constant <- counts; constant[2, ] <- 4
  lt <- lmm_table(constant, ~ dose + (1 | subject), cells)
  row <- lt[lt$feature == "g2", ]
  expect_true(all(is.na(row$p_value)))
  expect_true(all(!is.na(row$reason) & nzchar(row$reason)))
  for (term in unique(lt$term)) {
    others <- lt$term == term & lt$feature != "g2"
    expect_equal(lt$fdr[others], p.adjust(lt$p_value[others], "BH"))
  }
})

test_that("no call modifies the user's objects", {
  keep <- list(mat = mat, counts = counts, cells = cells, trial = trial, design = design, stats = stats,
               sets = sets, manifold = manifold, comp = comp, tree = tree)
  for (f in names(valid_calls)) valid_calls[[f]]()
  suppressMessages(suppressWarnings({
    harmonize_response(trial, design)
    abundance_did(trial, design)
    within_arm(trial[1:20, ], design, "Responder")
    balances(comp, tree)
    balance_lmm(comp, ~ dose + (1 | subject), cells, tree)
    score_gene_sets(trial, list(s = rownames(trial)[1:5]))
  }))
  now <- list(mat = mat, counts = counts, cells = cells, trial = trial, design = design, stats = stats,
              sets = sets, manifold = manifold, comp = comp, tree = tree)
  for (nm in names(keep)) expect_identical(now[[nm]], keep[[nm]], label = nm)
})

test_that("issue 17's entry points refuse bad input by name and leave objects unchanged", {
  keep <- list(comp = comp, tree = tree, cells = cells)
  expect_error(balance_basis(tree, sparse = NA), "`sparse`")
  expect_error(balance_taxa(tree, "nope"), "`balance`")
  expect_error(balance_taxa(tree, taxonomy = "x"), "`taxonomy`")
  expect_error(correlation_linkage(comp, pseudocount = -1), "`pseudocount`")
  expect_error(gradient_linkage(comp, "dose"), "`data` has no column `dose`|`gradient`")
  expect_error(gradient_linkage(comp, cells$dose, method = 3), "`method`")
  expect_error(prediction_error(lmm_table(comp, ~ dose + (1 | subject), cells)), "`fit`")
  expect_error(prediction_error(lmm_table(comp, ~ dose, cells), folds = NA), "`folds`")
  expect_error(prediction_error(lmm_table(comp, ~ dose, cells), bogus_argument = 1), "bogus_argument")
  expect_error(plot_balance_heatmap(comp, tree, values = "nope"), "`values`")
  expect_error(plot_balance_boxplot(comp, "y0", "dose", cells), "`b`|`balance`")
  expect_error(plot_balance_taxa(tree, c(1, 2), level = "x"), "`balance`")
  invisible(list(balance_basis(tree, sparse = TRUE), balance_taxa(tree), correlation_linkage(comp),
                 gradient_linkage(comp, cells$dose), prediction_error(lmm_table(comp, ~ dose, cells)),
                 plot_balance_heatmap(comp, tree), plot_balance_boxplot(balances(comp, tree), 1, "subject", cells)))
  now <- list(comp = comp, tree = tree, cells = cells)
  for (nm in names(keep)) expect_identical(now[[nm]], keep[[nm]], label = nm)
})

test_that("the newer entry points refuse bad input by name and leave objects unchanged", {
  did <- suppressMessages(suppressWarnings(did_table(trial[1:20, ], design)))
  keep_trial <- trial
  keep_did <- did
  expect_error(add_results(mat, did, "did"), "`x`")
  expect_error(add_results(trial, did, NA), "`prefix`")
  expect_error(add_results(trial, did, "did", columns = "nope"), "`columns`")
  expect_error(add_results(trial, assoc_cor(mat), "cor"), "`results`")
  fit <- suppressMessages(nb_regression(counts, ~ dose, data = cells))
  keep_fit <- fit
  expect_error(contrast(fit, "nope"), "`contrast`")
  expect_error(contrast(fit, c(1, 2, 3)), "`contrast`")
  expect_error(contrast(fit, NA_real_), "`contrast`")
  expect_error(contrast(fit, "dose", bogus_argument = 1), "bogus_argument")
  expect_error(nb_regression(counts, ~ dose, data = cells, size_factors = "a"), "`size_factors`")
  expect_error(nb_regression(counts, ~ dose, data = cells, size_factors = c(-1, rep(1, 39))), "`size_factors`")
  out <- add_results(trial, did, "did")
  invisible(contrast(fit, "dose"))
  expect_identical(trial, keep_trial)
  expect_identical(did, keep_did)
  expect_identical(fit, keep_fit)
})

test_that("this session's entry points and arguments refuse bad input by name", {
  keep_trial <- trial
  expect_error(did_table(trial, design, visits = c("Pre", "Nope")), "`visits`")
  expect_error(did_table(trial, design, conf_level = 2), "`conf_level`")
  expect_error(did_table(trial, design, permutations = -1), "`permutations`")
  expect_error(did_table(trial, design, trend = "quadratic"), "`trend` must be one of")
  expect_error(plot_event_study(data.frame(a = 1)), "`results`")
  fit <- suppressMessages(nb_regression(counts, ~ dose, data = cells))
  expect_error(nb_copula(list(), counts), "`fit`")
  expect_error(nb_copula(fit, counts[1:2, ]), "`x`")
  expect_error(nb_copula(fit, counts, seed = "a"), "`seed`")
  expect_error(nb_copula(fit, counts, family = "gamma"), "`family`")
  expect_error(nb_copula(fit, counts, group = 1), "`group`")
  expect_error(nb_copula(fit, counts, max_cells = 0), "`max_cells`")
  expect_error(nb_copula(fit, counts, block_size = 0), "`block_size`")
  expect_error(edit_fit(fit, coef = "dose", scale = NA), "`scale`")
  expect_error(edit_fit(fit, coef = "dose", value = 1, component = "size"), "`component`")
  expect_error(edit_fit(fit, coef = "dose", value = 1, genes = 0), "`gene`")
  expect_error(edit_fit(fit, swap = "dose"), "`swap`")
  m <- simulate_manifold(n_cells = 400, n_genes = 50, seed = 1)
  keep_m <- m
  expect_error(diff_abundance(m, "condition", "young", "old", k = 0), "`k`")
  expect_error(diff_abundance(m, "condition", "young", "old", fdr_threshold = -1), "`fdr_threshold`")
  expect_error(diff_abundance(m, "condition", "young", "old", method = "milo"), "`method`")
  expect_error(plot_da(m), "`x`")
  expect_identical(trial, keep_trial)
  expect_identical(m, keep_m)
})

test_that("diff_expression(null =) takes \"cell_state\" or \"cells\" and refuses anything else by name", {
  for (bad in list("cell", "perm", NA, 1, c("cells", "x"), TRUE)) {
    expect_error(valid_calls$diff_expression(null = bad), "`null` must be one of \"cell_state\", \"cells\"",
                 label = sprintf("null = %s", format(bad)))
  }
  expect_error(valid_calls$diff_expression(null = "cells"), NA)
})

# GSEA against a brute-force R implementation of the running sum and of the permutation
# test, and against long permutation runs for the multilevel p-values.

# The weighted running sum over every gene, as GSEA defines it.
brute_es <- function(stats, set, weight = 1) {
  ranked <- stats[order(-stats, names(stats), method = "radix")]
  hit <- names(ranked) %in% set
  w <- abs(ranked)^weight
  run <- cumsum(ifelse(hit, w / sum(w[hit]), -1 / sum(!hit)))
  es <- if (max(run) >= -min(run)) max(run) else min(run)
  at <- which(run == es)[1]
  edge <- if (es >= 0) names(ranked)[seq_len(at)] else names(ranked)[at:length(ranked)]
  list(es = es, leading_edge = edge[edge %in% set])
}

ranking <- function(n = 3000, seed = 1) {
  set.seed(seed)
  stats::setNames(stats::rnorm(n), paste0("g", seq_len(n)))
}

test_that("enrichment scores and leading edges equal the brute-force running sum", {
  stats <- ranking()
  genes <- names(stats)
  set.seed(2)
  sets <- c(list(top = names(sort(stats, decreasing = TRUE))[c(1:10, 500:520)],
                 bottom = names(sort(stats))[1:25]),
            stats::setNames(lapply(1:20, function(i) sample(genes, sample(15:200, 1))), paste0("r", 1:20)))
  for (weight in c(0, 1, 2)) {
    res <- suppressMessages(gsea(stats, sets, weight = weight, nperm = 100, seed = 1))
    for (k in seq_len(nrow(res))) {
      ref <- brute_es(stats, sets[[res$set[k]]], weight)
      expect_equal(res$es[k], ref$es, tolerance = 1e-12)
      expect_setequal(res$leading_edge[[k]], ref$leading_edge)
    }
  }
  expect_gt(res$es[res$set == "top"], 0)
  expect_lt(res$es[res$set == "bottom"], 0)
})

test_that("enrichment scores agree with brute force on a real ranking (ALL t statistics)", {
  skip_if_not_installed("ALL")
  skip_if_not_installed("Biobase")
  data("ALL", package = "ALL", envir = environment())
  x <- Biobase::exprs(ALL)[1:4000, ]
  bt <- substr(ALL$BT, 1, 1)
  tt <- apply(x, 1, function(v) stats::t.test(v[bt == "B"], v[bt == "T"])$statistic)
  stats <- stats::setNames(as.numeric(tt), rownames(x))
  set.seed(3)
  sets <- stats::setNames(lapply(1:15, function(i) sample(names(stats), sample(15:300, 1))), paste0("s", 1:15))
  sets$t_high <- names(sort(stats, decreasing = TRUE))[seq(1, 400, by = 8)]
  res <- suppressMessages(gsea(stats, sets, nperm = 100, seed = 1))
  ref <- vapply(res$set, function(s) brute_es(stats, sets[[s]])$es, 0)
  expect_equal(res$es, unname(ref), tolerance = 1e-12)
})

test_that("permutation p-values and NES agree with a brute-force permutation test", {
  stats <- ranking(2000, seed = 4)
  genes <- names(stats)
  ranked <- names(sort(stats, decreasing = TRUE))
  # Mildly enriched sets, so p-values are in the permutation range.
  set.seed(4)
  sets <- list(a = c(sample(ranked[1:1000], 15), sample(ranked, 15)),
               b = c(sample(ranked[1000:2000], 12), sample(ranked, 18)),
               c = sample(ranked, 40))
  res <- suppressMessages(gsea(stats, sets, nperm = 4000, seed = 7))
  set.seed(11)
  for (k in seq_len(nrow(res))) {
    size <- res$size[k]
    null <- replicate(2000, brute_es(stats, sample(genes, size))$es)
    es <- res$es[k]
    same <- if (es >= 0) null[null >= 0] else null[null <= 0]
    p_ref <- (1 + sum(if (es >= 0) same >= es else same <= es)) / (1 + length(same))
    expect_equal(res$p_method[k], "permutation")
    se <- sqrt(p_ref * (1 - p_ref) / length(same) + res$p_value[k] * (1 - res$p_value[k]) / 2000)
    expect_lt(abs(res$p_value[k] - p_ref), 4 * se + 1e-3)
    expect_equal(res$nes[k], es / abs(mean(same)), tolerance = 0.05)
  }
})

test_that("multilevel p-values agree with long permutation runs within their reported error", {
  stats <- ranking(2000, seed = 4)
  ranked <- names(sort(stats, decreasing = TRUE))
  set.seed(4)
  sets <- list(up = sample(ranked[1:1300], 30), down = sample(ranked[800:2000], 30))
  ml <- suppressMessages(gsea(stats, sets, nperm = 1000, seed = 1))
  expect_true(all(ml$p_method == "multilevel"))
  long <- suppressMessages(gsea(stats, sets, nperm = 2e6, seed = 2))
  long <- long[match(ml$set, long$set), ]
  expect_true(all(long$p_method == "permutation"))
  expect_true(all(ml$p_value < 1e-3 & long$p_value < 1e-3))
  err <- sqrt(ml$log2err^2 + long$log2err^2)
  expect_true(all(abs(log2(ml$p_value) - log2(long$p_value)) < 3 * err))
})

test_that("tiny p-values are resolved, with errors, down to eps", {
  stats <- ranking(20000, seed = 8)
  ranked <- names(sort(stats, decreasing = TRUE))
  sets <- list(strong = ranked[seq(1, 8000, by = 80)], extreme = ranked[1:50],
               random = sample(ranked, 100))
  res <- suppressMessages(gsea(stats, sets, seed = 3, eps = 1e-30))
  strong <- res[res$set == "strong", ]
  expect_equal(strong$p_method, "multilevel")
  expect_lt(strong$p_value, 1e-12)
  expect_gt(strong$p_value, 1e-20)
  expect_true(is.finite(strong$log2err) && strong$log2err < 1.5)
  extreme <- res[res$set == "extreme", ]
  expect_equal(extreme$p_method, "multilevel bound")
  expect_equal(extreme$p_value, 1e-30)
  expect_true(is.na(extreme$log2err))
})

test_that("p-values are uniform under a null ranking", {
  stats <- ranking(3000, seed = 9)
  set.seed(10)
  sets <- stats::setNames(lapply(1:300, function(i) sample(names(stats), sample(15:100, 1))), paste0("s", 1:300))
  res <- suppressMessages(gsea(stats, sets, nperm = 2000, seed = 4))
  p <- res$p_value
  expect_gt(suppressWarnings(stats::ks.test(p, "punif"))$p.value, 0.001)
  expect_lt(abs(mean(p < 0.05) - 0.05), 0.04)
})

test_that("results are the same for a seed whatever the threads, and differ between seeds", {
  stats <- ranking(4000, seed = 12)
  ranked <- names(sort(stats, decreasing = TRUE))
  sets <- list(up = ranked[seq(1, 1000, by = 20)], mid = sample(ranked, 30), down = ranked[3950:4000])
  one <- suppressMessages(gsea(stats, sets, seed = 5, threads = 1))
  two <- suppressMessages(gsea(stats, sets, seed = 5, threads = 2))
  expect_identical(one, two)
  other <- suppressMessages(gsea(stats, sets, seed = 6, threads = 2))
  expect_false(identical(one$p_value, other$p_value))
  set.seed(1)
  a <- suppressMessages(gsea(stats, sets))
  set.seed(1)
  b <- suppressMessages(gsea(stats, sets))
  expect_identical(a, b)
})

test_that("ties are ordered by gene name, with a message, whatever the input order", {
  stats <- round(ranking(1000, seed = 13), 1)
  set.seed(14)
  sets <- list(s = sample(names(stats), 40))
  expect_message(a <- gsea(stats, sets, seed = 1), "tied statistics")
  shuffled <- stats[sample(length(stats))]
  b <- suppressMessages(gsea(shuffled, sets, seed = 1))
  expect_equal(a$es, b$es)
  expect_equal(a$p_value, b$p_value)
  expect_equal(a$es, brute_es(stats, sets$s)$es, tolerance = 1e-12)
  expect_gt(attr(a, "report")$tie_fraction, 0.5)
})

test_that("sets outside the size bounds and missing genes are reported, not dropped", {
  stats <- ranking(500)
  sets <- list(small = names(stats)[1:5], ok = names(stats)[10:40], big = names(stats)[1:300],
               partial = c(names(stats)[50:70], paste0("absent", 1:10)))
  expect_message(res <- gsea(stats, sets, max_size = 200, seed = 1), "not in the ranking")
  expect_setequal(res$set, names(sets))
  expect_match(res$reason[res$set == "small"], "fewer than min_size")
  expect_match(res$reason[res$set == "big"], "more than max_size")
  expect_true(is.na(res$p_value[res$set == "big"]))
  expect_equal(res$size[res$set == "partial"], 21L)
  expect_equal(res$n_genes[res$set == "partial"], 31L)
  expect_equal(attr(res, "report")$missing_genes, 10)
  expect_true(all(is.na(res$reason[res$set %in% c("ok", "partial")])))
  expect_equal(res$fdr[!is.na(res$p_value)], stats::p.adjust(res$p_value[!is.na(res$p_value)], "BH"))
})

test_that("bad input stops with a message naming the argument", {
  stats <- ranking(200)
  sets <- list(a = names(stats)[1:20])
  expect_error(gsea(unname(stats), sets), "`stats`")
  expect_error(gsea(c(stats, g1 = 1), sets), "duplicated gene names")
  bad <- stats
  bad[3] <- NA
  expect_error(gsea(bad, sets), "missing or infinite")
  expect_error(gsea(stats, names(stats)[1:20]), "`sets`")
  expect_error(gsea(stats, list(names(stats)[1:20])), "`sets`")
  expect_error(gsea(stats, sets, min_size = 30, max_size = 20), "`max_size`")
  expect_error(gsea(stats, sets, weight = -1), "`weight`")
  expect_error(gsea(stats, sets, nperm = 5), "`nperm`")
  expect_error(gsea(stats, sets, eps = 0), "`eps`")
  expect_error(gsea(stats, sets, seed = 1.5), "`seed`")
  zero <- stats
  zero[1:20] <- 0
  res <- suppressMessages(gsea(zero, sets, seed = 1))
  expect_equal(res$reason, "all genes of the set have weight 0")
  expect_identical(stats, ranking(200))
})

test_that("GMT files round-trip", {
  sets <- list(setA = c("TP53", "MDM2"), setB = c("CD3E", "CD4", "CD8A"))
  path <- tempfile(fileext = ".gmt")
  write_gmt(sets, path, description = c("p53", "T cells"))
  back <- read_gmt(path)
  expect_equal(unclass(back)[names(sets)], sets, ignore_attr = TRUE)
  expect_equal(unname(attr(back, "description")), c("p53", "T cells"))
  writeLines(c("x\tdesc\tA\tB\t", "", "y\tdesc\tC"), path)
  expect_equal(lengths(read_gmt(path)), c(x = 2L, y = 1L))
  writeLines("just-a-name", path)
  expect_error(read_gmt(path), "not a GMT file")
  expect_error(read_gmt(tempfile()), "`path`")
  writeLines(c("x\td\tA", "x\td\tB"), path)
  expect_error(read_gmt(path), "duplicated set names")
})

test_that("gsea_did ranks one DiD and tests every collection against it", {
  sce <- simulate_trial(n_genes = 400, n_cells = 3000, seed = 2)
  design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
                         baseline = "Pre", followup = "Post")
  sets <- S4Vectors::metadata(sce)$gene_sets
  gmt <- tempfile(fileext = ".gmt")
  write_gmt(sets[1:2], gmt)
  res <- suppressMessages(gsea_did(sce, design, collections = list(sim = sets, file = gmt),
                                   min_size = 5, nperm = 500, seed = 3))
  did <- attr(res, "did")
  expect_equal(nrow(did), 400L)
  stat <- sign(did$estimate) * -log10(did$p_value)
  ok <- is.finite(stat)
  direct <- suppressMessages(gsea(stats::setNames(stat[ok], did$feature[ok]), sets, min_size = 5,
                                  nperm = 500, seed = 3))
  sim <- res[res$collection == "sim", ]
  expect_equal(sim$set, direct$set)
  expect_equal(sim$es, direct$es, tolerance = 1e-8)
  expect_equal(sim$p_value, direct$p_value, tolerance = 1e-8)
  expect_setequal(res$set[res$collection == "file"], names(sets)[1:2])
  planted <- c("planted_did_up", "planted_did_down")
  expect_true(all(sim$p_value[sim$set %in% planted] < 0.01))
  expect_equal(sign(sim$nes[match(planted, sim$set)]), c(1, -1))
  t_res <- suppressMessages(gsea_did(sce, design, collections = list(sim = sets), ranking = "t",
                                     min_size = 5, nperm = 200, seed = 3))
  expect_equal(attr(t_res, "ranking")[1:5], stats::setNames(did$statistic, did$feature)[names(attr(t_res, "ranking"))[1:5]])
  expect_error(gsea_did(sce, design, collections = sets), "`collections")
})

test_that("the enrichment plots build", {
  stats <- ranking(1000)
  sets <- list(a = names(stats)[1:50], b = names(stats)[300:360], c = names(sort(stats))[1:40])
  res <- suppressMessages(gsea(stats, sets, seed = 1))
  expect_s3_class(plot_gsea(res), "ggplot")
  p <- plot_enrichment(stats, sets$c)
  expect_s3_class(p, "ggplot")
  expect_equal(min(p$data$running), brute_es(stats, sets$c)$es, tolerance = 1e-12)
  expect_error(plot_enrichment(stats, "absent"), "`set`")
  expect_error(plot_gsea(data.frame(a = 1)), "`results`")
})

test_that("sizes and permutation counts beyond sense are refused up front", {
  stats <- ranking(200)
  sets <- list(a = names(stats)[1:20])
  expect_error(gsea(stats, sets, nperm = 1e12), "`nperm` = 1e\\+12 is too large")
  expect_error(gsea(stats, sets, min_size = 1e10), "`min_size` = 1e\\+10 is too large: at most 200")
  expect_error(gsea(stats, sets, min_size = 201), "`min_size`.*at most 200")
  expect_error(gsea(stats, sets, min_size = 2.5), "`min_size`")
  expect_error(gsea(stats, sets, max_size = 1e10), "`max_size`")
  expect_equal(suppressMessages(gsea(stats, sets, max_size = Inf, min_size = 5, seed = 1))$es,
               suppressMessages(gsea(stats, sets, min_size = 5, seed = 1))$es)
  # 2e9 permutations x 1 size x 8 bytes = 16 GB: refused before drawing anything.
  old <- options(sceffects.max_memory = 1e9)
  on.exit(options(old))
  expect_error(suppressMessages(gsea(stats, sets, min_size = 5, nperm = 2e9, seed = 1)),
               "The permutation null \\(2,000,000,000 permutations x 1 set sizes\\) would need 14.9 GB.*`nperm`")
})

test_that("the enrichment does not depend on the scale of the statistics (no overflow near 1e308)", {
  stats <- ranking(300)
  sets <- list(a = names(stats)[1:25], b = names(stats)[seq(2, 300, by = 7)],
               c = names(stats)[280:300])
  ref <- suppressMessages(gsea(stats, sets, min_size = 5, seed = 3))
  for (k in c(1e300, 1e-300)) {
    scaled <- suppressMessages(gsea(stats * k, sets, min_size = 5, seed = 3))
    expect_equal(scaled$es, ref$es, tolerance = 1e-12)
    expect_equal(scaled$nes, ref$nes, tolerance = 1e-12)
    expect_equal(scaled$p_value, ref$p_value, tolerance = 1e-12)
    expect_equal(scaled$leading_edge, ref$leading_edge)
  }
  big <- suppressMessages(gsea(stats / max(abs(stats)) * 1.7e308, sets, min_size = 5, weight = 2, seed = 3))
  expect_true(all(is.finite(big$es)))
})

test_that("write_gmt() refuses gene names it cannot write back", {
  path <- tempfile(fileext = ".gmt")
  expect_error(write_gmt(list(a = c("TP53", "MD\tM2")), path), "`sets`\\$a has entries with a tab or newline.*MD\\\\tM2")
  expect_error(write_gmt(list(a = c("TP53", NA)), path), "`sets`\\$a has a missing \\(NA\\) gene name")
  expect_error(write_gmt(list(a = c("TP53", "A\nB")), path), "tab or newline")
  expect_error(write_gmt(list(a = c("TP53", "")), path), "empty gene name")
  expect_error(write_gmt(list(`a\tb` = "TP53"), path), "names\\(sets\\)")
  expect_error(write_gmt(list(a = "TP53"), path, description = "x\ty"), "`description`")
  expect_false(file.exists(path))
  write_gmt(list(a = "TP53"), path, description = NA)
  expect_equal(unclass(read_gmt(path)), list(a = "TP53"), ignore_attr = TRUE)
})

test_that("gsea_did checks its `...`, says when no participant is paired, and honours verbose", {
  sce <- simulate_trial(n_genes = 250, n_cells = 1500, n_effect_genes = 10, seed = 2)
  design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
                         baseline = "Pre", followup = "Post")
  sets <- S4Vectors::metadata(sce)$gene_sets
  cols <- list(sim = sets)
  expect_error(gsea_did(sce, design, cols, foo = 1), "gsea_did\\(\\) has no argument `foo`")
  expect_error(gsea_did(sce, design, cols, "t", c("GENE00001", "GENE00002")), "<unnamed>")
  expect_error(gsea_did(sce, design, cols, BPPARAM = "serial"), "`BPPARAM` must be NULL")
  expect_error(gsea_did(sce, design, cols, verbose = NA), "`verbose` must be TRUE or FALSE")
  unpaired <- sce[, !sce$participant %in% paste0("P", 1:10)]
  expect_error(suppressMessages(suppressWarnings(gsea_did(unpaired, design, cols, min_size = 5))),
               "No participant is seen at both visits")
  before <- sce
  cols0 <- cols
  expect_silent(res <- suppressWarnings(gsea_did(sce, design, cols, min_size = 5, nperm = 100, seed = 1,
                                                 verbose = FALSE)))
  expect_true(nrow(res) > 0L)
  expect_identical(sce, before)
  expect_identical(cols, cols0)
})

test_that("sets and stats in fgsea's order are recognised and swapped, with a message", {
  set.seed(3)
  stats <- stats::setNames(rnorm(400), paste0("G", 1:400))
  sets <- list(a = paste0("G", 1:25), b = paste0("G", 26:70))
  expect_message(swapped <- gsea(sets, stats, nperm = 100, seed = 1), "fgsea's order")
  expect_equal(swapped, gsea(stats, sets, nperm = 100, seed = 1))
})

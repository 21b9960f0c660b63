# Difference in differences against lm + sandwich / clubSandwich on the same data.

skip_if_not_installed("sandwich")
skip_if_not_installed("clubSandwich")

design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
                       celltype = "cell_type", baseline = "Pre", followup = "Post")
sce <- simulate_trial(n_genes = 240, n_cells = 1500, n_effect_genes = 10, seed = 11)
cd <- as.data.frame(SummarizedExperiment::colData(sce))
expr <- SingleCellExperiment::logcounts(sce)

# Participant-visit table of one gene, as a user would build it for lm().
pv_table <- function(y, keep = rep(TRUE, nrow(cd)), extra = NULL) {
  d <- cd[keep, ]
  d$y <- y[keep]
  if (!is.null(extra)) d$z <- extra[keep]
  key <- paste(d$participant, d$visit)
  pv <- data.frame(participant = tapply(d$participant, key, `[`, 1), visit = tapply(as.character(d$visit), key, `[`, 1),
                   response = tapply(d$response, key, `[`, 1), y = tapply(d$y, key, mean),
                   n = as.numeric(table(key)), stringsAsFactors = FALSE)
  if (!is.null(extra)) pv$z <- tapply(d$z, key, mean)
  paired <- names(which(table(pv$participant) == 2))
  pv <- pv[pv$participant %in% paired, ]
  pv$post <- as.numeric(pv$visit == "Post")
  pv$trt <- as.numeric(pv$response == "Responder")
  pv$ys <- pv$y / stats::sd(pv$y)
  pv
}

reference <- function(fit, data, term = "post:trt") {
  cr2 <- clubSandwich::coef_test(fit, vcov = "CR2", cluster = data$participant, test = "Satterthwaite")
  v1 <- sandwich::vcovCL(fit, cluster = data$participant, type = "HC1")
  list(est = unname(stats::coef(fit)[term]), se2 = cr2[term, "SE"], df2 = cr2[term, "df_Satt"],
       p2 = cr2[term, "p_Satt"], se1 = sqrt(v1[term, term]))
}

genes <- c("GENE00161", "GENE00170", "GENE00200", "GENE00001", "GENE00230")

test_that("participant-visit DiD equals lm + clubSandwich CR2 and vcovCL HC1 (unequal cells, unpaired present)", {
  res2 <- suppressMessages(suppressWarnings(did_table(sce, design, features = genes)))
  res1 <- suppressMessages(suppressWarnings(did_table(sce, design, features = genes, vcov = "CR1")))
  expect_true(length(attr(res2, "unpaired")) > 0)
  for (g in genes) {
    pv <- pv_table(expr[g, ])
    fit <- lm(ys ~ post + post:trt + factor(participant), data = pv, weights = n)
    ref <- reference(fit, pv)
    r2 <- res2[res2$feature == g, ]
    r1 <- res1[res1$feature == g, ]
    expect_equal(r2$estimate, ref$est, tolerance = 1e-8)
    expect_equal(r2$std_error, ref$se2, tolerance = 1e-8)
    expect_equal(r2$df, ref$df2, tolerance = 1e-8)
    expect_equal(r2$p_value, ref$p2, tolerance = 1e-8)
    expect_equal(r1$std_error, ref$se1, tolerance = 1e-8)
    expect_equal(r1$df, 9)
    expect_equal(r1$p_value, 2 * pt(-abs(ref$est / ref$se1), 9), tolerance = 1e-8)
    ctrl <- reference(fit, pv, "post")
    expect_equal(r2$control_change, ctrl$est, tolerance = 1e-8)
    expect_equal(r2$control_p_value, ctrl$p2, tolerance = 1e-8)
    expect_equal(r2$resid_sd, stats::sigma(fit), tolerance = 1e-8)
    expect_equal(r2$n_units, 10L)
  }
})

test_that("equal weights, no standardisation and a covariate match lm", {
  z <- as.numeric(expr["GENE00003", ]) + stats::rnorm(ncol(sce), sd = 0.1)
  sce2 <- sce
  sce2$depth <- z
  res <- suppressMessages(suppressWarnings(
    did_table(sce2, design, features = genes[1:3], covariates = "depth", weights = "equal", standardize = FALSE)))
  for (g in genes[1:3]) {
    pv <- pv_table(expr[g, ], extra = z)
    fit <- lm(y ~ post + post:trt + z + factor(participant), data = pv)
    ref <- reference(fit, pv)
    r <- res[res$feature == g, ]
    expect_equal(r$estimate, ref$est, tolerance = 1e-8)
    expect_equal(r$std_error, ref$se2, tolerance = 1e-8)
    expect_equal(r$df, ref$df2, tolerance = 1e-8)
  }
})

test_that("cell-level DiD equals lm on cells clustered by participant", {
  ct <- "CD8 T cell"
  keep <- cd$cell_type == ct
  res <- suppressMessages(suppressWarnings(
    did_table(sce, design, features = genes[1:2], aggregate = "cell", celltype = ct)))
  expect_equal(res$celltype, rep(ct, 2))
  for (g in genes[1:2]) {
    d <- cd[keep, ]
    d$y <- as.numeric(expr[g, keep])
    paired <- names(which(rowSums(table(d$participant, d$visit) > 0) == 2))
    d <- d[d$participant %in% paired, ]
    d$post <- as.numeric(d$visit == "Post")
    d$trt <- as.numeric(d$response == "Responder")
    d$ys <- d$y / stats::sd(d$y)
    fit <- lm(ys ~ post + post:trt + factor(participant), data = d)
    ref <- reference(fit, d)
    r <- res[res$feature == g, ]
    expect_equal(r$estimate, ref$est, tolerance = 1e-8)
    expect_equal(r$std_error, ref$se2, tolerance = 1e-8)
    expect_equal(r$df, ref$df2, tolerance = 1e-8)
    expect_equal(r$n_cells, nrow(d))
  }
})

test_that("celltype = 'all' fits each cell type as its own subset", {
  res <- suppressMessages(suppressWarnings(did_table(sce, design, features = genes[1:2], celltype = "all")))
  types <- sort(unique(cd$cell_type))
  expect_setequal(unique(res$celltype), types)
  expect_true("fdr_overall" %in% names(res))
  ct <- "Monocyte/Macrophage"
  keep <- cd$cell_type == ct
  pv <- pv_table(expr[genes[1], ], keep)
  fit <- lm(ys ~ post + post:trt + factor(participant), data = pv, weights = n)
  r <- res[res$celltype == ct & res$feature == genes[1], ]
  expect_equal(r$estimate, unname(coef(fit)["post:trt"]), tolerance = 1e-8)
  expect_equal(r$std_error, reference(fit, pv)$se2, tolerance = 1e-8)
})

test_that("pseudobulk fits log1p CPM of summed counts", {
  simc <- simulate_trial(n_genes = 240, n_cells = 1200, n_effect_genes = 10, counts = TRUE, seed = 5)
  res <- suppressMessages(suppressWarnings(did_table(simc, design, features = genes[1:2], aggregate = "pseudobulk")))
  cnt <- SummarizedExperiment::assay(simc, "counts")
  cdc <- as.data.frame(SummarizedExperiment::colData(simc))
  key <- paste(cdc$participant, cdc$visit)
  lib <- tapply(Matrix::colSums(cnt), key, sum)
  for (g in genes[1:2]) {
    s <- tapply(as.numeric(cnt[g, ]), key, sum)
    pv <- data.frame(key = names(s), y = log1p(as.numeric(s) / as.numeric(lib[names(s)]) * 1e6),
                     participant = tapply(cdc$participant, key, `[`, 1)[names(s)],
                     post = as.numeric(tapply(as.character(cdc$visit), key, `[`, 1)[names(s)] == "Post"),
                     trt = as.numeric(tapply(cdc$response, key, `[`, 1)[names(s)] == "Responder"),
                     n = as.numeric(table(key)[names(s)]))
    pv <- pv[pv$participant %in% names(which(table(pv$participant) == 2)), ]
    pv$ys <- pv$y / sd(pv$y)
    fit <- lm(ys ~ post + post:trt + factor(participant), data = pv, weights = n)
    r <- res[res$feature == g, ]
    expect_equal(r$estimate, unname(coef(fit)["post:trt"]), tolerance = 1e-8)
    expect_equal(r$std_error, reference(fit, pv)$se2, tolerance = 1e-8)
  }
})

test_that("colData scores, sparse and dense assays give the same table", {
  sce2 <- score_gene_sets(sce, S4Vectors::metadata(sce)$gene_sets[c("planted_did_up", "random_set")])
  res <- suppressMessages(suppressWarnings(did_table(sce2, design, features = c(genes[1], "planted_did_up"))))
  pv <- pv_table(sce2$planted_did_up)
  fit <- lm(ys ~ post + post:trt + factor(participant), data = pv, weights = n)
  expect_equal(res$estimate[res$feature == "planted_did_up"], unname(coef(fit)["post:trt"]), tolerance = 1e-8)
  dense <- sce
  SummarizedExperiment::assay(dense, "logcounts") <- as.matrix(expr)
  a <- suppressMessages(suppressWarnings(did_table(sce, design)))
  b <- suppressMessages(suppressWarnings(did_table(dense, design)))
  expect_equal(a$p_value, b$p_value, tolerance = 1e-12)
})

test_that("a sparse assay's NA or Inf is refused by the group sums, as dense input is up front", {
  for (bad in c(Inf, NA)) {
    m <- expr[1:20, ]
    m@x[5] <- bad
    sce2 <- sce[1:20, ]
    SummarizedExperiment::assay(sce2, "logcounts") <- m
    expect_error(suppressMessages(did_table(sce2, design)), "`x` contains infinite")
    expect_error(suppressMessages(between_arm(sce2, design, visit = "Post")), "`x` contains infinite")
    SummarizedExperiment::assay(sce2, "logcounts") <- as.matrix(m)
    expect_error(suppressMessages(did_table(sce2, design)), "`x` contains")
  }
})

test_that("degenerate features and designs give NA rows with a reason", {
  sce2 <- sce[1:20, ]
  m <- SingleCellExperiment::logcounts(sce2)
  m[1, ] <- 0
  m[2, ] <- 3
  SummarizedExperiment::assay(sce2, "logcounts") <- m
  res <- suppressMessages(suppressWarnings(did_table(sce2, design)))
  expect_equal(res$reason[1:2], c("zero variance", "zero variance"))
  expect_true(all(is.na(res$p_value[1:2])))
  expect_true(all(is.na(res$reason[-(1:2)])))
  # Only one responder left: too few participants in an arm.
  drop <- cd$response == "Responder" & !cd$participant %in% "P1"
  res <- suppressMessages(suppressWarnings(did_table(sce[, !drop], design, features = genes[1])))
  expect_equal(res$reason, "too few participants")
  # A cell type seen only in the control arm.
  sce3 <- sce
  sce3$cell_type[sce3$response == "Non-responder" & sce3$cell_type == "B cell"] <- "Rare"
  res <- suppressMessages(suppressWarnings(did_table(sce3, design, features = genes[1], celltype = "Rare")))
  expect_equal(res$reason, "an arm missing")
  expect_true(is.na(res$p_value))
})

test_that("bad input stops with a message naming the argument", {
  expect_error(did_table(expr, design), "`x` must be a SingleCellExperiment")
  expect_error(did_table(sce, list()), "`design` must be made by trial_design")
  expect_error(did_table(sce, design, features = "nope"), "`features` not found")
  expect_error(did_table(sce, design, bootstrap = -1), "`bootstrap`")
  expect_error(did_table(sce, design, aggregate = "pseudobulk"), "needs counts|not an assay")
  bad <- trial_design("participant", "visit", "response", "Yes", "Non-responder", baseline = "Pre", followup = "Post")
  expect_error(did_table(sce, bad), "Arm label \"Yes\"")
  bad <- trial_design("pid", "visit", "response", "Responder", "Non-responder")
  expect_error(did_table(sce, bad), "not in colData")
  lesion <- trial_design("participant", "visit", "lesion_response", "Responder", "Non-responder",
                         baseline = "Pre", followup = "Post")
  expect_error(did_table(sce, lesion), "harmonize_response")
  expect_error(trial_design("a", "b", "c", "x", "x"), "different")
})

test_that("the wild cluster bootstrap equals a direct R implementation with the same weights", {
  B <- 49
  res <- suppressMessages(suppressWarnings(did_table(sce, design, features = genes[1:3], bootstrap = B, seed = 3)))
  w <- sceffects:::boot_weights(B, 10L, 3)
  expect_true(all(abs(w) %in% c(sqrt(0.5), 1, sqrt(1.5))))  # Webb weights: 10 clusters
  for (g in genes[1:3]) {
    pv <- pv_table(expr[g, ])
    cl <- match(pv$participant, sort(unique(pv$participant)))  # weights' columns: sorted participants
    full <- lm(ys ~ post + post:trt + factor(participant), data = pv, weights = n)
    t_obs <- coef(full)["post:trt"] / clubSandwich::coef_test(full, vcov = "CR2", cluster = pv$participant)["post:trt", "SE"]
    restricted <- lm(ys ~ post + factor(participant), data = pv, weights = n)
    count <- 0
    for (b in seq_len(B)) {
      pv$ystar <- fitted(restricted) + w[b, cl] * residuals(restricted)
      f <- lm(ystar ~ post + post:trt + factor(participant), data = pv, weights = n)
      se <- clubSandwich::coef_test(f, vcov = "CR2", cluster = pv$participant)["post:trt", "SE"]
      if (abs(coef(f)["post:trt"] / se) >= abs(t_obs) * (1 - 1e-9)) count <- count + 1
    }
    expect_equal(res$boot_p[res$feature == g], (1 + count) / (1 + B))
  }
})

test_that("bootstrap results do not depend on threads, and BPPARAM equals serial", {
  a <- suppressMessages(suppressWarnings(did_table(sce, design, bootstrap = 99, seed = 1, threads = 1)))
  b <- suppressMessages(suppressWarnings(did_table(sce, design, bootstrap = 99, seed = 1, threads = 2)))
  expect_identical(a$boot_p, b$boot_p)
  skip_if_not_installed("BiocParallel")
  c <- suppressMessages(suppressWarnings(did_table(sce, design, bootstrap = 99, seed = 1,
                                                   BPPARAM = BiocParallel::SnowParam(2))))
  expect_identical(a$estimate, c$estimate)
  expect_identical(a$p_value, c$p_value)
  expect_identical(a$boot_p, c$boot_p)
})

test_that("CR2 and bootstrap p-values are uniform under a simulated null", {
  set.seed(2)
  n_part <- 12
  pid <- rep(paste0("Q", 1:n_part), each = 40)
  visit <- rep(rep(c("Pre", "Post"), each = 20), n_part)
  arm <- rep(rep(c("A", "B"), length.out = n_part), each = 40)
  n_genes <- 600
  u <- matrix(rnorm(n_genes * n_part), n_genes)
  y <- u[, match(pid, unique(pid))] + matrix(rnorm(n_genes * length(pid)), n_genes)
  dimnames(y) <- list(paste0("g", 1:n_genes), paste0("c", seq_along(pid)))
  se <- SummarizedExperiment::SummarizedExperiment(list(logcounts = y),
                                                   colData = S4Vectors::DataFrame(pid = pid, visit = visit, arm = arm))
  d <- trial_design("pid", "visit", "arm", "A", "B", baseline = "Pre", followup = "Post")
  res <- suppressWarnings(did_table(se, d, bootstrap = 199))
  expect_gt(stats::ks.test(res$p_value, "punif")$p.value, 0.001)
  # Bootstrap p-values are discrete (multiples of 1/200): check their level at 5% and 20%.
  expect_lt(abs(mean(res$boot_p <= 0.05) - 0.05), 0.03)
  expect_lt(abs(mean(res$boot_p <= 0.20) - 0.20), 0.05)
  expect_lt(abs(mean(res$p_value < 0.05) - 0.05), 0.03)
})

test_that("within_arm equals lm on the arm's paired participants", {
  res <- suppressMessages(suppressWarnings(within_arm(sce, design, arm = "Non-responder", features = genes[1:2])))
  for (g in genes[1:2]) {
    pv <- pv_table(expr[g, ], cd$response == "Non-responder")
    fit <- lm(ys ~ post + factor(participant), data = pv, weights = n)
    ref <- reference(fit, pv, "post")
    r <- res[res$feature == g, ]
    expect_equal(r$estimate, ref$est, tolerance = 1e-8)
    expect_equal(r$std_error, ref$se2, tolerance = 1e-8)
    expect_equal(r$p_value, ref$p2, tolerance = 1e-8)
  }
  expect_error(within_arm(sce, design, arm = "X"), "`arm`")
})

test_that("between_arm equals t.test and wilcox.test on participant means", {
  tt <- between_arm(sce, design, visit = "Pre", features = genes[1:3])
  ww <- between_arm(sce, design, visit = "Pre", features = genes[1:3], method = "wilcoxon")
  pre <- cd$visit == "Pre"
  for (g in genes[1:3]) {
    m <- tapply(as.numeric(expr[g, pre]), cd$participant[pre], mean)
    r <- tapply(cd$response[pre], cd$participant[pre], `[`, 1)
    ref <- t.test(m[r == "Responder"], m[r == "Non-responder"])
    expect_equal(tt$p_value[tt$feature == g], ref$p.value, tolerance = 1e-10)
    expect_equal(tt$df[tt$feature == g], unname(ref$parameter), tolerance = 1e-10)
    expect_equal(tt$estimate[tt$feature == g], unname(ref$estimate[1] - ref$estimate[2]), tolerance = 1e-10)
    wref <- suppressWarnings(wilcox.test(m[r == "Responder"], m[r == "Non-responder"]))
    expect_equal(ww$p_value[ww$feature == g], wref$p.value, tolerance = 1e-10)
  }
  expect_error(between_arm(sce, design, visit = "Mid"), "`visit`")
})

test_that("harmonize_response takes the majority label and reports disagreements", {
  lesion <- trial_design("participant", "visit", "lesion_response", "Responder", "Non-responder",
                         baseline = "Pre", followup = "Post")
  expect_message(h <- harmonize_response(sce, lesion), "different `lesion_response` labels")
  expect_identical(h$lesion_response, sce$response)
  expect_equal(nrow(S4Vectors::metadata(h)$harmonize_response), 3L)
  expect_identical(sce$lesion_response, cd$lesion_response)  # input untouched
})

test_that("score_gene_sets equals the direct z-mean and mean", {
  sets <- list(a = c("GENE00001", "GENE00005", "GENE00300", "GENE00170"), b = c("GENE00002", "GENE00003"))
  expect_warning(s <- score_gene_sets(expr, sets, add = FALSE), "fewer than 3")
  m <- as.matrix(expr[c("GENE00001", "GENE00005", "GENE00170"), ])
  z <- (m - rowMeans(m)) / apply(m, 1, sd)
  expect_equal(unname(s[, "a"]), unname(colMeans(z)), tolerance = 1e-10)
  expect_true(all(is.na(s[, "b"])))
  expect_equal(attr(s, "report")$found, c(3L, 2L))
  s2 <- suppressWarnings(score_gene_sets(as.matrix(expr), sets, method = "mean", add = FALSE))
  expect_equal(unname(s2[, "a"]), unname(colMeans(m)), tolerance = 1e-10)
  expect_error(score_gene_sets(expr, list("GENE00001")), "unique names")
})

test_that("abundance_did equals lm on transformed proportions", {
  res <- suppressMessages(suppressWarnings(abundance_did(sce, design)))
  ct <- "CD8 T cell"
  prop <- pv_table(as.numeric(cd$cell_type == ct))
  prop$a <- asin(sqrt(prop$y))
  fit <- lm(a ~ post + post:trt + factor(participant), data = prop)
  r <- res[res$feature == ct, ]
  expect_equal(r$estimate, unname(coef(fit)["post:trt"]), tolerance = 1e-8)
  expect_equal(r$std_error, reference(fit, prop)$se2, tolerance = 1e-8)
})

test_that("plot_forest draws any DiD table", {
  res <- suppressMessages(suppressWarnings(did_table(sce, design, features = genes)))
  expect_s3_class(plot_forest(res), "ggplot")
  expect_error(plot_forest(data.frame(estimate = 1, p_value = 0.1)), "std_error")
})

# Dependable defaults (issue 12) -------------------------------------------------------

small <- sce[genes, ]

test_that("a third arm is left out with a message naming it", {
  s3 <- small
  s3$response[s3$participant %in% c("P4", "P18")] <- "Placebo"
  msg <- paste(testthat::capture_messages(res <- suppressWarnings(did_table(s3, design))), collapse = "")
  expect_match(msg, "in other arms \\(Placebo: participant\\(s\\) P18, P4; only \"Responder\" and \"Non-responder\" are compared\\)")
  ref <- suppressMessages(suppressWarnings(did_table(s3[, s3$response != "Placebo"], design)))
  expect_equal(res$estimate, ref$estimate)
})

test_that("NA participants, visits and arms are left out with a message counting them", {
  s2 <- small
  s2$participant[1:3] <- NA
  s2$visit[4:8] <- NA
  s2$response[9:10] <- NA
  msg <- testthat::capture_messages(res <- suppressWarnings(did_table(s2, design)))
  msg <- paste(msg, collapse = "")
  expect_match(msg, "3 with no participant \\(NA in `participant`\\)")
  expect_match(msg, "5 with no visit \\(NA in `visit`\\)")
  expect_match(msg, "2 with no arm \\(NA in `response`\\)")
  ref <- suppressMessages(suppressWarnings(did_table(s2[, -(1:10)], design)))
  expect_equal(res$estimate, ref$estimate)
  expect_silent(suppressWarnings(did_table(s2, design, verbose = FALSE)))
  # between_arm at one visit: no NA-index error, cells without a participant left out.
  expect_message(b <- between_arm(s2, design, visit = "Pre"), "3 with no participant")
  expect_equal(nrow(b), length(genes))
})

test_that("unknown arguments in `...` are errors", {
  expect_error(abundance_did(sce, design, covariates = "x"), "abundance_did\\(\\) has no argument `covariates`")
  expect_error(abundance_did(sce, design, features = "GENE00001"), "no argument `features`")
  expect_error(abundance_did(sce, design, aggregate = "cell"), "no argument `aggregate`")
  expect_error(within_arm(small, design, arm = "Responder", foo = 1), "within_arm\\(\\) has no argument `foo`")
  expect_error(within_arm(small, design, "Responder", genes), "<unnamed>")
})

test_that("trial_design(baseline =) is honoured, alone or with followup", {
  post_first <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
                             baseline = "Post", followup = "Pre")
  only_base <- trial_design("participant", "visit", "response", "Responder", "Non-responder", baseline = "Post")
  only_follow <- trial_design("participant", "visit", "response", "Responder", "Non-responder", followup = "Post")
  a <- suppressMessages(suppressWarnings(did_table(small, design, standardize = FALSE)))
  b <- suppressMessages(suppressWarnings(did_table(small, post_first, standardize = FALSE)))
  c <- suppressMessages(suppressWarnings(did_table(small, only_base, standardize = FALSE)))
  d <- suppressMessages(suppressWarnings(did_table(small, only_follow, standardize = FALSE)))
  expect_equal(b$estimate, -a$estimate, tolerance = 1e-10)
  expect_equal(c$estimate, b$estimate)
  expect_equal(d$estimate, a$estimate)
  s3 <- small
  s3$visit <- factor(as.character(s3$visit), levels = c("Pre", "Post", "Mid"))
  s3$visit[1:5] <- "Mid"
  expect_error(suppressMessages(did_table(s3, only_base)), "Set both `baseline` and `followup`")
  expect_output(print(only_base), "Post -> the other visit")
})

test_that("score_gene_sets refuses clashes, wrong orientation, and zmean on one cell", {
  sets <- list(a = c("GENE00001", "GENE00005", "GENE00170"))
  s2 <- small
  s2$a <- 1
  expect_error(score_gene_sets(s2, sets), "`sets` name\\(s\\) a are already colData\\(x\\) columns.*rename")
  expect_identical(s2$a, rep(1, ncol(s2)))
  expect_silent(score_gene_sets(s2, sets, add = FALSE, min_genes = 1))
  m <- as.matrix(expr[unlist(sets), ])
  expect_error(score_gene_sets(t(m), sets), "genes in columns.*t\\(x\\)")
  expect_error(score_gene_sets(m[, 1, drop = FALSE], sets), "at least 2 cells.*method = \"mean\"")
  one <- score_gene_sets(m[, 1, drop = FALSE], sets, method = "mean", add = FALSE)
  expect_equal(unname(one[1, "a"]), mean(m[, 1]))
  expect_error(score_gene_sets(small, sets, add = NA), "`add` must be TRUE or FALSE")
})

test_that("harmonize_response keeps the arm's type and reports NA participants", {
  lesion <- trial_design("participant", "visit", "lesion_response", "1", "0", baseline = "Pre", followup = "Post")
  s2 <- small
  s2$lesion_response <- as.numeric(s2$lesion_response == "Responder")
  s2$participant[1:2] <- NA
  msg <- paste(testthat::capture_messages(h <- harmonize_response(s2, lesion)), collapse = "")
  expect_match(msg, "2 cell\\(s\\) have no participant")
  expect_type(h$lesion_response, "double")
  expect_identical(h$lesion_response[1:2], s2$lesion_response[1:2])
  expect_identical(h$lesion_response[-(1:2)], as.numeric(s2$response == "Responder")[-(1:2)])
  f <- small
  f$lesion_response <- factor(f$lesion_response, levels = c("Responder", "Non-responder", "Other"))
  lesion_f <- trial_design("participant", "visit", "lesion_response", "Responder", "Non-responder",
                           baseline = "Pre", followup = "Post")
  hf <- suppressMessages(harmonize_response(f, lesion_f))
  expect_identical(levels(hf$lesion_response), levels(f$lesion_response))
  expect_identical(as.character(hf$lesion_response), small$response)
  expect_silent(harmonize_response(f, lesion_f, verbose = FALSE))
})

test_that("did_table on an object without rownames or genes says so", {
  s2 <- small
  rownames(s2) <- NULL
  expect_error(did_table(s2, design), "`x` has no rownames: set rownames\\(x\\)")
  expect_error(did_table(small[0, ], design), "`x` has no genes")
})

test_that("the unpaired message lists 10 names and how many more, and verbose quiets it", {
  big <- small
  msg <- paste(testthat::capture_messages(suppressWarnings(did_table(big, design))), collapse = "")
  expect_match(msg, "15 participant\\(s\\) seen at one visit only.*and 5 more")
  expect_silent(suppressWarnings(did_table(big, design, verbose = FALSE)))
  msg <- testthat::capture_messages(suppressWarnings(did_table(big, design, celltype = "all")))
  expect_true(any(grepl("seen at one visit only were left out of the paired analysis \\(of at least one cell type\\)", msg)))
  old <- options(sceffects.verbose = FALSE)
  on.exit(options(old))
  expect_silent(suppressWarnings(did_table(big, design)))
})

test_that("bootstrap: fdr from p_value and boot_fdr from boot_p, and `bootstrap` is bounded (issue 16)", {
  r <- suppressMessages(suppressWarnings(did_table(small, design, bootstrap = 19)))
  expect_equal(r$fdr, p.adjust(r$p_value, "BH"))
  expect_equal(r$boot_fdr, p.adjust(r$boot_p, "BH"))
  expect_false(isTRUE(all.equal(r$fdr, r$boot_fdr)))
  expect_error(did_table(small, design, bootstrap = 1e10), "`bootstrap` = 1e\\+10 is too large: at most 1e\\+06")
  expect_error(did_table(small, design, bootstrap = 2e9), "too large")
  expect_error(within_arm(small, design, "Responder", bootstrap = 2e9), "too large")
  expect_error(abundance_did(sce, design, bootstrap = 2e9), "too large")
})

test_that("BPPARAM, threads and flags are checked before any work", {
  expect_error(did_table(small, design, BPPARAM = "multicore"), "`BPPARAM` must be NULL")
  expect_error(within_arm(small, design, "Responder", BPPARAM = 2), "`BPPARAM` must be NULL")
  expect_error(did_table(small, design, threads = 0), "`threads`")
  expect_error(within_arm(small, design, "Responder", threads = -1), "`threads`")
  expect_error(abundance_did(sce, design, threads = 1.5), "`threads`")
  expect_error(between_arm(small, design, visit = "Pre", threads = 0), "`threads`")
  expect_error(did_table(small, design, standardize = NA), "`standardize` must be TRUE or FALSE")
  expect_error(within_arm(small, design, "Responder", standardize = "yes"), "`standardize` must be TRUE or FALSE")
  expect_error(did_table(small, design, verbose = NA), "`verbose` must be TRUE or FALSE")
  expect_error(harmonize_response(small, design, verbose = 1), "`verbose` must be TRUE or FALSE")
  expect_error(simulate_trial(n_genes = 300, n_cells = 500, counts = NA), "`counts` must be TRUE or FALSE")
})

test_that("trial functions leave the user's objects unchanged", {
  s2 <- small
  s2$lesion_response <- sce$lesion_response
  before <- s2
  d0 <- design
  lesion <- trial_design("participant", "visit", "lesion_response", "Responder", "Non-responder",
                         baseline = "Pre", followup = "Post")
  quiet <- function(expr) suppressMessages(suppressWarnings(expr))
  quiet(did_table(s2, design))
  quiet(did_table(s2, design, celltype = "all", aggregate = "cell"))
  quiet(within_arm(s2, design, "Responder"))
  quiet(between_arm(s2, design, visit = "Pre"))
  quiet(abundance_did(s2, design))
  quiet(harmonize_response(s2, lesion))
  sets <- list(a = genes[1:3])
  sets0 <- sets
  quiet(score_gene_sets(s2, sets, min_genes = 1))
  expect_identical(s2, before)
  expect_identical(design, d0)
  expect_identical(sets, sets0)
})

test_that("simulate_trial works at its documented minimum n_genes", {
  s <- simulate_trial(n_genes = 250, n_cells = 300, seed = 1)
  expect_equal(nrow(s), 250L)
  expect_length(S4Vectors::metadata(s)$gene_sets$random_set, 10L)
  expect_error(simulate_trial(n_genes = 249, n_cells = 300), "at least 250")
  expect_error(simulate_trial(n_genes = 300, n_cells = 300, effect = NA), "`effect`")
})

test_that("between_arm takes a participant's arm from its analysed cells, not its first cell", {
  s <- sce
  first <- match(unique(s$participant), s$participant)
  s$response[first[1]] <- "Partial"  # the participant's first cell is in another arm
  res <- suppressMessages(between_arm(s, design, visit = "Pre", features = genes[1]))
  ref <- suppressMessages(between_arm(s[, -first[1]], design, visit = "Pre", features = genes[1]))
  expect_equal(res$p_value, ref$p_value, tolerance = 1e-12)
  expect_equal(res$n_treated + res$n_control, ref$n_treated + ref$n_control)
})

test_that("score_gene_sets can be run again on its own output, and says so", {
  sets <- list(a = rownames(sce)[1:10], b = rownames(sce)[11:20])
  once <- suppressWarnings(score_gene_sets(sce, sets))
  expect_message(twice <- suppressWarnings(score_gene_sets(once, sets["a"])), "Replacing the scores")
  expect_equal(twice$a, once$a)
  expect_setequal(S4Vectors::metadata(twice)$gene_set_scores$set, c("a", "b"))
  other <- sce
  other$a <- 1
  expect_error(score_gene_sets(other, sets), "already colData")
})

test_that("a matrix or an ExpressionSet is refused with the one-line conversion; the wrapped SE works (issue 13)", {
  expect_error(did_table(expr[1:3, ], design), "wrap a matrix .* SummarizedExperiment::SummarizedExperiment\\(list\\(counts = x\\), colData = metadata\\)")
  expect_error(between_arm(as.matrix(expr[1:3, ]), design, visit = "Pre"), "wrap a matrix")
  expect_error(within_arm(expr[1:3, ], design, arm = "Responder"), "wrap a matrix")
  skip_if_not_installed("Biobase")
  eset <- Biobase::ExpressionSet(assayData = as.matrix(expr[1:3, ]))
  expect_error(did_table(eset, design), "makeSummarizedExperimentFromExpressionSet")
  wrapped <- SummarizedExperiment::SummarizedExperiment(list(logcounts = expr[1:3, ]), colData = cd)
  expect_equal(as.data.frame(did_table(wrapped, design, verbose = FALSE)),
               as.data.frame(did_table(sce[1:3, ], design, verbose = FALSE)))
})

test_that("score_gene_sets() takes an ExpressionSet and refuses a data.frame (issue 13)", {
  sets <- list(first = rownames(expr)[1:5])
  m <- as.matrix(expr[1:20, ])
  ref <- score_gene_sets(m, sets)
  expect_error(score_gene_sets(as.data.frame(m), sets), "`x` is a data.frame, whose orientation is ambiguous")
  skip_if_not_installed("Biobase")
  expect_equal(score_gene_sets(Biobase::ExpressionSet(assayData = m), sets), ref)
})

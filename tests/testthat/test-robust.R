# Hangs, crashes, interrupts and precision: cases that once hung R, took it down, ignored
# Ctrl-C or lost precision without a word. Cases that could hang or abort run in their own
# R process under a time limit.

test_that("a forked BiocParallel worker does not hang after did_table ran in the session", {
  skip_on_os("windows")
  res <- run_in_fresh_r(c(
    "sce <- simulate_trial(n_genes = 300, n_cells = 800, seed = 1)[1:60, ]",
    "design <- trial_design('participant', 'visit', 'response', 'Responder', 'Non-responder', baseline = 'Pre', followup = 'Post')",
    "a <- suppressMessages(did_table(sce[1:5, ], design))",
    "b <- suppressMessages(did_table(sce, design, BPPARAM = BiocParallel::MulticoreParam(2)))",
    "c <- suppressMessages(did_table(sce, design))",
    "stopifnot(isTRUE(all.equal(b, c)))",
    "cat('finished', nrow(b), '\\n')"), timeout = 120)
  expect_equal(res$status, 0L, info = res$output)
  expect_match(res$output, "finished 60")
})

# Starts `code` in a fresh R process, sends it SIGINT `after` seconds after it writes
# "ready", and returns what it printed.
interrupted_r <- function(code, after = 2, timeout = 60) {
  ready <- tempfile()
  script <- tempfile(fileext = ".R")
  out <- tempfile()
  writeLines(c("suppressPackageStartupMessages(library(sceffects))", code[-length(code)],
               sprintf("writeLines('ready', '%s')", ready), code[length(code)]), script)
  on.exit(unlink(c(script, ready, out)))
  rscript <- file.path(R.home("bin"), "Rscript")
  pid_file <- tempfile()
  system(sprintf("R_LIBS='%s' timeout %d '%s' --vanilla '%s' > '%s' 2>&1 & echo $! > '%s'",
                 paste(.libPaths(), collapse = ":"), timeout, rscript, script, out, pid_file))
  started <- Sys.time()
  while (!file.exists(ready) && Sys.time() - started < timeout) Sys.sleep(0.1)
  Sys.sleep(after)
  pid <- readLines(pid_file)
  # timeout(1) runs Rscript as its child: signal the child.
  system(sprintf("pkill -INT -P %s", pid))
  while (system(sprintf("kill -0 %s 2>/dev/null", pid)) == 0) Sys.sleep(0.1)
  paste(readLines(out), collapse = "\n")
}

test_that("Ctrl-C stops a long permutation step within a second or so", {
  skip_on_os("windows")
  out <- interrupted_r(c(
    "set.seed(1); genes <- paste0('g', 1:5000); stats <- setNames(rnorm(5000), genes)",
    "sets <- lapply(1:50, function(k) sample(genes, 20 + k * 5)); names(sets) <- paste0('s', 1:50)",
    "t0 <- Sys.time(); r <- tryCatch(gsea(stats, sets, nperm = 5e6, seed = 1), error = function(e) conditionMessage(e)); cat('RESULT', if (is.character(r)) r else 'finished', format(as.numeric(Sys.time() - t0, units = 'secs')), '\\n')"),
    after = 2)
  expect_match(out, "RESULT interrupted by the user")
  elapsed <- as.numeric(sub(".*interrupted by the user ([0-9.]+).*", "\\1", out))
  # 5e6 permutations take minutes; interrupted after ~2 s it must stop well before that.
  expect_lt(elapsed, 30)
})

test_that("a corrupt dgCMatrix is refused, not read with entries ignored or a panic", {
  m <- Matrix::rsparsematrix(5, 12, 0.5)
  rownames(m) <- paste0("f", 1:5)
  bad <- m
  bad@i[1] <- 50L
  expect_error(assoc_cor(bad), "malformed sparse matrix")
  bad <- m
  bad@p[3] <- 1000L
  expect_error(assoc_cor(bad), "malformed sparse matrix")
})

test_that("Mann-Whitney has no continuity correction at U = n1 n2 / 2, as wilcox.test", {
  x <- c(0, 0, 1, 2, 0, 0, 1, 2)
  g <- rep(c(TRUE, FALSE), each = 4)
  res <- assoc_mwu(matrix(x, 1, dimnames = list("f", NULL)), g)
  ref <- suppressWarnings(wilcox.test(x[g], x[!g]))
  expect_equal(res$p_value, ref$p.value)
  expect_equal(res$p_value, 1)
})

test_that("large offsets and values near 1e308 give base R's answers", {
  set.seed(5)
  x <- matrix(rnorm(4 * 30), 4, 30, dimnames = list(paste0("f", 1:4), NULL))
  for (moved in list(x + 1e8, x * 1e300, x * 1e-300)) {
    r <- assoc_cor(moved, output = "matrix")$estimate
    diag(r) <- 1
    expect_equal(unname(r), unname(cor(t(x))), tolerance = 1e-6)
  }
  # gene-set z-scores of genes at a level of 1e7 equal scale()'s
  m <- matrix(rnorm(6 * 40, 1e7, 2), 6, 40, dimnames = list(paste0("g", 1:6), paste0("c", 1:40)))
  s <- score_gene_sets(m, list(a = paste0("g", 1:6)), min_genes = 1)
  expect_equal(as.numeric(s[, "a"]), as.numeric(colMeans(t(scale(t(m))))), tolerance = 1e-7)
  # mixed models on responses near 1e308 and with a large offset
  cells <- data.frame(dose = rnorm(60), subject = factor(rep(1:10, each = 6)))
  y <- matrix(rnorm(2 * 60), 2, 60, dimnames = list(c("a", "b"), NULL))
  y[1, ] <- y[1, ] + rnorm(10)[cells$subject]
  base <- lmm_table(y, ~ dose + (1 | subject), cells)
  scaled <- lmm_table(y * 1e300, ~ dose + (1 | subject), cells)
  expect_equal(scaled$p_value, base$p_value, tolerance = 1e-6)
  expect_equal(scaled$estimate, base$estimate * 1e300, tolerance = 1e-6)
  shifted <- lmm_table(y + 1e8, ~ dose + (1 | subject), cells)
  slope <- base$term == "dose"
  expect_equal(shifted$p_value[slope], base$p_value[slope], tolerance = 1e-6)
  expect_equal(shifted$estimate[slope], base$estimate[slope], tolerance = 1e-6)
})

test_that("a DiD on responses with a large offset equals the DiD without it", {
  sce <- simulate_trial(n_genes = 300, n_cells = 1500, seed = 4)[1:30, ]
  design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
                         baseline = "Pre", followup = "Post")
  moved <- sce
  SummarizedExperiment::assay(moved, "logcounts") <- as.matrix(SummarizedExperiment::assay(sce, "logcounts")) + 1e8
  a <- suppressMessages(did_table(sce, design, standardize = FALSE))
  b <- suppressMessages(did_table(moved, design, standardize = FALSE))
  expect_equal(b$estimate, a$estimate, tolerance = 1e-6)
  expect_equal(b$p_value, a$p_value, tolerance = 1e-6)
})

test_that("requests that cannot fit in memory are refused up front with the size", {
  withr::local_options(sceffects.max_memory = 1e6)
  x <- matrix(rnorm(300 * 10), 300, 10, dimnames = list(paste0("f", 1:300), NULL))
  expect_error(assoc_cor(x), "would need .* of memory")
  expect_error(assoc_cor(x, output = "matrix"), "`top` or `p_max`")
  expect_error(assoc_cor(x, top = 2), NA)
})

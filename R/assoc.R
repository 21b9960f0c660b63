# All-vs-all association tests. Each public function validates and encodes its inputs with
# the input layer, then `assoc_screen()` runs the core block by block and builds one long
# results table (or matrices).

#' Correlation screen: Pearson or Spearman for every pair of features
#'
#' Correlates every feature (row) of `x` with every feature of `y`, or every pair of
#' features of `x` when `y` is `NULL`, with the t-test of [stats::cor.test()]:
#' \eqn{t = r \sqrt{(n-2)/(1-r^2)}} on \eqn{n-2} df. Spearman uses average ranks for ties and
#' the same t approximation, as `cor.test(method = "spearman", exact = FALSE)`.
#'
#' The work is done in blocks of features, so the working memory is set by the block size
#' (a block's correlations are `block_size`^2 doubles, 134 MB at 4096), never by the number
#' of pairs tested; the result itself grows with what is kept: with `top`, the kept pairs
#' are cut back to each feature's top as blocks finish, so they stay within about
#' `2 * top * (features of x + features of y)`. Keeping every pair (no `top`, no `p_max`)
#' is refused up front when its table would not fit in the memory available (see
#' `options(sceffects.max_memory)`). With `top` or `p_max` only some pairs are kept, but the FDR is still
#' taken over all pairs tested: the core counts every p-value in bins 1/100 of a decade
#' wide, which gives each kept pair an FDR never below and at most 2.3% above the exact
#' Benjamini-Hochberg value. Without `top` and `p_max`, all pairs are returned and the FDR
#' is exactly `p.adjust(p_value, "BH")`.
#'
#' @param x Features in rows, samples in columns: a numeric matrix, a `dgCMatrix`, a
#'   `DelayedArray`, a `SummarizedExperiment`/`SingleCellExperiment` or a Biobase
#'   `ExpressionSet` (see `assay`), or one numeric vector. A data.frame (or `DataFrame`) is
#'   read as `colData()`, with features in its columns, and a message says so: give a matrix
#'   to have features in rows.
#' @param y Like `x`, with the same samples in the same order, or `NULL` for all pairs
#'   within `x`.
#' @param method `"pearson"` or `"spearman"`.
#' @param assay Assay name or index when an input is a SummarizedExperiment (first assay
#'   by default) or an ExpressionSet (`exprs()` by default).
#' @param na_action `"fail"` (missing values are an error) or `"pairwise"` (each pair is
#'   tested on the samples where both features are observed; Spearman reranks those).
#' @param top Keep, for each feature of `x` (and of `y` within `x`), only its `top` pairs
#'   with the smallest p-values.
#' @param p_max Keep only pairs with p-value at or below this.
#' @param output `"long"` (one row per pair) or `"matrix"` (a list of feature x feature
#'   matrices `estimate`, `statistic`, `p_value`, `fdr`, `n`; all pairs).
#' @param threads Number of threads (default `getOption("sceffects.threads", 2)`).
#' @param block_size Features per block (default: 4096 when pairs are filtered, else 1024).
#' @param BPPARAM `NULL` (run here) or a BiocParallel parameter object: the blocks of
#'   features are spread over its workers (each receives `y` whole and its blocks of `x`).
#' @param verbose Show messages (how a data.frame was read, dropped levels)? `FALSE`, or
#'   `options(sceffects.verbose = FALSE)` for the whole session, silences them.
#' @return A results table with columns `feature_x`, `feature_y`, `estimate` (r or rho),
#'   `statistic` (t), `df`, `p_value`, `log_p` (natural log of the p-value, finite when
#'   `p_value` underflows), `fdr`, `n` and `reason` (why a pair has no result), or a list of
#'   matrices for `output = "matrix"`.
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rnorm(30 * 50), 30, dimnames = list(paste0("gene", 1:30), NULL))
#' y <- rbind(drug = x[1, ] + rnorm(50))
#' assoc_cor(x, y)
#' head(assoc_cor(x, method = "spearman", top = 2))
assoc_cor <- function(x, y = NULL, method = c("pearson", "spearman"), assay = NULL,
                      na_action = c("fail", "pairwise"), top = NULL, p_max = NULL,
                      output = c("long", "matrix"), threads = NULL, block_size = NULL,
                      BPPARAM = NULL, verbose = getOption("sceffects.verbose", TRUE)) {
  local_verbose(verbose)
  method <- match_choice(method, "method")
  na_action <- match_choice(na_action, "na_action")
  output <- match_choice(output, "output")
  allow_na <- na_action == "pairwise"
  xs <- numeric_features(x, "x", assay, allow_na, frame = "columns")
  ys <- if (is.null(y)) NULL else numeric_features(y, "y", assay, allow_na, frame = "columns")
  assoc_screen(method, xs, ys, options = list(), top = top, p_max = p_max,
               output = output, threads = threads, block_size = block_size, BPPARAM = BPPARAM,
               label = if (method == "pearson") "Pearson correlation" else "Spearman correlation",
               estimate_label = if (method == "pearson") "Pearson r" else "Spearman rho")
}

#' Mann-Whitney U tests of continuous features against binary groupings
#'
#' For every feature of `x` and every indicator in `groups`, the Wilcoxon rank-sum test of
#' `wilcox.test(x[g], x[!g])`: U of the `TRUE` group, the normal approximation with tie and
#' continuity correction, or the exact distribution where `wilcox.test()` uses it (both
#' groups under 50 observations and no ties, with `exact = NULL`). Rank sums for all pairs
#' come from one matrix product; a `dgCMatrix` is never densified: each feature is ranked
#' once from its non-zeros, all zeros one tied group, whatever the number of groups.
#'
#' @inheritParams assoc_cor
#' @param groups The binary groupings: a logical or 0/1 vector; a factor or character
#'   vector (one indicator per level, that level against the rest; levels that no sample
#'   has are dropped, with a message); a data.frame or `DataFrame` of such columns (as
#'   `colData()`, features in columns); or a
#'   logical/0-1 matrix with indicators in rows. `NA` leaves a sample out of that test.
#' @param exact `NULL` (as `wilcox.test()`), `TRUE` (exact whenever there are no ties) or
#'   `FALSE`.
#' @param correct Continuity correction for the normal approximation.
#' @return A results table: `feature_x`, `feature_y` (the indicator), `estimate` (the
#'   rank-biserial correlation, 2 AUC - 1, positive when the `TRUE` group is larger),
#'   `statistic` (U, `wilcox.test()`'s W), `auc` (U / (n1 n2)), `p_value`, `log_p`, `fdr`,
#'   `n`, `reason`.
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rnorm(20 * 60), 20, dimnames = list(paste0("gene", 1:20), NULL))
#' mutated <- rep(c(TRUE, FALSE), 30)
#' x[1, mutated] <- x[1, mutated] + 2
#' head(assoc_mwu(x, mutated))
assoc_mwu <- function(x, groups, assay = NULL, exact = NULL, correct = TRUE,
                      na_action = c("fail", "pairwise"), top = NULL, p_max = NULL,
                      output = c("long", "matrix"), threads = NULL, block_size = NULL,
                      BPPARAM = NULL, verbose = getOption("sceffects.verbose", TRUE)) {
  local_verbose(verbose)
  na_action <- match_choice(na_action, "na_action")
  output <- match_choice(output, "output")
  xs <- numeric_features(x, "x", assay, allow_na = na_action == "pairwise", frame = "columns")
  gs <- indicator_features(groups)
  if (!is.null(exact) && !(isTRUE(exact) || isFALSE(exact))) {
    stop("`exact` must be NULL, TRUE or FALSE.", call. = FALSE)
  }
  correct <- check_flag(correct, "correct")
  exact <- if (is.null(exact)) "auto" else if (exact) "always" else "never"
  assoc_screen("mwu", xs, gs, options = list(exact = exact, continuity = correct),
               top = top, p_max = p_max, output = output, threads = threads,
               block_size = block_size, BPPARAM = BPPARAM, label = "Mann-Whitney U",
               estimate_label = "rank-biserial correlation", extra_name = "auc")
}

#' Kruskal-Wallis tests of continuous features against grouping factors
#'
#' For every feature of `x` and every factor in `groups`, `kruskal.test(x, g)`: H with the
#' tie correction on (number of groups present - 1) df. Rank sums come from one matrix
#' product of ranks and level indicators.
#'
#' @inheritParams assoc_cor
#' @param groups A factor (or character/integer vector), or a data.frame of them (as
#'   `colData()`), or a matrix with grouping variables in rows. `NA` leaves a sample out.
#' @return A results table: `feature_x`, `feature_y` (the factor), `estimate`
#'   (epsilon-squared, H / (n - 1)), `statistic` (H), `df`, `p_value`, `log_p`, `fdr`, `n`,
#'   `reason`.
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rnorm(10 * 45), 10, dimnames = list(paste0("gene", 1:10), NULL))
#' tissue <- factor(rep(c("lung", "skin", "gut"), each = 15))
#' assoc_kruskal(x, tissue)
assoc_kruskal <- function(x, groups, assay = NULL, na_action = c("fail", "pairwise"),
                          top = NULL, p_max = NULL, threads = NULL, block_size = NULL,
                          BPPARAM = NULL, verbose = getOption("sceffects.verbose", TRUE)) {
  local_verbose(verbose)
  na_action <- match_choice(na_action, "na_action")
  xs <- numeric_features(x, "x", assay, allow_na = na_action == "pairwise", frame = "columns")
  gs <- coded_features(groups, "groups", "categorical")
  assoc_screen("kruskal", xs, gs, options = list(), top = top, p_max = p_max, output = "long",
               threads = threads, block_size = block_size, BPPARAM = BPPARAM, label = "Kruskal-Wallis",
               estimate_label = "epsilon-squared")
}

#' Fisher's exact test for every pair of binary features
#'
#' The 2x2 table of every pair comes from matrix products of indicator matrices; the
#' two-sided p-value is that of [stats::fisher.test()] (tables no more likely than the
#' observed one), computed on the log scale so it never underflows.
#'
#' @param x Binary features: a logical or 0/1 matrix or `dgCMatrix` (kept sparse) with
#'   features in rows, a SummarizedExperiment or ExpressionSet holding one (see `assay`),
#'   a data.frame or `DataFrame` of logical/0-1 columns (read as `colData()`, features in
#'   columns, with a message), or one vector. `NA` leaves a sample out of the pairs of
#'   that feature.
#' @param y Like `x`, or `NULL` for all pairs within `x`.
#' @param assay Assay name or index when `x` or `y` is a SummarizedExperiment (first assay
#'   by default) or an ExpressionSet (`exprs()` by default).
#' @param mle Also report the conditional maximum-likelihood odds ratio that
#'   `fisher.test()` gives as its estimate (column `odds_ratio_mle`).
#' @inheritParams assoc_cor
#' @return A results table: `feature_x`, `feature_y`, `estimate` (the sample log odds
#'   ratio, `log(n11 n00 / (n10 n01))`, +-Inf when a cell is 0), `statistic` (n11, the
#'   count of samples where both are 1), `p_value`, `log_p`, `fdr`, `n`, `reason`, and
#'   `odds_ratio_mle` when asked.
#' @export
#' @examples
#' set.seed(1)
#' a <- matrix(runif(5 * 100) < 0.3, 5, dimnames = list(paste0("mut", 1:5), NULL))
#' b <- rbind(msi = a[1, ] | runif(100) < 0.1)
#' assoc_fisher(a, b, mle = TRUE)
assoc_fisher <- function(x, y = NULL, mle = FALSE, assay = NULL, top = NULL, p_max = NULL,
                         output = c("long", "matrix"), threads = NULL, block_size = NULL,
                         BPPARAM = NULL, verbose = getOption("sceffects.verbose", TRUE)) {
  local_verbose(verbose)
  mle <- check_flag(mle, "mle")
  output <- match_choice(output, "output")
  xs <- coded_features(x, "x", "binary", assay)
  ys <- if (is.null(y)) NULL else coded_features(y, "y", "binary", assay)
  assoc_screen("fisher", xs, ys, options = list(mle = mle), top = top, p_max = p_max,
               output = output, threads = threads, block_size = block_size, BPPARAM = BPPARAM,
               label = "Fisher's exact test", estimate_label = "log odds ratio",
               extra_name = if (isTRUE(mle)) "odds_ratio_mle" else NULL)
}

#' Chi-square tests of independence for every pair of categorical features
#'
#' For every pair, `chisq.test(a, b)` on the samples where both are observed: levels absent
#' from those samples are dropped, 2x2 tables get Yates' correction when `correct = TRUE`.
#' All contingency tables of a block come from one product of one-hot matrices.
#'
#' @param x Categorical features: a data.frame or `DataFrame` of
#'   factor/character/logical/integer columns (as `colData()`, features in columns; a
#'   message says so when all its columns are numbers or logicals), a character or integer
#'   matrix (or `dgCMatrix`, SummarizedExperiment, ExpressionSet) with features in rows,
#'   or one vector.
#' @param y Like `x`, or `NULL` for all pairs within `x`.
#' @param assay Assay name or index when `x` or `y` is a SummarizedExperiment (first assay
#'   by default) or an ExpressionSet (`exprs()` by default).
#' @param correct Yates' continuity correction for 2x2 tables, as `chisq.test()`.
#' @inheritParams assoc_cor
#' @return A results table: `feature_x`, `feature_y`, `estimate` (Cramer's V, from the
#'   uncorrected statistic), `statistic` (X-squared), `df`, `p_value`, `log_p`, `fdr`, `n`,
#'   `reason`.
#' @export
#' @examples
#' set.seed(1)
#' d <- data.frame(sex = sample(c("F", "M"), 80, TRUE), stage = sample(1:3, 80, TRUE))
#' d$response <- ifelse(d$stage == 3, "CR", sample(c("CR", "PD"), 80, TRUE))
#' assoc_chisq(d)
assoc_chisq <- function(x, y = NULL, correct = TRUE, assay = NULL, top = NULL, p_max = NULL,
                        threads = NULL, block_size = NULL, BPPARAM = NULL,
                        verbose = getOption("sceffects.verbose", TRUE)) {
  local_verbose(verbose)
  correct <- check_flag(correct, "correct")
  xs <- coded_features(x, "x", "categorical", assay)
  ys <- if (is.null(y)) NULL else coded_features(y, "y", "categorical", assay)
  assoc_screen("chisq", xs, ys, options = list(yates = correct), top = top,
               p_max = p_max, output = "long", threads = threads, block_size = block_size, BPPARAM = BPPARAM,
               label = "Pearson's chi-square test", estimate_label = "Cramer's V")
}

# Binary indicators for assoc_mwu(): factors and characters become one indicator per level.
# Levels no sample has (factor() drops them) would be all-FALSE indicators: the user is
# told they are dropped.
indicator_features <- function(groups) {
  expand <- function(v, name) {
    if (is.factor(v) || is.character(v)) {
      unused <- if (is.factor(v)) setdiff(levels(v), as.character(v[!is.na(v)])) else character()
      if (length(unused)) {
        say(sprintf("`groups`: %s has level%s without samples, dropped: %s.", name,
                    if (length(unused) > 1L) "s" else "", name_list(unused)))
      }
      f <- factor(v)
      ind <- lapply(levels(f), function(l) ifelse(is.na(f), NA, f == l))
      stats::setNames(ind, paste0(name, ":", levels(f)))
    } else {
      stats::setNames(list(v), name)
    }
  }
  if (is(groups, "DataFrame")) groups <- as.data.frame(groups, optional = TRUE)
  if (is.data.frame(groups)) {
    if (all(vapply(groups, function(v) is.numeric(v) || is.logical(v), TRUE))) {
      say_frame_orientation(groups, "groups")
    }
    groups <- as.data.frame(do.call(c, unname(Map(expand, as.list(groups), names(groups)))),
                            check.names = FALSE)
  } else if (is.factor(groups) || is.character(groups)) {
    groups <- as.data.frame(expand(groups, "groups"), check.names = FALSE)
  }
  # The user's data.frame was announced above; the frames built here are not theirs.
  coded_features(groups, "groups", "binary", frame_message = FALSE)
}

check_keep <- function(top, p_max) {
  if (!is.null(p_max) && (!is.numeric(p_max) || length(p_max) != 1L || is.na(p_max) ||
                          p_max <= 0 || p_max > 1)) {
    stop("`p_max` must be NULL or a single number in (0, 1].", call. = FALSE)
  }
}

# Runs one test over all block pairs of x and y (y = NULL: pairs within x).
assoc_screen <- function(test, x, y, options, top, p_max, output, threads, block_size, BPPARAM,
                         label, estimate_label, extra_name = NULL) {
  check_keep(top, p_max)
  check_bpparam(BPPARAM)
  if (!is.null(top)) top <- check_count(top, "top", min = 1)
  threads <- resolve_threads(threads)
  symmetric <- is.null(y)
  if (symmetric) y <- x else check_same_samples(x, y)
  if (x$n_samples < 1L) stop(sprintf("`%s` has no samples.", x$arg), call. = FALSE)
  keep_all <- is.null(top) && is.null(p_max)
  if (output == "matrix" && !keep_all) {
    stop("`output = \"matrix\"` returns all pairs: drop `top` and `p_max`.", call. = FALSE)
  }
  block_size <- if (is.null(block_size)) {
    if (keep_all || !test %in% c("pearson", "spearman")) 1024L else 4096L
  } else check_count(block_size, "block_size", min = 1)
  if (keep_all) check_pair_memory(x$n_features, y$n_features, symmetric, output)
  if (output == "matrix" && cor_matrices_apply(test, x, y)) {
    return(cor_matrices(test, x, if (symmetric) NULL else y, threads))
  }
  sparse_mwu <- sparse_mwu_applies(test, x, y)
  plan <- list(test = test, x = x, y = y, symmetric = symmetric, sparse_mwu = sparse_mwu,
               # The sparse kernel walks the rows of x itself, `block_size` at a time.
               xb = if (sparse_mwu) list(seq_len(x$n_features)) else plan_chunks(x$n_features, block_size),
               yb = plan_chunks(y$n_features, block_size), block_size = block_size,
               keep_all = keep_all, top = top, options = options, threads = threads,
               max_log_p = if (is.null(p_max)) Inf else log(p_max))
  # Jobs run with i fastest, so consecutive jobs share their y block: it is read once.
  jobs <- expand.grid(i = seq_along(plan$xb), j = seq_along(plan$yb))
  if (symmetric) jobs <- jobs[jobs$j >= jobs$i, , drop = FALSE]
  done <- if (is.null(BPPARAM) || length(plan$yb) == 1L) {
    screen_jobs(plan, jobs, label)
  } else {
    # One task per y block; the parts are merged as the serial loop merges its blocks.
    parts <- BiocParallel::bplapply(split(jobs, jobs$j), function(jb) screen_jobs(plan, jb, NULL),
                                    BPPARAM = BPPARAM)
    merge_screens(parts, plan)
  }
  table <- done$table
  if (!keep_all && !is.null(top)) table <- top_across_blocks(table, top, symmetric)
  finish_table(table, x, y, done$hist, symmetric, output, label, estimate_label, extra_name)
}

# Runs the block pairs `jobs` of a screen: all pairs when every pair is kept, else the
# pairs passing `top`/`p_max` and the histogram of all p-values (for the FDR). A progress
# bar when `label` is given.
screen_jobs <- function(plan, jobs, label) {
  levels_of <- function(src) if (is.null(src$levels)) integer() else lengths(src$levels)
  x_levels <- levels_of(plan$x)
  y_levels <- levels_of(plan$y)
  y_block <- list(j = 0L, data = NULL)
  # With `top`, the pairs kept so far are cut back to each feature's top whenever they
  # pass twice that bound, so memory stays bounded by the block size, not the pair count.
  kept <- NULL
  hist <- NULL
  bound <- if (is.null(plan$top)) Inf else 2 * plan$top * (plan$x$n_features + plan$y$n_features)
  top_n <- as.integer(if (is.null(plan$top)) 0L else plan$top)
  step <- function(k) {
    rows_x <- plan$xb[[jobs$i[k]]]
    rows_y <- plan$yb[[jobs$j[k]]]
    xm <- if (plan$sparse_mwu) NULL else read_block(plan$x, rows_x)
    if (plan$symmetric && jobs$i[k] == jobs$j[k]) {
      ym <- xm
    } else {
      if (y_block$j != jobs$j[k]) y_block <<- list(j = jobs$j[k], data = read_block(plan$y, rows_y))
      ym <- y_block$data
    }
    out <- if (plan$sparse_mwu) {
      rs_mwu_sparse(plan$x$data, ym, min(rows_y) - 1L, plan$keep_all, plan$max_log_p, top_n,
                    plan$options, plan$threads, plan$block_size)
    } else {
      rs_assoc_block(plan$test, xm, ym, x_levels[rows_x], y_levels[rows_y],
                     c(min(rows_x), min(rows_y)) - 1L, plan$symmetric, plan$keep_all,
                     plan$max_log_p, top_n, plan$options, plan$threads)
    }
    out$i <- rows_x[out$i]
    out$j <- rows_y[out$j]
    if (plan$keep_all) return(out)
    hist <<- if (is.null(hist)) out$histogram else hist + out$histogram
    kept <<- bind_blocks(list(kept, out))
    if (length(kept$i) > bound) kept <<- top_across_blocks(kept, plan$top, plan$symmetric)
    NULL
  }
  results <- if (is.null(label)) lapply(seq_len(nrow(jobs)), step) else with_progress(nrow(jobs), label, step)
  list(table = if (plan$keep_all) bind_blocks(results) else kept, hist = hist)
}

merge_screens <- function(parts, plan) {
  table <- bind_blocks(lapply(parts, `[[`, "table"))
  hist <- if (plan$keep_all) NULL else Reduce(`+`, lapply(parts, `[[`, "hist"))
  list(table = table, hist = hist)
}

# Mann-Whitney on a dgCMatrix ranks each feature once from its non-zeros (all zeros one
# tied group), never densifying it. Missing values change the ranks pair by pair, so they
# take the dense path.
sparse_mwu_applies <- function(test, x, y) {
  values_of <- function(src) if (src$kind == "sparse") src$data@x else src$data
  test == "mwu" && x$kind == "sparse" && x$n_features > 0L && y$kind != "delayed" &&
    !anyNA(x$data@x) && !anyNA(values_of(y))
}

# Correlation matrices of complete dense features are written by the core in one call:
# no table of pairs, no R pass over them.
cor_matrices_apply <- function(test, x, y) {
  test %in% c("pearson", "spearman") && x$kind == "dense" && y$kind == "dense" &&
    x$n_features > 0L && y$n_features > 0L && !anyNA(x$data) && !anyNA(y$data)
}

cor_matrices <- function(method, x, y, threads) {
  whole <- function(src) read_block(src, seq_len(src$n_features))
  names_y <- if (is.null(y)) x$names else y$names
  rs_cor_matrices(whole(x), if (is.null(y)) NULL else whole(y), method,
                  list(x$names, names_y), threads)
}

# Every pair is kept: refuse up front when the table (or the matrices) cannot fit. A pair
# costs about 150 bytes on its way to a data frame (core table, R vectors, the frame),
# 40 more per cell of the five matrices of `output = "matrix"`.
check_pair_memory <- function(nx, ny, symmetric, output) {
  pairs <- if (symmetric) nx * (nx - 1) / 2 + nx else nx * ny
  bytes <- 150 * pairs + if (output == "matrix") 40 * nx * ny else 0
  check_memory(bytes, sprintf("Keeping all %.3g pairs", pairs),
               "Keep fewer pairs with `top` or `p_max`, or test fewer features.")
}

bind_blocks <- function(results) {
  cols <- c("i", "j", "estimate", "statistic", "df", "n", "log_p", "extra", "reason")
  stats::setNames(lapply(cols, function(cl) unlist(lapply(results, `[[`, cl), use.names = FALSE)), cols)
}

# Blocks keep their own top pairs per feature; keep the overall top across blocks.
top_across_blocks <- function(t, top, symmetric) {
  ord <- order(t$log_p, -abs(t$estimate))
  t <- lapply(t, `[`, ord)
  # Position of each entry among those of its feature, in table order (a stable sort by
  # feature; ave() over a million rows of 20,000 features takes seconds).
  rank_in <- function(g) {
    o <- order(g, method = "radix")
    sorted <- g[o]
    rank <- integer(length(g))
    rank[o] <- seq_along(sorted) - match(sorted, sorted) + 1L
    rank
  }
  keep <- if (symmetric) {
    # Within one set a feature's pairs are those where it is either member.
    m <- length(t$i)
    ranks <- rank_in(c(t$i, t$j)[order(c(seq_len(m), seq_len(m)))])
    ranks <- matrix(ranks, nrow = 2L)
    pmin(ranks[1L, ], ranks[2L, ]) <= top
  } else {
    rank_in(t$i) <= top
  }
  lapply(t, `[`, keep)
}

finish_table <- function(t, x, y, hist, symmetric, output, label, estimate_label, extra_name) {
  has_df <- !all(is.na(t$df))
  # Only the columns that are returned (a pass over each is not free with 1e5+ pairs).
  for (cl in c("estimate", "statistic", "log_p", if (has_df) "df", if (!is.null(extra_name)) "extra")) {
    t[[cl]] <- nan_to_na(t[[cl]])
  }
  p <- exp(t$log_p)
  fdr <- nan_to_na(if (is.null(hist)) rs_bh(p) else rs_bh_histogram(t$log_p, hist))
  reason <- rep(NA_character_, length(t$reason))
  failed <- t$reason != 0L
  reason[failed] <- reason_of("assoc", t$reason[failed])
  if (output == "matrix") {
    return(pair_matrices(t, p, fdr, x, y, symmetric))
  }
  # Rows in order of p, built from ordered columns (reordering a data.frame copies twice).
  o <- order(t$log_p, -abs(t$estimate), na.last = TRUE)
  out <- data.frame(feature_x = x$names[t$i[o]], feature_y = y$names[t$j[o]],
                    estimate = t$estimate[o], statistic = t$statistic[o], stringsAsFactors = FALSE)
  if (has_df) out$df <- t$df[o]
  if (!is.null(extra_name)) out[[extra_name]] <- t$extra[o]
  out$p_value <- p[o]
  out$log_p <- t$log_p[o]
  out$fdr <- fdr[o]
  out$n <- as.integer(t$n[o])
  out$reason <- reason[o]
  note <- if (is.null(hist)) NULL else sprintf(
    "%d of %.0f tested pairs kept; fdr is over all tested pairs (conservative by at most 2.3%%).",
    nrow(out), sum(hist))
  results_table(out, label, list(estimate_label = estimate_label, fdr_note = note))
}

pair_matrices <- function(t, p, fdr, x, y, symmetric) {
  fill <- function(v) {
    m <- matrix(NA_real_, x$n_features, y$n_features, dimnames = list(x$names, y$names))
    m[cbind(t$i, t$j)] <- v
    if (symmetric) m[cbind(t$j, t$i)] <- v
    m
  }
  list(estimate = fill(t$estimate), statistic = fill(t$statistic), p_value = fill(p),
       fdr = fill(fdr), n = fill(t$n))
}

# The bare matrix product x %*% t(y) by the core's product (faer, `threads` threads), for
# benchmarks: the floor that a correlation screen is measured against.
bare_crossprod <- function(x, y, threads = 2L, block_size = 4096L) {
  xb <- plan_chunks(nrow(x), block_size)
  yb <- plan_chunks(nrow(y), block_size)
  for (i in xb) for (j in yb) {
    rs_crossprod(unname(x[i, , drop = FALSE]), unname(y[j, , drop = FALSE]), as.integer(threads))
  }
  invisible()
}

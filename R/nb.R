# Negative binomial regression with formulas for the mean and the dispersion (size). The
# designs are built here from the formulas; every gene is fitted by the core (rs_nb_fit)
# in chunks of genes, so that Ctrl-C works between chunks and sparse counts are read one
# block of rows at a time.

#' Negative binomial regression with formulas for the mean and the dispersion
#'
#' Fits, for every gene g and cell or sample i, y_gi ~ NB(mean mu_gi, size r_gi) with
#' variance mu + mu^2 / r, `log(mu_gi) = X_i beta_g + offset_i` and
#' `log(r_gi) = Z_i gamma_g`, where X and Z come from the formulas `mean` and
#' `dispersion` on the same metadata. This is glmmTMB's `nbinom2` family with a
#' `dispformula` (the dispersion coefficients are those of glmmTMB's `dispformula`, on the
#' log size), and with `dispersion = ~ 1` the model of `MASS::glm.nb()` (theta = r).
#'
#' Each gene is fitted to the maximum of the full log-likelihood by Newton's method on
#' (beta, gamma) jointly, with step halving on the log-likelihood, from a Poisson fit and
#' a moment estimate of the size; convergence is checked per gene (Newton decrement below
#' `tol`). Standard errors come from the observed information. Genes whose fit cannot be
#' trusted are flagged in `fit$reason`: all counts zero (no estimates); separation (some
#' fitted means run to zero, e.g. a gene never seen in one group: no estimates); the
#' Poisson limit (some counts are not overdispersed and r runs to infinity, with r / mu
#' above 3e6: when it is all of them, the mean coefficients and log-likelihood are the
#' Poisson fit's, the dispersion coefficients NA and the fitted size infinite; when it is
#' part of them, e.g. one group of a dispersion factor, the estimates are where the
#' likelihood reached that limit; either way no covariance); the iteration limit.
#'
#' Size factors follow glmGamPoi: for a SingleCellExperiment / SummarizedExperiment, the
#' default `size_factors = TRUE` takes `sizeFactors(x)` when they are set and otherwise
#' computes glmGamPoi's `"normed_sum"` size factors (each column's total count divided by
#' the geometric mean of the totals; columns without counts get 0.001), and adds their log
#' to the linear predictor of the mean; a message says which, once per call. A plain matrix
#' carries no size factors, so its default is `FALSE` (the raw counts, as before); ask for
#' them with `size_factors = TRUE`. `size_factors = FALSE` turns them off.
#'
#' @param x A count matrix (dense or dgCMatrix, genes in rows, cells or samples in
#'   columns; DelayedArray is read block by block), a SingleCellExperiment /
#'   SummarizedExperiment (whose `colData()` is the metadata) or an ExpressionSet (its
#'   `exprs()` unless `assay` is given, `pData()` the metadata). A data.frame is refused:
#'   its orientation is ambiguous.
#' @param mean,dispersion One-sided formulas for log(mean) and log(size), on `data`.
#' @param data A data.frame with one row per column of `x`; by default `colData(x)` for a
#'   SummarizedExperiment, `pData(x)` for an ExpressionSet (and no variables for a matrix).
#' @param assay Assay of a SummarizedExperiment holding the counts.
#' @param size_factors `TRUE` (`sizeFactors(x)` of a SingleCellExperiment when set, else
#'   computed as glmGamPoi's `"normed_sum"`), `FALSE` (none), or positive numbers, one per
#'   column of `x`. Default: `TRUE` for a SummarizedExperiment, `FALSE` for a matrix (see
#'   Details). Their logs are offsets of the mean, kept in `fit$size_factors`.
#' @param offset `NULL` (none) or a numeric vector (on the log scale, one per column of
#'   `x`): offsets added to the log size factors. `"size_factors"` is kept for
#'   `log(sizeFactors(x))` of a SingleCellExperiment, and requires them to be set.
#' @param verbose Say which size factors are used (also quieted by
#'   `options(sceffects.verbose = FALSE)`).
#' @param max_iter Largest number of Newton iterations per gene.
#' @param tol Convergence tolerance on the Newton decrement (log-likelihood units).
#' @param block_size Genes per call into the core (between calls R checks for Ctrl-C);
#'   fewer when a chunk of dense counts would exceed 2e7 values.
#' @param threads Number of threads (default `getOption("sceffects.threads", 2)`).
#' @param BPPARAM Optional BiocParallel parameter: genes are split across its workers.
#' @return An `sceffects_nb` fit with methods [coef()], [vcov()], [summary()] (a results
#'   table of Wald tests), [predict()], [simulate()], [logLik()], [AIC()], [BIC()],
#'   [nobs()], [anova()] (likelihood-ratio tests per gene) and [print()]. Its elements
#'   `converged`, `iterations` and `reason` report each gene's fit.
#' @export
#' @examples
#' set.seed(1)
#' cells <- data.frame(dose = rnorm(300), batch = factor(rep(c("a", "b"), 150)))
#' mu <- exp(1 + 0.5 * cells$dose)
#' size <- ifelse(cells$batch == "a", 2, 8)
#' counts <- t(replicate(20, rnbinom(300, size = size, mu = mu)))
#' rownames(counts) <- paste0("gene", 1:20)
#' fit <- nb_regression(counts, mean = ~ dose, dispersion = ~ batch, data = cells)
#' fit
#' coef(fit, "dispersion")[, 1:3]
#' head(summary(fit))
nb_regression <- function(x, mean = ~ 1, dispersion = ~ 1, data = NULL, assay = "counts",
                          size_factors = is(x, "SummarizedExperiment"), offset = NULL,
                          max_iter = 100L, tol = 1e-12, block_size = 1000L, threads = NULL,
                          BPPARAM = NULL, verbose = getOption("sceffects.verbose", TRUE)) {
  threads <- resolve_threads(threads)
  max_iter <- check_count(max_iter, "max_iter")
  block_size <- check_count(block_size, "block_size", min = 1)
  check_bpparam(BPPARAM)
  if (!is.numeric(tol) || length(tol) != 1L || is.na(tol) || tol <= 0) {
    stop("`tol` must be a single positive number.", call. = FALSE)
  }
  verbose <- check_flag(verbose, "verbose")
  is_se <- is(x, "SummarizedExperiment")
  # An ExpressionSet's counts are in exprs() unless an assay is named.
  if (is(x, "ExpressionSet") && missing(assay)) assay <- NULL
  src <- numeric_features(x, "x", assay = assay, allow_na = TRUE)
  check_count_values(count_values_of(src$data))
  if (src$kind == "dense" && !is.double(src$data)) storage.mode(src$data) <- "double"
  data <- nb_metadata(x, data, src$n_samples)
  mean_spec <- nb_design(mean, data, "mean")
  disp_spec <- nb_design(dispersion, data, "dispersion")
  legacy_sf <- identical(offset, "size_factors")
  offset <- nb_offset(offset, x, src$n_samples)
  # offset = "size_factors" already holds them: they are not added twice.
  sf <- if (legacy_sf) rep(1, src$n_samples) else nb_size_factors(size_factors, x, src, verbose)
  offset <- offset + log(sf)
  parts <- nb_fit_source(src, mean_spec$x, disp_spec$x, offset, max_iter, tol, block_size,
                         threads, BPPARAM)
  fit <- nb_assemble(parts, src, mean_spec, disp_spec, offset, data,
              coldata = if (is_se) SummarizedExperiment::colData(x),
              sce = is(x, "SingleCellExperiment"), sparse = src$kind == "sparse",
              call = match.call())
  fit$size_factors <- stats::setNames(if (legacy_sf) exp(offset) else sf, src$samples)
  fit
}

# Size factors of the fit, as glmGamPoi: given numbers, sizeFactors(x) of a
# SingleCellExperiment when set, else glmGamPoi's "normed_sum"; 1 when turned off.
nb_size_factors <- function(size_factors, x, src, verbose) {
  n <- src$n_samples
  if (is.numeric(size_factors) && length(size_factors) != 1L) {
    if (length(size_factors) != n || any(!is.finite(size_factors) | size_factors <= 0)) {
      stop(sprintf("`size_factors` must be TRUE, FALSE or %d positive numbers, one per column of `x`.", n),
           call. = FALSE)
    }
    return(as.numeric(size_factors))
  }
  if (!isTRUE(size_factors) && !isFALSE(size_factors)) {
    stop(sprintf("`size_factors` must be TRUE, FALSE or %d positive numbers, one per column of `x`.", n),
         call. = FALSE)
  }
  if (isFALSE(size_factors)) return(rep(1, n))
  stored <- if (is(x, "SingleCellExperiment")) SingleCellExperiment::sizeFactors(x)
  if (!is.null(stored)) {
    if (any(!is.finite(stored) | stored <= 0)) {
      stop("`size_factors`: sizeFactors(x) must be positive and finite (or set size_factors = FALSE).", call. = FALSE)
    }
    say("nb_regression(): using sizeFactors(x) as offsets of the mean (size_factors = FALSE turns this off).", verbose)
    return(as.numeric(stored))
  }
  sf <- normed_sum_size_factors(src)
  say("nb_regression(): size factors computed as glmGamPoi's \"normed_sum\" (column totals over their geometric mean) are offsets of the mean (size_factors = FALSE turns this off).",
      verbose)
  sf
}

# glmGamPoi's "normed_sum": column totals divided by their geometric mean; with a single
# gene there is nothing to normalise (1), and columns without counts get 0.001, as there.
normed_sum_size_factors <- function(src) {
  n <- src$n_samples
  if (src$n_features <= 1L) return(rep(1, n))
  totals <- column_totals(src)
  empty <- is.nan(totals) | totals <= 0
  sf <- totals / exp(mean(log(totals[!empty])))
  sf[empty] <- 0.001
  sf
}

# Column sums of a feature source, block by block for a DelayedArray.
column_totals <- function(src) {
  switch(src$kind,
    dense = colSums(src$data, na.rm = TRUE),
    sparse = Matrix::colSums(src$data, na.rm = TRUE),
    delayed = if (!is.null(src$recipe)) source_column_sums(src) else
      Reduce(`+`, lapply(plan_chunks(src$n_features, delayed = TRUE, n_samples = src$n_samples),
                         function(rows) colSums(read_block(src, rows), na.rm = TRUE))))
}

nb_metadata <- function(x, data, n) {
  if (is.null(data)) data <- sample_metadata(x) %||% data.frame(row.names = seq_len(n))
  if (is(data, "DataFrame")) data <- as.data.frame(data, optional = TRUE)
  if (!is.data.frame(data)) stop("`data` must be a data.frame (one row per column of `x`).", call. = FALSE)
  if (nrow(data) != n) {
    stop(sprintf("`data` has %d rows but `x` has %d columns (cells or samples): give one row of metadata per column.",
                 nrow(data), n), call. = FALSE)
  }
  data
}

# Design of one formula: the matrix and what predict() needs to rebuild it.
nb_design <- function(formula, data, arg) {
  if (!inherits(formula, "formula") || length(formula) != 2L) {
    stop(sprintf("`%s` must be a one-sided formula such as ~ condition.", arg), call. = FALSE)
  }
  missing_vars <- setdiff(all.vars(formula), names(data))
  if (length(missing_vars)) {
    stop(sprintf("`%s` uses variables not in `data`: %s.", arg, paste(missing_vars, collapse = ", ")),
         call. = FALSE)
  }
  tt <- stats::terms(formula, data = data)
  frame <- stats::model.frame(tt, data, na.action = stats::na.pass)
  if (anyNA(frame)) stop(sprintf("`data` has missing values in the variables of `%s`.", arg), call. = FALSE)
  x <- stats::model.matrix(tt, frame)
  if (ncol(x) == 0L) stop(sprintf("`%s` must have at least one term.", arg), call. = FALSE)
  rank <- qr(x)$rank
  if (rank < ncol(x)) {
    stop(sprintf("`%s` gives a rank-deficient design (%d columns, rank %d): drop or merge confounded terms.",
                 arg, ncol(x), rank), call. = FALSE)
  }
  list(x = x, terms = tt, xlevels = stats::.getXlevels(tt, frame),
       contrasts = attr(x, "contrasts"), formula = formula)
}

# The design of `spec` on new metadata, with the fit's terms and factor levels.
nb_design_new <- function(spec, newdata) {
  tt <- stats::delete.response(spec$terms)
  frame <- stats::model.frame(tt, newdata, xlev = spec$xlevels, na.action = stats::na.pass)
  x <- stats::model.matrix(tt, frame, contrasts.arg = spec$contrasts)
  x[, colnames(spec$x), drop = FALSE]
}

nb_offset <- function(offset, x, n) {
  if (is.null(offset)) return(rep(0, n))
  if (identical(offset, "size_factors")) {
    sf <- if (is(x, "SingleCellExperiment")) SingleCellExperiment::sizeFactors(x)
    if (is.null(sf)) {
      stop("`offset`: \"size_factors\" needs a SingleCellExperiment with sizeFactors(x) set.", call. = FALSE)
    }
    if (any(!is.finite(sf) | sf <= 0)) stop("`offset`: sizeFactors(x) must be positive.", call. = FALSE)
    return(log(as.numeric(sf)))
  }
  if (!is.numeric(offset) || length(offset) != n || any(!is.finite(offset))) {
    stop(sprintf("`offset` must be NULL, \"size_factors\" or %d finite numbers (log scale), one per column of `x`.", n),
         call. = FALSE)
  }
  as.numeric(offset)
}

# Fits all genes in chunks: one core call per chunk.
nb_fit_source <- function(src, xm, zm, offset, max_iter, tol, block_size, threads, BPPARAM) {
  dimnames(xm) <- NULL
  dimnames(zm) <- NULL
  # The core reads each chunk as a dense block: keep it under 2e7 values (160 MB).
  chunks <- plan_chunks(src$n_features, block_size, BPPARAM, delayed = src$kind == "delayed",
                        max_values = 2e7, n_samples = src$n_samples, chunk_rows = src$recipe$chunk_rows)
  one <- function(rows, src) {
    if (src$kind == "delayed") {
      block <- read_block(src, rows)
      check_count_values(block)
      rs_nb_fit(block, 0L, length(rows), xm, zm, offset, max_iter, tol, threads)
    } else {
      rs_nb_fit(src$data, min(rows) - 1L, max(rows), xm, zm, offset, max_iter, tol, threads)
    }
  }
  run_chunks(chunks, one, BPPARAM, "Fitting negative binomial models", src = src)
}


nb_assemble <- function(parts, src, mean_spec, disp_spec, offset, data, coldata, sce, sparse, call) {
  theta <- do.call(cbind, lapply(parts, `[[`, "theta"))
  vcov <- do.call(cbind, lapply(parts, `[[`, "vcov"))
  status <- unlist(lapply(parts, `[[`, "status"))
  p <- ncol(mean_spec$x)
  genes <- src$names
  beta <- nan_to_na(theta[seq_len(p), , drop = FALSE])
  gamma <- nan_to_na(theta[-seq_len(p), , drop = FALSE])
  dimnames(beta) <- list(colnames(mean_spec$x), genes)
  dimnames(gamma) <- list(colnames(disp_spec$x), genes)
  structure(list(
    coefficients = list(mean = beta, dispersion = gamma),
    vcov = nan_to_na(vcov),
    loglik = stats::setNames(nan_to_na(unlist(lapply(parts, `[[`, "loglik"))), genes),
    iterations = stats::setNames(as.integer(unlist(lapply(parts, `[[`, "iterations"))), genes),
    converged = stats::setNames(status == 0, genes),
    status = stats::setNames(as.integer(status), genes),
    reason = stats::setNames(reason_of("nb", status), genes),
    n_obs = src$n_samples, mean = mean_spec, dispersion = disp_spec, offset = offset,
    data = data, coldata = coldata, sce = sce, sparse = sparse, call = call
  ), class = "sceffects_nb")
}

check_nb_fit <- function(object, arg = "object") {
  if (!inherits(object, "sceffects_nb")) stop(sprintf("`%s` must be made by nb_regression().", arg), call. = FALSE)
}

#' @export
print.sceffects_nb <- function(x, ...) {
  g <- length(x$loglik)
  cat(sprintf("<sceffects negative binomial regression: %d genes x %d observations>\n", g, x$n_obs))
  cat(sprintf("  mean:       %s  (%d coefficients)\n", deparse1(x$mean$formula), ncol(x$mean$x)))
  cat(sprintf("  dispersion: %s  (%d coefficients, log size)\n", deparse1(x$dispersion$formula),
              ncol(x$dispersion$x)))
  cat(sprintf("  converged:  %d of %d genes", sum(x$converged), g))
  flagged <- table(x$reason[!is.na(x$reason)])
  if (length(flagged)) {
    cat("; flagged:\n")
    for (nm in names(flagged)) cat(sprintf("    %d x %s\n", flagged[[nm]], nm))
  } else cat("\n")
  invisible(x)
}

#' Methods for negative binomial regression fits
#'
#' Coefficients, covariance, Wald tests, predictions, simulations and likelihoods of an
#' [nb_regression()] fit, per gene.
#'
#' @param object An `sceffects_nb` fit.
#' @param component `"mean"` (log mean coefficients) or `"dispersion"` (log size
#'   coefficients); `summary()` also takes `"both"`.
#' @param gene One gene name, or one whole-number index in `1..n_genes`; for `vcov()`,
#'   `NULL` for all genes.
#' @param newdata Metadata (data.frame) of new cells, with every variable of both
#'   formulas, no missing values and only factor levels seen in the fit; `NULL` for the
#'   fitted cells.
#' @param type `"mean"`, `"dispersion"` (the size r) or `"link"` (log mean).
#' @param offset Offset of `newdata` (log scale); 0 by default.
#' @param nsim Number of simulated data sets (>= 1); a request whose draws (genes x
#'   cells x `nsim` doubles) exceed the available memory is refused before drawing.
#' @param seed Seed of the simulation (the user's random state is left untouched).
#' @param copula For `simulate()`: `NULL` (genes independent), or an [nb_copula()] of
#'   this fit (or of an [edit_fit()] of it): counts with the copula's marginals (`"nb"`,
#'   `"poisson"` or `"zinb"`, means and sizes from `object`) and its gene-gene
#'   correlation, per level of its `group` when it has one (drawn by the core from seeded
#'   streams with `rand_distr` normals: the same for a seed whatever `threads`).
#' @param threads For `simulate()` with a copula: threads of the core.
#' @param contrast For `summary()`: `NULL` (a test of each coefficient), or hypotheses
#'   about the coefficients of `component` (the mean unless given), as in [contrast()],
#'   whose table is then returned.
#' @param ... Unused (an unknown argument is an error); for `anova()`, the second
#'   (larger) fit.
#' @param k Penalty per parameter.
#' @return `coef()`: a terms x genes matrix. `vcov()`: the covariance matrix of one
#'   gene's mean and dispersion coefficients (observed information); with `gene = NULL`,
#'   those of all genes as a 3-d array coefficients x coefficients x genes. `summary()`: a
#'   results table with one row per gene and coefficient (`feature`, `component`, `term`,
#'   `estimate`, `std_error`, `statistic` (Wald z), `df` (Inf), `p_value`, `log_p` (its
#'   natural log, kept below 1e-308), `fdr` (BH within each coefficient), `converged`,
#'   `reason`); with `contrast`, the table of [contrast()]. `predict()`: a genes x cells matrix.
#'   `simulate()`: counts (genes x cells; dgCMatrix when the fit was on sparse counts, a
#'   SingleCellExperiment when the fit was on one), a list of `nsim` of them when
#'   `nsim > 1`. `logLik()`: a `logLik` object with one value per gene. `AIC()`, `BIC()`:
#'   one value per gene. `nobs()`: the number of observations. `anova(fit0, fit1)`: a
#'   results table of likelihood-ratio tests per gene of the nested `fit0` against `fit1`.
#' @name nb-methods
#' @examples
#' set.seed(1)
#' cells <- data.frame(dose = rnorm(200))
#' counts <- t(replicate(10, rnbinom(200, size = 3, mu = exp(1 + 0.3 * cells$dose))))
#' rownames(counts) <- paste0("gene", 1:10)
#' fit1 <- nb_regression(counts, mean = ~ dose, data = cells)
#' fit0 <- nb_regression(counts, mean = ~ 1, data = cells)
#' coef(fit1)[, 1:3]
#' vcov(fit1, "gene1")
#' head(summary(fit1, "mean"))
#' predict(fit1, data.frame(dose = c(-1, 0, 1)))[1:3, ]
#' simulate(fit1, seed = 1)[1:3, 1:5]
#' AIC(fit1)[1:3]
#' anova(fit0, fit1)
NULL

#' @rdname nb-methods
#' @export
coef.sceffects_nb <- function(object, component = c("mean", "dispersion"), ...) {
  check_dots_used(..., call_name = "coef")
  object$coefficients[[nb_component(component, c("mean", "dispersion"))]]
}

# `component` of an NB method: one of `choices` (the first by default), named in the error.
nb_component <- function(component, choices) {
  if (missing(component) || identical(component, choices)) return(choices[1L])
  if (!is.character(component) || length(component) != 1L || is.na(component) || !component %in% choices) {
    stop(sprintf("`component` must be one of %s.", paste0("\"", choices, "\"", collapse = ", ")), call. = FALSE)
  }
  component
}

# Column of one gene of the fit, from its name or its index.
nb_gene_index <- function(object, gene) {
  genes <- names(object$loglik)
  ok_number <- is.numeric(gene) && length(gene) == 1L && is.finite(gene) && gene == round(gene)
  ok_name <- is.character(gene) && length(gene) == 1L && !is.na(gene)
  if (!ok_number && !ok_name) {
    stop("`gene` must be one gene name or one whole-number index of the fit.", call. = FALSE)
  }
  j <- if (ok_name) match(gene, genes) else gene
  if (is.na(j) || j < 1 || j > length(genes)) {
    stop(sprintf("`gene` %s is not a gene of the fit: give a name of coef(fit) or an index in 1..%d.",
                 if (ok_name) sprintf("\"%s\"", gene) else format(gene), length(genes)), call. = FALSE)
  }
  as.integer(j)
}

#' @rdname nb-methods
#' @export
vcov.sceffects_nb <- function(object, gene, ...) {
  check_dots_used(..., call_name = "vcov")
  if (missing(gene)) stop("`gene` is missing: give one gene name or index, or NULL for all genes.", call. = FALSE)
  labels <- c(paste0("mean:", rownames(object$coefficients$mean)),
              paste0("dispersion:", rownames(object$coefficients$dispersion)))
  k <- length(labels)
  # All genes at once: the stored k^2 x genes matrix is already one k x k slice per gene.
  if (is.null(gene)) return(array(object$vcov, c(k, k, ncol(object$vcov)), list(labels, labels, names(object$loglik))))
  j <- nb_gene_index(object, gene)
  matrix(object$vcov[, j], k, k, dimnames = list(labels, labels))
}

#' @rdname nb-methods
#' @export
summary.sceffects_nb <- function(object, component = c("both", "mean", "dispersion"), contrast = NULL, ...) {
  check_dots_used(..., call_name = "summary")
  if (!is.null(contrast)) {
    # A contrast is of the mean coefficients unless the user chose a component.
    if (missing(component)) component <- "mean"
    return(contrast.sceffects_nb(object, contrast, component = component))
  }
  component <- nb_component(component, c("both", "mean", "dispersion"))
  comps <- if (component == "both") c("mean", "dispersion") else component
  k <- nrow(object$coefficients$mean) + nrow(object$coefficients$dispersion)
  diag_index <- (seq_len(k) - 1L) * k + seq_len(k)
  se_all <- sqrt(object$vcov[diag_index, , drop = FALSE])
  genes <- names(object$loglik)
  tables <- lapply(comps, function(cm) {
    est <- object$coefficients[[cm]]
    rows <- if (cm == "mean") seq_len(nrow(est)) else nrow(object$coefficients$mean) + seq_len(nrow(est))
    se <- se_all[rows, , drop = FALSE]
    do.call(rbind, lapply(seq_len(nrow(est)), function(a) {
      z <- est[a, ] / se[a, ]
      log_p <- nan_to_na(log(2) + p_tail("norm", -abs(z), log_p = TRUE))
      p <- exp(log_p)
      data.frame(feature = genes, component = cm, term = rownames(est)[a], estimate = est[a, ],
                 std_error = se[a, ], statistic = z, df = ifelse(is.na(z), NA_real_, Inf),
                 p_value = p, log_p = log_p, fdr = fdr_bh(p), converged = object$converged,
                 iterations = object$iterations, reason = object$reason,
                 stringsAsFactors = FALSE)
    }))
  })
  results_table(do.call(rbind, tables), "negative binomial regression (Wald z)")
}

#' @rdname nb-methods
#' @export
predict.sceffects_nb <- function(object, newdata = NULL, type = c("mean", "dispersion", "link"),
                                 offset = NULL, ...) {
  check_dots_used(..., call_name = "predict")
  type <- nb_type(type)
  if (is.null(newdata)) {
    xm <- object$mean$x
    zm <- object$dispersion$x
    offset <- object$offset
  } else {
    newdata <- nb_newdata(object, newdata)
    xm <- nb_design_new(object$mean, newdata)
    zm <- nb_design_new(object$dispersion, newdata)
    if (is.null(offset)) offset <- rep(0, nrow(newdata))
    if (!is.numeric(offset) || length(offset) != nrow(newdata) || any(!is.finite(offset))) {
      stop(sprintf("`offset` must be %d finite numbers (log scale), one per row of `newdata`.", nrow(newdata)),
           call. = FALSE)
    }
  }
  out <- if (type == "dispersion") {
    gamma <- object$coefficients$dispersion
    size <- exp(t(gamma) %*% t(zm))
    # At the Poisson limit of every observation the dispersion coefficients are NA.
    size[object$status == 4L & colSums(!is.na(gamma)) == 0L, ] <- Inf
    size
  } else {
    eta <- sweep(t(object$coefficients$mean) %*% t(xm), 2L, offset, `+`)
    if (type == "mean") exp(eta) else eta
  }
  colnames(out) <- if (is.null(newdata)) colnames_of_fit(object) else rownames(newdata)
  out
}

nb_type <- function(type) {
  choices <- c("mean", "dispersion", "link")
  if (identical(type, choices)) return("mean")
  if (!is.character(type) || length(type) != 1L || is.na(type) || !type %in% choices) {
    stop("`type` must be one of \"mean\", \"dispersion\", \"link\".", call. = FALSE)
  }
  type
}

# `newdata` checked against the fit: a data.frame with at least one row and every variable
# of both formulas, without missing values, and factor levels seen in the fit.
nb_newdata <- function(object, newdata) {
  if (is(newdata, "DataFrame")) newdata <- as.data.frame(newdata, optional = TRUE)
  if (!is.data.frame(newdata)) {
    stop(sprintf("`newdata` must be a data.frame with the fit's variables as columns, not %s (use as.data.frame()).",
                 class(newdata)[1L]), call. = FALSE)
  }
  if (nrow(newdata) == 0L) stop("`newdata` has no rows: give at least one row of metadata.", call. = FALSE)
  vars <- unique(c(all.vars(object$mean$formula), all.vars(object$dispersion$formula)))
  absent <- setdiff(vars, names(newdata))
  if (length(absent)) {
    stop(sprintf("`newdata` lacks the variable%s %s of the fit's formulas.", if (length(absent) > 1L) "s" else "",
                 name_list(absent)), call. = FALSE)
  }
  with_na <- vars[vapply(vars, function(v) anyNA(newdata[[v]]), logical(1))]
  if (length(with_na)) {
    stop(sprintf("`newdata` has missing values in %s: predictions need complete rows.", name_list(with_na)),
         call. = FALSE)
  }
  xlev <- c(object$mean$xlevels, object$dispersion$xlevels)
  for (v in intersect(names(xlev), names(newdata))) {
    unseen <- setdiff(unique(as.character(newdata[[v]])), xlev[[v]])
    if (length(unseen)) {
      stop(sprintf("`newdata`$%s has level%s %s not seen in the fit (levels: %s).", v,
                   if (length(unseen) > 1L) "s" else "", name_list(unseen), name_list(xlev[[v]])), call. = FALSE)
    }
  }
  newdata
}

colnames_of_fit <- function(object) {
  rn <- rownames(object$data)
  if (is.null(rn) || identical(rn, as.character(seq_len(object$n_obs)))) NULL else rn
}

#' @rdname nb-methods
#' @export
simulate.sceffects_nb <- function(object, nsim = 1, seed = NULL, newdata = NULL, offset = NULL, copula = NULL,
                                 threads = NULL, ...) {
  check_dots_used(..., call_name = "simulate")
  nsim <- check_count(nsim, "nsim", min = 1)
  if (!is.null(seed)) seed <- resolve_seed(seed)
  n_cells <- if (is.null(newdata)) object$n_obs else NROW(newdata)
  # Each draw is a dense genes x cells matrix of doubles, and all `nsim` are kept.
  check_memory(as.numeric(n_cells) * length(object$loglik) * nsim * 8,
               sprintf("simulate() of %d data sets of %d genes x %d cells", nsim, length(object$loglik), n_cells),
               "Use a smaller `nsim`, or simulate in several calls.")
  mu <- predict(object, newdata, "mean", offset)
  size <- predict(object, newdata, "dispersion", offset)
  mu[object$status == 2L, ] <- 0
  size[object$status == 2L, ] <- 1
  ok <- !is.na(mu) & !is.na(size)
  if (!is.null(copula)) {
    sims <- lapply(simulate_copula(object, copula, mu, size, newdata, nsim, seed, threads), nb_counts_as_input, object, newdata)
    return(if (nsim == 1L) sims[[1L]] else sims)
  }
  draw <- function() {
    y <- matrix(NA_real_, nrow(mu), ncol(mu), dimnames = dimnames(mu))
    y[ok] <- stats::rnbinom(sum(ok), size = size[ok], mu = mu[ok])
    nb_counts_as_input(y, object, newdata)
  }
  sims <- if (is.null(seed)) replicate(nsim, draw(), simplify = FALSE) else
    with_seed(seed, replicate(nsim, draw(), simplify = FALSE))
  if (nsim == 1L) sims[[1L]] else sims
}

nb_counts_as_input <- function(y, object, newdata) {
  if (object$sparse && !anyNA(y)) y <- methods::as(y, "CsparseMatrix")
  if (!object$sce) return(y)
  cd <- if (is.null(newdata)) object$coldata else S4Vectors::DataFrame(newdata, check.names = FALSE)
  if (is.null(newdata)) colnames(y) <- rownames(cd)
  SingleCellExperiment::SingleCellExperiment(assays = list(counts = y), colData = cd)
}

#' @rdname nb-methods
#' @export
logLik.sceffects_nb <- function(object, ...) {
  check_dots_used(..., call_name = "logLik")
  structure(object$loglik, df = nb_n_params(object), nobs = object$n_obs, class = "logLik")
}

nb_n_params <- function(object) {
  nrow(object$coefficients$mean) + nrow(object$coefficients$dispersion)
}

#' @rdname nb-methods
#' @export
AIC.sceffects_nb <- function(object, ..., k = 2) {
  check_dots_used(..., call_name = "AIC")
  if (!is.numeric(k) || length(k) != 1L || !is.finite(k) || k < 0) {
    stop("`k` must be a single number >= 0.", call. = FALSE)
  }
  -2 * object$loglik + k * nb_n_params(object)
}

#' @rdname nb-methods
#' @export
BIC.sceffects_nb <- function(object, ...) {
  check_dots_used(..., call_name = "BIC")
  -2 * object$loglik + log(object$n_obs) * nb_n_params(object)
}

#' @rdname nb-methods
#' @export
nobs.sceffects_nb <- function(object, ...) {
  check_dots_used(..., call_name = "nobs")
  object$n_obs
}

#' @rdname nb-methods
#' @export
anova.sceffects_nb <- function(object, ...) {
  others <- list(...)
  if (length(others) != 1L) {
    stop(sprintf("anova() compares two fits, anova(fit0, fit1), the first nested in the second: it was given %d.",
                 1L + length(others)), call. = FALSE)
  }
  fit0 <- object
  fit1 <- others[[1L]]
  if (!inherits(fit1, "sceffects_nb")) {
    stop("anova(fit0, fit1): the second fit must also be made by nb_regression().", call. = FALSE)
  }
  if (!identical(names(fit0$loglik), names(fit1$loglik)) || fit0$n_obs != fit1$n_obs) {
    stop("`anova()` needs two fits on the same genes and observations.", call. = FALSE)
  }
  df <- nb_n_params(fit1) - nb_n_params(fit0)
  if (df <= 0) stop("the second fit must have more parameters than the first (nested models).", call. = FALSE)
  lr <- 2 * (fit1$loglik - fit0$loglik)
  usable <- fit0$status %in% c(0L, 4L) & fit1$status %in% c(0L, 4L)
  lr[!usable] <- NA
  reason <- ifelse(usable, NA_character_,
                   paste0("not converged: ", ifelse(is.na(fit1$reason), fit0$reason, fit1$reason)))
  log_p <- nan_to_na(p_tail("chisq", pmax(lr, 0), df, lower_tail = FALSE, log_p = TRUE))
  p <- exp(log_p)
  tab <- data.frame(feature = names(fit0$loglik), estimate = lr / 2, statistic = lr, df = df,
                    p_value = p, log_p = log_p, fdr = fdr_bh(p), loglik_0 = fit0$loglik, loglik_1 = fit1$loglik,
                    reason = reason, stringsAsFactors = FALSE)
  results_table(tab, "negative binomial likelihood-ratio test",
              extra = list(estimate_label = "log-likelihood gain"))
}

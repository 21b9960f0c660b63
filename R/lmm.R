# Linear mixed models for many responses sharing one design (balances of a longitudinal
# table): the formula is parsed here into a fixed-effects design X, the random-effects
# columns Z of one grouping factor and the group codes; the core fits every response by
# profiled (RE)ML on per-group cross-products computed once (rs_lmm_fit).

#' Linear mixed models for many responses at once
#'
#' Fits the same linear mixed model, in lme4 syntax, to every row of `y`, as
#' `lme4::lmer()` would one response at a time, and tests the fixed effects as lmerTest
#' does. The design is shared by all responses, so it is factorised once per group and a
#' response costs only a few small matrix operations per optimiser step, whatever the
#' number of observations.
#'
#' The model is `y = X beta + Z b + e` with one grouping factor: a random intercept
#' `(1 | subject)`, correlated random intercept and slopes `(1 + time | subject)`, or
#' independent terms of the same factor (`(1 | subject) + (0 + time | subject)`, or
#' `(1 + time || subject)`);
#' `b ~ N(0, sigma^2 T T')` per group with `T` lower triangular (lme4's relative covariance
#' factor, parameters `theta`). Estimation is lme4's profiled REML (or ML), optimised per
#' response to the true optimum (projected Newton steps), so fixed effects, variance
#' components, the REML criterion and the log-likelihood equal lme4's at its optimum.
#' Degrees of freedom are lmerTest's Satterthwaite approximation (numerical Hessian of the
#' deviance in `(theta, sigma)` by the same Richardson scheme as numDeriv); `p_values = "z"`
#' gives Wald z-tests instead, as statsmodels' MixedLM (gneiss). A fit is *singular*, as
#' `lme4::isSingular()`, when a diagonal element of `T` is below 1e-4 (a variance component
#' at zero or a perfect correlation).
#'
#' Several grouping factors, crossed or nested (`(1 | site) + (1 | subject)`; lme4's
#' nesting `(1 | site/subject)` is expanded as lme4 does, to `(1 | site) +
#' (1 | subject:site)`), are fitted on the
#' dense random-effects design, at a cost that grows with the cube of the number of random
#' effects; one grouping factor is fitted group by group, at a cost independent of it.
#'
#' A formula without random terms (`~ ph + site`) is ordinary least squares per response
#' (gneiss's `ols`), equal to `lm()`: t-tests with the residual df, the table's `r_squared`
#' column, and in [lmm_fits()] `r_squared`, `adj_r_squared`, the leave-one-out error
#' `loo_mse` (PRESS / n) and logLik as `logLik.lm()` (REML or ML); see
#' [prediction_error()] for k-fold errors.
#'
#' @param x Responses (e.g. balances) in rows and samples in columns: a matrix,
#'   dgCMatrix, DelayedArray, SummarizedExperiment or ExpressionSet; a data.frame is read
#'   with samples in rows and responses in columns (gneiss's table layout), and a message
#'   says so.
#' @param formula One-sided formula in lme4 syntax, e.g. `~ time + treatment + (1 | patient)`;
#'   without random terms, a linear model (OLS).
#' @param data A data.frame with one row per sample (column of `x`); by default `colData(x)`
#'   for a SummarizedExperiment, `pData(x)` for an ExpressionSet. When both have sample names, rows are matched to `x`'s
#'   samples by name (as gneiss joins its table and metadata); otherwise by position.
#' @param REML Fit by REML (default, as `lmer()`) or maximum likelihood.
#' @param p_values `"satterthwaite"` (t-tests with lmerTest's df) or `"z"` (Wald z-tests).
#' @param assay Assay of a SummarizedExperiment.
#' @param threads Threads of the core (default `getOption("sceffects.threads", 2)`).
#' @param BPPARAM Optional BiocParallel backend: responses are split across its workers.
#' @return A results table (class `sceffects_lmm`), one row per response and fixed-effect
#'   term: `feature`, `term`, `estimate`, `std_error`, `statistic`, `df`, `p_value`,
#'   `log_p`, `fdr` (Benjamini-Hochberg within term), `converged`, `singular`, `reason`
#'   (why a row is NA: a response without residual variance, e.g. constant, has NA
#'   estimates and p-values and is not counted in the FDR). Methods: [coef()], `fixef()`, `ranef()`, [vcov()], [logLik()],
#'   [summary()], [predict()], [fitted()], [residuals()]; [lmm_fits()] gives variance
#'   components and fit statistics per response.
#' @export
#' @examples
#' set.seed(1)
#' data <- data.frame(subject = factor(rep(1:10, each = 4)), time = rep(0:3, 10))
#' y <- matrix(rnorm(3 * 40), 3, 40, dimnames = list(paste0("b", 1:3), NULL))
#' y <- sweep(y, 2, rnorm(10)[data$subject], `+`)
#' fit <- lmm_table(y, ~ time + (1 | subject), data)
#' fit
#' lmm_fits(fit)
lmm_table <- function(x, formula, data = NULL, REML = TRUE, p_values = c("satterthwaite", "z"),
                      assay = NULL, threads = NULL, BPPARAM = NULL) {
  lmm_run(x, formula, data, REML = REML, p_values = p_values, assay = assay, threads = threads,
          BPPARAM = BPPARAM)
}

# The arguments as lmm_table() names them; balance_lmm() passes its own names, so that its
# errors speak of `x` and `metadata`, the arguments its user gave.
lmm_arg_names <- list(y = "x", data = "data", rows = "responses")

lmm_run <- function(y, formula, data = NULL, REML = TRUE, p_values = c("satterthwaite", "z"),
                    assay = NULL, threads = NULL, BPPARAM = NULL, arg_names = lmm_arg_names) {
  p_values <- match_choice(p_values, "p_values")
  REML <- check_flag(REML, "REML")
  threads <- resolve_threads(threads)
  check_bpparam(BPPARAM)
  if (is.null(data)) data <- sample_metadata(y)
  if (is(data, "DataFrame")) data <- as.data.frame(data, optional = TRUE)
  if ((is.matrix(y) || is.data.frame(y)) && anyNA(y)) {
    stop(sprintf("`%s` contains NA values: the models need complete responses; remove or impute them.", arg_names$y),
         call. = FALSE)
  }
  src <- numeric_features(y, arg_names$y, assay = assay, frame = "columns")
  data <- align_samples(data, src$samples, arg_names)
  model <- lmm_model(formula, data, src$n_samples, arg_names)
  fit <- lmm_fit_rows(src, model, REML, p_values, threads, BPPARAM)
  lmm_results(fit, model, src, REML, p_values)
}

# Rows of `data` in the order of the samples of `y`, when both are named (as gneiss joins
# its table and metadata on sample ids).
align_samples <- function(data, samples, arg_names = lmm_arg_names) {
  if (!is.data.frame(data) || is.null(samples) || .row_names_info(data) <= 0L) return(data)
  if (identical(rownames(data), samples)) return(data)
  absent <- setdiff(samples, rownames(data))
  if (length(absent)) {
    stop(sprintf("`%s` has no row for sample%s %s of `%s` (rows are matched by name).", arg_names$data,
                 if (length(absent) > 1L) "s" else "", paste(utils::head(absent, 3L), collapse = ", "), arg_names$y),
         call. = FALSE)
  }
  data[samples, , drop = FALSE]
}

# Dense responses x samples of features `rows` (sparse and delayed input read in blocks).
lmm_responses <- function(src, rows = seq_len(src$n_features)) {
  m <- feature_rows(src, rows)
  if (!is.matrix(m)) m <- as.matrix(m)
  storage.mode(m) <- "double"
  m
}

# The model of a formula on `data`: X, the random-effect blocks (one per term, or per
# column of an uncorrelated term; ordered as lme4 does, by decreasing number of levels of
# their grouping factor), Z and group codes for the core, and what predict() needs.
# With one grouping factor the core works group by group; with several, on one dense Z
# whose blocks repeat per level.
lmm_model <- function(formula, data, n_samples, arg_names = lmm_arg_names) {
  parts <- split_lmm_formula(formula)
  if (!is.data.frame(data)) {
    stop(sprintf("`%s` must be a data.frame with one row per sample (column of `%s`).", arg_names$data, arg_names$y),
         call. = FALSE)
  }
  if (nrow(data) != n_samples) {
    stop(sprintf("`%s` has %d rows but `%s` has %d samples (columns); `%s` needs %s in rows (use t()).",
                 arg_names$data, nrow(data), arg_names$y, n_samples, arg_names$y, arg_names$rows), call. = FALSE)
  }
  vars <- unique(c(all.vars(parts$fixed), unlist(lapply(parts$random, function(r) c(all.vars(r$formula), all.vars(r$group))))))
  missing_vars <- setdiff(vars, names(data))
  if (length(missing_vars)) {
    stop(sprintf("`%s` has no column %s (used in `formula`).", arg_names$data, paste(missing_vars, collapse = ", ")),
         call. = FALSE)
  }
  has_na <- vars[vapply(vars, function(v) anyNA(data[[v]]), logical(1))]
  if (length(has_na)) {
    stop(sprintf("`%s` has missing values in %s.", arg_names$data, paste(has_na, collapse = ", ")), call. = FALSE)
  }
  fixed_frame <- stats::model.frame(parts$fixed, data)
  fixed_terms <- stats::terms(fixed_frame)
  x <- stats::model.matrix(fixed_terms, fixed_frame)
  rank <- qr(x)$rank
  if (rank < ncol(x)) {
    stop(sprintf("`formula` gives a rank-deficient fixed-effects design (%d columns, rank %d): drop collinear terms.",
                 ncol(x), rank), call. = FALSE)
  }
  if (n_samples <= ncol(x)) {
    stop(sprintf("`%s` has no more samples than fixed effects.", arg_names$y), call. = FALSE)
  }
  if (!length(parts$random)) return(ols_model(x, fixed_terms, fixed_frame, formula))
  blocks <- random_blocks(parts$random, data, environment(formula))
  groups <- unique(vapply(blocks, `[[`, "", "group_name"))
  for (b in blocks) {
    if (length(b$levels) < 2L) stop(sprintf("`formula`'s grouping factor %s must have at least 2 levels.", b$group_name), call. = FALSE)
  }
  for (g in groups) {
    names_g <- unlist(lapply(blocks[vapply(blocks, `[[`, "", "group_name") == g], `[[`, "names"))
    if (anyDuplicated(names_g)) {
      stop(sprintf("`formula` repeats the random effect %s of %s.", names_g[anyDuplicated(names_g)], g), call. = FALSE)
    }
  }
  n_re <- sum(vapply(blocks, function(b) length(b$levels) * length(b$names), numeric(1)))
  if (n_samples <= n_re) {
    stop(sprintf("%d observations cannot identify %d random effects: the model is not identifiable.",
                 n_samples, n_re), call. = FALSE)
  }
  one_factor <- length(groups) == 1L
  fitted_blocks <- lapply(blocks, function(b) block_z(b, data, expand = FALSE))
  zs <- if (one_factor) fitted_blocks else lapply(blocks, function(b) block_z(b, data, expand = TRUE))
  z <- do.call(cbind, lapply(zs, `[[`, "z"))
  storage.mode(x) <- "double"
  storage.mode(z) <- "double"
  sizes <- vapply(blocks, function(b) length(b$names), integer(1))
  list(x = x, z = z, blocks = blocks, fitted_blocks = fitted_blocks, one_factor = one_factor, sizes = sizes,
       copies = if (one_factor) rep(1L, length(blocks)) else vapply(blocks, function(b) length(b$levels), integer(1)),
       group = if (one_factor) zs[[1L]]$group else rep(1L, n_samples),
       n_groups = if (one_factor) length(blocks[[1L]]$levels) else 1L,
       fixed_terms = fixed_terms, fixed_xlev = stats::.getXlevels(fixed_terms, fixed_frame), formula = formula)
}

# A formula without random terms: ordinary least squares (gneiss's `ols`), in the shape of
# a mixed model without random effects, so that the results and methods are shared.
ols_model <- function(x, fixed_terms, fixed_frame, formula) {
  storage.mode(x) <- "double"
  list(x = x, ols = TRUE, intercept = attr(fixed_terms, "intercept") == 1L, blocks = list(),
       fitted_blocks = list(), one_factor = FALSE, sizes = integer(), copies = integer(),
       fixed_terms = fixed_terms, fixed_xlev = stats::.getXlevels(fixed_terms, fixed_frame), formula = formula)
}

# The random-effect blocks of the random terms: model terms, columns, grouping factor.
random_blocks <- function(random, data, env) {
  blocks <- list()
  for (r in random) {
    frame <- stats::model.frame(r$formula, data)
    tt <- stats::terms(frame)
    z_names <- colnames(stats::model.matrix(tt, frame))
    group <- droplevels(factor(group_values(r$group, data, env)))
    base <- list(terms = tt, xlev = stats::.getXlevels(tt, frame), group_expr = r$group,
                 group_name = deparse(r$group), levels = levels(group))
    cols <- if (r$uncorrelated) as.list(seq_along(z_names)) else list(seq_along(z_names))
    for (cc in cols) blocks[[length(blocks) + 1L]] <- c(base, list(cols = cc, names = z_names[cc]))
  }
  blocks[order(-vapply(blocks, function(b) length(b$levels), numeric(1)))]
}

# A block's Z columns on `data` and its group codes (NA for levels not in the fit); with
# `expand`, the columns repeated level by level (the dense Z of several factors).
block_z <- function(block, data, expand) {
  tt <- stats::delete.response(block$terms)
  z <- stats::model.matrix(tt, stats::model.frame(tt, data, xlev = block$xlev))[, block$cols, drop = FALSE]
  group <- match(as.character(group_values(block$group_expr, data, environment(block$terms))), block$levels)
  if (expand) {
    q <- ncol(z)
    full <- matrix(0, nrow(z), length(block$levels) * q)
    for (a in seq_len(q)) full[cbind(seq_len(nrow(z)), (group - 1L) * q + a)] <- z[, a]
    z <- full
  }
  list(z = z, group = group)
}

# Columns of the core's random-effect vector holding block `k`'s effects: a matrix levels x
# block columns.
block_ranef_columns <- function(model, k) {
  q_k <- model$sizes[k]
  m_k <- length(model$blocks[[k]]$levels)
  if (model$one_factor) {
    q <- sum(model$sizes)
    offset <- sum(model$sizes[seq_len(k - 1L)])
    outer((seq_len(m_k) - 1L) * q + offset, seq_len(q_k), `+`)
  } else {
    offset <- sum((model$sizes * model$copies)[seq_len(k - 1L)])
    outer((seq_len(m_k) - 1L) * q_k + offset, seq_len(q_k), `+`)
  }
}

# Splits `~ fixed + (random | group) + ...` into the fixed formula and the random terms.
split_lmm_formula <- function(formula) {
  if (!inherits(formula, "formula")) stop("`formula` must be a formula such as ~ time + (1 | subject).", call. = FALSE)
  if (length(formula) == 3L) {
    stop("`formula` must be one-sided (~ time + (1 | subject)): the responses are the rows of `y`.", call. = FALSE)
  }
  split_plus <- function(e) {
    if (is.call(e) && identical(e[[1L]], as.name("+")) && length(e) == 3L) c(split_plus(e[[2L]]), split_plus(e[[3L]])) else list(e)
  }
  is_paren <- function(e) is.call(e) && identical(e[[1L]], as.name("("))
  parts <- split_plus(formula[[2L]])
  bars <- vapply(parts, function(e) is_paren(e) && is.call(e[[2L]]) && deparse(e[[2L]][[1L]]) %in% c("|", "||"), logical(1))
  fixed <- parts[!bars]
  rhs <- if (length(fixed)) Reduce(function(a, b) call("+", a, b), fixed) else 1
  env <- environment(formula)
  random <- unlist(lapply(parts[bars], function(e) {
    b <- e[[2L]]
    lapply(expand_nesting(b[[3L]]), function(g) {
      check_grouping_expr(g)
      list(formula = stats::as.formula(call("~", b[[2L]]), env), group = g,
           uncorrelated = identical(b[[1L]], as.name("||")))
    })
  }), recursive = FALSE)
  list(fixed = stats::as.formula(call("~", rhs), env), random = if (is.null(random)) list() else random)
}

# lme4's nesting operator as lme4 expands it: `a/b` is `a` and `b:a`, `a/b/c` adds `c:(b:a)`
# (the interaction named innermost factor first, as lme4 names it).
expand_nesting <- function(g) {
  if (!(is.call(g) && identical(g[[1L]], as.name("/")))) return(list(g))
  outer <- expand_nesting(g[[2L]])
  c(outer, list(call(":", g[[3L]], outer[[length(outer)]])))
}

# A grouping factor must be a column or an interaction `a:b` (nesting `a/b` is expanded
# before); other expressions, which would be evaluated as arithmetic, are refused.
check_grouping_expr <- function(g) {
  if (is.name(g)) return(invisible())
  if (is.call(g) && identical(g[[1L]], as.name(":"))) {
    for (part in as.list(g)[-1L]) check_grouping_expr(part)
    return(invisible())
  }
  stop(sprintf("`formula`: the grouping factor %s must be a column of the data (or an interaction a:b of columns).",
               deparse1(g)), call. = FALSE)
}

# Values of a grouping expression: a column, or the interaction of columns `a:b` (levels
# "a:b", as lme4 names them), whatever the columns' types.
group_values <- function(g, data, env) {
  if (is.call(g) && identical(g[[1L]], as.name(":"))) {
    parts <- lapply(as.list(g)[-1L], function(e) as.character(group_values(e, data, env)))
    return(do.call(paste, c(parts, sep = ":")))
  }
  eval(g, data, env)
}

# Runs the core on the responses of `src`, in chunks (progress bar, Ctrl-C between
# chunks) or across BiocParallel workers.
lmm_fit_rows <- function(src, model, REML, p_values, threads, BPPARAM) {
  one <- function(rows, src) {
    if (isTRUE(model$ols)) return(ols_fit(lmm_responses(src, rows), model, REML, threads))
    rs_lmm_fit(lmm_responses(src, rows), model$x, model$z, as.integer(model$group), model$n_groups,
               model$sizes, model$copies, REML, p_values == "satterthwaite", threads)
  }
  chunks <- plan_chunks(src$n_features, block_size = 2000L, BPPARAM = BPPARAM,
                        delayed = src$kind == "delayed", n_samples = src$n_samples,
                        chunk_rows = src$recipe$chunk_rows)
  label <- if (isTRUE(model$ols)) "Fitting linear models" else "Fitting mixed models"
  parts <- run_chunks(chunks, one, BPPARAM, label, src = src)
  bind <- function(name) {
    v <- lapply(parts, `[[`, name)
    if (is.matrix(v[[1L]])) do.call(rbind, v) else unlist(v)
  }
  stats::setNames(lapply(names(parts[[1L]]), bind), names(parts[[1L]]))
}

# The core's OLS fit of responses `y` with the fields of a mixed model's (no theta nor
# random effects; always converged).
ols_fit <- function(y, model, REML, threads) {
  fit <- rs_ols_fit(y, model$x, model$intercept, REML, threads)
  n <- nrow(y)
  # A response the design fits exactly (e.g. constant) has residuals at rounding level.
  scale <- apply(abs(y), 1L, max)
  status <- ifelse(is.finite(fit$sigma) & fit$sigma > 1e-10 * scale, 0L, 1L)
  c(fit, list(theta = matrix(0, n, 0L), ranef = matrix(0, n, 0L), converged = rep(TRUE, n),
              iterations = integer(n), status = status))
}

# Names of theta in lme4's order: blocks in turn, each block's lower triangle column by
# column.
theta_names <- function(blocks) {
  unlist(lapply(blocks, function(b) {
    z_names <- b$names
    q <- length(z_names)
    out <- character()
    for (c in seq_len(q)) {
      for (r in c:q) {
        out <- c(out, if (r == c) paste(b$group_name, z_names[r], sep = ".") else paste(b$group_name, z_names[r], z_names[c], sep = "."))
      }
    }
    out
  }))
}

lmm_results <- function(fit, model, src, REML, p_values) {
  features <- src$names
  terms <- colnames(model$x)
  p <- length(terms)
  n_feat <- length(features)
  diag_theta <- unlist(lapply(model$sizes, function(size) unlist(lapply(seq_len(size), function(c) c(TRUE, rep(FALSE, size - c))))))
  ols <- isTRUE(model$ols)
  singular <- if (ols) logical(n_feat) else apply(fit$theta[, diag_theta, drop = FALSE] < 1e-4, 1L, any)
  status <- fit$status
  # A response without residual variance (e.g. constant) has no test: the core may still
  # report a p-value of 1, which would enter the FDR as a test.
  status[status == 0L & !(is.finite(fit$sigma) & fit$sigma > 0)] <- 1L
  reason <- reason_of("lmm", status)
  no_fit <- status != 0L
  for (nm in c("estimate", "std_error", "df", "log_p", "log_p_z")) {
    if (is.matrix(fit[[nm]])) fit[[nm]][no_fit, ] <- NA_real_
  }
  if (ols) fit$r_squared[no_fit] <- fit$adj_r_squared[no_fit] <- fit$loo_mse[no_fit] <- NA_real_
  fit$status <- status
  colnames(fit$estimate) <- colnames(fit$std_error) <- colnames(fit$df) <- terms
  colnames(fit$theta) <- theta_names(model$blocks)
  rownames(fit$estimate) <- rownames(fit$theta) <- features
  satt <- p_values == "satterthwaite"
  log_p <- if (satt) fit$log_p else fit$log_p_z
  df <- if (satt) fit$df else matrix(Inf, n_feat, p)
  out <- data.frame(
    feature = rep(features, times = p), term = rep(terms, each = n_feat),
    estimate = c(fit$estimate), std_error = c(fit$std_error),
    statistic = c(fit$estimate / fit$std_error), df = c(df), log_p = c(log_p),
    converged = rep(as.logical(fit$converged), times = p), singular = rep(singular & status == 0L, times = p),
    reason = rep(reason, times = p), stringsAsFactors = FALSE)
  if (ols) {
    out$singular <- NULL
    out$r_squared <- rep(nan_to_na(fit$r_squared), times = p)
    out <- out[c(setdiff(names(out), "reason"), "reason")]
  }
  out <- out[order(match(out$feature, features)), , drop = FALSE]
  method <- if (ols) {
    sprintf("linear model (OLS, %s)", if (satt) "t with residual df" else "Wald z")
  } else {
    sprintf("linear mixed model (%s, %s)", if (REML) "REML" else "ML", if (satt) "Satterthwaite t" else "Wald z")
  }
  fit$singular <- singular
  res <- results_table(out, method, fdr_by = "term", extra = list(
    lmm = list(fit = fit, model = model, src = src, REML = REML, p_values = p_values, features = features),
    estimate_label = "coefficient"))
  class(res) <- c("sceffects_lmm", class(res))
  res
}

check_lmm <- function(object) {
  if (!inherits(object, "sceffects_lmm")) stop("`object` must be the result of lmm_table().", call. = FALSE)
  attr(object, "lmm")
}

#' Variance components and fit statistics of mixed models
#'
#' One row per response of an [lmm_table()] fit: the residual standard deviation `sigma`,
#' the standard deviations of the random effects and their correlations (as
#' `lme4::VarCorr()`), `theta` (lme4's relative covariance factor), `logLik`, the REML
#' criterion (`REMLcrit`, REML fits) or deviance (ML fits), convergence, iterations and
#' the singular-fit flag.
#'
#' @param object Result of [lmm_table()].
#' @return A data.frame.
#' @export
#' @examples
#' set.seed(2)
#' data <- data.frame(subject = factor(rep(1:8, each = 5)), time = rep(0:4, 8))
#' y <- matrix(rnorm(2 * 40), 2, 40, dimnames = list(c("a", "b"), NULL))
#' lmm_fits(lmm_table(y, ~ time + (1 + time | subject), data))
lmm_fits <- function(object) {
  s <- check_lmm(object)
  fit <- s$fit
  if (isTRUE(s$model$ols)) return(ols_fits(s))
  vc <- do.call(cbind, lapply(block_variances(s$model$blocks, s$model$sizes), function(b) {
    v <- t(vapply(seq_along(s$features), function(i) random_sd_cor(fit$theta[i, b$theta], fit$sigma[i], b$size),
                  numeric(length(b$labels))))
    if (length(b$labels) == 1L) v <- matrix(v, ncol = 1L)
    colnames(v) <- b$labels
    v
  }))
  crit <- nan_to_na(fit$criterion)
  out <- data.frame(feature = s$features, sigma = nan_to_na(fit$sigma), nan_to_na(vc), check.names = FALSE)
  out <- cbind(out, nan_to_na(fit$theta))
  names(out)[(ncol(out) - ncol(fit$theta) + 1L):ncol(out)] <- paste0("theta_", colnames(fit$theta))
  out$logLik <- -crit / 2
  if (s$REML) out$REMLcrit <- crit else out$deviance <- crit
  out$converged <- as.logical(fit$converged)
  out$iterations <- fit$iterations
  out$singular <- fit$singular & fit$status == 0L
  rownames(out) <- NULL
  out
}

# lmm_fits() of an OLS fit: sigma, R², adjusted R², the leave-one-out prediction error
# (PRESS / n) and logLik / REML criterion as logLik.lm().
ols_fits <- function(s) {
  fit <- s$fit
  crit <- nan_to_na(fit$criterion)
  out <- data.frame(feature = s$features, sigma = nan_to_na(fit$sigma), r_squared = nan_to_na(fit$r_squared),
                    adj_r_squared = nan_to_na(fit$adj_r_squared), loo_mse = nan_to_na(fit$loo_mse),
                    logLik = -crit / 2)
  if (s$REML) out$REMLcrit <- crit else out$deviance <- crit
  out$converged <- as.logical(fit$converged)
  out
}

# For each block: its theta indices, size and the labels of its standard deviations and
# correlations (as lme4's VarCorr: sd per column, then correlations by column pairs).
block_variances <- function(blocks, sizes) {
  ends <- cumsum(sizes * (sizes + 1L) / 2L)
  lapply(seq_along(blocks), function(k) {
    b <- blocks[[k]]
    q <- sizes[k]
    pairs <- if (q > 1L) utils::combn(q, 2L) else matrix(integer(), 2L, 0L)
    list(theta = (ends[k] - q * (q + 1L) / 2L + 1L):ends[k], size = q,
         labels = c(paste0("sd_", b$group_name, ".", b$names),
                    if (q > 1L) paste0("cor_", b$group_name, ".", b$names[pairs[1L, ]], ".", b$names[pairs[2L, ]])))
  })
}

# Standard deviations of a block's random effects, then their correlations:
# sigma^2 T T' with T lower triangular filled by theta.
random_sd_cor <- function(theta, sigma, q) {
  t_mat <- matrix(0, q, q)
  t_mat[lower.tri(t_mat, diag = TRUE)] <- theta
  cov <- sigma^2 * tcrossprod(t_mat)
  sds <- sqrt(diag(cov))
  cors <- if (q > 1L) {
    pairs <- utils::combn(q, 2L)
    cov[cbind(pairs[1L, ], pairs[2L, ])] / (sds[pairs[1L, ]] * sds[pairs[2L, ]])
  } else numeric()
  c(sds, cors)
}

#' @describeIn lmm_table Fixed effects, responses x terms.
#' @param object Result of `lmm_table()`.
#' @param ... Unused.
#' @export
coef.sceffects_lmm <- function(object, ...) {
  check_dots_used(..., call_name = "coef")
  fe <- check_lmm(object)$fit$estimate
  fe[] <- nan_to_na(fe)
  fe
}

#' @describeIn lmm_table Fixed effects (as `coef()`), for lme4 users.
#' @exportS3Method nlme::fixef
fixef.sceffects_lmm <- function(object, ...) {
  check_dots_used(..., call_name = "fixef")
  coef.sceffects_lmm(object)
}

#' @describeIn lmm_table Conditional modes of the random effects: a list with, for each
#'   grouping factor, an array levels x random-effect columns x responses (as
#'   `lme4::ranef()`'s list, one response per slice).
#' @exportS3Method nlme::ranef
ranef.sceffects_lmm <- function(object, ...) {
  check_dots_used(..., call_name = "ranef")
  s <- check_lmm(object)
  model <- s$model
  group_names <- vapply(model$blocks, `[[`, "", "group_name")
  out <- lapply(unique(group_names), function(g) {
    ks <- which(group_names == g)
    levels <- model$blocks[[ks[1L]]]$levels
    cols <- do.call(cbind, lapply(ks, function(k) block_ranef_columns(model, k)))
    names <- unlist(lapply(ks, function(k) model$blocks[[k]]$names))
    a <- array(nan_to_na(t(s$fit$ranef[, c(cols), drop = FALSE])), c(length(levels), length(names), length(s$features)))
    dimnames(a) <- list(levels, names, s$features)
    a
  })
  stats::setNames(out, unique(group_names))
}

#' @describeIn lmm_table Covariance matrix of the fixed effects of one response.
#' @param feature Name or index of one response.
#' @export
vcov.sceffects_lmm <- function(object, feature = 1L, ...) {
  check_dots_used(..., call_name = "vcov")
  s <- check_lmm(object)
  if (is.numeric(feature) && length(feature) == 1L && is.finite(feature) && feature != round(feature)) {
    stop("`feature` must name one response of the fit, or be a whole-number index.", call. = FALSE)
  }
  i <- if (is.character(feature)) match(feature, s$features) else feature
  if (length(i) != 1L || is.na(i) || i < 1L || i > length(s$features)) {
    stop("`feature` must name one response of the fit.", call. = FALSE)
  }
  terms <- colnames(s$model$x)
  matrix(nan_to_na(s$fit$vcov[i, ]), length(terms), dimnames = list(terms, terms))
}

#' @describeIn lmm_table Log-likelihood (REML or ML) of each response.
#' @export
logLik.sceffects_lmm <- function(object, ...) {
  check_dots_used(..., call_name = "logLik")
  s <- check_lmm(object)
  stats::setNames(-nan_to_na(s$fit$criterion) / 2, s$features)
}

#' @describeIn lmm_table Per-term summary: responses tested, significant (FDR < 0.05),
#'   singular and unconverged fits; with `contrast`, the table of [contrast()] instead.
#' @param contrast `NULL`, or hypotheses about the fixed effects as in [contrast()].
#' @export
summary.sceffects_lmm <- function(object, contrast = NULL, ...) {
  check_dots_used(..., call_name = "summary")
  if (!is.null(contrast)) return(contrast.sceffects_lmm(object, contrast))
  s <- check_lmm(object)
  df <- as.data.frame(object)
  terms <- colnames(s$model$x)
  by_term <- do.call(rbind, lapply(terms, function(t) {
    r <- df[df$term == t, , drop = FALSE]
    data.frame(term = t, n_responses = nrow(r), n_fitted = sum(!is.na(r$estimate)),
               n_fdr_05 = sum(r$fdr < 0.05, na.rm = TRUE), median_estimate = stats::median(r$estimate, na.rm = TRUE))
  }))
  structure(list(method = attr(object, "method"), formula = s$model$formula, terms = by_term,
                 n_singular = sum(s$fit$singular & s$fit$status == 0L),
                 n_unconverged = sum(!s$fit$converged & s$fit$status == 0L),
                 n_failed = sum(s$fit$status != 0L), fits = lmm_fits(object)),
            class = "summary_sceffects_lmm")
}

#' @export
print.summary_sceffects_lmm <- function(x, ...) {
  cat(x$method, "\n", sep = "")
  cat("formula: ", deparse(x$formula), "\n", sep = "")
  cat(sprintf("%d responses; %d singular, %d not converged, %d without a fit\n",
              nrow(x$fits), x$n_singular, x$n_unconverged, x$n_failed))
  print(x$terms, row.names = FALSE, digits = 4)
  invisible(x)
}

#' @describeIn lmm_table Predictions, responses x samples: for the fitted samples by
#'   default, or for `newdata`; `re.form = NA` leaves out the random effects (population
#'   level), and groups not in the fit get none.
#' @param newdata Optional data.frame of new samples, with the formula's columns.
#' @param re.form `NULL` (include the random effects) or `NA` (fixed effects only).
#' @export
predict.sceffects_lmm <- function(object, newdata = NULL, re.form = NULL, ...) {
  check_dots_used(..., call_name = "predict")
  s <- check_lmm(object)
  m <- s$model
  if (!is.null(re.form) && !(length(re.form) == 1L && is.na(re.form))) {
    stop("`re.form` must be NULL (with the random effects) or NA (fixed effects only).", call. = FALSE)
  }
  population <- length(re.form) == 1L && is.na(re.form)
  data <- newdata
  if (is.null(newdata)) {
    x <- m$x
  } else {
    newdata <- lmm_newdata(m, newdata, population)
    data <- newdata
    frame <- stats::model.frame(stats::delete.response(m$fixed_terms), newdata, xlev = m$fixed_xlev)
    x <- stats::model.matrix(stats::delete.response(m$fixed_terms), frame)
  }
  beta <- s$fit$estimate
  out <- beta %*% t(x)
  if (!population) {
    for (k in seq_along(m$blocks)) {
      zk <- if (is.null(data)) m$fitted_blocks[[k]] else block_z(m$blocks[[k]], data, expand = FALSE)
      out <- out + random_part(s$fit$ranef, zk$z, zk$group, block_ranef_columns(m, k))
    }
  }
  dimnames(out) <- list(s$features, if (is.null(newdata)) s$src$samples else rownames(newdata))
  out
}

# `newdata` of predict(): a data.frame with every column the prediction uses (the
# grouping columns too, unless re.form = NA).
lmm_newdata <- function(m, newdata, population) {
  if (is(newdata, "DataFrame")) newdata <- as.data.frame(newdata, optional = TRUE)
  if (!is.data.frame(newdata)) stop("`newdata` must be a data.frame with the formula's columns.", call. = FALSE)
  vars <- all.vars(stats::delete.response(m$fixed_terms))
  if (!population) {
    vars <- c(vars, unlist(lapply(m$blocks, function(b) c(all.vars(b$terms), all.vars(b$group_expr)))))
  }
  absent <- setdiff(unique(vars), names(newdata))
  if (length(absent)) {
    stop(sprintf("`newdata` has no column %s (used in the model's formula)%s.", name_list(absent),
                 if (population) "" else "; for predictions without the random effects use re.form = NA"),
         call. = FALSE)
  }
  newdata
}

# A block's Z b for every response (rows) and sample (columns), `columns` locating its
# effects (levels x block columns); unknown groups (NA) contribute 0.
random_part <- function(ranef, z, group, columns) {
  out <- matrix(0, nrow(ranef), nrow(z))
  known <- which(!is.na(group))
  for (a in seq_len(ncol(z))) {
    cols <- columns[group[known], a]
    out[, known] <- out[, known] + ranef[, cols, drop = FALSE] * rep(z[known, a], each = nrow(ranef))
  }
  out
}

#' @describeIn lmm_table Fitted values (with the random effects), responses x samples.
#' @export
fitted.sceffects_lmm <- function(object, ...) {
  check_dots_used(..., call_name = "fitted")
  predict.sceffects_lmm(object)
}

#' @describeIn lmm_table Residuals `y - fitted`, responses x samples.
#' @export
residuals.sceffects_lmm <- function(object, ...) {
  check_dots_used(..., call_name = "residuals")
  s <- check_lmm(object)
  y <- lmm_responses(s$src)
  y - predict.sceffects_lmm(object)
}

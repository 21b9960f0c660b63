# Linear hypotheses of per-feature fits: one mechanism for every fit that keeps its
# coefficients and their covariance per feature. A contrast (numeric vector, matrix or
# character expression of coefficient names) is turned into a weights matrix L (one row
# per hypothesis) once; each feature's estimate L b and variance L V L' are then a few
# matrix products over the stored covariances, all features at once.

#' Linear hypotheses (contrasts) of per-feature fits
#'
#' Tests `L b = rhs` for every feature of a fit, where `b` are the feature's coefficients:
#' the estimate is `L b - rhs`, its standard error `sqrt(L V L')` with `V` the fit's
#' covariance of the coefficients (as `vcov()`), and the statistic their ratio. This is
#' `multcomp::glht()` per feature, or lmerTest's `contest1D()` for mixed models, for all
#' features at once.
#'
#' A contrast is given as
#' * a numeric vector: one weight per coefficient, either named by coefficient (names not
#'   given weigh 0) or unnamed in coefficient order (`rownames(coef(fit))`);
#' * a numeric matrix: one hypothesis per row, columns as above (named by coefficient, or
#'   all coefficients in order); each row is tested on its own, and with `joint = TRUE`
#'   also all rows together;
#' * a character vector of expressions of coefficient names, one hypothesis each, such as
#'   `"doseHigh - doseLow"`, `"(doseHigh + doseLow) / 2"` or `"b - a = 0"` (a right-hand
#'   side other than 0 is subtracted). Names that are not syntactic R names, such as
#'   `(Intercept)` or `dose:batchb`, may be written as they are or in backquotes. The
#'   names of the vector, or else the expressions, label the hypotheses.
#'
#' **Negative binomial fits** ([nb_regression()]): `component` chooses the coefficients,
#' `"mean"` (log mean) or `"dispersion"` (log size); with `"both"` the coefficients are
#' named as in `vcov()`, `"mean:dose"`, `"dispersion:batchb"`. Tests are Wald z-tests on
#' the observed information (`df` is `Inf`).
#'
#' **Mixed models** ([lmm_table()]): t-tests with lmerTest's Satterthwaite df for the
#' contrast, `2 (L V L')^2 / (g' A g)`, `g` the gradient of `L V L'` in the variance
#' parameters and `A` their covariance (`lmerTest::contest1D()`); Wald z-tests (`df` Inf)
#' for a fit with `p_values = "z"`. The fit does not keep each response's `A` and
#' gradient, so the df come from the core by one more fit of the same responses on the
#' reparametrised design `X M^-1` (the first rows of `M` are the contrast's rows, which
#' makes `L b` coefficients of the refit: the variance parameters, their covariance and
#' hence the df are those of the original model); one refit per set of linearly
#' independent rows (none for a row that weighs one coefficient, whose df the fit has).
#'
#' Difference-in-differences tables ([did_table()] and friends) are not supported: they
#' keep one coefficient per feature and no covariance.
#'
#' With `joint = TRUE` and a contrast of several linearly independent rows, one more row
#' per feature (`contrast` = `"joint"`) gives the Wald chi-square `b' (L V L')^-1 b` of all
#' rows together on `df` = the number of rows (for mixed models too: an asymptotic test,
#' not lmerTest's F).
#'
#' @param fit A fit: an [nb_regression()] fit, or an [lmm_table()] or [balance_lmm()] result.
#' @param contrast The hypotheses: a numeric vector, a numeric matrix or a character
#'   vector of expressions (see Details).
#' @param component For NB fits: `"mean"`, `"dispersion"` or `"both"`.
#' @param joint Also test all rows of the contrast together (Wald chi-square).
#' @param threads Threads of the core refit of a mixed model (Satterthwaite df).
#' @param ... Unused (an unknown argument is an error).
#' @return A results table with one row per feature and hypothesis (hypothesis by
#'   hypothesis): `feature`, `contrast` (the hypothesis' label), `estimate`, `std_error`,
#'   `statistic` (z, t or, for `"joint"`, chi-square), `df`, `p_value`, `log_p` (natural
#'   log of `p_value`), `fdr` (Benjamini-Hochberg within each hypothesis) and `reason` (why
#'   a row is NA: the feature's fit). The weights are in `attr(result, "weights")`.
#' @export
#' @examples
#' set.seed(1)
#' cells <- data.frame(dose = factor(rep(c("none", "low", "high"), 100),
#'                                   levels = c("none", "low", "high")))
#' mu <- exp(1 + 0.5 * (cells$dose == "high"))
#' counts <- t(replicate(10, rnbinom(300, size = 4, mu = mu)))
#' rownames(counts) <- paste0("gene", 1:10)
#' fit <- nb_regression(counts, mean = ~ dose, data = cells)
#' contrast(fit, "dosehigh - doselow")
#' contrast(fit, rbind(high_vs_low = c(0, -1, 1), low = c(0, 1, 0)), joint = TRUE)
contrast <- function(fit, contrast, ...) {
  UseMethod("contrast")
}

#' @rdname contrast
#' @export
contrast.default <- function(fit, contrast, ...) {
  stop(sprintf("`fit` must be an nb_regression() fit or an lmm_table() result, not %s (difference-in-differences tables keep no covariance to test contrasts with).",
               class(fit)[1L]), call. = FALSE)
}

#' @rdname contrast
#' @export
contrast.sceffects_nb <- function(fit, contrast, component = c("mean", "dispersion", "both"),
                                  joint = FALSE, ...) {
  check_dots_used(..., call_name = "contrast")
  joint <- check_flag(joint, "joint")
  component <- nb_component(component, c("mean", "dispersion", "both"))
  parts <- nb_contrast_parts(fit, component)
  weights <- contrast_weights(contrast, rownames(parts$coef))
  stats <- contrast_wald(weights, parts$coef, parts$vcov)
  contrast_table(stats, weights, names(fit$loglik), df = NULL, reason = fit$reason, joint = joint,
                 method = sprintf("negative binomial regression contrast (%s, Wald z)", component))
}

# Coefficients (terms x genes) and covariances (terms^2 x genes, column-major per gene)
# of one component of an NB fit, or of both with the names of vcov().
nb_contrast_parts <- function(fit, component) {
  beta <- fit$coefficients$mean
  gamma <- fit$coefficients$dispersion
  k <- nrow(beta) + nrow(gamma)
  idx <- switch(component, mean = seq_len(nrow(beta)), dispersion = nrow(beta) + seq_len(nrow(gamma)),
                both = seq_len(k))
  coef <- switch(component, mean = beta, dispersion = gamma, both = {
    b <- rbind(beta, gamma)
    rownames(b) <- c(paste0("mean:", rownames(beta)), paste0("dispersion:", rownames(gamma)))
    b
  })
  list(coef = coef, vcov = fit$vcov[c(outer(idx, (idx - 1L) * k, `+`)), , drop = FALSE])
}

#' @rdname contrast
#' @export
contrast.sceffects_lmm <- function(fit, contrast, joint = FALSE, threads = NULL, ...) {
  check_dots_used(..., call_name = "contrast")
  joint <- check_flag(joint, "joint")
  s <- check_lmm(fit)
  weights <- contrast_weights(contrast, colnames(s$model$x))
  stats <- contrast_wald(weights, t(nan_to_na(s$fit$estimate)), t(nan_to_na(s$fit$vcov)))
  satt <- identical(s$p_values, "satterthwaite") || grepl("Satterthwaite", attr(fit, "method"), fixed = TRUE)
  df <- if (satt) lmm_contrast_df(s, weights, resolve_threads(threads)) else NULL
  contrast_table(stats, weights, s$features, df = df, reason = c(NA, "no residual variance", "fit failed")[s$fit$status + 1L],
                 joint = joint, method = sprintf("linear mixed model contrast (%s)",
                                                  if (satt) "Satterthwaite t" else "Wald z"))
}

# Satterthwaite df of each row of `weights` (hypotheses x features): the core refits the
# responses with the design X M^-1, whose first coefficients are the rows' L b, and its
# per-coefficient df are then the contrasts' (see ?contrast). Rows are refitted in sets of
# linearly independent rows, each completed to an invertible M by an orthonormal basis of
# the complement of its row space.
lmm_contrast_df <- function(s, weights, threads) {
  model <- s$model
  df <- matrix(NA_real_, nrow(weights), length(s$features))
  # A multiple of one coefficient has that coefficient's df: no refit needed.
  single <- rowSums(weights != 0) == 1L
  for (h in which(single)) df[h, ] <- s$fit$df[, which(weights[h, ] != 0)]
  for (set in independent_sets(weights[!single, , drop = FALSE])) {
    if (!length(set)) next
    set <- which(!single)[set]
    l <- weights[set, , drop = FALSE]
    m <- rbind(l, complement_rows(l))
    refit_model <- model
    refit_model$x <- model$x %*% solve(m)
    refit <- lmm_fit_rows(s$src, refit_model, s$REML, "satterthwaite", threads, NULL)
    df[set, ] <- t(refit$df[, seq_along(set), drop = FALSE])
  }
  df[, s$fit$status != 0L] <- NA_real_
  nan_to_na(df)
}

# Row indices of `weights` split greedily into sets of linearly independent rows.
independent_sets <- function(weights) {
  if (nrow(weights) == 0L) return(list())
  sets <- list()
  current <- integer()
  for (i in seq_len(nrow(weights))) {
    trial <- c(current, i)
    if (qr(t(weights[trial, , drop = FALSE]))$rank == length(trial)) {
      current <- trial
    } else {
      sets[[length(sets) + 1L]] <- current
      current <- i
    }
  }
  c(sets, list(current))
}

# Rows completing the independent rows `l` to a basis: an orthonormal basis of the
# orthogonal complement of their span.
complement_rows <- function(l) {
  k <- nrow(l)
  p <- ncol(l)
  if (k == p) return(matrix(0, 0L, p))
  q <- qr.Q(qr(t(l)), complete = TRUE)
  t(q[, (k + 1L):p, drop = FALSE])
}

# Estimates (hypotheses x features), their variances and, for the joint test, every
# feature's L V L' (hypotheses^2 x features): products with (L kron L) of the stored
# covariances, vec(L V L') = (L kron L) vec(V).
contrast_wald <- function(weights, coef, vcov) {
  rhs <- attr(weights, "rhs")
  estimate <- weights %*% coef - rhs
  cross <- kronecker(weights, weights) %*% vcov
  h <- nrow(weights)
  diag_rows <- (seq_len(h) - 1L) * h + seq_len(h)
  variance <- cross[diag_rows, , drop = FALSE]
  list(estimate = estimate, variance = variance, cross = cross)
}

# The results table: one block of features per hypothesis, then the joint test.
contrast_table <- function(stats, weights, features, df, reason, joint, method) {
  labels <- rownames(weights)
  n_feat <- length(features)
  tables <- lapply(seq_along(labels), function(h) {
    est <- stats$estimate[h, ]
    se <- sqrt(stats$variance[h, ])
    z <- est / se
    d <- if (is.null(df)) ifelse(is.na(z), NA_real_, Inf) else df[h, ]
    log_p <- nan_to_na(log(2) + if (is.null(df)) p_tail("norm", -abs(z), log_p = TRUE) else
      p_tail("t", -abs(z), d, log_p = TRUE))
    contrast_rows(features, labels[h], est, se, z, d, log_p, reason)
  })
  if (joint) tables[[length(tables) + 1L]] <- contrast_joint(stats, weights, features, reason)
  out <- do.call(rbind, tables)
  results_table(out, method, extra = list(weights = weights, estimate_label = "contrast"),
                fdr_by = "contrast")
}

# One hypothesis's rows; results_table() turns NaN into NA and adds p and the FDR.
contrast_rows <- function(features, label, est, se, stat, df, log_p, reason) {
  data.frame(feature = features, contrast = label, estimate = as.numeric(est), std_error = as.numeric(se),
             statistic = as.numeric(stat), df = as.numeric(df), log_p = log_p,
             reason = unname(reason), stringsAsFactors = FALSE)
}

# The Wald chi-square of all rows together, per feature: b' (L V L')^-1 b on h df.
contrast_joint <- function(stats, weights, features, reason) {
  h <- nrow(weights)
  if (h < 2L || qr(t(weights))$rank < h) {
    stop("`contrast` must have at least two linearly independent rows for `joint = TRUE`.", call. = FALSE)
  }
  chi2 <- nan_to_na(rs_joint_wald(stats$estimate, stats$cross, h))
  log_p <- nan_to_na(p_tail("chisq", chi2, h, lower_tail = FALSE, log_p = TRUE))
  contrast_rows(features, "joint", NA_real_, NA_real_, chi2, ifelse(is.na(chi2), NA_real_, h), log_p, reason)
}

# ---- Contrast specifications -> weights matrix --------------------------------------

# The weights matrix (hypotheses x coefficients, named both ways) of a contrast given as a
# numeric vector, a numeric matrix or a character vector of expressions; attribute `rhs`
# holds each hypothesis' right-hand side.
contrast_weights <- function(contrast, coefs) {
  if (missing(contrast) || is.null(contrast) || length(contrast) == 0L) {
    stop("`contrast` is missing: give weights (a numeric vector or matrix) or an expression such as \"b - a\".",
         call. = FALSE)
  }
  w <- if (is.character(contrast)) {
    contrast_parse(contrast, coefs)
  } else if (is.numeric(contrast) && is.matrix(contrast)) {
    contrast_matrix(contrast, coefs)
  } else if (is.numeric(contrast) && is.null(dim(contrast))) {
    contrast_matrix(matrix(contrast, 1L, dimnames = list(NULL, names(contrast))), coefs)
  } else {
    stop(sprintf("`contrast` must be a numeric vector, a numeric matrix or a character vector of expressions, not %s.",
                 class(contrast)[1L]), call. = FALSE)
  }
  zero <- rowSums(w != 0) == 0L
  if (any(zero)) {
    stop(sprintf("`contrast` has no nonzero weight in hypothesis %s: each hypothesis needs a coefficient.",
                 name_list(which(zero))), call. = FALSE)
  }
  if (anyDuplicated(rownames(w))) {
    stop(sprintf("`contrast` repeats the label %s: give each hypothesis its own name.",
                 name_list(unique(rownames(w)[duplicated(rownames(w))]))), call. = FALSE)
  }
  w
}

# Numeric weights: columns named by coefficient (missing ones weigh 0), or one column per
# coefficient in order.
contrast_matrix <- function(m, coefs) {
  if (anyNA(m) || any(!is.finite(m))) {
    stop("`contrast` has missing or infinite weights: give a finite weight for each coefficient.", call. = FALSE)
  }
  cn <- colnames(m)
  if (!is.null(cn)) {
    unknown <- setdiff(cn, coefs)
    if (length(unknown) || anyDuplicated(cn) || any(cn == "")) {
      bad <- if (length(unknown)) unknown else unique(cn[duplicated(cn) | cn == ""])
    stop(sprintf("`contrast` names %s, which %s of the fit, or repeats a name (coefficients: %s).",
                 name_list(bad), if (length(bad) == 1L) "is not a coefficient" else "are not coefficients",
                 name_list(coefs)), call. = FALSE)
    }
    full <- matrix(0, nrow(m), length(coefs), dimnames = list(rownames(m), coefs))
    full[, cn] <- m
  } else {
    if (ncol(m) != length(coefs)) {
      stop(sprintf("`contrast` has %d weights per hypothesis but the fit has %d coefficients (%s): give one weight per coefficient, or name them.",
                   ncol(m), length(coefs), name_list(coefs)), call. = FALSE)
    }
    full <- m
    dimnames(full) <- list(rownames(m), coefs)
  }
  storage.mode(full) <- "double"
  labels <- rownames(full)
  if (is.null(labels)) labels <- rep("", nrow(full))
  for (i in which(labels == "")) labels[i] <- contrast_label(full[i, ])
  rownames(full) <- labels
  attr(full, "rhs") <- rep(0, nrow(full))
  full
}

# A readable label of a row of weights: "b - a", "0.5*a + 0.5*b".
contrast_label <- function(w) {
  nz <- which(w != 0)
  if (!length(nz)) return("0")
  terms <- vapply(nz, function(j) {
    a <- abs(w[j])
    paste0(if (a == 1) "" else paste0(format(a, digits = 6), "*"), names(w)[j])
  }, "")
  signs <- ifelse(w[nz] < 0, "-", "+")
  out <- paste0(signs, " ", terms, collapse = " ")
  sub("^\\+ ", "", sub("^- ", "-", out))
}

# Character expressions, one hypothesis each, parsed by R's parser into weights.
contrast_parse <- function(exprs, coefs) {
  if (anyNA(exprs) || any(!nzchar(trimws(exprs)))) {
    stop("`contrast` has a missing or empty expression.", call. = FALSE)
  }
  rows <- lapply(exprs, contrast_parse_one, coefs = coefs)
  w <- do.call(rbind, lapply(rows, `[[`, "w"))
  labels <- names(exprs)
  if (is.null(labels)) labels <- rep("", length(exprs))
  labels[labels == ""] <- trimws(exprs[labels == ""])
  dimnames(w) <- list(labels, coefs)
  attr(w, "rhs") <- unname(vapply(rows, `[[`, 0, "rhs"))
  w
}

# One expression: `lhs` or `lhs = rhs` (or `==`), both linear in the coefficients.
# Non-syntactic coefficient names ("(Intercept)", "a:b") are swapped for placeholders
# before parsing, longest first, so that they need no backquotes.
contrast_parse_one <- function(original, coefs) {
  text <- original
  odd <- coefs[make.names(coefs) != coefs]
  odd <- odd[order(-nchar(odd))]
  tokens <- sprintf(".sceffects_coef_%d.", seq_along(odd))
  for (i in seq_along(odd)) {
    text <- gsub(paste0("`", odd[i], "`"), tokens[i], text, fixed = TRUE)
    text <- gsub(odd[i], tokens[i], text, fixed = TRUE)
  }
  expr <- tryCatch(parse(text = text, keep.source = FALSE), error = function(e) NULL)
  if (length(expr) != 1L) {
    stop(sprintf("`contrast` \"%s\" is not one expression of coefficient names such as \"b - a\".", original),
         call. = FALSE)
  }
  e <- expr[[1L]]
  names_of <- stats::setNames(c(coefs[!coefs %in% odd], odd), c(coefs[!coefs %in% odd], tokens))
  side <- function(x) linear_terms(x, names_of, coefs, original)
  if (is.call(e) && (identical(e[[1L]], as.name("=")) || identical(e[[1L]], as.name("==")))) {
    lhs <- side(e[[2L]])
    rhs <- side(e[[3L]])
    list(w = lhs$w - rhs$w, rhs = rhs$const - lhs$const)
  } else {
    lhs <- side(e)
    list(w = lhs$w, rhs = -lhs$const)
  }
}

# Weights (over `coefs`) and constant of a linear expression: numbers, coefficient names,
# unary and binary + and -, products and quotients by numbers, parentheses.
linear_terms <- function(e, names_of, coefs, original) {
  zero <- stats::setNames(numeric(length(coefs)), coefs)
  bad <- function() {
    stop(sprintf("`contrast`: \"%s\" is not linear in the coefficients (use numbers, coefficient names, +, -, * and / by numbers).",
                 original), call. = FALSE)
  }
  if (is.numeric(e) && length(e) == 1L && is.finite(e)) return(list(w = zero, const = e))
  if (is.name(e)) {
    nm <- as.character(e)
    if (!nm %in% names(names_of)) {
      stop(sprintf("`contrast` names %s, which is not a coefficient of the fit (coefficients: %s).",
                   nm, name_list(coefs)), call. = FALSE)
    }
    zero[names_of[[nm]]] <- 1
    return(list(w = zero, const = 0))
  }
  if (!is.call(e)) bad()
  op <- as.character(e[[1L]])
  args <- lapply(as.list(e)[-1L], linear_terms, names_of = names_of, coefs = coefs, original = original)
  constant <- function(x) all(x$w == 0)
  scale <- function(x, f) list(w = x$w * f, const = x$const * f)
  if (op == "(" && length(args) == 1L) return(args[[1L]])
  if (op %in% c("+", "-") && length(args) == 1L) return(if (op == "-") scale(args[[1L]], -1) else args[[1L]])
  if (op %in% c("+", "-") && length(args) == 2L) {
    f <- if (op == "-") -1 else 1
    return(list(w = args[[1L]]$w + f * args[[2L]]$w, const = args[[1L]]$const + f * args[[2L]]$const))
  }
  if (op == "*" && length(args) == 2L) {
    if (constant(args[[1L]])) return(scale(args[[2L]], args[[1L]]$const))
    if (constant(args[[2L]])) return(scale(args[[1L]], args[[2L]]$const))
  }
  if (op == "/" && length(args) == 2L && constant(args[[2L]]) && args[[2L]]$const != 0) {
    return(scale(args[[1L]], 1 / args[[2L]]$const))
  }
  bad()
}

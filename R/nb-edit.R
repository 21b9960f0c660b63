# What-if edits of an nb_regression() fit before simulate(): coefficients scaled or set,
# or the parameters of two levels of a metadata column swapped.

#' Edit a negative binomial fit before simulating from it (what-if scenarios)
#'
#' Returns `fit` with some of its parameters changed, for [simulate()] (with or without a
#' copula from [nb_copula()]): scale an effect (`scale = 2` doubles it), remove it
#' (`value = 0`) or set it to a value, for all genes or some; or swap the parameters of
#' two levels of a metadata column (`swap = list(batch = c("a", "b"))`: the cells of
#' level a are simulated with b's means and sizes and the other way round, for every
#' gene; the cells keep their labels, and the swap applies to the fit's own cells, not to
#' `newdata`). Edits apply on the model's scale: log mean for
#' `component = "mean"`, log size for `"dispersion"`.
#'
#' The edited fit keeps the original covariances (`vcov()`, `summary()` describe the fit
#' to the data, not the edit) and records its edits in `fit$edits`.
#'
#' @param fit An [nb_regression()] fit.
#' @param coef Names of coefficients of `component` to edit (as in `coef(fit, component)`).
#' @param value,scale Give one: the new value of the coefficients, or the factor they are
#'   multiplied by (one number, or one per gene edited).
#' @param component `"mean"` or `"dispersion"`.
#' @param genes Genes to edit (names or indices; default all).
#' @param swap A named list with one element: a column of the fit's metadata and two of
#'   its levels whose cells exchange their parameters.
#' @return The edited fit (class `sceffects_nb`).
#' @export
#' @examples
#' set.seed(1)
#' cells <- data.frame(dose = rnorm(200), batch = factor(rep(c("a", "b"), 100)))
#' counts <- t(replicate(5, rnbinom(200, size = 4, mu = exp(1 + 0.4 * cells$dose))))
#' rownames(counts) <- paste0("gene", 1:5)
#' fit <- nb_regression(counts, mean = ~ dose + batch, data = cells)
#' doubled <- edit_fit(fit, coef = "dose", scale = 2)
#' coef(doubled)["dose", ] / coef(fit)["dose", ]
#' no_dose <- edit_fit(fit, coef = "dose", value = 0, genes = c("gene1", "gene2"))
#' sim <- simulate(no_dose, seed = 1)
#' swapped <- edit_fit(fit, swap = list(batch = c("a", "b")))
edit_fit <- function(fit, coef = NULL, value = NULL, scale = NULL, component = c("mean", "dispersion"),
                     genes = NULL, swap = NULL) {
  check_nb_fit(fit, "fit")
  component <- match_choice(component, "component")
  if (is.null(coef) == is.null(swap)) {
    stop("`coef` or `swap` must be given (one of them): the edit to make.", call. = FALSE)
  }
  if (!is.null(swap)) return(edit_swap(fit, swap, genes))
  est <- fit$coefficients[[component]]
  if (!is.character(coef) || !length(coef) || !all(coef %in% rownames(est))) {
    stop(sprintf("`coef` must name coefficients of the %s: %s.", component, name_list(rownames(est))), call. = FALSE)
  }
  cols <- if (is.null(genes)) seq_len(ncol(est)) else vapply(genes, function(g) nb_gene_index(fit, g), integer(1))
  if (is.null(value) == is.null(scale)) stop("`value` or `scale` must be given (one of them).", call. = FALSE)
  by <- if (is.null(value)) scale else value
  arg <- if (is.null(value)) "scale" else "value"
  if (!is.numeric(by) || !length(by) %in% c(1L, length(cols)) || any(!is.finite(by))) {
    stop(sprintf("`%s` must be one finite number or one per gene edited (%d).", arg, length(cols)), call. = FALSE)
  }
  for (k in coef) {
    est[k, cols] <- if (is.null(value)) est[k, cols] * by else by
  }
  fit$coefficients[[component]] <- est
  fit$edits <- c(fit$edits, sprintf("%s %s %s %s for %d gene(s)", component, paste(coef, collapse = ", "),
                                   if (is.null(value)) "scaled by" else "set to",
                                   paste(format(utils::head(by, 3L)), collapse = ", "), length(cols)))
  fit
}

# Exchanges the design rows of the cells of two levels of a metadata column.
edit_swap <- function(fit, swap, genes) {
  if (!is.null(genes)) stop("`genes` cannot be used with `swap`: swapping applies to every gene.", call. = FALSE)
  if (!is.list(swap) || length(swap) != 1L || is.null(names(swap)) || !names(swap) %in% names(fit$data)) {
    stop(sprintf("`swap` must be a named list with one element, e.g. list(%s = c(\"a\", \"b\")), naming a column of the fit's metadata.",
                 names(fit$data)[1L] %||% "group"), call. = FALSE)
  }
  var <- names(swap)
  lv <- as.character(swap[[1L]])
  v <- as.character(fit$data[[var]])
  if (length(lv) != 2L || !all(lv %in% v) || lv[1L] == lv[2L]) {
    stop(sprintf("`swap`$%s must be two different levels of %s: %s.", var, var, name_list(unique(v))), call. = FALSE)
  }
  a <- which(v == lv[1L])
  b <- which(v == lv[2L])
  # Cells of a take the design rows of a b cell and the other way round (rows within a
  # level are alike in the swapped variable; other variables keep each cell's values).
  data <- fit$data
  new <- v
  new[a] <- lv[2L]
  new[b] <- lv[1L]
  data[[var]] <- if (is.factor(fit$data[[var]])) factor(new, levels = levels(fit$data[[var]])) else
    methods::as(new, class(fit$data[[var]])[1L])
  fit$mean$x <- nb_design_new(fit$mean, data)
  fit$dispersion$x <- nb_design_new(fit$dispersion, data)
  fit$edits <- c(fit$edits, sprintf("parameters of %s %s and %s swapped", var, lv[1L], lv[2L]))
  fit
}

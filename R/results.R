# Results tables: one column vocabulary for every capability, so that plots and users can
# rely on `feature`, `estimate`, `std_error`, `statistic`, `df`, `p_value`, `fdr`.

# The vocabulary, in the order its columns come in every table; other columns follow, and
# `reason` (why a row has no result) comes last.
result_columns <- c("feature", "feature_x", "feature_y", "collection", "celltype", "component",
                    "term", "contrast", "estimate", "std_error", "statistic", "df", "p_value",
                    "log_p", "fdr")

# The one results constructor. Puts the vocabulary's columns first, converts NaN to NA,
# derives `p_value` from `log_p` (or `log_p` from `p_value`) when only one is there, and
# fills a missing `fdr` by Benjamini-Hochberg within the groups of `fdr_by` columns (rows
# without a p-value are left out of it).
results_table <- function(df, method, extra = list(), fdr_by = NULL) {
  df <- as.data.frame(df, stringsAsFactors = FALSE)
  rownames(df) <- NULL
  for (cl in intersect(c("estimate", "std_error", "statistic", "df", "p_value", "log_p", "fdr"), names(df))) {
    df[[cl]] <- nan_to_na(as.numeric(df[[cl]]))
  }
  if ("log_p" %in% names(df) && !"p_value" %in% names(df)) df$p_value <- exp(df$log_p)
  if ("p_value" %in% names(df) && !"log_p" %in% names(df)) df$log_p <- log(df$p_value)
  if ("p_value" %in% names(df) && !"fdr" %in% names(df)) df$fdr <- grouped_fdr(df, fdr_by)
  first <- intersect(result_columns, names(df))
  df <- df[c(first, setdiff(names(df), c(first, "reason")), intersect("reason", names(df)))]
  attr(df, "method") <- method
  for (nm in names(extra)) attr(df, nm) <- extra[[nm]]
  class(df) <- c("sceffects_results", "data.frame")
  df
}

grouped_fdr <- function(df, by) {
  if (is.null(by)) return(fdr_bh(df$p_value))
  fdr <- rep(NA_real_, nrow(df))
  for (rows in split(seq_len(nrow(df)), df[by], drop = TRUE)) fdr[rows] <- fdr_bh(df$p_value[rows])
  fdr
}

#' Put per-feature results into an object's rowData
#'
#' Adds the columns of a results table (one row per feature, or per feature and term) to
#' `rowData(x)`, matched by feature name, as scran and miloR users keep results beside the
#' data. Features without a result get `NA`. Only `rowData` changes, except for a table
#' that carries per-cell results: the per-cell fold changes of
#' `diff_expression(fold_change = TRUE)` become the assay `<prefix>_fold_change` (genes
#' not tested are `NA` rows), as [diff_abundance()] puts its per-cell results in
#' `colData`. The other assays are not copied, and the `x` passed in is unchanged.
#'
#' @param x A SummarizedExperiment / SingleCellExperiment whose row names are the
#'   results' `feature` column.
#' @param results A results table of sceffects with a `feature` column (did_table,
#'   between_arm, within_arm, nb_regression's summary, lmm_table, diff_expression, ...).
#'   Tables of pairs (`assoc_*()`) have no per-feature row and are refused.
#' @param prefix Prefix of the new column names (`<prefix>_<column>`); tables with a
#'   `term`, `component`, `contrast` or `celltype` column get one set of columns per level
#'   (`<prefix>_<level>_<column>`).
#' @param columns Which result columns to add (those present of `estimate`, `std_error`,
#'   `statistic`, `p_value`, `fdr` and `reason` by default).
#' @return `x` with the new `rowData` columns (and assay); existing columns and assays
#'   of the same name are replaced.
#' @export
#' @examples
#' sce <- simulate_trial(n_genes = 300, n_cells = 3000, seed = 1)
#' design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
#'                        baseline = "Pre", followup = "Post")
#' res <- did_table(sce, design)
#' sce <- add_results(sce, res, prefix = "did")
#' head(SummarizedExperiment::rowData(sce))
#'
#' # Per-cell fold changes of diff_expression() as an assay
#' sim <- simulate_manifold(n_cells = 400, n_genes = 50, seed = 1)
#' de <- diff_expression(sim, "condition", "young", "old", n_landmarks = 40,
#'                       null_genes = 30, features = 1:10, fold_change = TRUE)
#' sim <- add_results(sim, de, prefix = "de")
#' SummarizedExperiment::assayNames(sim)
add_results <- function(x, results, prefix, columns = NULL) {
  if (!is(x, "SummarizedExperiment")) {
    stop("`x` must be a SummarizedExperiment or SingleCellExperiment.", call. = FALSE)
  }
  if (!is.data.frame(results) || !"feature" %in% names(results)) {
    stop("`results` must be a results table with a `feature` column (tables of pairs have none).", call. = FALSE)
  }
  if (!is.character(prefix) || length(prefix) != 1L || is.na(prefix) || !nzchar(prefix)) {
    stop("`prefix` must be a single non-empty string, e.g. \"did\".", call. = FALSE)
  }
  if (is.null(rownames(x))) stop("`x` has no row names to match the results' features.", call. = FALSE)
  if (is.null(columns)) {
    columns <- intersect(c("estimate", "std_error", "statistic", "p_value", "fdr", "reason"), names(results))
  }
  unknown <- setdiff(columns, names(results))
  if (length(unknown)) {
    stop(sprintf("`columns` not in `results`: %s.", name_list(unknown)), call. = FALSE)
  }
  by <- intersect(c("celltype", "component", "term", "contrast"), names(results))
  level <- if (length(by)) do.call(paste, c(unname(as.list(results[by])), sep = "_")) else rep("", nrow(results))
  found <- results$feature %in% rownames(x)
  if (!any(found)) stop("No `feature` of `results` is a row name of `x`.", call. = FALSE)
  rd <- SummarizedExperiment::rowData(x)
  for (lv in unique(level)) {
    rows <- level == lv & found
    if (anyDuplicated(results$feature[rows])) {
      stop(sprintf("`results` has several rows per feature%s: it cannot go into rowData.",
                   if (nzchar(lv)) sprintf(" within \"%s\"", lv) else ""), call. = FALSE)
    }
    at <- match(results$feature[rows], rownames(x))
    for (cl in columns) {
      v <- results[[cl]][rows]
      column <- rep(v[NA_integer_], nrow(x))
      column[at] <- v
      name <- paste(c(prefix, if (nzchar(lv)) make.names(lv), cl), collapse = "_")
      rd[[name]] <- column
    }
  }
  SummarizedExperiment::rowData(x) <- rd
  fold_change <- attr(results, "fold_change")
  if (!is.null(fold_change)) x <- add_cell_assay(x, fold_change, paste0(prefix, "_fold_change"))
  x
}

# A genes x cells matrix of per-cell results as an assay of `x`: rows matched by name (NA
# rows for the others), columns the cells of `x` in order.
add_cell_assay <- function(x, values, name) {
  same_cells <- ncol(values) == ncol(x) &&
    (is.null(colnames(values)) || is.null(colnames(x)) || identical(colnames(values), colnames(x)))
  if (!same_cells) {
    stop(sprintf("`x` must have the cells the results were computed on, in the same order, for the assay \"%s\" (%d cells in the results, %d in `x`).",
                 name, ncol(values), ncol(x)), call. = FALSE)
  }
  assay <- matrix(NA_real_, nrow(x), ncol(x), dimnames = dimnames(x))
  at <- match(rownames(values), rownames(x))
  assay[at[!is.na(at)], ] <- values[!is.na(at), , drop = FALSE]
  SummarizedExperiment::assay(x, name, withDimnames = FALSE) <- assay
  x
}

#' @export
print.sceffects_results <- function(x, n = 10L, ...) {
  cat(sprintf("<sceffects results: %s, %d rows>\n", attr(x, "method"), nrow(x)))
  note <- attr(x, "fdr_note")
  if (!is.null(note)) cat(note, "\n", sep = "")
  shown <- utils::head(as.data.frame(x), n)
  print(shown, digits = 4, row.names = FALSE)
  if (nrow(x) > n) cat(sprintf("... %d more rows\n", nrow(x) - n))
  invisible(x)
}

# Column that names the effect of a results table for plots.
effect_label <- function(results) {
  lab <- attr(results, "estimate_label")
  if (is.null(lab)) "estimate" else lab
}

check_results <- function(results, arg = "results") {
  if (!is.data.frame(results) || !all(c("estimate", "p_value") %in% names(results))) {
    stop(sprintf("`%s` must be a results table with columns `estimate` and `p_value`.", arg), call. = FALSE)
  }
  if (nrow(results) == 0L) stop(sprintf("`%s` has no rows to plot.", arg), call. = FALSE)
}

# Results tables: one column vocabulary for every capability, so that plots and users can
# rely on `feature`, `estimate`, `std_error`, `statistic`, `df`, `p_value`, `fdr`.

new_results <- function(df, method, extra = list()) {
  rownames(df) <- NULL
  attr(df, "method") <- method
  for (nm in names(extra)) attr(df, nm) <- extra[[nm]]
  class(df) <- c("sceffects_results", "data.frame")
  df
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

# Plots shared by every results table.

#' Volcano plot of a results table
#'
#' Effect (`estimate`) against significance for any sceffects results table. p-values that
#' underflow double precision are plotted from the table's `log_p` column when it has one.
#'
#' @param results A results table (a data.frame with `estimate` and `p_value`).
#' @param fdr_max Features with `fdr` at or below this are highlighted (when the table has `fdr`).
#' @param label Number of the most significant points to label, by `feature` or by
#'   `feature_x`/`feature_y`.
#' @return A ggplot object.
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rnorm(200), 20, dimnames = list(paste0("g", 1:20), NULL))
#' plot_volcano(assoc_cor(x))
plot_volcano <- function(results, fdr_max = 0.05, label = 5L) {
  check_plot_table(results)
  fdr_max <- check_unit(fdr_max, "fdr_max")
  label <- check_count(label, "label")
  df <- plot_frame(results)
  df$significant <- if (!is.null(results$fdr)) !is.na(results$fdr) & results$fdr <= fdr_max else FALSE
  top <- utils::head(order(df$minus_log10_p, decreasing = TRUE), label)
  df$label <- ""
  df$label[top] <- df$name[top]
  ggplot2::ggplot(df, ggplot2::aes(x = .data$estimate, y = .data$minus_log10_p, colour = .data$significant)) +
    ggplot2::geom_point(alpha = 0.6, size = 1) +
    ggplot2::geom_text(ggplot2::aes(label = .data$label), colour = "black", size = 3, vjust = -0.6,
                       check_overlap = TRUE) +
    ggplot2::scale_colour_manual(values = c(`FALSE` = "grey55", `TRUE` = "firebrick"),
                                 name = sprintf("FDR <= %g", fdr_max)) +
    ggplot2::labs(x = effect_label(results), y = expression(-log[10](p)), title = attr(results, "method")) +
    ggplot2::theme_bw()
}

#' Histogram and QQ plot of p-values
#'
#' Under the null, p-values are uniform: the histogram is flat and the QQ points follow the
#' diagonal. Works on any sceffects results table.
#'
#' @inheritParams plot_volcano
#' @param bins Histogram bins.
#' @return A ggplot object (histogram and QQ plot in two facets).
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rnorm(2000), 40, dimnames = list(paste0("g", 1:40), NULL))
#' plot_pvalues(assoc_cor(x))
plot_pvalues <- function(results, bins = 40L) {
  check_plot_table(results)
  bins <- check_count(bins, "bins", min = 1, max = 1e5)
  df <- plot_frame(results)
  p <- df$p_value[!is.na(df$p_value)]
  n <- length(p)
  if (n == 0L) stop("`results` has no p-values to plot.", call. = FALSE)
  hist_df <- data.frame(panel = "histogram", p = p)
  qq_df <- data.frame(panel = "QQ (uniform)", expected = -log10(stats::ppoints(n)),
                      observed = sort(df$minus_log10_p[!is.na(df$p_value)], decreasing = TRUE))
  ggplot2::ggplot() +
    ggplot2::geom_histogram(data = hist_df, ggplot2::aes(x = .data$p), bins = bins,
                            boundary = 0, fill = "grey60", colour = "white") +
    ggplot2::geom_abline(data = qq_df[1, ], ggplot2::aes(intercept = 0, slope = 1), colour = "firebrick") +
    ggplot2::geom_point(data = qq_df, ggplot2::aes(x = .data$expected, y = .data$observed), size = 0.8) +
    ggplot2::facet_wrap(~panel, scales = "free") +
    ggplot2::labs(x = NULL, y = NULL, title = attr(results, "method")) +
    ggplot2::theme_bw()
}

# A results table that can be plotted: p-values are probabilities (and fdr too, when there).
check_plot_table <- function(results) {
  check_results(results)
  for (cl in intersect(c("p_value", "fdr"), names(results))) {
    v <- results[[cl]]
    if (!is.numeric(v) || any(v < 0 | v > 1, na.rm = TRUE)) {
      stop(sprintf("`results` column `%s` must hold probabilities in [0, 1]; %d values are outside.", cl,
                   if (is.numeric(v)) sum(v < 0 | v > 1, na.rm = TRUE) else length(v)), call. = FALSE)
    }
  }
  invisible(results)
}

# A single number in [0, 1] (a significance level or FDR cut-off).
check_unit <- function(v, arg) {
  if (!is.numeric(v) || length(v) != 1L || is.na(v) || v < 0 || v > 1) {
    stop(sprintf("`%s` must be a single number between 0 and 1.", arg), call. = FALSE)
  }
  v
}

plot_frame <- function(results) {
  name <- if (!is.null(results$feature)) {
    as.character(results$feature)
  } else if (!is.null(results$feature_x)) {
    paste(results$feature_x, results$feature_y, sep = " ~ ")
  } else {
    as.character(seq_len(nrow(results)))
  }
  mlp <- if (!is.null(results$log_p)) -results$log_p / log(10) else -log10(results$p_value)
  data.frame(name = name, estimate = results$estimate, p_value = results$p_value, minus_log10_p = mlp)
}

#' @importFrom ggplot2 .data
NULL

#' Forest plot of effects with confidence intervals
#'
#' One row per feature (and cell type): the estimate with its 95% confidence interval,
#' `estimate +/- qt(0.975, df) * std_error` (normal quantile where `df` is missing), sorted
#' by estimate; features with p below `alpha` in red.
#'
#' @inheritParams plot_volcano
#' @param n Show at most this many rows, the most significant.
#' @param alpha Significance level of the highlighting.
#' @return A ggplot object.
#' @export
#' @examples
#' sce <- simulate_trial(n_genes = 300, n_cells = 2000, seed = 1)
#' design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
#'                        baseline = "Pre", followup = "Post")
#' plot_forest(did_table(sce, design), n = 15)
plot_forest <- function(results, n = 30L, alpha = 0.05) {
  check_plot_table(results)
  n <- check_count(n, "n", min = 1)
  alpha <- check_unit(alpha, "alpha")
  if (is.null(results$std_error)) stop("`results` needs a `std_error` column.", call. = FALSE)
  if (!is.numeric(results$std_error) || any(results$std_error < 0, na.rm = TRUE)) {
    stop(sprintf("`results` column `std_error` must hold numbers >= 0; %d are negative.",
                 sum(results$std_error < 0, na.rm = TRUE)), call. = FALSE)
  }
  df <- as.data.frame(results)
  df <- df[!is.na(df$estimate) & !is.na(df$std_error), , drop = FALSE]
  if (!nrow(df)) stop("`results` has no rows with an estimate and a standard error.", call. = FALSE)
  df <- utils::head(df[order(df$p_value), , drop = FALSE], n)
  q <- if (!is.null(df$df)) ifelse(is.na(df$df), stats::qnorm(0.975), stats::qt(0.975, pmax(df$df, 1e-8))) else stats::qnorm(0.975)
  df$lower <- df$estimate - q * df$std_error
  df$upper <- df$estimate + q * df$std_error
  df$name <- if (!is.null(df$celltype)) paste(df$feature, df$celltype, sep = " | ") else df$feature
  df$name <- factor(df$name, levels = unique(df$name[order(df$estimate)]))
  df$significant <- !is.na(df$p_value) & df$p_value < alpha
  ggplot2::ggplot(df, ggplot2::aes(x = .data$estimate, y = .data$name, colour = .data$significant)) +
    ggplot2::geom_vline(xintercept = 0, linetype = "dashed", colour = "grey40") +
    ggplot2::geom_errorbarh(ggplot2::aes(xmin = .data$lower, xmax = .data$upper), height = 0.25) +
    ggplot2::geom_point(size = 2) +
    ggplot2::scale_colour_manual(values = c(`FALSE` = "grey50", `TRUE` = "firebrick"),
                                 name = sprintf("p < %g", alpha)) +
    ggplot2::labs(x = paste(effect_label(results), "(95% CI)"), y = NULL, title = attr(results, "method")) +
    ggplot2::theme_bw()
}

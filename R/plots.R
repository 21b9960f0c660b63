# Plots shared by every results table.

#' Volcano plot of a results table
#'
#' Effect against significance for any sceffects results table. p-values that underflow
#' double precision are plotted from the table's `log_p` column when it has one.
#'
#' The table needs `p_value` and an effect: `estimate`, or `nes` (else `es`) for a table
#' from [gsea()] or [gsea_did()]. Points are named by `feature` (with `celltype` when
#' present), `feature_x ~ feature_y`, or `set`, unless `label_by` names another column.
#' Labels are never dropped: they are stacked beside their points (left of points with a
#' negative effect, right of the others) and the axes are widened to hold them.
#'
#' A table with a `term` or `component` column (an [lmm_table()] fit, a
#' [summary()][nb-methods] of [nb_regression()]) mixes several coefficients per feature;
#' one is plotted, named by `term`: a term (`"dose"`), or component and term
#' (`"dispersion:dose"`). By default the first term that is not an intercept, with a message
#' that says which.
#'
#' @param results A results table: a data.frame with `p_value` and `estimate` (or `nes`/`es`).
#' @param fdr_max Features with `fdr` at or below this are highlighted (the table's `fdr`
#'   column, else the Benjamini-Hochberg FDR of `p_value`).
#' @param label Number of the most significant points to label.
#' @param label_by Column of `results` to label the points with (e.g. a gene-symbol column
#'   joined from `rowData()`); `NULL` for the feature names. Empty or NA entries fall back to
#'   the feature name.
#' @param term The term (coefficient) to plot when `results` has a `term` or `component`
#'   column; `NULL` for the first term that is not an intercept.
#' @param verbose Say which term is plotted when `term` is `NULL`? `FALSE`, or
#'   `options(sceffects.verbose = FALSE)` for the session, silences it.
#' @return A ggplot object.
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rnorm(200), 20, dimnames = list(paste0("g", 1:20), NULL))
#' res <- assoc_cor(x)
#' plot_volcano(res)
#' res$symbol <- paste0("SYM", seq_len(nrow(res)))
#' plot_volcano(res, label = 10, label_by = "symbol")
plot_volcano <- function(results, fdr_max = 0.05, label = 5L, label_by = NULL, term = NULL,
                         verbose = getOption("sceffects.verbose", TRUE)) {
  local_verbose(verbose)
  check_plot_table(results)
  fdr_max <- check_unit(fdr_max, "fdr_max")
  label <- check_count(label, "label")
  df <- plot_frame(results, term, label_by, "plot_volcano")
  df$significant <- !is.na(df$fdr) & df$fdr <= fdr_max
  labels <- volcano_labels(df, label)
  ggplot2::ggplot(df, ggplot2::aes(x = .data$estimate, y = .data$minus_log10_p)) +
    ggplot2::geom_point(ggplot2::aes(colour = .data$significant), alpha = 0.6, size = 1) +
    ggplot2::geom_segment(data = labels, ggplot2::aes(x = .data$x, y = .data$y, xend = .data$label_x,
                                                      yend = .data$label_y), colour = "grey40", linewidth = 0.25) +
    ggplot2::geom_text(data = labels, ggplot2::aes(x = .data$label_x, y = .data$label_y, label = .data$label,
                                                   hjust = .data$hjust), colour = "black", size = 3) +
    ggplot2::geom_blank(data = labels, ggplot2::aes(x = .data$text_end, y = .data$label_y)) +
    ggplot2::scale_colour_manual(values = c(`FALSE` = "grey55", `TRUE` = "firebrick"),
                                 name = sprintf("FDR <= %g", fdr_max)) +
    ggplot2::coord_cartesian(clip = "off") +
    ggplot2::labs(x = attr(df, "effect"), y = expression(-log[10](p)),
                  title = attr(results, "method"), subtitle = attr(df, "term")) +
    ggplot2::theme_bw()
}

# Where the labels of the `n` most significant points go. ggrepel is not a dependency, so
# labels are placed here: beside their point, away from 0, stacked so that labels on one
# side are at least a text line apart; `text_end` (where a label's text ends, estimated
# from its length) lets the x axis grow to hold the text instead of clipping it.
volcano_labels <- function(df, n) {
  ok <- which(is.finite(df$estimate) & is.finite(df$minus_log10_p))
  top <- ok[utils::head(order(df$minus_log10_p[ok], decreasing = TRUE), n)]
  lab <- df[top, c("estimate", "minus_log10_p", "label"), drop = FALSE]
  names(lab)[1:2] <- c("x", "y")
  if (!nrow(lab)) return(cbind(lab, label_x = numeric(), label_y = numeric(), hjust = numeric(), text_end = numeric()))
  x_span <- span_of(df$estimate[ok])
  y_span <- span_of(df$minus_log10_p[ok])
  side <- ifelse(lab$x < 0, -1, 1)
  lab$label_x <- lab$x + side * 0.03 * x_span
  lab$label_y <- lab$y
  for (s in c(-1, 1)) {
    i <- which(side == s)
    lab$label_y[i] <- stack_apart(lab$y[i], 0.045 * y_span)
  }
  lab$hjust <- ifelse(side < 0, 1, 0)
  lab$text_end <- lab$label_x + side * 0.011 * x_span * nchar(lab$label)
  rownames(lab) <- NULL
  lab
}

# Range of finite values, 1 when there is none (a single point).
span_of <- function(v) {
  r <- diff(range(v))
  if (is.finite(r) && r > 0) r else 1
}

# Positions at least `gap` apart, each at or above its wanted position `y`.
stack_apart <- function(y, gap) {
  if (length(y) < 2L) return(y)
  o <- order(y)
  v <- y[o]
  for (k in 2:length(v)) v[k] <- max(v[k], v[k - 1L] + gap)
  y[o] <- v
  y
}

#' Histogram and QQ plot of p-values
#'
#' Under the null, p-values are uniform: the histogram is flat and the QQ points follow the
#' diagonal. Works on any sceffects results table (see [plot_volcano()] for the columns it
#' needs and for `term`). The histogram's axes are the p-value and the count (left); the QQ
#' panel's are the expected and observed -log10 p (right).
#'
#' @inheritParams plot_volcano
#' @param bins Histogram bins.
#' @return A ggplot object (histogram and QQ plot in two facets).
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rnorm(2000), 40, dimnames = list(paste0("g", 1:40), NULL))
#' plot_pvalues(assoc_cor(x))
plot_pvalues <- function(results, bins = 40L, term = NULL, verbose = getOption("sceffects.verbose", TRUE)) {
  local_verbose(verbose)
  check_plot_table(results)
  bins <- check_count(bins, "bins", min = 1, max = 1e5)
  df <- plot_frame(results, term, NULL, "plot_pvalues")
  p <- df$p_value[!is.na(df$p_value)]
  n <- length(p)
  if (n == 0L) stop("`results` has no p-values to plot.", call. = FALSE)
  # The facet strips sit below the panels as their x-axis titles; the y titles are the
  # left axis (histogram, the left panel) and a tick-less right axis (QQ, the right panel).
  panels <- c("p-value", "expected -log10(p)")
  hist_df <- data.frame(panel = factor(panels[1], panels), p = p)
  qq_df <- data.frame(panel = factor(panels[2], panels), expected = -log10(stats::ppoints(n)),
                      observed = sort(df$minus_log10_p[!is.na(df$p_value)], decreasing = TRUE))
  ggplot2::ggplot() +
    ggplot2::geom_histogram(data = hist_df, ggplot2::aes(x = .data$p), bins = bins,
                            boundary = 0, fill = "grey60", colour = "white") +
    ggplot2::geom_abline(data = qq_df[1, ], ggplot2::aes(intercept = 0, slope = 1), colour = "firebrick") +
    ggplot2::geom_point(data = qq_df, ggplot2::aes(x = .data$expected, y = .data$observed), size = 0.8) +
    ggplot2::facet_wrap(~panel, scales = "free", strip.position = "bottom") +
    ggplot2::scale_y_continuous(sec.axis = ggplot2::sec_axis(~., name = "observed -log10(p)", breaks = NULL)) +
    ggplot2::labs(x = NULL, y = "count", title = attr(results, "method"),
                  subtitle = paste(c(attr(df, "term"), "histogram and QQ plot against the uniform"), collapse = ": ")) +
    ggplot2::theme_bw() +
    ggplot2::theme(strip.placement = "outside", strip.background = ggplot2::element_blank(),
                   strip.text = ggplot2::element_text(size = ggplot2::rel(1.1)))
}

# A table the shared plots can read: `p_value` and an effect (`estimate`, or `nes`/`es` of
# a GSEA table); p-values and FDRs are probabilities.
check_plot_table <- function(results) {
  if (!is.data.frame(results) || is.null(results$p_value) || !length(effect_column(results))) {
    stop("`results` must be a results table with columns `p_value` and `estimate` (or `nes`/`es` of a GSEA table).",
         call. = FALSE)
  }
  if (nrow(results) == 0L) stop("`results` has no rows to plot.", call. = FALSE)
  for (cl in intersect(c("p_value", "fdr"), names(results))) {
    v <- results[[cl]]
    if (!is.numeric(v) || any(v < 0 | v > 1, na.rm = TRUE)) {
      stop(sprintf("`results` column `%s` must hold probabilities in [0, 1]; %d values are outside.", cl,
                   if (is.numeric(v)) sum(v < 0 | v > 1, na.rm = TRUE) else length(v)), call. = FALSE)
    }
  }
  invisible(results)
}

# The column that holds the effect: `estimate`, else a GSEA table's `nes`, else its `es`.
effect_column <- function(results) {
  utils::head(intersect(c("estimate", "nes", "es"), names(results)), 1L)
}

# A single number in [0, 1] (a significance level or FDR cut-off).
check_unit <- function(v, arg) {
  if (!is.numeric(v) || length(v) != 1L || is.na(v) || v < 0 || v > 1) {
    stop(sprintf("`%s` must be a single number between 0 and 1.", arg), call. = FALSE)
  }
  v
}

# The rows of one term of `results` and, for every row, what the shared plots draw: name,
# label, effect, p-value, -log10 p (from `log_p` where p underflows) and FDR.
plot_frame <- function(results, term = NULL, label_by = NULL, call_name = "plot") {
  effect <- effect_column(results)
  effect_name <- if (effect == "estimate") effect_label(results) else toupper(effect)
  picked <- select_term(as.data.frame(results), term, call_name)
  results <- picked$results
  name <- feature_names(results)
  label <- name
  if (!is.null(label_by)) {
    given <- as.character(results[[check_label_by(label_by, results)]])
    label <- ifelse(is.na(given) | given == "", name, given)
  }
  mlp <- if (!is.null(results$log_p)) -results$log_p / log(10) else -log10(results$p_value)
  fdr <- if (!is.null(results$fdr)) results$fdr else fdr_bh(results$p_value)
  df <- data.frame(name = name, label = label, estimate = results[[effect]], p_value = results$p_value,
                   minus_log10_p = mlp, fdr = fdr, stringsAsFactors = FALSE)
  attr(df, "effect") <- effect_name
  attr(df, "term") <- picked$term
  df
}

# Row names for plots: feature (and cell type), the pair of an association, or the gene set.
feature_names <- function(results) {
  several_collections <- !is.null(results$collection) && length(unique(results$collection)) > 1L
  if (!is.null(results$feature) || !is.null(results$set)) {
    name <- as.character(if (!is.null(results$feature)) results$feature else results$set)
    if (!is.null(results$celltype)) name <- paste(name, results$celltype, sep = " | ")
    if (several_collections) name <- paste(results$collection, name, sep = ": ")
    name
  } else if (!is.null(results$feature_x)) {
    paste(results$feature_x, results$feature_y, sep = " ~ ")
  } else {
    as.character(seq_len(nrow(results)))
  }
}

check_label_by <- function(label_by, results) {
  if (!is.character(label_by) || length(label_by) != 1L || is.na(label_by) || !label_by %in% names(results)) {
    stop(sprintf("`label_by` must name a column of `results` (one of %s): add the column first, e.g. gene symbols from rowData().",
                 name_list(paste0("`", names(results), "`"))), call. = FALSE)
  }
  label_by
}

# The rows of one term when `results` holds several coefficients per feature (a `term`
# and/or `component` column): mixing an intercept's or a dispersion's p-values with an
# effect's would mislead. Terms are named "term" or "component:term".
select_term <- function(results, term, call_name) {
  keys <- term_keys(results)
  if (!is.null(term) && (!is.character(term) || length(term) != 1L || is.na(term))) {
    stop("`term` must be a single term name, or NULL.", call. = FALSE)
  }
  if (is.null(keys)) {
    if (!is.null(term)) {
      stop("`term` applies only to tables with a `term` or `component` column: leave it NULL for this table.",
           call. = FALSE)
    }
    return(list(results = results, term = NULL))
  }
  choices <- unique(keys)
  if (is.null(term)) {
    if (length(choices) == 1L) return(list(results = results, term = NULL))
    term <- default_term(choices)
    say(sprintf("%s(): plotting term `%s` (the table has %d: %s); choose another with `term =`.",
                call_name, term, length(choices), name_list(choices)))
  }
  short <- if (!is.null(results$term)) as.character(results$term) else keys
  rows <- keys == term | short == term
  matched <- unique(keys[rows])
  if (length(matched) == 0L) {
    stop(sprintf("`term` = \"%s\" is not a term of `results`: use one of %s.", term, name_list(choices)),
         call. = FALSE)
  }
  if (length(matched) > 1L) {
    stop(sprintf("`term` = \"%s\" names %d terms (%s): give one of them.", term, length(matched),
                 name_list(matched)), call. = FALSE)
  }
  list(results = results[rows, , drop = FALSE], term = matched)
}

# "component:term" where a table has both columns and more than one component, else the
# one column; NULL for tables with one coefficient per feature.
term_keys <- function(results) {
  has_term <- !is.null(results$term)
  has_comp <- !is.null(results$component)
  if (!has_term && !has_comp) return(NULL)
  if (has_term && has_comp && length(unique(results$component)) > 1L) {
    return(paste(results$component, results$term, sep = ":"))
  }
  as.character(if (has_term) results$term else results$component)
}

# The first term that is not an intercept (the first term if all are).
default_term <- function(choices) {
  effect <- choices[!grepl("(Intercept)", choices, fixed = TRUE)]
  if (length(effect)) effect[1L] else choices[1L]
}

#' @importFrom ggplot2 .data
NULL

#' Forest plot of effects with confidence intervals
#'
#' One row per feature (and cell type): the estimate with its 95% confidence interval,
#' `estimate +/- qt(0.975, df) * std_error` (normal quantile where `df` is missing), sorted
#' by estimate; features with FDR at or below `fdr_max` in red (the table's `fdr` column,
#' else the Benjamini-Hochberg FDR of `p_value`). Needs `estimate`, `std_error` and
#' `p_value`.
#'
#' @inheritParams plot_volcano
#' @param n Show at most this many rows, the most significant.
#' @return A ggplot object.
#' @export
#' @examples
#' sce <- simulate_trial(n_genes = 300, n_cells = 2000, seed = 1)
#' design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
#'                        baseline = "Pre", followup = "Post")
#' plot_forest(did_table(sce, design), n = 15)
plot_forest <- function(results, n = 30L, fdr_max = 0.05, label_by = NULL, term = NULL,
                        verbose = getOption("sceffects.verbose", TRUE)) {
  local_verbose(verbose)
  check_plot_table(results)
  n <- check_count(n, "n", min = 1)
  fdr_max <- check_unit(fdr_max, "fdr_max")
  if (is.null(results$estimate) || is.null(results$std_error)) {
    stop("`results` needs `estimate` and `std_error` columns for a forest plot.", call. = FALSE)
  }
  if (!is.numeric(results$std_error) || any(results$std_error < 0, na.rm = TRUE)) {
    stop(sprintf("`results` column `std_error` must hold numbers >= 0; %d are negative.",
                 sum(results$std_error < 0, na.rm = TRUE)), call. = FALSE)
  }
  picked <- select_term(as.data.frame(results), term, "plot_forest")
  df <- picked$results
  frame <- plot_frame(structure(df, estimate_label = effect_label(results)), picked$term, label_by, "plot_forest")
  df$name <- frame$label
  df$fdr <- frame$fdr
  df <- df[!is.na(df$estimate) & !is.na(df$std_error), , drop = FALSE]
  if (!nrow(df)) stop("`results` has no rows with an estimate and a standard error.", call. = FALSE)
  df <- utils::head(df[order(df$p_value), , drop = FALSE], n)
  q <- if (!is.null(df$df)) ifelse(is.na(df$df), stats::qnorm(0.975), stats::qt(0.975, pmax(df$df, 1e-8))) else stats::qnorm(0.975)
  df$lower <- df$estimate - q * df$std_error
  df$upper <- df$estimate + q * df$std_error
  df$name <- factor(df$name, levels = unique(df$name[order(df$estimate)]))
  df$significant <- !is.na(df$fdr) & df$fdr <= fdr_max
  ggplot2::ggplot(df, ggplot2::aes(x = .data$estimate, y = .data$name, colour = .data$significant)) +
    ggplot2::geom_vline(xintercept = 0, linetype = "dashed", colour = "grey40") +
    ggplot2::geom_errorbarh(ggplot2::aes(xmin = .data$lower, xmax = .data$upper), height = 0.25) +
    ggplot2::geom_point(size = 2) +
    ggplot2::scale_colour_manual(values = c(`FALSE` = "grey50", `TRUE` = "firebrick"),
                                 name = sprintf("FDR <= %g", fdr_max)) +
    ggplot2::labs(x = paste(attr(frame, "effect"), "(95% CI)"), y = NULL, title = attr(results, "method"),
                  subtitle = attr(frame, "term")) +
    ggplot2::theme_bw()
}

#' Event-study plot: the DiD at each visit with its confidence interval
#'
#' For an event-study table of [did_table()] (with `visits`): per feature, the DiD at each
#' visit against the baseline with its interval (`conf_low`, `conf_high`), the baseline
#' drawn at 0, visits in time order. Leads (visits before the baseline) show pre-trends.
#'
#' @param results A [did_table()] result with `visits` (columns `term`, `estimate`,
#'   `conf_low`, `conf_high`).
#' @param features Features to draw; by default the 6 with the smallest joint-test
#'   p-value (a message names them).
#' @param celltype With a `celltype` column: the cell type to draw (default the first).
#' @return A ggplot object.
#' @export
#' @examples
#' sce <- simulate_trial(n_genes = 300, n_cells = 3000, visits = c("Pre", "C1", "C2"), seed = 1)
#' design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
#'                        baseline = "Pre", followup = "C2")
#' es <- did_table(sce, design, features = c("GENE00161", "GENE00163", "GENE00001"),
#'                 visits = c("Pre", "C1", "C2"))
#' plot_event_study(es)
plot_event_study <- function(results, features = NULL, celltype = NULL) {
  visits <- attr(results, "visits")
  need <- c("feature", "term", "estimate", "conf_low", "conf_high")
  if (!is.data.frame(results) || is.null(visits) || !all(need %in% names(results))) {
    stop("`results` must be an event-study table of did_table(..., visits = ) (with `term`, `estimate`, `conf_low`, `conf_high`).",
         call. = FALSE)
  }
  df <- as.data.frame(results)
  if (!is.null(df$celltype)) {
    types <- unique(df$celltype)
    celltype <- celltype %||% types[1L]
    if (!is.character(celltype) || length(celltype) != 1L || !celltype %in% types) {
      stop(sprintf("`celltype` must be one of the table's cell types: %s.", name_list(types, 6L)), call. = FALSE)
    }
    df <- df[df$celltype == celltype, , drop = FALSE]
  } else if (!is.null(celltype)) {
    stop("`celltype` needs a table with a `celltype` column.", call. = FALSE)
  }
  if (is.null(features)) {
    joint <- df[df$term == "joint", , drop = FALSE]
    features <- utils::head(joint$feature[order(joint$p_value)], 6L)
    say(sprintf("Drawing the %d feature(s) with the smallest joint p-value: %s.", length(features),
                name_list(features)), TRUE)
  }
  unknown <- setdiff(features, df$feature)
  if (!is.character(features) || length(unknown)) {
    stop(sprintf("`features` not in `results`: %s.", name_list(unknown, 5L)), call. = FALSE)
  }
  baseline <- attr(results, "baseline") %||% visits[1L]
  df <- df[df$feature %in% features & df$term %in% visits, need, drop = FALSE]
  base <- data.frame(feature = features, term = baseline, estimate = 0, conf_low = 0, conf_high = 0)
  df <- rbind(df, base)
  df$term <- factor(df$term, levels = visits)
  df$feature <- factor(df$feature, levels = features)
  dodge <- ggplot2::position_dodge(width = 0.4)
  ggplot2::ggplot(df, ggplot2::aes(x = .data$term, y = .data$estimate, colour = .data$feature, group = .data$feature)) +
    ggplot2::geom_hline(yintercept = 0, linetype = "dashed", colour = "grey40") +
    ggplot2::geom_line(position = dodge, alpha = 0.5) +
    ggplot2::geom_pointrange(ggplot2::aes(ymin = .data$conf_low, ymax = .data$conf_high), position = dodge) +
    ggplot2::labs(x = sprintf("visit (baseline %s)", baseline), y = "DiD with confidence interval", colour = NULL,
                  title = attr(results, "method"), subtitle = celltype) +
    ggplot2::theme_bw()
}

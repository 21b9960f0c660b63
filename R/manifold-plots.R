#' Heatmap of the top genes of a results table, by group of cells
#'
#' Mean expression of the `n` genes with the largest statistic (e.g. the Mahalanobis
#' distance of [diff_expression()]) in each group of cells (condition, sample, ...),
#' centred and scaled per gene. Expression is read block by block, never densified whole.
#'
#' @param x A SummarizedExperiment (e.g. SingleCellExperiment) with the expression.
#' @param results A results table with columns `feature` and `statistic`.
#' @param group Column of `colData(x)` with the groups of cells (columns of the heatmap).
#' @param assay Assay to average.
#' @param n Number of genes.
#' @param by Column of `results` that ranks the genes (largest first).
#' @param label_by Column of `results` to name the genes with (e.g. gene symbols joined
#'   from `rowData()`); `NULL` for `feature`. Empty or NA entries fall back to `feature`.
#' @return A ggplot object.
#' @export
#' @examples
#' sce <- simulate_manifold(n_cells = 600, n_genes = 40, seed = 1)
#' de <- diff_expression(sce, "condition", "young", "old", n_landmarks = 60, null_genes = 40)
#' plot_top_genes_heatmap(sce, de, "sample", n = 10)
plot_top_genes_heatmap <- function(x, results, group, assay = "logcounts", n = 20L, by = "statistic",
                                   label_by = NULL) {
  if (!is(x, "SummarizedExperiment")) stop("`x` must be a SummarizedExperiment.", call. = FALSE)
  if (!is.data.frame(results) || !all(c("feature", by) %in% names(results))) {
    stop(sprintf("`results` must be a results table with columns `feature` and `%s`.", by), call. = FALSE)
  }
  cd <- SummarizedExperiment::colData(x)
  if (!is.character(by) || length(by) != 1L || !is.numeric(results[[by]])) {
    stop(sprintf("`by` must name a numeric column of `results`."), call. = FALSE)
  }
  if (!is.character(group) || length(group) != 1L || !group %in% names(cd)) {
    stop("`group` must name a column of colData(x).", call. = FALSE)
  }
  n <- check_count(n, "n", min = 1)
  if (!is.null(label_by)) check_label_by(label_by, results)
  ranked <- results[!is.na(results[[by]]), , drop = FALSE]
  top <- utils::head(ranked$feature[order(ranked[[by]], decreasing = TRUE)], n)
  if (!length(top)) stop("`results` has no genes to show.", call. = FALSE)
  src <- numeric_features(x, "x", assay = assay)
  rows <- match(top, src$names)
  if (anyNA(rows)) stop("`results` has features that are not rows of `x`.", call. = FALSE)
  groups <- factor(cd[[group]])
  indicator <- Matrix::sparseMatrix(i = seq_along(groups), j = as.integer(groups), x = 1,
                                    dims = c(length(groups), nlevels(groups)))
  means <- as.matrix(feature_rows(src, rows) %*% indicator) /
    rep(tabulate(as.integer(groups), nlevels(groups)), each = length(rows))
  scaled <- t(scale(t(means)))
  scaled[is.nan(scaled)] <- 0
  df <- data.frame(gene = factor(rep(top, nlevels(groups)), levels = rev(top)),
                   group = factor(rep(levels(groups), each = length(top)), levels = levels(groups)),
                   value = as.vector(scaled))
  ggplot2::ggplot(df, ggplot2::aes(x = .data$group, y = .data$gene, fill = .data$value)) +
    ggplot2::geom_tile() +
    ggplot2::scale_y_discrete(labels = gene_labels(ranked, top, label_by)) +
    ggplot2::scale_fill_gradient2(low = "steelblue", mid = "white", high = "firebrick", name = "scaled\nmean") +
    ggplot2::labs(x = group, y = NULL, title = attr(results, "method")) +
    ggplot2::theme_bw() +
    ggplot2::theme(axis.text.x = ggplot2::element_text(angle = 45, hjust = 1))
}

# Axis labels of the genes `top`: the `label_by` column of `results` where it has a value.
gene_labels <- function(results, top, label_by) {
  if (is.null(label_by)) return(stats::setNames(top, top))
  given <- as.character(results[[label_by]][match(top, results$feature)])
  stats::setNames(ifelse(is.na(given) | given == "", top, given), top)
}

#' Differential abundance on the embedding
#'
#' Cells on two dimensions of the embedding, coloured by the log fold change of
#' [diff_abundance()] (`da_lfc`), with the cells called `"up"` or `"down"` outlined
#' (black) and drawn on top; cells outside the two conditions are grey.
#'
#' @param x A SingleCellExperiment returned by [diff_abundance()].
#' @param reduction The reducedDim to draw (default: the one the fit used, else the first).
#' @param dims Two columns of the embedding.
#' @param direction Column of `colData(x)` with the calls (default `"da_direction"`, or
#'   `"da_direction_sample_var"` when only that exists).
#' @return A ggplot object.
#' @export
#' @examples
#' sce <- simulate_manifold(n_cells = 600, n_genes = 40, seed = 1)
#' sce <- diff_abundance(sce, "condition", "young", "old", sample = "sample")
#' plot_da(sce)
plot_da <- function(x, reduction = NULL, dims = 1:2, direction = NULL) {
  if (!is(x, "SingleCellExperiment") || !"da_lfc" %in% names(SummarizedExperiment::colData(x))) {
    stop("`x` must be a SingleCellExperiment returned by diff_abundance().", call. = FALSE)
  }
  cd <- SummarizedExperiment::colData(x)
  if (is.null(direction)) {
    direction <- intersect(c("da_direction", "da_direction_sample_var"), names(cd))[1L]
  } else if (!is.character(direction) || length(direction) != 1L || !direction %in% names(cd)) {
    stop("`direction` must name a colData column of calls, e.g. \"da_direction\".", call. = FALSE)
  }
  names_dims <- SingleCellExperiment::reducedDimNames(x)
  if (is.null(reduction)) reduction <- S4Vectors::metadata(x)$diff_abundance$reduction %||% names_dims[1L]
  if (!is.character(reduction) || length(reduction) != 1L || !reduction %in% names_dims) {
    stop(sprintf("`reduction` must name a reducedDim of `x`: one of %s.", name_list(names_dims)), call. = FALSE)
  }
  emb <- SingleCellExperiment::reducedDim(x, reduction)
  if (!is.numeric(dims) || length(dims) != 2L || anyNA(dims) || any(dims < 1 | dims > ncol(emb))) {
    stop(sprintf("`dims` must be two column numbers of the embedding (1 to %d).", ncol(emb)), call. = FALSE)
  }
  calls <- as.character(cd[[direction]])
  df <- data.frame(a = emb[, dims[1L]], b = emb[, dims[2L]], lfc = cd$da_lfc,
                   called = !is.na(calls) & calls %in% c("up", "down"))
  df <- df[order(df$called), , drop = FALSE]
  axis <- colnames(emb)[dims] %||% paste(reduction, dims)
  ggplot2::ggplot(df, ggplot2::aes(x = .data$a, y = .data$b)) +
    ggplot2::geom_point(ggplot2::aes(fill = .data$lfc, colour = .data$called), shape = 21, size = 1.6, stroke = 0.35) +
    ggplot2::scale_fill_gradient2(low = "steelblue", mid = "white", high = "firebrick", na.value = "grey85",
                                  name = "log fold\nchange") +
    ggplot2::scale_colour_manual(values = c(`FALSE` = "grey70", `TRUE` = "black"), name = "called") +
    ggplot2::labs(x = axis[1L], y = axis[2L], title = "Differential abundance") +
    ggplot2::theme_bw()
}

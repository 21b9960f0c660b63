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

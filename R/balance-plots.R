# gneiss's plots of balances: the heatmap of a table beside its tree, balances by a
# metadata column, and the taxonomy of a balance's numerator and denominator. The tree is
# drawn from balance_layout()'s walks, never by recursion.

#' Heatmap of a composition beside its tree (gneiss's heatmap)
#'
#' The parts (rows of `x`) in the tree's order, as a heatmap of proportions or centred
#' log-ratios, with the tree drawn as a dendrogram on their left; selected balances are
#' coloured in the dendrogram (numerator red, denominator blue).
#'
#' @param x Parts x samples counts or proportions, as for [balances()].
#' @param tree As for [balances()]; by default the `phy_tree()` of a phyloseq object.
#' @param data,order_by Optional per-sample metadata and the name of its column to order
#'   the samples by (by default `colData(x)`, `pData(x)` or `sample_data(x)`).
#' @param values `"proportion"` (each sample closed to 1) or `"clr"` (centred log-ratio).
#' @param highlight Names of balances to colour in the dendrogram.
#' @param pseudocount,convention,assay As for [balances()].
#' @return A ggplot.
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rpois(8 * 6, 30) + 1, 8, dimnames = list(paste0("otu", 1:8), paste0("s", 1:6)))
#' tree <- hclust(dist(log(x)))
#' plot_balance_heatmap(x, tree, values = "clr", highlight = "y0")
plot_balance_heatmap <- function(x, tree = NULL, data = NULL, order_by = NULL, values = c("proportion", "clr"),
                                 highlight = NULL, pseudocount = NULL, convention = c("gneiss", "philr"),
                                 assay = NULL) {
  values <- match_choice(values, "values")
  convention <- match_choice(convention, "convention")
  lay <- balance_layout(tree_of(x, tree))
  logx <- log_composition(x, lay$tips, pseudocount, assay)
  v <- if (values == "clr") sweep(logx, 2L, colMeans(logx)) else sweep(exp(logx), 2L, colSums(exp(logx)), `/`)
  samples <- if (is.null(colnames(v))) as.character(seq_len(ncol(v))) else colnames(v)
  order <- seq_len(ncol(v))
  if (!is.null(order_by)) {
    if (is.null(data)) data <- sample_metadata(x)
    data <- plain_frame(data)
    if (!is.character(order_by) || length(order_by) != 1L || !is.data.frame(data) || !order_by %in% names(data)) {
      stop("`order_by` must name one column of `data`.", call. = FALSE)
    }
    if (nrow(data) != ncol(v)) stop(sprintf("`data` has %d rows but `x` has %d samples.", nrow(data), ncol(v)), call. = FALSE)
    order <- order(data[[order_by]])
  }
  tiles <- data.frame(sample = factor(rep(samples, each = nrow(v)), levels = samples[order]),
                      part = rep(seq_len(nrow(v)), ncol(v)), value = c(v))
  tiles$column <- as.integer(tiles$sample)
  width <- max(2, 0.35 * ncol(v))
  segs <- dendrogram_segments(lay, width, highlight, convention)
  labels_y <- if (length(lay$tips) <= 60L) lay$tips else NULL
  ggplot2::ggplot() +
    ggplot2::geom_raster(ggplot2::aes(.data$column, .data$part, fill = .data$value), data = tiles) +
    ggplot2::geom_segment(ggplot2::aes(x = .data$x, xend = .data$xend, y = .data$y, yend = .data$yend,
                                       colour = .data$side), data = segs, linewidth = 0.3) +
    ggplot2::scale_colour_manual(values = c(tree = "grey30", numerator = "firebrick", denominator = "steelblue"),
                                 breaks = c("numerator", "denominator"), name = NULL) +
    ggplot2::scale_fill_viridis_c(name = values) +
    ggplot2::scale_x_continuous(breaks = seq_along(order), labels = samples[order], expand = c(0, 0)) +
    ggplot2::scale_y_continuous(breaks = if (is.null(labels_y)) NULL else seq_along(labels_y), labels = labels_y,
                                expand = c(0, 0.5)) +
    ggplot2::labs(x = NULL, y = NULL) +
    ggplot2::theme_bw() +
    ggplot2::theme(axis.text.x = ggplot2::element_text(angle = 90, hjust = 1, vjust = 0.5),
                   panel.grid = ggplot2::element_blank())
}

# Segments of a rectangular dendrogram left of x = 0.5: tips at y = 1..n in tree order,
# a node at the mean of its children's y and at x from its height (edges to its deepest
# tip), scaled to `width`. `side` marks the subtrees of highlighted balances.
dendrogram_segments <- function(lay, width, highlight, convention) {
  n_node <- length(lay$children)
  y <- height <- numeric(n_node)
  y[lay$tip_order] <- seq_along(lay$tip_order)
  for (node in lay$post) {
    kids <- lay$children[[node]]
    y[node] <- mean(y[kids])
    height[node] <- 1 + max(height[kids])
  }
  xpos <- 0.5 - width * height / max(height)
  parent <- rep(lay$post, each = 2L)
  child <- unlist(lay$children[lay$post], use.names = FALSE)
  side <- rep("tree", length(child))
  if (length(highlight)) {
    rows <- balance_rows(highlight, lay$balance_names)
    num <- if (convention == "gneiss") 2L else 1L
    for (k in rows) {
      kids <- lay$children[[lay$bfs[k]]]
      for (j in 1:2) {
        c0 <- kids[j]
        inside <- lay$first[child] >= lay$first[c0] & lay$first[child] + lay$size[child] <= lay$first[c0] + lay$size[c0]
        side[inside] <- if (j == num) "numerator" else "denominator"
      }
    }
  }
  rbind(
    data.frame(x = xpos[parent], xend = xpos[parent], y = y[parent], yend = y[child], side = side),
    data.frame(x = xpos[parent], xend = xpos[child], y = y[child], yend = y[child], side = side))
}

plain_frame <- function(data) {
  if (is(data, "sample_data")) return(data.frame(methods::as(data, "data.frame"), check.names = FALSE))
  if (is(data, "DataFrame")) return(as.data.frame(data, optional = TRUE))
  data
}

#' Balances by a metadata column
#'
#' Box plots of balances (rows of [balances()]) by the groups of a per-sample column, one
#' panel per balance, with the samples as points.
#'
#' @param b Balances x samples, as returned by [balances()].
#' @param balance Names or indices of the balances to plot (rows of `b`).
#' @param by Name of the column of `data` that groups the samples.
#' @param data A data.frame with one row per sample (column of `b`).
#' @return A ggplot.
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rpois(4 * 12, 30) + 1, 4, dimnames = list(paste0("otu", 1:4), NULL))
#' b <- balances(x, list(list("otu1", "otu2"), list("otu3", "otu4")))
#' meta <- data.frame(site = rep(c("gut", "skin", "soil"), 4))
#' plot_balance_boxplot(b, c("y0", "y1"), by = "site", data = meta)
plot_balance_boxplot <- function(b, balance, by, data) {
  if (!is.matrix(b) || !is.numeric(b) || is.null(rownames(b))) {
    stop("`b` must be a matrix of balances (balances x samples) as returned by balances().", call. = FALSE)
  }
  rows <- balance_rows(balance, rownames(b))
  data <- plain_frame(data)
  if (!is.data.frame(data) || nrow(data) != ncol(b)) {
    stop(sprintf("`data` must be a data.frame with one row per sample of `b` (%d).", ncol(b)), call. = FALSE)
  }
  if (!is.character(by) || length(by) != 1L || !by %in% names(data)) {
    stop("`by` must name one column of `data`.", call. = FALSE)
  }
  df <- data.frame(balance = factor(rep(rownames(b)[rows], each = ncol(b)), levels = rownames(b)[rows]),
                   value = c(t(b[rows, , drop = FALSE])), group = factor(rep(data[[by]], length(rows))))
  ggplot2::ggplot(df, ggplot2::aes(.data$group, .data$value)) +
    ggplot2::geom_boxplot(outlier.shape = NA) +
    ggplot2::geom_jitter(width = 0.15, height = 0, size = 1, alpha = 0.6) +
    ggplot2::facet_wrap(~balance, scales = "free_y") +
    ggplot2::labs(x = by, y = "balance") +
    ggplot2::theme_bw()
}

#' Taxonomy of a balance's numerator and denominator
#'
#' Bars of the number of taxa of each taxonomic group (at `level`) in the numerator (right)
#' and denominator (left) of one balance, as gneiss's balance bar plots: what the balance
#' contrasts.
#'
#' @param tree,taxonomy,convention As for [balance_taxa()] (a phyloseq object gives both
#'   the tree and the taxonomy).
#' @param balance Name or index of one balance.
#' @param level Column of the taxonomy to group taxa by (e.g. `"Phylum"`).
#' @param n Number of groups shown (the most frequent); the others are pooled as "other".
#' @return A ggplot.
#' @export
#' @examples
#' tree <- list(list("a", "b"), list("c", list("d", "e")))
#' tax <- data.frame(Phylum = c("P1", "P1", "P2", "P2", "P3"), row.names = letters[1:5])
#' plot_balance_taxa(tree, "y0", tax, level = "Phylum")
plot_balance_taxa <- function(tree, balance, taxonomy = NULL, level, n = 10L, convention = c("gneiss", "philr")) {
  if (length(balance) != 1L) stop("`balance` must be one balance name or index.", call. = FALSE)
  n <- check_count(n, "n", min = 1)
  taxa <- balance_taxa(tree, balance, taxonomy, convention)
  if (!is.character(level) || length(level) != 1L || !level %in% setdiff(names(taxa), c("balance", "side", "taxon"))) {
    stop("`level` must name one column of the taxonomy (give `taxonomy`, or a phyloseq object with a tax_table()).",
         call. = FALSE)
  }
  group <- taxa[[level]]
  group[is.na(group) | !nzchar(group)] <- "unassigned"
  top <- names(sort(table(group), decreasing = TRUE))[seq_len(min(n, length(unique(group))))]
  group[!group %in% top] <- "other"
  counts <- as.data.frame(table(group = group, side = taxa$side), stringsAsFactors = FALSE)
  counts$taxa <- ifelse(counts$side == "denominator", -counts$Freq, counts$Freq)
  counts$group <- factor(counts$group, levels = rev(c(top, "other")))
  ggplot2::ggplot(counts, ggplot2::aes(.data$taxa, .data$group, fill = .data$side)) +
    ggplot2::geom_col() +
    ggplot2::geom_vline(xintercept = 0, colour = "grey40") +
    ggplot2::scale_fill_manual(values = c(numerator = "firebrick", denominator = "steelblue"), name = NULL) +
    ggplot2::scale_x_continuous(labels = abs) +
    ggplot2::labs(x = "number of taxa (denominator left, numerator right)", y = level,
                  title = sprintf("balance %s", taxa$balance[1L])) +
    ggplot2::theme_bw()
}

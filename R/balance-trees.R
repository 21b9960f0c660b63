# What a balance is made of (its numerator and denominator taxa, with their taxonomy), and
# trees for balances when there is no phylogeny (gneiss's correlation and gradient
# linkage).

#' Taxa of a balance
#'
#' The numerator and denominator parts (taxa) of balances of a tree, with their taxonomy
#' when one is given: which taxa a significant balance contrasts.
#'
#' @param tree A tree as for [balance_basis()], or a phyloseq object (its `phy_tree()`,
#'   and its `tax_table()` as default `taxonomy`).
#' @param balance Names (as the rows of [balances()]) or indices of balances; by default
#'   all.
#' @param taxonomy Optional taxonomy: a matrix or data.frame with one row per taxon named
#'   by taxon (e.g. phyloseq's `tax_table()`, columns Kingdom ... Species).
#' @param convention See [balance_basis()]: which child is the numerator.
#' @return A data.frame, one row per balance and taxon: `balance`, `side`
#'   (`"numerator"` or `"denominator"`), `taxon`, then the taxonomy's columns.
#' @export
#' @examples
#' tree <- list(list("a", "b"), list("c", list("d", "e")))
#' balance_taxa(tree)
#' tax <- data.frame(Phylum = c("P1", "P1", "P2", "P2", "P3"), row.names = letters[1:5])
#' balance_taxa(tree, "y0", taxonomy = tax)
balance_taxa <- function(tree, balance = NULL, taxonomy = NULL, convention = c("gneiss", "philr")) {
  convention <- match_choice(convention, "convention")
  if (is(tree, "phyloseq")) {
    if (is.null(taxonomy)) taxonomy <- phyloseq::tax_table(tree, errorIfNULL = FALSE)
    tree <- tree_of(tree, NULL)
  }
  lay <- balance_layout(tree)
  k <- balance_rows(balance, lay$balance_names)
  kids <- lay$children[lay$bfs[k]]
  num <- if (convention == "gneiss") 2L else 1L
  sides <- lapply(seq_along(k), function(i) {
    taxa_of <- function(child) lay$tips[lay$first[child] + seq_len(lay$size[child]) - 1L]
    numerator <- taxa_of(kids[[i]][num])
    denominator <- taxa_of(kids[[i]][3L - num])
    data.frame(balance = lay$balance_names[k[i]],
               side = rep(c("numerator", "denominator"), c(length(numerator), length(denominator))),
               taxon = c(numerator, denominator), stringsAsFactors = FALSE)
  })
  out <- do.call(rbind, sides)
  if (!is.null(taxonomy)) out <- cbind(out, taxonomy_rows(taxonomy, out$taxon))
  rownames(out) <- NULL
  out
}

# Rows (in gneiss's order) of balances named or numbered by `balance`.
balance_rows <- function(balance, names) {
  if (is.null(balance)) return(seq_along(names))
  if (is.character(balance)) {
    k <- match(balance, names)
    if (anyNA(k)) {
      stop(sprintf("`balance` names no balance of the tree: %s (balances are %s).", name_list(balance[is.na(k)]),
                   name_list(names, 5L)), call. = FALSE)
    }
    return(k)
  }
  if (!is.numeric(balance) || anyNA(balance) || any(balance != round(balance)) || any(balance < 1 | balance > length(names))) {
    stop(sprintf("`balance` must be balance names or indices from 1 to %d.", length(names)), call. = FALSE)
  }
  as.integer(balance)
}

# The taxonomy's rows of `taxa` as a data.frame of character columns.
taxonomy_rows <- function(taxonomy, taxa) {
  if (is(taxonomy, "taxonomyTable")) taxonomy <- methods::as(taxonomy, "matrix")
  if (is(taxonomy, "DataFrame")) taxonomy <- as.data.frame(taxonomy)
  if (!(is.matrix(taxonomy) || is.data.frame(taxonomy)) || is.null(rownames(taxonomy))) {
    stop("`taxonomy` must be a matrix or data.frame with one row per taxon, named by taxon.", call. = FALSE)
  }
  absent <- setdiff(taxa, rownames(taxonomy))
  if (length(absent)) {
    stop(sprintf("`taxonomy` has no row for taxa %s of the tree.", name_list(absent)), call. = FALSE)
  }
  tax <- as.data.frame(taxonomy[taxa, , drop = FALSE], stringsAsFactors = FALSE)
  tax[] <- lapply(tax, as.character)
  if (any(c("balance", "side", "taxon") %in% names(tax))) {
    stop("`taxonomy` must not have columns named balance, side or taxon.", call. = FALSE)
  }
  tax
}

#' Trees for balances without a phylogeny
#'
#' `correlation_linkage()` clusters parts that are proportional across samples: Ward
#' linkage on the variance of their log-ratios, `var(log(x_i / x_j))` (gneiss's
#' `correlation_linkage`; proportional parts have variance 0). `gradient_linkage()` orders
#' parts along a numeric covariate (pH, depth, time): each part's mean position on the
#' gradient weighted by its proportions in the samples, then linkage on the distances
#' between those positions (gneiss's `gradient_linkage`), so that a balance splits parts
#' of low from parts of high niche.
#'
#' Both compute all pairwise distances between parts (memory `8 n^2` bytes for `n`
#' parts); filter rare parts first for tables of tens of thousands.
#'
#' @param x Parts x samples counts or proportions, as for [balances()] (a phyloseq object
#'   gives its `otu_table()`).
#' @param pseudocount Added before the log (required when `x` has zeros), as in
#'   [balances()].
#' @param assay Assay of a SummarizedExperiment.
#' @return An `ape::phylo` tree over the parts (rows of `x`), bifurcating, with branch
#'   lengths from the linkage heights; give it to [balances()] or [balance_lmm()].
#' @export
#' @examples
#' set.seed(1)
#' x <- matrix(rpois(6 * 10, 20) + 1, 6, dimnames = list(paste0("otu", 1:6), NULL))
#' x[2, ] <- 3 * x[1, ] # proportional to otu1
#' tree <- correlation_linkage(x)
#' tree
#' ph <- seq(4, 8, length.out = 10)
#' gradient_linkage(x, ph)
correlation_linkage <- function(x, pseudocount = NULL, assay = NULL) {
  logx <- parts_log(x, pseudocount, assay)
  n <- nrow(logx)
  check_memory(3 * 8 * n^2, "The variances of all log-ratios", "Filter rare parts first.")
  # var(log x_i - log x_j) = var_i + var_j - 2 cov_ij, over samples.
  cv <- stats::cov(t(logx))
  v <- diag(cv)
  vlr <- pmax(outer(v, v, `+`) - 2 * cv, 0)
  dimnames(vlr) <- list(rownames(logx), rownames(logx))
  # scipy's ward() on distances is R's ward.D2.
  linkage_tree(stats::hclust(stats::as.dist(vlr), method = "ward.D2"))
}

#' @rdname correlation_linkage
#' @param gradient A numeric covariate with one value per sample (column of `x`), or the
#'   name of a column of `data`.
#' @param data Per-sample metadata when `gradient` is a column name; by default
#'   `colData(x)`, `pData(x)` or `sample_data(x)`.
#' @param method Linkage of [stats::hclust()] (gneiss: `"average"`).
#' @export
gradient_linkage <- function(x, gradient, data = NULL, method = "average", pseudocount = NULL, assay = NULL) {
  if (is.character(gradient) && length(gradient) == 1L) {
    if (is.null(data)) data <- sample_metadata(x)
    if (is(data, "DataFrame") || is(data, "sample_data")) data <- as.data.frame(methods::as(data, "data.frame"))
    if (!is.data.frame(data) || !gradient %in% names(data)) {
      stop(sprintf("`data` has no column `%s` (named by `gradient`).", gradient), call. = FALSE)
    }
    gradient <- data[[gradient]]
  }
  if (is(x, "phyloseq")) x <- phyloseq::otu_table(x)
  m <- feature_matrix(x, "x", assay)
  if (!is.numeric(gradient) || length(gradient) != ncol(m) || anyNA(gradient) || any(!is.finite(gradient))) {
    stop(sprintf("`gradient` must be a finite numeric vector with one value per sample (%d), or a column of `data`.",
                 ncol(m)), call. = FALSE)
  }
  if (!is.character(method) || length(method) != 1L) stop("`method` must be one linkage method of hclust().", call. = FALSE)
  props <- exp(parts_log(x, pseudocount, assay))
  props <- sweep(props, 2L, colSums(props), `/`)
  # A part's niche: the gradient's mean weighted by the part's proportion in each sample.
  niche <- as.vector(props %*% gradient) / rowSums(props)
  names(niche) <- rownames(props)
  check_memory(8 * length(niche)^2, "The distances between all parts' positions", "Filter rare parts first.")
  linkage_tree(stats::hclust(stats::dist(niche), method = method))
}

# log(x + pseudocount), parts x samples, with the checks of balances().
parts_log <- function(x, pseudocount, assay) {
  if (is(x, "phyloseq")) x <- phyloseq::otu_table(x)
  m <- feature_matrix(x, "x", assay)
  if (is.null(rownames(m))) stop("`x` has no row names: name its parts (rows).", call. = FALSE)
  log_composition(x, rownames(m), pseudocount, assay)
}

linkage_tree <- function(hc) {
  if (!requireNamespace("ape", quietly = TRUE)) {
    stop("The tree is returned as an ape phylo: install the ape package.", call. = FALSE)
  }
  ape::as.phylo(hc)
}

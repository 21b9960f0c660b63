# Balances: isometric log-ratios defined by a strictly bifurcating tree over the parts of a
# composition (gneiss, philr), and the gneiss workflow of one mixed model per balance.
# Trees of every accepted kind are first turned into one nested form: a leaf is a part
# name, an internal node a list of its two children (attribute "label": its name or NA).

#' Balance basis of a bifurcating tree
#'
#' The orthonormal basis of isometric log-ratio (ILR) coordinates defined by a strictly
#' bifurcating tree: one balance per internal node,
#' `sqrt(r s / (r + s)) * log(g(numerator) / g(denominator))`, where `g()` is the geometric
#' mean of the parts under a child and `r`, `s` their numbers.
#'
#' Sign convention: `"gneiss"` (default, gneiss and scikit-bio) puts the *second* child in
#' the numerator (for the tree `(a, b)` the balance is `log(b / a) / sqrt(2)`); `"philr"`
#' puts the *first* child in the numerator, so its balances are the negatives of gneiss's.
#' Balances are in gneiss's order, the internal nodes level by level from the root; they
#' are named by the tree's node labels when all are present and unique, otherwise `y0`,
#' `y1`, ... in that order, as gneiss does.
#'
#' @param tree An ape `phylo` tree, an `hclust` clustering, or a nested list whose leaves
#'   are part names and whose internal nodes are lists of exactly two children (a node's
#'   name may be set as its attribute `"label"`). Trees with a node of more than two
#'   children are refused: resolve them with `ape::multi2di()`.
#' @param convention `"gneiss"` or `"philr"`, see Details.
#' @return A matrix, balances x parts, whose rows are orthonormal and sum to zero (the
#'   basis in centred log-ratio coordinates): `basis %*% log(x)` gives the balances of a
#'   composition `x`.
#' @export
#' @examples
#' tree <- list(list("a", "b"), "c")
#' balance_basis(tree)
#' balance_basis(tree, convention = "philr")
#' hc <- hclust(dist(matrix(rnorm(10), 5, dimnames = list(letters[1:5], NULL))))
#' round(balance_basis(hc), 3)
balance_basis <- function(tree, convention = c("gneiss", "philr")) {
  convention <- match.arg(convention)
  root <- as_nested_tree(tree)
  tips <- nested_leaves(root)
  if (anyDuplicated(tips)) {
    stop(sprintf("`tree` has duplicated tip names, e.g. %s.", tips[anyDuplicated(tips)]), call. = FALSE)
  }
  if (length(tips) < 2L) stop("`tree` must have at least two tips.", call. = FALSE)
  rows <- list()
  labels <- character()
  queue <- list(root)
  while (length(queue)) {
    node <- queue[[1L]]
    queue <- queue[-1L]
    if (is.character(node)) next
    left <- nested_leaves(node[[1L]])
    right <- nested_leaves(node[[2L]])
    r <- length(right)
    s <- length(left)
    v <- numeric(length(tips))
    v[match(right, tips)] <- sqrt(s / (r * (r + s)))
    v[match(left, tips)] <- -sqrt(r / (s * (r + s)))
    rows[[length(rows) + 1L]] <- if (convention == "philr") -v else v
    lab <- attr(node, "label")
    labels <- c(labels, if (is.null(lab) || length(lab) != 1L) NA_character_ else as.character(lab))
    queue <- c(queue, list(node[[1L]], node[[2L]]))
  }
  named <- !anyNA(labels) && all(nzchar(labels)) && !anyDuplicated(labels)
  basis <- do.call(rbind, rows)
  dimnames(basis) <- list(if (named) labels else paste0("y", seq_along(rows) - 1L), tips)
  basis
}

as_nested_tree <- function(tree) {
  if (inherits(tree, "phylo")) return(nested_from_phylo(tree))
  if (inherits(tree, "hclust")) return(nested_from_hclust(tree))
  if (is.list(tree)) return(check_nested(tree))
  stop("`tree` must be an ape phylo tree, an hclust object or a nested list.", call. = FALSE)
}

nested_from_phylo <- function(tree) {
  n_tip <- length(tree$tip.label)
  children <- split(tree$edge[, 2L], factor(tree$edge[, 1L], levels = seq_len(n_tip + tree$Nnode)))
  build <- function(node) {
    if (node <= n_tip) return(tree$tip.label[node])
    kids <- children[[node]]
    label <- if (!is.null(tree$node.label)) tree$node.label[node - n_tip] else NA_character_
    if (length(kids) != 2L) {
      stop(sprintf("`tree` is not strictly bifurcating: node %s has %d children. Resolve it with ape::multi2di(tree)%s.",
                   if (!is.na(label) && nzchar(label)) label else node, length(kids),
                   if (node == n_tip + 1L) " (an unrooted tree: or root it with ape::root(tree, outgroup, resolve.root = TRUE))" else ""),
           call. = FALSE)
    }
    structure(lapply(kids, build), label = label)
  }
  build(n_tip + 1L)
}

nested_from_hclust <- function(tree) {
  if (is.null(tree$labels)) stop("`tree` (hclust) has no labels: cluster a matrix with row names.", call. = FALSE)
  build <- function(i) {
    if (i < 0L) return(tree$labels[-i])
    structure(lapply(tree$merge[i, ], build), label = NA_character_)
  }
  build(nrow(tree$merge))
}

check_nested <- function(node) {
  if (is.character(node) && length(node) == 1L) return(node)
  if (!is.list(node)) stop("`tree` (nested list) must have part names as leaves.", call. = FALSE)
  if (length(node) != 2L) {
    stop(sprintf("`tree` is not strictly bifurcating: a node has %d children. Nest them in pairs, e.g. list(\"a\", list(\"b\", \"c\")).",
                 length(node)), call. = FALSE)
  }
  label <- attr(node, "label")
  structure(lapply(node, check_nested), label = if (is.null(label)) NA_character_ else label)
}

nested_leaves <- function(node) {
  if (is.character(node)) node else c(nested_leaves(node[[1L]]), nested_leaves(node[[2L]]))
}

#' Balances of compositions
#'
#' Isometric log-ratio balances of a table of counts or proportions, from a bifurcating
#' tree over its parts (see [balance_basis()]).
#'
#' Zeros: log-ratios are undefined at zero, so a table with zeros needs `pseudocount`,
#' added to every entry before the log (as philr's `pseudocount`; 0.5 or 1 are usual for
#' counts, a small fraction of the smallest positive value for proportions). Rows are
#' matched to the tree's tips by name; balances do not depend on the samples' totals.
#'
#' @param x Parts in rows (names matching the tree's tips), samples in columns: a matrix
#'   or a SummarizedExperiment; counts or proportions, non-negative.
#' @param tree See [balance_basis()].
#' @param pseudocount Added to every entry when given; required if `x` has zeros.
#' @param convention See [balance_basis()].
#' @param assay Assay of a SummarizedExperiment.
#' @return A matrix, balances x samples.
#' @export
#' @examples
#' x <- matrix(c(10, 20, 30, 5, 5, 40), 3, dimnames = list(c("a", "b", "c"), c("s1", "s2")))
#' tree <- list(list("a", "b"), "c")
#' b <- balances(x, tree)
#' b
#' balances_to_proportions(b, tree)
balances <- function(x, tree, pseudocount = NULL, convention = c("gneiss", "philr"), assay = NULL) {
  convention <- match.arg(convention)
  basis <- balance_basis(tree, convention)
  logx <- log_composition(x, colnames(basis), pseudocount, assay)
  out <- basis %*% logx
  dimnames(out) <- list(rownames(basis), colnames(logx))
  out
}

# log(x + pseudocount) with rows in the order of `parts`, after checks.
log_composition <- function(x, parts, pseudocount, assay) {
  if (is(x, "SummarizedExperiment")) x <- se_assay(x, assay, "x")
  if (is.data.frame(x)) x <- as.matrix(x)
  if (!is.matrix(x)) x <- as.matrix(x)
  if (!is.numeric(x)) stop("`x` must be a numeric matrix of counts or proportions (parts in rows).", call. = FALSE)
  if (is.null(rownames(x))) stop("`x` has no row names: name its parts (rows) as the tree's tips.", call. = FALSE)
  absent <- setdiff(parts, rownames(x))
  if (length(absent)) {
    hint <- if (!is.null(colnames(x)) && all(parts %in% colnames(x))) " Parts must be rows: use t(x)." else ""
    stop(sprintf("`x` has no row for tip%s %s of `tree`.%s", if (length(absent) > 1L) "s" else "",
                 paste(utils::head(absent, 5L), collapse = ", "), hint), call. = FALSE)
  }
  extra <- setdiff(rownames(x), parts)
  if (length(extra)) {
    stop(sprintf("`x` has parts not in `tree`: %s. Subset x to the tree's tips.", paste(utils::head(extra, 5L), collapse = ", ")),
         call. = FALSE)
  }
  x <- x[parts, , drop = FALSE]
  if (anyNA(x) || any(!is.finite(x))) stop("`x` contains NA or infinite values.", call. = FALSE)
  if (any(x < 0)) stop("`x` contains negative values: it must hold counts or proportions.", call. = FALSE)
  if (!is.null(pseudocount)) {
    if (!is.numeric(pseudocount) || length(pseudocount) != 1L || is.na(pseudocount) || pseudocount <= 0) {
      stop("`pseudocount` must be a single positive number.", call. = FALSE)
    }
    x <- x + pseudocount
  } else if (any(x == 0)) {
    stop("`x` contains zeros, whose log-ratios are undefined: set `pseudocount` (e.g. 0.5 for counts).", call. = FALSE)
  }
  log(x)
}

#' Proportions from balances
#'
#' Inverts [balances()]: the compositions (closed to sum 1) whose balances are `b`.
#'
#' @param b Balances x samples, with rows in the order of [balance_basis()] (a vector is
#'   one sample).
#' @param tree,convention As for [balances()].
#' @return A matrix, parts x samples, each column summing to 1.
#' @export
#' @examples
#' tree <- list(list("a", "b"), "c")
#' balances_to_proportions(c(0, 0), tree)
balances_to_proportions <- function(b, tree, convention = c("gneiss", "philr")) {
  convention <- match.arg(convention)
  basis <- balance_basis(tree, convention)
  if (is.null(dim(b))) b <- matrix(b, ncol = 1L)
  if (!is.numeric(b) || nrow(b) != nrow(basis)) {
    stop(sprintf("`b` must have one row per balance of `tree` (%d).", nrow(basis)), call. = FALSE)
  }
  if (!is.null(rownames(b)) && !identical(rownames(b), rownames(basis))) {
    stop("`b`'s row names are not the balances of `tree` in order: use rows as returned by balances().", call. = FALSE)
  }
  clr <- crossprod(basis, b)
  clr <- sweep(clr, 2L, apply(clr, 2L, max))
  e <- exp(clr)
  out <- sweep(e, 2L, colSums(e), `/`)
  dimnames(out) <- list(colnames(basis), colnames(b))
  out
}

#' Mixed models on balances (the gneiss workflow)
#'
#' Balances of a composition from a tree ([balances()]), then one linear mixed model per
#' balance with a random intercept per group ([lmm_table()]), as gneiss's `mixedlm()`.
#' `predict()` on the result gives balances, or proportions with `type = "proportion"`.
#'
#' @param x Parts x samples counts or proportions (see [balances()]).
#' @param formula One-sided formula of the fixed effects (`~ time + treatment`); it may also
#'   carry its own random-effects term, e.g. `~ time + (1 + time | patient)`, when `groups`
#'   is `NULL`.
#' @param metadata A data.frame with one row per sample (column of `x`); by default
#'   `colData(x)` for a SummarizedExperiment.
#' @param tree See [balance_basis()].
#' @param groups Column of `metadata` naming the group of each sample (e.g. the patient):
#'   adds `(1 | groups)` to the formula.
#' @param pseudocount,convention,assay See [balances()].
#' @param ... Passed to [lmm_table()] (`REML`, `p_values`, `threads`, `BPPARAM`).
#' @return An [lmm_table()] result (class `sceffects_balance_lmm`), one row per balance and
#'   term.
#' @export
#' @examples
#' set.seed(1)
#' parts <- paste0("taxon", 1:4)
#' tree <- list(list("taxon1", "taxon2"), list("taxon3", "taxon4"))
#' meta <- data.frame(patient = factor(rep(1:6, each = 3)), time = rep(1:3, 6))
#' x <- matrix(rpois(4 * 18, 50), 4, dimnames = list(parts, NULL))
#' fit <- balance_lmm(x, ~ time, meta, tree, groups = "patient")
#' fit
#' predict(fit, type = "proportion")[, 1:3]
balance_lmm <- function(x, formula, metadata, tree, groups = NULL, pseudocount = NULL,
                        convention = c("gneiss", "philr"), assay = NULL, ...) {
  convention <- match.arg(convention)
  b <- balances(x, tree, pseudocount = pseudocount, convention = convention, assay = assay)
  if (missing(metadata) && is(x, "SummarizedExperiment")) metadata <- SummarizedExperiment::colData(x)
  if (is(metadata, "DataFrame")) metadata <- as.data.frame(metadata, optional = TRUE)
  if (!is.null(groups)) {
    if (!is.character(groups) || length(groups) != 1L) stop("`groups` must be one column name of `metadata`.", call. = FALSE)
    if (!is.data.frame(metadata) || !groups %in% names(metadata)) {
      stop(sprintf("`metadata` has no column `%s` (named by `groups`).", groups), call. = FALSE)
    }
    if (!inherits(formula, "formula") || length(formula) != 2L) {
      stop("`formula` must be one-sided, e.g. ~ time + treatment.", call. = FALSE)
    }
    formula <- stats::as.formula(call("~", call("+", formula[[2L]], call("(", call("|", 1, as.name(groups))))),
                                 environment(formula))
  }
  fit <- lmm_table(b, formula, metadata, ...)
  attr(fit, "balance_tree") <- list(tree = tree, convention = convention)
  class(fit) <- c("sceffects_balance_lmm", class(fit))
  fit
}

#' @describeIn balance_lmm Predicted balances (`type = "balance"`) or proportions (parts x
#'   samples) for the fitted samples or `newdata`.
#' @param object Result of `balance_lmm()`.
#' @param newdata,re.form As for `predict()` on [lmm_table()].
#' @param type `"balance"` or `"proportion"`.
#' @export
predict.sceffects_balance_lmm <- function(object, newdata = NULL, re.form = NULL,
                                          type = c("balance", "proportion"), ...) {
  type <- match.arg(type)
  pred <- predict.sceffects_lmm(object, newdata = newdata, re.form = re.form)
  if (type == "balance") return(pred)
  tb <- attr(object, "balance_tree")
  balances_to_proportions(pred, tb$tree, tb$convention)
}

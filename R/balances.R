# Balances: isometric log-ratios defined by a strictly bifurcating tree over the parts of a
# composition (gneiss, philr), and the gneiss workflow of one mixed model per balance.
# Trees of every accepted kind are first turned into one table of nodes and children
# (as_tree_table()), which is walked with explicit stacks and queues, never by recursion.

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
#'   children are refused: resolve them with `ape::multi2di()`. Tips must have unique,
#'   non-empty names. Trees of any depth are accepted (they are walked without recursion).
#' @param convention `"gneiss"` or `"philr"`, see Details.
#' @param sparse Return a sparse `dgCMatrix` (Matrix package) instead of a dense matrix:
#'   a tree's basis has one non-zero per part under each balance, `O(n log n)` for a
#'   balanced tree of `n` parts against `n^2` dense (2.8 GB for 19,216 taxa). Neither is
#'   needed for [balances()], which works from the tree directly.
#' @return A matrix, balances x parts, whose rows are orthonormal and sum to zero (the
#'   basis in centred log-ratio coordinates): `basis %*% log(x)` gives the balances of a
#'   composition `x`.
#' @export
#' @examples
#' tree <- list(list("a", "b"), "c")
#' balance_basis(tree)
#' balance_basis(tree, convention = "philr")
#' balance_basis(tree, sparse = TRUE)
#' hc <- hclust(dist(matrix(rnorm(10), 5, dimnames = list(letters[1:5], NULL))))
#' round(balance_basis(hc), 3)
balance_basis <- function(tree, convention = c("gneiss", "philr"), sparse = FALSE) {
  convention <- match_choice(convention, "convention")
  sparse <- check_flag(sparse, "sparse")
  lay <- balance_layout(tree)
  n_bal <- length(lay$bfs)
  kids <- lay$children[lay$bfs]
  left <- vapply(kids, `[`, 1L, 1L)
  right <- vapply(kids, `[`, 1L, 2L)
  s <- lay$size[left]
  r <- lay$size[right]
  sign <- if (convention == "philr") -1 else 1
  i <- rep(rep(seq_len(n_bal), 2L), c(s, r))
  j <- c(sequence(s, from = lay$first[left]), sequence(r, from = lay$first[right]))
  v <- sign * rep(c(-sqrt(r / (s * (r + s))), sqrt(s / (r * (r + s)))), c(s, r))
  dn <- list(lay$balance_names, lay$tips)
  if (sparse) return(Matrix::sparseMatrix(i = i, j = j, x = v, dims = c(n_bal, length(lay$tips)), dimnames = dn))
  check_memory(8 * n_bal * length(lay$tips), "A dense balance basis", "Use sparse = TRUE, or balances() directly.")
  basis <- matrix(0, n_bal, length(lay$tips), dimnames = dn)
  basis[cbind(i, j)] <- v
  basis
}

# Everything the balances of a tree need, from one table and one walk: the tips in
# left-to-right order (the basis's columns), each node's first leaf position and number
# of leaves, the internal nodes level by level (gneiss's order of the balances) and their
# names, and the children of the internal nodes in post-order for the core.
balance_layout <- function(tree) {
  tt <- as_tree_table(tree)
  walk <- tree_walk(tt)
  tips <- tt$tips[walk$tip_order]
  check_tip_names(tips)
  n_tip <- length(tips)
  labels <- tt$labels[walk$bfs]
  named <- !anyNA(labels) && all(nzchar(labels)) && !anyDuplicated(labels)
  post <- walk$post
  # Core ids: a tip is its position in tip order, an internal node n_tip + its post-order rank.
  core_id <- integer(length(tt$children))
  core_id[walk$tip_order] <- seq_len(n_tip)
  core_id[post] <- n_tip + seq_along(post)
  kids <- tt$children[post]
  list(tips = tips, children = tt$children, labels = tt$labels, first = walk$first, size = walk$size,
       bfs = walk$bfs, post = post, root = tt$root, tip_order = walk$tip_order,
       balance_names = if (named) labels else paste0("y", seq_along(walk$bfs) - 1L),
       first_child = core_id[vapply(kids, `[`, 1L, 1L)], second_child = core_id[vapply(kids, `[`, 1L, 2L)],
       bfs_rows = match(walk$bfs, post))
}

check_tip_names <- function(tips) {
  if (length(tips) < 2L) stop("`tree` must have at least two tips.", call. = FALSE)
  if (anyNA(tips) || any(!nzchar(tips))) {
    stop(sprintf("`tree` has %d tip%s with a missing or empty name: name every tip (they match the rows of `x`).",
                 sum(is.na(tips) | !nzchar(tips)), if (sum(is.na(tips) | !nzchar(tips)) > 1L) "s" else ""),
         call. = FALSE)
  }
  dup <- unique(tips[duplicated(tips)])
  if (length(dup)) {
    stop(sprintf("`tree` has duplicated tip names: %s. Make them unique.", name_list(dup)), call. = FALSE)
  }
}

# Every accepted kind of tree as one table, walked without recursion (trees of thousands
# of tips, e.g. a caterpillar or single-linkage clustering, are thousands of levels deep):
# nodes 1..n_tip are tips, the rest internal nodes; `children[[node]]` their children in
# order (NULL for tips), `labels[node]` a node's name (NA when it has none).
as_tree_table <- function(tree) {
  if (inherits(tree, "phylo")) return(tree_table_phylo(tree))
  if (inherits(tree, "hclust")) return(tree_table_hclust(tree))
  if (is.list(tree)) return(tree_table_nested(tree))
  stop("`tree` must be an ape phylo tree, an hclust object or a nested list.", call. = FALSE)
}

tree_table_phylo <- function(tree) {
  n_tip <- length(tree$tip.label)
  n_node <- n_tip + tree$Nnode
  children <- split(tree$edge[, 2L], factor(tree$edge[, 1L], levels = seq_len(n_node)))
  children <- unname(lapply(children, as.integer))
  children[seq_len(n_tip)] <- list(NULL)
  node_labels <- if (is.null(tree$node.label)) rep(NA_character_, tree$Nnode) else as.character(tree$node.label)
  labels <- c(rep(NA_character_, n_tip), node_labels)
  root <- n_tip + 1L
  # Strictly bifurcating, checked in preorder so that the first offending node is named.
  for (node in tree_preorder(children, root)) {
    if (node > n_tip && length(children[[node]]) != 2L) {
      label <- labels[node]
      stop(sprintf("`tree` is not strictly bifurcating: node %s has %d children. Resolve it with ape::multi2di(tree)%s.",
                   if (!is.na(label) && nzchar(label)) label else node, length(children[[node]]),
                   if (node == root) " (an unrooted tree: or root it with ape::root(tree, outgroup, resolve.root = TRUE))" else ""),
           call. = FALSE)
    }
  }
  list(tips = as.character(tree$tip.label), children = children, labels = labels, root = root)
}

tree_table_hclust <- function(tree) {
  if (is.null(tree$labels)) stop("`tree` (hclust) has no labels: cluster a matrix with row names.", call. = FALSE)
  n_tip <- length(tree$labels)
  merge <- tree$merge
  # Singletons -j are tip j; merge i is node n_tip + i.
  ids <- ifelse(merge < 0L, -merge, n_tip + merge)
  children <- c(vector("list", n_tip), lapply(seq_len(nrow(merge)), function(i) as.integer(ids[i, ])))
  list(tips = as.character(tree$labels), children = children,
       labels = rep(NA_character_, n_tip + nrow(merge)), root = n_tip + nrow(merge))
}

# A nested list flattened with an explicit stack: a leaf is a part name, an internal node
# a list of exactly two children (its name in attribute "label").
tree_table_nested <- function(tree) {
  nodes <- list(tree)
  children <- list(NULL)
  is_tip <- FALSE
  stack <- 1L
  top <- 1L
  while (top > 0L) {
    id <- stack[top]
    top <- top - 1L
    node <- nodes[[id]]
    if (is.character(node) && length(node) == 1L) {
      is_tip[id] <- TRUE
      next
    }
    if (!is.list(node)) stop("`tree` (nested list) must have part names as leaves.", call. = FALSE)
    if (length(node) != 2L) {
      stop(sprintf("`tree` is not strictly bifurcating: a node has %d children. Nest them in pairs, e.g. list(\"a\", list(\"b\", \"c\")).",
                   length(node)), call. = FALSE)
    }
    kids <- length(nodes) + 1:2
    nodes[kids] <- list(node[[1L]], node[[2L]])
    is_tip[kids] <- FALSE
    children[[id]] <- kids
    children[kids] <- list(NULL)
    stack[top + 1:2] <- kids
    top <- top + 2L
  }
  # Renumber: tips first (as the other kinds), internal nodes after.
  new_id <- integer(length(nodes))
  new_id[is_tip] <- seq_len(sum(is_tip))
  new_id[!is_tip] <- sum(is_tip) + seq_len(sum(!is_tip))
  table_children <- vector("list", length(nodes))
  table_children[new_id] <- lapply(children, function(k) if (is.null(k)) NULL else new_id[k])
  labels <- vapply(nodes, function(node) {
    if (!is.list(node)) return(NA_character_)
    lab <- attr(node, "label")
    if (is.null(lab) || length(lab) != 1L) NA_character_ else as.character(lab)
  }, "")
  table_labels <- character(length(nodes))
  table_labels[new_id] <- labels
  tips <- character(sum(is_tip))
  tips[new_id[is_tip]] <- unlist(nodes[is_tip], use.names = FALSE)
  list(tips = tips, children = table_children, labels = table_labels, root = new_id[1L])
}

# Nodes in preorder (a node, then its children's subtrees in order), by an explicit stack.
tree_preorder <- function(children, root) {
  out <- integer(length(children))
  n <- 0L
  # Preallocated, so that a stack as deep as the tree costs no copies.
  stack <- integer(length(children))
  top <- 1L
  stack[1L] <- root
  while (top > 0L) {
    node <- stack[top]
    top <- top - 1L
    n <- n + 1L
    out[n] <- node
    kids <- children[[node]]
    if (length(kids)) {
      stack[top + seq_along(kids)] <- rev(kids)
      top <- top + length(kids)
    }
  }
  out[seq_len(n)]
}

# The walks balance_layout() needs: tips in left-to-right order, each node's first leaf
# position and number of leaves in that order (the leaves of a subtree are contiguous),
# the internal nodes level by level from the root (gneiss's order of the balances), and in
# post-order (reverse preorder: children before their parent).
tree_walk <- function(tt) {
  pre <- tree_preorder(tt$children, tt$root)
  leaf <- vapply(tt$children[pre], is.null, TRUE)
  tip_order <- pre[leaf]
  first <- size <- integer(length(tt$children))
  first[tip_order] <- seq_along(tip_order)
  size[tip_order] <- 1L
  # Reverse preorder visits children before their parent.
  for (node in rev(pre[!leaf])) {
    kids <- tt$children[[node]]
    first[node] <- first[kids[1L]]
    size[node] <- sum(size[kids])
  }
  queue <- integer(length(pre))
  queue[1L] <- tt$root
  tail <- 1L
  head <- 1L
  while (head <= tail) {
    kids <- tt$children[[queue[head]]]
    head <- head + 1L
    queue[tail + seq_along(kids)] <- kids
    tail <- tail + length(kids)
  }
  bfs <- queue[!vapply(tt$children[queue], is.null, TRUE)]
  list(tip_order = tip_order, first = first, size = size, bfs = bfs, post = rev(pre[!leaf]))
}

#' Balances of compositions
#'
#' Isometric log-ratio balances of a table of counts or proportions, from a bifurcating
#' tree over its parts (see [balance_basis()]).
#'
#' The balances are computed from the tree in one pass over the log table (each node's
#' sum of logs is its children's), never through the basis: a tree of 19,216 taxa
#' (phyloseq's GlobalPatterns) takes seconds and memory of the order of the table, and
#' trees of any depth (a 10,000-part caterpillar) are walked without recursion. The
#' values are those of `balance_basis(tree) %*% log(x)`.
#'
#' Zeros: log-ratios are undefined at zero, so a table with zeros needs `pseudocount`,
#' added to every entry before the log (as philr's `pseudocount`; 0.5 or 1 are usual for
#' counts, a small fraction of the smallest positive value for proportions). Rows are
#' matched to the tree's tips by name; balances do not depend on the samples' totals.
#'
#' @param x Parts in rows (unique names matching the tree's tips), samples in columns: a
#'   matrix, dgCMatrix, DelayedArray, SummarizedExperiment or ExpressionSet, or a phyloseq
#'   object (its `otu_table()`, taxa in rows or columns as `taxa_are_rows()` says, and by
#'   default its `phy_tree()`); counts or proportions, non-negative. A data.frame is
#'   refused (its orientation is ambiguous): give `as.matrix()` or `t()` of it.
#' @param tree See [balance_basis()]; may be left out for a phyloseq object with a tree.
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
balances <- function(x, tree = NULL, pseudocount = NULL, convention = c("gneiss", "philr"), assay = NULL) {
  convention <- match_choice(convention, "convention")
  lay <- balance_layout(tree_of(x, tree))
  logx <- log_composition(x, lay$tips, pseudocount, assay)
  out <- rs_tree_balances(logx, lay$first_child, lay$second_child)[lay$bfs_rows, , drop = FALSE]
  if (convention == "philr") out <- -out
  dimnames(out) <- list(lay$balance_names, colnames(logx))
  out
}

# The tree of the balances: `tree`, or a phyloseq object's phy_tree() when it is NULL.
tree_of <- function(x, tree) {
  if (!is.null(tree)) return(tree)
  if (is(x, "phyloseq")) {
    tree <- phyloseq::phy_tree(x, errorIfNULL = FALSE)
    if (is.null(tree)) stop("`x` is a phyloseq object without a phy_tree(): give `tree`.", call. = FALSE)
    return(tree)
  }
  stop("`tree` is missing: give a bifurcating tree (phylo, hclust or nested list) whose tips are the rows of `x`.",
       call. = FALSE)
}

# log(x + pseudocount) with rows in the order of `parts`, after checks.
log_composition <- function(x, parts, pseudocount, assay) {
  if (is(x, "phyloseq")) x <- phyloseq::otu_table(x)
  x <- feature_matrix(x, "x", assay)
  if (!is.matrix(x)) x <- as.matrix(x)
  if (!is.numeric(x)) stop("`x` must be a numeric matrix of counts or proportions (parts in rows).", call. = FALSE)
  if (is.null(rownames(x))) stop("`x` has no row names: name its parts (rows) as the tree's tips.", call. = FALSE)
  if (anyNA(rownames(x)) || any(!nzchar(rownames(x)))) {
    stop("`x` has rows with a missing or empty name: name every part (row) as a tip of `tree`.", call. = FALSE)
  }
  dup <- unique(rownames(x)[duplicated(rownames(x))])
  if (length(dup)) {
    stop(sprintf("`x` has duplicated part (row) names: %s. Sum or remove the duplicated rows first (e.g. rowsum(x, rownames(x))).",
                 name_list(dup)), call. = FALSE)
  }
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
  convention <- match_choice(convention, "convention")
  lay <- balance_layout(tree)
  n_bal <- length(lay$bfs)
  if (is.null(dim(b))) b <- matrix(b, ncol = 1L)
  if (!is.numeric(b) || nrow(b) != n_bal) {
    stop(sprintf("`b` must have one row per balance of `tree` (%d).", n_bal), call. = FALSE)
  }
  if (!is.null(rownames(b)) && !identical(rownames(b), lay$balance_names)) {
    stop("`b`'s row names are not the balances of `tree` in order: use rows as returned by balances().", call. = FALSE)
  }
  clr <- tree_clr(b, lay, if (convention == "philr") -1 else 1)
  clr <- sweep(clr, 2L, apply(clr, 2L, max))
  e <- exp(clr)
  out <- sweep(e, 2L, colSums(e), `/`)
  dimnames(out) <- list(lay$tips, colnames(b))
  out
}

# Centred log-ratios (parts in tip order x samples) of balances `b` (rows in gneiss's
# order): a part's clr is the sum over its ancestors of the basis coefficient of its side
# times the ancestor's balance, accumulated from the root down (preorder = reverse of
# post-order), one node at a time over all samples, without forming the basis.
tree_clr <- function(b, lay, sign) {
  n_tip <- length(lay$tips)
  acc <- matrix(0, length(lay$children), ncol(b))
  row_of <- integer(length(lay$children))
  row_of[lay$bfs] <- seq_along(lay$bfs)
  for (node in rev(lay$post)) {
    kids <- lay$children[[node]]
    s <- lay$size[kids[1L]]
    r <- lay$size[kids[2L]]
    bk <- sign * b[row_of[node], ]
    acc[kids[1L], ] <- acc[node, ] - sqrt(r / (s * (r + s))) * bk
    acc[kids[2L], ] <- acc[node, ] + sqrt(s / (r * (r + s))) * bk
  }
  acc[lay$tip_order, , drop = FALSE]
}

#' Mixed models on balances (the gneiss workflow)
#'
#' Balances of a composition from a tree ([balances()]), then one linear mixed model per
#' balance with a random intercept per group ([lmm_table()]), as gneiss's `mixedlm()`, or
#' one linear model per balance without `groups` and random terms, as gneiss's `ols()`.
#' `predict()` on the result gives balances, or proportions with `type = "proportion"`.
#'
#' @param x Parts x samples counts or proportions (see [balances()]).
#' @param formula One-sided formula of the fixed effects (`~ time + treatment`); it may also
#'   carry its own random-effects term, e.g. `~ time + (1 + time | patient)`, when `groups`
#'   is `NULL`. Without random terms nor `groups`, one linear model (OLS) per balance, as
#'   gneiss's `ols` (see [lmm_table()] and [prediction_error()]).
#' @param data A data.frame with one row per sample (column of `x`); by default
#'   `colData(x)` for a SummarizedExperiment, `pData(x)` for an ExpressionSet,
#'   `sample_data(x)` for a phyloseq object.
#' @param tree See [balance_basis()]; by default the `phy_tree()` of a phyloseq object.
#' @param groups Column of `data` naming the group of each sample (e.g. the patient):
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
balance_lmm <- function(x, formula, data, tree = NULL, groups = NULL, pseudocount = NULL,
                        convention = c("gneiss", "philr"), assay = NULL, ...) {
  convention <- match_choice(convention, "convention")
  tree <- tree_of(x, tree)
  b <- balances(x, tree, pseudocount = pseudocount, convention = convention, assay = assay)
  if (missing(data)) data <- sample_metadata(x)
  if (is(data, "DataFrame")) data <- as.data.frame(data, optional = TRUE)
  if (!is.null(groups)) {
    if (!is.character(groups) || length(groups) != 1L) stop("`groups` must be one column name of `data`.", call. = FALSE)
    if (!is.data.frame(data) || !groups %in% names(data)) {
      stop(sprintf("`data` has no column `%s` (named by `groups`).", groups), call. = FALSE)
    }
    if (!inherits(formula, "formula") || length(formula) != 2L) {
      stop("`formula` must be one-sided, e.g. ~ time + treatment.", call. = FALSE)
    }
    formula <- stats::as.formula(call("~", call("+", formula[[2L]], call("(", call("|", 1, as.name(groups))))),
                                 environment(formula))
  }
  fit <- lmm_run(b, formula, data, ..., arg_names = list(y = "x", data = "data", rows = "parts"))
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
  check_dots_used(..., call_name = "predict")
  type <- match_choice(type, "type")
  pred <- predict.sceffects_lmm(object, newdata = newdata, re.form = re.form)
  if (type == "balance") return(pred)
  tb <- attr(object, "balance_tree")
  balances_to_proportions(pred, tb$tree, tb$convention)
}

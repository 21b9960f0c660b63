# Balances: the basis (orthonormal, gneiss's and philr's signs), balances against a direct
# computation of sqrt(rs/(r+s)) log(g(num)/g(den)), the round trip to proportions, trees
# of every kind, and the gneiss workflow against lmm_table() and lme4.

skbio_tree <- list(structure(list("b", "c"), label = "a"), "d")
attr(skbio_tree, "label") <- "root"

test_that("the basis is scikit-bio's tree_basis, orthonormal, with gneiss's sign", {
  basis <- balance_basis(skbio_tree)
  expected <- rbind(root = c(-1, -1, 2) / sqrt(6), a = c(-1, 1, 0) / sqrt(2))
  colnames(expected) <- c("b", "c", "d")
  expect_equal(basis, expected)
  expect_equal(balance_basis(skbio_tree, convention = "philr"), -expected)
  set.seed(1)
  big <- hclust(dist(matrix(rnorm(40), 20, dimnames = list(paste0("t", 1:20), NULL))))
  b <- balance_basis(big)
  expect_equal(dim(b), c(19L, 20L))
  expect_equal(tcrossprod(b), diag(19), ignore_attr = TRUE)
  expect_equal(unname(rowSums(b)), rep(0, 19))
  expect_equal(rownames(b), paste0("y", 0:18))
})

test_that("balances equal sqrt(rs/(r+s)) log(g(num)/g(den)) computed directly", {
  set.seed(2)
  x <- matrix(rpois(5 * 6, 20) + 1, 5, dimnames = list(letters[1:5], paste0("s", 1:6)))
  tree <- list(list("a", list("b", "c")), list("d", "e"))
  b <- balances(x, tree)
  g <- function(parts) exp(colMeans(log(x[parts, , drop = FALSE])))
  bal <- function(den, num) sqrt(length(num) * length(den) / (length(num) + length(den))) * log(g(num) / g(den))
  direct <- rbind(bal(c("a", "b", "c"), c("d", "e")), bal("a", c("b", "c")), bal("d", "e"), bal("b", "c"))
  expect_equal(unname(b), unname(direct))
  expect_equal(colnames(b), colnames(x))
  expect_equal(balances(x, tree, convention = "philr"), -b)
  # scale invariance: proportions give the same balances as counts
  expect_equal(balances(sweep(x, 2, colSums(x), `/`), tree), b)
})

test_that("balances_to_proportions() inverts balances()", {
  set.seed(3)
  x <- matrix(rgamma(6 * 4, 2), 6, dimnames = list(paste0("p", 1:6), NULL))
  tree <- list(list("p1", list("p2", "p3")), list(list("p4", "p5"), "p6"))
  p <- balances_to_proportions(balances(x, tree), tree)
  expect_equal(p, sweep(x, 2, colSums(x), `/`)[rownames(p), ])
  expect_equal(unname(colSums(p)), rep(1, 4))
  for (conv in c("gneiss", "philr")) {
    expect_equal(balances_to_proportions(balances(x, tree, convention = conv), tree, conv),
                 sweep(x, 2, colSums(x), `/`)[rownames(p), ])
  }
  # with zeros: the round trip gives back the table plus its pseudocount, closed
  x[1, 1] <- 0
  p0 <- balances_to_proportions(balances(x, tree, pseudocount = 0.5), tree)
  expect_equal(p0, sweep(x + 0.5, 2, colSums(x + 0.5), `/`)[rownames(p0), ])
})

test_that("phylo and hclust trees give the basis of the same nested tree", {
  # "((b,c)a,d)root;" as ape stores it: tips 1-3, root 4, node "a" 5
  phy <- structure(list(edge = rbind(c(4L, 5L), c(5L, 1L), c(5L, 2L), c(4L, 3L)),
                        tip.label = c("b", "c", "d"), Nnode = 2L, node.label = c("root", "a")),
                   class = "phylo")
  expect_equal(balance_basis(phy), balance_basis(skbio_tree))
  multi <- structure(list(edge = cbind(4L, 1:3), tip.label = c("a", "b", "c"), Nnode = 1L), class = "phylo")
  expect_error(balance_basis(multi), "not strictly bifurcating: node 4 has 3 children.*multi2di")
  hc <- hclust(dist(c(a = 1, b = 1.1, c = 5)))
  basis <- balance_basis(hc)
  expect_equal(abs(basis), abs(balance_basis(list("c", list("a", "b")))[, colnames(basis)]))
  expect_equal(tcrossprod(basis), diag(2), ignore_attr = TRUE)
})

test_that("ape's trees: read, and multifurcations resolved by multi2di()", {
  skip_if_not_installed("ape")
  expect_equal(balance_basis(ape::read.tree(text = "((b,c)a,d)root;")), balance_basis(skbio_tree))
  multi <- ape::read.tree(text = "(a,b,c);")
  expect_error(balance_basis(multi), "multi2di")
  expect_equal(dim(balance_basis(ape::multi2di(multi))), c(2L, 3L))
})

test_that("bad trees and tables stop with a message naming the argument", {
  expect_error(balance_basis(list("a", "b", "c")), "`tree` is not strictly bifurcating")
  expect_error(balance_basis(list("a", "a")), "duplicated tip")
  expect_error(balance_basis(42), "`tree` must be")
  x <- matrix(1:6 + 0, 3, dimnames = list(c("a", "b", "c"), NULL))
  tree <- list(list("a", "b"), "c")
  expect_error(balances(x[1:2, ], tree), "`x` has no row for tip c")
  expect_error(balances(t(x), tree), "t\\(x\\)|no row names|no row for")
  x0 <- x
  x0[1, 1] <- 0
  expect_error(balances(x0, tree), "`x` contains zeros.*pseudocount")
  expect_error(balances(-x, tree), "negative")
  expect_error(balances(x, tree, pseudocount = -1), "`pseudocount`")
  expect_error(balances_to_proportions(matrix(0, 3, 2), tree), "`b` must have one row per balance")
})

test_that("balance_lmm() is balances() then lmm_table(), and matches lme4", {
  skip_if_not_installed("lme4")
  set.seed(4)
  parts <- paste0("taxon", 1:5)
  tree <- list(list("taxon1", "taxon2"), list("taxon3", list("taxon4", "taxon5")))
  meta <- data.frame(patient = factor(rep(1:8, each = 4)), time = rep(0:3, 8),
                     treatment = factor(rep(c("A", "B"), each = 16)))
  x <- matrix(rpois(5 * 32, 40) + 1, 5, dimnames = list(parts, paste0("s", 1:32)))
  fit <- balance_lmm(x, ~ time + treatment, meta, tree, groups = "patient")
  direct <- lmm_table(balances(x, tree), ~ time + treatment + (1 | patient), meta)
  expect_equal(as.data.frame(fit)$estimate, as.data.frame(direct)$estimate)
  b1 <- balances(x, tree)[1, ]
  ref <- lme4::lmer(b ~ time + treatment + (1 | patient), cbind(meta, b = b1),
                    control = lme4::lmerControl(optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14)))
  expect_equal(unname(coef(fit)[1, ]), unname(lme4::fixef(ref)), tolerance = 1e-5)
  prop <- predict(fit, type = "proportion")
  expect_equal(dim(prop), c(5L, 32L))
  expect_equal(unname(colSums(prop)), rep(1, 32))
  expect_equal(balances(prop, tree), predict(fit), ignore_attr = TRUE)
  pop <- predict(fit, newdata = meta[1:4, ], re.form = NA, type = "proportion")
  expect_equal(dim(pop), c(5L, 4L))
  expect_error(balance_lmm(x, ~ time, meta, tree, groups = "visit"), "`data` has no column `visit`")
})

# The recursive implementation the iterative walks replaced, as a reference on small trees.
recursive_basis <- function(tree) {
  leaves <- function(node) if (is.character(node)) node else c(leaves(node[[1L]]), leaves(node[[2L]]))
  nested <- if (inherits(tree, "hclust")) {
    build <- function(i) if (i < 0L) tree$labels[-i] else lapply(tree$merge[i, ], build)
    build(nrow(tree$merge))
  } else if (inherits(tree, "phylo")) {
    n_tip <- length(tree$tip.label)
    kids <- split(tree$edge[, 2L], factor(tree$edge[, 1L], levels = seq_len(n_tip + tree$Nnode)))
    build <- function(node) if (node <= n_tip) tree$tip.label[node] else lapply(kids[[node]], build)
    build(n_tip + 1L)
  } else tree
  tips <- leaves(nested)
  rows <- list()
  queue <- list(nested)
  while (length(queue)) {
    node <- queue[[1L]]
    queue <- queue[-1L]
    if (is.character(node)) next
    left <- leaves(node[[1L]])
    right <- leaves(node[[2L]])
    r <- length(right)
    s <- length(left)
    v <- numeric(length(tips))
    v[match(right, tips)] <- sqrt(s / (r * (r + s)))
    v[match(left, tips)] <- -sqrt(r / (s * (r + s)))
    rows[[length(rows) + 1L]] <- v
    queue <- c(queue, list(node[[1L]], node[[2L]]))
  }
  basis <- do.call(rbind, rows)
  dimnames(basis) <- list(paste0("y", seq_along(rows) - 1L), tips)
  basis
}

test_that("the iterative tree walks give the recursive basis on small trees", {
  set.seed(11)
  m <- matrix(rnorm(60), 30, dimnames = list(paste0("t", 1:30), NULL))
  for (method in c("complete", "single", "average")) {
    hc <- hclust(dist(m), method)
    expect_equal(balance_basis(hc), recursive_basis(hc))
  }
  nested <- list(list("a", list("b", list("c", "d"))), list(list("e", "f"), "g"))
  expect_equal(balance_basis(nested), recursive_basis(nested))
  skip_if_not_installed("ape")
  for (tr in list(ape::rtree(25, tip.label = paste0("p", 1:25)), ape::stree(12, "left"), ape::stree(8, "right"))) {
    if (is.null(tr$tip.label) || anyNA(tr$tip.label)) tr$tip.label <- paste0("p", seq_along(tr$tip.label))
    expect_equal(balance_basis(tr), recursive_basis(tr))
  }
})

test_that("deep trees (caterpillars, single linkage of 1,000 taxa) do not exhaust the C stack", {
  set.seed(12)
  m <- matrix(cumsum(rexp(1000)), 1000, dimnames = list(paste0("t", 1:1000), NULL))
  hc <- hclust(dist(m), "single")
  b <- balance_basis(hc)
  expect_equal(dim(b), c(999L, 1000L))
  expect_equal(unname(rowSums(b)), rep(0, 999), tolerance = 1e-10)
  expect_equal(sum(b[1L, ] != 0), 1000L)
  x <- matrix(rpois(1000 * 4, 30) + 1, 1000, dimnames = list(rownames(m), paste0("s", 1:4)))
  expect_equal(dim(balances(x, hc)), c(999L, 4L))
  deep <- Reduce(function(acc, tip) list(acc, tip), paste0("t", 2:3000), "t1")
  expect_equal(dim(balance_basis(deep)), c(2999L, 3000L))
  skip_if_not_installed("ape")
  cat200 <- ape::stree(200, "left")
  cat200$tip.label <- paste0("p", 1:200)
  bc <- balance_basis(cat200)
  expect_equal(dim(bc), c(199L, 200L))
  expect_equal(tcrossprod(bc), diag(199), ignore_attr = TRUE, tolerance = 1e-10)
  meta <- data.frame(g = factor(rep(1:3, each = 4)), time = rep(1:4, 3))
  counts <- matrix(rpois(200 * 12, 20) + 1, 200, dimnames = list(cat200$tip.label, NULL))
  fit <- balance_lmm(counts, ~ time, meta, cat200, groups = "g")
  expect_equal(length(unique(fit$feature)), 199L)
})

test_that("balances() refuses duplicated parts and unnamed tips", {
  x <- matrix(c(1, 2, 3, 4, 5, 6, 7, 8), 4, dimnames = list(c("a", "b", "c", "a"), NULL))
  tree <- list(list("a", "b"), "c")
  expect_error(balances(x, tree), "`x` has duplicated part \\(row\\) names: a")
  expect_error(balance_basis(list(list("a", NA_character_), "c")), "`tree` has 1 tip with a missing or empty name")
  expect_error(balance_basis(list(list("a", ""), "c")), "missing or empty name")
  hc <- hclust(dist(c(a = 1, b = 2, c = 4)))
  hc$labels[2] <- NA
  expect_error(balance_basis(hc), "missing or empty name")
  expect_error(balance_basis(list(list("a", "b"), "a")), "duplicated tip names: a")
  skip_if_not_installed("ape")
  phy <- ape::read.tree(text = "((a,b),c);")
  phy$tip.label[3] <- ""
  expect_error(balances(matrix(1, 3, 1, dimnames = list(c("a", "b", "c"), NULL)), phy), "missing or empty name")
})

test_that("balance_lmm()'s errors name its own arguments, not lmm_table()'s", {
  set.seed(5)
  parts <- paste0("taxon", 1:4)
  tree <- list(list("taxon1", "taxon2"), list("taxon3", "taxon4"))
  meta <- data.frame(patient = factor(rep(1:6, each = 3)), time = rep(1:3, 6))
  x <- matrix(rpois(4 * 18, 50), 4, dimnames = list(parts, NULL))
  expect_error(balance_lmm(x, ~ time, meta[1:10, ], tree, groups = "patient"),
               "`data` has 10 rows but `x` has 18 samples")
  expect_error(balance_lmm(x, ~ dose, meta, tree, groups = "patient"), "`data` has no column dose")
  bad <- meta
  bad$time[1] <- NA
  expect_error(balance_lmm(x, ~ time, bad, tree, groups = "patient"), "`data` has missing values in time")
  named <- x
  colnames(named) <- paste0("s", 1:18)
  m2 <- meta
  rownames(m2) <- paste0("r", 1:18)
  expect_error(balance_lmm(named, ~ time, m2, tree, groups = "patient"), "`data` has no row for samples s1.*of `x`")
  expect_error(balance_lmm(x, ~ time, meta, tree, groups = "patient", REML = NA), "`REML`")
  expect_error(balance_lmm(x, ~ time, meta, tree, groups = "patient", BPPARAM = "x"), "`BPPARAM`")
  x0 <- x
  meta0 <- meta
  tree0 <- tree
  fit <- balance_lmm(x, ~ time, meta, tree, groups = "patient")
  predict(fit, type = "proportion")
  expect_identical(x, x0)
  expect_identical(meta, meta0)
  expect_identical(tree, tree0)
})

test_that("balances() takes a phyloseq object: otu_table either way round, phy_tree, sample_data (issue 13)", {
  skip_if_not_installed("phyloseq")
  skip_if_not_installed("ape")
  set.seed(13)
  tree <- ape::rtree(6, tip.label = paste0("otu", 1:6))
  x <- matrix(rpois(6 * 12, 30) + 1, 6, dimnames = list(paste0("otu", 1:6), paste0("s", 1:12)))
  meta <- data.frame(subject = factor(rep(1:4, each = 3)), time = rep(0:2, 4), row.names = colnames(x))
  ref <- balances(x, tree)
  ps <- phyloseq::phyloseq(phyloseq::otu_table(x, taxa_are_rows = TRUE), phy_tree = tree,
                           phyloseq::sample_data(meta))
  expect_equal(balances(ps), ref)
  # taxa in columns: read the other way round, from taxa_are_rows()
  ps_t <- phyloseq::phyloseq(phyloseq::otu_table(t(x), taxa_are_rows = FALSE), phy_tree = tree)
  expect_equal(balances(ps_t), ref)
  expect_equal(balances(phyloseq::otu_table(t(x), taxa_are_rows = FALSE), tree), ref)
  # an explicit tree is used over the object's
  hc <- stats::hclust(stats::dist(log(x)))
  expect_equal(balances(ps, hc), balances(x, hc))
  expect_error(balances(phyloseq::phyloseq(phyloseq::otu_table(x, taxa_are_rows = TRUE), phyloseq::sample_data(meta))),
               "without a phy_tree\\(\\): give `tree`")
  expect_error(balances(x), "`tree` is missing")
  # balance_lmm() takes its tree and metadata from the object
  fit <- balance_lmm(ps, ~ time, groups = "subject")
  expect_equal(coef(fit), coef(balance_lmm(x, ~ time, meta, tree, groups = "subject")))
})

test_that("balances() refuses a data.frame (ambiguous orientation) and takes an ExpressionSet (issue 13)", {
  x <- matrix(c(10, 20, 30, 5, 5, 40), 3, dimnames = list(c("a", "b", "c"), c("s1", "s2")))
  tree <- list(list("a", "b"), "c")
  expect_error(balances(as.data.frame(x), tree), "`x` is a data.frame, whose orientation is ambiguous.*t\\(x\\)")
  skip_if_not_installed("Biobase")
  expect_equal(balances(Biobase::ExpressionSet(assayData = x), tree), balances(x, tree))
})

test_that("balances() from the tree equal the dense basis times log(x) to 1e-12 (issue 17)", {
  set.seed(17)
  m <- matrix(rnorm(80), 40, dimnames = list(paste0("t", 1:40), NULL))
  x <- matrix(rgamma(40 * 7, 0.5) + 0.01, 40, dimnames = list(rownames(m), paste0("s", 1:7)))
  trees <- list(hclust(dist(m), "complete"), hclust(dist(m), "single"), hclust(dist(m), "average"),
                list(list("t1", list("t2", "t3")), list("t4", "t5")))
  if (requireNamespace("ape", quietly = TRUE)) {
    trees <- c(trees, list(ape::rtree(40, tip.label = rownames(m)), ape::read.tree(text = "((t1,t2)n1,(t3,t4)n2)root;")))
  }
  for (tree in trees) {
    basis <- balance_basis(tree)
    xs <- x[colnames(basis), , drop = FALSE]
    for (conv in c("gneiss", "philr")) {
      b <- balances(xs, tree, convention = conv)
      dense <- balance_basis(tree, convention = conv) %*% log(xs[colnames(basis), ])
      expect_equal(b, dense, tolerance = 1e-12)
      expect_lt(max(abs(b - dense)), 1e-12)
    }
    sparse <- balance_basis(tree, sparse = TRUE)
    expect_s4_class(sparse, "dgCMatrix")
    expect_equal(as.matrix(sparse), basis)
  }
})

test_that("a 10,000-tip caterpillar works: balances, sparse basis, round trip (issue 17)", {
  skip_if_not_installed("ape")
  cat10k <- ape::stree(10000, "left")
  cat10k$tip.label <- paste0("p", 1:10000)
  set.seed(18)
  x <- matrix(rgamma(10000 * 3, 2), 10000, dimnames = list(cat10k$tip.label, NULL))
  b <- balances(x, cat10k)
  expect_equal(dim(b), c(9999L, 3L))
  # An orthonormal basis keeps the clr's sum of squares (Parseval), at any depth.
  clr <- sweep(log(x), 2, colMeans(log(x)))
  expect_equal(colSums(b^2), colSums(clr^2), tolerance = 1e-10)
  # the root splits one tip from the other 9,999; its value checked directly
  tt <- balance_taxa(cat10k, 1)
  num <- tt$taxon[tt$side == "numerator"]
  den <- tt$taxon[tt$side == "denominator"]
  r <- length(num)
  s <- length(den)
  direct <- sqrt(r * s / (r + s)) * (colMeans(log(x[num, , drop = FALSE])) - colMeans(log(x[den, , drop = FALSE])))
  expect_equal(unname(b[1, ]), unname(direct), tolerance = 1e-12)
  p <- balances_to_proportions(b, cat10k)
  expect_equal(p, sweep(x, 2, colSums(x), `/`)[rownames(p), ], tolerance = 1e-10)
})

test_that("balance_taxa() gives numerator and denominator taxa with taxonomy (issue 17)", {
  tree <- list(structure(list("a", "b"), label = "n1"), structure(list("c", structure(list("d", "e"), label = "n3")), label = "n2"))
  attr(tree, "label") <- "root"
  tt <- balance_taxa(tree)
  basis <- balance_basis(tree)
  for (k in rownames(basis)) {
    rows <- tt[tt$balance == k, ]
    expect_setequal(rows$taxon[rows$side == "numerator"], colnames(basis)[basis[k, ] > 0])
    expect_setequal(rows$taxon[rows$side == "denominator"], colnames(basis)[basis[k, ] < 0])
  }
  ph <- balance_taxa(tree, "root", convention = "philr")
  expect_setequal(ph$taxon[ph$side == "numerator"], c("a", "b"))
  tax <- data.frame(Phylum = c("P1", "P1", "P2", "P2", "P3"), Genus = letters[11:15], row.names = letters[1:5])
  withtax <- balance_taxa(tree, c("n2", "n3"), taxonomy = tax)
  expect_equal(withtax$Phylum, tax[withtax$taxon, "Phylum"])
  expect_equal(unique(withtax$balance), c("n2", "n3"))
  expect_equal(balance_taxa(tree, 2), balance_taxa(tree, "n1"))
  expect_error(balance_taxa(tree, "nope"), "`balance` names no balance of the tree: nope")
  expect_error(balance_taxa(tree, 9), "`balance` must be balance names or indices from 1 to 4")
  expect_error(balance_taxa(tree, taxonomy = tax[1:3, ]), "`taxonomy` has no row for taxa d, e")
  skip_if_not_installed("phyloseq")
  data("GlobalPatterns", package = "phyloseq", envir = environment())
  gp <- phyloseq::prune_taxa(phyloseq::taxa_names(GlobalPatterns)[1:50], GlobalPatterns)
  gt <- balance_taxa(gp, 1)
  expect_true(all(c("Kingdom", "Phylum") %in% names(gt)))
  expect_setequal(gt$taxon, phyloseq::taxa_names(gp))
  expect_equal(gt$Phylum, unname(as.character(phyloseq::tax_table(gp)[gt$taxon, "Phylum"])))
})

test_that("correlation_linkage() is Ward on the variance of log-ratios; gradient_linkage() sorts by niche (issue 17)", {
  skip_if_not_installed("ape")
  set.seed(19)
  x <- matrix(rpois(8 * 15, 30) + 1, 8, dimnames = list(paste0("otu", 1:8), NULL))
  tree <- correlation_linkage(x)
  expect_s3_class(tree, "phylo")
  expect_setequal(tree$tip.label, rownames(x))
  expect_true(ape::is.binary(tree))
  # reference: variance of every log-ratio by brute force, Ward (scipy's = ward.D2)
  lx <- log(x)
  vlr <- outer(1:8, 1:8, Vectorize(function(i, j) var(lx[i, ] - lx[j, ])))
  dimnames(vlr) <- list(rownames(x), rownames(x))
  ref <- ape::as.phylo(hclust(as.dist(vlr), "ward.D2"))
  expect_true(ape::all.equal.phylo(tree, ref, use.edge.length = TRUE))
  expect_equal(dim(balances(x, tree)), c(7L, 15L))
  # proportional parts are joined first
  x[2, ] <- 5 * x[1, ]
  hc <- ape::as.hclust.phylo(correlation_linkage(x))
  expect_setequal(hc$labels[-hc$merge[1, ]], c("otu1", "otu2"))
  # gradient: niche = proportion-weighted mean of the gradient, then average linkage
  ph <- seq(4, 9, length.out = 15)
  g <- gradient_linkage(x, ph)
  props <- sweep(x, 2, colSums(x), `/`)
  niche <- sapply(1:8, function(i) sum(props[i, ] * ph) / sum(props[i, ]))
  names(niche) <- rownames(x)
  expect_true(ape::all.equal.phylo(g, ape::as.phylo(hclust(dist(niche), "average")), use.edge.length = TRUE))
  meta <- data.frame(ph = ph)
  expect_true(ape::all.equal.phylo(gradient_linkage(x, "ph", data = meta), g, use.edge.length = TRUE))
  expect_error(gradient_linkage(x, ph[-1]), "`gradient` must be a finite numeric vector with one value per sample \\(15\\)")
  expect_error(gradient_linkage(x, "pH", data = meta), "`data` has no column `pH`")
  x0 <- x
  x0[1, 1] <- 0
  expect_error(correlation_linkage(x0), "pseudocount")
  expect_s3_class(correlation_linkage(x0, pseudocount = 0.5), "phylo")
})

test_that("balance plots: heatmap beside the tree, boxplots, taxonomy bars (issue 17)", {
  set.seed(20)
  x <- matrix(rpois(10 * 8, 30) + 1, 10, dimnames = list(paste0("otu", 1:10), paste0("s", 1:8)))
  tree <- hclust(dist(log(x)))
  meta <- data.frame(site = rep(c("gut", "skin"), 4), ph = 1:8, row.names = colnames(x))
  p <- plot_balance_heatmap(x, tree, data = meta, order_by = "ph", values = "clr", highlight = "y1")
  expect_s3_class(p, "ggplot")
  built <- ggplot2::ggplot_build(p)
  tiles <- built$data[[1]]
  expect_equal(nrow(tiles), 80L)
  segs <- p$layers[[2]]$data
  # one vertical and one horizontal segment per edge (2 per internal node)
  expect_equal(nrow(segs), 4L * 9L)
  expect_setequal(unique(segs$side), c("tree", "numerator", "denominator"))
  # the horizontal edges reaching the tips (x = 0.5) of y1's numerator sit at its taxa's rows
  num <- balance_taxa(tree, "y1")
  num <- num$taxon[num$side == "numerator"]
  tip_edges <- segs[segs$xend == 0.5 & segs$y == segs$yend & segs$side == "numerator", ]
  expect_setequal(tip_edges$y, match(num, colnames(balance_basis(tree))))
  expect_error(plot_balance_heatmap(x, tree, data = meta, order_by = "nope"), "`order_by` must name one column")
  b <- balances(x, tree)
  bp <- plot_balance_boxplot(b, c("y0", "y2"), by = "site", data = meta)
  expect_s3_class(bp, "ggplot")
  expect_equal(nrow(bp$data), 16L)
  expect_equal(bp$data$value[bp$data$balance == "y2"], unname(b["y2", ]))
  expect_error(plot_balance_boxplot(b, "y0", by = "nope", data = meta), "`by` must name one column")
  tax <- data.frame(Phylum = rep(c("A", "B", NA), length.out = 10), row.names = rownames(x))
  tp <- plot_balance_taxa(tree, "y0", tax, level = "Phylum")
  expect_s3_class(tp, "ggplot")
  tt <- balance_taxa(tree, "y0", tax)
  d <- tp$data
  expect_equal(sum(d$Freq[d$side == "numerator"]), sum(tt$side == "numerator"))
  expect_true("unassigned" %in% as.character(d$group))
  expect_error(plot_balance_taxa(tree, "y0", tax, level = "Genus"), "`level` must name one column")
})

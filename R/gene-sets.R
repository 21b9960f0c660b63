# Gene sets: per-cell scores. A score is linear in the expression values, so the core
# computes it as one weighted sum per cell over the set's genes, straight from sparse data.

#' Score gene sets in every cell
#'
#' `"zmean"`: each gene is z-scored over all cells (mean and SD with n - 1, zeros of sparse
#' data included; genes with SD <= 1e-12 are skipped) and the score is the mean z over the
#' set's genes (it needs at least 2 cells). `"mean"`: the mean expression over the set's
#' genes. Sets with fewer than `min_genes` genes found get `NA` scores and a warning.
#'
#' @param x A SingleCellExperiment / SummarizedExperiment, or a matrix / dgCMatrix /
#'   DelayedArray / ExpressionSet with genes in rows (cells in rows is an error: use
#'   `t(x)`; a data.frame is refused, its orientation being ambiguous).
#' @param sets A named list of character vectors of gene names.
#' @param assay Assay of `x` (default `"logcounts"` if present, else the first).
#' @param method `"zmean"` or `"mean"`.
#' @param min_genes Minimum number of a set's genes found in `x`.
#' @param add When `x` is a SummarizedExperiment, add the scores as `colData` columns
#'   (named by the sets) and return `x`; otherwise return the scores. Existing `colData`
#'   columns are never overwritten: a set named like one is an error (rename the set).
#' @param threads Number of threads.
#' @param BPPARAM `NULL` (run here) or a BiocParallel parameter object: the genes of the sets
#'   are split across its workers, whose partial scores are summed (a TENx file: its cells
#'   are split, each worker reading its range). On a TENx file `"mean"` is one pass over
#'   the cells and `"zmean"` two (gene moments, then scores).
#' @param verbose Show messages (scores replaced in `colData`)? `FALSE`, or
#'   `options(sceffects.verbose = FALSE)` for the session, silences them.
#' @return `x` with score columns (and the report in `S4Vectors::metadata(x)$gene_set_scores`),
#'   or a cells x sets matrix with attribute `report`: a data.frame of set, genes in the set,
#'   genes found, genes used.
#' @export
#' @examples
#' sce <- simulate_trial(n_genes = 300, n_cells = 2000, seed = 1)
#' sets <- S4Vectors::metadata(sce)$gene_sets
#' sce <- score_gene_sets(sce, sets)
#' head(SummarizedExperiment::colData(sce)[, names(sets)])
score_gene_sets <- function(x, sets, assay = NULL, method = c("zmean", "mean"), min_genes = 3,
                            add = TRUE, threads = NULL, BPPARAM = NULL,
                            verbose = getOption("sceffects.verbose", TRUE)) {
  local_verbose(verbose)
  method <- match_choice(method, "method")
  threads <- resolve_threads(threads)
  check_bpparam(BPPARAM)
  check_gene_sets(sets)
  min_genes <- check_count(min_genes, "min_genes")
  add <- check_flag(add, "add")
  is_se <- is(x, "SummarizedExperiment")
  if (is_se && add) check_score_columns(x, names(sets))
  m <- if (is_se) {
    if (is.null(assay)) assay <- if ("logcounts" %in% assayNames(x)) "logcounts" else 1L
    se_assay(x, assay, "x")
  } else x
  src <- numeric_features(m, "x")
  check_genes_in_rows(src, sets)
  n <- src$n_samples
  if (method == "zmean" && n < 2L) {
    stop(sprintf("`method = \"zmean\"` z-scores each gene over the cells and needs at least 2 cells; `x` has %d. Use method = \"mean\".",
                 n), call. = FALSE)
  }
  found <- lapply(sets, function(s) unique(s[s %in% src$names]))
  union <- unique(unlist(found))
  moments <- feature_moments(src, match(union, src$names), threads, BPPARAM)
  # Sums are of each gene shifted by one of its values (moments[, 3]), so a large common
  # level does not cancel away the spread.
  mu <- moments[, 3] + moments[, 1] / n
  sd <- sqrt(pmax(moments[, 2] - moments[, 1]^2 / n, 0) / (n - 1))
  usable <- if (method == "zmean") sd > 1e-12 else rep(TRUE, length(union))
  weights <- matrix(0, length(union), length(sets))
  shift <- numeric(length(sets))
  used <- integer(length(sets))
  for (k in seq_along(sets)) {
    idx <- match(found[[k]], union)
    idx <- idx[usable[idx]]
    used[k] <- length(idx)
    if (length(found[[k]]) < min_genes || used[k] == 0L) next
    scale <- if (method == "zmean") 1 / sd[idx] else rep(1, length(idx))
    weights[idx, k] <- scale / used[k]
    shift[k] <- if (method == "zmean") sum(mu[idx] * scale) / used[k] else 0
  }
  scores <- weighted_feature_sums(src, match(union, src$names), weights, threads, BPPARAM)
  scores <- sweep(scores, 2L, shift, `-`)
  bad <- vapply(found, length, 1L) < min_genes | used == 0L
  scores[, bad] <- NA_real_
  dimnames(scores) <- list(src$samples, names(sets))
  report <- data.frame(set = names(sets), genes = lengths(sets), found = lengths(found), used = used,
                       stringsAsFactors = FALSE)
  if (any(bad)) {
    warning(sprintf("Gene set(s) with fewer than %d usable genes in `x` get NA scores: %s.", min_genes,
                    paste(names(sets)[bad], collapse = ", ")), call. = FALSE)
  }
  if (is_se && add) {
    for (k in seq_along(sets)) SummarizedExperiment::colData(x)[[names(sets)[k]]] <- scores[, k]
    earlier <- S4Vectors::metadata(x)$gene_set_scores
    earlier <- earlier[!earlier$set %in% report$set, , drop = FALSE]
    S4Vectors::metadata(x)$gene_set_scores <- rbind(earlier, report)
    return(x)
  }
  attr(scores, "report") <- report
  scores
}

# Scores are added as colData columns named by the sets; an existing column is never
# overwritten, unless an earlier score_gene_sets() wrote it (re-running a report chunk
# must work), which is said.
check_score_columns <- function(x, set_names, verbose = TRUE) {
  clash <- intersect(set_names, colnames(SummarizedExperiment::colData(x)))
  ours <- S4Vectors::metadata(x)$gene_set_scores$set
  rescored <- intersect(clash, ours)
  if (length(rescored)) say(sprintf("Replacing the scores of an earlier score_gene_sets() call: %s.", name_list(rescored)), verbose)
  clash <- setdiff(clash, ours)
  if (length(clash)) {
    stop(sprintf("`sets` name(s) %s are already colData(x) columns, which score_gene_sets() does not overwrite: rename the sets (e.g. names(sets) <- paste0(\"score_\", names(sets))), remove those columns, or use add = FALSE.",
                 name_list(clash)), call. = FALSE)
  }
}

# Genes are rows: when no gene of any set is a row name but some are column names, `x` is
# the wrong way round.
check_genes_in_rows <- function(src, sets) {
  genes <- unique(unlist(sets))
  if (any(genes %in% src$names) || !any(genes %in% src$samples)) return(invisible())
  stop(sprintf("`x` seems to have genes in columns: no gene of `sets` is a row name of `x`, but %d are column names. Genes must be rows: use t(x).",
               sum(genes %in% src$samples)), call. = FALSE)
}

# Sum and sum of squares of features `rows` over all samples, each shifted by its third
# column. A TENx file: one pass over its column blocks (sparse sums are not shifted, so
# they add up over blocks).
feature_moments <- function(src, rows, threads, BPPARAM = NULL) {
  if (!length(rows)) return(matrix(0, 0, 3))
  if (is_tenx(src)) {
    # Moments of every gene of the file cost one pass, as those of some would, and no
    # block has its rows copied out.
    file_rows <- src$recipe$rows[rows]
    whole <- whole_file(src$recipe)
    return(tenx_pass(whole, moments_step(threads), `+`, BPPARAM, "Reading gene moments")[file_rows, , drop = FALSE])
  }
  row_blocks(src, rows, function(block, k) rs_feature_moments(block, threads), rbind, BPPARAM = BPPARAM)
}

moments_step <- function(threads) {
  force(threads)
  function(block, cols) rs_feature_moments(block, threads)
}

# t(x[rows, ]) %*% weights, summed over row blocks; a TENx file gives the scores of each
# column block in one pass.
weighted_feature_sums <- function(src, rows, weights, threads, BPPARAM = NULL) {
  if (!length(rows)) return(matrix(0, src$n_samples, ncol(weights)))
  if (is_tenx(src)) {
    # Each gene of the file takes its row of `weights`, or none.
    weight_row <- integer(src$recipe$dim[1L])
    weight_row[src$recipe$rows[rows]] <- seq_along(rows)
    parts <- tenx_pass(whole_file(src$recipe), weighted_sum_step(weights, threads, weight_row = weight_row), NULL,
                       BPPARAM, "Scoring cells", bytes_per_column = 8 * ncol(weights))
    return(do.call(rbind, parts))
  }
  row_blocks(src, rows, weighted_sum_step(weights, threads), `+`, BPPARAM = BPPARAM)
}

# The weighted sums of one block: of features `k` (a row block), or of a column block of
# the whole file (second argument its columns), each gene weighted by its `weight_row`.
weighted_sum_step <- function(weights, threads, weight_row = NULL) {
  force(weights)
  force(threads)
  force(weight_row)
  if (!is.null(weight_row)) return(function(block, cols) rs_feature_weighted_sums(block, weights, weight_row, threads))
  function(block, k) rs_feature_weighted_sums(block, weights[k, , drop = FALSE], NULL, threads)
}

# Whether a source is a TENx file read by the block reader.
is_tenx <- function(src) !is.null(src$recipe) && src$recipe$format == "tenx"

# Applies `fun(block, k)` to features `rows[k]` of a source, in blocks for DelayedArray
# (whole otherwise) or across the workers of `BPPARAM` (each gets only its block),
# combining results with `combine` as they come, so only one is held at a time.
row_blocks <- function(src, rows, fun, combine, BPPARAM = NULL) {
  sub <- subset_source(src, rows)
  chunks <- plan_chunks(length(rows), BPPARAM = BPPARAM, delayed = sub$kind == "delayed",
                        n_samples = sub$n_samples, chunk_rows = sub$recipe$chunk_rows)
  # On a worker the piece's rows are numbered from 1; `piece$chunk` holds their indices here.
  one <- function(k, piece) fun(feature_rows(piece, k), piece$chunk %||% k)
  if (!is.null(BPPARAM) && length(chunks) > 1L) {
    return(Reduce(combine, run_chunks(chunks, one, BPPARAM, "", src = sub)))
  }
  out <- NULL
  for (k in chunks) {
    part <- one(k, sub)
    out <- if (is.null(out)) part else combine(out, part)
  }
  out
}

#' Sum cells into pseudobulk samples
#'
#' Sums every gene over groups of cells (the combinations of the `by` columns, e.g.
#' participant and visit) in one pass over the cells: a matrix or dgCMatrix in memory, or
#' a TENx HDF5 file read in column blocks of at most `getOption("sceffects.block_memory")`
#' bytes (spread over the workers of `BPPARAM` by ranges of cells, each opening the file
#' itself), so an atlas larger than memory is summed without being loaded. The result
#' goes straight into [nb_regression()] with `offset = log(lib_size)`.
#'
#' @param x A SummarizedExperiment or SingleCellExperiment (cells in columns), or a genes x
#'   cells matrix, dgCMatrix or DelayedArray with `data`.
#' @param by Names of the `colData(x)` (or `data`) columns whose combinations are the
#'   pseudobulk samples. Cells with a missing value in any of them are left out.
#' @param data For a matrix `x`: a data frame with one row per cell (column of `x`).
#' @param assay The assay of a SummarizedExperiment to sum.
#' @param threads Threads of the core (default `getOption("sceffects.threads")`, else 2).
#' @param BPPARAM A BiocParallel param: workers sum ranges of cells of a TENx file (or
#'   blocks of genes of other input); `NULL` (default) runs here.
#' @param verbose Print a message on left-out cells.
#' @return A SummarizedExperiment with assay `counts` (genes x pseudobulk samples, the
#'   sums, in the order of the sorted `by` values), and colData holding the `by` columns,
#'   `n_cells`, `lib_size` (the column sums) and every other cell column that is constant
#'   within each sample (an arm, a donor's age).
#' @examples
#' sce <- simulate_trial(n_genes = 250, n_cells = 400, counts = TRUE, seed = 1)
#' pb <- pseudobulk(sce, c("participant", "visit"))
#' pb
#' head(SummarizedExperiment::colData(pb))
#' fit <- nb_regression(pb, ~ visit * response, size_factors = FALSE,
#'                      offset = log(pb$lib_size), verbose = FALSE)
#' @export
pseudobulk <- function(x, by, data = NULL, assay = "counts", threads = NULL, BPPARAM = NULL,
                       verbose = getOption("sceffects.verbose", TRUE)) {
  threads <- resolve_threads(threads)
  check_bpparam(BPPARAM)
  verbose <- check_flag(verbose, "verbose")
  is_se <- is(x, "SummarizedExperiment")
  cells <- pseudobulk_cells(x, data, is_se)
  if (!is.character(by) || !length(by) || anyNA(by) || anyDuplicated(by)) {
    stop("`by` must name one or more distinct cell metadata columns.", call. = FALSE)
  }
  unknown <- setdiff(by, names(cells))
  if (length(unknown)) {
    stop(sprintf("`by` names columns that are not in the cell metadata: %s.", name_list(unknown, 5L)), call. = FALSE)
  }
  src <- numeric_features(x, "x", assay = if (is_se) assay)
  groups <- cell_groups(cells[by])
  left_out <- sum(groups$group == 0L)
  if (left_out) say(sprintf("%d cell(s) with a missing `by` value are left out.", left_out), verbose)
  if (!groups$n_groups) stop("`by` leaves no cell with all its values.", call. = FALSE)
  sums <- source_group_sums(src, groups$group, groups$n_groups, threads, BPPARAM)
  dimnames(sums) <- list(src$names, groups$names)
  info <- groups$first
  info$n_cells <- tabulate(groups$group, groups$n_groups)
  info$lib_size <- colSums(sums)
  kept <- groups$group > 0L
  for (column in setdiff(names(cells), c(by, names(info)))) {
    v <- cells[[column]]
    if (!is.atomic(v) || !is.null(dim(v))) next
    at_first <- v[groups$first_cell]
    if (identical(v[kept], at_first[groups$group[kept]])) info[[column]] <- at_first
  }
  rownames(info) <- groups$names
  SummarizedExperiment::SummarizedExperiment(list(counts = sums), colData = S4Vectors::DataFrame(info, check.names = FALSE))
}

# The cell metadata of a pseudobulk: colData of a SummarizedExperiment, else `data`.
pseudobulk_cells <- function(x, data, is_se) {
  if (is_se) {
    if (!is.null(data)) stop("`data` is for a matrix `x`; a SummarizedExperiment's cells are in colData(x).", call. = FALSE)
    return(as.data.frame(SummarizedExperiment::colData(x), optional = TRUE))
  }
  if (is.null(data) || !is.data.frame(data) && !is(data, "DataFrame")) {
    stop("`data` must be a data frame with one row per cell (column of `x`).", call. = FALSE)
  }
  if (nrow(data) != ncol(x)) {
    stop(sprintf("`data` has %d rows but `x` has %d cells (columns).", nrow(data), ncol(x)), call. = FALSE)
  }
  as.data.frame(data, optional = TRUE)
}

# Groups of cells by the combinations of some columns, in sorted order: `group` per cell
# (0 = a missing value), the first cell of each group and its values.
cell_groups <- function(columns) {
  complete <- stats::complete.cases(columns)
  key <- do.call(paste, c(lapply(columns, as.character), sep = "\r"))
  first_cell <- which(complete & !duplicated(key))
  first_cell <- first_cell[do.call(order, unname(as.list(columns[first_cell, , drop = FALSE])))]
  group <- match(key, key[first_cell])
  group[!complete] <- 0L
  first <- columns[first_cell, , drop = FALSE]
  rownames(first) <- NULL
  list(group = group, n_groups = length(first_cell), first_cell = first_cell, first = first,
       names = do.call(paste, c(lapply(first, as.character), sep = "_")))
}

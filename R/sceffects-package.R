#' sceffects: effects in multi-sample single-cell and omics studies
#'
#' A Rust core behind R functions that respect the unit of replication. Shared machinery:
#' one input layer (matrix, dgCMatrix, DelayedArray, SummarizedExperiment /
#' SingleCellExperiment, features in rows), accurate distribution tails, Benjamini-Hochberg
#' FDR, one results-table vocabulary (`feature`, `estimate`, `std_error`, `statistic`, `df`,
#' `p_value`, `fdr`, ...), shared plots and a `threads` argument whose default is
#' `getOption("sceffects.threads", 2)`.
#'
#' @section Options:
#' * `sceffects.threads`: default `threads` (2). At most 4 threads per core are allowed.
#' * `sceffects.verbose`: `FALSE` silences the package's informational messages.
#' * `sceffects.max_memory`: bytes a call may plan to use; by default the memory the
#'   operating system reports available. Requests planned above it (all pairs of a large
#'   association screen, huge permutation or simulation counts, too many landmarks) are
#'   refused up front with the size they would need.
#' * `sceffects.block_memory`: bytes one block of on-disk input may take when read
#'   (default 1e9, 1 GB): column blocks of a TENx file (about 16 bytes per non-zero),
#'   row chunks of a dense HDF5 dataset (8 bytes per value). Peak memory of a pass over a
#'   file is about this plus the results.
#'
#' @section On-disk input and BiocParallel workers:
#' A `TENxMatrix` or an `HDF5Array` as it is stored (not transformed by delayed
#' operations other than dimnames) is read by the package's block reader in the file's own
#' layout. One-pass paths (one streaming read of the cells): [did_table()] with
#' `aggregate = "participant_visit"` or `"pseudobulk"`, [between_arm()], [score_gene_sets()]
#' (`"mean"`: one pass; `"zmean"`: two, moments then scores). Per-feature fits ([nb_regression()],
#' [lmm_table()], [assoc_cor()], `aggregate = "cell"`) read blocks of features. With
#' `BPPARAM`, each worker receives only its block: its rows of in-memory input, or the
#' file's path, dataset and its row or cell range, which it reads itself.
#'
#' Long computations in the Rust core can be interrupted with Ctrl-C (Esc in RStudio);
#' the call then stops with an error and leaves R as it was.
#'
#' @keywords internal
#' @useDynLib sceffects, .registration = TRUE
#' @importFrom methods is
#' @importFrom stats setNames AIC BIC anova coef fitted logLik nobs predict residuals simulate vcov
"_PACKAGE"

# Keeps the Rust core off rayon's global thread pool, which a forked BiocParallel worker
# would inherit without its threads (a hang).
.onLoad <- function(libname, pkgname) {
  rs_init()
  assign("table", rs_reason_table(), envir = reason_codes)
}

# Why a row has no result: the core's one table of status texts, read once at load.
reason_codes <- new.env(parent = emptyenv())

# The reason of each status `code` of a `kind` of fit ("assoc", "did", "lmm", "nb"); NA
# for a result.
reason_of <- function(kind, code) reason_codes$table[[kind]][code + 1L]

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

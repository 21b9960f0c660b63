#' sceffects: effects in multi-sample single-cell and omics studies
#'
#' A Rust core behind R functions that respect the unit of replication. Shared machinery:
#' one input layer (matrix, dgCMatrix, DelayedArray, SummarizedExperiment /
#' SingleCellExperiment, features in rows), accurate distribution tails, Benjamini-Hochberg
#' FDR, one results-table vocabulary (`feature`, `estimate`, `std_error`, `statistic`, `df`,
#' `p_value`, `fdr`, ...), shared plots and a `threads` argument whose default is
#' `getOption("sceffects.threads", 2)`.
#'
#' @keywords internal
#' @useDynLib sceffects, .registration = TRUE
#' @importFrom methods is
#' @importFrom stats setNames AIC BIC anova coef fitted logLik nobs predict residuals simulate vcov
"_PACKAGE"

# Keeps the Rust core off rayon's global thread pool, which a forked BiocParallel worker
# would inherit without its threads (a hang).
.onLoad <- function(libname, pkgname) rs_init()

# p-values and false discovery rates: one implementation, in the core.

#' Benjamini-Hochberg false discovery rates
#'
#' Identical to `p.adjust(p, method = "BH")`, computed in the Rust core. Missing p-values
#' stay missing and do not count as tests.
#'
#' @param p Numeric vector of p-values.
#' @return Numeric vector of adjusted p-values, the length of `p`, with its names.
#' @export
#' @examples
#' p <- c(0.01, 0.04, 0.03, NA, 0.5)
#' fdr_bh(p)
#' all.equal(fdr_bh(p), p.adjust(p, "BH"))
fdr_bh <- function(p) {
  if (!is.numeric(p)) stop("`p` must be numeric.", call. = FALSE)
  if (any(p < 0 | p > 1, na.rm = TRUE)) stop("`p` must lie in [0, 1].", call. = FALSE)
  stats::setNames(nan_to_na(rs_bh(as.double(p))), names(p))
}

# The core marks missing values as NaN; R users expect NA.
nan_to_na <- function(v) {
  v[is.nan(v)] <- NA
  v
}

#' Distribution functions with accurate tails
#'
#' The distribution functions the package computes its p-values with, for checking and for
#' use in user code: R's own algorithms (the standalone R math library), called from the
#' Rust core, safe on worker threads, and with every tail available on the log scale.
#'
#' @param dist One of `"t"`, `"norm"`, `"chisq"`, `"f"`, `"hyper"`.
#' @param q Quantiles.
#' @param a,b,c Parameters, recycled: `df` for t and chi-square; `df1`, `df2` for F;
#'   `m`, `n`, `k` for the hypergeometric (as [stats::phyper()]). Ignored for the normal.
#' @param lower_tail,log_p As `lower.tail` and `log.p` of [stats::pt()].
#' @return Numeric vector, as long as the longest argument (empty when any is empty).
#' @export
#' @examples
#' p_tail("t", -50, 10)
#' pt(-50, 10)
#' p_tail("norm", -40, log_p = TRUE)
p_tail <- function(dist = c("t", "norm", "chisq", "f", "hyper"), q, a = NA_real_, b = NA_real_,
                   c = NA_real_, lower_tail = TRUE, log_p = FALSE) {
  dist <- match_choice(dist, "dist")
  lower_tail <- check_flag(lower_tail, "lower_tail")
  log_p <- check_flag(log_p, "log_p")
  for (arg in c("q", "a", "b", "c")) {
    v <- get(arg)
    if (!is.numeric(v) && !(is.logical(v) && all(is.na(v)))) {
      stop(sprintf("`%s` must be numeric.", arg), call. = FALSE)
    }
  }
  # As pt(): any zero-length argument gives a zero-length result.
  if (min(length(q), length(a), length(b), length(c)) == 0L) return(numeric(0))
  n <- max(length(q), length(a), length(b), length(c))
  rec <- function(v) rep_len(as.double(v), n)
  rs_distribution(dist, rec(q), rec(a), rec(b), rec(c), lower_tail, log_p)
}

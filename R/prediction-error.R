# Cross-validated prediction error of linear models on many responses (gneiss's `loo()`
# and `kfold()` of its `ols`): each fold is predicted by a fit without it, errors pooled
# over all responses.

#' Prediction error of linear models (leave-one-out and k-fold)
#'
#' Cross-validates an ordinary least squares fit of [lmm_table()] or [balance_lmm()] (a
#' formula without random terms), as gneiss's `ols(...).loo()` and `.kfold()`: each fold
#' of samples is left out, the model refitted on the others for every response, and the
#' left-out samples predicted. Errors are pooled over all responses (balances), as gneiss
#' reports them.
#'
#' Leave-one-out per response without refitting is in [lmm_fits()] (`loo_mse`, PRESS / n
#' from the hat matrix).
#'
#' @param fit An [lmm_table()] or [balance_lmm()] result of a formula without random terms.
#' @param folds `NULL` for leave-one-out (one fold per sample), or a number of folds `k`
#'   (2 to the number of samples), samples assigned to folds at random in equal shares.
#' @param seed Seed of the fold assignment (`NULL` draws it from R's generator, so
#'   `set.seed()` makes it reproducible); not used for leave-one-out.
#' @param threads Threads of the core (default `getOption("sceffects.threads", 2)`).
#' @return A data.frame, one row per fold: `fold`, `n_test` (samples left out),
#'   `model_mse` (mean squared residual of the training fit per response and sample),
#'   `r_squared` (of the training fit, `1 - RSS / TSS` summed over responses) and
#'   `pred_mse` (mean squared prediction error of the left-out samples per response and
#'   sample). A fold whose training design is rank-deficient has NA errors.
#' @export
#' @examples
#' set.seed(1)
#' data <- data.frame(ph = rnorm(20))
#' y <- matrix(rnorm(3 * 20), 3, dimnames = list(paste0("y", 0:2), NULL))
#' y[1, ] <- y[1, ] + 2 * data$ph
#' fit <- lmm_table(y, ~ ph, data)
#' head(prediction_error(fit))
#' prediction_error(fit, folds = 5, seed = 1)
prediction_error <- function(fit, folds = NULL, seed = NULL, threads = NULL) {
  s <- check_lmm(fit)
  if (!isTRUE(s$model$ols)) {
    stop("`fit` must be a linear model without random terms (lmm_table() or balance_lmm() with a formula such as ~ ph).",
         call. = FALSE)
  }
  threads <- resolve_threads(threads)
  n <- nrow(s$model$x)
  fold <- if (is.null(folds)) {
    seq_len(n)
  } else {
    folds <- check_count(folds, "folds", min = 2, max = n)
    with_seed(resolve_seed(seed), sample(rep_len(seq_len(folds), n)))
  }
  y <- lmm_responses(s$src)
  cv <- rs_ols_cv(y, s$model$x, as.integer(fold), as.integer(max(fold)), s$model$intercept, threads)
  data.frame(fold = seq_along(cv$n_test), n_test = cv$n_test, model_mse = nan_to_na(cv$model_mse),
             r_squared = nan_to_na(cv$r_squared), pred_mse = nan_to_na(cv$pred_mse))
}

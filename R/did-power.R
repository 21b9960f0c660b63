# Power of the trial DiD by simulation: simulate_trial() trials at each effect size and
# sample size, each analysed by did_table() (its one-pass kernels), and the share of
# planted genes detected.

#' Power of a trial by simulation
#'
#' Simulates `B` trials with [simulate_trial()] for every number of participants and
#' every effect size, analyses each with [did_table()] on its planted DiD genes, and
#' reports the share of those genes with `p_value <= alpha`. Trial `b` of every setting
#' uses the same seed (common random numbers: the same participants, cells and noise, only
#' the effect and the sample size differ), so the curve is smooth in `effect`; the seeds
#' are `sample.int(.Machine$integer.max, B)` after `set.seed(seed)`, so a loop of
#' `simulate_trial(..., seed = seeds[b])` and `did_table()` gives the same numbers.
#'
#' Each trial has `n_treated + n_control` participants seen at every visit, of whom
#' `n_treated` treated (responders), `n_cells` cells and `n_effect_genes` genes with a
#' planted DiD of `+/- effect` (log scale) at the last visit (growing linearly from `onset`,
#' see [simulate_trial()]). With two visits the test is the pre/post DiD; with more, the
#' event study's DiD at the last visit. A gene whose test is NA counts as not detected.
#' Power is the mean over trials of each trial's detected share; its Monte Carlo standard
#' error is the SD of those shares over `sqrt(B)` (honest when genes of a trial are
#' correlated), with a normal interval at `conf_level`.
#'
#' @param effect Effect sizes (log scale, as [simulate_trial()]'s `effect`); include 0 to
#'   see the size of the test.
#' @param n_treated,n_control Participants per arm, seen at every visit: whole numbers,
#'   recycled to a common length (one setting each).
#' @param n_cells Cells per trial.
#' @param B Number of simulated trials per setting.
#' @param alpha Significance level.
#' @param visits Visit labels in time order, as in [simulate_trial()].
#' @param n_effect_genes Genes with a planted DiD per trial (the tests of a trial).
#' @param aggregate,vcov,weights As in [did_table()].
#' @param conf_level Level of the Monte Carlo interval `conf_low`, `conf_high`.
#' @param seed `NULL` (default) draws one from R's random number generator, so `set.seed()`
#'   before the call makes it reproducible; a number fixes it.
#' @param threads,BPPARAM Threads of each fit; BiocParallel workers share the trials.
#' @param verbose Show progress? Default `getOption("sceffects.verbose", TRUE)`.
#' @param ... Further [simulate_trial()] settings, by name (e.g. `n_pre_only`, `onset`,
#'   `counts`); others are errors.
#' @return A data.frame, one row per setting and effect: `effect`, `n_treated`,
#'   `n_control`, `n_cells`, `power`, `mc_se`, `conf_low`, `conf_high`, `B`, `n_tests`
#'   (planted genes per trial) and `alpha`. Draw it with [plot_power()].
#' @export
#' @examples
#' pw <- trial_power(effect = c(0, 1), n_treated = 4, n_control = 4, n_cells = 600, B = 3,
#'                   n_effect_genes = 10, seed = 1)
#' pw
trial_power <- function(effect = c(0, 0.5, 1), n_treated = 5, n_control = 5, n_cells = 2000, B = 100,
                        alpha = 0.05, visits = c("Pre", "Post"), n_effect_genes = 20,
                        aggregate = c("participant_visit", "cell", "pseudobulk"), vcov = c("CR2", "CR1"),
                        weights = c("cells", "equal"), conf_level = 0.95, seed = NULL, threads = NULL,
                        BPPARAM = NULL, verbose = getOption("sceffects.verbose", TRUE), ...) {
  aggregate <- match_choice(aggregate, "aggregate")
  vcov <- match_choice(vcov, "vcov")
  weights <- match_choice(weights, "weights")
  if (!is.numeric(effect) || !length(effect) || any(!is.finite(effect)) || anyDuplicated(effect)) {
    stop("`effect` must be distinct finite numbers (effect sizes on the log scale), e.g. c(0, 0.5, 1).", call. = FALSE)
  }
  arms <- power_arms(n_treated, n_control)
  n_cells <- check_count(n_cells, "n_cells", min = 1)
  B <- check_count(B, "B", min = 1)
  n_effect_genes <- check_count(n_effect_genes, "n_effect_genes", min = 1)
  for (nm in c("alpha", "conf_level")) {
    v <- get(nm)
    if (!is.numeric(v) || length(v) != 1L || is.na(v) || v <= 0 || v >= 1) {
      stop(sprintf("`%s` must be a single number between 0 and 1.", nm), call. = FALSE)
    }
  }
  sim <- power_sim_settings(list(...), visits, n_effect_genes, aggregate)
  threads <- resolve_threads(threads)
  check_bpparam(BPPARAM)
  verbose <- check_flag(verbose, "verbose")
  seeds <- with_seed(resolve_seed(seed), sample.int(.Machine$integer.max, B))
  one_trial <- function(b) {
    do.call(rbind, lapply(seq_len(nrow(arms)), function(s) {
      detected <- vapply(effect, function(e) {
        power_detected(c(sim, list(effect = e, n_cells = n_cells, n_paired = arms$n_treated[s] + arms$n_control[s],
                                   n_treated_paired = arms$n_treated[s], seed = seeds[b])),
                       list(aggregate = aggregate, vcov = vcov, weights = weights, threads = threads), alpha)
      }, 0)
      data.frame(setting = s, effect = effect, detected = detected)
    }))
  }
  old <- options(sceffects.verbose = verbose)
  on.exit(options(old), add = TRUE)
  trials <- run_chunks(as.list(seq_len(B)), one_trial, BPPARAM, "Simulating trials")
  power_table(do.call(rbind, trials), arms, effect, n_cells, B, n_effect_genes, alpha, conf_level)
}

# The settings of participants per arm: whole numbers >= 2, recycled to a common length.
power_arms <- function(n_treated, n_control) {
  for (nm in c("n_treated", "n_control")) {
    v <- get(nm)
    if (!is.numeric(v) || !length(v) || any(!is.finite(v)) || any(v != round(v)) || any(v < 2)) {
      stop(sprintf("`%s` must be whole numbers >= 2 (participants per arm).", nm), call. = FALSE)
    }
  }
  n <- max(length(n_treated), length(n_control))
  if (n %% length(n_treated) || n %% length(n_control)) {
    stop("`n_treated` and `n_control` must have the same length, or one of them length 1.", call. = FALSE)
  }
  data.frame(n_treated = rep_len(as.integer(n_treated), n), n_control = rep_len(as.integer(n_control), n))
}

# simulate_trial() settings of a power study: those in `...` (by name, not the ones
# trial_power() sets), the visits, the planted genes and just enough genes for them.
power_sim_settings <- function(dots, visits, n_effect_genes, aggregate) {
  managed <- c("effect", "n_cells", "n_paired", "n_treated_paired", "seed", "visits", "n_effect_genes", "n_genes")
  allowed <- setdiff(names(formals(simulate_trial)), managed)
  bad <- if (length(dots)) setdiff(names(dots) %||% rep("", length(dots)), allowed) else character()
  if (length(dots) && (is.null(names(dots)) || any(names(dots) == "") || length(bad))) {
    stop(sprintf("trial_power() passes `...` to simulate_trial() by name: one of %s (got: %s).",
                 paste(allowed, collapse = ", "), paste0("`", bad[bad != ""], "`", collapse = ", ")), call. = FALSE)
  }
  settings <- utils::modifyList(list(n_pre_only = 0, n_post_only = 0, counts = aggregate == "pseudobulk"), dots)
  c(settings, list(visits = visits, n_effect_genes = n_effect_genes,
                   n_genes = simulated_min_genes(n_effect_genes)))
}

# One simulated trial: the share of its planted DiD genes with p <= alpha (NA counts as
# not detected). With more than two visits, the event study's DiD at the last visit.
power_detected <- function(sim, fit, alpha) {
  sce <- do.call(simulate_trial, sim)
  visits <- sim$visits
  last <- visits[length(visits)]
  design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
                         baseline = visits[1L], followup = last)
  genes <- planted_did_genes(sim$n_effect_genes)
  res <- without_few_cluster_warning(did_table(sce, design, features = genes, aggregate = fit$aggregate,
                                               vcov = fit$vcov, weights = fit$weights, threads = fit$threads,
                                               visits = if (length(visits) > 2L) visits, verbose = FALSE))
  if (length(visits) > 2L) res <- res[res$term == last, , drop = FALSE]
  sum(res$p_value <= alpha, na.rm = TRUE) / length(genes)
}

# did_table()'s warning about few participants would repeat for every simulated trial;
# trial_power() documents its settings instead.
without_few_cluster_warning <- function(expr) {
  withCallingHandlers(expr, warning = function(w) {
    if (grepl("rests on few clusters", conditionMessage(w), fixed = TRUE)) invokeRestart("muffleWarning")
  })
}

# Power per setting and effect: the mean over trials of the detected share, its Monte
# Carlo standard error (SD over trials / sqrt(B)) and normal interval.
power_table <- function(trials, arms, effect, n_cells, B, n_tests, alpha, conf_level) {
  grid <- expand.grid(effect = effect, setting = seq_len(nrow(arms)))
  shares <- lapply(seq_len(nrow(grid)), function(k) {
    trials$detected[trials$setting == grid$setting[k] & trials$effect == grid$effect[k]]
  })
  power <- vapply(shares, mean, 0)
  se <- vapply(shares, function(v) if (length(v) > 1L) stats::sd(v) / sqrt(length(v)) else NA_real_, 0)
  z <- stats::qnorm(1 - (1 - conf_level) / 2)
  out <- data.frame(effect = grid$effect, n_treated = arms$n_treated[grid$setting],
                    n_control = arms$n_control[grid$setting], n_cells = n_cells,
                    power = power, mc_se = se)
  out$conf_low <- pmax(out$power - z * out$mc_se, 0)
  out$conf_high <- pmin(out$power + z * out$mc_se, 1)
  out$B <- B
  out$n_tests <- n_tests
  out$alpha <- alpha
  attr(out, "method") <- sprintf("power by simulation (%d trials per setting)", B)
  out
}

#' Plot a power curve
#'
#' Power against effect size, one line per number of participants, with the Monte Carlo
#' interval of each point and the significance level dashed.
#'
#' @param power A [trial_power()] table.
#' @return A ggplot object.
#' @export
#' @examples
#' pw <- trial_power(effect = c(0, 1), n_treated = 4, n_control = 4, n_cells = 600, B = 3,
#'                   n_effect_genes = 10, seed = 1)
#' plot_power(pw)
plot_power <- function(power) {
  need <- c("effect", "n_treated", "n_control", "power", "conf_low", "conf_high", "alpha")
  if (!is.data.frame(power) || !all(need %in% names(power))) {
    stop("`power` must be a trial_power() table (columns effect, n_treated, n_control, power, conf_low, conf_high, alpha).",
         call. = FALSE)
  }
  df <- as.data.frame(power)
  df$participants <- factor(sprintf("%d treated, %d control", df$n_treated, df$n_control),
                            levels = unique(sprintf("%d treated, %d control", df$n_treated, df$n_control)))
  ggplot2::ggplot(df, ggplot2::aes(x = .data$effect, y = .data$power, colour = .data$participants)) +
    ggplot2::geom_hline(yintercept = unique(df$alpha), linetype = "dashed", colour = "grey40") +
    ggplot2::geom_line() +
    ggplot2::geom_pointrange(ggplot2::aes(ymin = .data$conf_low, ymax = .data$conf_high)) +
    ggplot2::scale_y_continuous(limits = c(0, 1)) +
    ggplot2::labs(x = "effect size (log scale)", y = "power", colour = NULL, title = attr(power, "method")) +
    ggplot2::theme_bw()
}

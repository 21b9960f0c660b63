# Power by simulation (issue 16): trial_power() against a loop of simulate_trial() +
# did_table(), its size under a null effect, and its growth with the effect.

test_that("trial_power equals a brute-force loop of simulate_trial + did_table for a fixed seed", {
  B <- 3
  pw <- trial_power(effect = c(0, 1.5), n_treated = c(3, 4), n_control = 4, n_cells = 500, B = B,
                    n_effect_genes = 6, seed = 9, verbose = FALSE)
  expect_equal(nrow(pw), 4L)
  set.seed(9)
  seeds <- sample.int(.Machine$integer.max, B)
  genes <- sprintf("GENE%05d", 160 + 1:6)
  design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
                         baseline = "Pre", followup = "Post")
  for (k in seq_len(nrow(pw))) {
    shares <- vapply(seeds, function(s) {
      sce <- simulate_trial(n_genes = 160 + 2 * 6 + 10, n_cells = 500, n_paired = pw$n_treated[k] + 4,
                            n_treated_paired = pw$n_treated[k], n_pre_only = 0, n_post_only = 0,
                            n_effect_genes = 6, effect = pw$effect[k], seed = s)
      res <- suppressWarnings(did_table(sce, design, features = genes, verbose = FALSE))
      sum(res$p_value <= 0.05, na.rm = TRUE) / 6
    }, 0)
    expect_equal(pw$power[k], mean(shares))
    expect_equal(pw$mc_se[k], sd(shares) / sqrt(B))
  }
  expect_equal(pw$n_control, rep(4L, 4))
  expect_true(all(pw$conf_low <= pw$power & pw$power <= pw$conf_high))
  # Three visits: the event study's DiD at the last visit.
  pv <- trial_power(effect = 1.5, n_treated = 3, n_control = 4, n_cells = 600, B = 2, n_effect_genes = 6,
                    visits = c("Pre", "C1", "C2"), seed = 9, verbose = FALSE)
  sce <- simulate_trial(n_genes = 182, n_cells = 600, n_paired = 7, n_treated_paired = 3, n_pre_only = 0,
                        n_post_only = 0, n_effect_genes = 6, effect = 1.5, visits = c("Pre", "C1", "C2"),
                        seed = seeds[1])
  es <- suppressWarnings(did_table(sce, design, features = genes, visits = c("Pre", "C1", "C2"), verbose = FALSE))
  set.seed(9)
  s2 <- sample.int(.Machine$integer.max, 2)
  share <- function(s) {
    sce <- simulate_trial(n_genes = 182, n_cells = 600, n_paired = 7, n_treated_paired = 3, n_pre_only = 0,
                          n_post_only = 0, n_effect_genes = 6, effect = 1.5, visits = c("Pre", "C1", "C2"), seed = s)
    es <- suppressWarnings(did_table(sce, design, features = genes, visits = c("Pre", "C1", "C2"), verbose = FALSE))
    mean(es$p_value[es$term == "C2"] <= 0.05, na.rm = TRUE)
  }
  expect_equal(pv$power, mean(vapply(s2, share, 0)))
})

test_that("power at effect 0 is alpha within its Monte Carlo error, and grows with the effect", {
  pw <- trial_power(effect = c(0, 0.3, 0.8), n_treated = 6, n_control = 6, n_cells = 1500, B = 40,
                    n_effect_genes = 30, seed = 4, verbose = FALSE)
  null <- pw[pw$effect == 0, ]
  expect_gt(null$mc_se, 0)
  expect_lt(abs(null$power - 0.05), 3 * null$mc_se)
  expect_true(all(diff(pw$power) > 0))
  expect_gt(pw$power[pw$effect == 0.8], 0.5)
  p <- plot_power(pw)
  expect_s3_class(p, "ggplot")
  expect_silent(ggplot2::ggplot_build(p))
  expect_equal(p$data$power, pw$power)
})

test_that("trial_power refuses bad input, naming the argument", {
  expect_error(trial_power(effect = NA), "`effect` must be distinct finite numbers")
  expect_error(trial_power(n_treated = 1), "`n_treated` must be whole numbers >= 2")
  expect_error(trial_power(n_treated = c(3, 4), n_control = c(3, 4, 5)), "`n_treated` and `n_control` must have the same length")
  expect_error(trial_power(B = 0), "`B` must be")
  expect_error(trial_power(alpha = 1), "`alpha` must be a single number between 0 and 1")
  expect_error(trial_power(n_genes = 300), "passes `...` to simulate_trial\\(\\) by name.*got: `n_genes`")
  expect_error(trial_power(aggregate = "median"), "`aggregate` must be one of")
  expect_error(plot_power(data.frame(a = 1)), "`power` must be a trial_power\\(\\) table")
})

# Mixed-model benchmark: lmm_table() on 10,000 responses x 200 observations (40 subjects x
# 5 visits, two arms), random intercept and correlated random slope, against a loop of
# lme4::lmer + lmerTest (Satterthwaite summary) timed on a sample of responses in the same
# run; the loop's time is scaled to all responses and the ratio printed.
# Usage: Rscript inst/bench/lmm.R [n_responses] [n_sample]   (default 10000, 100)
suppressPackageStartupMessages({ library(sceffects); library(lme4); library(lmerTest) })
args <- commandArgs(trailingOnly = TRUE)
n_resp <- if (length(args) >= 1) as.integer(args[1]) else 10000L
n_sample <- if (length(args) >= 2) as.integer(args[2]) else 100L
threads <- 2L
reps <- 3L
median_time <- function(f, reps) stats::median(vapply(seq_len(reps), function(i) system.time(f())[["elapsed"]], 0))
cat(sprintf("machine: %d cores, %s; R %s; lme4 %s, lmerTest %s; threads = %d\n", parallel::detectCores(),
            Sys.info()[["machine"]], getRversion(), packageVersion("lme4"), packageVersion("lmerTest"), threads))

set.seed(1)
n_subj <- 40L
n_visit <- 5L
data <- data.frame(subject = factor(rep(seq_len(n_subj), each = n_visit)), time = rep(seq_len(n_visit) - 1, n_subj),
                   treatment = factor(rep(rep(c("A", "B"), n_subj / 2), each = n_visit)))
b0 <- matrix(rnorm(n_resp * n_subj), n_resp)
b1 <- 0.3 * b0 + matrix(rnorm(n_resp * n_subj, sd = 0.3), n_resp)
y <- b0[, data$subject] + b1[, data$subject] * rep(data$time, each = n_resp) +
  matrix(rnorm(n_resp * nrow(data)), n_resp)
rownames(y) <- paste0("balance", seq_len(n_resp))
cat(sprintf("%d responses x %d observations (%d subjects x %d visits)\n", n_resp, nrow(data), n_subj, n_visit))

models <- list(
  "random intercept" = list(ours = ~ time + treatment + (1 | subject), peer = y ~ time + treatment + (1 | subject), target = 100),
  "correlated random slope" = list(ours = ~ time + treatment + (1 + time | subject),
                                   peer = y ~ time + treatment + (1 + time | subject), target = 30))
rows <- sample(n_resp, n_sample)
for (name in names(models)) {
  m <- models[[name]]
  t_ours <- median_time(function() lmm_table(y, m$ours, data, threads = threads), reps)
  peer <- function() {
    for (k in rows) {
      d <- data
      d$y <- y[k, ]
      suppressMessages(summary(lmerTest::lmer(m$peer, d))$coefficients)
    }
  }
  t_peer <- median_time(peer, 1L) * n_resp / n_sample
  cat(sprintf("%-24s lmm_table: %6.2f s (median of %d) | lme4 + lmerTest loop: %7.1f s (%d responses timed, scaled) | ratio %5.0fx (target >= %dx)\n",
              name, t_ours, reps, t_peer, n_sample, t_peer / t_ours, m$target))
}

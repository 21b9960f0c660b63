# Independent references shared by several test files.

# lme4 + lmerTest at lme4's optimum polished by an independent optimiser (L-BFGS-B on
# lme4's own deviance function), so that both sides sit at the true optimum.
lme4_reference <- function(formula, data, REML = TRUE) {
  devfun <- lme4::lmer(formula, data, REML = REML, devFunOnly = TRUE)
  lower <- environment(devfun)$lower
  opt <- lme4::nloptwrap(environment(devfun)$pp$theta, devfun, lower, rep(Inf, length(lower)),
                         control = list(xtol_abs = 1e-12, ftol_abs = 1e-14, maxeval = 1e5))
  polish <- stats::optim(opt$par, devfun, method = "L-BFGS-B", lower = lower,
                         control = list(factr = 1, pgtol = 0, ndeps = rep(1e-7, length(opt$par))))
  theta <- if (polish$value < opt$fval) polish$par else opt$par
  # lme4's model at that theta, with no optimisation of its own
  suppressMessages(lmerTest::lmer(formula, data, REML = REML, start = list(theta = theta),
                                  control = lme4::lmerControl(optimizer = NULL)))
}

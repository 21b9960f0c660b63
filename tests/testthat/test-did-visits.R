# Trials past two visits (issue 16): event-study DiD against lm + clubSandwich per gene,
# unbalanced visits, pre-trends, intervals, single-arm designs and a third arm.

skip_if_not_installed("clubSandwich")

visits4 <- c("S1", "Pre", "C1", "C2")
sce4 <- simulate_trial(n_genes = 240, n_cells = 2400, n_paired = 12, n_treated_paired = 6, n_effect_genes = 10,
                       effect = 1.5, visits = visits4, seed = 21)
design4 <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
                        celltype = "cell_type", baseline = "Pre", followup = "C1")
cd4 <- as.data.frame(SummarizedExperiment::colData(sce4))
expr4 <- SingleCellExperiment::logcounts(sce4)
genes4 <- c("GENE00161", "GENE00165", "GENE00190", "GENE00001", "GENE00230")

# Participant-visit means of one gene over `visits`, participants seen at two or more of
# them, with dummy columns per visit (baseline `base`) and per visit x treated.
pv_visits <- function(y, visits, base, keep = rep(TRUE, nrow(cd4))) {
  d <- cd4[keep & as.character(cd4$visit) %in% visits, ]
  d$y <- y[keep & as.character(cd4$visit) %in% visits]
  key <- paste(d$participant, d$visit)
  pv <- data.frame(participant = tapply(d$participant, key, `[`, 1), visit = tapply(as.character(d$visit), key, `[`, 1),
                   response = tapply(d$response, key, `[`, 1), y = tapply(d$y, key, mean),
                   n = as.numeric(table(key)), stringsAsFactors = FALSE)
  units <- names(which(table(pv$participant) >= 2))
  pv <- pv[pv$participant %in% units, ]
  pv$trt <- as.numeric(pv$response == "Responder")
  for (v in setdiff(visits, base)) {
    pv[[paste0("v_", v)]] <- as.numeric(pv$visit == v)
    pv[[paste0("d_", v)]] <- pv[[paste0("v_", v)]] * pv$trt
  }
  pv$ys <- pv$y / stats::sd(pv$y)
  pv
}

fit_visits <- function(pv, visits, base) {
  others <- setdiff(visits, base)
  f <- stats::as.formula(paste("ys ~", paste(c(paste0("v_", others), paste0("d_", others)), collapse = " + "),
                               "+ factor(participant)"))
  stats::lm(f, data = pv, weights = n)
}

htz <- function(fit, pv, terms) {
  clubSandwich::Wald_test(fit, constraints = clubSandwich::constrain_zero(terms), vcov = "CR2",
                          cluster = pv$participant, test = "HTZ")
}

check_event_rows <- function(res, g, pv, fit, visits, base, level = 0.95) {
  others <- setdiff(visits, base)
  ct <- clubSandwich::coef_test(fit, vcov = "CR2", cluster = pv$participant, test = "Satterthwaite")
  for (v in others) {
    r <- res[res$feature == g & res$term == v, ]
    term <- paste0("d_", v)
    expect_equal(r$estimate, unname(stats::coef(fit)[term]), tolerance = 1e-8)
    expect_equal(r$std_error, ct[term, "SE"], tolerance = 1e-8)
    expect_equal(r$df, ct[term, "df_Satt"], tolerance = 1e-8)
    expect_equal(r$p_value, ct[term, "p_Satt"], tolerance = 1e-8)
    q <- stats::qt(1 - (1 - level) / 2, ct[term, "df_Satt"])
    expect_equal(c(r$conf_low, r$conf_high), unname(stats::coef(fit)[term]) + c(-1, 1) * q * ct[term, "SE"],
                 tolerance = 1e-8)
    expect_equal(r$control_change, unname(stats::coef(fit)[paste0("v_", v)]), tolerance = 1e-8)
    expect_equal(r$control_p_value, ct[paste0("v_", v), "p_Satt"], tolerance = 1e-8)
  }
  joint <- htz(fit, pv, paste0("d_", others))
  r <- res[res$feature == g & res$term == "joint", ]
  expect_equal(r$statistic, joint$Fstat, tolerance = 1e-8)
  expect_equal(r$df_num, joint$df_num)
  expect_equal(r$df, joint$df_denom, tolerance = 1e-8)
  expect_equal(r$p_value, joint$p_val, tolerance = 1e-8)
  expect_equal(r$resid_sd, stats::sigma(fit), tolerance = 1e-8)
}

test_that("event study with three visits equals lm + clubSandwich coef_test and Wald_test (HTZ) per gene", {
  visits <- c("Pre", "C1", "C2")
  res <- suppressMessages(suppressWarnings(did_table(sce4, design4, features = genes4, visits = visits)))
  expect_setequal(unique(res$term), c("C1", "C2", "joint"))
  expect_equal(nrow(res), 3L * length(genes4))
  for (g in genes4) {
    pv <- pv_visits(expr4[g, ], visits, "Pre")
    fit <- fit_visits(pv, visits, "Pre")
    check_event_rows(res, g, pv, fit, visits, "Pre")
    expect_equal(res$n_units[res$feature == g][1], length(unique(pv$participant)))
  }
  # FDR within term.
  for (tm in c("C1", "C2", "joint")) {
    expect_equal(res$fdr[res$term == tm], p.adjust(res$p_value[res$term == tm], "BH"))
  }
  # The planted DiD genes are found at C2 (full effect) far more than the null genes.
  full <- suppressMessages(suppressWarnings(did_table(sce4, design4, visits = visits)))
  truth <- S4Vectors::metadata(sce4)$truth
  c2 <- full[full$term == "C2", ]
  planted <- c2$feature %in% truth$gene[truth$did_effect != 0]
  expect_gt(mean(c2$p_value[planted] < 0.01), 0.25)
  expect_lt(mean(c2$p_value[!planted] < 0.01, na.rm = TRUE), 0.05)
})

test_that("visits before the baseline are leads with a joint pre-trend test equal to clubSandwich", {
  res <- suppressMessages(suppressWarnings(did_table(sce4, design4, features = genes4[1:3], visits = visits4,
                                                    conf_level = 0.9)))
  expect_setequal(unique(res$term), c("S1", "C1", "C2", "joint", "pre_trend"))
  for (g in genes4[1:3]) {
    pv <- pv_visits(expr4[g, ], visits4, "Pre")
    fit <- fit_visits(pv, visits4, "Pre")
    check_event_rows(res, g, pv, fit, visits4, "Pre", level = 0.9)
    pre <- res[res$feature == g & res$term == "pre_trend", ]
    # One lead: the pre-trend F is the lead's squared t on its Satterthwaite df.
    lead <- res[res$feature == g & res$term == "S1", ]
    expect_equal(pre$statistic, lead$statistic^2, tolerance = 1e-8)
    expect_equal(pre$p_value, lead$p_value, tolerance = 1e-8)
  }
  # Two leads (baseline C1): the pre-trend test is the HTZ Wald test of both.
  d2 <- trial_design("participant", "visit", "response", "Responder", "Non-responder", baseline = "C1", followup = "C2")
  res2 <- suppressMessages(suppressWarnings(did_table(sce4, d2, features = genes4[1:2], visits = visits4)))
  for (g in genes4[1:2]) {
    pv <- pv_visits(expr4[g, ], visits4, "C1")
    fit <- fit_visits(pv, visits4, "C1")
    check_event_rows(res2, g, pv, fit, visits4, "C1")
    w <- htz(fit, pv, c("d_S1", "d_Pre"))
    pre <- res2[res2$feature == g & res2$term == "pre_trend", ]
    expect_equal(c(pre$statistic, pre$df_num, pre$df, pre$p_value), c(w$Fstat, w$df_num, w$df_denom, w$p_val),
                 tolerance = 1e-8)
  }
})

test_that("unbalanced visits are fitted on the visits each participant has, and reported", {
  visits <- c("Pre", "C1", "C2")
  # P2 misses C1 and P5 misses C2; P1 has only C2 among the visits... plus Pre.
  drop <- (cd4$participant == "P2" & cd4$visit == "C1") | (cd4$participant == "P5" & cd4$visit == "C2") |
    (cd4$participant == "P7" & cd4$visit %in% c("C1", "C2"))
  ub <- sce4[, !drop]
  msg <- paste(testthat::capture_messages(res <- suppressWarnings(did_table(ub, design4, features = genes4, visits = visits))),
               collapse = "")
  expect_match(msg, "Unbalanced visits: 2 participant\\(s\\) miss some visits.*P2 \\(C1\\), P5 \\(C2\\)")
  expect_setequal(attr(res, "missing_visits"), c("P2 (C1)", "P5 (C2)"))
  expect_true("P7" %in% attr(res, "unpaired"))
  for (g in genes4) {
    pv <- pv_visits(expr4[g, ], visits, "Pre", keep = !drop)
    fit <- fit_visits(pv, visits, "Pre")
    check_event_rows(res, g, pv, fit, visits, "Pre")
  }
  treated <- unique(cd4$participant[cd4$response == "Responder" & cd4$participant %in% paste0("P", 1:12)])
  expect_equal(res$n_treated[res$term == "C1"][1], sum(setdiff(treated, c("P2", "P7")) %in% cd4$participant))
})

test_that("CR1 event study: per-term t on G - 1 df and the joint F = Q / q on (q, G - 1)", {
  visits <- c("Pre", "C1", "C2")
  res <- suppressMessages(suppressWarnings(did_table(sce4, design4, features = genes4[1:2], visits = visits, vcov = "CR1")))
  skip_if_not_installed("sandwich")
  for (g in genes4[1:2]) {
    pv <- pv_visits(expr4[g, ], visits, "Pre")
    fit <- fit_visits(pv, visits, "Pre")
    v <- sandwich::vcovCL(fit, cluster = pv$participant, type = "HC1")
    terms <- c("d_C1", "d_C2")
    b <- stats::coef(fit)[terms]
    G <- length(unique(pv$participant))
    expect_equal(res$std_error[res$feature == g & res$term == "C2"], sqrt(v["d_C2", "d_C2"]), tolerance = 1e-8)
    Q <- drop(t(b) %*% solve(v[terms, terms], b))
    j <- res[res$feature == g & res$term == "joint", ]
    expect_equal(j$statistic, Q / 2, tolerance = 1e-8)
    expect_equal(j$df, G - 1)
    expect_equal(j$p_value, stats::pf(Q / 2, 2, G - 1, lower.tail = FALSE), tolerance = 1e-8)
  }
})

test_that("two visits through `visits` equal the pre/post DiD", {
  design <- trial_design("participant", "visit", "response", "Responder", "Non-responder", baseline = "Pre", followup = "C2")
  a <- suppressMessages(suppressWarnings(did_table(sce4, design, features = genes4)))
  b <- suppressMessages(suppressWarnings(did_table(sce4, design, features = genes4, visits = c("Pre", "C2"))))
  b2 <- b[b$term == "C2", ]
  expect_equal(b2$estimate, a$estimate, tolerance = 1e-10)
  expect_equal(b2$p_value, a$p_value, tolerance = 1e-10)
  expect_equal(b2$conf_low, a$conf_low, tolerance = 1e-10)
  j <- b[b$term == "joint", ]
  expect_equal(j$statistic, a$statistic^2, tolerance = 1e-8)
  expect_equal(j$p_value, a$p_value, tolerance = 1e-8)
})

test_that("confidence intervals of the pre/post DiD are t intervals on the Satterthwaite df", {
  design <- trial_design("participant", "visit", "response", "Responder", "Non-responder", baseline = "Pre", followup = "C2")
  res <- suppressMessages(suppressWarnings(did_table(sce4, design, features = genes4, conf_level = 0.8)))
  pv <- pv_visits(expr4[genes4[1], ], c("Pre", "C2"), "Pre")
  fit <- fit_visits(pv, c("Pre", "C2"), "Pre")
  ci <- clubSandwich::conf_int(fit, vcov = "CR2", cluster = pv$participant, level = 0.8)
  r <- res[res$feature == genes4[1], ]
  expect_equal(c(r$conf_low, r$conf_high), c(ci["d_C2", "CI_L"], ci["d_C2", "CI_U"]), tolerance = 1e-8)
  w <- suppressMessages(suppressWarnings(within_arm(sce4, design, "Responder", features = genes4)))
  expect_equal(w$conf_high - w$estimate, stats::qt(0.975, w$df) * w$std_error)
  expect_error(did_table(sce4, design, conf_level = 1), "`conf_level` must be a single number between 0 and 1")
})

test_that("event-study bad input: unknown visits, a visit unseen in one arm", {
  expect_error(did_table(sce4, design4, visits = c("Pre", "C9")), "`visits` \"C9\" not found in colData column `visit`")
  expect_error(did_table(sce4, design4, visits = "Pre"), "`visits` must be two or more distinct visit labels")
  expect_error(did_table(sce4, design4, visits = c("Pre", "Pre")), "`visits` must be two or more")
  # C2 seen by no responder: NA rows with the reason.
  no_c2 <- sce4[, !(cd4$response == "Responder" & cd4$visit == "C2")]
  res <- suppressMessages(suppressWarnings(did_table(no_c2, design4, features = genes4[1:2], visits = c("Pre", "C1", "C2"))))
  expect_true(all(is.na(res$estimate)))
  expect_true(all(res$reason == "visit C2 not seen in the treated arm"))
  expect_setequal(unique(res$term), c("C1", "C2", "joint"))
  # gsea_did ranks one DiD: `visits` is refused.
  expect_error(gsea_did(sce4, design4, sets = list(a = genes4), visits = c("Pre", "C1", "C2")), "visits")
})

test_that("all visits in factor order with visits = 'all', per cell type", {
  res <- suppressMessages(suppressWarnings(did_table(sce4, design4, features = genes4[1:2], visits = "all",
                                                    celltype = c("CD8 T cell", "Monocyte/Macrophage"))))
  expect_setequal(unique(res$term), c("S1", "C1", "C2", "joint", "pre_trend"))
  expect_setequal(unique(res$celltype), c("CD8 T cell", "Monocyte/Macrophage"))
  keep <- cd4$cell_type == "CD8 T cell"
  pv <- pv_visits(expr4[genes4[1], ], visits4, "Pre", keep = keep)
  fit <- fit_visits(pv, visits4, "Pre")
  check_event_rows(res[res$celltype == "CD8 T cell", ], genes4[1], pv, fit, visits4, "Pre")
})

test_that("single-arm studies: within_arm and did_table on a design without control", {
  one <- sce4[, cd4$response == "Responder"]
  d1 <- trial_design("participant", "visit", "response", "Responder", baseline = "Pre", followup = "C2")
  expect_output(print(d1), "single arm \"Responder\"")
  w <- suppressWarnings(within_arm(one, d1, "Responder", features = genes4, verbose = FALSE))
  msg <- paste(testthat::capture_messages(dd <- suppressWarnings(did_table(one, d1, features = genes4))), collapse = "")
  expect_match(msg, "Single-arm design")
  expect_equal(dd$estimate, w$estimate)
  # Against lm on the arm's paired participants.
  two <- trial_design("participant", "visit", "response", "Responder", "Non-responder", baseline = "Pre", followup = "C2")
  ref <- suppressWarnings(within_arm(sce4, two, "Responder", features = genes4, verbose = FALSE))
  expect_equal(w$estimate, ref$estimate)
  expect_equal(w$p_value, ref$p_value)
  expect_false(anyNA(w$estimate))
  expect_error(within_arm(one, d1, "Non-responder"), "`arm` must be \"Responder\"")
  expect_error(did_table(one, d1, visits = c("Pre", "C1", "C2")), "`visits` needs two arms")
  expect_error(trial_design("participant", "visit", "response", "Responder", control = ""), "`control` must be NULL")
})

test_that("a third arm is left out with a message naming it and its participants", {
  s3 <- sce4[genes4, ]
  s3$response[s3$participant %in% c("P3", "P8")] <- "Placebo"
  msg <- paste(testthat::capture_messages(res <- suppressWarnings(did_table(s3, design4, visits = c("Pre", "C1")))),
               collapse = "")
  expect_match(msg, "in other arms \\(Placebo: participant\\(s\\) P3, P8; only")
  ref <- suppressMessages(suppressWarnings(did_table(s3[, s3$response != "Placebo"], design4, visits = c("Pre", "C1"))))
  expect_equal(res$estimate, ref$estimate)
  expect_equal(res$n_units[1], ref$n_units[1])
})

test_that("simulate_trial(visits =) keeps the two-visit data and checks its argument", {
  a <- simulate_trial(n_genes = 200, n_cells = 400, n_effect_genes = 5, seed = 3)
  b <- simulate_trial(n_genes = 200, n_cells = 400, n_effect_genes = 5, seed = 3, visits = c("Pre", "Post"))
  expect_identical(SingleCellExperiment::logcounts(a), SingleCellExperiment::logcounts(b))
  expect_equal(levels(sce4$visit), visits4)
  expect_error(simulate_trial(visits = "Pre"), "`visits` must be two or more distinct visit labels")
  expect_error(simulate_trial(visits = c("A", "B"), onset = "B"), "`onset` must be one of `visits` other than the last")
  # With onset = "Pre" the planted genes do not move before Pre: the pre-trend is null.
  s5 <- simulate_trial(n_genes = 200, n_cells = 3000, n_paired = 12, n_treated_paired = 6, n_effect_genes = 10,
                       effect = 2, visits = c("S1", "Pre", "C1"), onset = "Pre", seed = 4)
  d5 <- trial_design("participant", "visit", "response", "Responder", "Non-responder", baseline = "Pre", followup = "C1")
  r5 <- suppressMessages(suppressWarnings(did_table(s5, d5, visits = "all")))
  truth <- S4Vectors::metadata(s5)$truth
  planted <- r5$feature %in% truth$gene[truth$did_effect != 0]
  expect_gt(mean(abs(r5$estimate[planted & r5$term == "C1"])), 3 * mean(abs(r5$estimate[planted & r5$term == "S1"])))
})

# A null trial: `n_part` participants, `n_treated` of them treated, two visits.
null_trial <- function(n_part, n_treated, n_genes, seed) {
  set.seed(seed)
  pid <- rep(paste0("Q", seq_len(n_part)), each = 30)
  visit <- rep(rep(c("Pre", "Post"), each = 15), n_part)
  arm <- rep(ifelse(seq_len(n_part) <= n_treated, "A", "B"), each = 30)
  u <- matrix(rnorm(n_genes * n_part), n_genes)
  # Participant-specific changes (random slopes), so participants are the replication unit.
  s <- matrix(rnorm(n_genes * n_part, 0, 0.5), n_genes)
  pidx <- match(pid, unique(pid))
  y <- u[, pidx] + s[, pidx] * (visit == "Post") + matrix(rnorm(n_genes * length(pid)), n_genes)
  dimnames(y) <- list(paste0("g", seq_len(n_genes)), paste0("c", seq_along(pid)))
  SummarizedExperiment::SummarizedExperiment(list(logcounts = y),
                                             colData = S4Vectors::DataFrame(pid = pid, visit = visit, arm = arm))
}
null_design <- trial_design("pid", "visit", "arm", "A", "B", baseline = "Pre", followup = "Post")

test_that("randomisation inference equals refitting lm + clubSandwich over every arm assignment", {
  se <- null_trial(7, 3, 3, seed = 5)
  msg <- paste(testthat::capture_messages(res <- suppressWarnings(did_table(se, null_design, permutations = 1000))),
               collapse = "")
  expect_match(msg, "all 35 assignments of 3 treated among 7 participants")
  y <- SummarizedExperiment::assay(se)
  cdn <- as.data.frame(SummarizedExperiment::colData(se))
  for (g in rownames(se)[1:2]) {
    key <- paste(cdn$pid, cdn$visit)
    pv <- data.frame(pid = tapply(cdn$pid, key, `[`, 1), post = tapply(cdn$visit == "Post", key, `[`, 1),
                     trt = tapply(cdn$arm == "A", key, `[`, 1), y = tapply(y[g, ], key, mean), n = 15)
    t_of <- function(trt_units) {
      pv$d <- pv$post * (pv$pid %in% trt_units)
      f <- lm(y ~ post + d + factor(pid), data = pv, weights = n)
      clubSandwich::coef_test(f, vcov = "CR2", cluster = pv$pid)["d", "tstat"]
    }
    units <- sort(unique(pv$pid))
    t_obs <- t_of(paste0("Q", 1:3))
    t_all <- apply(utils::combn(units, 3), 2, t_of)
    expect_equal(res$perm_p[res$feature == g], mean(abs(t_all) >= abs(t_obs) * (1 - 1e-9)))
  }
  expect_equal(res$perm_fdr, p.adjust(res$perm_p, "BH"))
  expect_error(did_table(se, null_design, permutations = -1), "`permutations` must be a single whole number")
  one <- trial_design("pid", "visit", "arm", "A", baseline = "Pre", followup = "Post")
  expect_error(suppressMessages(did_table(se[, se$arm == "A"], one, permutations = 10)),
               "`permutations` reassigns the arms, and a single-arm design has one: use `bootstrap`")
})

test_that("with 3 of 10 participants treated, randomisation inference holds its size at 5% and 10%", {
  se <- null_trial(10, 3, 800, seed = 8)
  res <- suppressMessages(suppressWarnings(did_table(se, null_design, permutations = 1000)))
  # 120 assignments: under the null P(p <= 0.05) = 6/120 and P(p <= 0.10) = 12/120 exactly.
  expect_lt(abs(mean(res$perm_p <= 0.05) - 0.05), 0.02)
  expect_lt(abs(mean(res$perm_p <= 0.10) - 0.10), 0.03)
  expect_true(all(abs(res$perm_p * 120 - round(res$perm_p * 120)) < 1e-9))
})

test_that("event-study wild bootstrap: each term's null imposed, equal to refitting lm per draw", {
  visits <- c("Pre", "C1", "C2")
  B <- 19
  g <- genes4[1]
  res <- suppressMessages(suppressWarnings(did_table(sce4, design4, features = g, visits = visits, bootstrap = B, seed = 4,
                                                    conf_level = 0.9)))
  pv <- pv_visits(expr4[g, ], visits, "Pre")
  units <- sort(unique(pv$participant))
  w <- sceffects:::boot_weights(B, length(units), 4)
  cl <- match(pv$participant, units)
  full <- fit_visits(pv, visits, "Pre")
  ct <- clubSandwich::coef_test(full, vcov = "CR2", cluster = pv$participant)
  for (v in c("C1", "C2")) {
    term <- paste0("d_", v)
    restricted <- stats::update(full, stats::as.formula(paste(". ~ . -", term)))
    t_star <- vapply(seq_len(B), function(b) {
      pv$ys_star <- fitted(restricted) + w[b, cl] * residuals(restricted)
      f <- stats::update(full, ys_star ~ ., data = pv)
      clubSandwich::coef_test(f, vcov = "CR2", cluster = pv$participant)[term, "tstat"]
    }, 0)
    count <- sum(abs(t_star) >= abs(ct[term, "tstat"]) * (1 - 1e-9))
    r <- res[res$term == v, ]
    expect_equal(r$boot_p, (1 + count) / (1 + B))
    # Symmetric bootstrap-t interval at 0.9: the ceiling(20 * 0.9) = 18th smallest |t*|.
    crit <- sort(abs(t_star))[18]
    expect_equal(c(r$boot_conf_low, r$boot_conf_high), r$estimate + c(-1, 1) * crit * r$std_error, tolerance = 1e-8)
  }
  # The joint row has the bootstrap of its Wald F (tested against refitting below).
  expect_false(is.na(res$boot_p[res$term == "joint"]))
  # Two visits through `visits`: the same bootstrap as the pre/post DiD.
  d2 <- trial_design("participant", "visit", "response", "Responder", "Non-responder", baseline = "Pre", followup = "C2")
  a <- suppressMessages(suppressWarnings(did_table(sce4, d2, features = genes4, bootstrap = 29, seed = 2)))
  b <- suppressMessages(suppressWarnings(did_table(sce4, d2, features = genes4, bootstrap = 29, seed = 2, visits = c("Pre", "C2"))))
  expect_equal(b$boot_p[b$term == "C2"], a$boot_p)
  expect_equal(b$boot_conf_low[b$term == "C2"], a$boot_conf_low)
  expect_true(all(a$boot_conf_low < a$estimate & a$estimate < a$boot_conf_high))
  # 29 draws cannot give a 99% interval: infinite.
  z <- suppressMessages(suppressWarnings(did_table(sce4, d2, features = genes4[1], bootstrap = 29, conf_level = 0.99)))
  expect_equal(c(z$boot_conf_low, z$boot_conf_high), c(-Inf, Inf))
})

test_that("trend = 'linear' equals lm with a time slope per arm + clubSandwich, on numeric times", {
  visits <- c("Pre", "C1", "C2")
  times <- c(0, 21, 63)
  res <- suppressMessages(suppressWarnings(did_table(sce4, design4, features = genes4, visits = visits,
                                                    trend = "linear", times = times)))
  expect_equal(unique(res$term), "slope")
  expect_equal(nrow(res), length(genes4))
  for (g in genes4) {
    pv <- pv_visits(expr4[g, ], visits, "Pre")
    pv$time <- times[match(pv$visit, visits)]
    pv$slope_trt <- pv$time * pv$trt
    fit <- lm(ys ~ time + slope_trt + factor(participant), data = pv, weights = n)
    ct <- clubSandwich::coef_test(fit, vcov = "CR2", cluster = pv$participant)
    r <- res[res$feature == g, ]
    expect_equal(r$estimate, unname(stats::coef(fit)["slope_trt"]), tolerance = 1e-8)
    expect_equal(r$std_error, ct["slope_trt", "SE"], tolerance = 1e-8)
    expect_equal(r$df, ct["slope_trt", "df_Satt"], tolerance = 1e-8)
    expect_equal(r$p_value, ct["slope_trt", "p_Satt"], tolerance = 1e-8)
    expect_equal(r$control_change, unname(stats::coef(fit)["time"]), tolerance = 1e-8)
  }
  # Default times 0, 1, 2; numeric times that are not increasing, or without `visits`, are errors.
  d <- suppressMessages(suppressWarnings(did_table(sce4, design4, features = genes4[1], visits = visits, trend = "linear")))
  pv <- pv_visits(expr4[genes4[1], ], visits, "Pre")
  pv$time <- match(pv$visit, visits) - 1
  pv$slope_trt <- pv$time * pv$trt
  expect_equal(d$estimate, unname(coef(lm(ys ~ time + slope_trt + factor(participant), data = pv, weights = n))["slope_trt"]),
               tolerance = 1e-8)
  expect_error(did_table(sce4, design4, visits = visits, trend = "linear", times = c(0, 21, 7)),
               "`times` must be 3 finite, strictly increasing numbers")
  expect_error(did_table(sce4, design4, visits = visits, trend = "linear", times = c(0, 21)), "`times` must be 3")
  expect_error(did_table(sce4, design4, trend = "linear"), "`trend = \"linear\"` needs `visits`")
  expect_error(did_table(sce4, design4, visits = visits, times = c(0, 1, 2)), "`times` is only used with")
})

test_that("plot_event_study draws each visit's DiD and interval with the baseline at 0", {
  res <- suppressMessages(suppressWarnings(did_table(sce4, design4, features = genes4[1:3], visits = visits4)))
  msg <- testthat::capture_messages(p <- plot_event_study(res))
  expect_match(paste(msg, collapse = ""), "Drawing the 3 feature\\(s\\) with the smallest joint p-value")
  expect_s3_class(p, "ggplot")
  expect_silent(ggplot2::ggplot_build(p))
  d <- p$data
  expect_equal(levels(d$term), visits4)
  base <- d[d$term == "Pre", ]
  expect_equal(nrow(base), 3L)
  expect_true(all(base$estimate == 0 & base$conf_low == 0))
  c2 <- d[d$term == "C2" & d$feature == genes4[2], ]
  r <- res[res$term == "C2" & res$feature == genes4[2], ]
  expect_equal(c(c2$estimate, c2$conf_low, c2$conf_high), c(r$estimate, r$conf_low, r$conf_high))
  expect_s3_class(plot_event_study(res, features = genes4[1]), "ggplot")
  expect_error(plot_event_study(res, features = "nope"), "`features` not in `results`: nope")
  two <- suppressMessages(suppressWarnings(did_table(sce4, design4, features = genes4[1:2])))
  expect_error(plot_event_study(two), "`results` must be an event-study table")
  ct <- suppressMessages(suppressWarnings(did_table(sce4, design4, features = genes4[1:2], visits = visits4,
                                                   celltype = c("CD8 T cell", "Monocyte/Macrophage"))))
  expect_equal(plot_event_study(ct, celltype = "Monocyte/Macrophage", features = genes4[1])$labels$subtitle,
               "Monocyte/Macrophage")
  expect_error(plot_event_study(ct, celltype = "B"), "`celltype` must be one of")
})

test_that("Hedges' g on participant means equals the direct formula, with its interval", {
  design <- trial_design("participant", "visit", "response", "Responder", "Non-responder", baseline = "Pre", followup = "C2")
  res <- suppressMessages(suppressWarnings(did_table(sce4, design, features = genes4, conf_level = 0.9)))
  for (g in genes4) {
    keep <- cd4$visit %in% c("Pre", "C2")
    means <- tapply(expr4[g, keep], list(cd4$participant[keep], as.character(cd4$visit[keep])), mean)
    means <- means[stats::complete.cases(means), ]
    change <- means[, "C2"] - means[, "Pre"]
    arm <- tapply(cd4$response, cd4$participant, `[`, 1)[rownames(means)] == "Responder"
    n1 <- sum(arm)
    n0 <- sum(!arm)
    sp <- sqrt(((n1 - 1) * var(change[arm]) + (n0 - 1) * var(change[!arm])) / (n1 + n0 - 2))
    hg <- (1 - 3 / (4 * (n1 + n0 - 2) - 1)) * (mean(change[arm]) - mean(change[!arm])) / sp
    se <- sqrt((n1 + n0) / (n1 * n0) + hg^2 / (2 * (n1 + n0)))
    r <- res[res$feature == g, ]
    expect_equal(r$hedges_g, hg, tolerance = 1e-10)
    expect_equal(c(r$hedges_g_low, r$hedges_g_high), hg + c(-1, 1) * qnorm(0.95) * se, tolerance = 1e-10)
  }
  cell <- suppressMessages(suppressWarnings(did_table(sce4, design, features = genes4[1], aggregate = "cell")))
  expect_null(cell$hedges_g)
})

test_that("cell-level event study equals lm on cells + clubSandwich coef_test and Wald_test", {
  g <- genes4[1]
  visits <- c("Pre", "C1", "C2")
  r <- suppressMessages(suppressWarnings(did_table(sce4, design4, features = g, visits = visits, aggregate = "cell",
                                                  standardize = FALSE)))
  d <- cd4[cd4$visit %in% visits, ]
  d$y <- expr4[g, cd4$visit %in% visits]
  d <- d[d$participant %in% names(which(rowSums(table(d$participant, as.character(d$visit)) > 0) >= 2)), ]
  d$trt <- as.numeric(d$response == "Responder")
  for (v in c("C1", "C2")) {
    d[[paste0("v_", v)]] <- as.numeric(d$visit == v)
    d[[paste0("d_", v)]] <- d[[paste0("v_", v)]] * d$trt
  }
  fit <- lm(y ~ v_C1 + v_C2 + d_C1 + d_C2 + factor(participant), data = d)
  ct <- clubSandwich::coef_test(fit, vcov = "CR2", cluster = d$participant)
  w <- htz(fit, d, c("d_C1", "d_C2"))
  expect_equal(r$estimate[r$term %in% c("C1", "C2")], unname(coef(fit)[c("d_C1", "d_C2")]), tolerance = 1e-8)
  expect_equal(r$std_error[r$term %in% c("C1", "C2")], ct[c("d_C1", "d_C2"), "SE"], tolerance = 1e-8)
  expect_equal(r$df[r$term %in% c("C1", "C2")], ct[c("d_C1", "d_C2"), "df_Satt"], tolerance = 1e-8)
  j <- r[r$term == "joint", ]
  expect_equal(c(j$statistic, j$df, j$p_value), c(w$Fstat, w$df_denom, w$p_val), tolerance = 1e-8)
})

test_that("equal-tailed percentile-t intervals and the joint tests' bootstrap equal refitting lm per draw", {
  visits <- c("S1", "Pre", "C1", "C2")
  B <- 19
  g <- genes4[2]
  res <- suppressMessages(suppressWarnings(did_table(sce4, design4, features = g, visits = visits, bootstrap = B, seed = 6,
                                                    conf_level = 0.9, boot_interval = "equal_tailed")))
  pv <- pv_visits(expr4[g, ], visits, "Pre")
  units <- sort(unique(pv$participant))
  w <- sceffects:::boot_weights(B, length(units), 6)
  cl <- match(pv$participant, units)
  full <- fit_visits(pv, visits, "Pre")
  # Draws under a restricted fit without `drop`, each refitted in full.
  refit_draws <- function(drop, stat) {
    restricted <- stats::update(full, stats::as.formula(paste(". ~ . -", paste(drop, collapse = " - "))))
    vapply(seq_len(B), function(b) {
      pv$ys_star <- fitted(restricted) + w[b, cl] * residuals(restricted)
      stat(stats::update(full, ys_star ~ ., data = pv))
    }, 0)
  }
  ct <- clubSandwich::coef_test(full, vcov = "CR2", cluster = pv$participant)
  for (v in c("S1", "C1", "C2")) {
    term <- paste0("d_", v)
    t_star <- refit_draws(term, function(f) clubSandwich::coef_test(f, vcov = "CR2", cluster = pv$participant)[term, "tstat"])
    r <- res[res$term == v, ]
    # floor(20 * 0.05) = 1st and ceiling(20 * 0.95) = 19th smallest t*.
    q <- sort(t_star)[c(1, 19)]
    expect_equal(c(r$boot_conf_low, r$boot_conf_high), r$estimate - rev(q) * r$std_error, tolerance = 1e-8)
    expect_equal(r$boot_p, (1 + sum(abs(t_star) >= abs(ct[term, "tstat"]) * (1 - 1e-9))) / (1 + B))
  }
  for (test in list(joint = c("d_S1", "d_C1", "d_C2"), pre_trend = "d_S1")) {
    f_star <- refit_draws(test, function(f) htz(f, pv, test)$Fstat)
    f_obs <- htz(full, pv, test)$Fstat
    r <- res[res$term == if (length(test) == 3L) "joint" else "pre_trend", ]
    expect_equal(r$statistic, f_obs, tolerance = 1e-8)
    expect_equal(r$boot_p, (1 + sum(f_star >= f_obs * (1 - 1e-9))) / (1 + B))
  }
  expect_equal(res$boot_fdr[res$term == "joint"], res$boot_p[res$term == "joint"])
  expect_error(did_table(sce4, design4, features = g, bootstrap = 9, boot_interval = "percentile"),
               "`boot_interval` must be one of \"symmetric\", \"equal_tailed\"")
})

test_that("equal-tailed intervals of the pre/post DiD: t* quantiles of a refitted wild bootstrap (CR1 too)", {
  se <- null_trial(8, 4, 2, seed = 12)
  B <- 39
  for (vcov in c("CR2", "CR1")) {
    sym <- suppressMessages(suppressWarnings(did_table(se, null_design, bootstrap = B, seed = 3, vcov = vcov)))
    eq <- suppressMessages(suppressWarnings(did_table(se, null_design, bootstrap = B, seed = 3, vcov = vcov,
                                                     boot_interval = "equal_tailed")))
    y <- SummarizedExperiment::assay(se)
    cdn <- as.data.frame(SummarizedExperiment::colData(se))
    key <- paste(cdn$pid, cdn$visit)
    pv <- data.frame(pid = tapply(cdn$pid, key, `[`, 1), post = as.numeric(tapply(cdn$visit == "Post", key, `[`, 1)),
                     trt = as.numeric(tapply(cdn$arm == "A", key, `[`, 1)), y = tapply(y["g1", ], key, mean))
    pv$d <- pv$post * pv$trt
    pv$ys <- pv$y / sd(pv$y)
    units <- sort(unique(pv$pid))
    w <- sceffects:::boot_weights(B, length(units), 3)
    restricted <- lm(ys ~ post + factor(pid), data = pv)
    t_of <- function(f) {
      if (vcov == "CR2") return(clubSandwich::coef_test(f, vcov = "CR2", cluster = pv$pid)["d", "tstat"])
      coef(f)["d"] / sqrt(sandwich::vcovCL(f, cluster = pv$pid, type = "HC1")["d", "d"])
    }
    t_star <- vapply(seq_len(B), function(b) {
      pv$ys_star <- fitted(restricted) + w[b, match(pv$pid, units)] * residuals(restricted)
      t_of(lm(ys_star ~ post + d + factor(pid), data = pv))
    }, 0)
    r <- eq[eq$feature == "g1", ]
    # 95%: floor(40 * 0.025) = 1st, ceiling(40 * 0.975) = 39th smallest t*; symmetric: the 38th |t*|.
    expect_equal(c(r$boot_conf_low, r$boot_conf_high), r$estimate - sort(t_star)[c(39, 1)] * r$std_error,
                 tolerance = 1e-8)
    s1 <- sym[sym$feature == "g1", ]
    expect_equal(s1$boot_conf_high - s1$estimate, sort(abs(t_star))[38] * s1$std_error, tolerance = 1e-8)
    expect_equal(eq$boot_p, sym$boot_p)
  }
})

test_that("randomisation inference with three visits equals refitting lm + clubSandwich over every assignment", {
  keep <- cd4$participant %in% c("P1", "P2", "P3", "P7", "P8", "P9", "P10") & cd4$visit %in% c("Pre", "C1", "C2")
  sub <- sce4[, keep]
  visits <- c("Pre", "C1", "C2")
  g <- genes4[1]
  msg <- paste(testthat::capture_messages(res <- suppressWarnings(did_table(sub, design4, features = g, visits = visits,
                                                                            permutations = 100))), collapse = "")
  expect_match(msg, "all 35 assignments of 3 treated among 7 participants")
  pv <- pv_visits(expr4[g, ], visits, "Pre", keep = keep)
  units <- sort(unique(pv$participant))
  stats_of <- function(treated) {
    pv$trt <- as.numeric(pv$participant %in% treated)
    for (v in c("C1", "C2")) pv[[paste0("d_", v)]] <- pv[[paste0("v_", v)]] * pv$trt
    fit <- fit_visits(pv, visits, "Pre")
    ct <- clubSandwich::coef_test(fit, vcov = "CR2", cluster = pv$participant)
    c(ct[c("d_C1", "d_C2"), "tstat"], htz(fit, pv, c("d_C1", "d_C2"))$Fstat)
  }
  obs <- stats_of(c("P1", "P2", "P3"))
  all <- apply(utils::combn(units, 3), 2, stats_of)
  expect_equal(res$perm_p[res$term == "C1"], mean(abs(all[1, ]) >= abs(obs[1]) * (1 - 1e-9)))
  expect_equal(res$perm_p[res$term == "C2"], mean(abs(all[2, ]) >= abs(obs[2]) * (1 - 1e-9)))
  expect_equal(res$perm_p[res$term == "joint"], mean(all[3, ] >= obs[3] * (1 - 1e-9)))
  # A linear trend: the slope difference's t.
  tr <- suppressMessages(suppressWarnings(did_table(sub, design4, features = g, visits = visits, trend = "linear",
                                                   permutations = 100)))
  slope_t <- function(treated) {
    pv$time <- match(pv$visit, visits) - 1
    pv$slope_trt <- pv$time * (pv$participant %in% treated)
    f <- lm(ys ~ time + slope_trt + factor(participant), data = pv, weights = n)
    clubSandwich::coef_test(f, vcov = "CR2", cluster = pv$participant)["slope_trt", "tstat"]
  }
  t_all <- apply(utils::combn(units, 3), 2, slope_t)
  expect_equal(tr$perm_p, mean(abs(t_all) >= abs(slope_t(c("P1", "P2", "P3"))) * (1 - 1e-9)))
})

test_that("participant_visit_celltype: one pass, the same rows as one fit per cell type", {
  types <- c("CD8 T cell", "Monocyte/Macrophage", "B cell")
  visits <- c("Pre", "C1", "C2")
  a <- suppressMessages(suppressWarnings(did_table(sce4, design4, features = genes4, visits = visits,
                                                  aggregate = "participant_visit_celltype", celltype = types)))
  expect_setequal(unique(a$celltype), types)
  for (ct in types) {
    one <- suppressMessages(suppressWarnings(did_table(sce4[, cd4$cell_type == ct], design4, features = genes4,
                                                      visits = visits)))
    got <- a[a$celltype == ct, ]
    expect_equal(got$estimate, one$estimate, tolerance = 1e-12)
    expect_equal(got$p_value, one$p_value, tolerance = 1e-12)
    expect_equal(got$fdr, one$fdr)
  }
  for (tm in unique(a$term)) expect_equal(a$fdr_overall[a$term == tm], stats::p.adjust(a$p_value[a$term == tm], "BH"))
  # All cell types by default; two-visit bootstrap per cell type equals the separate fit.
  b <- suppressMessages(suppressWarnings(did_table(sce4, design4, features = genes4[1:2],
                                                  aggregate = "participant_visit_celltype", bootstrap = 19, seed = 1)))
  expect_setequal(unique(b$celltype), sort(unique(cd4$cell_type)))
  cd8 <- suppressMessages(suppressWarnings(did_table(sce4[, cd4$cell_type == "CD8 T cell"], design4, features = genes4[1:2],
                                                    bootstrap = 19, seed = 1)))
  expect_equal(b$boot_p[b$celltype == "CD8 T cell"], cd8$boot_p)
  expect_equal(b$hedges_g[b$celltype == "CD8 T cell"], cd8$hedges_g)
  no_type <- trial_design("participant", "visit", "response", "Responder", "Non-responder", baseline = "Pre", followup = "C1")
  expect_error(did_table(sce4, no_type, aggregate = "participant_visit_celltype"),
               "`aggregate = \"participant_visit_celltype\"` needs a design with a `celltype` column")
})

test_that("the median aggregate equals lm on participant-visit medians (zeros counted) + clubSandwich", {
  visits <- c("Pre", "C1", "C2")
  # CD8 T cells: their markers (GENE00001, ...) are detected in most cells, the others in few.
  cd8 <- cd4$cell_type == "CD8 T cell"
  genes <- unique(c("GENE00002", "GENE00003", genes4))
  res <- suppressMessages(suppressWarnings(did_table(sce4[, cd8], design4, features = genes, visits = visits,
                                                    summary = "median")))
  dense <- suppressMessages(suppressWarnings(did_table(
    SingleCellExperiment::SingleCellExperiment(list(logcounts = as.matrix(expr4[genes, cd8])),
                                               colData = SummarizedExperiment::colData(sce4)[cd8, ]),
    design4, visits = visits, summary = "median")))
  expect_equal(dense$estimate, res$estimate, tolerance = 1e-12)
  compared <- 0
  for (g in genes) {
    y <- as.numeric(expr4[g, ])
    pv <- pv_visits(y, visits, "Pre", keep = cd8)
    key <- paste(cd4$participant, cd4$visit)[cd8]
    pv$y <- as.numeric(tapply(y[cd8], key, stats::median)[paste(pv$participant, pv$visit)])
    if (stats::sd(pv$y) == 0) {
      # Every participant-visit median is zero: no variance.
      expect_true(all(res$reason[res$feature == g] == "zero variance"))
      next
    }
    pv$ys <- pv$y / stats::sd(pv$y)
    fit <- fit_visits(pv, visits, "Pre")
    check_event_rows(res, g, pv, fit, visits, "Pre")
    compared <- compared + 1
  }
  expect_gte(compared, 3)
  # Medians differ from means here (most values are zeros).
  means <- suppressMessages(suppressWarnings(did_table(sce4[, cd8], design4, features = genes, visits = visits)))
  expect_false(isTRUE(all.equal(means$estimate, res$estimate)))
  expect_error(did_table(sce4, design4, aggregate = "cell", summary = "median"),
               "`summary = \"median\"` summarises the cells of each participant-visit")
  expect_error(did_table(sce4, design4, summary = "mode"), "`summary` must be one of")
  bad <- sce4[genes4, ]
  m <- SingleCellExperiment::logcounts(bad)
  m@x[1] <- NA
  SingleCellExperiment::logcounts(bad) <- m
  expect_error(suppressMessages(did_table(bad, design4, summary = "median")), "`x` contains infinite or missing values")
})

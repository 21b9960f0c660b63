# Difference-in-differences for trials: designs, the DiD table, within- and between-arm
# comparisons, response harmonisation and compositional DiD. Formulas and designs are
# built here; every feature is fitted by the core's cluster-robust WLS (rs_cluster_fit)
# on a design shared by all features, after one pass that sums cells per
# participant-visit (rs_group_sums).

#' Describe a pre/post trial
#'
#' Names the `colData()` columns that hold the participant (the unit of replication and
#' the cluster), the visit and the arm, and the labels of the two arms and two visits.
#' Nothing is read until the design is used; [did_table()] and friends validate it
#' against the data and report participants seen at one visit only, who are dropped from
#' paired analyses.
#'
#' @param participant,visit,arm Column names in `colData(x)`.
#' @param treated,control Labels of `arm` for the treated (e.g. responders) and control
#'   arms; `control = NULL` for a single-arm study (pre/post changes only). Cells of any
#'   other arm, or with a missing (NA) arm, visit or participant, are left out, with a
#'   message saying how many, why, and which participants.
#' @param celltype Optional column name of cell types, for `celltype =` in [did_table()]
#'   and for [abundance_did()].
#' @param baseline,followup Labels of `visit` for the pre and post visits. By default the
#'   first two levels when `visit` is a factor. Give one and the other is the only other
#'   visit of the column (an error when there are more than two); give both when `visit`
#'   is not a factor with two levels. Either may be any visit: `baseline = "Post"`,
#'   `followup = "Pre"` reverses time.
#' @return A `sceffects_trial_design` object.
#' @export
#' @examples
#' design <- trial_design("participant", "visit", "response", treated = "Responder",
#'                        control = "Non-responder", celltype = "cell_type",
#'                        baseline = "Pre", followup = "Post")
#' design
trial_design <- function(participant, visit, arm, treated, control = NULL, celltype = NULL,
                         baseline = NULL, followup = NULL) {
  if (!is.null(control) && (!is.character(control) || length(control) != 1L || is.na(control) || control == "")) {
    stop("`control` must be NULL (a single-arm study) or a single non-empty string.", call. = FALSE)
  }
  for (nm in c("participant", "visit", "arm", "treated")) {
    v <- get(nm)
    if (!is.character(v) || length(v) != 1L || is.na(v) || v == "") {
      stop(sprintf("`%s` must be a single non-empty string.", nm), call. = FALSE)
    }
  }
  for (nm in c("celltype", "baseline", "followup")) {
    v <- get(nm)
    if (!is.null(v) && (!is.character(v) || length(v) != 1L || is.na(v))) {
      stop(sprintf("`%s` must be NULL or a single string.", nm), call. = FALSE)
    }
  }
  if (identical(treated, control)) stop("`treated` and `control` must be different labels.", call. = FALSE)
  if (!is.null(baseline) && identical(baseline, followup)) {
    stop("`baseline` and `followup` must be different visits.", call. = FALSE)
  }
  structure(list(participant = participant, visit = visit, arm = arm, treated = treated,
                 control = control, celltype = celltype, baseline = baseline,
                 followup = followup), class = "sceffects_trial_design")
}

#' @export
print.sceffects_trial_design <- function(x, ...) {
  cat("<sceffects trial design>\n")
  other <- "the other visit"
  arms <- if (is.null(x$control)) sprintf("single arm \"%s\"", x$treated) else
    sprintf("treated \"%s\" vs control \"%s\"", x$treated, x$control)
  cat(sprintf("  participant: %s\n  visit:       %s (%s -> %s)\n  arm:         %s (%s)\n",
              x$participant, x$visit,
              x$baseline %||% (if (is.null(x$followup)) "first level" else other),
              x$followup %||% (if (is.null(x$baseline)) "second level" else other),
              x$arm, arms))
  if (!is.null(x$celltype)) cat(sprintf("  cell type:   %s\n", x$celltype))
  invisible(x)
}

check_design <- function(design) {
  if (!inherits(design, "sceffects_trial_design")) {
    stop("`design` must be made by trial_design().", call. = FALSE)
  }
}

check_trial_object <- function(x) {
  if (is(x, "SummarizedExperiment")) return(invisible())
  fix <- if (is(x, "ExpressionSet")) {
    "convert it with SummarizedExperiment::makeSummarizedExperimentFromExpressionSet(x)"
  } else if (is.matrix(x) || is(x, "Matrix") || is(x, "DelayedArray")) {
    "wrap a matrix (genes in rows, cells in columns) and its cell metadata as SummarizedExperiment::SummarizedExperiment(list(counts = x), colData = metadata)"
  } else {
    sprintf("it is a %s", class(x)[1L])
  }
  stop(sprintf("`x` must be a SingleCellExperiment or SummarizedExperiment with the design columns in colData(x): %s.", fix),
       call. = FALSE)
}

# The cells of a trial as a data.frame: participant, visit (0 = baseline, 1 = follow-up),
# treated (0/1), celltype; cells at other visits or arms, or with a missing participant,
# visit or arm, are NA in `visit`/`treated` and reported (`visits = FALSE` leaves the
# visit reasons out of the report, for analyses at one visit).
trial_cells <- function(x, design, verbose = TRUE, visits = TRUE, visit_order = NULL,
                        arms = c(design$treated, design$control)) {
  check_design(design)
  check_trial_object(x)
  # A plain list: every `[[` on a DataFrame is an S4 dispatch (about 0.2 ms each).
  cd <- as.list(SummarizedExperiment::colData(x))
  cols <- c(design$participant, design$visit, design$arm, design$celltype)
  missing <- setdiff(cols, names(cd))
  if (length(missing)) {
    stop(sprintf("`design` names columns that are not in colData(x): %s.", paste(missing, collapse = ", ")),
         call. = FALSE)
  }
  participant <- as.character(cd[[design$participant]])
  visit_values <- as.character(cd[[design$visit]])
  # An event study's visits in their order (index 0, 1, ...), else baseline and follow-up.
  visits_used <- visit_order %||% visit_labels(cd[[design$visit]], design)
  visit <- match(visit_values, visits_used) - 1L
  arm <- as.character(cd[[design$arm]])
  present <- unique(arm[!is.na(arm)])
  for (lab in arms) {
    if (!lab %in% present) {
      stop(sprintf("Arm label \"%s\" does not occur in colData column `%s` (it has: %s).", lab,
                   design$arm, name_list(present, 6L)), call. = FALSE)
    }
  }
  control <- design$control %||% NA_character_
  treated <- ifelse(arm == design$treated, 1L, ifelse(!is.na(control) & arm == control, 0L, NA_integer_))
  # A cell without a participant cannot be paired or clustered: it is left out everywhere.
  visit[is.na(participant)] <- NA_integer_
  treated[is.na(participant)] <- NA_integer_
  say_dropped_cells(participant, visit_values, visit, arm, treated, design, verbose, visits)
  cells <- data.frame(participant = participant, visit = visit, treated = treated,
                      stringsAsFactors = FALSE)
  if (!is.null(design$celltype)) cells$celltype <- as.character(cd[[design$celltype]])
  in_arm <- !is.na(treated)
  units <- sort(unique(participant[in_arm]))
  unit <- match(participant[in_arm], units)
  both <- units[tabulate(unit[!duplicated(treated[in_arm] * length(units) + unit)], length(units)) > 1L]
  if (length(both)) {
    stop(sprintf("Participants with cells in both arms: %s. Use harmonize_response() first.", name_list(both, 5L)),
         call. = FALSE)
  }
  cells
}

# One message: how many cells are left out, and why.
say_dropped_cells <- function(participant, visit_values, visit, arm, treated, design, verbose, visits) {
  no_pid <- is.na(participant)
  reasons <- character()
  if (any(no_pid)) {
    reasons <- c(reasons, sprintf("%d with no participant (NA in `%s`)", sum(no_pid), design$participant))
  }
  if (visits) {
    no_visit <- !no_pid & is.na(visit_values)
    other_visit <- !no_pid & !is.na(visit_values) & is.na(visit)
    if (any(no_visit)) reasons <- c(reasons, sprintf("%d with no visit (NA in `%s`)", sum(no_visit), design$visit))
    if (any(other_visit)) {
      reasons <- c(reasons, sprintf("%d at other visits (%s)", sum(other_visit),
                                    name_list(sort(unique(visit_values[other_visit])))))
    }
  }
  no_arm <- !no_pid & is.na(arm)
  other_arm <- !no_pid & !is.na(arm) & is.na(treated)
  if (any(no_arm)) reasons <- c(reasons, sprintf("%d with no arm (NA in `%s`)", sum(no_arm), design$arm))
  if (any(other_arm)) {
    others <- sort(unique(arm[other_arm]))
    who <- vapply(others, function(a) {
      sprintf("%s: participant(s) %s", a, name_list(sort(unique(participant[other_arm & arm == a])), 10L))
    }, "")
    compared <- if (is.null(design$control)) sprintf("only \"%s\" is analysed", design$treated) else
      sprintf("only \"%s\" and \"%s\" are compared", design$treated, design$control)
    reasons <- c(reasons, sprintf("%d in other arms (%s; %s)", sum(other_arm), paste(who, collapse = "; "), compared))
  }
  if (length(reasons)) say(sprintf("Cells left out: %s.", paste(reasons, collapse = "; ")), verbose)
  invisible()
}

# The baseline and follow-up labels: as given, or the two visits of the column when one or
# neither is given.
visit_labels <- function(v, design) {
  present <- unique(as.character(v[!is.na(v)]))
  available <- if (is.factor(v)) intersect(levels(v), present) else sort(present)
  labels <- c(design$baseline, design$followup)
  if (length(labels) == 0L) {
    if (!is.factor(v) || nlevels(v) < 2L) {
      stop("Set `baseline` and `followup` in trial_design(): the visit column is not a factor whose first two levels are the visits.",
           call. = FALSE)
    }
    labels <- levels(v)[1:2]
  }
  miss <- setdiff(labels, present)
  if (length(miss)) {
    stop(sprintf("Visit label(s) %s do not occur in colData column `%s` (it has: %s).",
                 paste0("\"", miss, "\"", collapse = ", "), design$visit, name_list(available, 6L)),
         call. = FALSE)
  }
  if (length(labels) == 2L) return(labels)
  # One label given: the other must be the only other visit.
  other <- setdiff(available, labels)
  if (length(other) != 1L) {
    stop(sprintf("Set both `baseline` and `followup` in trial_design(): colData column `%s` has %d visits besides \"%s\"%s.",
                 design$visit, length(other), labels,
                 if (length(other)) sprintf(" (%s)", name_list(other, 6L)) else ""), call. = FALSE)
  }
  if (is.null(design$baseline)) c(other, labels) else c(labels, other)
}

# Participants with cells at two or more visits among `keep` cells (at both visits of a
# pre/post design); a participant seen once is absorbed by its own effect.
paired_participants <- function(cells, keep) {
  keep <- keep & !is.na(cells$participant) & !is.na(cells$visit)
  units <- sort(unique(cells$participant[keep]))
  unit <- match(cells$participant[keep], units)
  first_seen <- !duplicated(cells$visit[keep] * length(units) + unit)
  units[tabulate(unit[first_seen], length(units)) >= 2L]
}

# The terms of an event study: the visits other than the baseline, in order, and which
# of them come before it (leads, whose DiD terms test parallel pre-trends).
event_terms <- function(model) {
  b <- match(model$baseline, model$visits)
  idx <- seq_along(model$visits)[-b]
  list(terms = model$visits[idx], index = idx - 1L, leads = which(idx < b))
}

#' Difference-in-differences for every gene or score of a trial
#'
#' For each feature, fits `outcome ~ visit + visit:arm + participant` (participant fixed
#' effects, plus `covariates`) by weighted least squares and reports the difference in
#' differences, (follow-up - baseline) in the treated arm minus the same in the control
#' arm, with inference clustered on participant. All features share one design, so the
#' core reduces each to a handful of sums in a single pass over the data (sparse input
#' stays sparse) and the whole transcriptome costs seconds.
#'
#' **Aggregation.** `"participant_visit"` fits the mean of each participant-visit (weights:
#' its number of cells, or equal with `weights = "equal"`), or its median with
#' `summary = "median"` (computed in the core; a sparse assay's zeros count without being
#' stored); `"cell"` fits cells, clustered on participant; `"pseudobulk"` fits `log1p(CPM)`
#' of the counts summed per participant-visit (library size over all genes of the assay).
#' `"participant_visit_celltype"` fits participant-visit values per cell type: one fit per
#' cell type of the design's `celltype` column (or of `celltype`), rows with a `celltype`
#' column, as `celltype = "all"`. Cell types (and any `celltype` strata of aggregated data)
#' share one pass over the assay: each block of genes is summed over every cell type's
#' participant-visits at once.
#'
#' **Inference.** `vcov = "CR2"` (default) is the bias-reduced cluster-robust variance of
#' Bell and McCaffrey with Satterthwaite degrees of freedom, equal to
#' `clubSandwich::coef_test(fit, vcov = "CR2", cluster = participant)`; `"CR1"` equals
#' `sandwich::vcovCL(fit, type = "HC1")` with t on G - 1 df (G participants). With
#' `bootstrap = B`, a wild cluster bootstrap-t with the null imposed (restricted fit
#' without the DiD term; Rademacher weights, or Webb's six-point weights when there are 12
#' or fewer participants) gives `boot_p = (1 + #{|t*| >= |t|}) / (1 + B)` (a draw within
#' 1e-9 relative of |t| counts, so the draw that reproduces the data always does); t* uses
#' the same `vcov`. The weights come from `seed` (column k belongs to the k-th paired
#' participant in sorted order) and are the same for every feature, so results do not
#' depend on `threads` or `BPPARAM`. `fdr` is always Benjamini-Hochberg of `p_value`;
#' with a bootstrap, `boot_fdr` is that of `boot_p`. `conf_low` and `conf_high` are t
#' intervals on `df` (Satterthwaite under CR2) at `conf_level`; with a bootstrap,
#' `boot_conf_low` and `boot_conf_high` are symmetric bootstrap-t intervals,
#' `estimate -/+ c * std_error` with `c` the `ceiling((B + 1) * conf_level)`-th smallest
#' `|t*|` of the B draws (infinite when B is too small for the level). With
#' `boot_interval = "equal_tailed"` they are equal-tailed percentile-t intervals,
#' `[estimate - t*_hi * std_error, estimate - t*_lo * std_error]`, `t*_lo` and `t*_hi` the
#' `floor((B + 1)(1 - conf_level) / 2)`-th and `ceiling((B + 1)(1 + conf_level) / 2)`-th
#' smallest signed `t*`: they follow a skewed `t*` distribution where the symmetric
#' interval (the default, whose coverage is usually closer to nominal with few clusters)
#' does not.
#'
#' **Effect size.** Two-visit DiDs on participant-visit means or pseudobulk also report
#' Hedges' g on participant means: each paired participant's change (follow-up minus
#' baseline), the arms' difference in mean change over the pooled SD of the changes,
#' small-sample corrected by `1 - 3 / (4 (n1 + n0 - 2) - 1)`, with the interval
#' `g -/+ z sqrt((n1 + n0) / (n1 n0) + g^2 / (2 (n1 + n0)))` at `conf_level` (Hedges and
#' Olkin). It ignores `covariates` and `weights`: participants count equally.
#'
#' **Few treated participants.** Cluster-robust tests and the wild cluster bootstrap
#' over-reject when one arm has few participants (with 3 of 10 treated the wild bootstrap
#' rejects about 7.5% of null genes at 5%). Then use `permutations` (e.g. 1000):
#' randomisation inference reassigns the arm among the paired participants, refits the
#' CR2 t for every feature, and compares; with every assignment enumerated its p-value
#' (`perm_p`) has exact size when participants are exchangeable under the null, its
#' resolution being 1 / the number of assignments (1/120 for 3 of 10, so p < 0.01 is
#' impossible there: use it to test one gene or a score, not to rank a transcriptome).
#' With 10 or more participants per arm, CR2 with Satterthwaite df is well calibrated and
#' the wild bootstrap (`bootstrap`) is a check. Randomisation inference works with more
#' than two visits (each visit term and the joint tests get `perm_p`) and with
#' `trend = "linear"`; a single-arm design has no arms to reassign (an error: use
#' `bootstrap`). [trial_power()] gives the power of a planned trial.
#'
#' **More than two visits (event study).** With `visits = c("Pre", "C1", "C2")` (in time
#' order; `"all"` takes every visit of the column) the model is
#' `outcome ~ visit + visit:arm + participant` with one DiD term per visit other than the
#' baseline (the design's `baseline` when it is among `visits`, else the first), each
#' against the baseline, with CR2/Satterthwaite (or CR1) inference as above: rows with
#' `term` naming the visit, `control_change` the control arm's change to that visit, and
#' `n_treated`/`n_control` the participants of each arm seen at it. Row `term = "joint"`
#' tests all DiD terms at once: under CR2 the Hotelling-type F of
#' `clubSandwich::Wald_test(fit, constraints, vcov = "CR2", test = "HTZ")` (`statistic`
#' the F, `df_num` and `df` its degrees of freedom); under CR1 `Q / q` on `q` and G - 1 df.
#' With visits before the baseline (e.g. `visits = c("Screen", "Pre", "C1")`, baseline
#' `"Pre"`), their terms are leads and row `term = "pre_trend"` tests them jointly
#' (parallel trends before treatment). Participants seen at two or more of the visits
#' enter the model; those missing some visits are fitted on the visits they have, listed
#' in a message and in `attr(result, "missing_visits")`. `fdr` is within each term. With
#' `bootstrap`, each visit term has its own wild bootstrap p (its null imposed; the same
#' weights), at the cost of one more pass over the aggregated data per term, and the
#' `joint` and `pre_trend` rows the wild bootstrap p of their Wald F (all their terms'
#' null imposed, `(1 + #{F* >= F}) / (1 + B)`).
#'
#' **Linear trends.** With `visits` and `trend = "linear"`, the model is
#' `outcome ~ time + time:arm + participant` on the visits' numeric `times` (default 0, 1,
#' 2, ...): one row per feature, `term = "slope"`, `estimate` the treated arm's slope minus
#' the control arm's per unit of time, `control_change` the control arm's slope.
#'
#' **Single-arm studies.** A design without `control` (`trial_design(control = NULL)`)
#' gives the pre/post change within the arm, as [within_arm()], with a message.
#'
#' Only participants with cells at both visits enter the model (others are reported in a
#' message and in `attr(result, "unpaired")`). With `standardize = TRUE` each feature is
#' divided by its SD over the fitted rows, so `estimate` is in SD units (p-values are
#' unchanged).
#'
#' @param x A SingleCellExperiment or SummarizedExperiment with the design columns in
#'   `colData(x)`. A matrix and its cell metadata are wrapped first, as
#'   `SummarizedExperiment::SummarizedExperiment(list(counts = x), colData = metadata)`
#'   (the error says so); an ExpressionSet is converted by
#'   `SummarizedExperiment::makeSummarizedExperimentFromExpressionSet()`.
#' @param design A [trial_design()].
#' @param features Genes (rownames of `x`) and/or numeric `colData` columns such as
#'   gene-set scores; `NULL` for all genes.
#' @param assay Assay name; default `"logcounts"` if present (`"counts"` for pseudobulk),
#'   else the first assay.
#' @param aggregate `"participant_visit"`, `"cell"`, `"pseudobulk"` or
#'   `"participant_visit_celltype"` (participant-visit values per cell type, in one pass).
#' @param standardize Divide each feature by its SD over the fitted rows.
#' @param covariates `colData` columns to adjust for. Participant-visit and pseudobulk
#'   modes average numeric covariates over cells; other covariates must be constant
#'   within a participant-visit. Covariates absorbed by the participant effects are dropped
#'   with a message.
#' @param celltype `NULL` (all cells), one cell type, or `"all"` (every cell type of the
#'   design's `celltype` column in turn; a `celltype` column is added, `fdr` is within cell
#'   type and `fdr_overall` across the table).
#' @param vcov `"CR2"` or `"CR1"`.
#' @param bootstrap Number of wild cluster bootstrap draws: 0 (none) to 1e6; adds `boot_p`
#'   and `boot_fdr`.
#' @param seed Seed of the bootstrap weights: `NULL` (default) draws one from R's random
#'   number generator, so `set.seed()` before the call makes it reproducible; a number fixes it.
#' @param weights Participant-visit weights: `"cells"` (cell counts) or `"equal"`.
#' @param threads Number of threads (default `getOption("sceffects.threads", 2)`).
#' @param BPPARAM Optional BiocParallel parameter: work is split across its workers, each
#'   receiving only its block (of a TENx file, a range of cells to sum).
#'   `aggregate = "participant_visit"` and `"pseudobulk"` are one pass over the cells: on a
#'   TENx / HDF5 file, one streaming read in blocks of `options(sceffects.block_memory)`,
#'   which the workers share; the fits of the aggregates then take milliseconds and run in
#'   this process with `threads` (on the workers only with `permutations`, which refit per
#'   reassignment). Cell-level fits (`aggregate = "cell"`) are split by features.
#' @param verbose Show messages (left-out cells and participants, dropped covariates)?
#'   Default `getOption("sceffects.verbose", TRUE)`.
#' @param visits `NULL` (the two visits of the design), or the visits of an event study in
#'   time order (at least two labels of the visit column), or `"all"`.
#' @param conf_level Level of the confidence intervals `conf_low`, `conf_high`.
#' @param trend `"visit"` (one DiD per visit, with `visits`) or `"linear"` (a difference in
#'   slopes over `times`; needs `visits`).
#' @param times With `trend = "linear"`: numeric times of `visits`, strictly increasing
#'   (e.g. days since baseline); default 0, 1, 2, ...
#' @param permutations Randomisation inference over arm assignments: 0 (none), or the
#'   number of assignments of the treated arm to the participants; when there are at most
#'   that many distinct assignments (120 for 3 treated of 10), all are used and the test
#'   is exact. Adds `perm_p` and `perm_fdr`. Two-arm designs only.
#' @param summary How the cells of a participant-visit are summarised with
#'   participant-visit aggregation: `"mean"` or `"median"`.
#' @param boot_interval Bootstrap-t intervals with `bootstrap > 0`: `"symmetric"` or
#'   `"equal_tailed"` (percentile-t).
#' @return A results table, one row per feature (and cell type; and term with `visits`):
#'   `feature`, `estimate` (the DiD), `std_error`, `statistic`, `df`, `p_value`, `log_p`,
#'   `fdr` (from `p_value`), `conf_low`, `conf_high`, `control_change` and
#'   `control_p_value` (the change in the control arm), `n_units` (paired participants),
#'   `n_cells`, `resid_sd`, `vcov`, `boot_p`, `boot_fdr`, `boot_conf_low` and
#'   `boot_conf_high` (when `bootstrap > 0`) and
#'   `reason` (why a row is NA); `perm_p` and `perm_fdr` with `permutations > 0`;
#'   `hedges_g`, `hedges_g_low`, `hedges_g_high` for two-visit DiDs on aggregated data. Event
#'   studies add `term`, `df_num`, `n_treated` and `n_control`.
#' @export
#' @examples
#' sce <- simulate_trial(n_genes = 300, n_cells = 3000, seed = 1)
#' design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
#'                        celltype = "cell_type", baseline = "Pre", followup = "Post")
#' res <- did_table(sce, design)
#' head(res[order(res$p_value), ])
#' # Three visits: one DiD per on-treatment visit, and a joint test.
#' sce3 <- simulate_trial(n_genes = 300, n_cells = 3000, visits = c("Pre", "C1", "C2"), seed = 1)
#' es <- did_table(sce3, design, features = c("GENE00001", "GENE00002"), visits = c("Pre", "C1", "C2"))
#' es[, c("feature", "term", "estimate", "conf_low", "conf_high", "p_value")]
did_table <- function(x, design, features = NULL, assay = NULL,
                      aggregate = c("participant_visit", "cell", "pseudobulk", "participant_visit_celltype"),
                      standardize = TRUE, covariates = NULL, celltype = NULL,
                      vcov = c("CR2", "CR1"), bootstrap = 0, seed = NULL,
                      weights = c("cells", "equal"), threads = NULL, BPPARAM = NULL,
                      verbose = getOption("sceffects.verbose", TRUE), visits = NULL,
                      conf_level = 0.95, permutations = 0, trend = c("visit", "linear"), times = NULL,
                      summary = c("mean", "median"), boot_interval = c("symmetric", "equal_tailed")) {
  check_design(design)
  agg <- trial_aggregation(match_choice(aggregate, "aggregate"), match_choice(summary, "summary"), celltype, design)
  aggregate <- agg$aggregate
  celltype <- agg$celltype
  trend <- match_choice(trend, "trend")
  vcov <- match_choice(vcov, "vcov")
  weights <- match_choice(weights, "weights")
  model <- trial_settings(standardize, bootstrap, seed, threads, BPPARAM, verbose, conf_level)
  model$summary <- agg$summary
  model$boot_interval <- match_choice(boot_interval, "boot_interval")
  model$permutations <- check_count(permutations, "permutations", max = max_permutations)
  if (model$permutations > 0L && is.null(model$seed)) model$seed <- resolve_seed(NULL)
  check_trial_object(x)
  visit_order <- event_visits(x, design, visits)
  single_arm <- is.null(design$control)
  if (single_arm && !is.null(visit_order)) {
    stop("`visits` needs two arms: with a single-arm design, call did_table() once per pair of visits (trial_design(baseline =, followup =)).",
         call. = FALSE)
  }
  contrast <- if (single_arm) "within" else if (is.null(visit_order)) "did" else "event"
  if (trend == "linear") {
    if (is.null(visit_order) || single_arm) {
      stop("`trend = \"linear\"` needs `visits` (two or more, in time order) and a two-arm design.", call. = FALSE)
    }
    contrast <- "trend"
  }
  times <- visit_times(times, visit_order, trend)
  if (single_arm) {
    say(sprintf("Single-arm design: `estimate` is the change within arm \"%s\", not a difference in differences.",
                design$treated), model$verbose)
  }
  if (single_arm && model$permutations > 0L) {
    stop("`permutations` reassigns the arms, and a single-arm design has one: use `bootstrap` (the wild cluster bootstrap) instead.",
         call. = FALSE)
  }
  cells <- trial_cells(x, design, model$verbose, visit_order = visit_order)
  src <- trial_features(x, features, assay, aggregate)
  covs <- trial_covariates(x, covariates)
  model <- c(model, list(contrast = contrast, aggregate = aggregate, covariates = covs, vcov = vcov,
                         weights = weights, visits = visit_order, times = times,
                         baseline = if (!is.null(visit_order)) event_baseline(visit_order, design)))
  strata <- celltype_strata(cells, design, celltype, model$verbose)
  analysed <- !is.na(cells$visit) & !is.na(cells$treated)
  tables <- trial_fit_strata(src, cells, lapply(strata, `&`, analysed), model)
  if (!is.null(celltype)) tables <- Map(with_celltype, tables, names(strata))
  method <- switch(contrast, did = "difference in differences", event = "event-study difference in differences",
                   trend = "difference in linear trends",
                   within = sprintf("change within arm %s (single-arm design)", design$treated))
  res <- finish_trial_table(tables, celltype, method, model$verbose)
  if (contrast == "event") {
    attr(res, "visits") <- visit_order
    attr(res, "baseline") <- model$baseline
  }
  res
}

# How cells become observations: `"participant_visit_celltype"` is participant-visit
# values per cell type (every type of the design's `celltype` column, or those in
# `celltype`), all in one pass; a median summary needs participant-visit aggregation.
trial_aggregation <- function(aggregate, summary, celltype, design) {
  if (aggregate == "participant_visit_celltype") {
    if (is.null(design$celltype)) {
      stop("`aggregate = \"participant_visit_celltype\"` needs a design with a `celltype` column (trial_design(celltype = ...)).",
           call. = FALSE)
    }
    aggregate <- "participant_visit"
    celltype <- celltype %||% "all"
  }
  if (summary == "median" && aggregate != "participant_visit") {
    stop("`summary = \"median\"` summarises the cells of each participant-visit: use it with `aggregate = \"participant_visit\"` or \"participant_visit_celltype\".",
         call. = FALSE)
  }
  list(aggregate = aggregate, summary = summary, celltype = celltype)
}

# The visits of an event study in time order, or NULL for the two-visit DiD. "all" takes
# every visit of the column (factor levels in order, else sorted).
event_visits <- function(x, design, visits) {
  if (is.null(visits)) return(NULL)
  v <- SummarizedExperiment::colData(x)[[design$visit]]
  if (is.null(v)) return(NULL)  # trial_cells() names the missing column
  present <- unique(as.character(v[!is.na(v)]))
  available <- if (is.factor(v)) intersect(levels(v), present) else sort(present)
  if (identical(visits, "all")) visits <- available
  if (!is.character(visits) || anyNA(visits) || length(visits) < 2L || anyDuplicated(visits)) {
    stop("`visits` must be two or more distinct visit labels in time order, or \"all\".", call. = FALSE)
  }
  miss <- setdiff(visits, present)
  if (length(miss)) {
    stop(sprintf("`visits` %s not found in colData column `%s` (it has: %s).", paste0("\"", miss, "\"", collapse = ", "),
                 design$visit, name_list(available, 8L)), call. = FALSE)
  }
  visits
}

# Numeric times of the visits for `trend = "linear"`: given (finite, strictly increasing,
# one per visit), else 0, 1, 2, ...
visit_times <- function(times, visits, trend) {
  if (is.null(times)) return(if (trend == "linear") seq_along(visits) - 1)
  if (trend != "linear") stop("`times` is only used with `trend = \"linear\"`.", call. = FALSE)
  if (!is.numeric(times) || length(times) != length(visits) || any(!is.finite(times)) || any(diff(times) <= 0)) {
    stop(sprintf("`times` must be %d finite, strictly increasing numbers, one per visit of `visits` (%s).",
                 length(visits), paste(visits, collapse = ", ")), call. = FALSE)
  }
  as.numeric(times)
}

# The reference visit of an event study: the design's baseline when it is one of the
# visits, else the first. Visits before it are pre-treatment (their terms test pre-trends).
event_baseline <- function(visits, design) {
  if (!is.null(design$baseline) && design$baseline %in% visits) design$baseline else visits[1L]
}

# A first column `celltype`, keeping the stratum's unpaired participants (cbind() drops
# attributes, which silenced the unpaired message of celltype analyses).
with_celltype <- function(tab, ct) {
  out <- cbind(celltype = rep(ct, nrow(tab)), tab, stringsAsFactors = FALSE)
  attr(out, "unpaired") <- attr(tab, "unpaired")
  attr(out, "missing_visits") <- attr(tab, "missing_visits")
  out
}

# Bootstrap draws beyond this are refused: the p-value's resolution is already 1e-6, and
# the draws x clusters weights and per-feature work grow with it.
max_bootstrap <- 1e6

# The arguments shared by the trial models, checked before any work.
trial_settings <- function(standardize, bootstrap, seed, threads, BPPARAM, verbose, conf_level = 0.95) {
  if (!is.numeric(conf_level) || length(conf_level) != 1L || is.na(conf_level) || conf_level <= 0 || conf_level >= 1) {
    stop("`conf_level` must be a single number between 0 and 1, e.g. 0.95.", call. = FALSE)
  }
  bootstrap <- check_count(bootstrap, "bootstrap", max = max_bootstrap)
  # Resolved once, so every feature source of the call draws the same weights.
  # Checked even without a bootstrap; NULL draws a seed only when one is used (drawing
  # advances the user's RNG).
  if (!is.null(seed) || bootstrap > 0L) seed <- resolve_seed(seed)
  list(standardize = check_flag(standardize, "standardize"), bootstrap = bootstrap, seed = seed,
       threads = resolve_threads(threads), BPPARAM = check_bpparam(BPPARAM),
       verbose = check_flag(verbose, "verbose"), conf_level = conf_level)
}

# Named list of logical cell masks, one per analysed cell type (or one for all cells).
celltype_strata <- function(cells, design, celltype, verbose = TRUE) {
  if (is.null(celltype)) return(list(all = rep(TRUE, nrow(cells))))
  if (is.null(design$celltype)) {
    stop("`celltype` needs a design with a `celltype` column (trial_design(celltype = ...)).", call. = FALSE)
  }
  types <- sort(unique(cells$celltype[!is.na(cells$celltype)]))
  if (identical(celltype, "all")) celltype <- types
  bad <- setdiff(celltype, types)
  if (length(bad)) {
    stop(sprintf("`celltype` %s not found in colData column `%s`.", paste0("\"", bad, "\"", collapse = ", "),
                 design$celltype), call. = FALSE)
  }
  no_type <- sum(is.na(cells$celltype) & !is.na(cells$visit) & !is.na(cells$treated))
  if (no_type) say(sprintf("%d cell(s) with no cell type (NA in `%s`) are left out.", no_type, design$celltype), verbose)
  stats::setNames(lapply(celltype, function(ct) !is.na(cells$celltype) & cells$celltype == ct), celltype)
}

# Feature source for a trial: genes of an assay and/or numeric colData columns.
trial_features <- function(x, features, assay, aggregate) {
  if (is.null(assay)) {
    an <- assayNames(x)
    assay <- if (aggregate == "pseudobulk") "counts" else if ("logcounts" %in% an) "logcounts" else 1L
  }
  cd <- SummarizedExperiment::colData(x)
  all_genes <- rownames(x)  # once: rownames() of a SingleCellExperiment costs milliseconds
  if (is.null(features)) check_trial_genes(x, all_genes)
  genes <- if (is.null(features)) all_genes else intersect(features, all_genes)
  scores <- if (is.null(features)) character() else setdiff(features, all_genes)
  unknown <- setdiff(scores, colnames(cd))
  if (length(unknown)) {
    stop(sprintf("`features` not found as genes (rownames) or colData columns: %s.%s", name_list(unknown, 5L),
                 if (is.null(all_genes) && nrow(x) > 0L) " `x` has no rownames: set rownames(x) to the gene names." else ""),
         call. = FALSE)
  }
  if (length(features) && anyDuplicated(features)) stop("`features` has duplicates.", call. = FALSE)
  nonnum <- scores[!vapply(scores, function(s) is.numeric(cd[[s]]), TRUE)]
  if (length(nonnum)) stop(sprintf("colData feature(s) %s are not numeric.", paste(nonnum, collapse = ", ")), call. = FALSE)
  if (aggregate == "pseudobulk" && length(scores)) {
    stop("`aggregate = \"pseudobulk\"` sums counts; colData scores cannot be pseudobulked.", call. = FALSE)
  }
  gene_src <- NULL
  if (length(genes)) {
    m <- se_assay(x, assay, "x", all_genes)
    if (!is.null(features)) m <- m[genes, , drop = FALSE]
    # Aggregated sparse genes are checked for non-finite values by the group sums.
    gene_src <- numeric_features(m, "x", check_values = aggregate == "cell" || !is(m, "dgCMatrix"))
    if (aggregate == "pseudobulk") {
      check_count_values(count_values_of(m), "The assay (`aggregate = \"pseudobulk\"` needs counts; set `assay`)")
    }
  }
  score_src <- NULL
  if (length(scores)) {
    sm <- do.call(rbind, lapply(scores, function(s) as.numeric(cd[[s]])))
    rownames(sm) <- scores
    score_src <- numeric_features(sm, "colData features")
  }
  lib_size <- if (aggregate == "pseudobulk") {
    source_column_sums(numeric_features(se_assay(x, assay, "x"), "x", check_values = FALSE))
  }
  list(sources = Filter(Negate(is.null), list(gene_src, score_src)), lib_size = lib_size)
}

# With `features = NULL` every gene is a feature: there must be some, with names.
check_trial_genes <- function(x, genes) {
  if (nrow(x) == 0L) {
    stop("`x` has no genes (0 rows): give an object with genes, or colData scores in `features`.", call. = FALSE)
  }
  if (is.null(genes)) {
    stop("`x` has no rownames: set rownames(x) to the gene names (results are reported by gene).", call. = FALSE)
  }
}

trial_covariates <- function(x, covariates) {
  if (is.null(covariates)) return(NULL)
  cd <- SummarizedExperiment::colData(x)
  missing <- setdiff(covariates, colnames(cd))
  if (length(missing)) stop(sprintf("`covariates` not in colData(x): %s.", paste(missing, collapse = ", ")), call. = FALSE)
  out <- as.data.frame(cd[, covariates, drop = FALSE])
  if (anyNA(out)) stop("`covariates` have missing values.", call. = FALSE)
  out
}

# Fits each stratum (a named list of cell masks, disjoint) for every feature of `src`; one
# table per stratum. Aggregated strata share one pass over each block of features.
trial_fit_strata <- function(src, cells, strata, model) {
  fits <- lapply(strata, function(keep) trial_model(cells, keep, src$lib_size, model))
  feature_names <- unlist(lapply(src$sources, `[[`, "names"))
  ok <- which(vapply(fits, function(f) is.null(f$reason), TRUE))
  per_source <- if (length(ok)) lapply(src$sources, function(s) trial_fit_source(s, fits[ok], model))
  lapply(seq_along(fits), function(i) {
    if (!i %in% ok) return(trend_term(na_trial_rows(feature_names, fits[[i]], model), model))
    rows <- lapply(per_source, `[[`, match(i, ok))
    res <- do.call(rbind, rows)
    if (model$contrast == "event") {
      # Each source numbers its features from 1; rows stay grouped by feature.
      offsets <- cumsum(c(0, vapply(src$sources, function(s) as.numeric(s$n_features), 0)))
      res$feature <- feature_names[unlist(Map(function(r, o) r$feature + o, rows, offsets[seq_along(rows)]))]
      attr(res, "unpaired") <- attr(rows[[1L]], "unpaired")
      attr(res, "missing_visits") <- attr(rows[[1L]], "missing_visits")
    } else {
      res$feature <- feature_names
    }
    trend_term(res, model)
  })
}

# The design of one stratum: observations (cells or participant-visits), X, weights,
# clusters, or a reason why it cannot be fitted.
trial_model <- function(cells, keep, lib_size, model) {
  paired <- paired_participants(cells, keep)
  all_units <- unique(cells$participant[keep])
  unpaired <- setdiff(all_units, paired)
  use <- keep & cells$participant %in% paired
  out <- list(unpaired = unpaired, n_cells = sum(use), n_units = length(paired))
  arms <- cells$treated[use][match(paired, cells$participant[use])]
  per_arm <- c(sum(arms == 1L), sum(arms == 0L))
  two_arms <- model$contrast %in% c("did", "event", "trend")
  if (length(paired) == 0L) {
    return(c(out, reason = if (model$contrast %in% c("event", "trend")) "no participant seen at two visits" else "no participant seen at both visits"))
  }
  if (two_arms && any(per_arm == 0L)) return(c(out, reason = "an arm missing"))
  if (two_arms && any(per_arm < 2L)) return(c(out, reason = "too few participants"))
  if (length(paired) < 3L) return(c(out, reason = "too few participants"))
  if (model$contrast == "event") {
    seen <- table(factor(cells$visit[use], seq_along(model$visits) - 1L), factor(cells$treated[use], 0:1))
    unseen <- which(seen == 0, arr.ind = TRUE)
    if (nrow(unseen)) {
      return(c(out, reason = sprintf("visit %s not seen in the %s arm", model$visits[unseen[1L, 1L]],
                                     c("control", "treated")[unseen[1L, 2L]])))
    }
  }
  if (model$aggregate == "cell") {
    obs <- data.frame(participant = cells$participant[use], visit = cells$visit[use],
                      treated = cells$treated[use], n_cells = 1)
    group <- rep(0L, length(use))
    group[use] <- seq_len(sum(use))
    cov_rows <- if (!is.null(model$covariates)) model$covariates[use, , drop = FALSE]
  } else {
    key <- cells$visit * length(paired) + match(cells$participant, paired)
    key[!use] <- NA
    levels_pv <- unique(key[use])
    group <- match(key, levels_pv)
    group[is.na(group)] <- 0L
    first <- match(levels_pv, key)
    obs <- data.frame(participant = cells$participant[first], visit = cells$visit[first],
                      treated = cells$treated[first], n_cells = tabulate(group, length(levels_pv)))
    cov_rows <- if (!is.null(model$covariates)) aggregate_covariates(model$covariates, group, length(levels_pv))
  }
  cluster <- match(obs$participant, paired)
  if (model$contrast == "event") {
    ev <- event_terms(model)
    visit_cols <- vapply(ev$index, function(v) as.numeric(obs$visit == v), numeric(nrow(obs)))
    visit_cols <- matrix(visit_cols, nrow(obs))
    # The DiD terms first (tested), then the visit effects (the control arm's changes).
    x <- cbind(visit_cols * obs$treated, visit_cols)
    n_main <- ncol(x)
    q <- length(ev$terms)
    coefs <- c(seq_len(q), q + seq_len(q))
    out$joint <- c(list(seq_len(q)), if (length(ev$leads)) list(ev$leads))
    out$terms <- ev$terms
    did_cols <- seq_len(q)
    base_cols <- q + seq_len(q)
    out$missing_visits <- missing_visits(obs, paired, model$visits)
  } else if (model$contrast == "trend") {
    # The difference in slopes (treated minus control) over the visits' numeric times.
    time <- model$times[obs$visit + 1L]
    x <- cbind(slope_difference = time * obs$treated, slope = time)
    n_main <- 2L
    coefs <- c(1L, 2L)
    did_cols <- 1L
    base_cols <- 2L
  } else {
    x <- cbind(visit = obs$visit, did = obs$visit * obs$treated)
    if (model$contrast == "within") x <- x[, "visit", drop = FALSE]
    n_main <- if (model$contrast == "within") 1L else 2L
    coefs <- if (model$contrast == "within") 1L else c(2L, 1L)
    did_cols <- 2L
    base_cols <- 1L
  }
  if (!is.null(cov_rows)) {
    cm <- stats::model.matrix(~ ., data = cov_rows)[, -1L, drop = FALSE]
    x <- cbind(x, cm)
  }
  fe <- outer(cluster, seq_along(paired), `==`) * 1
  x_full <- cbind(x, fe)
  rank_check <- qr(x_full)
  aliased <- rank_check$pivot[seq.int(rank_check$rank + 1L, length.out = ncol(x_full) - rank_check$rank)]
  if (any(aliased <= n_main)) return(c(out, reason = "visit effect not identifiable"))
  if (length(aliased)) {
    say(sprintf("Dropped covariate column(s) absorbed by the participant effects or collinear: %s.",
                name_list(colnames(x_full)[aliased])), isTRUE(model$verbose))
    x_full <- x_full[, -aliased, drop = FALSE]
  }
  w <- if (model$aggregate == "cell" || model$weights == "equal") rep(1, nrow(obs)) else obs$n_cells
  c(out, list(x = unname(x_full), weights = as.double(w), cluster = cluster, group = group,
              n_groups = nrow(obs), obs = obs, lib_size = lib_size, coefs = coefs,
              did_cols = did_cols, base_cols = base_cols))
}

# Participants of an event study not seen at every visit, as "P3 (C2, EOT)".
missing_visits <- function(obs, paired, visits) {
  seen <- table(factor(obs$participant, paired), factor(obs$visit, seq_along(visits) - 1L)) > 0
  gaps <- which(rowSums(!seen) > 0)
  vapply(gaps, function(i) sprintf("%s (%s)", paired[i], paste(visits[!seen[i, ]], collapse = ", ")), "")
}

aggregate_covariates <- function(covs, group, n_groups) {
  out <- lapply(names(covs), function(nm) {
    v <- covs[[nm]]
    if (is.numeric(v)) {
      return(as.numeric(tapply(v[group > 0], factor(group[group > 0], seq_len(n_groups)), mean)))
    }
    v <- as.character(v)
    per <- tapply(v[group > 0], factor(group[group > 0], seq_len(n_groups)), function(u) length(unique(u)))
    if (any(per > 1L)) {
      stop(sprintf("Covariate `%s` is not numeric and varies within a participant-visit; use aggregate = \"cell\".", nm),
           call. = FALSE)
    }
    v[group > 0][match(seq_len(n_groups), group[group > 0])]
  })
  stats::setNames(as.data.frame(out, stringsAsFactors = TRUE), names(covs))
}

# Bootstrap weights (draws x clusters) from `seed`, leaving the user's RNG untouched.
boot_weights <- function(n_draws, n_clusters, seed) {
  if (n_draws == 0L) return(NULL)
  values <- if (n_clusters <= 12L) {
    c(-sqrt(1.5), -1, -sqrt(0.5), sqrt(0.5), 1, sqrt(1.5))
  } else c(-1, 1)
  with_seed(resolve_seed(seed), matrix(sample(values, n_draws * n_clusters, replace = TRUE), n_draws, n_clusters))
}

# Fits one feature source for every fitted stratum. Unless cell level, the participant-
# visits of all strata are aggregated first, in one pass over the cells (a TENx file by
# column blocks, spread over the workers); the core then fits each stratum's columns of
# that small matrix here (on workers, each with its block, only for cell-level fits and
# randomisation inference). One table per stratum.
trial_fit_source <- function(s, fits, model) {
  boots <- lapply(fits, function(f) boot_weights(model$bootstrap, max(f$cluster), model$seed))
  assignments <- lapply(fits, function(f) if (isTRUE(model$permutations > 0L)) arm_assignments(f, model))
  shared <- if (model$aggregate != "cell") shared_groups(fits)
  if (!is.null(shared)) s <- trial_aggregate(s, shared, model)
  one <- function(rows, s) {
    data <- feature_rows(s, rows)
    lapply(seq_along(fits), function(i) {
      m <- if (is.null(shared)) cell_rows(data, fits[[i]]) else data[, shared$columns[[i]], drop = FALSE]
      fit_block(m, fits[[i]], model, boots[[i]], assignments[[i]])
    })
  }
  # Fits of aggregates are closed-form on a genes x participant-visits matrix (milliseconds
  # per thousand genes, threaded in the core): shipping them to workers costs more than it
  # saves, except for randomisation inference, which refits once per reassignment.
  bpparam <- if (is.null(shared) || isTRUE(model$permutations > 0L)) model$BPPARAM
  chunks <- plan_chunks(s$n_features, BPPARAM = bpparam, delayed = s$kind == "delayed",
                        n_samples = s$n_samples, chunk_rows = s$recipe$chunk_rows)
  parts <- run_chunks(chunks, one, bpparam, "Fitting difference in differences", src = s)
  lapply(seq_along(fits), function(i) {
    p <- lapply(parts, `[[`, i)
    if (model$contrast == "event") event_columns(p, fits[[i]], model) else trial_columns(p, fits[[i]], model)
  })
}

# The core's fit of one block of features `m` (features x observations of one stratum),
# with the bootstraps, randomisation inference and Hedges' g the model asks for.
fit_block <- function(m, fit, model, boot, assignments) {
  event <- model$contrast == "event"
  part <- rs_cluster_fit(m, fit$x, fit$weights, fit$cluster, max(fit$cluster), fit$coefs,
                         model$vcov, if (!event) boot, model$standardize, model$threads, fit$joint,
                         model$conf_level)
  if (event && !is.null(boot)) part <- utils::modifyList(part, event_bootstrap(m, fit, model, boot))
  if (!is.null(assignments)) part <- c(part, permutation_p(m, fit, model, part, assignments))
  if (model$contrast == "did" && model$aggregate != "cell") part$hedges_g <- hedges_g(m, fit, model$conf_level)
  part
}

# The event study's bootstraps: the core bootstraps the first coefficient it is given, so
# one pass per visit term, each with that term's null imposed; and one per joint test
# (joint, pre-trend), the Wald F of all its terms with their null imposed; the same weights.
event_bootstrap <- function(m, fit, model, boot) {
  core <- function(coefs, joint = NULL, boot_joint = FALSE) {
    rs_cluster_fit(m, fit$x, fit$weights, fit$cluster, max(fit$cluster), coefs, model$vcov, boot,
                   model$standardize, model$threads, joint, model$conf_level, boot_joint)
  }
  per_term <- lapply(seq_along(fit$terms), core)
  per_test <- lapply(fit$joint, function(j) core(fit$coefs, list(j), TRUE))
  columns <- function(parts, name) matrix(vapply(parts, `[[`, numeric(nrow(m)), name), nrow(m))
  list(boot_p = columns(per_term, "boot_p"), boot_crit = columns(per_term, "boot_crit"),
       boot_t_low = columns(per_term, "boot_t_low"), boot_t_high = columns(per_term, "boot_t_high"),
       joint_boot_p = columns(per_test, "boot_p"))
}

# One grouping of the cells over every stratum: stratum i's participant-visits are numbered
# after those of the strata before it (strata are disjoint), so one pass aggregates them all.
shared_groups <- function(fits) {
  sizes <- vapply(fits, function(f) as.integer(f$n_groups), 0L)
  offsets <- cumsum(c(0L, sizes))
  group <- integer(length(fits[[1L]]$group))
  for (i in seq_along(fits)) {
    in_i <- fits[[i]]$group > 0L
    group[in_i] <- fits[[i]]$group[in_i] + offsets[i]
  }
  list(group = group, n_groups = offsets[length(offsets)], lib_size = fits[[1L]]$lib_size,
       n_cells = unlist(lapply(fits, function(f) f$obs$n_cells)),
       columns = lapply(seq_along(fits), function(i) offsets[i] + seq_len(sizes[i])))
}

# "trend": one row per feature with `term = "slope"` (the difference in slopes); "did" and
# "within" tables have no term.
trend_term <- function(tab, model) {
  if (identical(model$contrast, "trend")) tab <- cbind(tab[1L], term = rep("slope", nrow(tab)), tab[-1L])
  tab
}

# Hedges' g of the DiD on participant means: each participant's change (follow-up minus
# baseline mean), the difference of the arms' mean changes over their pooled SD, times
# J = 1 - 3 / (4 (n1 + n0 - 2) - 1); interval g -/+ z * sqrt((n1 + n0) / (n1 n0) +
# g^2 / (2 (n1 + n0))) (Hedges and Olkin's large-sample variance). Matrix columns: g, low, high.
hedges_g <- function(m, fit, level) {
  n_units <- max(fit$cluster)
  at <- function(v) match(seq_len(n_units), ifelse(fit$obs$visit == v, fit$cluster, NA))
  change <- m[, at(1L), drop = FALSE] - m[, at(0L), drop = FALSE]
  treated <- fit$obs$treated[at(1L)] == 1L
  n1 <- sum(treated)
  n0 <- sum(!treated)
  moments <- function(k) {
    mean <- rowMeans(change[, k, drop = FALSE])
    list(mean = mean, ss = rowSums((change[, k, drop = FALSE] - mean)^2))
  }
  a <- moments(treated)
  b <- moments(!treated)
  sd_pooled <- sqrt((a$ss + b$ss) / (n1 + n0 - 2))
  g <- (1 - 3 / (4 * (n1 + n0 - 2) - 1)) * (a$mean - b$mean) / sd_pooled
  g[!is.finite(g)] <- NA_real_
  half <- stats::qnorm(1 - (1 - level) / 2) * sqrt((n1 + n0) / (n1 * n0) + g^2 / (2 * (n1 + n0)))
  cbind(g, g - half, g + half)
}

# Arm assignments cost one fit of every feature each.
max_permutations <- 1e5

# Assignments of the treated arm to the model's participants (a logical matrix, one row
# per assignment, one column per cluster) for randomisation inference: all of them when
# there are at most `permutations` (exact), else `permutations` random ones from `seed`.
arm_assignments <- function(fit, model) {
  treated <- as.logical(tapply(fit$obs$treated, factor(fit$cluster, seq_len(max(fit$cluster))), `[`, 1L))
  n_units <- length(treated)
  n_treated <- sum(treated)
  total <- choose(n_units, n_treated)
  if (total <= model$permutations) {
    idx <- utils::combn(n_units, n_treated)
    a <- matrix(FALSE, ncol(idx), n_units)
    a[cbind(rep(seq_len(ncol(idx)), each = n_treated), as.vector(idx))] <- TRUE
    say(sprintf("Randomisation inference over all %d assignments of %d treated among %d participants.",
                nrow(a), n_treated, n_units), isTRUE(model$verbose))
    return(list(assign = a, exact = TRUE))
  }
  a <- with_seed(model$seed, t(vapply(seq_len(model$permutations), function(k) {
    seq_len(n_units) %in% sample.int(n_units, n_treated)
  }, logical(n_units))))
  list(assign = a, exact = FALSE)
}

# Randomisation p of each DiD term's t (and of each joint test's F): the design refitted
# with the arm reassigned to participants (visits, cells and weights kept; the DiD columns
# are the arm times their visit or time columns), `|t*| >= |t|` (`F* >= F`) counted within
# 1e-9 relative. Exact enumeration includes the observed assignment: `count / valid`;
# random assignments: `(1 + count) / (1 + valid)`.
permutation_p <- function(m, fit, model, part, assignments) {
  pos <- match(fit$did_cols, fit$coefs)
  observed <- list(t = abs(part$statistic[, pos, drop = FALSE]), f = part$joint_statistic)
  count <- valid <- lapply(observed, function(o) o * 0)
  for (k in seq_len(nrow(assignments$assign))) {
    x <- fit$x
    x[, fit$did_cols] <- x[, fit$base_cols] * assignments$assign[k, fit$cluster]
    r <- tryCatch(rs_cluster_fit(m, x, fit$weights, fit$cluster, max(fit$cluster), fit$coefs, model$vcov, NULL,
                                 model$standardize, model$threads, fit$joint),
                  error = function(e) NULL)  # a reassignment collinear with a covariate
    if (is.null(r)) next
    drawn <- list(t = abs(r$statistic[, pos, drop = FALSE]), f = r$joint_statistic)
    for (s in names(drawn)) {
      ok <- is.finite(drawn[[s]])
      valid[[s]] <- valid[[s]] + ok
      count[[s]] <- count[[s]] + (ok & drawn[[s]] >= observed[[s]] * (1 - 1e-9))
    }
  }
  p <- lapply(names(observed), function(s) {
    v <- if (assignments$exact) count[[s]] / valid[[s]] else (1 + count[[s]]) / (1 + valid[[s]])
    v[!is.finite(observed[[s]])] <- NA_real_
    v
  })
  list(perm_p = p[[1L]], perm_joint_p = p[[2L]])
}

# The cells of one stratum (sparse stays sparse).
cell_rows <- function(data, fit) {
  cols <- which(fit$group > 0)
  if (length(cols) < ncol(data)) data[, cols, drop = FALSE] else data
}

# The source's features aggregated per participant-visit of every stratum (the shared
# groups), as a small dense source: means (or medians) of the cells, or log1p(CPM) of the
# summed counts for pseudobulk. Sums are one pass over the cells (a TENx file by column
# blocks); medians need each feature's cells together, so they read blocks of features.
trial_aggregate <- function(s, shared, model) {
  values <- if (identical(model$summary, "median")) {
    chunks <- plan_chunks(s$n_features, delayed = s$kind == "delayed", n_samples = s$n_samples,
                          chunk_rows = s$recipe$chunk_rows)
    do.call(rbind, run_chunks(chunks, function(rows, s) {
      group_medians(feature_rows(s, rows), shared$group, shared$n_groups, model$threads, s$arg)
    }, NULL, "Taking medians per participant-visit", src = s))
  } else {
    sums <- source_group_sums(s, shared$group, shared$n_groups, model$threads, model$BPPARAM)
    if (model$aggregate == "pseudobulk") {
      in_group <- shared$group > 0
      lib <- as.numeric(tapply(shared$lib_size[in_group], factor(shared$group[in_group], seq_len(shared$n_groups)), sum))
      log1p(sweep(sums, 2L, pmax(lib, 1e-300), `/`) * 1e6)
    } else {
      sweep(sums, 2L, shared$n_cells, `/`)
    }
  }
  dimnames(values) <- NULL
  structure(list(data = values, kind = "dense", names = s$names, n_features = nrow(values),
                 n_samples = ncol(values), samples = NULL, arg = s$arg, allow_na = FALSE),
            class = "sceffects_features")
}

# Medians of each feature over groups of cells, by the core (a dgCMatrix's zeros are
# counted, not stored).
group_medians <- function(data, group, n_groups, threads, arg = "x") {
  tryCatch(rs_group_medians(data, group, n_groups, threads), error = function(e) {
    if (grepl("infinite or missing values", conditionMessage(e), fixed = TRUE)) {
      stop(sprintf("`%s` contains infinite or missing values.", arg), call. = FALSE)
    }
    stop(e)
  })
}

# Sums of each feature over groups of cells (`group` 1-based, 0 = left out) by the core,
# which checks a dgCMatrix's values for NA and Inf in the same pass.
group_sums <- function(data, group, n_groups, threads, arg = "x") {
  if (is.matrix(data) && !is.double(data)) storage.mode(data) <- "double"  # the core reads doubles
  tryCatch(rs_group_sums(data, group, n_groups, threads), error = function(e) {
    if (grepl("infinite or missing values", conditionMessage(e), fixed = TRUE)) {
      stop(sprintf("`%s` contains infinite or missing values.", arg), call. = FALSE)
    }
    stop(e)
  })
}

# The core's per-feature matrices of every chunk, stacked: estimate, std_error, statistic,
# df and log_p (features x coefficients).
stack_parts <- function(parts) {
  cols <- c("estimate", "std_error", "statistic", "df", "log_p")
  stats::setNames(lapply(cols, function(cl) do.call(rbind, lapply(parts, `[[`, cl))), cols)
}

# Coefficient `k` of every feature: estimate, std_error, statistic, df, p_value, log_p,
# fdr (filled later) and the t interval; NaN as NA.
coefficient_columns <- function(m, k, conf_level) {
  out <- data.frame(estimate = nan_to_na(m$estimate[, k]), std_error = nan_to_na(m$std_error[, k]),
                    statistic = nan_to_na(m$statistic[, k]), df = nan_to_na(m$df[, k]),
                    p_value = nan_to_na(exp(m$log_p[, k])), log_p = nan_to_na(m$log_p[, k]), fdr = NA_real_)
  cbind(out, conf_interval(out$estimate, out$std_error, out$df, conf_level))
}

trial_columns <- function(parts, fit, model, reason = NULL) {
  m <- stack_parts(parts)
  status <- unlist(lapply(parts, `[[`, "status"))
  if (is.null(reason)) reason <- reason_of("did", status)
  out <- data.frame(feature = NA_character_, coefficient_columns(m, 1L, model$conf_level),
                    stringsAsFactors = FALSE)
  if (ncol(m$estimate) > 1L) {
    out$control_change <- nan_to_na(m$estimate[, 2])
    out$control_p_value <- nan_to_na(exp(m$log_p[, 2]))
  }
  out$n_units <- fit$n_units
  out$n_cells <- fit$n_cells
  out$resid_sd <- nan_to_na(unlist(lapply(parts, `[[`, "resid_sd")))
  out$vcov <- model$vcov
  if (model$bootstrap > 0L) {
    out$boot_p <- nan_to_na(unlist(lapply(parts, `[[`, "boot_p")))
    out <- cbind(out, boot_columns(out$estimate, out$std_error, lapply(boot_quantiles, function(q) unlist(lapply(parts, `[[`, q))),
                                   model))
  }
  if (!is.null(parts[[1L]]$hedges_g)) {
    g <- do.call(rbind, lapply(parts, `[[`, "hedges_g"))
    out$hedges_g <- g[, 1L]
    out$hedges_g_low <- g[, 2L]
    out$hedges_g_high <- g[, 3L]
  }
  if (isTRUE(model$permutations > 0L)) {
    out$perm_p <- if (is.null(parts[[1L]]$perm_p)) NA_real_ else do.call(rbind, lapply(parts, `[[`, "perm_p"))[, 1L]
  }
  out$reason <- reason
  attr(out, "unpaired") <- fit$unpaired
  out
}

# The core's bootstrap-t quantiles of each feature's t*: |t*| at the level (symmetric),
# signed t* at the two tails (equal-tailed).
boot_quantiles <- c(crit = "boot_crit", t_low = "boot_t_low", t_high = "boot_t_high")

# Bootstrap-t intervals: symmetric, the estimate -/+ the |t*| quantile times the standard
# error; equal-tailed (percentile-t), [estimate - t*_high se, estimate - t*_low se].
boot_columns <- function(estimate, std_error, q, model) {
  q <- lapply(q, nan_to_na)
  if (identical(model$boot_interval, "equal_tailed")) {
    return(data.frame(boot_conf_low = estimate - q$t_high * std_error, boot_conf_high = estimate - q$t_low * std_error))
  }
  data.frame(boot_conf_low = estimate - q$crit * std_error, boot_conf_high = estimate + q$crit * std_error)
}

# t intervals on the reported df (Satterthwaite under CR2).
conf_interval <- function(estimate, std_error, df, level) {
  # Features share a handful of df values (one per pattern of missing units): qt once each.
  df_seen <- unique(df)
  half <- stats::qt(1 - (1 - level) / 2, df_seen)[match(df, df_seen)] * std_error
  data.frame(conf_low = estimate - half, conf_high = estimate + half)
}

# The long table of an event study: per feature, one row per visit term (the DiD at that
# visit against the baseline, with the control arm's change), then `joint` (all terms:
# CR2 Hotelling-type F, as clubSandwich's Wald_test(test = "HTZ"); CR1: F on G - 1 df)
# and, with visits before the baseline, `pre_trend` (those terms only).
event_columns <- function(parts, fit, model, reason = NULL) {
  bind <- function(name) do.call(rbind, lapply(parts, `[[`, name))
  m <- stack_parts(parts)
  n <- nrow(m$estimate)
  q <- length(fit$terms)
  status <- unlist(lapply(parts, `[[`, "status"))
  if (is.null(reason)) reason <- reason_of("did", status)
  per_arm <- event_participants(fit, model)
  blocks <- lapply(seq_len(q), function(k) {
    out <- data.frame(feature = seq_len(n), term = fit$terms[k],
                      coefficient_columns(m, k, model$conf_level), stringsAsFactors = FALSE)
    out$df_num <- NA_real_
    out$control_change <- m$estimate[, q + k]
    out$control_p_value <- exp(m$log_p[, q + k])
    out$n_treated <- per_arm$treated[k]
    out$n_control <- per_arm$control[k]
    if (model$bootstrap > 0L) {
      out$boot_p <- bind("boot_p")[, k]
      out <- cbind(out, boot_columns(out$estimate, out$std_error, lapply(boot_quantiles, function(b) bind(b)[, k]), model))
    }
    if (isTRUE(model$permutations > 0L)) out$perm_p <- bind("perm_p")[, k]
    out
  })
  tests <- c("joint", if (length(fit$joint) > 1L) "pre_trend")
  joint <- lapply(seq_along(tests), function(j) {
    out <- data.frame(feature = seq_len(n), term = tests[j], estimate = NA_real_, std_error = NA_real_,
                      statistic = bind("joint_statistic")[, j], df = bind("joint_df")[, j],
                      p_value = exp(bind("joint_log_p")[, j]), log_p = bind("joint_log_p")[, j], fdr = NA_real_,
                      conf_low = NA_real_, conf_high = NA_real_, df_num = bind("joint_df_num")[, j],
                      control_change = NA_real_, control_p_value = NA_real_, stringsAsFactors = FALSE)
    out$n_treated <- per_arm$all[1L]
    out$n_control <- per_arm$all[2L]
    if (model$bootstrap > 0L) {
      out$boot_p <- bind("joint_boot_p")[, j]
      out$boot_conf_low <- out$boot_conf_high <- NA_real_
    }
    if (isTRUE(model$permutations > 0L)) out$perm_p <- bind("perm_joint_p")[, j]
    out
  })
  out <- do.call(rbind, c(blocks, joint))
  out$n_units <- fit$n_units
  out$n_cells <- fit$n_cells
  out$resid_sd <- unlist(lapply(parts, `[[`, "resid_sd"))[out$feature]
  out$vcov <- model$vcov
  out$reason <- reason[out$feature]
  out <- out[order(out$feature), , drop = FALSE]
  for (cl in setdiff(names(out), c("feature", "term", "vcov", "reason"))) {
    if (is.double(out[[cl]])) out[[cl]] <- nan_to_na(out[[cl]])
  }
  attr(out, "unpaired") <- fit$unpaired
  attr(out, "missing_visits") <- fit$missing_visits
  out
}

# Participants of each arm seen at each term's visit, and in the model.
event_participants <- function(fit, model) {
  ev <- event_terms(model)
  if (is.null(fit$obs)) return(list(treated = rep(NA_integer_, length(ev$terms)), control = rep(NA_integer_, length(ev$terms)),
                                    all = c(NA_integer_, NA_integer_)))
  count <- function(v, arm) length(unique(fit$obs$participant[fit$obs$visit %in% v & fit$obs$treated == arm]))
  all_visits <- seq_along(model$visits) - 1L
  list(treated = vapply(ev$index, count, 0L, arm = 1L), control = vapply(ev$index, count, 0L, arm = 0L),
       all = c(count(all_visits, 1L), count(all_visits, 0L)))
}

# Rows of NA for a stratum whose design cannot be fitted, with the design's reason.
na_trial_rows <- function(feature_names, fit, model) {
  n <- length(feature_names)
  if (model$contrast == "event") {
    ev <- event_terms(model)
    fit$terms <- ev$terms
    fit$joint <- c(list(seq_along(ev$terms)), if (length(ev$leads)) list(ev$leads))
    k <- 2L * length(ev$terms)
  } else {
    k <- if (model$contrast == "within") 1L else 2L
  }
  na <- matrix(NaN, n, k)
  nj <- matrix(NaN, n, length(fit$joint))
  part <- list(estimate = na, std_error = na, statistic = na, df = na, log_p = na, joint_statistic = nj,
               joint_df_num = nj, joint_df = nj, joint_log_p = nj,
               resid_sd = rep(NaN, n), boot_p = rep(NaN, n), boot_crit = rep(NaN, n), boot_t_low = rep(NaN, n),
               boot_t_high = rep(NaN, n), perm_p = matrix(NA_real_, n, 1L), status = rep(0L, n))
  if (model$contrast == "event") {
    part$boot_p <- part$boot_crit <- part$boot_t_low <- part$boot_t_high <- part$perm_p <- matrix(NaN, n, length(fit$terms))
    part$joint_boot_p <- part$perm_joint_p <- nj
    out <- event_columns(list(part), fit, model, reason = rep(fit$reason, n))
    out$feature <- feature_names[out$feature]
    return(out)
  }
  # The same columns as the fitted strata it is bound to.
  if (model$contrast == "did" && model$aggregate != "cell") part$hedges_g <- matrix(NA_real_, n, 3L)
  out <- trial_columns(list(part), fit, model, reason = rep(fit$reason, n))
  out$feature <- feature_names
  out
}

# FDR (within cell type and term, and overall when there are several cell types), from
# `p_value` as `fdr` and from `boot_p` as `boot_fdr`; messages; results class.
finish_trial_table <- function(tables, celltype, method, verbose = TRUE) {
  unpaired <- unique(unlist(lapply(tables, attr, "unpaired")))
  gaps <- unique(unlist(lapply(tables, attr, "missing_visits")))
  by <- if ("term" %in% names(tables[[1L]])) "term"
  bh <- function(t, col) grouped_fdr(data.frame(p_value = t[[col]], term = t$term %||% NA), by)
  tables <- lapply(tables, function(t) {
    t$fdr <- bh(t, "p_value")
    if ("boot_p" %in% names(t)) t$boot_fdr <- bh(t, "boot_p")
    if ("perm_p" %in% names(t)) t$perm_fdr <- bh(t, "perm_p")
    t
  })
  res <- do.call(rbind, tables)
  if (!is.null(celltype) && length(tables) > 1L) {
    res$fdr_overall <- bh(res, "p_value")
    if ("boot_p" %in% names(res)) res$boot_fdr_overall <- bh(res, "boot_p")
  }
  if (length(unpaired)) {
    say(sprintf("%d participant(s) seen at one visit only were left out of the paired analysis%s: %s.",
                length(unpaired), if (length(tables) > 1L) " (of at least one cell type)" else "",
                name_list(sort(unpaired))), verbose)
  }
  if (length(gaps)) {
    say(sprintf("Unbalanced visits: %d participant(s) miss some visits%s and are fitted on the visits they have: %s.",
                length(gaps), if (length(tables) > 1L) " (in at least one cell type)" else "", name_list(sort(gaps))),
        verbose)
  }
  n_units <- unique(res$n_units)
  if (any(n_units < 10L)) {
    warning(sprintf("Only %d paired participant(s)%s: cluster-robust inference rests on few clusters; prefer vcov = \"CR2\" and check with `bootstrap`.",
                    min(n_units), if (!is.null(celltype)) " in some cell types" else ""), call. = FALSE)
  }
  results_table(res, method, list(unpaired = unpaired, missing_visits = gaps))
}

#' Change within one arm of a trial
#'
#' For each feature, the paired change from baseline to follow-up within arm `arm`:
#' `outcome ~ visit + participant` with the same aggregation, weights, cluster-robust
#' inference and bootstrap as [did_table()], on that arm's paired participants.
#'
#' @inheritParams did_table
#' @param arm The arm label (e.g. `design$treated`).
#' @param ... Further arguments of [did_table()], by name: `features`, `assay`,
#'   `aggregate`, `standardize`, `covariates`, `celltype`, `vcov`, `bootstrap`, `seed`,
#'   `weights`, `threads`, `BPPARAM`, `verbose`, `conf_level`, `summary`, `boot_interval`.
#'   Any other argument is an error.
#' @return A results table as [did_table()] where `estimate` is the mean change. On a
#'   single-arm design (`trial_design(control = NULL)`) only `arm` needs to occur.
#' @export
#' @examples
#' sce <- simulate_trial(n_genes = 300, n_cells = 3000, seed = 1)
#' design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
#'                        baseline = "Pre", followup = "Post")
#' head(within_arm(sce, design, arm = "Non-responder"))
within_arm <- function(x, design, arm, ...) {
  check_design(design)
  args <- within_args(design, ...)
  if (!is.character(arm) || length(arm) != 1L || !arm %in% c(design$treated, design$control)) {
    stop(sprintf("`arm` must be %s.", paste0("\"", c(design$treated, design$control), "\"", collapse = " or ")),
         call. = FALSE)
  }
  model <- args$settings
  # Only the analysed arm must occur: a single-arm study has no control cells.
  cells <- trial_cells(x, design, model$verbose, arms = arm)
  in_arm <- cells$treated == as.integer(arm == design$treated)
  src <- trial_features(x, args$features, args$assay, args$aggregate)
  model <- c(model, list(contrast = "within", aggregate = args$aggregate,
                         covariates = trial_covariates(x, args$covariates), vcov = args$vcov,
                         weights = args$weights))
  strata <- celltype_strata(cells, design, args$celltype, model$verbose)
  analysed <- !is.na(cells$visit) & !is.na(in_arm) & in_arm
  tables <- trial_fit_strata(src, cells, lapply(strata, `&`, analysed), model)
  if (!is.null(args$celltype)) tables <- Map(with_celltype, tables, names(strata))
  finish_trial_table(tables, args$celltype, sprintf("change within arm %s", arm), model$verbose)
}

# The `...` of within_arm(): did_table()'s arguments, by exact name; anything else is an error.
within_args <- function(design, ..., features = NULL, assay = NULL,
                        aggregate = c("participant_visit", "cell", "pseudobulk", "participant_visit_celltype"),
                        standardize = TRUE, covariates = NULL, celltype = NULL, vcov = c("CR2", "CR1"),
                        bootstrap = 0, seed = NULL, weights = c("cells", "equal"), threads = NULL, BPPARAM = NULL,
                        verbose = getOption("sceffects.verbose", TRUE), conf_level = 0.95,
                        summary = c("mean", "median"), boot_interval = c("symmetric", "equal_tailed")) {
  check_dots_used(..., call_name = "within_arm")
  agg <- trial_aggregation(match_choice(aggregate, "aggregate"), match_choice(summary, "summary"), celltype, design)
  settings <- trial_settings(standardize, bootstrap, seed, threads, BPPARAM, verbose, conf_level)
  settings$summary <- agg$summary
  settings$boot_interval <- match_choice(boot_interval, "boot_interval")
  list(features = features, assay = assay, aggregate = agg$aggregate, covariates = covariates,
       celltype = agg$celltype, vcov = match_choice(vcov, "vcov"), weights = match_choice(weights, "weights"),
       settings = settings)
}

#' Compare the arms at one visit
#'
#' For each feature, participant means at visit `visit` are compared between the treated
#' and control arms: Welch's t-test (as [stats::t.test()]) or the Wilcoxon rank-sum test
#' (as [stats::wilcox.test()], exact when small and untied). Each participant counts once,
#' whatever its number of cells; participants need not be paired.
#'
#' @inheritParams did_table
#' @param visit The visit label to compare at.
#' @param method `"t"` (Welch) or `"wilcoxon"`.
#' @param BPPARAM Optional BiocParallel parameter: the pass over the cells (participant
#'   means) is split across its workers, each reading only its block (of a TENx file, a
#'   range of cells); the tests of the means run in this process with `threads`.
#' @param verbose Show messages (left-out cells)? Default `getOption("sceffects.verbose", TRUE)`.
#' @return A results table: `estimate` (treated minus control mean of participant means;
#'   for Wilcoxon also `auc`), `std_error`, `statistic`, `df`, `p_value`, `fdr`,
#'   `n_treated`, `n_control`, `reason`.
#' @export
#' @examples
#' sce <- simulate_trial(n_genes = 300, n_cells = 3000, seed = 1)
#' design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
#'                        baseline = "Pre", followup = "Post")
#' head(between_arm(sce, design, visit = "Pre"))
between_arm <- function(x, design, visit, features = NULL, assay = NULL, method = c("t", "wilcoxon"),
                        celltype = NULL, threads = NULL, BPPARAM = NULL,
                        verbose = getOption("sceffects.verbose", TRUE)) {
  method <- match_choice(method, "method")
  threads <- resolve_threads(threads)
  check_bpparam(BPPARAM)
  verbose <- check_flag(verbose, "verbose")
  cells <- trial_cells(x, design, verbose, visits = FALSE)
  cd <- SummarizedExperiment::colData(x)
  if (!is.character(visit) || length(visit) != 1L || !visit %in% as.character(cd[[design$visit]])) {
    stop(sprintf("`visit` must be one visit label of colData column `%s`.", design$visit), call. = FALSE)
  }
  at_visit <- as.character(cd[[design$visit]]) %in% visit  # NA visits are not at it
  src <- trial_features(x, features, assay, "participant_visit")
  strata <- celltype_strata(cells, design, celltype, verbose)
  tables <- lapply(names(strata), function(ct) {
    keep <- strata[[ct]] & at_visit & !is.na(cells$treated)
    units <- unique(cells$participant[keep])
    group <- match(cells$participant, units)
    group[!keep] <- 0L
    # Each participant's arm from its analysed cells (its first cell may be in another arm).
    treated <- cells$treated[keep][match(units, cells$participant[keep])] == 1L
    # One pass over the cells; on-disk input in its own blocks.
    means <- do.call(rbind, lapply(src$sources, function(s) {
      sums <- source_group_sums(s, group, length(units), threads, BPPARAM)
      rownames(sums) <- s$names
      sweep(sums, 2L, tabulate(group, length(units)), `/`)
    }))
    tab <- between_tests(means, treated, method, threads)
    if (!is.null(celltype)) tab <- cbind(celltype = ct, tab, stringsAsFactors = FALSE)
    tab
  })
  res <- do.call(rbind, tables)
  res$fdr <- fdr_bh(res$p_value)
  results_table(res, sprintf("%s between arms at %s", if (method == "t") "Welch t-test" else "Wilcoxon test", visit))
}

between_tests <- function(means, treated, method, threads) {
  n1 <- sum(treated)
  n0 <- sum(!treated)
  few <- n1 < 2L || n0 < 2L
  if (method == "t") {
    r <- if (few) NULL else rs_welch(means, treated, threads)
    out <- data.frame(feature = rownames(means), estimate = if (few) NA_real_ else nan_to_na(r$estimate),
                      std_error = if (few) NA_real_ else nan_to_na(r$std_error),
                      statistic = if (few) NA_real_ else nan_to_na(r$statistic),
                      df = if (few) NA_real_ else nan_to_na(r$df),
                      p_value = if (few) NA_real_ else nan_to_na(exp(r$log_p)), stringsAsFactors = FALSE)
  } else {
    w <- assoc_mwu(means, rbind(treated = treated), threads = threads)
    w <- w[match(rownames(means), w$feature_x), ]
    diff <- rowMeans(means[, treated, drop = FALSE]) - rowMeans(means[, !treated, drop = FALSE])
    out <- data.frame(feature = rownames(means), estimate = unname(diff), auc = w$auc, std_error = NA_real_,
                      statistic = w$statistic, df = NA_real_, p_value = w$p_value, stringsAsFactors = FALSE)
  }
  out$fdr <- NA_real_
  out$n_treated <- n1
  out$n_control <- n0
  zero <- rowSums(means != means[, 1L]) == 0
  out$reason <- ifelse(few, "too few participants", ifelse(zero, "zero variance", NA_character_))
  out$p_value[!is.na(out$reason)] <- NA
  out
}

#' One response label per participant
#'
#' Response is often recorded per lesion or per sample, so cells of one participant can
#' carry different labels. This sets every cell of a participant to the label most of its
#' cells carry (ties go to the label first in sorted order; cells with no label count for
#' nothing and take their participant's label) and reports the participants whose cells
#' disagreed. The arm column keeps its type (character, factor, numeric or logical).
#' Cells with no participant (NA) cannot be harmonised: they keep their label, with a
#' message (trial functions leave them out).
#'
#' @inheritParams did_table
#' @param verbose Show the report, and the count of cells with no participant, as messages?
#'   Default `getOption("sceffects.verbose", TRUE)`.
#' @return `x` with `colData(x)[[design$arm]]` harmonised; the report (participant, labels
#'   and cell counts, chosen label) is in `S4Vectors::metadata(x)$harmonize_response` and
#'   printed as a message.
#' @export
#' @examples
#' sce <- simulate_trial(n_genes = 300, n_cells = 2000, seed = 1)
#' design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
#'                        baseline = "Pre", followup = "Post")
#' sce <- harmonize_response(sce, design)
harmonize_response <- function(x, design, verbose = getOption("sceffects.verbose", TRUE)) {
  check_design(design)
  check_trial_object(x)
  verbose <- check_flag(verbose, "verbose")
  cd <- SummarizedExperiment::colData(x)
  for (col in c(design$participant, design$arm)) {
    if (!col %in% colnames(cd)) stop(sprintf("colData(x) has no column `%s`.", col), call. = FALSE)
  }
  pid <- as.character(cd[[design$participant]])
  original <- cd[[design$arm]]
  label <- as.character(original)
  known <- !is.na(pid) & !is.na(label)
  counts <- table(pid[known], label[known])
  chosen <- stats::setNames(colnames(counts)[apply(counts, 1L, which.max)], rownames(counts))
  mixed <- rownames(counts)[rowSums(counts > 0) > 1L]
  report <- data.frame(participant = mixed,
                       labels = vapply(mixed, function(p) {
                         k <- counts[p, counts[p, ] > 0]
                         paste(sprintf("%s: %d", names(k), k), collapse = "; ")
                       }, ""),
                       chosen = unname(chosen[mixed]), stringsAsFactors = FALSE)
  # New values are taken from the column itself, so its type and levels are kept.
  set <- !is.na(pid) & pid %in% names(chosen)
  new <- original
  new[set] <- original[match(chosen[pid[set]], label)]
  SummarizedExperiment::colData(x)[[design$arm]] <- new
  S4Vectors::metadata(x)$harmonize_response <- report
  if (nrow(report)) {
    say(sprintf("%d participant(s) had cells with different `%s` labels, set by majority: %s.",
                nrow(report), design$arm,
                name_list(sprintf("%s -> %s (%s)", report$participant, report$chosen, report$labels))), verbose)
  }
  if (any(is.na(pid))) {
    say(sprintf("%d cell(s) have no participant (NA in `%s`): their `%s` label is left as it is, and trial functions leave them out.",
                sum(is.na(pid)), design$participant, design$arm), verbose)
  }
  x
}

#' Difference in differences of cell-type proportions
#'
#' Counts the cells of each type per participant-visit, turns counts into proportions
#' (zero-filled), transforms them, and runs the DiD of [did_table()] with one feature per
#' cell type (participant-visits weighted equally; not standardised).
#'
#' @inheritParams did_table
#' @param transform `"arcsin_sqrt"`, `"logit"` (proportions clipped to \[1e-6, 1 - 1e-6\])
#'   or `"none"`.
#' @param ... Not used: any argument here is an error (cell-type proportions are neither
#'   `features` nor `covariates`-adjusted, and are always aggregated per participant-visit).
#' @return A results table with one row per cell type (`feature`), plus `proportion_pre`
#'   and `proportion_post` (mean proportions over paired participants).
#' @export
#' @examples
#' sce <- simulate_trial(n_genes = 300, n_cells = 3000, seed = 1)
#' design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
#'                        celltype = "cell_type", baseline = "Pre", followup = "Post")
#' abundance_did(sce, design)
abundance_did <- function(x, design, transform = c("arcsin_sqrt", "logit", "none"), ...,
                          vcov = c("CR2", "CR1"), bootstrap = 0, seed = NULL, threads = NULL,
                          verbose = getOption("sceffects.verbose", TRUE)) {
  check_dots_used(..., call_name = "abundance_did")
  transform <- match_choice(transform, "transform")
  vcov <- match_choice(vcov, "vcov")
  settings <- trial_settings(FALSE, bootstrap, seed, threads, NULL, verbose)
  check_design(design)
  if (is.null(design$celltype)) stop("abundance_did() needs a design with a `celltype` column.", call. = FALSE)
  cells <- trial_cells(x, design, settings$verbose)
  ok <- !is.na(cells$visit) & !is.na(cells$treated) & !is.na(cells$celltype)
  no_type <- sum(!is.na(cells$visit) & !is.na(cells$treated) & is.na(cells$celltype))
  if (no_type) say(sprintf("%d cell(s) with no cell type (NA in `%s`) are left out.", no_type, design$celltype), settings$verbose)
  types <- sort(unique(cells$celltype[ok]))
  # Cell-type indicators: one "feature" per type, averaged per participant-visit = proportion.
  ind <- t(vapply(types, function(ct) as.numeric(cells$celltype == ct & ok), numeric(nrow(cells))))
  rownames(ind) <- types
  src <- list(sources = list(numeric_features(ind, "cell types")), lib_size = NULL)
  model <- c(settings, list(contrast = "did", aggregate = "participant_visit", covariates = NULL,
                            vcov = vcov, weights = "equal", transform = transform))
  fit <- trial_model(cells, ok, NULL, model)
  if (!is.null(fit$reason)) {
    return(finish_trial_table(list(na_trial_rows(types, fit, model)), NULL, "abundance DiD", model$verbose))
  }
  props <- rs_group_sums(ind, fit$group, fit$n_groups, model$threads)
  props <- sweep(props, 2L, fit$obs$n_cells, `/`)
  y <- switch(transform,
              arcsin_sqrt = asin(sqrt(props)),
              logit = stats::qlogis(pmin(pmax(props, 1e-6), 1 - 1e-6)),
              none = props)
  boot <- boot_weights(model$bootstrap, max(fit$cluster), model$seed)
  part <- rs_cluster_fit(y, fit$x, fit$weights, fit$cluster, max(fit$cluster), fit$coefs, model$vcov,
                         boot, FALSE, model$threads, NULL, model$conf_level)
  tab <- trial_columns(list(part), fit, model)
  tab$feature <- types
  tab$proportion_pre <- rowMeans(props[, fit$obs$visit == 0L, drop = FALSE])
  tab$proportion_post <- rowMeans(props[, fit$obs$visit == 1L, drop = FALSE])
  finish_trial_table(list(tab), NULL, sprintf("abundance DiD (%s)", transform), model$verbose)
}

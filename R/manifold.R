# Differential abundance and expression on a cell-state manifold: the statistics of
# kompot + Mellon (reference/kompot.md), with sample variance by an exact low-rank update.
# R validates and orchestrates; every number comes from the Rust core (`manifold`).

# Cells of the two conditions, their samples and the embedding, checked.
manifold_input <- function(x, groupby, condition1, condition2, reduction, sample) {
  if (is(x, "SingleCellExperiment")) {
    dims <- SingleCellExperiment::reducedDimNames(x)
    if (!length(dims)) stop("`x` has no reducedDim(): add an embedding (diffusion map or PCA).", call. = FALSE)
    if (is.null(reduction)) reduction <- dims[1L]
    if (!is.character(reduction) || length(reduction) != 1L || !reduction %in% dims) {
      stop(sprintf("`reduction` must name a reducedDim of `x`: one of %s.", paste(dims, collapse = ", ")), call. = FALSE)
    }
    embedding <- SingleCellExperiment::reducedDim(x, reduction)
    cd <- SummarizedExperiment::colData(x)
    column <- function(v, arg) {
      if (!is.character(v) || length(v) != 1L || !v %in% names(cd)) {
        stop(sprintf("`%s` must name a column of colData(x).", arg), call. = FALSE)
      }
      cd[[v]]
    }
    group <- column(groupby, "groupby")
    samples <- if (is.null(sample)) NULL else column(sample, "sample")
    cell_names <- colnames(x)
  } else if (is.matrix(x) && is.numeric(x)) {
    embedding <- x
    if (length(groupby) != nrow(x)) stop("`groupby` must give the condition of every row (cell) of `x`.", call. = FALSE)
    if (!is.null(sample) && length(sample) != nrow(x)) stop("`sample` must give the sample of every row (cell) of `x`.", call. = FALSE)
    group <- groupby
    samples <- sample
    cell_names <- rownames(x)
  } else {
    stop("`x` must be a SingleCellExperiment with a reducedDim, or a numeric matrix (cells x dimensions).", call. = FALSE)
  }
  embedding <- as.matrix(embedding)
  if (!is.numeric(embedding) || ncol(embedding) < 1L || any(!is.finite(embedding))) {
    stop("`reduction` must be a numeric embedding with finite coordinates.", call. = FALSE)
  }
  storage.mode(embedding) <- "double"
  group <- as.character(group)
  for (arg in c("condition1", "condition2")) {
    v <- get(arg)
    if (!is.character(v) && !is.numeric(v) || length(v) != 1L || !as.character(v) %in% group) {
      stop(sprintf("`%s` must be one value of `groupby`.", arg), call. = FALSE)
    }
  }
  if (identical(as.character(condition1), as.character(condition2))) {
    stop("`condition1` and `condition2` must differ.", call. = FALSE)
  }
  cells <- lapply(as.character(c(condition1, condition2)), function(v) which(group == v))
  if (any(lengths(cells) < 10L)) stop("each condition needs at least 10 cells.", call. = FALSE)
  by_sample <- NULL
  if (!is.null(samples)) {
    by_sample <- lapply(cells, function(cc) {
      s <- samples[cc]
      if (anyNA(s)) stop("`sample` has missing values in the cells of the two conditions.", call. = FALSE)
      groups <- split(cc, as.character(s))
      groups <- groups[lengths(groups) >= 2L]
      if (length(groups) < 2L) {
        stop("`sample`: each condition needs at least 2 samples with at least 2 cells.", call. = FALSE)
      }
      lapply(groups, as.integer)
    })
  }
  list(embedding = embedding, cells = lapply(cells, as.integer), samples = by_sample,
       conditions = as.character(c(condition1, condition2)), cell_names = cell_names,
       reduction = reduction)
}

check_number <- function(v, arg, lower = -Inf, null_ok = FALSE) {
  if (null_ok && is.null(v)) return(v)
  if (!is.numeric(v) || length(v) != 1L || is.na(v) || v <= lower) {
    stop(sprintf("`%s` must be a single number > %g.", arg, lower), call. = FALSE)
  }
  as.double(v)
}

# Landmarks: given (checked), or k-means centres of the two conditions' cells.
manifold_landmarks <- function(input, landmarks, n_landmarks, seed, threads) {
  if (!is.null(landmarks)) {
    landmarks <- check_landmarks(landmarks, input)
    storage.mode(landmarks) <- "double"
    return(landmarks)
  }
  n_landmarks <- check_count(n_landmarks, "n_landmarks", min = 2)
  rs_manifold_landmarks(input$embedding, unlist(input$cells), n_landmarks, 100L, seed, threads)
}

check_landmarks <- function(landmarks, input) {
  if (!is.matrix(landmarks) || !is.numeric(landmarks) || ncol(landmarks) != ncol(input$embedding) ||
      any(!is.finite(landmarks))) {
    stop("`landmarks` must be a finite numeric matrix with one column per embedding dimension.", call. = FALSE)
  }
  if (nrow(landmarks) < 2L) {
    stop(sprintf("`landmarks` has %d row%s: give at least 2 landmarks (one per row), or leave it NULL for k-means landmarks.",
                 nrow(landmarks), if (nrow(landmarks) == 1L) "" else "s"), call. = FALSE)
  }
  landmarks
}

# Landmarks the fit will use: those given, else n_landmarks (at most one per cell).
planned_landmarks <- function(input, landmarks, n_landmarks) {
  if (!is.null(landmarks)) return(nrow(check_landmarks(landmarks, input)))
  min(check_count(n_landmarks, "n_landmarks", min = 2), sum(lengths(input$cells)))
}

# The cells x landmarks maps and the landmarks x landmarks matrices of the fit, refused up
# front when they would not fit in memory.
check_manifold_memory <- function(input, m, what) {
  bytes <- (as.numeric(nrow(input$embedding)) * m + as.numeric(m)^2) * 8
  check_memory(bytes, sprintf("%s with %s landmarks and %s cells", what, format(m, big.mark = ","),
                              format(nrow(input$embedding), big.mark = ",")),
               "Use fewer landmarks (`n_landmarks` or `landmarks`).")
}

# A density fit that is flat over the cells (a length scale far beyond the data, as on
# HSMMSingleCell's PCA, where both log densities vary by < 0.005 over all cells) turns the
# difference of the two conditions' levels into one log-fold change at every cell, and
# would call every cell "up" or "down" at once: such calls are not made. A real density
# varies by far more than 5% over the cells it is fitted to.
flat_density <- function(log_densities, lfc) {
  spread <- vapply(log_densities, stats::sd, 0)
  any(spread < 0.05) || stats::sd(lfc) < 1e-3 * max(1, abs(mean(lfc)))
}

# A gene's call: BH of the fitted null's p-values (calibrated on genes that vary along the
# manifold; inst/bench/de-null.R), or kompot's local FDR from the empirical null with
# null = "cells" (kompot's statistic, null and call).
de_calls <- function(bh, local_fdr, fdr_threshold, null_kind) {
  q <- if (null_kind == "cells") local_fdr else bh
  !is.na(q) & q < fdr_threshold
}

# The neighbourhood test's counterpart of a flat density: every landmark the same log fold
# change (e.g. `k` close to all cells, so all neighbourhoods hold the same cells). Its
# statistics are then 0/0 or one number everywhere, and no call means anything.
flat_neighbourhoods <- function(estimate) {
  estimate <- estimate[is.finite(estimate)]
  length(estimate) < 2L || stats::sd(estimate) < 1e-6 * max(1, abs(mean(estimate)))
}

#' Differential abundance on a cell-state manifold
#'
#' Where on the embedding do cells of condition 2 sit more (or less) densely than cells of
#' condition 1? Two methods:
#'
#' - `method = "neighbourhood"` (default): each landmark's neighbourhood is its `k` nearest
#'   cells of the two conditions, a k-nearest-neighbour density estimate whose radius adapts
#'   to the local density and to the dimension of the embedding; by default `k` grows with
#'   the intrinsic dimension of the cells (estimated from their nearest-neighbour
#'   distances), since beyond 3-4 dimensions a neighbourhood must widen to hold enough
#'   cells per sample. With replicates (two or more samples per condition), the
#'   neighbourhoods are taken in the embedding stretched along the directions in which
#'   the samples' mean positions differ more than their cells' spread explains
#'   (discriminant analysis with the samples, not the conditions, as classes; each of the
#'   top `S - 1` directions of `S` samples stretched by its eigenvalue over their median,
#'   1 to 16 times): in 5+ dimensions a k-nearest neighbourhood is otherwise wide in
#'   every direction and dilutes a change confined to a few of them. The conditions do
#'   not enter the metric, so with no condition effect the test keeps its calibration;
#'   the default `k` then follows the stretched metric's effective dimension when that is
#'   below the intrinsic one. With 3 samples per condition and strong differences between
#'   donors, a chance ordering of the donors along a stretched direction (the three of
#'   one condition on one side) looks like an effect to any test across the samples; the
#'   stretch makes such calls rarer than the FDR allows but large when they happen: check
#'   `fit$stretch_directions` against known donor or batch effects. Per landmark and
#'   sample,
#'   the log fraction of the sample's cells in the neighbourhood (normalised per sample by
#'   its modal deviation over landmarks, so a global change of composition or of cell
#'   numbers is not a shift everywhere); a two-group t test across the samples with the
#'   variance moderated across landmarks (limma's empirical Bayes prior); and miloR's
#'   spatial FDR (Benjamini-Hochberg weighted by the inverse neighbourhood radius), in the
#'   per-landmark table. Per cell, the same test on the mean counts of the neighbourhoods
#'   holding the cell, with Benjamini-Hochberg over cells: a cell is called `"up"`/`"down"`
#'   when its FDR is below `fdr_threshold`, its log fold change exceeds `lfc_threshold`
#'   (default 0: the calls are controlled by the FDR, not by a fixed fold change), and the
#'   change rests on more than one sample (with any one sample left out, the log fold
#'   change keeps its sign and at least half its size). Pooling
#'   the overlapping neighbourhoods gives the power one neighbourhood lacks in 5+
#'   dimensions. The replicates are the units: a
#'   shift carried by one replicate inflates the variance there and is not called. Without
#'   `sample`, each condition is one sample and cells are the units (a Wald z of the log
#'   ratio of the two fractions), which ignores replicate variation: give `sample`.
#' - `method = "kompot"`: kompot's `da()` with Mellon's Gaussian-process density
#'   (Matern-5/2 kernel on k-means landmarks, fractal dimension, nearest-neighbour
#'   likelihood, MAP by Newton's method, Laplace variance), as in kompot 0.8 / Mellon 1.7.
#'   With `sample`, the variance between the samples' own densities is added to each
#'   condition's variance. Its heuristic length scale grows with the dimension so fast
#'   that beyond 2-3 dimensions the densities are nearly flat and nothing is called;
#'   when the fit is flat a warning says so and `da_direction` is `NA` for every cell.
#'
#' @param x A SingleCellExperiment with the embedding in `reducedDim(x, reduction)`, or
#'   a numeric matrix (cells x dimensions).
#' @param groupby Column of `colData(x)` with the condition of each cell (a vector, one
#'   per row, when `x` is a matrix).
#' @param condition1,condition2 The two conditions; fold changes are 2 over 1.
#' @param reduction Name of the reducedDim (default: the first).
#' @param sample Column of `colData(x)` (or vector) with the sample (replicate) of each
#'   cell. Strongly advised with the default method (the test is across samples); for
#'   `"kompot"`, `NULL` means no sample variance.
#' @param n_landmarks Number of landmarks. `"neighbourhood"`: cells of the two
#'   conditions whose neighbourhoods are counted; default every cell up to 10,000 cells
#'   (so the calls do not depend on `seed`), beyond that `max(1000, 1e8 / cells)` random
#'   cells. `"kompot"`: k-means centres, default 1,000.
#' @param lfc_threshold Minimum absolute log fold change (natural log) of a call; default
#'   0 for `"neighbourhood"` and 1 for `"kompot"`.
#' @param ptp_threshold For `"kompot"`: a cell is called when its posterior tail
#'   probability is below this.
#' @param seed Seed of the landmarks (for `"neighbourhood"` drawn only above 10,000
#'   cells or with a smaller `n_landmarks`; kompot's k-means and fractal-dimension query
#'   cells);
#'   `NULL`, the default: drawn from R's generator, so `set.seed()` makes the call
#'   reproducible.
#' @param threads Number of threads (default `getOption("sceffects.threads", 2)`).
#' @param landmarks Optional fixed landmarks (matrix, one row per landmark).
#' @param dimension,length_scale,ls_factor For `"kompot"`: fixed fractal dimension and
#'   length scale instead of the heuristics, and the multiplier of the length-scale
#'   heuristic.
#' @param method `"neighbourhood"` or `"kompot"` (see Details).
#' @param k For `"neighbourhood"`: cells per neighbourhood. Default: a fraction
#'   `0.006 d^1.2` of the cells of the two conditions for dimension `d` (1.4% at
#'   `d = 2`, 4% at 5, 10% at 10), at least 15 per sample, between 30 and an eighth of
#'   the cells; `d` is the intrinsic dimension of the cells in the stretched metric, or
#'   the metric's effective dimension (each direction weighted by its squared stretch
#'   over the largest) when lower. Larger `k` gives
#'   more power for broad changes and blurs small regions.
#' @param fdr_threshold For `"neighbourhood"`: spatial FDR of a call.
#' @param verbose Print notes (e.g. no `sample`) and progress bars? `FALSE`, or
#'   `options(sceffects.verbose = FALSE)` for the session, silences them.
#' @return For a SingleCellExperiment, `x` with colData columns and the fit in
#'   `metadata(x)$diff_abundance`; for a matrix, a data.frame of those columns with the
#'   fit in `attr(, "fit")`. `"neighbourhood"`: `da_lfc`, `da_statistic` (moderated t)
#'   and `da_fdr` (Benjamini-Hochberg over cells) of the test on the mean counts of the
#'   neighbourhoods holding the cell, `da_direction`; the fit has `k`,
#'   `intrinsic_dimension`, the metric's `stretch` factors and `stretch_directions`
#'   (embedding dimensions x directions; none without replicates), and the per-landmark
#'   results table (`estimate`, `std_error`, `statistic`, `df`, `p_value`, `fdr` = spatial
#'   FDR, counts, radius) in `fit$regions`, ready for [plot_volcano()]; cells outside the
#'   two conditions get `NA`. When every landmark has the same log fold change (e.g. `k`
#'   near the number of cells) a warning says the fit is flat and `da_direction` is `NA`.
#'   `"kompot"`: `da_log_density_<c>`, `da_lfc`,
#'   `da_lfc_zscore`, `da_neg_log10_ptp`, `da_direction` (suffix `_sample_var` with
#'   `sample`).
#' @seealso [plot_da()] to draw the calls on the embedding.
#' @export
#' @examples
#' sce <- simulate_manifold(n_cells = 600, n_genes = 40, seed = 1)
#' sce <- diff_abundance(sce, "condition", "young", "old", sample = "sample")
#' table(sce$da_direction, sce$t > 0.7)
#' head(S4Vectors::metadata(sce)$diff_abundance$regions)
#' kompot <- diff_abundance(sce, "condition", "young", "old", method = "kompot",
#'                          n_landmarks = 50)
diff_abundance <- function(x, groupby, condition1, condition2, reduction = NULL, sample = NULL,
                           n_landmarks = NULL, lfc_threshold = NULL, ptp_threshold = 0.05, seed = NULL,
                           threads = NULL, landmarks = NULL, dimension = NULL, length_scale = NULL,
                           ls_factor = 10, method = c("neighbourhood", "kompot"), k = NULL,
                           fdr_threshold = 0.1, verbose = getOption("sceffects.verbose", TRUE)) {
  verbose <- local_verbose(verbose)
  if (!is.character(method) || !length(method) || !method[1L] %in% c("neighbourhood", "kompot")) {
    stop("`method` must be \"neighbourhood\" or \"kompot\".", call. = FALSE)
  }
  method <- method[1L]
  input <- manifold_input(x, groupby, condition1, condition2, reduction, sample)
  threads <- resolve_threads(threads)
  seed <- resolve_seed(seed)
  if (is.null(lfc_threshold)) lfc_threshold <- if (method == "kompot") 1 else 0
  if (!is.numeric(lfc_threshold) || length(lfc_threshold) != 1L || is.na(lfc_threshold) || lfc_threshold < 0) {
    stop("`lfc_threshold` must be a single number >= 0.", call. = FALSE)
  }
  if (method == "neighbourhood") {
    kompot_only <- c(ptp_threshold = missing(ptp_threshold), dimension = is.null(dimension),
                     length_scale = is.null(length_scale), ls_factor = missing(ls_factor))
    if (!all(kompot_only)) {
      stop(sprintf("`%s` applies to method = \"kompot\" only: drop it, or set method = \"kompot\".",
                   names(kompot_only)[!kompot_only][1L]), call. = FALSE)
    }
    return(da_neighbourhood(x, input, n_landmarks, k, lfc_threshold, fdr_threshold, landmarks, seed,
                            threads, verbose))
  }
  if (!missing(k) || !missing(fdr_threshold)) {
    stop(sprintf("`%s` applies to method = \"neighbourhood\" only.", if (!missing(k)) "k" else "fdr_threshold"),
         call. = FALSE)
  }
  da_kompot(x, input, n_landmarks %||% 1000L, lfc_threshold, ptp_threshold, seed, threads, landmarks, dimension,
            length_scale, ls_factor)
}

# Default landmarks of the neighbourhood test: every cell up to 10,000 cells (each cell's
# own neighbourhood; random landmarks made the calls of a marginal region depend on the
# draw); beyond, random cells, as many as keep the nearest-neighbour search (landmarks x
# cells) within 1e8 pairs, at least 1,000.
default_neighbourhood_landmarks <- function(n_cells) {
  if (n_cells <= 10000L) return(n_cells)
  as.integer(max(1000, ceiling(1e8 / n_cells)))
}

# The neighbourhood test (core `cellstate::neighbourhood`): R checks, orders the samples
# and builds the per-cell columns and the per-landmark table.
da_neighbourhood <- function(x, input, n_landmarks, k, lfc_threshold, fdr_threshold, landmarks, seed,
                             threads, verbose) {
  fdr_threshold <- check_number(fdr_threshold, "fdr_threshold", 0)
  if (fdr_threshold >= 1) stop("`fdr_threshold` must be below 1.", call. = FALSE)
  cells <- unlist(input$cells)
  n <- length(cells)
  # k = 0: the core picks it from the cells' intrinsic dimension.
  k <- if (is.null(k)) 0L else check_count(k, "k", min = 2)
  if (k > n) stop(sprintf("`k` (%d) must be at most the number of cells of the two conditions (%d).", k, n), call. = FALSE)
  if (is.null(input$samples)) {
    say("diff_abundance(): no `sample`, so cells are the units and replicate variation is ignored; give `sample` for calibrated calls.",
        verbose)
    samples <- lapply(input$cells, list)
  } else {
    samples <- input$samples
  }
  # Samples in order; a cell of a sample dropped for having < 2 cells is left out.
  jobs <- unlist(samples, recursive = FALSE)
  kept <- unlist(jobs)
  sample_of <- rep(seq_along(jobs), lengths(jobs))
  condition_of_sample <- rep(0:1, lengths(samples))
  if (!is.null(landmarks)) {
    landmarks <- check_landmarks(landmarks, input)
    storage.mode(landmarks) <- "double"
    n_landmarks <- nrow(landmarks)
  } else {
    n_landmarks <- if (is.null(n_landmarks)) {
      default_neighbourhood_landmarks(length(kept))
    } else {
      min(check_count(n_landmarks, "n_landmarks", min = 2), length(kept))
    }
  }
  fit <- rs_manifold_neighbourhoods(input$embedding, as.integer(kept), as.integer(sample_of),
                                    as.integer(condition_of_sample), landmarks, as.integer(n_landmarks),
                                    as.integer(k), seed, threads)
  k <- fit$k
  regions <- da_regions_table(fit, input, jobs, k)
  n_all <- nrow(input$embedding)
  col <- function(v) {
    out <- rep(NA_real_, n_all)
    out[kept] <- v
    out
  }
  lfc <- col(fit$cell_estimate)
  cell_fdr <- col(fit$cell_fdr)
  stable <- rep(FALSE, n_all)
  stable[kept] <- fit$cell_stable
  called <- !is.na(cell_fdr) & cell_fdr < fdr_threshold & abs(lfc) > lfc_threshold & stable
  direction <- ifelse(called & lfc > 0, "up", ifelse(called & lfc < 0, "down", "neutral"))
  direction[is.na(lfc)] <- NA_character_
  flat <- flat_neighbourhoods(fit$estimate)
  if (flat) {
    warning(sprintf("diff_abundance(): the neighbourhood fit is flat (log fold change %.3g at every landmark, sd %.2g): every neighbourhood holds the same mix of samples (k = %d of %d cells), so no region can differ and the direction calls are set to NA. Use a smaller `k` or check the embedding.",
                    mean(fit$estimate), stats::sd(fit$estimate), k, n), call. = FALSE)
    direction[] <- NA_character_
  }
  out <- data.frame(da_lfc = lfc, da_statistic = col(fit$cell_statistic), da_fdr = cell_fdr,
                    da_direction = factor(direction, levels = c("down", "neutral", "up")))
  fit_info <- list(method = "neighbourhood", conditions = input$conditions, reduction = input$reduction, landmarks = fit$landmarks, k = k,
                   intrinsic_dimension = fit$intrinsic_dimension, stretch = fit$stretch,
                   stretch_directions = stretch_directions(fit$stretch_directions, input$embedding), regions = regions, prior_df = fit$prior_df, prior_var = fit$prior_var,
                   sample_variance = !is.null(input$samples), fdr_threshold = fdr_threshold,
                   lfc_threshold = lfc_threshold, flat = flat)
  da_output(x, out, input, fit_info)
}

# The metric's directions, one column each, rows named by the embedding's dimensions.
stretch_directions <- function(directions, embedding) {
  rownames(directions) <- colnames(embedding) %||% paste0("dim", seq_len(nrow(directions)))
  colnames(directions) <- if (ncol(directions)) paste0("direction", seq_len(ncol(directions)))
  directions
}

# One row per landmark in the results vocabulary; `fdr` is the spatial FDR.
da_regions_table <- function(fit, input, jobs, k) {
  counts <- fit$counts
  colnames(counts) <- names(jobs) %||% paste0("sample", seq_along(jobs))
  coords <- fit$landmarks
  colnames(coords) <- colnames(input$embedding) %||% paste0("dim", seq_len(ncol(coords)))
  res <- data.frame(feature = sprintf("L%d", seq_len(nrow(coords))), estimate = fit$estimate,
                    std_error = fit$std_error, statistic = fit$statistic, df = fit$df,
                    log_p = fit$log_p, fdr = fit$spatial_fdr, n_cells = k, radius = fit$radius,
                    fit$log_abundance1, fit$log_abundance2)
  names(res)[ncol(res) - 1:0] <- paste0("log_abundance_", input$conditions)
  method <- sprintf("neighbourhood DA %s vs %s%s", input$conditions[2L], input$conditions[1L],
                    if (is.null(input$samples)) " (no replicates)" else "")
  results_table(res, method, list(estimate_label = "log fold change of abundance", counts = counts,
                                  landmarks = coords, fdr_note = "fdr is miloR's spatial FDR."))
}

da_output <- function(x, out, input, fit_info) {
  if (!is(x, "SingleCellExperiment")) {
    rownames(out) <- input$cell_names
    attr(out, "fit") <- fit_info
    return(out)
  }
  for (nm in names(out)) SummarizedExperiment::colData(x)[[nm]] <- out[[nm]]
  S4Vectors::metadata(x)$diff_abundance <- fit_info
  x
}

# kompot's da() (reference/kompot.md), numbers unchanged.
da_kompot <- function(x, input, n_landmarks, lfc_threshold, ptp_threshold, seed, threads, landmarks,
                      dimension, length_scale, ls_factor) {
  ptp_threshold <- check_number(ptp_threshold, "ptp_threshold", lower = 0)
  if (ptp_threshold >= 1) stop("`ptp_threshold` must be below 1.", call. = FALSE)
  dimension <- if (is.null(dimension)) NaN else check_number(dimension, "dimension", 0)
  length_scale <- if (is.null(length_scale)) NaN else check_number(length_scale, "length_scale", 0)
  ls_factor <- check_number(ls_factor, "ls_factor", 0)
  check_manifold_memory(input, planned_landmarks(input, landmarks, n_landmarks), "diff_abundance()")
  lm <- manifold_landmarks(input, landmarks, n_landmarks, seed, threads)

  density <- function(cells, with_variance) {
    rs_manifold_density(input$embedding, cells, lm, dimension, length_scale, ls_factor, seed,
                        with_variance, threads)
  }
  fits <- with_progress(2L, "Densities", function(k) density(input$cells[[k]], TRUE))
  lfc <- fits[[2L]]$log_density - fits[[1L]]$log_density
  variance <- fits[[1L]]$variance + fits[[2L]]$variance
  if (!is.null(input$samples)) {
    jobs <- unlist(input$samples, recursive = FALSE)
    per_sample <- with_progress(length(jobs), "Sample densities",
                                function(k) density(jobs[[k]], FALSE)$log_density)
    condition_of <- rep(1:2, lengths(input$samples))
    for (c in 1:2) {
      ld <- do.call(cbind, per_sample[condition_of == c])
      variance <- variance + rowSums((ld - rowMeans(ld))^2) / (ncol(ld) - 1)
    }
  }
  z <- lfc / sqrt(variance + 1e-12)
  log_ptp <- p_tail("norm", -abs(z), log_p = TRUE)
  neg_log10_ptp <- -log_ptp / log(10)
  significant <- neg_log10_ptp > -log10(ptp_threshold)
  direction <- ifelse(significant & lfc > lfc_threshold, "up",
                      ifelse(significant & lfc < -lfc_threshold, "down", "neutral"))
  flat <- length(lfc) > 1L && flat_density(lapply(fits, `[[`, "log_density"), lfc)
  if (flat) {
    warning(sprintf("diff_abundance(): the density fit is flat (log density sd over the cells %s; log-fold change %.3g, sd %.2g), so the direction calls are not trustworthy and are set to NA. Check the embedding, `length_scale` and `ls_factor`, or use method = \"neighbourhood\".",
                    paste(sprintf("%.2g", vapply(fits, function(f) stats::sd(f$log_density), 0)), collapse = " and "),
                    mean(lfc), stats::sd(lfc)), call. = FALSE)
    direction[] <- NA_character_
  }
  suffix <- if (is.null(input$samples)) "" else "_sample_var"
  out <- data.frame(fits[[1L]]$log_density, fits[[2L]]$log_density, lfc, z, neg_log10_ptp,
                    factor(direction, levels = c("down", "neutral", "up")))
  names(out) <- c(paste0("da_log_density_", input$conditions), paste0("da_", c("lfc", "lfc_zscore", "neg_log10_ptp", "direction"), suffix))
  fit_info <- list(method = "kompot", reduction = input$reduction, landmarks = lm, conditions = input$conditions,
                   dimension = vapply(fits, `[[`, 0, "dimension"),
                   length_scale = vapply(fits, `[[`, 0, "length_scale"),
                   mu = vapply(fits, `[[`, 0, "mu"), variance = variance,
                   sample_variance = !is.null(input$samples), flat = flat)
  da_output(x, out, input, fit_info)
}

#' Differential expression on a cell-state manifold
#'
#' For each gene and condition, a sparse Gaussian-process regression of expression over
#' the embedding (kompot's `de()`: Matern-5/2 kernel on k-means landmarks, length scale
#' from condition 1's nearest-neighbour distances, noise 1, prior mean 0). Per gene: the
#' mean log fold change over all cells of `x`, and the Mahalanobis distance between the
#' two conditions' functions at the landmarks under their summed posterior covariance
#' (shared by all genes). Its significance comes from null genes: `null_genes` genes
#' whose values are permuted among the cells of the two conditions and run through the
#' same pipeline give an empirical p-value (`p_empirical`, which cannot go below about
#' `1 / null_genes`) and kompot's local FDR (reflected KDE, monotone fit).
#'
#' With `null = "cell_state"` (the default), the cells of the two conditions are split into
#' strata of similar cell state: the Voronoi cells of k-means centres on the embedding,
#' about 30 cells each (seeded by `seed`). Thirty cells hold both conditions in all but
#' condition-specific regions while spanning a small part of the manifold (a few
#' nearest-neighbour distances, well below the regression's length scale). Every gene
#' (real and null) is first centred by its means in the strata, and null genes are
#' permuted within every stratum. Centring removes what a gene does along the manifold;
#' what remains is the contrast of the two conditions within strata. Without it, a gene
#' that varies along the manifold has regressions that differ wherever the conditions'
#' cells are distributed differently, and the null genes (which keep that dependence)
#' have so wide a null that planted genes are lost. The statistic of the centred gene is
#' then compared with null genes that share its centring: a within-stratum permutation
#' leaves the stratum means unchanged. A condition effect confined to strata of one
#' condition only cannot be estimated (the stratum mean is that condition's own mean).
#' With `null = "cells"` (the statistic and null of kompot and of sceffects before
#' 0.1.0), genes are used as they are and null genes are permuted across all cells of the
#' two conditions: the null is then expression unrelated to cell state and condition,
#' and a gene that varies along the manifold without any condition effect gets p-values
#' that are too small.
#'
#' The centring also changes `mean_lfc`, `mahalanobis` and the per-cell fold changes:
#' they are kompot's statistics of the centred gene (the two conditions' regressions of
#' the gene minus its stratum means), so they measure the condition contrast within
#' strata of similar cell state, not the difference of the two conditions' raw
#' expression over the manifold (which also holds the trajectory where the conditions'
#' cells sit apart). `null = "cells"` gives kompot's numbers.
#'
#' `p_value` resolves small p: a gene's squared distance scales with its variance over
#' the cells of the two conditions (of the centred gene with the default null), so the
#' statistic is `mahalanobis^2 / variance`, and
#' its null distribution is a scaled F fitted by maximum likelihood to the null genes'
#' statistics (a scaled chi-square, i.e. gamma, whose scale varies between genes; the F
#' contains the scaled chi-square as its second degrees of freedom grow, and fits the
#' null genes' upper tail where a single gamma is too light). The fit is in
#' `attr(, "null_fit")` (`df1`, `df2`, `scale`, `log_lik`). The null these p-values test
#' is that of the null genes (above): no condition effect given cell state.
#' `is_de` is `fdr < fdr_threshold` (Benjamini-Hochberg of these p-values); with
#' `null = "cells"` it is kompot's call, `local_fdr < fdr_threshold`, `local_fdr` being
#' kompot's local FDR from the empirical null of the null genes (given with either null).
#'
#' With `sample`, per-sample regressions add, for each gene, the between-sample
#' covariance of the predictions at the landmarks. It has rank at most the number of
#' samples, so the distance is computed exactly by the Woodbury identity: no per-gene
#' landmarks x landmarks matrix and no per-gene Cholesky (kompot builds both). The null
#' genes go through the same sample-variance pipeline. Permuting a gene among cells
#' spreads it evenly over the samples, so with `null = "cell_state"` each null gene gets
#' back its source gene's per-sample offsets: the means of the centred gene over each
#' sample's cells, minus their mean within the sample's condition (so no condition
#' effect), scaled by `sqrt(m / (m - 1))` for `m` samples of the condition, shrunk by
#' the noise of the cells in a sample mean (which the permuted gene already carries:
#' factor `sqrt(max(0, 1 - W mean(1/n) / B))`, `W` the within-sample variance, `n` the
#' samples' cells, `B` the between-sample mean square), and moved to randomly chosen
#' samples with random signs. The null is then a gene with the real
#' gene's between-sample spread and no condition effect; a gene whose samples differ
#' (with no condition effect) gets calibrated p-values. With `null = "cells"`, null genes
#' have no between-sample differences beyond those of randomly drawn cells, and a real
#' gene that shifts between replicates gets p-values that err on the large side.
#' Without `sample`, a difference between samples is a difference between the two
#' conditions' cells, and is tested as one.
#'
#' @inheritParams diff_abundance
#' @param x A SingleCellExperiment with the embedding in `reducedDim(x, reduction)`, or
#'   the (log-normalised) expression alone, genes in rows and cells in columns: a matrix,
#'   dgCMatrix, DelayedArray, SummarizedExperiment or ExpressionSet, with the embedding
#'   given as `reduction` and `groupby`, `sample` as vectors (one per cell), as
#'   [diff_abundance()] takes a matrix.
#' @param reduction For a SingleCellExperiment, the name of the reducedDim (default: the
#'   first); otherwise the embedding itself, a numeric matrix with one row per cell.
#' @param groupby Column of `colData(x)` with the condition of each cell (for a
#'   SingleCellExperiment), or a vector with one value per cell.
#' @param sample Column of `colData(x)` (or a vector, one per cell) with the sample
#'   (replicate) of each cell; `NULL` for no sample variance.
#' @param assay Assay with (log-normalised) expression (dense or dgCMatrix) of a
#'   SingleCellExperiment (`"logcounts"` by default), of a SummarizedExperiment (the
#'   first by default) or of an ExpressionSet (`exprs()` by default).
#' @param features Genes (row names or indices) to test; default all (the same argument
#'   as in [did_table()]).
#' @param null_genes Number of permuted null genes for the p-values and FDR (0: none;
#'   then `p_value`, `p_empirical` and `local_fdr` are `NA`; the fitted null needs at
#'   least 20, and its tail is trustworthy from a few hundred). With `sample`, null genes
#'   go through the same sample-variance pipeline, but a permuted gene has lost the
#'   replicate structure unless `null = "cell_state"` gives it back (see Details; kompot
#'   turns null genes off with `sample_col`).
#' @param null `"cell_state"` (default): genes centred by their means in strata of about
#'   30 cells of similar cell state, null genes permuted within the strata (with
#'   `sample`, carrying per-sample offsets), so that genes varying along the manifold
#'   without a condition effect get uniform p-values; `"cells"`: genes as they are, null
#'   genes permuted across all cells of the two conditions (kompot's statistic and null,
#'   and that of earlier versions). See Details.
#' @param fold_change If `TRUE`, the per-cell fold changes (genes x cells of `x`; of the
#'   stratum-centred genes with `null = "cell_state"`) are returned in the attribute `"fold_change"` of the table; [add_results()] puts them
#'   into an assay of the SingleCellExperiment (`<prefix>_fold_change`).
#' @param n_landmarks Number of landmarks: k-means centres of the two conditions' cells.
#' @param seed Seed of the landmarks' k-means, the strata and the null genes' permutation;
#'   `NULL`, the default: drawn from R's generator, so `set.seed()` makes the call
#'   reproducible.
#' @param dry_run If `TRUE`, print the memory and time plan and compute nothing.
#' @param fdr_threshold `is_de` is `fdr < fdr_threshold` (`local_fdr < fdr_threshold`, as
#'   kompot, with `null = "cells"`).
#' @param ls_factor Multiplier of the length-scale heuristic (kompot's default 10).
#' @param landmarks,length_scale Optional fixed landmarks (matrix) and length scale used
#'   instead of the k-means landmarks and the length-scale heuristic.
#' @param block_size Genes per block (progress and Ctrl-C between blocks).
#' @param BPPARAM Optional BiocParallel backend: blocks of genes are spread over its
#'   workers, each of which rebuilds the shared model.
#' @return A results table (`sceffects_results`): `feature`, `estimate` (= `mean_lfc`),
#'   `statistic` (= `mahalanobis`; both of the stratum-centred gene with the default
#'   `null = "cell_state"`, kompot's of the gene as it is with `null = "cells"`; see
#'   Details), `p_value` (from the null fitted to the null genes),
#'   `log_p` (its natural log, finite where `p_value` underflows), `fdr` (BH of
#'   `p_value`), `mean_lfc`, `mahalanobis`, `p_empirical` (share of null genes at least as
#'   far, floored at the smallest positive one, as kompot's), `local_fdr` (kompot's, from
#'   the null genes), `is_de` (`fdr < fdr_threshold`; kompot's `local_fdr <
#'   fdr_threshold` with `null = "cells"`), `reason`; how the null genes
#'   were permuted in `attr(, "null_permutation")` (`null`; `"cell_state"` also means the
#'   genes were centred by their stratum means), and `attr(, "fdr_note")`.
#' @export
#' @examples
#' sce <- simulate_manifold(n_cells = 600, n_genes = 40, seed = 1)
#' de <- diff_expression(sce, "condition", "young", "old", n_landmarks = 60,
#'                       null_genes = 40)
#' head(de[order(de$mahalanobis, decreasing = TRUE), ])
#' attr(de, "null_fit")
diff_expression <- function(x, groupby, condition1, condition2, reduction = NULL, assay = "logcounts",
                            sample = NULL, features = NULL, n_landmarks = 2000L, null_genes = 2000L,
                            fold_change = FALSE, dry_run = FALSE, fdr_threshold = 0.05, block_size = 512L,
                            seed = NULL, threads = NULL, BPPARAM = NULL, landmarks = NULL,
                            length_scale = NULL, ls_factor = 10, null = c("cell_state", "cells")) {
  null_kind <- match_choice(null, "null")
  if (is(x, "SingleCellExperiment")) {
    input <- manifold_input(x, groupby, condition1, condition2, reduction, sample)
    src <- numeric_features(x, "x", assay = assay)
  } else {
    # Expression and embedding given apart, as diff_abundance() takes an embedding alone.
    src <- numeric_features(x, "x", assay = if (missing(assay)) NULL else assay)
    input <- manifold_input(de_embedding(reduction, src), groupby, condition1, condition2, NULL, sample)
  }
  threads <- resolve_threads(threads)
  check_bpparam(BPPARAM)
  seed <- resolve_seed(seed)
  null_genes <- check_count(null_genes, "null_genes")
  block_size <- check_count(block_size, "block_size", min = 1)
  fdr_threshold <- check_number(fdr_threshold, "fdr_threshold", 0)
  ls_factor <- check_number(ls_factor, "ls_factor", 0)
  rows <- gene_rows(features, src)
  if (null_genes > 0L && null_genes < 2L) stop("`null_genes` must be 0 or at least 2.", call. = FALSE)
  m <- planned_landmarks(input, landmarks, n_landmarks)
  plan <- de_plan(input, length(rows), null_genes, m, block_size, fold_change, threads)
  if (isTRUE(dry_run)) {
    print(plan)
    return(invisible(plan))
  }
  check_manifold_memory(input, m, "diff_expression()")
  check_memory(plan$peak_gib * 2^30, sprintf("diff_expression() (see dry_run = TRUE for the plan) with %s landmarks",
                                             format(m, big.mark = ",")),
               "Use fewer landmarks (`n_landmarks`), a smaller `block_size`, or fold_change = FALSE.")
  lm <- manifold_landmarks(input, landmarks, n_landmarks, seed, threads)
  ls <- if (is.null(length_scale)) {
    rs_manifold_length_scale(input$embedding, input$cells[[1L]], ls_factor, threads)
  } else check_number(length_scale, "length_scale", 0)

  null <- if (null_genes > 0L) draw_null_genes(src$n_features, null_genes, seed) else NULL
  # Strata of similar cell state, computed once here, so every BiocParallel worker
  # centres and permutes within the same strata.
  if (null_kind == "cell_state") {
    input$strata <- rs_manifold_strata(input$embedding, unlist(input$cells), NULL_STRATUM_CELLS,
                                       NULL_STRATUM_ITER, seed, threads)
    input$sample_cells <- de_sample_cells(input$samples)
  }
  jobs <- c(lapply(plan_chunks(length(rows), block_size), function(i) list(rows = rows[i], null = NULL)),
            if (!is.null(null)) lapply(plan_chunks(length(null$rows), block_size),
                                       function(k) list(rows = null$rows[k], null = null$seeds[k])))
  run_jobs <- function(jobs) {
    model <- rs_manifold_expression_model(input$embedding, input$cells[[1L]], input$cells[[2L]],
                                          input$samples[[1L]] %||% list(), input$samples[[2L]] %||% list(),
                                          lm, ls, !is.null(input$samples), isTRUE(fold_change), threads)
    blocks <- with_progress(length(jobs), "Genes", function(k) {
      y <- gene_block(src, jobs[[k]], input)
      rs_manifold_expression_block(model$model, y, threads)
    })
    list(blocks = blocks, diagonal_shortcut = model$diagonal_shortcut)
  }
  runs <- if (is.null(BPPARAM)) {
    list(run_jobs(jobs))
  } else {
    n_parts <- min(length(jobs), BiocParallel::bpnworkers(BPPARAM))
    parts <- split(jobs, ceiling(seq_along(jobs) * n_parts / length(jobs)))
    BiocParallel::bplapply(parts, run_jobs, BPPARAM = BPPARAM)
  }
  blocks <- unlist(lapply(runs, `[[`, "blocks"), recursive = FALSE)
  is_null <- vapply(jobs, function(j) !is.null(j$null), TRUE)
  real <- blocks[!is_null]
  pick <- function(bl, f) unlist(lapply(bl, `[[`, f))
  distance <- nan_to_na(pick(real, "mahalanobis"))
  mean_lfc <- pick(real, "mean_lfc")
  constant <- pick(real, "constant")
  reason <- ifelse(constant, "constant across the cells of the two conditions",
                   ifelse(is.na(distance), "posterior covariance not positive definite", NA_character_))
  distance[constant] <- NA
  mean_lfc[constant] <- NA
  log_p <- p_empirical <- local_fdr <- rep(NA_real_, length(distance))
  null_fit <- NULL
  if (!is.null(null)) {
    nulls <- blocks[is_null]
    kept <- !pick(nulls, "constant")
    null_distance <- pick(nulls, "mahalanobis")[kept]
    null_variance <- pick(nulls, "variance")[kept]
    ok <- !is.na(distance)
    if (sum(ok) >= 2L && sum(is.finite(null_distance)) >= 2L) {
      fdr <- rs_manifold_null_fdr(distance[ok], null_distance, threads)
      p_empirical[ok] <- fdr$p_value
      local_fdr[ok] <- fdr$local_fdr
    }
    # The core refuses too few null genes or a fit that does not converge: p_value is then
    # NA and the note says why.
    null_fit <- tryCatch(rs_manifold_null_tail(distance, pick(real, "variance"), null_distance, null_variance),
                         error = function(e) conditionMessage(e))
    if (is.list(null_fit)) {
      log_p <- nan_to_na(null_fit$log_p)
      null_fit$log_p <- NULL
    }
  }
  bh <- fdr_bh(exp(log_p))
  res <- data.frame(feature = src$names[rows], estimate = mean_lfc, statistic = distance,
                    p_value = exp(log_p), log_p = log_p, fdr = bh, mean_lfc = mean_lfc,
                    mahalanobis = distance, p_empirical = p_empirical, local_fdr = local_fdr,
                    is_de = de_calls(bh, local_fdr, fdr_threshold, null_kind),
                    reason = reason, stringsAsFactors = FALSE)
  extra <- list(estimate_label = "mean log fold change", landmarks = lm, length_scale = ls,
                conditions = input$conditions, sample_variance = !is.null(input$samples),
                diagonal_shortcut = runs[[1L]]$diagonal_shortcut,
                null_fit = if (is.list(null_fit)) null_fit, null_permutation = null_kind,
                fdr_note = de_fdr_note(null, null_fit, null_kind))
  if (isTRUE(fold_change)) {
    fc <- do.call(rbind, lapply(real, `[[`, "fold_change"))
    dimnames(fc) <- list(src$names[rows], input$cell_names)
    extra$fold_change <- fc
  }
  method <- sprintf("manifold DE %s vs %s%s", input$conditions[2L], input$conditions[1L],
                    if (is.null(input$samples)) "" else " (sample variance)")
  results_table(res, method, extra)
}

# `null_fit` is the core's fit, or its message when it refused to fit.
de_fdr_note <- function(null, null_fit, null_kind) {
  if (is.null(null)) return("No null genes: p_value, p_empirical and local_fdr are NA.")
  n <- length(null$rows)
  how <- if (null_kind == "cell_state") {
    "permuted within strata of similar cell state (all genes centred by their stratum means)"
  } else "permuted across all cells"
  tail <- if (is.character(null_fit)) {
    sprintf("p_value is NA: %s", null_fit)
  } else {
    sprintf("p_value from the null fitted to them (distance^2 / variance ~ %.3g F(%.3g, %.3g))",
            null_fit$scale, null_fit$df1, null_fit$df2)
  }
  sprintf("p_empirical and local_fdr from %d null genes %s; %s.", n, how, tail)
}

# The samples' cells for the per-sample offsets of null genes: cells (columns), their
# sample (1-based) and each sample's condition (0/1); empty without samples.
de_sample_cells <- function(samples) {
  if (is.null(samples)) return(list(cells = integer(), sample_of = integer(), condition_of = integer()))
  sam <- unlist(samples, recursive = FALSE)
  list(cells = as.integer(unlist(sam)), sample_of = rep(seq_along(sam), lengths(sam)),
       condition_of = rep(0:1, lengths(samples)))
}

# The embedding of diff_expression() on an expression matrix: `reduction` itself, one row
# per column (cell) of `x`.
de_embedding <- function(reduction, src) {
  if (!is.matrix(reduction) || !is.numeric(reduction)) {
    stop("`reduction` must be the embedding, a numeric matrix with one row per cell (column of `x`), when `x` is not a SingleCellExperiment.",
         call. = FALSE)
  }
  if (nrow(reduction) != src$n_samples) {
    hint <- if (ncol(reduction) == src$n_samples) " It may be transposed: use t(reduction)." else ""
    stop(sprintf("`reduction` has %d rows but `x` has %d cells (columns).%s", nrow(reduction), src$n_samples, hint),
         call. = FALSE)
  }
  if (!is.null(rownames(reduction)) && !is.null(src$samples) && !identical(rownames(reduction), src$samples)) {
    stop("`reduction`'s row names are not the cells (column names) of `x` in order: reorder its rows.", call. = FALSE)
  }
  if (is.null(rownames(reduction))) rownames(reduction) <- src$samples
  reduction
}

gene_rows <- function(features, src) {
  if (is.null(features)) return(seq_len(src$n_features))
  rows <- if (is.character(features)) match(features, src$names) else if (is.numeric(features)) as.integer(features) else NA
  if (!length(rows) || anyNA(rows) || any(rows < 1L | rows > src$n_features)) {
    stop("`features` must be row names or row indices of `x`.", call. = FALSE)
  }
  if (anyDuplicated(rows)) stop("`features` has duplicates.", call. = FALSE)
  rows
}

# Null genes: genes drawn from all rows, each with its own permutation seed.
draw_null_genes <- function(n_genes, n_null, seed) {
  with_fixed_rng(seed, {
    rows <- sample.int(n_genes, n_null, replace = n_null > n_genes)
    list(rows = rows, seeds = sample.int(.Machine$integer.max, n_null))
  })
}

# with_seed() under R's default generator whatever the session's (or a BiocParallel
# worker's) RNGkind, so that null genes are the same in every process.
with_fixed_rng <- function(seed, expr) {
  with_seed(seed, {
    RNGkind("Mersenne-Twister", "Inversion", "Rejection")
    set.seed(seed)
    expr
  })
}

# Cells per stratum of the cell-state null (see diff_expression()'s details).
NULL_STRATUM_CELLS <- 30L
# Lloyd's iterations of the strata's k-means: strata need not be optimal, only compact.
NULL_STRATUM_ITER <- 20L

# A block of genes over all cells. With null = "cell_state" (`input$strata`, one stratum
# per cell of `input$cells`), every gene is first centred by its means in the strata (core
# `strata::centre_within_strata`), and null genes are permuted within the strata; with
# samples, each null gene then gets its source gene's per-sample offsets (core
# `strata::sample_offsets`: within-condition centred, so no condition effect), reassigned
# to random samples with random signs. With null = "cells", genes are left as they are and
# null genes are permuted across all cells of the two conditions.
gene_block <- function(src, job, input) {
  y <- feature_rows(src, job$rows)
  strata <- input$strata
  if (is.null(job$null) && is.null(strata)) return(y)
  y <- as.matrix(y)
  storage.mode(y) <- "double"
  cc <- unlist(input$cells)
  offsets <- NULL
  if (!is.null(strata)) {
    sam <- input$sample_cells %||% de_sample_cells(NULL)
    centred <- rs_manifold_centre_block(y, cc, strata, sam$cells, sam$sample_of, sam$condition_of)
    y <- `dimnames<-`(centred$y, dimnames(y))
    if (!is.null(job$null)) offsets <- centred$offsets
  }
  if (is.null(job$null)) return(y)
  # Cells grouped by stratum; a random order within each stratum is a permutation within
  # strata (`home[i]` takes the value of `from[i]`, a cell of the same stratum). Sorting
  # `strata + u` (u uniform in [0, 1)) is sorting by stratum, then u: one fast radix sort.
  home <- if (!is.null(strata)) cc[order(strata, method = "radix")]
  for (j in seq_len(nrow(y))) {
    if (is.null(strata)) {
      perm <- with_fixed_rng(job$null[j], sample.int(length(cc)))
      y[j, cc] <- y[j, cc][perm]
    } else {
      with_fixed_rng(job$null[j], {
        from <- cc[order(strata + stats::runif(length(cc)), method = "radix")]
        if (!is.null(offsets)) {
          pick <- sample.int(ncol(offsets))
          flip <- sample(c(-1, 1), ncol(offsets), replace = TRUE)
        }
      })
      y[j, home] <- y[j, from]
      if (!is.null(offsets)) {
        y[j, sam$cells] <- y[j, sam$cells] + (flip * offsets[j, pick])[sam$sample_of]
      }
    }
  }
  y
}

# Memory and time plan of diff_expression(), from the shapes alone.
de_plan <- function(input, n_genes, null_genes, m, block_size, fold_change, threads) {
  n_all <- nrow(input$embedding)
  n_cond <- sum(lengths(input$cells))
  k <- if (is.null(input$samples)) 0L else sum(lengths(input$samples))
  gib <- function(doubles) doubles * 8 / 2^30
  memory <- c(
    landmark_matrices = gib(5 * m^2),
    condition_maps = gib(m * n_cond * (if (k > 0L) 2 else 1) + m * n_all),
    gene_block = gib(block_size * (n_all + m * (k + 3))),
    fold_change = if (isTRUE(fold_change)) gib(n_genes * n_all + m * n_cond) else 0)
  genes_total <- n_genes + null_genes
  flops <- 12 * m^3 + 4 * m^2 * n_cond * (if (k > 0L) 2 else 1) +
    2 * m * n_cond * genes_total * (if (k > 0L) 2 else 1) + 2 * m * (k + 1)^2 * genes_total +
    (if (isTRUE(fold_change)) 2 * (n_all + n_cond) * m * n_genes else 0)
  structure(list(cells = n_all, condition_cells = n_cond, genes = n_genes, null_genes = null_genes,
                 landmarks = m, samples = k, memory_gib = memory, peak_gib = sum(memory),
                 gflop = flops / 1e9, seconds = flops / (threads * 8e9)),
            class = "sceffects_de_plan")
}

#' @export
print.sceffects_de_plan <- function(x, ...) {
  cat(sprintf("<diff_expression plan: %d cells (%d in the two conditions), %d genes + %d null genes, %d landmarks, %s>\n",
              x$cells, x$condition_cells, x$genes, x$null_genes, x$landmarks,
              if (x$samples > 0L) sprintf("sample variance over %d samples (low rank)", x$samples) else "no sample variance"))
  for (nm in names(x$memory_gib)) cat(sprintf("  %-18s %8.3f GiB\n", nm, x$memory_gib[[nm]]))
  cat(sprintf("  %-18s %8.3f GiB (no disk)\n", "peak (approx.)", x$peak_gib))
  cat(sprintf("  work: %.0f GFLOP, about %.0f s\n", x$gflop, x$seconds))
  invisible(x)
}

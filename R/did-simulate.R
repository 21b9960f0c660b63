# A simulated trial shaped like Sade-Feldman et al. 2018 (melanoma, checkpoint blockade;
# GSE120575), with planted effects of known size, for examples, tests, benchmarks and the
# vignette (the real data cannot be downloaded here).

#' Simulate a single-cell pre/post trial
#'
#' Participants `P1`, `P2`, ... biopsied before (`Pre`) and on treatment (`Post`);
#' `n_paired` have both biopsies, of whom `n_treated_paired` respond; the others have one
#' biopsy. Values look like Smart-seq2 log2(TPM + 1): each gene is detected in a
#' gene-specific fraction of cells (about 8% on average), with log-normal-like levels,
#' participant effects, cell-type markers, a planted difference in differences (genes
#' shifted at `Post` in responders only) and a planted time effect (genes shifted at `Post`
#' in both arms). Responders also gain CD8 T cells at `Post`.
#'
#' @param n_genes,n_cells Matrix size (the real data: 55,737 genes, 13,183 cells).
#'   `n_genes` must be at least 170 + 2 x `n_effect_genes` (160 markers, the planted genes
#'   and 10 others); the `random_set` gene set has 30 of the other genes, or all of them
#'   when there are fewer.
#' @param n_paired,n_treated_paired Participants with both visits, and responders among them.
#' @param n_pre_only,n_post_only Participants with one visit.
#' @param n_effect_genes Genes with a planted DiD (half up, half down), and as many with a
#'   planted time effect.
#' @param effect Size of the planted shifts on the log scale.
#' @param counts Also add a `counts` assay (`round(2^logcounts - 1)`), for pseudobulk
#'   (`TRUE` or `FALSE`).
#' @param seed Random seed: `NULL` (default) draws one from R's random number generator,
#'   so `set.seed()` before the call makes it reproducible; a number fixes it. The user's
#'   RNG state is otherwise left untouched.
#' @param visits Visit labels in time order (default `c("Pre", "Post")`). With more than
#'   two, paired participants are seen at every visit, the one-visit participants at the
#'   first or the last, and the planted effects grow linearly from 0 at `onset` to
#'   `effect` at the last (responders' CD8 T cells rise after `onset`).
#' @param onset The last visit without planted effects (default the first visit); visits
#'   before it are pre-treatment visits, for a test of pre-trends.
#' @return A SingleCellExperiment with sparse assay `logcounts`; colData `participant`,
#'   `visit` (factor Pre, Post), `response` (per participant), `lesion_response` (per
#'   biopsy; three participants mix labels), `cell_type`; metadata `truth` (planted
#'   effects per gene) and `gene_sets` (marker and planted sets).
#' @export
#' @examples
#' sce <- simulate_trial(n_genes = 500, n_cells = 2000, seed = 1)
#' sce
#' table(sce$participant, sce$visit)[1:5, ]
simulate_trial <- function(n_genes = 2000, n_cells = 13000, n_paired = 10, n_treated_paired = 3,
                           n_pre_only = 8, n_post_only = 7, n_effect_genes = 40, effect = 1,
                           counts = FALSE, seed = NULL, visits = c("Pre", "Post"), onset = visits[1L]) {
  for (nm in c("n_genes", "n_cells", "n_paired", "n_treated_paired", "n_pre_only", "n_post_only", "n_effect_genes")) {
    check_count(get(nm), nm)
  }
  counts <- check_flag(counts, "counts")
  if (!is.character(visits) || length(visits) < 2L || anyNA(visits) || anyDuplicated(visits)) {
    stop("`visits` must be two or more distinct visit labels in time order, e.g. c(\"Pre\", \"C1\", \"C2\").", call. = FALSE)
  }
  if (!is.character(onset) || length(onset) != 1L || !onset %in% visits[-length(visits)]) {
    stop("`onset` must be one of `visits` other than the last: the last visit without a planted effect.", call. = FALSE)
  }
  if (!is.numeric(effect) || length(effect) != 1L || !is.finite(effect)) {
    stop("`effect` must be a single finite number.", call. = FALSE)
  }
  if (n_treated_paired > n_paired || n_paired - n_treated_paired < 1L || n_treated_paired < 1L) {
    stop("`n_treated_paired` must be between 1 and `n_paired` - 1.", call. = FALSE)
  }
  types <- simulated_cell_types
  n_markers <- simulated_markers
  if (n_genes < simulated_min_genes(n_effect_genes)) {
    stop(sprintf("`n_genes` must be at least %d for the markers and planted effects.",
                 simulated_min_genes(n_effect_genes)), call. = FALSE)
  }
  with_seed(resolve_seed(seed), simulate_trial_data(n_genes, n_cells, n_paired, n_treated_paired, n_pre_only,
                                      n_post_only, n_effect_genes, effect, counts, types, n_markers, visits, onset))
}

simulated_cell_types <- c("CD8 T cell", "CD4 T cell", "Treg", "B cell", "Plasma cell", "NK cell",
                          "Monocyte/Macrophage", "Dendritic cell")
simulated_markers <- 20L

# The fewest genes of a simulated trial: the markers, the DiD and time genes, 10 others.
simulated_min_genes <- function(n_effect_genes) {
  length(simulated_cell_types) * simulated_markers + 2L * n_effect_genes + 10L
}

# The genes with a planted DiD (whatever its size, 0 included): those after the markers.
planted_did_genes <- function(n_effect_genes) {
  sprintf("GENE%05d", length(simulated_cell_types) * simulated_markers + seq_len(n_effect_genes))
}

simulate_trial_data <- function(n_genes, n_cells, n_paired, n_treated_paired, n_pre_only, n_post_only,
                                n_effect_genes, effect, counts, types, n_markers, visits, onset) {

  # Participants and biopsies.
  n_part <- n_paired + n_pre_only + n_post_only
  pid <- paste0("P", seq_len(n_part))
  responder <- c(seq_len(n_paired) <= n_treated_paired, stats::runif(n_pre_only + n_post_only) < 0.35)
  last <- visits[length(visits)]
  biopsies <- rbind(do.call(rbind, lapply(visits, function(v) data.frame(participant = pid[seq_len(n_paired)], visit = v))),
                    data.frame(participant = pid[n_paired + seq_len(n_pre_only)], visit = rep(visits[1L], n_pre_only)),
                    data.frame(participant = pid[n_paired + n_pre_only + seq_len(n_post_only)], visit = rep(last, n_post_only)))
  size <- stats::rlnorm(nrow(biopsies), 0, 0.5)
  per_biopsy <- as.vector(stats::rmultinom(1L, n_cells, size / sum(size)))
  b <- rep(seq_len(nrow(biopsies)), per_biopsy)
  participant <- biopsies$participant[b]
  visit <- factor(biopsies$visit[b], levels = visits)
  resp <- responder[match(participant, pid)]
  # Planted effects are 0 up to `onset`, then ramp linearly to `effect` at the last visit.
  start <- match(onset, visits)
  post <- pmax(as.integer(visit) - start, 0) / (length(visits) - start)

  # Cell types; responders gain CD8 T cells on treatment.
  base_p <- c(0.30, 0.15, 0.06, 0.12, 0.03, 0.07, 0.20, 0.07)
  boosted <- base_p * c(1.8, rep(1, 7)); boosted <- boosted / sum(boosted)
  cell_type <- character(n_cells)
  up <- resp & post > 0
  cell_type[!up] <- sample(types, sum(!up), TRUE, base_p)
  cell_type[up] <- sample(types, sum(up), TRUE, boosted)
  type_index <- match(cell_type, types)

  # Genes: detection logit, level, participant effects; markers, DiD and time genes.
  genes <- sprintf("GENE%05d", seq_len(n_genes))
  marker_of <- rep(NA_integer_, n_genes)
  marker_of[seq_len(length(types) * n_markers)] <- rep(seq_along(types), each = n_markers)
  did_genes <- length(types) * n_markers + seq_len(n_effect_genes)
  time_genes <- max(did_genes, length(types) * n_markers) + seq_len(n_effect_genes)
  did_effect <- numeric(n_genes)
  did_effect[did_genes] <- effect * rep_len(c(1, -1), n_effect_genes)
  time_effect <- numeric(n_genes)
  time_effect[time_genes] <- effect
  logit <- stats::rnorm(n_genes, -2.8, 1.4)
  logit[c(seq_len(length(types) * n_markers), did_genes, time_genes)] <- stats::rnorm(length(types) * n_markers + 2L * n_effect_genes, -0.5, 0.5)
  level <- pmax(stats::rnorm(n_genes, 3, 1), 0.5)
  part_index <- match(participant, pid)
  special <- !is.na(marker_of) | did_effect != 0 | time_effect != 0

  i_list <- vector("list", n_genes)
  x_list <- vector("list", n_genes)
  for (g in seq_len(n_genes)) {
    shift <- 0
    if (special[g]) {
      lg <- logit[g] + if (!is.na(marker_of[g])) 3 * (type_index == marker_of[g]) - 1 else 0
      shift <- did_effect[g] * (resp * post) + time_effect[g] * post +
        if (!is.na(marker_of[g])) 2 * (type_index == marker_of[g]) else 0
      pos <- which(stats::runif(n_cells) < stats::plogis(lg + 0.5 * shift))
      shift <- shift[pos]
    } else {
      pos <- sort(sample.int(n_cells, stats::rbinom(1L, n_cells, stats::plogis(logit[g]))))
    }
    u <- stats::rnorm(n_part, 0, 0.3)
    v <- level[g] + shift + u[part_index[pos]] + stats::rnorm(length(pos), 0, 0.8)
    v <- pmax(v, 0.05)
    i_list[[g]] <- pos - 1L
    x_list[[g]] <- round(v, 4)
  }
  nnz <- lengths(i_list)
  # Built cells x genes (one column per gene), then transposed to genes x cells.
  by_gene <- methods::new("dgCMatrix", i = unlist(i_list, use.names = FALSE), p = c(0L, cumsum(nnz)),
                          x = unlist(x_list, use.names = FALSE), Dim = c(as.integer(n_cells), as.integer(n_genes)))
  rm(i_list, x_list)
  logcounts <- Matrix::t(by_gene)
  rm(by_gene)
  cell_names <- sprintf("cell%06d", seq_len(n_cells))
  dimnames(logcounts) <- list(genes, cell_names)
  assays <- list(logcounts = logcounts)
  if (counts) {
    cnt <- logcounts
    cnt@x <- round(2^cnt@x - 1)
    assays <- list(counts = Matrix::drop0(cnt), logcounts = logcounts)
  }

  response <- ifelse(resp, "Responder", "Non-responder")
  lesion <- response
  mixed <- c(1L, n_treated_paired + 1L, n_treated_paired + 2L)
  for (p in pid[mixed[mixed <= n_paired]]) {
    cells_p <- which(participant == p & visit == last)
    flip <- cells_p[seq_len(floor(length(cells_p) * 0.4))]
    lesion[flip] <- ifelse(lesion[flip] == "Responder", "Non-responder", "Responder")
  }
  cd <- S4Vectors::DataFrame(participant = participant, visit = visit, response = response,
                             lesion_response = lesion, cell_type = cell_type, row.names = cell_names)
  truth <- data.frame(gene = genes, did_effect = did_effect, time_effect = time_effect,
                      marker_of = types[marker_of], stringsAsFactors = FALSE)
  sets <- c(stats::setNames(lapply(seq_along(types), function(k) genes[which(marker_of == k)]),
                            paste0("markers_", gsub("[^A-Za-z0-9]+", "_", types))),
            list(planted_did_up = genes[did_genes[did_effect[did_genes] > 0]],
                 planted_did_down = genes[did_genes[did_effect[did_genes] < 0]],
                 planted_time = genes[time_genes],
                 random_set = sample(genes[!special], min(30L, sum(!special)))))
  SingleCellExperiment::SingleCellExperiment(assays = assays, colData = cd,
                                             metadata = list(truth = truth, gene_sets = sets))
}

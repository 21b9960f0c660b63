# Replicated two-condition single-cell data on a low-dimensional cell-state manifold, with
# planted differences of known location, for examples, tests, the benchmark and the vignette.

#' Simulate replicated two-condition data on a cell-state manifold
#'
#' Cells lie along a branched trajectory: a pseudotime `t` in \[0, 1\] and a branch, mapped
#' smoothly into `n_dims` embedding dimensions (stored as `reducedDim(x, "DM")`) plus a
#' little noise. Each condition has `n_samples` replicates. Planted truths:
#' - abundance: condition 2 has more cells late on the first branch (`t > 0.7`) and fewer
#'   early (`t < 0.25`), in every replicate; one replicate of condition 2 alone carries
#'   an extra cluster of cells off the trajectory (`odd_cluster`);
#' - expression: `n_de_genes` genes shift by `effect` (half up, half down) in condition 2
#'   for `t` in \[0.4, 0.9\], in every replicate; `n_odd_genes` genes shift by `2 * effect`
#'   in one replicate of condition 2 only.
#' Expression is `log1p` of Poisson counts with a smooth mean along `t`, plus per-sample
#' shifts, stored sparse as `logcounts`.
#'
#' @param n_cells,n_genes Size (the murine bone marrow aging set: 8,090 cells, 16,285 genes).
#' @param n_dims Embedding dimensions.
#' @param n_samples Replicates per condition.
#' @param n_de_genes,n_odd_genes Planted genes (see Details).
#' @param effect Size of the planted shifts (log scale of the Poisson mean).
#' @param conditions Names of the two conditions.
#' @param seed Random seed: `NULL` (default) draws one from R's random number generator,
#'   so `set.seed()` before the call makes it reproducible; a number fixes it. The user's
#'   RNG state is otherwise left untouched.
#' @return A SingleCellExperiment: assay `logcounts` (dgCMatrix), reducedDim `DM`,
#'   colData `condition`, `sample`, `t`, `branch`, `odd_cluster`; rowData `de`
#'   (planted in all replicates), `odd_replicate` (planted in one), `effect`.
#' @export
#' @examples
#' sce <- simulate_manifold(n_cells = 500, n_genes = 50, seed = 1)
#' table(sce$condition, sce$sample)
simulate_manifold <- function(n_cells = 3000, n_genes = 500, n_dims = 10, n_samples = 3,
                              n_de_genes = 20, n_odd_genes = 20, effect = 1,
                              conditions = c("young", "old"), seed = NULL) {
  for (nm in c("n_cells", "n_genes", "n_dims", "n_samples", "n_de_genes", "n_odd_genes")) check_count(get(nm), nm)
  if (n_dims < 2L) stop("`n_dims` must be at least 2.", call. = FALSE)
  if (n_samples < 2L) stop("`n_samples` must be at least 2.", call. = FALSE)
  if (n_de_genes + n_odd_genes > n_genes) stop("`n_genes` must be at least `n_de_genes + n_odd_genes`.", call. = FALSE)
  if (n_cells < 20L * n_samples) stop("`n_cells` must be at least 20 per sample.", call. = FALSE)
  if (!is.character(conditions) || length(conditions) != 2L || conditions[1] == conditions[2]) {
    stop("`conditions` must be two different names.", call. = FALSE)
  }
  with_seed(resolve_seed(seed), simulate_manifold_data(n_cells, n_genes, n_dims, n_samples, n_de_genes,
                                         n_odd_genes, effect, conditions))
}

simulate_manifold_data <- function(n_cells, n_genes, n_dims, n_samples, n_de_genes, n_odd_genes,
                                   effect, conditions) {
  condition <- rep(conditions, length.out = n_cells)
  replicate <- stats::ave(seq_len(n_cells), condition, FUN = function(i) rep_len(seq_len(n_samples), length(i)))
  sample <- paste(condition, replicate, sep = "_")
  second <- condition == conditions[2L]
  odd_sample <- paste(conditions[2L], 1L, sep = "_")

  # Pseudotime: condition 2 shifted late; the odd replicate's extra cluster.
  t <- ifelse(second, stats::rbeta(n_cells, 1.6, 1), stats::rbeta(n_cells, 1, 1.6))
  branch <- stats::rbinom(n_cells, 1L, ifelse(t > 0.35, 0.4, 0))
  odd_cluster <- sample == odd_sample & stats::runif(n_cells) < 0.3
  t[odd_cluster] <- stats::rnorm(sum(odd_cluster), 0.45, 0.02)
  branch[odd_cluster] <- 1L
  t <- pmin(pmax(t, 0), 1)

  # A smooth branched curve in n_dims dimensions.
  split <- pmax(t - 0.35, 0) * (2 * branch - 1)
  split[odd_cluster] <- stats::rnorm(sum(odd_cluster), 0.5, 0.02)
  basis <- cbind(t, split, sin(pi * t), cos(2 * pi * t) * 0.3, split^2)
  mixing <- matrix(stats::rnorm(ncol(basis) * n_dims), ncol(basis), n_dims)
  embedding <- basis %*% mixing + matrix(stats::rnorm(n_cells * n_dims, sd = 0.02), n_cells, n_dims)
  dimnames(embedding) <- list(paste0("cell", seq_len(n_cells)), paste0("DC", seq_len(n_dims)))

  # Expression: smooth log means along t and branch, sample shifts, planted effects.
  level <- stats::runif(n_genes, -1.5, 1.5)
  amplitude <- stats::rexp(n_genes, 1)
  phase <- stats::runif(n_genes, 0, 2 * pi)
  branch_effect <- stats::rnorm(n_genes, 0, 0.5)
  sample_shift <- matrix(stats::rnorm(n_genes * length(unique(sample)), 0, 0.05), n_genes,
                         dimnames = list(NULL, sort(unique(sample))))
  de <- seq_len(n_genes) <= n_de_genes
  odd <- seq_len(n_genes) > n_de_genes & seq_len(n_genes) <= n_de_genes + n_odd_genes
  sign <- ifelse(seq_len(n_genes) %% 2 == 0, -1, 1)
  window <- second & t >= 0.4 & t <= 0.9
  in_odd <- sample == odd_sample
  # Blocks of genes, so that no dense genes x cells matrix is ever held whole.
  block <- function(g) {
    log_mean <- level[g] + amplitude[g] * sin(sweep(outer(rep(1, length(g)), 2 * pi * t), 1, phase[g], "+")) +
      outer(branch_effect[g], branch * pmax(t - 0.35, 0) * 2) + sample_shift[g, sample, drop = FALSE]
    log_mean[de[g], window] <- log_mean[de[g], window] + effect * sign[g][de[g]]
    log_mean[odd[g], in_odd] <- log_mean[odd[g], in_odd] + 2 * effect * sign[g][odd[g]]
    counts <- matrix(stats::rpois(length(log_mean), exp(log_mean)), length(g), n_cells)
    Matrix::drop0(methods::as(log1p(counts), "CsparseMatrix"))
  }
  logcounts <- do.call(rbind, lapply(split(seq_len(n_genes), ceiling(seq_len(n_genes) / 1000)), block))
  dimnames(logcounts) <- list(sprintf("gene%05d", seq_len(n_genes)), rownames(embedding))

  sce <- SingleCellExperiment::SingleCellExperiment(
    assays = list(logcounts = logcounts),
    colData = S4Vectors::DataFrame(condition = condition, sample = sample, t = t, branch = branch,
                                   odd_cluster = odd_cluster, row.names = rownames(embedding)),
    rowData = S4Vectors::DataFrame(de = de, odd_replicate = odd, effect = ifelse(de | odd, sign * effect * (1 + odd), 0)))
  SingleCellExperiment::reducedDim(sce, "DM") <- embedding
  sce
}

# Cells for checking differential abundance (tests and inst/bench/da.R; issue 15): two
# conditions of `n_samples` replicates with `n_per_sample` cells each, drawn by weighted
# resampling of a pool from the base distribution. Weights: `fold` in the planted region in
# every replicate of B, `odd_fold` in a second region in replicate B1 only, and for each
# replicate its own smooth abundance noise (sd about `noise` on the log scale).
# `shape`: "isotropic" (a standard Gaussian in `n_dims` dimensions; planted region
# x1 > q(0.88), odd region x2 < q(0.08)) or "curved" (a 2-D sheet (t, s) bent smoothly into
# `n_dims` dimensions plus noise; planted region a disc of 12% of the sheet around
# (0.5, 0.5), odd region a disc of radius 0.12 around (0.15, 0.8)). Returns the embedding, condition, sample and the region of each cell.
simulate_da_cells <- function(shape = c("isotropic", "curved"), n_dims = 10L, n_per_sample = 800L, n_samples = 3L,
                              fold = 3, odd_fold = 5, noise = 0.25, size_factor = c(1, 1), seed = 1L) {
  shape <- match_choice(shape, "shape")
  with_seed(seed, {
    mixing <- matrix(stats::rnorm(6 * n_dims), 6, n_dims) / sqrt(2)
    draw_latent <- function(n) {
      if (shape == "isotropic") return(matrix(stats::rnorm(n * n_dims), n, n_dims))
      cbind(stats::runif(n), stats::runif(n))
    }
    embed <- function(z) {
      if (shape == "isotropic") return(z)
      t <- z[, 1L]; s <- z[, 2L]
      basis <- cbind(3 * t, 2 * s, 1.5 * sin(pi * t), 1.2 * cos(pi * t) * s, 2 * t^2, sin(2 * pi * s) * 0.8)
      basis %*% mixing + matrix(stats::rnorm(nrow(z) * n_dims, sd = 0.03), nrow(z), n_dims)
    }
    region <- function(z) {
      if (shape == "isotropic") {
        list(planted = z[, 1L] > stats::qnorm(0.88), odd = z[, 2L] < stats::qnorm(0.08))
      } else {
        disc <- function(t, s, r) (z[, 1L] - t)^2 + (z[, 2L] - s)^2 < r^2
        list(planted = disc(0.5, 0.5, sqrt(0.12 / pi)), odd = disc(0.15, 0.8, 0.12))
      }
    }
    smooth_noise <- function(z) {
      a <- stats::rnorm(3)
      u <- if (shape == "isotropic") z[, 1:2, drop = FALSE] else 2 * z - 1
      v <- a[1L] * sin(1.3 * u[, 1L] + a[3L]) + a[2L] * cos(1.1 * u[, 2L] - a[3L])
      noise * v / sqrt(mean(a[1:2]^2) + 1e-3) / sqrt(2)
    }
    parts <- list()
    for (cond in c("A", "B")) {
      for (r in seq_len(n_samples)) {
        n <- round(n_per_sample * size_factor[if (cond == "A") 1L else 2L])
        z <- draw_latent(10L * n)
        reg <- region(z)
        logw <- smooth_noise(z) + log(fold) * (cond == "B" & reg$planted) +
          log(odd_fold) * (cond == "B" & r == 1L & reg$odd)
        keep <- sample.int(nrow(z), n, prob = exp(logw))
        parts[[length(parts) + 1L]] <- list(z = z[keep, , drop = FALSE], condition = cond,
                                            sample = paste0(cond, r), planted = reg$planted[keep],
                                            odd = reg$odd[keep])
      }
    }
    z <- do.call(rbind, lapply(parts, `[[`, "z"))
    emb <- embed(z)
    dimnames(emb) <- list(paste0("cell", seq_len(nrow(emb))), paste0("PC", seq_len(ncol(emb))))
    sizes <- vapply(parts, function(p) nrow(p$z), 0L)
    list(embedding = emb, condition = rep(vapply(parts, `[[`, "", "condition"), sizes),
         sample = rep(vapply(parts, `[[`, "", "sample"), sizes),
         planted = unlist(lapply(parts, `[[`, "planted")), odd = unlist(lapply(parts, `[[`, "odd")))
  })
}

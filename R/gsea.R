# Preranked gene-set enrichment. The core scores sets, draws the permutation null and runs
# the multilevel ladders; this file checks inputs, ranks genes, matches sets, chooses the
# p-value estimator set by set and builds the table.

#' Preranked gene-set enrichment analysis
#'
#' GSEA on a ranking of genes: the weighted Kolmogorov-Smirnov enrichment score of each set
#' (Subramanian et al. 2005), p-values from gene-label permutations, and, for sets whose
#' permutation p-value is too coarse, an adaptive multilevel Monte Carlo estimate that
#' reaches p-values far below `1 / nperm` (Korotkevich et al. 2021, the method of fgsea's
#' `fgseaMultilevel()`). The p-value is conditional on the sign of the score, as in GSEA and
#' fgsea: for a positive score, P(ES >= es | ES >= 0) under the null.
#'
#' Genes are ranked by decreasing `stats`; tied statistics are ordered by gene name, so the
#' result does not depend on the input order (a message gives the fraction of tied genes).
#' A gene's weight in the running sum is `abs(stat)^weight` (`weight = 0`: the classic
#' unweighted Kolmogorov-Smirnov statistic); the score does not depend on the scale of
#' `stats`, and weights are computed from `stats / max(abs(stats))` so that no scale
#' overflows. NES divides the score by the mean null score
#' of the same sign, for the set's size. Sets of the same size share their null draws.
#'
#' Each set's p-value comes from whichever estimator has the smaller expected error:
#' the permutation estimate `(1 + #{null as extreme}) / (1 + #{null of that sign})`, or the
#' multilevel estimate. `log2err` is the standard deviation of the estimate's log2.
#' Below `eps` the ladder stops and `p_value` is an upper bound, `eps` itself (`p_method`
#' `"multilevel bound"`, `log2err` `NA`). Results are the same for a `seed` whatever
#' `threads` is.
#'
#' @param stats Named numeric vector of gene statistics (e.g. signed -log10 p or t); names
#'   are gene identifiers, unique, and values finite.
#' @param sets Named list of character vectors of genes (see [read_gmt()]). Given in
#'   fgsea's order, `gsea(sets, stats)`, the two are recognised by type and swapped, with a
#'   message.
#' @param min_size,max_size Sets with fewer or more genes found in `stats` are not tested;
#'   they are reported with `NA` p-values and a `reason`. `min_size` is at most the number
#'   of ranked genes; `max_size = Inf` sets no upper bound.
#' @param weight Exponent of the gene weights `abs(stat)^weight`.
#' @param nperm Number of permutations of the simple estimate (>= 10). The null keeps
#'   `nperm` scores per distinct set size: a request beyond the available memory is refused.
#' @param eps Smallest p-value the multilevel method resolves (0 < eps < 1).
#' @param sample_size Accuracy of the multilevel estimate, as fgsea's `sampleSize`: the
#'   particles per level of a ladder that halves the probability at each level (odd; more
#'   gives smaller errors). The ladder keeps the top quarter of about 1.5 times as many
#'   particles (149 for 101), for the same error in about 3/4 of the work.
#' @param seed Seed of the permutations; by default drawn from R's random number generator
#'   (so `set.seed()` makes the call reproducible).
#' @param threads Number of threads.
#' @param BPPARAM `NULL` (run here) or a BiocParallel parameter object: the multilevel
#'   estimates (the slow part for small p-values) are spread over its workers, in chunks of
#'   set sizes; results are the same for a `seed` whatever the workers.
#' @param verbose Show messages (ties, members not in the ranking, sets out of bounds)?
#'   `FALSE`, or `options(sceffects.verbose = FALSE)` for the session, silences them.
#' @return A results table with one row per set: `set`, `size` (genes found), `es`, `nes`,
#'   `p_value`, `fdr` (Benjamini-Hochberg over the tested sets), `log2err`, `p_method`,
#'   `leading_edge` (a list of genes), `n_genes` (genes in the set) and `reason` (why a set
#'   was not tested), ordered by p-value. Attribute `report`: genes missing from the
#'   ranking and the tie fraction.
#' @export
#' @examples
#' set.seed(1)
#' genes <- paste0("g", 1:2000)
#' stats <- setNames(rnorm(2000), genes)
#' sets <- list(up = genes[1:40], random = sample(genes, 60))
#' stats[1:40] <- stats[1:40] + 1.5
#' gsea(stats, sets, seed = 1)
gsea <- function(stats, sets, min_size = 15, max_size = 500, weight = 1, nperm = 1000,
                 eps = 1e-50, sample_size = 101, seed = NULL, threads = NULL, BPPARAM = NULL,
                 verbose = getOption("sceffects.verbose", TRUE)) {
  local_verbose(verbose)
  threads <- resolve_threads(threads)
  check_bpparam(BPPARAM)
  if (is.list(stats) && is.numeric(sets)) {
    say("gsea(): `stats` is a list of sets and `sets` a numeric ranking (fgsea's order, fgsea(pathways, stats)): using them the other way round.")
    swapped <- stats
    stats <- sets
    sets <- swapped
  }
  check_ranking(stats)
  check_gene_sets(sets)
  # A set can have at most every ranked gene: larger sizes are a mistake, not a bound.
  min_size <- check_count(min_size, "min_size", max = length(stats))
  if (identical(max_size, Inf)) max_size <- length(stats)
  max_size <- check_count(max_size, "max_size")
  if (max_size < min_size) stop("`max_size` must be at least `min_size`.", call. = FALSE)
  if (!is.numeric(weight) || length(weight) != 1L || !is.finite(weight) || weight < 0) {
    stop("`weight` must be a single number >= 0.", call. = FALSE)
  }
  nperm <- check_count(nperm, "nperm", min = 10)
  if (!is.numeric(eps) || length(eps) != 1L || !(eps > 0 && eps < 1)) {
    stop("`eps` must be a single number between 0 and 1.", call. = FALSE)
  }
  sample_size <- check_count(sample_size, "sample_size")
  if (sample_size < 3L) stop("`sample_size` must be at least 3.", call. = FALSE)
  sample_size <- sample_size + (sample_size %% 2L == 0L)
  seed <- resolve_seed(seed)

  ranking <- rank_genes(stats, weight)
  matched <- match_sets(sets, ranking$genes, min_size, max_size)
  check_null_memory(nperm, matched)
  table <- enrichment_table(ranking, matched, nperm, eps, sample_size, seed, threads, BPPARAM)
  table <- table[order(table$p_value, -abs(table$nes), table$set, na.last = TRUE), ]
  report <- list(n_genes = length(stats), tie_fraction = ranking$tie_fraction,
                 missing_genes = sum(matched$n_genes - matched$size), sets = matched[, c("set", "n_genes", "size")])
  # The shared vocabulary: a set is the feature of a GSEA table, its NES the estimate
  # (`set` and `nes` stay, as fgsea users look for them).
  table$feature <- table$set
  table$estimate <- table$nes
  results_table(table, "preranked GSEA", extra = list(report = report, estimate_label = "nes"))
}

# The permutation null keeps `nperm` scores (doubles) for each distinct size tested.
check_null_memory <- function(nperm, matched) {
  n_sizes <- length(unique(matched$size[is.na(matched$reason)]))
  check_memory(as.numeric(nperm) * n_sizes * 8,
               sprintf("The permutation null (%s permutations x %d set sizes)", format(nperm, big.mark = ","), n_sizes),
               "Use a smaller `nperm`: the multilevel method resolves small p-values without more permutations.")
}

check_ranking <- function(stats) {
  if (!is.numeric(stats) || is.null(names(stats)) || length(stats) < 2L) {
    stop("`stats` must be a named numeric vector of gene statistics.", call. = FALSE)
  }
  if (anyNA(names(stats)) || any(names(stats) == "")) stop("`stats` has genes without names.", call. = FALSE)
  if (any(!is.finite(stats))) {
    stop(sprintf("`stats` has %d missing or infinite values; remove them first.", sum(!is.finite(stats))), call. = FALSE)
  }
  dup <- unique(names(stats)[duplicated(names(stats))])
  if (length(dup)) {
    stop(sprintf("`stats` has duplicated gene names (%s); keep one statistic per gene.",
                 paste(utils::head(dup, 3), collapse = ", ")), call. = FALSE)
  }
}

check_gene_sets <- function(sets, arg = "sets") {
  if (!is.list(sets) || length(sets) == 0L || is.null(names(sets)) || anyNA(names(sets)) ||
      any(names(sets) == "") || anyDuplicated(names(sets))) {
    stop(sprintf("`%s` must be a non-empty list of character vectors with unique names.", arg), call. = FALSE)
  }
  if (!all(vapply(sets, is.character, TRUE))) {
    stop(sprintf("Every element of `%s` must be a character vector of genes.", arg), call. = FALSE)
  }
}

# Genes in decreasing order of their statistic, ties by name; weights |stat|^weight.
# The enrichment score and its null divide the weights by their sum over the set, so they
# do not depend on the scale of `stats`: weights are taken of stats / max|stats|, which
# neither overflows (stats near 1e308) nor underflows (tiny stats with a large `weight`).
rank_genes <- function(stats, weight) {
  ord <- order(-stats, names(stats), method = "radix")
  ranked <- stats[ord]
  tied <- duplicated(ranked) | duplicated(ranked, fromLast = TRUE)
  tie_fraction <- mean(tied)
  if (tie_fraction > 0) {
    say(sprintf("%.2f%% of the genes have tied statistics; they are ranked by gene name.", 100 * tie_fraction))
  }
  scale <- max(abs(ranked))
  scaled <- if (scale > 0) unname(ranked) / scale else unname(ranked)
  list(genes = names(ranked), stats = unname(ranked), weights = abs(scaled)^weight,
       tie_fraction = tie_fraction)
}

# Sets matched to the ranking: rank positions (0-based, sorted) and why a set is not tested.
match_sets <- function(sets, genes, min_size, max_size) {
  # One match() over all members (hashing the ranking once, not once per set), then one
  # sort by set and position and one split: no function call per set.
  members <- unlist(sets, use.names = FALSE)
  set_id <- rep.int(seq_along(sets), lengths(sets))
  position <- match(members, genes) - 1L
  # A gene listed twice in a set counts once (also when it is not in the ranking).
  repeated <- duplicated(set_id * (length(members) + 1) + match(members, members))
  n_genes <- tabulate(set_id[!repeated], nbins = length(sets))
  found <- !repeated & !is.na(position)
  set_id <- set_id[found]
  position <- position[found]
  o <- order(set_id, position, method = "radix")
  groups <- structure(set_id[o], levels = as.character(seq_along(sets)), class = "factor")
  positions <- split(position[o], groups)
  size <- lengths(positions)
  reason <- ifelse(size < min_size, sprintf("%d genes found, fewer than min_size", size),
                   ifelse(size > max_size, sprintf("%d genes found, more than max_size", size), NA_character_))
  reason[size >= length(genes)] <- "every ranked gene in the set"
  out <- data.frame(set = names(sets), n_genes = n_genes, size = size,
                    reason = reason, stringsAsFactors = FALSE)
  out$positions <- positions
  missing <- sum(out$n_genes - out$size)
  if (missing > 0L) say(sprintf("%d gene-set members are not in the ranking.", missing))
  if (any(!is.na(reason))) {
    say(sprintf("%d of %d sets are outside the size bounds and are not tested (see `reason`).",
                    sum(!is.na(reason)), nrow(out)))
  }
  out
}

enrichment_table <- function(ranking, matched, nperm, eps, sample_size, seed, threads, BPPARAM = NULL) {
  n <- nrow(matched)
  scores <- rs_gsea_scores(ranking$weights, matched$positions)
  out <- data.frame(set = matched$set, size = matched$size, es = nan_to_na(scores$es), nes = NA_real_,
                    p_value = NA_real_, fdr = NA_real_, log2err = NA_real_, p_method = NA_character_,
                    stringsAsFactors = FALSE)
  out$leading_edge <- leading_edges(ranking$genes, matched$positions, scores)
  out$n_genes <- matched$n_genes
  out$reason <- matched$reason
  out$reason[is.na(out$reason) & is.na(out$es)] <- "all genes of the set have weight 0"
  tested <- which(is.na(out$reason))
  if (length(tested) == 0L) return(out)
  null <- rs_gsea_permutation(ranking$weights, matched$size[tested], out$es[tested], nperm, seed, threads)
  few <- null$n_same_sign < 10
  out$reason[tested[few]] <- "fewer than 10 null scores of this sign; increase nperm"
  ok <- !few
  t <- tested[ok]
  out$nes[t] <- out$es[t] / abs(null$mean_same_sign[ok])
  out$p_value[t] <- (1 + null$n_as_extreme[ok]) / (1 + null$n_same_sign[ok])
  out$log2err[t] <- sqrt(trigamma(null$n_as_extreme[ok] + 1) - trigamma(null$n_same_sign[ok] + 2)) / log(2)
  out$p_method[t] <- "permutation"
  deeper <- t[multilevel_error(out$p_value[t], sample_size) < out$log2err[t]]
  if (length(deeper)) {
    sign_fraction <- (null$n_same_sign[ok] + 1) / (nperm + 1)
    out[deeper, c("p_value", "log2err", "p_method")] <-
      multilevel_p(ranking$weights, out[deeper, ], sign_fraction[match(deeper, t)], eps, sample_size, seed,
                   threads, BPPARAM)
  }
  out$fdr <- fdr_bh(out$p_value)
  out
}

# Expected standard deviation of log2 of a multilevel estimate of `p`, as for a ladder that
# halves p at each level with `sample_size` particles (each level's surviving fraction a
# Beta((s + 1) / 2, (s + 1) / 2) order statistic); the core's ladder is as accurate per unit
# of log p and reports its own error.
multilevel_error <- function(p, sample_size) {
  sqrt((floor(-log2(p)) + 1) * (trigamma((sample_size + 1) / 2) - trigamma(sample_size + 1))) / log(2)
}

# Multilevel p-values, conditional on the sign (divided by the fraction of null scores of
# that sign), in chunks of set sizes so that Ctrl-C is honoured between them, or spread over
# the workers of `BPPARAM` (a set's estimate does not depend on the chunk it is in).
multilevel_p <- function(weights, rows, sign_fraction, eps, sample_size, seed, threads, BPPARAM = NULL) {
  size_groups <- unname(split(seq_len(nrow(rows)), ceiling(match(rows$size, sort(unique(rows$size))) / 8)))
  sizes <- rows$size
  es <- rows$es
  floor_p <- eps * min(sign_fraction)
  parts <- run_chunks(size_groups, function(i) {
    rs_gsea_multilevel(weights, sizes[i], es[i], sample_size, floor_p, seed, threads)
  }, BPPARAM, "Multilevel GSEA")
  log_p <- log_var <- numeric(nrow(rows))
  beyond <- logical(nrow(rows))
  for (k in seq_along(size_groups)) {
    i <- size_groups[[k]]
    log_p[i] <- parts[[k]]$log_p
    log_var[i] <- parts[[k]]$log_var
    beyond[i] <- parts[[k]]$beyond
  }
  p <- pmin(1, exp(log_p) / sign_fraction)
  # Beyond the last level p is only bounded: by eps when the ladder stopped there.
  p[beyond] <- pmax(p[beyond], eps)
  err <- ifelse(beyond, NA_real_, sqrt(log_var) / log(2))
  data.frame(p_value = p, log2err = err, p_method = ifelse(beyond, "multilevel bound", "multilevel"),
             stringsAsFactors = FALSE)
}

leading_edges <- function(genes, positions, scores) {
  lapply(seq_along(positions), function(k) {
    hit <- scores$extreme_hit[k]
    if (is.nan(hit)) return(character())
    pos <- positions[[k]] + 1L
    idx <- if (scores$es[k] >= 0) seq_len(hit + 1) else seq.int(hit + 1, length(pos))
    genes[pos[idx]]
  })
}

#' GSEA of a difference-in-differences, for several gene-set collections
#'
#' Runs one [did_table()] over all genes, ranks them once, and tests every collection
#' against that ranking with [gsea()]; sctrial recomputes the DiD for each collection.
#'
#' Rankings: `"signed_log_p"` is `sign(estimate) * -log10(p)` (from the table's log
#' p-value, so it does not saturate at tiny p), `"t"` the DiD t statistic, `"estimate"`
#' the DiD estimate. Genes with an `NA` statistic (degenerate genes) are left out of the
#' ranking, with a message.
#'
#' @inheritParams did_table
#' @param collections Named list of collections; each a named list of gene sets or the
#'   path of a GMT file.
#' @param ranking `"signed_log_p"`, `"t"` or `"estimate"`.
#' @param ... Further arguments of [did_table()], by name (`aggregate`, `celltype`,
#'   `covariates`, `vcov`, `BPPARAM`, ...); any other argument is an error. `BPPARAM` also
#'   spreads the multilevel step of the enrichment.
#' @param min_size,max_size,weight,nperm,eps,seed As in [gsea()]. FDR is computed within
#'   each collection.
#' @param threads Number of threads, for the DiD and the enrichment.
#' @param verbose Show messages (of the DiD, and genes left out of the ranking)? Default
#'   `getOption("sceffects.verbose", TRUE)`.
#' @return A results table as [gsea()] with a first column `collection`; attributes
#'   `did` (the DiD table) and `ranking` (the named statistics).
#' @export
#' @examples
#' sce <- simulate_trial(n_genes = 400, n_cells = 3000, seed = 1)
#' design <- trial_design("participant", "visit", "response", "Responder", "Non-responder",
#'                        baseline = "Pre", followup = "Post")
#' sets <- S4Vectors::metadata(sce)$gene_sets
#' res <- gsea_did(sce, design, collections = list(simulated = sets), min_size = 5, seed = 1)
#' res[, c("collection", "set", "size", "nes", "p_value", "fdr")]
gsea_did <- function(x, design, collections, ranking = c("signed_log_p", "t", "estimate"), ...,
                     min_size = 15, max_size = 500, weight = 1, nperm = 1000, eps = 1e-50, seed = NULL,
                     threads = NULL, verbose = getOption("sceffects.verbose", TRUE)) {
  ranking <- match_choice(ranking, "ranking")
  threads <- resolve_threads(threads)
  verbose <- check_flag(verbose, "verbose")
  check_did_dots(list(...), "gsea_did")
  collections <- resolve_collections(collections)
  did <- did_table(x, design, ..., threads = threads, verbose = verbose)
  stat <- switch(ranking,
                 signed_log_p = sign(did$estimate) * -did$log_p / log(10),
                 t = did$statistic,
                 estimate = did$estimate)
  keep <- is.finite(stat)
  check_did_ranking(did, keep)
  if (any(!keep)) say(sprintf("%d genes without a DiD statistic are left out of the ranking.", sum(!keep)), verbose)
  stats <- stats::setNames(stat[keep], did$feature[keep])
  seed <- resolve_seed(seed)
  tables <- lapply(names(collections), function(nm) {
    res <- gsea(stats, collections[[nm]], min_size = min_size, max_size = max_size, weight = weight,
                nperm = nperm, eps = eps, seed = seed, threads = threads, BPPARAM = list(...)$BPPARAM,
                verbose = verbose)
    cbind(collection = rep(nm, nrow(res)), as.data.frame(res), stringsAsFactors = FALSE)
  })
  out <- do.call(rbind, tables)
  results_table(out, sprintf("GSEA of a difference-in-differences (ranked by %s)", ranking),
              extra = list(did = did, ranking = stats, estimate_label = "nes"))
}

# The `...` of gsea_did() go to did_table() by name; unnamed or unknown ones are errors (an
# unnamed one would silently become `features`).
check_did_dots <- function(dots, call_name) {
  if (!length(dots)) return(invisible())
  # One DiD per gene to rank: an event study's several terms are not a ranking.
  allowed <- setdiff(names(formals(did_table)), c("x", "design", "threads", "verbose", "visits"))
  nms <- names(dots) %||% rep("", length(dots))
  bad <- !nzchar(nms) | !nms %in% allowed
  if (any(bad)) do.call(check_dots_used, c(dots[bad], list(call_name = call_name)))
  if (!is.null(dots$BPPARAM)) check_bpparam(dots$BPPARAM)
  invisible()
}

# A ranking needs genes with a DiD: say why there are none.
check_did_ranking <- function(did, keep) {
  if (any(keep)) return(invisible())
  if (all(did$n_units == 0L)) {
    stop("No participant is seen at both visits (the design's `baseline` and `followup`) among the analysed cells, so there is no DiD to rank: check the visit labels of the design and colData(x).",
         call. = FALSE)
  }
  reasons <- unique(did$reason[!is.na(did$reason)])
  stop(sprintf("No gene has a DiD statistic to rank%s.",
               if (length(reasons)) sprintf(" (%s)", name_list(reasons, 3L)) else ""), call. = FALSE)
}

resolve_collections <- function(collections) {
  if (!is.list(collections) || length(collections) == 0L || is.null(names(collections)) ||
      any(names(collections) == "") || anyDuplicated(names(collections))) {
    stop("`collections` must be a named list of gene-set lists or GMT file paths.", call. = FALSE)
  }
  lapply(stats::setNames(names(collections), names(collections)), function(nm) {
    col <- collections[[nm]]
    if (is.character(col) && length(col) == 1L) col <- read_gmt(col)
    check_gene_sets(col, sprintf("collections$%s", nm))
    col
  })
}

#' Read and write gene sets in GMT format
#'
#' GMT (Broad's gene matrix transposed format): one set per line, tab-separated: the set's
#' name, a description, then its genes. Empty fields are dropped.
#'
#' @param path File path (`read_gmt()` also reads gzipped files).
#' @return `read_gmt()`: a named list of character vectors, with attribute `description`.
#'   `write_gmt()`: `path`, invisibly.
#' @export
#' @examples
#' sets <- list(setA = c("TP53", "MDM2"), setB = c("CD3E", "CD4", "CD8A"))
#' path <- tempfile(fileext = ".gmt")
#' write_gmt(sets, path)
#' read_gmt(path)
read_gmt <- function(path) {
  if (!is.character(path) || length(path) != 1L || !file.exists(path)) {
    stop("`path` must be the path of an existing GMT file.", call. = FALSE)
  }
  lines <- readLines(path, warn = FALSE)
  lines <- lines[nzchar(trimws(lines))]
  fields <- strsplit(lines, "\t", fixed = TRUE)
  short <- which(lengths(fields) < 2L)
  if (length(short)) {
    stop(sprintf("`path` is not a GMT file: line %d has no tab-separated name and description.", short[1]), call. = FALSE)
  }
  names <- vapply(fields, `[[`, "", 1L)
  dup <- unique(names[duplicated(names)])
  if (length(dup)) stop(sprintf("`path` has duplicated set names: %s.", paste(utils::head(dup, 3), collapse = ", ")), call. = FALSE)
  sets <- lapply(fields, function(f) {
    genes <- f[-(1:2)]
    genes[nzchar(genes)]
  })
  names(sets) <- names
  attr(sets, "description") <- stats::setNames(vapply(fields, `[[`, "", 2L), names)
  sets
}

#' @rdname read_gmt
#' @param sets Named list of character vectors of genes.
#' @param description Optional descriptions, one per set (default: the attribute
#'   `description` of `sets`, else `NA`).
#' @export
write_gmt <- function(sets, path, description = attr(sets, "description")) {
  check_gene_sets(sets)
  if (!is.character(path) || length(path) != 1L) stop("`path` must be a single file path.", call. = FALSE)
  if (is.null(description)) description <- rep("NA", length(sets))
  if (length(description) != length(sets)) stop("`description` must have one entry per set.", call. = FALSE)
  description <- as.character(unlist(description, use.names = FALSE))
  description[is.na(description)] <- "NA"
  check_gmt_fields(names(sets), "names(sets)")
  check_gmt_fields(description, "`description`")
  for (nm in names(sets)) check_gmt_fields(sets[[nm]], sprintf("`sets`$%s", nm), allow_na = FALSE)
  lines <- vapply(seq_along(sets), function(k) {
    paste(c(names(sets)[k], description[[k]], sets[[k]]), collapse = "\t")
  }, "")
  writeLines(lines, path)
  invisible(path)
}

# GMT fields are separated by tabs and sets by newlines: a field holding either (or a
# missing gene) would not read back as written.
check_gmt_fields <- function(v, what, allow_na = TRUE) {
  if (!allow_na && anyNA(v)) {
    stop(sprintf("%s has a missing (NA) gene name: remove it before writing.", what), call. = FALSE)
  }
  bad <- unique(v[!is.na(v) & grepl("[\t\r\n]", v)])
  if (length(bad)) {
    stop(sprintf("%s has entries with a tab or newline, which GMT cannot hold: %s.", what,
                 name_list(encodeString(bad))), call. = FALSE)
  }
  empty <- !is.na(v) & !nzchar(v)
  if (!allow_na && any(empty)) {
    stop(sprintf("%s has an empty gene name: remove it before writing.", what), call. = FALSE)
  }
  invisible()
}

#' Running enrichment score of one gene set
#'
#' The GSEA running sum of `set` over the ranking of `stats` (genes ranked as in [gsea()]),
#' with the set's genes as ticks, the enrichment score as a dashed line and the leading
#' edge shaded.
#'
#' @inheritParams gsea
#' @param set Character vector of the set's genes.
#' @param title Plot title.
#' @return A ggplot object.
#' @export
#' @examples
#' set.seed(1)
#' stats <- setNames(rnorm(1000), paste0("g", 1:1000))
#' stats[1:30] <- stats[1:30] + 2
#' plot_enrichment(stats, paste0("g", 1:30), title = "planted set")
plot_enrichment <- function(stats, set, weight = 1, title = NULL) {
  check_ranking(stats)
  if (!is.character(set) || length(set) == 0L) stop("`set` must be a character vector of genes.", call. = FALSE)
  ranking <- suppressMessages(rank_genes(stats, weight))
  hit <- ranking$genes %in% set
  k <- sum(hit)
  if (k == 0L || k == length(hit)) stop("`set` must contain some, but not all, of the ranked genes.", call. = FALSE)
  if (sum(ranking$weights[hit]) <= 0) stop("All genes of `set` have weight 0.", call. = FALSE)
  step <- ifelse(hit, ranking$weights / sum(ranking$weights[hit]), -1 / (length(hit) - k))
  running <- cumsum(step)
  es <- if (max(running) >= -min(running)) max(running) else min(running)
  peak <- which(running == es)[1]
  edge <- if (es >= 0) c(1, peak) else c(peak, length(hit))
  curve <- data.frame(rank = seq_along(running), running = running)
  ticks <- data.frame(rank = which(hit))
  low <- min(running)
  span <- max(running) - low
  ggplot2::ggplot(curve, ggplot2::aes(x = .data$rank, y = .data$running)) +
    ggplot2::annotate("rect", xmin = edge[1], xmax = edge[2], ymin = -Inf, ymax = Inf, alpha = 0.12, fill = "firebrick") +
    ggplot2::geom_hline(yintercept = 0, colour = "grey50") +
    ggplot2::geom_hline(yintercept = es, colour = "firebrick", linetype = "dashed") +
    ggplot2::geom_line(colour = "darkgreen") +
    ggplot2::geom_segment(data = ticks, ggplot2::aes(x = .data$rank, xend = .data$rank, y = low - 0.12 * span,
                                                     yend = low - 0.04 * span), inherit.aes = FALSE, linewidth = 0.3) +
    ggplot2::labs(x = "gene rank", y = "running enrichment score",
                  title = title, subtitle = sprintf("ES = %.3f, %d genes, leading edge shaded", es, k)) +
    ggplot2::theme_bw()
}

#' Normalised enrichment scores of a GSEA table
#'
#' A lollipop plot of NES by set for a table from [gsea()] or [gsea_did()]: the stem runs
#' from 0 to the NES; the point's colour and size are the FDR, binned (`< 0.001`, `< 0.01`,
#' `< 0.05`, `<= fdr_max`, `ns`), so the most significant sets get the largest dots whatever
#' their size. The set's size (genes found in the ranking) is given after its name.
#'
#' @param results A table from [gsea()] or [gsea_did()] (columns `set`, `nes`, `fdr`, `size`).
#' @param n Number of sets to show, the most significant first.
#' @param fdr_max Sets with FDR above this are drawn grey, as `ns`.
#' @return A ggplot object.
#' @export
#' @examples
#' set.seed(1)
#' genes <- paste0("g", 1:2000)
#' stats <- setNames(rnorm(2000), genes)
#' stats[1:40] <- stats[1:40] + 1
#' sets <- c(list(up = genes[1:40]), setNames(lapply(1:8, function(i) sample(genes, 50)), paste0("r", 1:8)))
#' plot_gsea(gsea(stats, sets, seed = 1))
plot_gsea <- function(results, n = 30L, fdr_max = 0.25) {
  if (!is.data.frame(results) || !all(c("set", "nes", "fdr", "size") %in% names(results))) {
    stop("`results` must be a table from gsea() or gsea_did().", call. = FALSE)
  }
  n <- check_count(n, "n", min = 1)
  fdr_max <- check_unit(fdr_max, "fdr_max")
  if (any(results$fdr < 0 | results$fdr > 1, na.rm = TRUE)) {
    stop("`results` column `fdr` must hold probabilities in [0, 1].", call. = FALSE)
  }
  df <- as.data.frame(results)[!is.na(results$nes), c(intersect("collection", names(results)), "set", "nes", "fdr", "size")]
  if (nrow(df) == 0L) stop("`results` has no tested sets to plot.", call. = FALSE)
  df <- utils::head(df[order(df$fdr, -abs(df$nes)), ], n)
  df$label <- sprintf("%s (%d)", feature_names(df), as.integer(df$size))
  df$label <- factor(df$label, levels = unique(df$label[order(df$nes)]))
  df$fdr_bin <- fdr_bins(df$fdr, fdr_max)
  bins <- levels(df$fdr_bin)
  ggplot2::ggplot(df, ggplot2::aes(x = .data$nes, y = .data$label)) +
    ggplot2::geom_vline(xintercept = 0, colour = "grey50") +
    ggplot2::geom_segment(ggplot2::aes(x = 0, xend = .data$nes, yend = .data$label), colour = "grey60") +
    ggplot2::geom_point(ggplot2::aes(size = .data$fdr_bin, colour = .data$fdr_bin)) +
    # One legend for both aesthetics: the same name, breaks and levels.
    ggplot2::scale_colour_manual(values = stats::setNames(fdr_bin_colours(length(bins)), bins),
                                 limits = bins, name = "FDR") +
    ggplot2::scale_size_manual(values = stats::setNames(seq(4.5, 1.5, length.out = length(bins)), bins),
                               limits = bins, name = "FDR") +
    ggplot2::labs(x = "NES", y = "set (size)", title = attr(results, "method")) +
    ggplot2::theme_bw()
}

# FDR in readable bins: < 0.001, < 0.01, < 0.05 (those below `fdr_max`), <= fdr_max, and
# "ns" above it (or NA), ordered from the most significant.
fdr_bins <- function(fdr, fdr_max) {
  cuts <- c(0.001, 0.01, 0.05)
  cuts <- cuts[cuts < fdr_max]
  labels <- c(sprintf("< %g", cuts), sprintf("<= %g", fdr_max), sprintf("ns (> %g)", fdr_max))
  bin <- findInterval(fdr, cuts) + 1L
  bin[fdr > fdr_max | is.na(fdr)] <- length(labels)
  factor(labels[bin], levels = labels)
}

# Dark red for the most significant bin, lighter reds after it, grey for "ns".
fdr_bin_colours <- function(k) {
  c(c("#67000D", "#CB181D", "#FB6A4A", "#FCAE91")[seq_len(k - 1L)], "grey70")
}

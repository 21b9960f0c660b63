# On-disk input read by the block reader, and workers that receive only their block.

skip_if_not_installed("HDF5Array")
skip_if_not_installed("rhdf5")

blocks_trial <- function() {
  sce <- simulate_trial(n_genes = 250, n_cells = 1500, n_paired = 10, n_treated_paired = 5,
                        counts = TRUE, seed = 3)
  cnt <- methods::as(SummarizedExperiment::assay(sce, "counts"), "dgCMatrix")
  list(sce = sce, cnt = cnt, cd = SummarizedExperiment::colData(sce),
       design = trial_design("participant", "visit", "response", treated = "Responder",
                             baseline = "Pre", followup = "Post"))
}

with_assay <- function(tr, m, name) {
  SummarizedExperiment::SummarizedExperiment(stats::setNames(list(m), name), colData = tr$cd)
}

quiet_did <- function(...) suppressWarnings(did_table(..., verbose = FALSE))

test_that("a TENx file written in blocks reads back as the matrix, and gets a recipe", {
  tr <- blocks_trial()
  tx <- write_tenx_matrix(tr$cnt, tempfile(fileext = ".h5"))
  expect_equal(unname(as.matrix(tx)), unname(as.matrix(tr$cnt)))
  expect_identical(rownames(tx), rownames(tr$cnt))
  r <- sceffects:::disk_recipe(tx)
  expect_identical(r$format, "tenx")
  # Delayed operations other than dimnames have no recipe (read through DelayedArray).
  expect_null(sceffects:::disk_recipe(tx + 1))
  # Columns of a block straight from the file equal the matrix's columns.
  f <- sceffects:::tenx_open(r)
  on.exit(rhdf5::H5Fclose(f$fid))
  expect_equal(unname(sceffects:::tenx_columns(f, 101L, 457L)), unname(tr$cnt[, 101:457]))
  expect_equal(unname(sceffects:::tenx_columns(f, 9L, 9L)), unname(tr$cnt[, 9, drop = FALSE]))
})

test_that("column blocks follow sceffects.block_memory and group sums add up over them", {
  tr <- blocks_trial()
  tx <- write_tenx_matrix(tr$cnt, tempfile(fileext = ".h5"))
  r <- sceffects:::disk_recipe(tx)
  f <- sceffects:::tenx_open(r)
  rhdf5::H5Fclose(f$fid)
  withr_blocks <- function(bytes) {
    old <- options(sceffects.block_memory = bytes)
    on.exit(options(old))
    sceffects:::plan_column_blocks(f$indptr, 1L, ncol(tx))
  }
  small <- withr_blocks(1e6)
  big <- withr_blocks(1e9)
  expect_length(big, 1L)
  expect_gt(length(small), 1L)
  covered <- unlist(lapply(small, function(b) b[1]:b[2]))
  expect_identical(covered, seq_len(ncol(tx)))
  nnz <- vapply(small, function(b) f$indptr[b[2] + 1] - f$indptr[b[1]], 0)
  expect_true(all(16 * nnz <= 1e6 | vapply(small, function(b) b[1] == b[2], TRUE)))
  group <- sample(0:7, ncol(tx), replace = TRUE)
  old <- options(sceffects.block_memory = 1e6)
  on.exit(options(old))
  src <- sceffects:::numeric_features(tx, "x")
  sums <- sceffects:::source_group_sums(src, group, 7L, 1L)
  ref <- t(apply(as.matrix(tr$cnt), 1, function(v) tapply(v[group > 0], factor(group[group > 0], 1:7), sum)))
  expect_equal(unname(sums), unname(ref))
  expect_error(withr_blocks(10), "sceffects.block_memory")
})

test_that("did_table on TENx and dense HDF5 input equals in-memory, with small blocks", {
  tr <- blocks_trial()
  tx <- write_tenx_matrix(tr$cnt, tempfile(fileext = ".h5"))
  lc <- log1p(tr$cnt)
  h5 <- HDF5Array::writeHDF5Array(as.matrix(lc), tempfile(fileext = ".h5"), name = "lc",
                                  chunkdim = c(16L, ncol(lc)), with.dimnames = TRUE)
  expect_identical(sceffects:::disk_recipe(h5)$format, "dense")
  old <- options(sceffects.block_memory = 1e6)
  on.exit(options(old))
  ref_pb <- quiet_did(with_assay(tr, tr$cnt, "counts"), tr$design, aggregate = "pseudobulk")
  expect_equal(quiet_did(with_assay(tr, tx, "counts"), tr$design, aggregate = "pseudobulk"), ref_pb)
  ref_pv <- quiet_did(with_assay(tr, lc, "logcounts"), tr$design)
  expect_equal(quiet_did(with_assay(tr, h5, "logcounts"), tr$design), ref_pv)
  ref_cell <- quiet_did(with_assay(tr, lc, "logcounts"), tr$design, aggregate = "cell")
  expect_equal(quiet_did(with_assay(tr, h5, "logcounts"), tr$design, aggregate = "cell"), ref_cell)
  # A subset of genes (a delayed subset, read through DelayedArray) gives the same rows.
  genes <- rownames(lc)[c(5, 1, 40)]
  expect_equal(quiet_did(with_assay(tr, tx, "counts"), tr$design, aggregate = "pseudobulk", features = genes),
               quiet_did(with_assay(tr, tr$cnt, "counts"), tr$design, aggregate = "pseudobulk", features = genes))
  ba <- suppressWarnings(between_arm(with_assay(tr, tx, "counts"), tr$design, visit = "Pre", verbose = FALSE))
  expect_equal(ba, suppressWarnings(between_arm(with_assay(tr, tr$cnt, "counts"), tr$design, visit = "Pre",
                                                verbose = FALSE)))
})

test_that("gene-set scores, NB, associations and mixed models on HDF5 / TENx equal in-memory", {
  tr <- blocks_trial()
  tx <- write_tenx_matrix(tr$cnt, tempfile(fileext = ".h5"))
  h5 <- HDF5Array::writeHDF5Array(as.matrix(tr$cnt), tempfile(fileext = ".h5"), name = "c",
                                  chunkdim = c(10L, ncol(tr$cnt)), with.dimnames = TRUE)
  old <- options(sceffects.block_memory = 1e6)
  on.exit(options(old))
  sets <- S4Vectors::metadata(tr$sce)$gene_sets
  ref <- score_gene_sets(tr$cnt, sets, verbose = FALSE)
  expect_equal(score_gene_sets(tx, sets, verbose = FALSE), ref)
  expect_equal(score_gene_sets(h5, sets, verbose = FALSE), ref)
  expect_equal(score_gene_sets(tx, sets, method = "mean", verbose = FALSE),
               score_gene_sets(tr$cnt, sets, method = "mean", verbose = FALSE))
  few <- tr$cnt[1:12, ]
  data <- data.frame(arm = factor(tr$cd$response))
  fit_mem <- nb_regression(few, ~ arm, data = data)
  fit_tx <- nb_regression(tx[1:12, ], ~ arm, data = data)
  expect_equal(coef(fit_tx), coef(fit_mem))
  y <- matrix(tr$cd$visit == "Post", 1, dimnames = list("post", NULL)) * 1
  expect_equal(assoc_cor(h5[1:30, ], y), assoc_cor(as.matrix(tr$cnt[1:30, ]), y))
  expect_equal(assoc_mwu(tx[1:30, ], y), assoc_mwu(tr$cnt[1:30, ], y))
  lmm_data <- data.frame(visit = tr$cd$visit, participant = tr$cd$participant)
  lc <- log1p(as.matrix(tr$cnt[1:5, ]))
  h5l <- HDF5Array::writeHDF5Array(lc, tempfile(fileext = ".h5"), name = "l", with.dimnames = TRUE)
  table_only <- function(t) {
    attr(t, "lmm") <- NULL  # the fitted model keeps its input source
    t
  }
  expect_equal(table_only(lmm_table(h5l, ~ visit + (1 | participant), lmm_data)),
               table_only(lmm_table(lc, ~ visit + (1 | participant), lmm_data)))
})

test_that("a worker given a path and a range computes the same block", {
  tr <- blocks_trial()
  tx <- write_tenx_matrix(tr$cnt, tempfile(fileext = ".h5"))
  lc <- as.matrix(log1p(tr$cnt))
  h5 <- HDF5Array::writeHDF5Array(lc, tempfile(fileext = ".h5"), name = "lc", with.dimnames = TRUE)
  for (src in list(sceffects:::numeric_features(tx, "x"), sceffects:::numeric_features(h5, "x"))) {
    piece <- sceffects:::subset_source(src, 31:47, realise = TRUE)
    expect_null(piece$data)                          # only the recipe travels
    want <- if (src$recipe$format == "tenx") as.matrix(tr$cnt[31:47, ]) else lc[31:47, ]
    expect_lt(length(serialize(piece, NULL)), length(serialize(unname(want), NULL)) / 4)
    opened <- sceffects:::open_source(piece)
    expect_equal(unname(as.matrix(opened$data)), unname(want))
    expect_identical(opened$names, rownames(lc)[31:47])
  }
  # In memory: the chunk's rows only.
  mem <- sceffects:::numeric_features(tr$cnt, "x")
  piece <- sceffects:::subset_source(mem, 1:10, realise = TRUE)
  expect_equal(dim(piece$data), c(10L, ncol(tr$cnt)))
  # A closure's sources are left behind when it is shipped.
  make <- function(big) function(rows, s) nrow(s$data)
  environment(make) <- globalenv()
  one <- make(mem)
  full <- length(serialize(one, NULL))
  expect_gt(full, length(serialize(mem$data, NULL)))
  expect_lt(length(serialize(sceffects:::without_sources(one), NULL)), full - length(serialize(mem$data, NULL)) / 2)
})

test_that("every BiocParallel shipping path gives the serial results", {
  skip_if_not_installed("BiocParallel")
  skip_on_cran()
  tr <- blocks_trial()
  tx <- write_tenx_matrix(tr$cnt, tempfile(fileext = ".h5"))
  lc <- log1p(tr$cnt)
  h5 <- HDF5Array::writeHDF5Array(as.matrix(lc), tempfile(fileext = ".h5"), name = "lc",
                                  chunkdim = c(16L, ncol(lc)), with.dimnames = TRUE)
  sets <- S4Vectors::metadata(tr$sce)$gene_sets
  serial <- list(pb = quiet_did(with_assay(tr, tr$cnt, "counts"), tr$design, aggregate = "pseudobulk"),
                 pv = quiet_did(with_assay(tr, lc, "logcounts"), tr$design),
                 cell = quiet_did(with_assay(tr, lc, "logcounts"), tr$design, aggregate = "cell"),
                 sets = score_gene_sets(tr$cnt, sets, verbose = FALSE))
  params <- list(snow = BiocParallel::SnowParam(2), multicore = BiocParallel::MulticoreParam(2))
  if (requireNamespace("batchtools", quietly = TRUE)) {
    params$batchtools <- BiocParallel::BatchtoolsParam(workers = 2, cluster = "multicore")
  }
  for (nm in names(params)) {
    p <- params[[nm]]
    BiocParallel::bpstart(p)
    expect_equal(quiet_did(with_assay(tr, tx, "counts"), tr$design, aggregate = "pseudobulk", BPPARAM = p),
                 serial$pb, label = nm)
    expect_equal(quiet_did(with_assay(tr, h5, "logcounts"), tr$design, BPPARAM = p), serial$pv, label = nm)
    expect_equal(quiet_did(with_assay(tr, h5, "logcounts"), tr$design, aggregate = "cell", BPPARAM = p),
                 serial$cell, label = nm)
    expect_equal(quiet_did(with_assay(tr, lc, "logcounts"), tr$design, aggregate = "cell", BPPARAM = p),
                 serial$cell, label = nm)
    expect_equal(score_gene_sets(tx, sets, verbose = FALSE, BPPARAM = p), serial$sets, label = nm)
    expect_equal(score_gene_sets(tr$cnt, sets, verbose = FALSE, BPPARAM = p), serial$sets, label = nm)
    BiocParallel::bpstop(p)
  }
})

test_that("write_tenx refuses to overwrite a file", {
  f <- tempfile(fileext = ".h5")
  file.create(f)
  expect_error(sceffects:::write_tenx(f, function(k) NULL, 1L, "g"), "`path`")
})

# A TENxMatrix of a file written by write_tenx(). HDF5Array::TENxMatrix() fails on some
# rhdf5 versions (Debian's HDF5Array 1.26 with rhdf5 2.42: "Argument not of class
# H5IdComponent" while probing optional datasets); the seed is then built from the file.
tenx_matrix <- function(path, group = "matrix") {
  x <- tryCatch(suppressMessages(HDF5Array::TENxMatrix(path, group)), error = function(e) NULL)
  if (!is.null(x)) return(x)
  indptr <- as.numeric(rhdf5::h5read(path, paste0(group, "/indptr"), bit64conversion = "double"))
  shape <- as.integer(rhdf5::h5read(path, paste0(group, "/shape")))
  genes <- as.character(rhdf5::h5read(path, paste0(group, "/genes")))
  barcodes <- tryCatch(as.character(rhdf5::h5read(path, paste0(group, "/barcodes"))), error = function(e) NULL)
  seed <- methods::new("TENxMatrixSeed", filepath = normalizePath(path), group = group, dim = shape,
                       indptr_ranges = data.frame(start = indptr[-length(indptr)] + 1,
                                                  width = as.integer(diff(indptr))),
                       dimnames = list(genes, barcodes))
  DelayedArray::DelayedArray(seed)
}

# A dgCMatrix of counts written as a TENx file in column blocks of `block_cols` cells.
write_tenx_matrix <- function(m, path, block_cols = 97L) {
  starts <- seq(1L, ncol(m), by = block_cols)
  sceffects:::write_tenx(path, function(k) m[, starts[k]:min(ncol(m), starts[k] + block_cols - 1L), drop = FALSE],
                         length(starts), rownames(m))
  tenx_matrix(path)
}

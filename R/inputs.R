# The input layer: every capability turns its data into a "feature source" here, and reads
# it back in blocks of features. Features are rows; samples are columns. Nothing is
# densified whole: dense matrices are sliced, dgCMatrix rows are read by the Rust core
# from the borrowed slots, DelayedArray blocks are realised one at a time.

#' @importFrom SummarizedExperiment assay assayNames
NULL

# The matrix-like data of any accepted input, features in rows, samples in columns: a
# SummarizedExperiment's assay, an ExpressionSet's assayData element, a phyloseq otu_table,
# a matrix, dgCMatrix or DelayedArray as they are. A data.frame has no agreed orientation
# (limma reads its rows as features, colData() has features in columns), so it is never
# turned silently: `frame = "refuse"` stops with the fix; `frame = "columns"`, for the
# arguments documented to take colData-style tables, reads its columns as features and
# says so.
feature_matrix <- function(x, arg, assay = NULL, frame = c("refuse", "columns")) {
  frame <- match_choice(frame, "frame")
  if (is(x, "SummarizedExperiment")) return(se_assay(x, assay, arg))
  if (is(x, "ExpressionSet")) return(eset_assay(x, assay, arg))
  if (is(x, "otu_table")) return(otu_matrix(x))
  if (is(x, "DataFrame")) x <- as.data.frame(x, optional = TRUE)
  if (is.data.frame(x)) return(frame_features(x, arg, frame))
  # Other sparse Matrix classes (logical lgCMatrix, triplet, symmetric) stay sparse.
  if (is(x, "sparseMatrix") && !is(x, "dgCMatrix")) x <- as_dgc(x)
  x
}

as_dgc <- function(x) {
  methods::as(methods::as(methods::as(x, "CsparseMatrix"), "generalMatrix"), "dMatrix")
}

frame_features <- function(x, arg, frame) {
  if (frame == "refuse") {
    stop(sprintf("`%s` is a data.frame, whose orientation is ambiguous: give a matrix with features in rows and samples in columns, as.matrix(%s) if its rows are features or t(%s) if its columns are.",
                 arg, arg, arg), call. = FALSE)
  }
  say_frame_orientation(x, arg)
  t(as.matrix(x))
}

# A data.frame read as colData: say which way it was read, since the same values as a
# matrix would be read the other way.
say_frame_orientation <- function(x, arg) {
  say(sprintf("`%s` is a data.frame: read as colData, its %d column%s are the features and its %d row%s the samples (give a matrix to have features in rows).",
              arg, ncol(x), if (ncol(x) == 1L) "" else "s", nrow(x), if (nrow(x) == 1L) "" else "s"))
}

# One assayData element of a Biobase ExpressionSet (exprs() by default).
eset_assay <- function(x, assay, arg) {
  if (!requireNamespace("Biobase", quietly = TRUE)) {
    stop(sprintf("`%s` is an ExpressionSet: install Biobase to read it.", arg), call. = FALSE)
  }
  available <- Biobase::assayDataElementNames(x)
  if (is.null(assay)) assay <- "exprs"
  if (is.numeric(assay) && length(assay) == 1L && assay >= 1 && assay <= length(available)) {
    assay <- available[assay]
  }
  if (!is.character(assay) || length(assay) != 1L || !assay %in% available) {
    stop(sprintf("`assay` %s is not an assayData element of `%s`; it has: %s.", format(assay), arg,
                 paste(available, collapse = ", ")), call. = FALSE)
  }
  Biobase::assayDataElement(x, assay)
}

# A phyloseq otu_table as a matrix with taxa in rows, whichever way it is stored.
otu_matrix <- function(x) {
  m <- methods::as(x, "matrix")
  if (phyloseq::taxa_are_rows(x)) m else t(m)
}

# Sample metadata of an object as a data.frame: colData() or pData(); NULL for a matrix.
sample_metadata <- function(x) {
  if (is(x, "SummarizedExperiment")) {
    return(as.data.frame(SummarizedExperiment::colData(x), optional = TRUE))
  }
  if (is(x, "ExpressionSet")) return(Biobase::pData(x))
  if (is(x, "phyloseq")) {
    sd <- phyloseq::sample_data(x, errorIfNULL = FALSE)
    if (!is.null(sd)) return(methods::as(sd, "data.frame"))
  }
  NULL
}

# A numeric feature source from a matrix-like object or a SummarizedExperiment /
# ExpressionSet; data.frames as `frame` says (see feature_matrix()).
# `check_values = FALSE` leaves the check for NA and infinite values to a kernel that reads
# every value anyway (the DiD group sums of a dgCMatrix).
numeric_features <- function(x, arg, assay = NULL, allow_na = FALSE, frame = "refuse",
                             check_values = TRUE) {
  x <- feature_matrix(x, arg, assay, frame)
  if (is.null(dim(x)) && (is.numeric(x) || is.logical(x))) {
    x <- matrix(as.numeric(x), nrow = 1L, dimnames = list(arg, names(x)))
  }
  kind <- if (is(x, "dgCMatrix")) {
    "sparse"
  } else if (is(x, "DelayedArray")) {
    "delayed"
  } else if (is.matrix(x)) {
    "dense"
  } else {
    stop(sprintf("`%s` must be a matrix, dgCMatrix, DelayedArray, SummarizedExperiment or ExpressionSet (features in rows), not %s.",
                 arg, class(x)[1L]), call. = FALSE)
  }
  if (kind == "dense" && !is.numeric(x) && !is.logical(x)) {
    stop(sprintf("`%s` must be numeric; it holds %s values.", arg, typeof(x)), call. = FALSE)
  }
  if (kind == "delayed" && !(DelayedArray::type(x) %in% c("double", "integer", "logical"))) {
    stop(sprintf("`%s` must be numeric; it holds %s values.", arg, DelayedArray::type(x)), call. = FALSE)
  }
  check_feature_names(rownames(x), arg)
  if (check_values) check_finite(x, kind, arg, allow_na)
  structure(list(data = x, kind = kind, names = rownames(x), n_features = nrow(x),
                 n_samples = ncol(x), samples = colnames(x), arg = arg, allow_na = allow_na,
                 recipe = if (kind == "delayed") disk_recipe(x)),
            class = "sceffects_features")
}

se_assay <- function(x, assay, arg, row_names = rownames(x)) {
  available <- assayNames(x)
  if (length(available) == 0L) stop(sprintf("`%s` has no assays.", arg), call. = FALSE)
  if (is.null(assay)) assay <- 1L
  if (is.character(assay) && !assay %in% available) {
    stop(sprintf("`assay` \"%s\" is not an assay of `%s`; it has: %s.", assay, arg,
                 paste(available, collapse = ", ")), call. = FALSE)
  }
  # Names set here: assay(withDimnames = TRUE) costs milliseconds of S4 checks per call.
  m <- SummarizedExperiment::assay(x, assay, withDimnames = FALSE)
  dimnames(m) <- list(row_names, rownames(SummarizedExperiment::colData(x)))  # = colnames(x)
  m
}

check_feature_names <- function(names, arg) {
  if (is.null(names)) {
    stop(sprintf("`%s` has no feature names: set rownames(%s) (features are rows).", arg, arg), call. = FALSE)
  }
  if (anyNA(names) || any(names == "")) {
    stop(sprintf("`%s` has missing or empty feature names.", arg), call. = FALSE)
  }
  dup <- unique(names[duplicated(names)])
  if (length(dup)) {
    stop(sprintf("`%s` has duplicated feature names, e.g. %s: make them unique (make.unique()).",
                 arg, paste(utils::head(dup, 3L), collapse = ", ")), call. = FALSE)
  }
}

check_finite <- function(x, kind, arg, allow_na) {
  values <- switch(kind, dense = x, sparse = x@x, delayed = NULL)
  if (is.null(values)) return(invisible())  # DelayedArray: checked block by block
  check_block_values(values, arg, allow_na)
}

check_block_values <- function(values, arg, allow_na) {
  if (is.logical(values)) return(invisible())
  if (has_infinite(values)) stop(sprintf("`%s` contains infinite values.", arg), call. = FALSE)
  if (!allow_na && anyNA(values)) {
    stop(sprintf("`%s` contains NA/NaN values: remove them, or use na_action = \"pairwise\" to test each pair on its complete observations.",
                 arg), call. = FALSE)
  }
  invisible()
}

# Whether `values` holds Inf or -Inf, without a logical copy of a large matrix (min() and
# max() read it in place).
has_infinite <- function(values) {
  if (!length(values)) return(FALSE)
  lo <- suppressWarnings(min(values, na.rm = TRUE))
  hi <- suppressWarnings(max(values, na.rm = TRUE))
  lo <= hi && (lo == -Inf || hi == Inf)
}

# Dense double matrix of features `rows` (a contiguous range) of a feature source.
read_block <- function(src, rows) {
  block <- switch(src$kind,
    dense = src$data[rows, , drop = FALSE],
    sparse = rs_csc_row_block(src$data, min(rows) - 1L, max(rows)),
    delayed = read_delayed_rows(src, rows))
  storage.mode(block) <- "double"
  dimnames(block) <- NULL
  block
}

# Features `rows` of a DelayedArray source as a dense matrix, checked: a dense HDF5
# dataset is read straight from its file.
read_delayed_rows <- function(src, rows) {
  b <- if (!is.null(src$recipe) && src$recipe$format == "dense") {
    read_recipe_rows(src$recipe, src$recipe$rows[rows])
  } else {
    as.matrix(src$data[rows, , drop = FALSE])
  }
  check_block_values(b, src$arg, allow_na = isTRUE(src$allow_na))
  b
}

# Features `rows` (any indices) of a source for the core's one-pass kernels: a double
# matrix, or a dgCMatrix kept sparse; DelayedArray rows are realised and checked.
feature_rows <- function(src, rows = seq_len(src$n_features)) {
  whole <- length(rows) == src$n_features && identical(rows, seq_len(src$n_features))
  data <- switch(src$kind,
    sparse = if (whole) src$data else src$data[rows, , drop = FALSE],
    dense = if (whole) src$data else src$data[rows, , drop = FALSE],
    delayed = read_delayed_rows(src, rows))
  if (is.matrix(data) && !is.double(data)) storage.mode(data) <- "double"
  data
}

# A single whole number in [min, max] (by default >= 0 and representable as an R integer),
# as an integer.
check_count <- function(v, arg, min = 0, max = .Machine$integer.max) {
  if (!is.numeric(v) || length(v) != 1L || is.na(v) || !is.finite(v) || v != round(v) || v < min) {
    stop(sprintf("`%s` must be a single whole number >= %s.", arg, format(min)), call. = FALSE)
  }
  if (v > max) {
    stop(sprintf("`%s` = %s is too large: at most %s.", arg, format(v), format(max, big.mark = ",")),
         call. = FALSE)
  }
  as.integer(v)
}

# A single TRUE or FALSE (not NA).
check_flag <- function(v, arg) {
  if (!is.logical(v) || length(v) != 1L || is.na(v)) {
    stop(sprintf("`%s` must be TRUE or FALSE.", arg), call. = FALSE)
  }
  v
}

# Coded features: binary (0/1) or categorical (level codes 0..L-1), NA kept as NaN.
# Vectors and factors are one feature; data.frames (and DataFrames such as colData()) have
# features in columns, which is said when the orientation is ambiguous (all columns numeric
# or logical) unless `frame_message = FALSE`; matrices, SummarizedExperiments and
# ExpressionSets have features in rows. Binary dgCMatrix features stay sparse; other
# matrix-likes are coded densely (coded features are few: clinical variables, mutations).
coded_features <- function(x, arg, type = c("binary", "categorical"), assay = NULL, frame_message = TRUE) {
  type <- match_choice(type, "type")
  if (is(x, "DataFrame")) x <- as.data.frame(x, optional = TRUE)
  if (is.data.frame(x)) {
    if (frame_message && all(vapply(x, function(v) is.numeric(v) || is.logical(v), TRUE))) {
      say_frame_orientation(x, arg)
    }
  } else if (!is.null(dim(x)) || isS4(x)) {
    x <- feature_matrix(x, arg, assay)
    if (type == "binary" && is(x, "dgCMatrix")) return(binary_sparse_features(x, arg))
    if (!is.matrix(x) && !is.null(dim(x))) x <- as.matrix(x)
  }
  if (type == "binary" && is.matrix(x) && nrow(x) > 0L && (is.logical(x) || is.numeric(x))) {
    return(binary_matrix_features(x, arg))
  }
  columns <- if (is.data.frame(x)) {
    as.list(x)
  } else if (is.matrix(x)) {
    check_feature_names(rownames(x), arg)
    stats::setNames(lapply(seq_len(nrow(x)), function(i) x[i, ]), rownames(x))
  } else if (is.atomic(x) || is.factor(x)) {
    stats::setNames(list(x), arg)
  } else {
    stop(sprintf("`%s` must be a vector, factor, matrix / dgCMatrix / SummarizedExperiment (features in rows) or data.frame (features in columns, as colData()).",
                 arg), call. = FALSE)
  }
  check_feature_names(names(columns), arg)
  encoded <- lapply(names(columns), function(nm) encode_feature(columns[[nm]], nm, arg, type))
  codes <- do.call(rbind, lapply(encoded, `[[`, "codes"))
  rownames(codes) <- names(columns)
  structure(list(data = codes, kind = "dense", names = names(columns), n_features = nrow(codes),
                 n_samples = ncol(codes), samples = names(columns[[1L]]), arg = arg,
                 levels = lapply(encoded, `[[`, "levels")),
            class = "sceffects_features")
}

# A logical or numeric matrix of binary features, checked and coded as a whole (the same
# result and errors as encoding its rows one by one, without splitting it).
binary_matrix_features <- function(x, arg) {
  check_feature_names(rownames(x), arg)
  codes <- x
  storage.mode(codes) <- "double"
  dimnames(codes) <- list(rownames(x), NULL)
  if (!is.logical(x)) {
    # Values other than 0, 1 and NA (NaN included, as `%in% c(0, 1, NA)` has it).
    bad <- !(codes == 0 | codes == 1)
    bad[is.na(bad)] <- is.nan(codes[is.na(bad)])
    if (any(bad)) {
      first <- min(row(x)[bad])
      stop(sprintf("`%s`: feature %s must be logical or 0/1.", arg, rownames(x)[first]), call. = FALSE)
    }
  }
  structure(list(data = codes, kind = "dense", names = rownames(x), n_features = nrow(codes),
                 n_samples = ncol(codes), samples = colnames(x), arg = arg,
                 levels = rep(list(c("0", "1")), nrow(x))),
            class = "sceffects_features")
}

# Binary features of a dgCMatrix, kept sparse: its non-zeros must be 1 (or NA).
binary_sparse_features <- function(x, arg) {
  check_feature_names(rownames(x), arg)
  v <- x@x
  bad <- !(v == 0 | v == 1)
  bad[is.na(bad)] <- is.nan(v[is.na(bad)])
  if (any(bad)) {
    stop(sprintf("`%s`: feature %s must be logical or 0/1.", arg, rownames(x)[min(x@i[bad]) + 1L]), call. = FALSE)
  }
  structure(list(data = x, kind = "sparse", names = rownames(x), n_features = nrow(x),
                 n_samples = ncol(x), samples = colnames(x), arg = arg, allow_na = TRUE,
                 levels = rep(list(c("0", "1")), nrow(x))),
            class = "sceffects_features")
}

encode_feature <- function(v, name, arg, type) {
  if (is.matrix(v) || is.list(v)) stop(sprintf("`%s`: feature %s is not a vector.", arg, name), call. = FALSE)
  if (type == "binary") {
    if (is.logical(v)) v <- as.numeric(v)
    if (is.factor(v) || is.character(v)) {
      stop(sprintf("`%s`: feature %s is not binary; give logical or 0/1 values.", arg, name), call. = FALSE)
    }
    if (!is.numeric(v) || any(!v %in% c(0, 1, NA))) {
      stop(sprintf("`%s`: feature %s must be logical or 0/1.", arg, name), call. = FALSE)
    }
    return(list(codes = as.numeric(v), levels = c("0", "1")))
  }
  if (is.numeric(v) && any(v != round(v), na.rm = TRUE)) {
    stop(sprintf("`%s`: feature %s has non-integer numbers; categorical features must be factors, characters, logicals or integers.",
                 arg, name), call. = FALSE)
  }
  f <- factor(v)
  list(codes = as.numeric(as.integer(f) - 1L), levels = levels(f))
}

# Same samples, same order, in both sources; otherwise a message about orientation.
check_same_samples <- function(x, y) {
  if (x$n_samples != y$n_samples) {
    hint <- if (x$n_samples == y$n_features || y$n_samples == x$n_features) {
      " One of them may have samples in rows: features must be rows (use t())."
    } else ""
    stop(sprintf("`%s` has %d samples (columns) but `%s` has %d.%s", x$arg, x$n_samples,
                 y$arg, y$n_samples, hint), call. = FALSE)
  }
  if (!is.null(x$samples) && !is.null(y$samples) && !identical(x$samples, y$samples)) {
    if (setequal(x$samples, y$samples)) {
      stop(sprintf("`%s` and `%s` have the same samples in a different order: reorder the columns of one to match the other.",
                   x$arg, y$arg), call. = FALSE)
    }
    stop(sprintf("`%s` and `%s` have different sample names.", x$arg, y$arg), call. = FALSE)
  }
  invisible()
}

# The values of a count matrix that can be checked up front: all of a dense matrix, the
# non-zeros of a dgCMatrix; NULL for a DelayedArray (its blocks are checked as read).
count_values_of <- function(m) if (is(m, "dgCMatrix")) m@x else if (is.matrix(m)) m else NULL

# Counts must be whole numbers >= 0; `what` names the input in the message.
# The values are read once by the core, in place (R's comparisons made three logical copies
# of a large matrix); logical values can only be missing.
check_count_values <- function(values, what = "`x`") {
  if (is.null(values)) return(invisible())
  problem <- if (is.logical(values)) as.integer(anyNA(values)) else rs_count_problem(values)
  switch(problem + 1L,
    invisible(),
    stop(sprintf("%s contains NA counts.", what), call. = FALSE),
    stop(sprintf("%s must hold counts: it has negative values.", what), call. = FALSE),
    stop(sprintf("%s must hold counts: it has non-integer values (use raw counts, not normalised values).", what),
         call. = FALSE))
}

`%||%` <- function(a, b) if (is.null(a)) b else a

# match.arg() (partial matching, the first choice for the default) whose error names the
# argument and lists its choices. `choices`: by default the calling function's default of
# that argument, so `x <- match_choice(x, "x")` replaces `x <- match_choice(x, "x")`.
match_choice <- function(v, arg, choices = eval(formals(sys.function(sys.parent()))[[arg]])) {
  tryCatch(match.arg(v, choices), error = function(e) {
    stop(sprintf("`%s` must be one of %s.", arg, paste0("\"", choices, "\"", collapse = ", ")),
         call. = FALSE)
  })
}

# Manifold differential abundance and expression on data shaped like the murine bone marrow
# aging set used by kompot's sample-variance tutorial (8,090 cells x 16,285 genes, three
# replicates per condition, a 15-dimensional diffusion map), simulated with planted effects.
# Each analysis runs in a fresh R process, so its peak memory (VmHWM) is its own; the time
# is the median over `reps` runs. kompot itself (Python/JAX) cannot run here: its published
# figures are printed beside ours.
# Usage: Rscript inst/bench/kompot.R [n_genes] [n_cells] [reps]   (default 16285 8090 1)
suppressPackageStartupMessages(library(sceffects))
args <- commandArgs(trailingOnly = TRUE)
n_genes <- if (length(args) >= 1) as.integer(args[1]) else 16285L
n_cells <- if (length(args) >= 2) as.integer(args[2]) else 8090L
reps <- if (length(args) >= 3) as.integer(args[3]) else 1L
threads <- 2L
cat(sprintf("machine: %d cores, %s, %.0f GB RAM; R %s; threads = %d\n", parallel::detectCores(),
            Sys.info()[["machine"]], as.numeric(system("awk '/MemTotal/ {print $2}' /proc/meminfo", intern = TRUE)) / 2^20,
            getRversion(), threads))

t_sim <- system.time(sce <- simulate_manifold(n_cells = n_cells, n_genes = n_genes, n_dims = 15, n_samples = 3,
                                              n_de_genes = 200, n_odd_genes = 200, seed = 1))[["elapsed"]]
m <- SingleCellExperiment::logcounts(sce)
cat(sprintf("simulate_manifold: %d genes x %d cells, %.1f%% non-zero, dgCMatrix %.0f MB, %.1f s\n",
            n_genes, n_cells, 100 * length(m@x) / prod(dim(m)), as.numeric(utils::object.size(m)) / 2^20, t_sim))
data_file <- tempfile(fileext = ".rds")
saveRDS(sce, data_file, compress = FALSE)
rm(sce, m)

# Runs `call` (R code using `sce`) `reps` times in a fresh process: elapsed seconds, the
# process's peak resident memory, and its peak right after loading the data.
in_fresh_process <- function(call) {
  code <- sprintf(paste(
    "suppressPackageStartupMessages(library(sceffects)); sce <- readRDS('%s'); gc()",
    "hwm <- function() as.numeric(sub('[^0-9]*([0-9]+).*', '\\\\1', grep('VmHWM', readLines('/proc/self/status'), value = TRUE))) / 2^20",
    "base <- hwm(); times <- replicate(%d, system.time(res <- %s)[['elapsed']])",
    "cat(sprintf('RESULT %%.2f %%.3f %%.3f\\n', stats::median(times), hwm(), base))", sep = "\n"),
    data_file, reps, call)
  script <- tempfile(fileext = ".R")
  writeLines(code, script)
  out <- system2(file.path(R.home("bin"), "Rscript"), script, stdout = TRUE, stderr = FALSE)
  v <- as.numeric(strsplit(sub("RESULT ", "", grep("^RESULT", out, value = TRUE)), " ")[[1]])
  stats::setNames(v, c("seconds", "peak_gib", "data_gib"))
}

de_call <- "diff_expression(sce, 'condition', 'young', 'old', n_landmarks = 2000, null_genes = 2000, threads = %dL%s)"
runs <- list(
  "DE, no sample variance, 2000 landmarks, 2000 null genes" =
    list(call = sprintf(de_call, threads, ""), target = 120, kompot = "~3 min on a large server (issue text)"),
  "DE, sample variance, 2000 landmarks, 2000 null genes" =
    list(call = sprintf(de_call, threads, ", sample = 'sample'"), target = 180,
         kompot = "per-gene Cholesky 0.246 s/gene at m = 2000: ~67 min for 16,285 genes; 2 m^2 G 8 B = 970 GiB"),
  "DA, sample variance, 1000 landmarks" =
    list(call = sprintf("diff_abundance(sce, 'condition', 'young', 'old', sample = 'sample', method = 'kompot', threads = %dL)", threads),
         target = 30, kompot = "full GP per condition (<= 5000 cells) + 6 sample fits"))

sce <- readRDS(data_file)
cat("\ndry_run plan of the sample-variance DE:\n")
diff_expression(sce, "condition", "young", "old", sample = "sample", n_landmarks = 2000, dry_run = TRUE)
rm(sce)

cat(sprintf("\n%-58s %9s %9s %9s %8s  %s\n", "analysis", "median s", "target s", "peak GiB", "data GiB", "kompot"))
for (nm in names(runs)) {
  r <- in_fresh_process(runs[[nm]]$call)
  cat(sprintf("%-58s %9.1f %9.0f %9.2f %8.2f  %s\n", nm, r[["seconds"]], runs[[nm]]$target, r[["peak_gib"]],
              r[["data_gib"]], runs[[nm]]$kompot))
}
unlink(data_file)

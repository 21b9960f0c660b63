# Runs every peer benchmark of issue 14 and writes inst/bench/RESULTS.md: one table of
# work, ours, peer, ratio (peer time / ours), target, with the machine and its load.
# Each script prints machine-readable lines "RESULT<TAB>work<TAB>ours_s<TAB>peer_s<TAB>peer<TAB>target";
# its full output goes to inst/bench/logs/<script>.log.
# Usage (peers in a private library): R_LIBS=/work/peerlib:$PWD/lib Rscript inst/bench/run-all.R [script ...]
args <- commandArgs(trailingOnly = TRUE)
bench_dir <- if (dir.exists("inst/bench")) "inst/bench" else dirname(sub("^--file=", "", grep("^--file=", commandArgs(), value = TRUE)))
# Script and its arguments (assoc.R at scale 0.1: its Pearson part at full scale takes minutes
# and is not a peer comparison; its Fisher part does not depend on the scale).
scripts <- list(assoc.R = "0.1", wilcoxon.R = character(), "cor-matrix.R" = character(),
                did.R = c("5000", "13000"), gsea.R = character(), nb.R = "0.1")
if (length(args)) scripts <- scripts[intersect(names(scripts), args)]
log_dir <- file.path(bench_dir, "logs")
dir.create(log_dir, showWarnings = FALSE)
rscript <- file.path(R.home("bin"), "Rscript")
load_before <- system("uptime", intern = TRUE)
rows <- list()
for (script in names(scripts)) {
  log <- file.path(log_dir, sub("\\.R$", ".log", script))
  message(sprintf("running %s %s", script, paste(scripts[[script]], collapse = " ")))
  env <- if (script == "did.R") "SCEFFECTS_BENCH_EVENT='2000 2000'" else character()
  status <- system2(rscript, c(file.path(bench_dir, script), scripts[[script]]), stdout = log, stderr = log, env = env)
  out <- readLines(log)
  if (!identical(status, 0L)) message(sprintf("  %s failed (status %s): see %s", script, status, log))
  fields <- strsplit(sub("^RESULT\t", "", grep("^RESULT\t", out, value = TRUE)), "\t", fixed = TRUE)
  for (f in fields) {
    rows[[length(rows) + 1L]] <- data.frame(work = f[1], ours = as.numeric(f[2]), peer_time = as.numeric(f[3]),
                                             peer = f[4], target = f[5], script = script)
  }
}
load_after <- system("uptime", intern = TRUE)
tab <- do.call(rbind, rows)
cpu <- grep("^model name", readLines("/proc/cpuinfo"), value = TRUE)[1]
lines <- c("# Benchmarks against the strongest peer (issue 14)", "",
           sprintf("Written by `inst/bench/run-all.R` on %s.", format(Sys.time(), "%Y-%m-%d %H:%M %Z")),
           sprintf("Machine: %d cores (%s), R %s. Load before: `%s`; after: `%s`.", parallel::detectCores(),
                   trimws(sub(".*:", "", cpu)), getRversion(), trimws(load_before), trimws(load_after)),
           "Times are medians of the script's repeats (seconds); ratio = peer time / ours.", "",
           "| work | ours (s) | peer | peer (s) | ratio | target | script |",
           "|---|---|---|---|---|---|---|",
           sprintf("| %s | %.3g | %s | %.3g | %.2fx | %s | %s |", tab$work, tab$ours, tab$peer, tab$peer_time,
                   tab$peer_time / tab$ours, tab$target, tab$script))
writeLines(lines, file.path(bench_dir, "RESULTS.md"))
cat(lines, sep = "\n")

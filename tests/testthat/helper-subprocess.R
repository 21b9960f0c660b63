# Runs R code in a fresh R process under a time limit, for cases that may hang (a forked
# worker), exhaust the C stack or abort the process. Returns the exit status (124 on
# timeout) and what the process printed.
run_in_fresh_r <- function(code, timeout = 60) {
  script <- tempfile(fileext = ".R")
  writeLines(c("suppressPackageStartupMessages(library(sceffects))", code), script)
  on.exit(unlink(script))
  rscript <- file.path(R.home("bin"), "Rscript")
  out <- suppressWarnings(system2("timeout", c(timeout, rscript, "--vanilla", script),
                                  stdout = TRUE, stderr = TRUE,
                                  env = paste0("R_LIBS=", paste(.libPaths(), collapse = ":"))))
  status <- attr(out, "status")
  list(status = if (is.null(status)) 0L else status, output = paste(out, collapse = "\n"))
}

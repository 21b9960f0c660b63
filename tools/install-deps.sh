#!/usr/bin/env bash
# Installs what sceffects needs on a fresh Debian 12 machine: R and the R/Bioconductor
# packages from Debian, and the Rust crates (fetched with the committed Cargo.lock).
# Idempotent: packages already present are skipped; apt is retried because it fails
# transiently on our machines.
set -euo pipefail

DEB_PACKAGES=(
  r-base-dev r-mathlib pandoc qpdf
  r-cran-matrix r-cran-cli r-cran-ggplot2
  r-bioc-summarizedexperiment r-bioc-singlecellexperiment r-bioc-delayedarray
  r-bioc-biocparallel r-bioc-all r-bioc-hsmmsinglecell
  r-cran-testthat r-cran-sandwich r-cran-clubsandwich r-cran-roxygen2 r-cran-knitr r-cran-rmarkdown
  r-cran-lme4 r-cran-lmertest r-cran-nlme r-cran-ape
  r-cran-mass r-cran-glmmtmb r-bioc-glmgampoi r-cran-seuratobject r-bioc-phyloseq
  r-bioc-hdf5array r-bioc-rhdf5
)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing Debian packages: ${missing[*]}"
  for attempt in 1 2 3 4 5; do
    if $SUDO apt-get update -qq && \
       DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
      break
    fi
    if [ "$attempt" -eq 5 ]; then echo "apt-get failed 5 times" >&2; exit 1; fi
    echo "apt-get failed (attempt $attempt); retrying in $((attempt * 10)) s" >&2
    sleep $((attempt * 10))
  done
else
  echo "Debian packages: all present"
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "cargo not found: install Rust (rustup) first" >&2
    exit 1
  fi
fi

here="$(cd "$(dirname "$0")/.." && pwd)"
if [ -f "$here/src/rust/Cargo.lock" ]; then
  for attempt in 1 2 3; do
    cargo fetch --locked --manifest-path "$here/src/rust/Cargo.toml" && break
    [ "$attempt" -eq 3 ] && { echo "cargo fetch failed" >&2; exit 1; }
    sleep 5
  done
fi

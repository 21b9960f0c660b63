# sceffects: the two commands of the README.
#   make demo   installs everything (Debian packages, crates), builds the package with its
#               vignettes, installs it into ./lib, and runs the association screen on the
#               ALL data set.
#   make test   cargo test (core), cargo fmt/clippy, R CMD build and R CMD check (which
#               runs the testthat suite); fails on any ERROR or WARNING.

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
# Keep the cargo build between installs (R CMD INSTALL builds in a temporary copy).
export SCEFFECTS_CARGO_TARGET_DIR := $(CURDIR)/.cargo-target
export R_LIBS := $(CURDIR)/lib
CARGO_MANIFEST := src/rust/Cargo.toml
VERSION := $(shell sed -n 's/^Version: //p' DESCRIPTION)

.PHONY: deps install demo test rust-test lint check docs bench

deps:
	bash tools/install-deps.sh

# Installed from the built tarball, so the vignettes are built and browseVignettes() lists them.
install: deps
	mkdir -p lib
	rm -f sceffects_$(VERSION).tar.gz
	R CMD build --no-manual .
	R CMD INSTALL --no-multiarch -l lib sceffects_$(VERSION).tar.gz

demo: install
	mkdir -p demo-output
	Rscript inst/scripts/demo.R demo-output

rust-test:
	cargo test --release --locked --manifest-path $(CARGO_MANIFEST) -p sceffects-core

lint:
	cargo fmt --manifest-path $(CARGO_MANIFEST) --all -- --check
	cargo clippy --release --locked --manifest-path $(CARGO_MANIFEST) --all-targets -- -D warnings

check:
	rm -rf sceffects.Rcheck sceffects_$(VERSION).tar.gz
	R CMD build --no-manual .
	_R_CHECK_FORCE_SUGGESTS_=false R CMD check --no-manual sceffects_$(VERSION).tar.gz
	bash tools/check-summary.sh sceffects.Rcheck

test: deps rust-test lint check

# Regenerate NAMESPACE, man/ and the extendr wrappers from the installed package.
docs: install
	Rscript tools/make-wrappers.R
	Rscript -e 'roxygen2::roxygenise(load_code = roxygen2::load_installed)'

# Every peer benchmark (issue 14) -> inst/bench/RESULTS.md; peers (presto, fgsea) from PEERLIB.
PEERLIB ?= /work/peerlib
bench: install
	R_LIBS=$(PEERLIB):$(CURDIR)/lib Rscript inst/bench/run-all.R

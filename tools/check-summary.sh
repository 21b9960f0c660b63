#!/usr/bin/env bash
# Fails when R CMD check reported an ERROR or WARNING (R CMD check itself exits 0 on a
# WARNING), and prints the testthat summary as a plain "N passed, N failed" line.
set -euo pipefail
dir="$1"
log="$dir/00check.log"
grep -E "^Status:" "$log"
out="$dir/tests/testthat.Rout"
[ -f "$out" ] || out="$dir/tests/testthat.Rout.fail"
if [ -f "$out" ]; then
  line=$(grep -E "\[ FAIL [0-9]+ \| WARN [0-9]+ \| SKIP [0-9]+ \| PASS [0-9]+ \]" "$out" | tail -n 1 || true)
  if [ -n "$line" ]; then
    fail=$(sed -E 's/.*FAIL ([0-9]+).*/\1/' <<<"$line")
    pass=$(sed -E 's/.*PASS ([0-9]+).*/\1/' <<<"$line")
    skip=$(sed -E 's/.*SKIP ([0-9]+).*/\1/' <<<"$line")
    echo "testthat: $pass passed, $fail failed, $skip skipped"
  fi
fi
if grep -qE "^Status:.*(ERROR|WARNING)" "$log"; then
  echo "R CMD check found errors or warnings:" >&2
  grep -E -A12 "\.\.\. (ERROR|WARNING)" "$log" >&2 || true
  exit 1
fi

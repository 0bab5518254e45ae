#!/usr/bin/env bash
# Runs every cargo-fuzz target of tests/fuzz for SECONDS each (libFuzzer).
# `make test` runs them briefly (FUZZ_SHORT_SECONDS), `make fuzz` long
# (FUZZ_SECONDS). Any crash, panic, failed oracle, timeout, leak or
# out-of-memory fails the run; the input is left in
# tests/fuzz/artifacts/<target>/ (replay it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz <target> <file>`).
#
#   ci/fuzz.sh SECONDS [TARGET...]
#
# The build is cached in tests/fuzz/target (first build: a few minutes),
# the growing corpora in tests/fuzz/corpus/<target> (both git-ignored); the
# committed seeds in tests/fuzz/seeds/<target> are read on every run.
#
# Limits: -rss_limit_mb=2048 (the whole process), -malloc_limit_mb=256 (any
# single allocation: unbounded allocation driven by input is a finding),
# -timeout=10 s per input.
set -euo pipefail
secs=${1:-10}
shift || true
cd "$(dirname "$0")/../tests/fuzz"

# cargo-fuzz passes nightly flags (-Zsanitizer, -Cpasses=sancov-module);
# the stable toolchain accepts them under RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
# libfuzzer-sys compiles libFuzzer (C++): use clang++ where there is no c++.
if [ -z "${CXX:-}" ] && ! command -v c++ >/dev/null 2>&1 && command -v clang++ >/dev/null 2>&1; then
  export CXX=clang++
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz 0.13.2 from crates.io"
  cargo install --locked --version 0.13.2 cargo-fuzz
fi

# Optimized, with debug assertions and overflow checks (cargo-fuzz's
# default without -O): an arithmetic overflow is a finding too.
build=(--fuzz-dir .)
if (($# > 0)); then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list --fuzz-dir .)
fi
if ((${#targets[@]} == 0)); then
  echo "fuzz: no targets" >&2
  exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$SECONDS
if ! cargo fuzz build "${build[@]}" >"$log" 2>&1; then
  tail -n 60 "$log" >&2
  echo "fuzz: build failed" >&2
  exit 1
fi
echo "fuzz: built ${#targets[@]} targets in $((SECONDS - start)) s"

failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  rc=0
  cargo fuzz run "${build[@]}" "$t" "corpus/$t" "${seeds[@]}" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=256 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$log" 2>&1 || rc=$?
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
  printf 'fuzz: %-15s %ss  %9s execs  %6s exec/s  corpus %5s  peak rss %s MB\n' \
    "$t" "$secs" "$(stat number_of_executed_units)" "$(stat average_exec_per_sec)" \
    "$(find "corpus/$t" -type f | wc -l)" "$(stat peak_rss_mb)"
  if ((rc != 0)); then
    echo "fuzz: $t FAILED (exit $rc); artifacts in tests/fuzz/artifacts/$t:"
    grep -E -A6 'panicked at|==[0-9]+==(ERROR|WARNING)|^SUMMARY|out-of-memory|Timeout|deadly signal' "$log" | head -n 60 || true
    grep -E -A2 '^Failing input' "$log" || true
    failed+=("$t")
  fi
done
if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz: ${#targets[@]} targets clean ($((SECONDS - start)) s)"

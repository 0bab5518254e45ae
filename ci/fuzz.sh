#!/usr/bin/env bash
# Runs every cargo-fuzz target in tests/fuzz for N seconds each (libFuzzer).
# `make test` runs them briefly; `make fuzz` runs them long. Any crash,
# panic, timeout or out-of-memory fails the run.
set -euo pipefail
secs=${1:-10}
cd "$(dirname "$0")/../tests/fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install -q cargo-fuzz --locked
fi
mapfile -t targets < <(cargo fuzz list 2>/dev/null)
if ((${#targets[@]} == 0)); then
  echo "fuzz: no targets" >&2
  exit 1
fi
for t in "${targets[@]}"; do
  corpus=corpus/$t
  mkdir -p "$corpus"
  [ -d "seeds/$t" ] && cp -n seeds/"$t"/* "$corpus"/ 2>/dev/null || true
  echo "fuzz: $t for ${secs}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run --release "$t" "$corpus" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 \
    | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|thread)' || true
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "fuzz: $t FAILED (artifacts in tests/fuzz/artifacts/$t)"; exit 1; }
done
echo "fuzz: ${#targets[@]} targets clean"

#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build for SECONDS each, starting from the committed seed
# corpus (new inputs go to BUILD/corpus/NAME, the seeds are not modified). Crashes are written to
# BUILD/crashes/ and make the script fail.
#   scripts/fuzz.sh build/fuzz 60
set -euo pipefail
build=${1:-build/fuzz}
seconds=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$build/crashes"
status=0
for bin in "$build"/tests/fuzz/fuzz_*; do
  [[ -x $bin ]] || continue
  name=$(basename "$bin")
  work="$build/corpus/$name"
  mkdir -p "$work"
  echo "== $name (${seconds}s)"
  if ! "$bin" "$work" "$root/tests/fuzz/corpus/$name" -max_total_time="$seconds" -max_len=65536 \
       -artifact_prefix="$build/crashes/$name-" -print_final_stats=1 2>"$build/$name.log"; then
    echo "!! $name found a crash: see $build/$name.log and $build/crashes/" >&2
    status=1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$build/$name.log" || true
done
exit $status

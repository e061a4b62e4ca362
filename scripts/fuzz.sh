#!/bin/sh
# Builds the libFuzzer targets (the fuzz preset: clang, ASan, UBSan) and runs each for SECONDS
# over its corpus in fuzz/corpus/<name>/. New interesting inputs go to build/fuzz/corpus/<name>/
# (not the checked-in seeds); a crash leaves its input in build/fuzz/crashes/ and fails the run.
#   scripts/fuzz.sh [SECONDS] [JOBS]     make test runs 10 s each, make fuzz 600 s each.
# FUZZ_SEED fixes libFuzzer's seed (make test sets one, so its short run does the same work on
# every machine: a slower one does a prefix of it); unset, each run draws its own. FUZZ_RUNS
# caps the executions of each target as well as SECONDS (make test sets it, so a faster machine
# does not go further than a slower one either).
# Prints, per target, the executions run and the corpus size, and the total.
set -eu
seconds=${1:-20}
jobs=${2:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
build="$root/build/fuzz"

cmake --preset fuzz >/dev/null
cmake --build "$build" -j "$jobs" --target fuzzers

mkdir -p "$build/crashes"
seed=""
if [ -n "${FUZZ_SEED:-}" ]; then seed="-seed=$FUZZ_SEED"; fi
if [ -n "${FUZZ_RUNS:-}" ]; then seed="$seed -runs=$FUZZ_RUNS"; fi
total=0
printf '%-20s %10s %8s %8s\n' target executions corpus seconds
for fuzzer in "$build"/bin/*_fuzzer; do
  name=$(basename "$fuzzer" _fuzzer)
  work="$build/corpus/$name"
  mkdir -p "$work"
  log="$build/$name.log"
  # shellcheck disable=SC2086 # $seed is zero, one or two flags
  if ! "$fuzzer" $seed -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$build/crashes/$name-" "$work" "$root/fuzz/corpus/$name" >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz: $name failed; the input is in $build/crashes/ (replay: $fuzzer <file>)" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  size=$(ls "$work" | wc -l)
  printf '%-20s %10s %8s %8s\n' "$name" "$runs" "$size" "$seconds"
  total=$((total + runs))
done
echo "fuzz: $total executions, no crash"

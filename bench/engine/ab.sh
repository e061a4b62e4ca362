#!/usr/bin/env bash
# A/B of the engine benchmark: a base revision against the working tree's build, alternated
# (A B B A A B B A ...) so that this machine's drift within the hour falls on both sides.
#
#   bench/engine/ab.sh <base-revision> <pairs> [kiln-engine-bench arguments...]
#   bench/engine/ab.sh main~3 2 --topology decoupled --only a,b --duration 8 --sequential 300
#
# The base is built in a worktree of its own (build/ab/<revision>, kept for the next run), each
# side's kiln-engine-bench and kiln-orchestrator are copied aside and run with KILN_BINARY_DIR
# pointing at them (so each benchmark starts its own orchestrator). The working tree's side is
# what `make build` last built. Prints each run's summary lines, labelled, in run order.
# A base's worktree and build take ~200 MB: `git worktree remove --force build/ab/<sha>` when done.
set -euo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
base_rev=$1
pairs=$2
shift 2
case "$pairs" in
  '' | *[!0-9]*) echo "ab.sh: pairs must be a number, got '$pairs'" >&2; exit 2 ;;
esac

top=$(git rev-parse --show-toplevel)
cd "$top"
base_sha=$(git rev-parse --verify --quiet "$base_rev^{commit}") ||
  { echo "ab.sh: no such revision: $base_rev" >&2; exit 2; }
head_bin=$top/build/release/bin
for b in kiln-engine-bench kiln-orchestrator; do
  [ -x "$head_bin/$b" ] || { echo "ab.sh: $head_bin/$b is missing: run make build first" >&2; exit 2; }
done

tree=$top/build/ab/${base_sha:0:12}
if [ ! -d "$tree" ]; then
  mkdir -p "$top/build/ab"
  git worktree add --detach "$tree" "$base_sha" >/dev/null
fi
echo "ab.sh: building the base ${base_sha:0:12} in $tree" >&2
(cd "$tree" && cmake --preset release >/dev/null &&
  cmake --build --preset release --target kiln-engine-bench kiln-orchestrator >/dev/null)

out=$(mktemp -d "${TMPDIR:-/tmp}/kiln-ab-XXXXXX")
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/base" "$out/head"
cp "$tree/build/release/bin/kiln-engine-bench" "$tree/build/release/bin/kiln-orchestrator" "$out/base/"
cp "$head_bin/kiln-engine-bench" "$head_bin/kiln-orchestrator" "$out/head/"

order=()
for ((i = 0; i < pairs; i++)); do
  if ((i % 2 == 0)); then order+=(base head); else order+=(head base); fi
done
echo "base = ${base_sha:0:12}, head = the working tree's build ($(git rev-parse --short HEAD)$(
  git diff --quiet HEAD || echo ', with changes')); order: ${order[*]}"
echo "arguments: $*"
for side in "${order[@]}"; do
  echo "== $side $(date -u +%H:%M:%S)"
  KILN_BINARY_DIR=$out/$side "$out/$side/kiln-engine-bench" "$@" 2>&1 |
    grep -E '^  [a-z]+: (sequential p50|throughput|CPU us per workflow)' || true
done

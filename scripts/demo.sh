#!/usr/bin/env bash
# The demo: runs the platform on its embedded defaults and shows it doing its job.
# Usage: scripts/demo.sh BIN_DIR
set -euo pipefail
bin=${1:?usage: demo.sh BIN_DIR}
work=$(mktemp -d /tmp/kiln-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

port=${KILN_DEMO_PORT:-7233}
metrics=${KILN_DEMO_METRICS_PORT:-9233}
address=127.0.0.1:$port

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Starting kiln-orchestrator (data in $work/data, gRPC $address, metrics :$metrics)"
"$bin/kiln-orchestrator" --data-dir "$work/data" --listen "$address" \
  --metrics "127.0.0.1:$metrics" >"$work/orchestrator.log" 2>&1 &
pids+=($!)

step "kiln health"
"$bin/kiln" --address "$address" health --timeout 20

step "kiln info"
"$bin/kiln" --address "$address" info

step "curl /metrics (first lines)"
curl -fsS "http://127.0.0.1:$metrics/metrics" | head -n 8

step "Stopping (SIGTERM) and the orchestrator's log"
kill -TERM "${pids[0]}"
wait "${pids[0]}"
pids=()
cat "$work/orchestrator.log"
step "Demo finished"

#!/usr/bin/env bash
# Temporal's TypeScript SDK on Kiln (docs/benchmarks.md, "Temporal's TypeScript SDK on Kiln"):
# starts kiln-orchestrator with --temporal-listen on a fresh data directory, runs
# temporal_ts_bench.js against it with node, and stops the orchestrator by its PID.
#   bench/temporal/run.sh [BIN_DIR]      env: SEQ_N DUR_S CONCS, NODE_MODULES
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${1:-$HERE/../../build/release/bin}
NODE_MODULES=${NODE_MODULES:-$HERE/../../build/deps/temporal/node_modules}
WORK=$(mktemp -d)
ORCH_PID=
cleanup() {
  if [ -n "$ORCH_PID" ]; then kill "$ORCH_PID" 2>/dev/null || true; wait "$ORCH_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
# A free port from the kernel: bind to 0, read it back.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
LISTEN=127.0.0.1:$(free_port)
TEMPORAL=127.0.0.1:$(free_port)
METRICS=127.0.0.1:$(free_port)
"$BIN/kiln-orchestrator" --data-dir "$WORK/data" --listen "$LISTEN" --metrics "$METRICS" \
  --temporal-listen "$TEMPORAL" >"$WORK/orchestrator.log" 2>&1 &
ORCH_PID=$!
for _ in $(seq 100); do
  grep -q orchestrator.serving "$WORK/orchestrator.log" 2>/dev/null && break
  sleep 0.1
done
grep -q orchestrator.serving "$WORK/orchestrator.log" || { cat "$WORK/orchestrator.log"; exit 1; }
mkdir -p "$WORK/project"
ln -s "$(cd "$NODE_MODULES" && pwd)" "$WORK/project/node_modules"
cp "$HERE/temporal_ts_bench.js" "$HERE/../../tests/temporal/one_activity.js" \
  "$HERE/../../tests/temporal/one_activity_workflow.js" "$WORK/project/"
echo "orchestrator $(readlink /proc/$ORCH_PID/exe) pid $ORCH_PID"
METRICS=$METRICS node "$WORK/project/temporal_ts_bench.js" "$TEMPORAL" "$(cat "$WORK/data/admin.token")" "$ORCH_PID"

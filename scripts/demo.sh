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
export KILN_ADDRESS=$address
kiln="$bin/kiln"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "kiln ${*}"; "$kiln" "$@"; }

step "Starting kiln-orchestrator (RocksDB in $work/data, gRPC $address, metrics :$metrics)"
"$bin/kiln-orchestrator" --data-dir "$work/data" --listen "$address" \
  --metrics "127.0.0.1:$metrics" >"$work/orchestrator.log" 2>&1 &
pids+=($!)
run health --timeout 20

step "Starting kiln-worker (sample workflows and activities on task queue 'samples')"
"$bin/kiln-worker" --orchestrator "$address" >"$work/worker.log" 2>&1 &
pids+=($!)

step "Hello: one activity"
run workflow start --id hello-demo --type Hello --task-queue samples --input '"Kiln"'
run workflow result --id hello-demo --timeout 30s

step "ThreeSteps: Upper -> Reverse -> Exclaim"
run workflow start --id steps-demo --type ThreeSteps --task-queue samples --input '"kiln"'
run workflow result --id steps-demo --timeout 30s

step "TimerParallel: a 2 s durable timer, then three activities at once (1+4+9)"
run workflow start --id timer-demo --type TimerParallel --task-queue samples --input 2
run workflow result --id timer-demo --timeout 30s

step "The timer workflow's history"
run workflow history --id timer-demo

step "Every workflow"
run workflow list

step "A few of the orchestrator's metrics"
curl -fsS "http://127.0.0.1:$metrics/metrics" | grep -E '^kiln_rpc_requests_total\{code="OK",method="(StartWorkflowExecution|PollWorkflowTaskQueue|RespondActivityTaskCompleted)"' || true

step "Stopping (SIGTERM)"
for pid in "${pids[@]}"; do kill -TERM "$pid"; done
for pid in "${pids[@]}"; do wait "$pid"; done
pids=()
tail -n 3 "$work/orchestrator.log"
step "Demo finished"

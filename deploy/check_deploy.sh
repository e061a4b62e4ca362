#!/usr/bin/env bash
# Checks deploy/ against the binaries it deploys (ctest: deploy_check; by hand:
# deploy/check_deploy.sh deploy build/release/bin):
#   1. the systemd units (templates, filled in as `cmake --install` does with BIN_DIR) pass
#      `systemd-analyze verify`;
#   2. every flag in the units and every KILN_* name in kiln.env, the units and the Containerfile
#      is one the binaries' --help lists;
#   3. the units' commands (ExecStartPre=, ExecStart=, EnvironmentFile= kiln.env) start
#      kiln-orchestrator and kiln-worker (only kiln.env's addresses and directories replaced by
#      free ports and a temporary directory), and
#   4. every metric the Grafana dashboard queries is in their real /metrics output (or, for a
#      family that shows no sample before its first event, named by a `.Name("…")` in the
#      sources the binaries are built from);
#   5. the Prometheus config parses and scrapes kiln.env's metrics addresses;
#   6. the Containerfile copies binaries the build makes and installs the packages of every
#      library they link.
# Every process it starts is stopped by PID on exit. tests/install/package_test.sh does 1 and 3
# for the units as the Debian package ships them; both use unit_commands.sh.
# shellcheck source-path=SCRIPTDIR
set -euo pipefail

DEPLOY_DIR=$(cd "${1:?usage: check_deploy.sh DEPLOY_DIR BIN_DIR}" && pwd)
BIN_DIR=$(cd "${2:?usage: check_deploy.sh DEPLOY_DIR BIN_DIR}" && pwd)
SOURCE_DIR=$(cd "$DEPLOY_DIR/.." && pwd)
UNITS=(kiln-orchestrator.service kiln-worker.service)
# Where the Containerfile puts the binaries.
INSTALL_BIN=/usr/local/bin
# shellcheck source=unit_commands.sh
. "$DEPLOY_DIR/unit_commands.sh"

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
note() { echo "check_deploy: $*"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kiln-deploy-check.XXXXXX")
PIDS=()
cleanup() {
  kiln_stop_pids "${PIDS[@]}" || true
  kiln_unmount_under "$WORK"
  rm -rf "$WORK"
}
trap cleanup EXIT

for b in kiln-orchestrator kiln-worker kiln-builder-agent kiln; do
  [[ -x "$BIN_DIR/$b" ]] || { echo "FAIL: $BIN_DIR/$b is not built" >&2; exit 1; }
done

# ---------------------------------------------------------------- 1. systemd-analyze verify
# Filled in with BIN_DIR, so verify finds the binaries, and with WORK/etc, where step 3 puts
# kiln.env.
mkdir -p "$WORK/units" "$WORK/etc/kiln"
cp "$DEPLOY_DIR/kiln.env" "$WORK/etc/kiln/kiln.env"
for u in "${UNITS[@]}"; do
  kiln_fill_unit "$DEPLOY_DIR/systemd/$u.in" "$BIN_DIR" "$WORK/etc" >"$WORK/units/$u"
  grep -qE "^ExecStart=@KILN_BINDIR@/${u%.service}( |\$)" "$DEPLOY_DIR/systemd/$u.in" ||
    fail "$u.in: ExecStart is not @KILN_BINDIR@/${u%.service}"
  grep -qxF "EnvironmentFile=@KILN_SYSCONFDIR@/kiln/kiln.env" "$DEPLOY_DIR/systemd/$u.in" ||
    fail "$u.in: EnvironmentFile is not @KILN_SYSCONFDIR@/kiln/kiln.env"
done
verify=0
kiln_verify_units "$WORK" "${UNITS[@]/#/$WORK/units/}" || verify=$?
case $verify in
  0) note "systemd-analyze verify: ${UNITS[*]} clean" ;;
  1) fail "systemd-analyze verify (above)" ;;
  *)
    # Fallback: each line is a comment, a section or Key=Value in a known section.
    note "systemd-analyze verify cannot run here; parsing the units instead"
    for u in "${UNITS[@]}"; do
      awk -v f="$u" '/^[[:space:]]*(#|$)/ {next} /^\[(Unit|Service|Install)\]$/ {next}
        /^[A-Za-z]+=/ {next} {print f ": bad line " NR ": " $0; bad=1} END {exit bad}' \
        "$WORK/units/$u" || fail "$u does not parse"
    done
    ;;
esac

# ---------------------------------------------------------------- 2. flags and env names
"$BIN_DIR/kiln-orchestrator" --help >"$WORK/help.kiln-orchestrator"
"$BIN_DIR/kiln-worker" --help >"$WORK/help.kiln-worker"
for u in "${UNITS[@]}"; do
  binary=${u%.service}
  for flag in $(grep -E '^ExecStart=' "$WORK/units/$u" | grep -oE '(^|[[:space:]])--[a-z0-9-]+' || true); do
    grep -qE -- "(^|[ ,])$flag( |=|,|$)" "$WORK/help.$binary" || fail "$u: $binary has no flag $flag"
  done
done
env_names=$(
  {
    grep -ohE '^#?KILN_[A-Z0-9_]+=' "$DEPLOY_DIR/kiln.env"
    grep -ohE '^Environment=.*' "$WORK"/units/*.service | grep -oE 'KILN_[A-Z0-9_]+=' || true
    sed -n '/^ENV /,/^[^ ]/p' "$DEPLOY_DIR/Containerfile" | grep -oE 'KILN_[A-Z0-9_]+=' || true
  } | tr -d '#=' | sort -u
)
checked=0
for name in $env_names; do
  checked=$((checked + 1))
  grep -q "(Env:$name)" "$WORK/help.kiln-orchestrator" "$WORK/help.kiln-worker" ||
    fail "$name is not an environment variable of kiln-orchestrator or kiln-worker"
done
note "$checked KILN_* names known to the binaries' --help"

# ---------------------------------------------------------------- 3. start both with kiln.env
# As systemd would run the units (kiln_start_unit), with kiln.env's addresses and directories
# replaced (kiln_test_overrides); the variables stay set here for the steps below.
kiln_test_overrides "$WORK"
export "${KILN_TEST_OVERRIDES[@]}"
kiln_start_unit "$WORK/units/kiln-orchestrator.service" "" "$WORK/orchestrator.log" "${KILN_TEST_OVERRIDES[@]}"
PIDS+=("$KILN_UNIT_PID")
if ! kiln_wait_http "http://$KILN_METRICS/metrics" 30 "$KILN_UNIT_PID"; then
  tail -20 "$WORK/orchestrator.log" >&2
  echo "FAIL: kiln-orchestrator did not start from its unit with kiln.env" >&2
  exit 1
fi
kiln_start_unit "$WORK/units/kiln-worker.service" "" "$WORK/worker.log" "${KILN_TEST_OVERRIDES[@]}"
PIDS+=("$KILN_UNIT_PID")
if ! kiln_wait_http "http://$KILN_WORKER_METRICS/metrics" 30 "$KILN_UNIT_PID"; then
  tail -20 "$WORK/worker.log" >&2
  echo "FAIL: kiln-worker did not start from its unit with kiln.env" >&2
  exit 1
fi
note "kiln-orchestrator and kiln-worker started from their units with kiln.env"

# A builder agent with /metrics, as an operator runs one (prometheus.yml's third job).
agent_metrics="127.0.0.1:$(kiln_free_port)"
agent_token=$("$BIN_DIR/kiln-orchestrator" token --scope agent --project deploy-check --ttl 10m 2>/dev/null)
KILN_TOKEN=$agent_token "$BIN_DIR/kiln-builder-agent" --orchestrator "$KILN_LISTEN" \
  --project deploy-check --volume "$WORK/volume" --idle-grace 600 \
  --metrics-listen "$agent_metrics" >"$WORK/agent.log" 2>&1 &
PIDS+=($!)
agent_pid=$!
kiln_wait_http "http://$agent_metrics/metrics" 30 "$agent_pid" ||
  { tail -20 "$WORK/agent.log" >&2; fail "kiln-builder-agent did not serve /metrics"; }

# Some work, so the per-method and per-queue families have samples: RPCs, and the sample
# workflow `Hello` (one activity) on kiln-worker, waited for by `kiln workflow result`.
kiln_cli() { "$BIN_DIR/kiln" --address "$KILN_LISTEN" --token-file "$KILN_DATA_DIR/admin.token" "$@"; }
kiln_cli info >/dev/null 2>&1 || fail "kiln info failed against the started orchestrator"
kiln_cli workflow start --id deploy-check --type Hello --task-queue samples --input '"deploy"' \
  >/dev/null 2>&1 || fail "kiln workflow start Hello failed"
timeout 30 "$BIN_DIR/kiln" --address "$KILN_LISTEN" --token-file "$KILN_DATA_DIR/admin.token" \
  workflow result --id deploy-check >/dev/null 2>&1 || fail "the sample workflow Hello did not complete"

# ---------------------------------------------------------------- 4. dashboard metrics
for target in "$KILN_METRICS" "$KILN_WORKER_METRICS" "$agent_metrics"; do
  curl -fsS "http://$target/metrics" 2>/dev/null || true
done >"$WORK/metrics.txt"
grep -vE '^(#|$)' "$WORK/metrics.txt" | sed -E 's/[{ ].*//' | sort -u >"$WORK/scraped"
sed -nE 's/^# TYPE ([a-zA-Z0-9_:]+) .*/\1/p' "$WORK/metrics.txt" | sort -u >"$WORK/declared"
dashboard_metrics=$(jq -r '.. | objects | .expr? // empty' "$DEPLOY_DIR/grafana/kiln.json" |
  sed -E 's/"[^"]*"//g' | grep -oE '\bkiln_[a-z0-9_]+' | sort -u)
[[ -n "$dashboard_metrics" ]] || fail "no kiln_ metric in the dashboard's queries"
scraped=0
declared=0
registered=0
for m in $dashboard_metrics; do
  if grep -qxF "$m" "$WORK/scraped"; then
    scraped=$((scraped + 1))
    continue
  fi
  # A labelled family has no sample until its first event (an error, a build step, a workflow
  # task): then /metrics declares it (# TYPE) or, for some families, not even that, and its name
  # must at least be one the binaries register.
  family=$(sed -E 's/_(bucket|sum|count)$//' <<<"$m")
  if grep -qxF "$family" "$WORK/declared"; then
    declared=$((declared + 1))
  # Not the binaries' bytes: an optimised build may assemble a name's literal from pieces.
  elif grep -rqF --include='*.cc' --include='*.h' ".Name(\"$family\")" \
    "$SOURCE_DIR"/orchestrator "$SOURCE_DIR"/worker "$SOURCE_DIR"/builder-agent \
    "$SOURCE_DIR"/sdk "$SOURCE_DIR"/common; then
    registered=$((registered + 1))
    note "$m: no sample yet, family $family registered in the sources"
  else
    fail "dashboard metric $m is neither in /metrics nor registered in the sources"
  fi
done
note "dashboard: $scraped metrics with samples, $declared declared without one yet, $registered only registered in the sources"
python3 "$DEPLOY_DIR/check_dashboard_labels.py" "$DEPLOY_DIR/grafana/kiln.json" "$WORK/metrics.txt" ||
  fail "dashboard labels"

# ---------------------------------------------------------------- 5. prometheus.yml
prom="$DEPLOY_DIR/prometheus/prometheus.yml"
# shellcheck source=kiln.env
. "$DEPLOY_DIR/kiln.env"  # the addresses as shipped, not the test's
if python3 -c 'import yaml' 2>/dev/null; then
  python3 - "$prom" "$KILN_METRICS" "$KILN_WORKER_METRICS" <<'EOF' || fail "prometheus.yml"
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
jobs = {}
for sc in config["scrape_configs"]:
    assert isinstance(sc["job_name"], str)
    targets = [t for s in sc["static_configs"] for t in s["targets"]]
    assert targets and all(":" in t for t in targets), sc
    jobs[sc["job_name"]] = targets
assert sys.argv[2] in jobs["kiln-orchestrator"], "orchestrator target is not KILN_METRICS"
assert sys.argv[3] in jobs["kiln-worker"], "worker target is not KILN_WORKER_METRICS"
assert "kiln-builder-agent" in jobs
print("check_deploy: prometheus.yml parses (PyYAML), jobs:", ", ".join(sorted(jobs)))
EOF
else
  note "PyYAML missing: a structural check of prometheus.yml only"
  grep -q '^scrape_configs:$' "$prom" || fail "prometheus.yml: no scrape_configs"
  grep -qF "\"$KILN_METRICS\"" "$prom" || fail "prometheus.yml does not scrape $KILN_METRICS"
  grep -qF "\"$KILN_WORKER_METRICS\"" "$prom" || fail "prometheus.yml does not scrape $KILN_WORKER_METRICS"
  if grep -nP '\t' "$prom"; then fail "prometheus.yml has tabs"; fi
fi

# ---------------------------------------------------------------- 6. Containerfile
cf="$DEPLOY_DIR/Containerfile"
copies=$(grep -E '^COPY ' "$cf" || true)
[[ -n "$copies" ]] || fail "Containerfile copies nothing"
while read -r _ rest; do
  read -ra args <<<"$rest"
  dest=${args[-1]}
  [[ "$dest" == "$INSTALL_BIN/" ]] || fail "Containerfile copies to $dest, not $INSTALL_BIN/"
  for src in "${args[@]:0:${#args[@]}-1}"; do
    # bin/ is CMake's default CMAKE_INSTALL_BINDIR and the build tree's output directory.
    [[ "$src" == bin/* && -x "$BIN_DIR/${src#bin/}" ]] || fail "Containerfile COPY $src is not a built binary"
  done
done <<<"$copies"
grep -q "ENTRYPOINT \[\"$INSTALL_BIN/kiln-orchestrator\"\]" "$cf" || fail "Containerfile ENTRYPOINT"
if command -v dpkg >/dev/null && command -v readelf >/dev/null; then
  installed=$(sed -n '/apt-get install/,/&&/p' "$cf" | sed 's/[\\]$//' | tr ' ' '\n' | grep -E '^[a-z0-9][a-z0-9.+-]+$' || true)
  base_image="libc6 libgcc-s1 libstdc++6"
  for b in kiln-orchestrator kiln-worker kiln-builder-agent kiln; do
    readelf -d "$BIN_DIR/$b" | sed -nE 's/.*NEEDED.*\[(.*)\]/\1/p'
  done | sort -u >"$WORK/needed"
  while read -r so; do
    path=$(ldconfig -p | awk -v so="$so" '$1 == so && !found {print $NF; found = 1}')
    [[ -n "$path" ]] || { fail "$so: not found by ldconfig"; continue; }
    pkg=""
    for p in "$path" "$(readlink -f "$path")" "${path#/usr}" "$(readlink -f "$path" | sed 's|^/usr||')"; do
      pkg=$(dpkg -S "$p" 2>/dev/null | awk -F: 'NR == 1 {print $1}') && [[ -n "$pkg" ]] && break
    done
    [[ -n "$pkg" ]] || { fail "$so: no Debian package owns $path"; continue; }
    grep -qxF "$pkg" <<<"$installed" || [[ " $base_image " == *" $pkg "* ]] ||
      fail "Containerfile does not install $pkg (for $so)"
  done <"$WORK/needed"
  note "Containerfile: COPY sources built; packages cover $(wc -l <"$WORK/needed") linked libraries"
else
  note "dpkg or readelf missing: the Containerfile's packages are not checked"
fi

if ((failures)); then
  echo "check_deploy: $failures failure(s)" >&2
  exit 1
fi
note "all checks passed"

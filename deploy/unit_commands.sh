# shellcheck shell=bash
# Sourced by deploy/check_deploy.sh and tests/install/package_test.sh: runs what the systemd units
# run, without systemd (the tests' containers have none), and checks the units with
# `systemd-analyze verify`. Bash; the caller sets -euo pipefail.
#
# kiln_start_unit reads ExecStartPre=, ExecStart=, Environment= and EnvironmentFile= from a unit
# file, the way systemd would for these units: it refuses what it does not imitate ($VAR
# expansion, % specifiers, ExecStart prefixes other than "-") rather than run something else.

# A free TCP port on 127.0.0.1.
kiln_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# kiln_wait_until SECONDS PID COMMAND...: runs COMMAND until it succeeds; fails when PID exits or
# SECONDS pass first.
kiln_wait_until() {
  local deadline=$((SECONDS + $1)) pid=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || return 1
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

# kiln_wait_http URL SECONDS PID: until URL answers 2xx.
kiln_wait_http() {
  kiln_wait_until "$2" "$3" curl -fsS -o /dev/null "$1"
}

# shellcheck disable=SC2034  # (the caller's variables)
# kiln_test_overrides WORK: sets, in the caller's shell, the kiln.env values a test must not take
# as shipped (addresses: free loopback ports; directories: under WORK), and KILN_TEST_OVERRIDES,
# the same as NAME=VALUE words for kiln_start_unit. Everything else stays kiln.env's.
kiln_test_overrides() {
  local work=$1
  KILN_DATA_DIR="$work/orchestrator"
  KILN_AUTH_KEY_FILE="$work/orchestrator/auth.key"
  KILN_LISTEN="127.0.0.1:$(kiln_free_port)"
  KILN_METRICS="127.0.0.1:$(kiln_free_port)"
  KILN_ORCHESTRATOR="$KILN_LISTEN"
  KILN_WORKER_DATA_DIR="$work/worker"
  KILN_WORKER_LISTEN="127.0.0.1:$(kiln_free_port)"
  KILN_WORKER_HTTP="127.0.0.1:$(kiln_free_port)"
  KILN_WORKER_METRICS="127.0.0.1:$(kiln_free_port)"
  KILN_TEST_OVERRIDES=()
  local name
  for name in KILN_DATA_DIR KILN_AUTH_KEY_FILE KILN_LISTEN KILN_METRICS KILN_ORCHESTRATOR \
    KILN_WORKER_DATA_DIR KILN_WORKER_LISTEN KILN_WORKER_HTTP KILN_WORKER_METRICS; do
    KILN_TEST_OVERRIDES+=("$name=${!name}")
  done
}

# kiln_unit_lines UNIT KEY: one line per KEY= setting of the unit's [Service] section that is
# still in effect (an empty KEY= resets the list, as in systemd): "<flags> <argv>", argv quoted
# for eval, flags "-" (failure ignored, or file optional) or "_".
kiln_unit_lines() {
  python3 - "$1" "$2" <<'EOF'
import shlex, sys
unit, key = sys.argv[1], sys.argv[2]
section, lines = None, []
for raw in open(unit):
    line = raw.strip()
    if not line or line[0] in "#;":
        continue
    if line.endswith("\\"):
        sys.exit(f"{unit}: continued lines are not read here: {line}")
    if line.startswith("["):
        section = line
        continue
    name, _, value = line.partition("=")
    if section != "[Service]" or name.strip() != key:
        continue
    value = value.strip()
    if not value:
        lines = []
        continue
    flags = ""
    while value and value[0] in "-@:+!":
        flags, value = flags + value[0], value[1:]
    if flags not in ("", "-"):
        sys.exit(f"{unit}: {key}={flags}...: only the prefix '-' is imitated here")
    if "$" in value.replace("$$", "") or "%" in value.replace("%%", ""):
        sys.exit(f"{unit}: {key}: systemd's $VAR and % expansion are not imitated here: {value}")
    words = [w.replace("$$", "$").replace("%%", "%") for w in shlex.split(value)]
    lines.append((flags or "_") + " " + " ".join(shlex.quote(w) for w in words))
print("\n".join(lines))
EOF
}

# shellcheck disable=SC2034  # (KILN_UNIT_PID is the caller's)
# kiln_start_unit UNIT ROOT LOG [NAME=VALUE...]: starts what UNIT runs, in the background, with
# output to LOG; sets KILN_UNIT_PID (the ExecStart= process once ExecStartPre= has passed). ROOT
# is where the unit's files are ("" for /): EnvironmentFile= and each command's binary are taken
# under ROOT when they are there (the package's /usr/bin/kiln-worker), from the host otherwise
# (/bin/sh). The environment is Environment=, then EnvironmentFile= (which wins, as in systemd),
# then the NAME=VALUE overrides.
kiln_start_unit() {
  local unit=$1 root=$2 log=$3
  shift 3
  local environment env_files pre start
  environment=$(kiln_unit_lines "$unit" Environment)
  env_files=$(kiln_unit_lines "$unit" EnvironmentFile)
  pre=$(kiln_unit_lines "$unit" ExecStartPre)
  start=$(kiln_unit_lines "$unit" ExecStart)
  if [[ $(grep -c . <<<"$start") != 1 ]]; then
    echo "$unit: not one ExecStart= (Type=simple)" >&2
    return 1
  fi
  (
    local flags line file argv
    while read -r flags line; do
      eval "argv=($line)"
      export "${argv[@]}"
    done < <(grep . <<<"$environment" || true)
    while read -r flags line; do
      eval "argv=($line)"
      file=$root${argv[0]}
      if [[ ! -f "$file" ]]; then
        [[ "$flags" == - ]] && continue
        echo "$unit: EnvironmentFile $file is missing" >&2
        exit 1
      fi
      set -a
      # shellcheck disable=SC1090
      . "$file"
      set +a
    done < <(grep . <<<"$env_files" || true)
    # shellcheck disable=SC2163  # (NAME=VALUE words)
    (($# == 0)) || export "$@"
    while read -r flags line; do
      eval "argv=($line)"
      [[ -x "$root${argv[0]}" ]] && argv[0]=$root${argv[0]}
      "${argv[@]}" || [[ "$flags" == - ]] || { echo "$unit: ExecStartPre failed: ${argv[*]}" >&2; exit 1; }
    done < <(grep . <<<"$pre" || true)
    read -r flags line <<<"$start"
    eval "argv=($line)"
    [[ -x "$root${argv[0]}" ]] && argv[0]=$root${argv[0]}
    exec "${argv[@]}"
  ) >"$log" 2>&1 &
  KILN_UNIT_PID=$!
}

# kiln_stop_pids PID...: SIGTERM (each binary's clean stop), waits, and kills what is left after
# 30 s. Returns nonzero when any exited by signal or with a failure status.
kiln_stop_pids() {
  local pid status=0 deadline=$((SECONDS + 30))
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || status=$?
  done
  return $status
}

# kiln_unmount_under DIR: kiln-worker's podman deploy target leaves its storage's overlay
# directory mounted (as tests/testutil's TempDir finds): unmount what is under DIR, deepest first.
kiln_unmount_under() {
  awk -v dir="$1/" 'index($2, dir) == 1 {print $2}' /proc/self/mounts | sort -r |
    while read -r mount; do umount -l "$mount" 2>/dev/null || true; done
}

# kiln_verify_units WORK UNIT_FILE...: `systemd-analyze verify`. It exits 0 on unknown keys and
# bad values, printing a line for each: the check is that it prints nothing. Returns 2 when it
# cannot run here (missing, or a container lacks what it loads: then it does not flag a misspelt
# key, which is probed first).
kiln_verify_units() {
  local work=$1 probe out
  shift
  command -v systemd-analyze >/dev/null || return 2
  printf '[Service]\nExecStart=/bin/true\nProtectSystm=strict\n' >"$work/probe.service"
  # (Output captured first: `| grep -q` would end the pipe early, and pipefail fail it.)
  probe=$(systemd-analyze verify "$work/probe.service" 2>&1 || true)
  [[ "$probe" == *ProtectSystm* ]] || return 2
  out=$(systemd-analyze verify "$@" 2>&1) || { echo "$out" >&2; return 1; }
  [[ -z "$out" ]] || { echo "$out" >&2; return 1; }
}

# kiln_fill_unit TEMPLATE BINDIR SYSCONFDIR: the unit as cmake/KilnInstallUnits.cmake installs it.
kiln_fill_unit() {
  sed -e "s|@KILN_BINDIR@|$2|g" -e "s|@KILN_SYSCONFDIR@|$3|g" "$1"
}

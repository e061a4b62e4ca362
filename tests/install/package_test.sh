#!/bin/bash
# The Debian package (cpack -G DEB), as an operator gets it:
#   1. it holds the four binaries in /usr/bin, the two systemd units in /lib/systemd/system
#      (naming /usr/bin and /etc/kiln/kiln.env) and /etc/kiln/kiln.env as a conffile;
#   2. its Depends (from dpkg-shlibdeps) name the shared libraries the binaries link, and
#      `apt-get install --simulate` says it would install here;
#   3. its maintainer scripts parse (sh -n, and shellcheck where installed) and do what they say,
#      run against stubs: each time with a stub systemctl first in PATH, once with DPKG_ROOT set
#      (dpkg --root: no systemctl at all) and, where `unshare --mount` works, once in a mount
#      namespace whose /run has systemd/system (systemd "running": the calls land in the stub).
#      Nothing touches the host's systemd or users;
#   4. the units as shipped pass `systemd-analyze verify` (ExecStart pointed at the unpacked
#      binaries, which are not in /usr/bin here);
#   5. unpacked into a temporary root (dpkg-deb -x), the units' commands start: ExecStartPre=,
#      ExecStart= and EnvironmentFile= read from the shipped units, the package's binaries and
#      kiln.env, with only addresses and directories replaced by free loopback ports and
#      temporary directories. kiln-orchestrator first, until `kiln health` answers; then
#      kiln-worker, until its /healthz answers; the packaged `kiln info` works with the
#      orchestrator's admin.token; both stop cleanly on SIGTERM (by PID).
# Usage: package_test.sh <kiln build dir>
set -euo pipefail
build_dir=$(cd "$1" && pwd)
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR/../.. source=deploy/unit_commands.sh
. "$here/../../deploy/unit_commands.sh"
work=$build_dir/package-test
root=$work/root
pids=()
cleanup() {
  status=$?
  kiln_stop_pids "${pids[@]}" || true
  kiln_unmount_under "$work"
  if [ $status -eq 0 ]; then
    rm -rf "$work"
  else
    echo "package test failed (status $status); logs in $work" >&2
  fi
  return $status
}
trap cleanup EXIT
rm -rf "$work"
mkdir -p "$root"
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# ---------------------------------------------------------------- 1. contents
cpack --config "$build_dir/CPackConfig.cmake" -G DEB -B "$work" >"$work/cpack.log"
deb=$(ls "$work"/kiln_*.deb)
echo "package: $(basename "$deb"), $(stat -c %s "$deb") bytes"

files=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sort | tr '\n' ' ')
expected="./etc/kiln/kiln.env ./lib/systemd/system/kiln-orchestrator.service \
./lib/systemd/system/kiln-worker.service ./usr/bin/kiln ./usr/bin/kiln-builder-agent \
./usr/bin/kiln-orchestrator ./usr/bin/kiln-worker "
[ "$files" = "$expected" ] || fail "package files: $files; expected: $expected"

dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$work/control"
for binary in kiln-orchestrator kiln-worker kiln-builder-agent kiln; do
  "$root/usr/bin/$binary" --version
done
[ "$(cat "$work/control/conffiles")" = /etc/kiln/kiln.env ] || fail "conffiles: $(cat "$work/control/conffiles")"
cmp "$root/etc/kiln/kiln.env" "$here/../../deploy/kiln.env" || fail "/etc/kiln/kiln.env is not deploy/kiln.env"
for unit in kiln-orchestrator kiln-worker; do
  shipped=$root/lib/systemd/system/$unit.service
  # The install rule and kiln_fill_unit (check_deploy.sh's) fill the template in the same way.
  kiln_fill_unit "$here/../../deploy/systemd/$unit.service.in" /usr/bin /etc | cmp - "$shipped" ||
    fail "$unit.service is not its template filled in with /usr/bin and /etc"
  grep -qx "ExecStart=/usr/bin/$unit" "$shipped" || fail "$unit.service: ExecStart is not /usr/bin/$unit"
  grep -qx "EnvironmentFile=/etc/kiln/kiln.env" "$shipped" || fail "$unit.service: EnvironmentFile"
done
echo "contents: the binaries, the units naming /usr/bin and /etc/kiln/kiln.env, kiln.env a conffile"

# ---------------------------------------------------------------- 2. dependencies
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for library in libgrpc++ libprotobuf librocksdb libgit2 libabsl libssl; do
  grep -q "$library" <<<"$depends" || fail "Depends does not name $library"
done
# Each dependency (name before any version) is installed here, and apt would install the package.
for package in $(tr ',' '\n' <<<"$depends" | awk '{print $1}'); do
  dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q '^install ok installed' ||
    fail "dependency $package is not installed on this machine"
done
if ! simulated=$(apt-get install --simulate --no-install-recommends "$deb" 2>&1); then
  echo "$simulated" >&2
  fail "apt-get install --simulate refused the package"
fi
grep -q '^Inst kiln ' <<<"$simulated" || { echo "$simulated" >&2; fail "apt-get would not install kiln"; }
echo "apt-get install --simulate: $(grep -c '^Inst ' <<<"$simulated") package(s) to install, kiln among them"

# ---------------------------------------------------------------- 3. maintainer scripts
scripts=(postinst prerm postrm)
for script in "${scripts[@]}"; do
  [ -x "$work/control/$script" ] || fail "$script is missing or not executable"
  sh -n "$work/control/$script" || fail "$script does not parse"
done
if command -v shellcheck >/dev/null; then
  shellcheck -s sh "${scripts[@]/#/$work/control/}" || fail "shellcheck of the maintainer scripts"
else
  echo "shellcheck missing: the maintainer scripts are only parsed (sh -n)"
fi
# A stub systemctl that records its arguments; PATH holds it first, so no call reaches systemd.
mkdir -p "$work/stubs"
printf '#!/bin/sh\necho "systemctl $*" >>"%s"\n' "$work/systemctl.calls" >"$work/stubs/systemctl"
chmod +x "$work/stubs/systemctl"
# run_script DPKG_ROOT SCRIPT ARGS...: the calls it made, one per line.
run_script() {
  local dpkg_root=$1 script=$2
  shift 2
  : >"$work/systemctl.calls"
  DPKG_ROOT=$dpkg_root PATH="$work/stubs:$PATH" sh "$work/control/$script" "$@" ||
    fail "$script $* exited with $?"
  cat "$work/systemctl.calls"
}
# dpkg --root: no systemctl call, whatever the host runs; purge removes the enablement links.
for call in "postinst configure" "postinst configure 0.0.1" "prerm remove" "prerm upgrade 0.2.0" \
  "postrm remove" "postrm purge"; do
  # shellcheck disable=SC2086  # (script and arguments)
  calls=$(run_script "$root" $call)
  [ -z "$calls" ] || fail "$call with DPKG_ROOT called: $calls"
done
wants=$root/etc/systemd/system/multi-user.target.wants
mkdir -p "$wants"
ln -sf /lib/systemd/system/kiln-worker.service "$wants/kiln-worker.service"
run_script "$root" postrm purge >/dev/null
if [ -e "$wants/kiln-worker.service" ] || [ -L "$wants/kiln-worker.service" ]; then
  fail "postrm purge left the unit's enablement link"
fi
# systemd running: a mount namespace of this test only, whose /run is empty but for
# systemd/system (unshare makes the mounts private: the host's /run is untouched).
if unshare --mount sh -c 'mount -t tmpfs kiln-test /run' 2>/dev/null; then
  expect() {  # "SCRIPT ARGS" EXPECTED_CALLS
    local got
    # shellcheck disable=SC2016,SC2086  # ($CALLS: the inner shell's; ${1#* }: the arguments)
    got=$(unshare --mount env PATH="$work/stubs:$PATH" DPKG_ROOT= CALLS="$work/systemctl.calls" \
      sh -c 'mount -t tmpfs kiln-test /run && mkdir -p /run/systemd/system && : >"$CALLS" &&
        sh "$0" "$@" && cat "$CALLS"' "$work/control/${1%% *}" ${1#* })
    [ "$got" = "$2" ] || fail "$1 with systemd running: calls '$got', expected '$2'"
  }
  reload="systemctl --system daemon-reload"
  expect "postinst configure" "$reload"
  expect "postinst configure 0.0.1" "$reload
systemctl try-restart kiln-orchestrator.service kiln-worker.service"
  expect "prerm remove" "systemctl stop kiln-worker.service kiln-orchestrator.service"
  expect "prerm upgrade 0.2.0" ""
  expect "postrm remove" "$reload"
  echo "maintainer scripts: with systemd running they reload, restart on upgrade, stop on removal; never enable or start"
else
  echo "unshare --mount cannot run here: the scripts' calls with systemd running are not checked"
fi

# ---------------------------------------------------------------- 4. systemd-analyze verify
mkdir -p "$work/verify"
for unit in kiln-orchestrator kiln-worker; do
  sed "s|^ExecStart=/usr/bin/|ExecStart=$root/usr/bin/|" "$root/lib/systemd/system/$unit.service" \
    >"$work/verify/$unit.service"
done
verify=0
kiln_verify_units "$work" "$work/verify/kiln-orchestrator.service" "$work/verify/kiln-worker.service" ||
  verify=$?
case $verify in
  0) echo "systemd-analyze verify: the shipped units are clean" ;;
  1) fail "systemd-analyze verify of the shipped units (above)" ;;
  *) echo "systemd-analyze verify cannot run here: the shipped units are not verified" ;;
esac

# ---------------------------------------------------------------- 5. start the units' commands
kiln_test_overrides "$work/state"
units=$root/lib/systemd/system
kiln=("$root/usr/bin/kiln" --address "$KILN_LISTEN")
started=$SECONDS
kiln_start_unit "$units/kiln-orchestrator.service" "$root" "$work/orchestrator.log" "${KILN_TEST_OVERRIDES[@]}"
orchestrator_pid=$KILN_UNIT_PID
pids+=("$orchestrator_pid")
kiln_wait_until 30 "$orchestrator_pid" "${kiln[@]}" health --timeout 1 || {
  tail -20 "$work/orchestrator.log" >&2
  fail "kiln-orchestrator from the package did not answer kiln health"
}
kiln_start_unit "$units/kiln-worker.service" "$root" "$work/worker.log" "${KILN_TEST_OVERRIDES[@]}"
worker_pid=$KILN_UNIT_PID
pids+=("$worker_pid")
kiln_wait_http "http://$KILN_WORKER_HTTP/healthz" 30 "$worker_pid" || {
  tail -20 "$work/worker.log" >&2
  fail "kiln-worker from the package did not answer /healthz"
}
echo "the units' commands started from the package in $((SECONDS - started)) s"
info=$("${kiln[@]}" --token-file "$KILN_DATA_DIR/admin.token" info) || fail "kiln info"
grep -qF "$KILN_DATA_DIR" <<<"$info" || fail "kiln info does not name the data directory: $info"
# kiln.env's own settings reached the binaries: it sets KILN_LOG_FORMAT=json.
grep -q '^{' "$work/orchestrator.log" || fail "kiln-orchestrator's log is not JSON (kiln.env not read)"
pids=()
kiln_stop_pids "$worker_pid" "$orchestrator_pid" || fail "kiln-worker or kiln-orchestrator did not stop cleanly on SIGTERM"
echo "both stopped cleanly on SIGTERM"

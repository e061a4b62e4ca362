#!/bin/bash
# Kiln installed and used from outside its tree: `cmake --install` of the build into a prefix,
# the installed binaries answer --version, the installed systemd units name the prefix's binaries
# and kiln.env, a project outside the tree finds the SDK with find_package(Kiln) and builds a
# worker, and that worker completes a workflow against the installed kiln-orchestrator.
# Usage: install_test.sh <kiln build dir> <dir of the outside project's templates>
set -euo pipefail
build_dir=$(cd "$1" && pwd)
templates=$(cd "$2" && pwd)
# A fixed directory under the build tree rather than mktemp: ccache (base_dir /work) then sees
# the same paths on every run, so the outside build is a cache hit after the first.
work=$build_dir/install-test
prefix=$work/prefix
orchestrator_pid=
cleanup() {
  status=$?
  if [ -n "$orchestrator_pid" ]; then
    kill -TERM "$orchestrator_pid" 2>/dev/null || true
    wait "$orchestrator_pid" 2>/dev/null || true
  fi
  if [ $status -eq 0 ]; then
    rm -rf "$work"
  else
    echo "install test failed (status $status); orchestrator log:" >&2
    tail -n 30 "$work/orchestrator.log" >&2 2>/dev/null || true
  fi
}
trap cleanup EXIT
rm -rf "$work"
mkdir -p "$work/src" "$work/data"

cmake --install "$build_dir" --prefix "$prefix" >"$work/install.log"
for binary in kiln-orchestrator kiln-worker kiln-builder-agent kiln; do
  "$prefix/bin/$binary" --version
done
# The SDK and nothing of the tests.
test -f "$prefix/lib/cmake/Kiln/KilnConfig.cmake"
test -f "$prefix/include/sdk/workflow_worker.h"
test -f "$prefix/include/kiln/api/v1/workflow_service.proto"
# The systemd units and kiln.env stay under a prefix other than /usr, naming where it put them.
for unit in kiln-orchestrator kiln-worker; do
  grep -qx "ExecStart=$prefix/bin/$unit" "$prefix/lib/systemd/system/$unit.service"
  grep -qx "EnvironmentFile=$prefix/etc/kiln/kiln.env" "$prefix/lib/systemd/system/$unit.service"
done
test -f "$prefix/etc/kiln/kiln.env"
if find "$prefix" -name '*testutil*' -o -name '*_test*' -o -name '*bench*' | grep .; then
  echo "test or bench files were installed" >&2
  exit 1
fi

cp "$templates/CMakeLists.txt.in" "$work/src/CMakeLists.txt"
cp "$templates/main.cc.in" "$work/src/main.cc"
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
generator=()
if command -v ninja >/dev/null; then
  generator=(-G Ninja)
fi
cmake -S "$work/src" -B "$work/build" "${generator[@]}" "${launcher[@]}" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >"$work/configure.log"
cmake --build "$work/build" -j2 >"$work/build.log"

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
address=127.0.0.1:$(free_port)
"$prefix/bin/kiln-orchestrator" --data-dir "$work/data" --listen "$address" \
  --metrics "127.0.0.1:$(free_port)" >"$work/orchestrator.log" 2>&1 &
orchestrator_pid=$!
# Ready when the installed CLI's health check passes (20 s at most).
deadline=$((SECONDS + 20))
until "$prefix/bin/kiln" --address "$address" health --timeout 0.5 >/dev/null 2>&1; do
  if [ $SECONDS -ge $deadline ] || ! kill -0 "$orchestrator_pid" 2>/dev/null; then
    echo "the installed orchestrator did not become healthy" >&2
    exit 1
  fi
done

result=$("$work/build/outside_worker" "$address" "$work/data/admin.token" Kiln)
echo "outside worker: $result"
test "$result" = "Hello from outside, Kiln!"

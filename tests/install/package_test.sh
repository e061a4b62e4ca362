#!/bin/bash
# The Debian package of the binaries (cpack -G DEB): it holds the four binaries in /usr/bin and
# nothing else, its Depends (from dpkg-shlibdeps) name the shared libraries they link and are
# all satisfied on this machine, and the unpacked binaries run.
# Usage: package_test.sh <kiln build dir>
set -euo pipefail
build_dir=$(cd "$1" && pwd)
work=$build_dir/package-test
cleanup() {
  status=$?
  [ $status -eq 0 ] && rm -rf "$work"
  return $status
}
trap cleanup EXIT
rm -rf "$work"
mkdir -p "$work/root"

cpack --config "$build_dir/CPackConfig.cmake" -G DEB -B "$work" >"$work/cpack.log"
deb=$(ls "$work"/kiln_*.deb)
echo "package: $(basename "$deb"), $(stat -c %s "$deb") bytes"

files=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sort | tr '\n' ' ')
expected="./usr/bin/kiln ./usr/bin/kiln-builder-agent ./usr/bin/kiln-orchestrator ./usr/bin/kiln-worker "
if [ "$files" != "$expected" ]; then
  echo "package files: $files; expected: $expected" >&2
  exit 1
fi

depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for library in libgrpc++ libprotobuf librocksdb libgit2 libabsl libssl; do
  if ! grep -q "$library" <<<"$depends"; then
    echo "Depends does not name $library" >&2
    exit 1
  fi
done
# Each dependency (name before any version) is installed here, so the package would install.
for package in $(tr ',' '\n' <<<"$depends" | awk '{print $1}'); do
  if ! dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q '^install ok installed'; then
    echo "dependency $package is not installed on this machine" >&2
    exit 1
  fi
done

dpkg-deb -x "$deb" "$work/root"
for binary in kiln-orchestrator kiln-worker kiln-builder-agent kiln; do
  "$work/root/usr/bin/$binary" --version
done

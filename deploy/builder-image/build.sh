#!/bin/bash
# Builds the microVM builder image (make builder-image): OUT/vmlinuz, a Debian cloud kernel,
# and OUT/initrd.cpio, an uncompressed initramfs holding busybox (busybox-static), the kernel's
# virtio modules, kiln-builder-agent (stripped) and the libraries it links, and the init in
# this folder. Uncompressed because TCG decompresses slowly: the boot copies it instead.
# Reproducible: the same kernel package, binaries and libraries give the same bytes (files
# sorted, owners and times fixed); OUT/manifest records what went in.
#
#   deploy/builder-image/build.sh OUT_DIR BIN_DIR
#
# The kernel package is fetched with apt-get download (Debian's archive) into OUT/cache once.
set -euo pipefail

OUT=${1:?usage: build.sh OUT_DIR BIN_DIR}
BIN=$(cd "${2:?usage: build.sh OUT_DIR BIN_DIR}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT/cache"
OUT=$(cd "$OUT" && pwd)
EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
# The modules the guest needs, in load order (dependencies first).
MODULES="virtio_ring virtio virtio_mmio virtio_blk failover net_failover virtio_net \
virtio_console virtio-rng"

for tool in cpio strip ldd busybox; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing (make deps)" >&2; exit 1; }
done
AGENT=$BIN/kiln-builder-agent
[ -x "$AGENT" ] || { echo "build.sh: $AGENT is not built" >&2; exit 1; }

# The kernel: the package linux-image-cloud-amd64 depends on now.
kernel_package=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
  awk '/Depends: linux-image-/ {print $2; exit}')
if [ -z "$kernel_package" ]; then
  echo "build.sh: apt-cache knows no linux-image-cloud-amd64 (run apt-get update)" >&2
  exit 1
fi
deb=$(ls "$OUT/cache/${kernel_package}"_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
  echo "build.sh: downloading $kernel_package"
  (cd "$OUT/cache" && apt-get download "$kernel_package" 2>&1 | grep -v unsandboxed || true)
  deb=$(ls "$OUT/cache/${kernel_package}"_*.deb 2>/dev/null | head -1 || true)
  [ -n "$deb" ] || { echo "build.sh: cannot download $kernel_package" >&2; exit 1; }
fi
kernel_dir=$OUT/cache/kernel
rm -rf "$kernel_dir"
dpkg-deb -x "$deb" "$kernel_dir"
version=${kernel_package#linux-image-}
modules_dir=$kernel_dir/lib/modules/$version/kernel

root=$(mktemp -d "$OUT/root.XXXXXX")
trap 'rm -rf "$root" "$kernel_dir"' EXIT
mkdir -p "$root"/{bin,usr/bin,lib/modules,dev,proc,sys,tmp,run,volume,etc,root}
cp /bin/busybox "$root/bin/busybox"
install -m 0755 "$HERE/init" "$root/init"
for module in $MODULES; do
  path=$(find "$modules_dir" -name "$module.ko" | head -1)
  [ -n "$path" ] || { echo "build.sh: no $module.ko in $kernel_package" >&2; exit 1; }
  cp "$path" "$root/lib/modules/"
done
echo "$MODULES" >"$root/lib/modules/load"
strip --strip-unneeded -o "$root/usr/bin/kiln-builder-agent" "$AGENT"
# The agent's libraries at their own paths (the dynamic loader included).
ldd "$AGENT" | grep -o '/[^ ]*' | sort -u |
  while read -r library; do
    mkdir -p "$root$(dirname "$library")"
    cp -L "$library" "$root$library"
  done
# The usual merged-/usr links the loader's path may go through.
for dir in lib lib64; do
  [ -d "$root/usr/$dir" ] && [ ! -e "$root/$dir" ] && ln -s "usr/$dir" "$root/$dir"
done
[ -f /etc/ssl/certs/ca-certificates.crt ] &&
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
printf '127.0.0.1 localhost\n' >"$root/etc/hosts"

find "$root" -exec touch -h -d "@$EPOCH" {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort |
  cpio -o -H newc --reproducible --owner=0:0 --quiet) >"$OUT/initrd.cpio.tmp"
mv "$OUT/initrd.cpio.tmp" "$OUT/initrd.cpio"
install -m 0644 "$kernel_dir/boot/vmlinuz-$version" "$OUT/vmlinuz"
touch -d "@$EPOCH" "$OUT/vmlinuz" "$OUT/initrd.cpio"

{
  echo "kernel_package=$kernel_package $(dpkg-deb -f "$deb" Version)"
  echo "vmlinuz_sha256=$(sha256sum "$OUT/vmlinuz" | cut -d' ' -f1)"
  echo "initrd_sha256=$(sha256sum "$OUT/initrd.cpio" | cut -d' ' -f1)"
  echo "agent_sha256=$(sha256sum "$root/usr/bin/kiln-builder-agent" | cut -d' ' -f1)"
  echo "busybox=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || echo unknown)"
} >"$OUT/manifest"
echo "builder image in $OUT:"
echo "  vmlinuz      $(stat -c %s "$OUT/vmlinuz") bytes ($kernel_package)"
echo "  initrd.cpio  $(stat -c %s "$OUT/initrd.cpio") bytes ($(cd "$root" && find . -type f | wc -l) files)"

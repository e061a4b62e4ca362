#!/bin/bash
# Builds the microVM builder image (make builder-image) into OUT:
#   vmlinuz      a Debian cloud kernel (the package linux-image-cloud-amd64 names, fetched with
#                apt-get download into OUT/cache once);
#   initrd.cpio  a small uncompressed initramfs: busybox (busybox-static), the kernel's virtio
#                and overlay modules, and init-stage1 from this folder, which mounts root.img
#                under a tmpfs overlay and switches to it (a container runtime cannot pivot
#                away from an initramfs);
#   root.img     a read-only ext4 disk (label kiln-root) shared by every machine and read on
#                demand: busybox, kiln-builder-agent (stripped), podman, runc, conmon, the
#                libraries they link, their configuration, and kiln-init (the guest's init).
# The kernel, the initramfs and the files in root.img are reproducible (sorted, fixed owners and
# times); OUT/manifest records what went in.
#
#   deploy/builder-image/build.sh OUT_DIR BIN_DIR
set -euo pipefail

OUT=${1:?usage: build.sh OUT_DIR BIN_DIR}
BIN=$(cd "${2:?usage: build.sh OUT_DIR BIN_DIR}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT/cache"
OUT=$(cd "$OUT" && pwd)
EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
# The modules the guest needs, in load order (dependencies first).
MODULES="virtio_ring virtio virtio_mmio virtio_blk failover net_failover virtio_net \
virtio_console virtio-rng overlay"

for tool in cpio strip ldd busybox mkfs.ext4 podman runc conmon; do
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

initramfs=$(mktemp -d "$OUT/initramfs.XXXXXX")
root=$(mktemp -d "$OUT/root.XXXXXX")
trap 'rm -rf "$initramfs" "$root" "$kernel_dir"' EXIT

# The initramfs: stage 1 only.
mkdir -p "$initramfs"/{bin,lib/modules,dev,proc,sys,newroot,lower,rw}
cp /bin/busybox "$initramfs/bin/busybox"
install -m 0755 "$HERE/init-stage1" "$initramfs/init"
for module in $MODULES; do
  path=$(find "$modules_dir" -name "$module.ko" | head -1)
  [ -n "$path" ] || { echo "build.sh: no $module.ko in $kernel_package" >&2; exit 1; }
  cp "$path" "$initramfs/lib/modules/"
done
echo "$MODULES" >"$initramfs/lib/modules/load"

# The root image.
mkdir -p "$root"/{bin,sbin,usr/bin,dev,proc,sys,tmp,run,volume,etc,root,var/tmp}
cp /bin/busybox "$root/bin/busybox"
for applet in $(busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$HERE/kiln-init" "$root/sbin/kiln-init"
# Copies the libraries `ldd` names for binary $2 into tree $1, at their own paths.
copy_libraries() {
  ldd "$2" | grep -o '/[^ ]*' | sort -u |
    while read -r library; do
      mkdir -p "$1$(dirname "$library")"
      cp -L "$library" "$1$library"
    done
}
strip --strip-unneeded -o "$root/usr/bin/kiln-builder-agent" "$AGENT"
copy_libraries "$root" "$AGENT"
# The agent's files, which kiln-init reads into the page cache before a snapshot is taken (a
# restored agent then pages nothing in from the disk).
{
  echo /usr/bin/kiln-builder-agent
  ldd "$AGENT" | grep -o '/[^ ]*' | sort -u
} >"$root/etc/kiln-agent-files"
for binary in "$(command -v podman)" "$(command -v conmon)" "$(readlink -f "$(command -v runc)")"; do
  install -m 0755 "$binary" "$root/usr/bin/$(basename "$binary")"
  copy_libraries "$root" "$binary"
done
for dir in /etc/containers /usr/share/containers; do
  mkdir -p "$root$dir"
  cp -a "$dir/." "$root$dir/"
done
[ -f /etc/ssl/certs/ca-certificates.crt ] &&
  install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
printf '127.0.0.1 localhost\n' >"$root/etc/hosts"

find "$initramfs" "$root" -exec touch -h -d "@$EPOCH" {} +
(cd "$initramfs" && find . -mindepth 1 | LC_ALL=C sort |
  cpio -o -H newc --reproducible --owner=0:0 --quiet) >"$OUT/initrd.cpio.tmp"
mv "$OUT/initrd.cpio.tmp" "$OUT/initrd.cpio"
root_mb=$(($(du -sm "$root" | cut -f1) + 64))
E2FSPROGS_FAKE_TIME=$EPOCH mkfs.ext4 -q -F -L kiln-root -U 6b696c6e-726f-6f74-0000-000000000001 \
  -E root_owner=0:0,hash_seed=6b696c6e-726f-6f74-0000-000000000002,lazy_itable_init=0 \
  -m 0 -d "$root" "$OUT/root.img.tmp" "${root_mb}M" >/dev/null
mv "$OUT/root.img.tmp" "$OUT/root.img"
install -m 0644 "$kernel_dir/boot/vmlinuz-$version" "$OUT/vmlinuz"
touch -d "@$EPOCH" "$OUT/vmlinuz" "$OUT/initrd.cpio" "$OUT/root.img"

{
  echo "kernel_package=$kernel_package $(dpkg-deb -f "$deb" Version)"
  echo "vmlinuz_sha256=$(sha256sum "$OUT/vmlinuz" | cut -d' ' -f1)"
  echo "initrd_sha256=$(sha256sum "$OUT/initrd.cpio" | cut -d' ' -f1)"
  echo "root_files_sha256=$(cd "$root" && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)"
  echo "agent_sha256=$(sha256sum "$root/usr/bin/kiln-builder-agent" | cut -d' ' -f1)"
  echo "busybox=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || echo unknown)"
  echo "podman=$(dpkg-query -W -f='${Version}' podman 2>/dev/null || echo unknown)"
} >"$OUT/manifest"
echo "builder image in $OUT:"
echo "  vmlinuz      $(stat -c %s "$OUT/vmlinuz") bytes ($kernel_package)"
echo "  initrd.cpio  $(stat -c %s "$OUT/initrd.cpio") bytes ($(cd "$initramfs" && find . -type f | wc -l) files)"
echo "  root.img     $(stat -c %s "$OUT/root.img") bytes ($(cd "$root" && find . -type f | wc -l) files: the agent, podman, runc, conmon)"

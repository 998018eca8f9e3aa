#!/usr/bin/env bash
# Makes the tiny test guest: Debian's kernel and an initramfs with a static busybox whose /init
# loads the virtio console driver, finds the org.regen.events.0 port and copies every line it
# reads there to the serial console as "regen-event: <line>". The qemu end-to-end tests boot it
# to read Regen's events from inside a real guest. Nothing is installed on this machine: the two
# .deb files are fetched with `apt-get download` and unpacked into a cache.
# Usage: scripts/guest-image.sh OUTDIR      (writes OUTDIR/vmlinuz and OUTDIR/initrd.img)
set -euo pipefail
out="${1:?usage: scripts/guest-image.sh OUTDIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ]; then
  echo "guest-image: $out already has vmlinuz and initrd.img"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
kernel_pkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')"
[ -n "$kernel_pkg" ] || { echo "guest-image: cannot find the kernel package of linux-image-amd64" >&2; exit 1; }
# apt-get download warns when _apt cannot write here (root): the download still happens.
apt-get download -q "$kernel_pkg" busybox-static 2> >(grep -v "unsandboxed" >&2)
dpkg-deb -x linux-image-*.deb kernel
dpkg-deb -x busybox-static_*.deb busybox

root="$work/initramfs"
mkdir -p "$root/bin" "$root/dev" "$root/sys" "$root/proc" "$root/lib"
cp busybox/bin/busybox "$root/bin/busybox"
modules="$(echo kernel/lib/modules/*/kernel)"
# Load order follows `modinfo -F depends`.
for m in virtio/virtio_ring virtio/virtio virtio/virtio_pci_modern_dev \
         virtio/virtio_pci_legacy_dev virtio/virtio_pci; do
  cp "$modules/drivers/$m.ko" "$root/lib/"
done
cp "$modules/drivers/char/virtio_console.ko" "$root/lib/"

cat > "$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t devtmpfs dev /dev
mount -t sysfs sys /sys
mount -t proc proc /proc
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_console; do
  insmod /lib/$m.ko
done
dev=""
for i in $(seq 1 200); do
  for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name" 2>/dev/null)" = "org.regen.events.0" ] && dev="/dev/${p##*/}"
  done
  [ -n "$dev" ] && [ -e "$dev" ] && break
  sleep 0.05
done
if [ -z "$dev" ]; then
  echo "regen-guest: no org.regen.events.0 port" > /dev/ttyS0
  exec sleep 1000000
fi
echo "regen-guest: reading $dev" > /dev/ttyS0
# read returns at end of file when the host side disconnects: open the port again.
while true; do
  while IFS= read -r line; do echo "regen-event: $line"; done < "$dev" > /dev/ttyS0
  sleep 0.05
done
EOF
chmod 755 "$root/init"

(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initrd.img"
# The pair appears only when both are whole: a failed run leaves nothing that looks done.
cp kernel/boot/vmlinuz-* "$out/vmlinuz.tmp"
mv "$work/initrd.img" "$out/initrd.img.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.img.tmp" "$out/initrd.img"
echo "guest-image: $out/vmlinuz ($kernel_pkg) and $out/initrd.img ($(du -k "$out/initrd.img" | cut -f1) KiB)"

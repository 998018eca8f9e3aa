#!/usr/bin/env bash
# Makes the tiny test guest: Debian's kernel and an initramfs with a static busybox whose /init
#  - loads the virtio console driver, finds the org.regen.events.0 port and copies every line it
#    reads there to the serial console as "regen-event: <line>" (the qemu end-to-end tests read
#    Regen's events from inside a real guest this way);
#  - loads virtio_net and, when the kernel command line says so, configures eth0 and serves and
#    polls its peers over the instance network. Parameters (all optional, on the command line):
#      regen.ip=A.B.C.D/PREFIX   eth0's address (the domain template writes {{ip}}/PREFIX); no
#                                network at all without it
#      regen.name=NAME           the instance name   ({{name}})
#      regen.generation=N        its generation      ({{generation}})
#      regen.port=P              the responder's TCP port (default 8080)
#      regen.peers=IP,IP,...     addresses to poll; without it the guest polls the other
#                                addresses of the latest "topology" event of its own channel
#      regen.poll_ms=MS          pause between two polling rounds (default 200)
#    The responder is busybox httpd: GET /cgi-bin/id answers "NAME GENERATION". The poller
#    fetches it from every peer (HTTP/1.0 over busybox nc, at most 1 s a request; busybox's static wget
#    crashes in glibc's lookups) and prints one serial line per request:
#      "regen-poll: IP ok NAME GENERATION"   or   "regen-poll: IP fail"
#    eth0 gets MTU 1400 (room for the VXLAN header on a 1500-byte underlay). The guest prints
#    "regen-guest: net up IP" once eth0 is configured and the responder runs.
# Nothing is installed on this machine: the two .deb files are fetched with `apt-get download` and
# unpacked into a cache.
# Usage: scripts/guest-image.sh OUTDIR  (writes OUTDIR/vmlinuz, OUTDIR/vmlinux, OUTDIR/initrd.img,
# OUTDIR/VERSION; an OUTDIR whose VERSION is not this script's GUEST_VERSION is built again)
# vmlinux is the same kernel uncompressed (an ELF with a PVH entry note): qemu boots it directly,
# without the real-mode setup and the XZ decompression, which under TCG take ~2.8 s of a ~5.4 s
# boot (measured: eth0 up 2.6 s after qemu starts instead of 5.4 s). Domain templates may name
# either.
set -euo pipefail
out="${1:?usage: scripts/guest-image.sh OUTDIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
# Bump when the initramfs changes: an older build in OUTDIR is then made again.
GUEST_VERSION=5-net-pvh
if [ -s "$out/vmlinuz" ] && [ -s "$out/vmlinux" ] && [ -s "$out/initrd.img" ] &&
  [ "$(cat "$out/VERSION" 2>/dev/null)" = "$GUEST_VERSION" ]; then
  echo "guest-image: $out already has vmlinuz, vmlinux and initrd.img (version $GUEST_VERSION)"
  exit 0
fi
rm -f "$out/VERSION"

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
# virtio_net needs net_failover, which needs failover (`modinfo -F depends`).
cp "$modules/net/core/failover.ko" "$modules/drivers/net/net_failover.ko" \
  "$modules/drivers/net/virtio_net.ko" "$root/lib/"

cat > "$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t devtmpfs dev /dev
mount -t sysfs sys /sys
mount -t proc proc /proc
mkdir -p /tmp
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_console \
         failover net_failover virtio_net; do
  insmod /lib/$m.ko
done
arg() {  # arg NAME: the value of regen.NAME= on the kernel command line
  for a in $(cat /proc/cmdline); do
    case $a in "regen.$1="*) echo "${a#*=}"; return ;; esac
  done
}
NAME=$(arg name); GEN=$(arg generation); IPP=$(arg ip); PORT=$(arg port); PEERS=$(arg peers)
POLL_MS=$(arg poll_ms)
[ -n "$PORT" ] || PORT=8080
[ -n "$POLL_MS" ] || POLL_MS=200
network() {
  ip link set lo up
  for i in $(seq 1 100); do [ -e /sys/class/net/eth0 ] && break; sleep 0.05; done
  ip link set eth0 mtu 1400
  ip addr add "$IPP" dev eth0
  ip link set eth0 up
  mkdir -p /www/cgi-bin
  printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n%%s %%s\\n" "%s" "%s"\n' \
    "$NAME" "$GEN" > /www/cgi-bin/id
  chmod 755 /www/cgi-bin/id
  httpd -p "$PORT" -h /www
  echo "regen-guest: net up $IPP name $NAME generation $GEN" > /dev/ttyS0
  poll &
}
peers() {  # the addresses to poll: regen.peers, else the latest topology event's other addresses
  if [ -n "$PEERS" ]; then echo "$PEERS" | tr ',' ' '; return; fi
  [ -f /tmp/topology ] || return 0
  grep -o '"ip":"[0-9.]*"' /tmp/topology | cut -d'"' -f4 | grep -vx "${IPP%/*}"
}
poll() {
  sleep_s=$(echo "$POLL_MS" | awk '{printf "%.3f", $1 / 1000}')
  while true; do
    for p in $(peers); do
      # busybox's static wget crashes (glibc lookups); nc with a 1 s timeout does the request.
      # nc -w bounds the connect only: timeout bounds a request whose peer died mid-way.
      r=$(printf 'GET /cgi-bin/id HTTP/1.0\r\n\r\n' | timeout 1 nc -w 1 "$p" "$PORT" 2>/dev/null |
        tr -d '\r' | tail -n 1)
      if [ -n "$r" ]; then echo "regen-poll: $p ok $r"; else echo "regen-poll: $p fail"; fi
    done > /dev/ttyS0
    sleep "$sleep_s"
  done
}
[ -n "$IPP" ] && network
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
# read returns at end of file when the host side disconnects: open the port again. The latest
# topology event is kept for the poller.
while true; do
  while IFS= read -r line; do
    echo "regen-event: $line"
    case $line in *'"event":"topology"'*) echo "$line" > /tmp/topology.new && mv /tmp/topology.new /tmp/topology ;; esac
  done < "$dev" > /dev/ttyS0
  sleep 0.05
done
EOF
chmod 755 "$root/init"

(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initrd.img"
# The uncompressed kernel: the XZ stream inside the bzImage (xz stops with an error at the data
# after the stream: only the ELF result counts).
command -v xz >/dev/null || { echo "guest-image: xz not found (apt-get install xz-utils)" >&2; exit 1; }
bz=$(echo kernel/boot/vmlinuz-*)
xz_at=$(LC_ALL=C grep -aboP '\xfd7zXZ\x00' "$bz" | head -n 1 | cut -d: -f1)
[ -n "$xz_at" ] || { echo "guest-image: no XZ stream in $bz" >&2; exit 1; }
tail -c +$((xz_at + 1)) "$bz" | xz -dc >"$work/vmlinux" 2>/dev/null || true
[ "$(head -c 4 "$work/vmlinux" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] ||
  { echo "guest-image: the XZ stream of $bz is not an ELF kernel" >&2; exit 1; }
# The pair appears only when both are whole: a failed run leaves nothing that looks done.
cp kernel/boot/vmlinuz-* "$out/vmlinuz.tmp"
mv "$work/vmlinux" "$out/vmlinux.tmp"
mv "$work/initrd.img" "$out/initrd.img.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/vmlinux.tmp" "$out/vmlinux"
mv "$out/initrd.img.tmp" "$out/initrd.img"
echo "$GUEST_VERSION" >"$out/VERSION"
echo "guest-image: $out/vmlinuz and vmlinux ($kernel_pkg) and $out/initrd.img ($(du -k "$out/initrd.img" | cut -f1) KiB)"

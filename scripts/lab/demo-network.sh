#!/usr/bin/env bash
# `scripts/demo.sh --network`: traffic across a heal, told for a person. A 3-host lab with real
# networking (scripts/lab.sh up --driver qemu --network ovs: every host in its own network
# namespace with its own Open vSwitch, VXLAN between them) runs the service "web" (3 VMs, one per
# host) and one VM of the service "db", all booting the tiny guest of scripts/guest-image.sh with
# their address from the instance spec. Each web guest asks every peer it knows from its topology
# event "who are you?" (HTTP, busybox wget -> httpd) and prints the answers on its serial console;
# the db guest asks the web addresses too. The demo shows who reaches whom, kills one web VM's
# qemu with kill -9, follows the peers' requests until the healed VM (same IP, new host, new
# generation) answers, and prints: kill -> first answer per peer, requests lost, and that db was
# never answered. The lab lives in a temp dir, stopped and removed at the end (also on failure).
set -euo pipefail

PROG=demo.sh
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
# shellcheck source=scripts/lab/lib.sh
. "$REPO/scripts/lab/lib.sh"
BUILD=${REGEN_BUILD_DIR:-$REPO/build}
[[ $BUILD == /* ]] || BUILD=$REPO/$BUILD
REGENCTL=$BUILD/ctl/regenctl
GUEST=$BUILD/guest
TIMEOUT=${REGEN_DEMO_TIMEOUT:-180}

die() {
  echo "$PROG: $*" >&2
  exit 1
}
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo "${t:0:-3}"; }
T0=$(now_ms)
say() {
  local ms=$(($(now_ms) - T0))
  printf '[%3d.%d s] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"
}

for b in "$REGENCTL" "$BUILD/agent/regen-agent" "$BUILD/controller/regen-controller"; do
  [ -x "$b" ] || die "$b missing (scripts/build.sh, or set REGEN_BUILD_DIR)"
done
command -v jq >/dev/null || die "jq not found (scripts/install-deps.sh installs it)"
scripts/guest-image.sh "$GUEST" | sed 's/^/  /'

DIR=$(mktemp -d /tmp/regen-netdemo.XXXXXX)
chmod 0755 "$DIR"
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  echo
  if ((rc != 0)); then lab_keep_logs "$PROG" "failed (exit $rc)"; fi
  say "stopping the lab (scripts/lab.sh down --purge)"
  if [ -e "$DIR/.regen-lab" ]; then
    scripts/lab.sh down --purge --dir "$DIR" 2>&1 | sed 's/^/  /' || rc=1
  fi
  rm -rf -- "$DIR"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ctl() { timeout 10 "$REGENCTL" --controller "$ADDR" "$@"; }
instances() { ctl instance list -o json 2>/dev/null; }
field() { instances | jq -r --arg n "$1" --arg f "$2" '.[] | select(.name == $n) | .[$f]'; }
serial() { echo "$DIR/serial-$1.log"; }
# polls FILE [FROM_BYTE]: the guest's "regen-poll:" lines (CRs removed) from FROM_BYTE on.
polls() { tail -c +$((${2:-0} + 1)) "$1" 2>/dev/null | tr -d '\r' | grep -a '^regen-poll: ' || true; }
wait_until() {  # wait_until SECONDS WHAT CMD...
  local deadline=$(($(now_ms) + $1 * 1000)) what=$2
  shift 2
  until "$@"; do
    (($(now_ms) < deadline)) || die "timed out waiting for $what"
    sleep 0.1
  done
}

template() {  # template NAME EXTRA_CMDLINE: a domain template booting the test guest
  cat >"$DIR/templates/$1.xml" <<XML
<domain type='qemu'>
  <name>{{name}}</name>
  <uuid>{{uuid}}</uuid>
  <metadata>{{metadata}}</metadata>
  <memory unit='KiB'>{{memory_kib}}</memory>
  <vcpu>{{vcpus}}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$GUEST/vmlinux</kernel>
    <initrd>$GUEST/initrd.img</initrd>
    <cmdline>console=ttyS0 quiet loglevel=1 panic=-1 regen.ip={{ip}}/{{prefix_len}} regen.name={{name}} regen.generation={{generation}} $2</cmdline>
  </os>
  <on_crash>destroy</on_crash>
  <devices>
    <interface type='bridge'>
      <mac address='{{mac}}'/>
      <source bridge='{{bridge}}'/>
      <virtualport type='openvswitch'/>
      <model type='virtio'/>
      <driver name='qemu'>
        <host csum='off' gso='off' tso4='off' tso6='off' ecn='off' ufo='off'/>
        <guest csum='off' tso4='off' tso6='off' ecn='off' ufo='off'/>
      </driver>
    </interface>
    <serial type='file'>
      <source path='$DIR/serial-{{name}}.log' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
{{events_channel}}  </devices>
</domain>
XML
}
service() {  # service NAME COUNT SUBNET
  cat >"$DIR/$1.yaml" <<YAML
name: $1
instances: $2
update_domains: $2
flavor: {vcpus: 1, memory_mib: 128, disk_gib: 0, bandwidth_mbps: 10}
network: {subnet: $3, ip_policy: keep}
versions:
  v1: {domain_template: $DIR/templates/$1.xml}
version: v1
health_check: {type: none}
placement: spread
YAML
  ctl service apply -f "$DIR/$1.yaml" | sed 's/^/  /'
}
running() { [ "$(instances | jq '[.[] | select(.state == "running")] | length')" = "$1" ]; }
# reaches GUEST PEER GEN [FROM_BYTE]: GUEST's serial shows an answer from PEER at generation GEN.
reaches() { polls "$(serial "$1")" "${4:-0}" | grep -q " ok $2 $3\$"; }
all_reach() {
  local a b
  for a in web-0 web-1 web-2; do
    for b in web-0 web-1 web-2; do
      [ "$a" = "$b" ] || reaches "$a" "$b" "$(field "$b" generation)" || return 1
    done
  done
}

echo "Regen demo --network: 3 hosts with their own Open vSwitch, VXLAN between them; lab in $DIR"
say "starting the lab (scripts/lab.sh up --hosts 3 --driver qemu --network ovs)"
scripts/lab.sh up --hosts 3 --driver qemu --network ovs --dir "$DIR" 2>&1 | grep '^lab.sh:' | sed 's/^/  /'
[ -e "$DIR/controller.addr" ] || die "scripts/lab.sh up failed"
ADDR=$(cat "$DIR/controller.addr")

say "deploying web (3 VMs, 10.20.0.0/25; each guest polls the peers of its topology event)"
template web "regen.poll_ms=100"
service web 3 10.20.0.0/25
wait_until "$TIMEOUT" "3 web instances running" running 3
WEB_IPS=$(instances | jq -r '[.[] | select(.service == "web") | .ip] | join(",")')
say "deploying db (1 VM, 10.20.0.128/25; its guest polls the web addresses $WEB_IPS)"
template db "regen.poll_ms=100 regen.peers=$WEB_IPS"
service db 1 10.20.0.128/25
wait_until "$TIMEOUT" "4 instances running" running 4
BOOT_MS=$(now_ms)
echo
ctl instance list | sed 's/^/  /'
echo
wait_until "$TIMEOUT" "every web guest answered by both peers" all_reach
say "every web guest reaches both peers across hosts ($(($(now_ms) - BOOT_MS)) ms after running):"
for a in web-0 web-1 web-2; do
  echo "  $a (on $(field "$a" host)) hears: $(polls "$(serial "$a")" | grep ' ok ' | awk '{print $4 " (gen " $5 ")"}' | sort -u | tr '\n' ' ')"
done

VICTIM=web-0
V_HOST=$(field $VICTIM host)
V_GEN=$(field $VICTIM generation)
V_IP=$(field $VICTIM ip)
V_MAC=$(field $VICTIM mac)
PEERS="web-1 web-2"
declare -A OFF FIRST
for p in $PEERS; do OFF[$p]=$(stat -c %s "$(serial "$p")"); done
QPID=$(tr -dc '0-9' <"$DIR/$V_HOST/root/run/qemu/$VICTIM.pid")
[[ " $(tr '\0' ' ' <"/proc/$QPID/cmdline")" == *"guest=$VICTIM,"* ]] || die "libvirt's pid $QPID is not $VICTIM's qemu"
echo
say "kill -9 of $VICTIM's qemu (pid $QPID from libvirt) on $V_HOST (ip $V_IP, generation $V_GEN)"
KILL_MS=$(now_ms)
kill -9 "$QPID"
deadline=$((KILL_MS + 90000))
while :; do
  for p in $PEERS; do
    [ -z "${FIRST[$p]:-}" ] || continue
    reaches "$p" "$VICTIM" $((V_GEN + 1)) "${OFF[$p]}" && FIRST[$p]=$(now_ms) &&
      say "$p's first answer from $VICTIM generation $((V_GEN + 1)) at $V_IP"
  done
  [ -n "${FIRST[web-1]:-}" ] && [ -n "${FIRST[web-2]:-}" ] && break
  (($(now_ms) < deadline)) || die "the peers did not reach the healed $VICTIM within 90 s"
  sleep 0.02
done
NEW_HOST=$(field $VICTIM host)
echo
ctl instance list | sed 's/^/  /'
echo
echo "  figures ($VICTIM: $V_HOST -> $NEW_HOST, same ip $V_IP and mac $V_MAC):"
for p in $PEERS; do
  lost=$(polls "$(serial "$p")" "${OFF[$p]}" | awk -v ip="$V_IP" -v g=$((V_GEN + 1)) '
    $2 == ip && $3 == "ok" && $5 == g {exit} $2 == ip && $3 == "fail" {n++} END {print n + 0}')
  printf '    %-55s %6d ms, %d requests lost\n' "kill -9 -> $p's first answer from the healed VM" \
    $((FIRST[$p] - KILL_MS)) "$lost"
done
FWD=$(ovs-ofctl -O OpenFlow14 dump-flows "unix:$DIR/$V_HOST/ovs/br-int.mgmt" table=40 |
  grep "dl_dst=$V_MAC" | sed 's/.*priority/    priority/' || true)
if [ -n "$FWD" ]; then
  echo "  the old host $V_HOST now sends $V_MAC into the tunnel, to $NEW_HOST (no local port left):"
  echo "$FWD"
else
  echo "  the old host $V_HOST has no flow for $V_MAC any more (it runs no web instance now: all"
  echo "  web traffic there is dropped)"
fi
DB=$(polls "$(serial db-0)")
echo "  db-0 asked web $(grep -c . <<<"$DB") times; answered: $(grep -c ' ok ' <<<"$DB" || true)"
echo
say "demo finished"

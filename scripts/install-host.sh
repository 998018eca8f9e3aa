#!/usr/bin/env bash
# Prepares a KVM host for regen-agent: the Open vSwitch integration bridge, the directories
# /etc/regen and /var/lib/regen, the softdog watchdog (with a controller: the host resets itself if
# its agent cannot confirm a fence), and a sample /etc/regen/agent.yaml (written only when absent,
# never overwritten). Safe to run again: what is already there is left as it is.
# Installed by the regen-agent package as /usr/sbin/regen-install-host.
#
#   scripts/install-host.sh [--host-name NAME] [--address IP] [--controller HOST:PORT]
#                           [--datapath system|netdev] [--bridge NAME] [--ovs-db SOCKET]
#                           [--libvirt-uri URI] [--domain-type auto|kvm|qemu] [--no-bridge]
#                           [--no-network]
#                           [--watchdog-timeout SECONDS] [--no-watchdog] [--root DIR] [--dry-run]
#
# Exit status: 0 done (or nothing to do), 1 a step failed, 2 bad arguments.
set -euo pipefail

PROG=install-host.sh
NAME_RE='^[a-z][a-z0-9-]{0,62}$'
BRIDGE_RE='^[A-Za-z0-9_-]{1,15}$'

usage() {
  cat <<EOF
Usage: $PROG [OPTIONS]

Sets up this machine as a Regen host (run as root, before starting regen-agent):
  1. Open vSwitch bridge (default br-int) with the chosen datapath; left alone if it exists
     with that datapath, an error if it exists with another one.
  2. Directories /etc/regen (0755), /var/lib/regen and /var/lib/regen/images (0755).
  3. With --controller: a watchdog device. If /dev/watchdog exists (a hardware watchdog) it is
     used as it is; else the softdog module is loaded now (modprobe softdog soft_margin=N) and
     at every boot (/etc/modules-load.d/regen-softdog.conf, /etc/modprobe.d/regen-softdog.conf).
     agent.yaml gets watchdog_device: /dev/watchdog and watchdog_timeout: Ns: the agent stops
     petting it when its fencing lease runs out, so the host resets N s later unless the agent
     confirmed its domains are gone. The controller's host_down_after must then exceed
     fencing_lease + N s (+ 250ms); the value to set is printed.
  4. /etc/regen/agent.yaml (0640) from the options below, only if it does not exist. With
     --controller and the bridge it enables the network rewiring (network: enabled: true, the
     bridge, tunnel_ip = --address): instances reach their service peers on other hosts over
     VXLAN and other services are dropped. Capacity is left out: the agent measures it (vCPUs
     and memory from libvirt, disk under /var/lib/regen, the tunnel NIC's speed).
Prints each step and what it did. Start the agent afterwards:
  systemctl enable --now regen-agent

Options:
  --host-name NAME       host name in agent.yaml (default: hostname -s); [a-z][a-z0-9-]{0,62}
  --address IP           this host's tunnel/contact address (default: the source address of
                         this host's route to the controller, or of the default route)
  --controller HOST:PORT regen-controller's address (default: none, a standalone agent)
  --tls-dir DIR          mutual TLS to the controller with DIR/ca.crt, DIR/HOST.crt and
                         DIR/HOST.key (HOST = the host name; scripts/gen-certs.sh makes them).
                         Without it agent.yaml gets insecure: true (plaintext; labs only)
  --datapath system|netdev
                         OVS datapath of the bridge (default system, the kernel module; netdev
                         is the userspace datapath for machines without it)
  --bridge NAME          bridge name (default br-int), 1-15 of A-Z a-z 0-9 _ -
  --ovs-db SOCKET        ovsdb-server to use, e.g. unix:/run/openvswitch/db.sock (default: OVS's
                         own default); also written as ovs.db_socket in agent.yaml
  --libvirt-uri URI      libvirt_uri in agent.yaml (default qemu:///system)
  --domain-type auto|kvm|qemu
                         domain_type in agent.yaml (default auto: kvm when a test guest runs
                         under KVM here, else qemu = TCG; the agent logs which and why)
  --no-bridge            skip the Open vSwitch step (and the network rewiring: no bridge)
  --no-network           no network rewiring in agent.yaml (network: enabled: false)
  --watchdog-timeout SECONDS
                         the watchdog's timeout, 1-3600 (default 10)
  --no-watchdog          no watchdog: nothing loaded, no watchdog_device in agent.yaml
  --root DIR             create the files under DIR instead of / (for images and tests; the
                         bridge step is not affected: combine with --no-bridge)
  --dry-run              print the steps without doing anything
  -h, --help             this help
EOF
}

die() {  # a step failed: exit 1
  echo "$PROG: error: $*" >&2
  exit 1
}
usage_error() {  # bad command line: exit 2
  echo "$PROG: $*" >&2
  echo "Try '$PROG --help'." >&2
  exit 2
}
say() { echo "$PROG: $*"; }

# ---------------------------------------------------------------------------------------------
# Command line

host_name=""
address=""
controller=""
tls_dir=""
datapath="system"
bridge="br-int"
ovs_db=""
libvirt_uri="qemu:///system"
domain_type="auto"
do_bridge=1
do_network=1
do_watchdog=1
watchdog_timeout=10
fencing_lease_s=3   # agent.yaml's fencing_lease (the controller's default)
root=""
dry_run=0

need_value() {  # OPTION REMAINING_ARGS...
  (($# >= 2)) || usage_error "$1 needs a value"
}

while (($# > 0)); do
  case "$1" in
    --host-name) need_value "$@"; host_name=$2; shift 2 ;;
    --address) need_value "$@"; address=$2; shift 2 ;;
    --controller) need_value "$@"; controller=$2; shift 2 ;;
    --tls-dir) need_value "$@"; tls_dir=$2; shift 2 ;;
    --datapath) need_value "$@"; datapath=$2; shift 2 ;;
    --bridge) need_value "$@"; bridge=$2; shift 2 ;;
    --ovs-db) need_value "$@"; ovs_db=$2; shift 2 ;;
    --libvirt-uri) need_value "$@"; libvirt_uri=$2; shift 2 ;;
    --domain-type) need_value "$@"; domain_type=$2; shift 2 ;;
    --no-bridge) do_bridge=0; shift ;;
    --no-network) do_network=0; shift ;;
    --watchdog-timeout) need_value "$@"; watchdog_timeout=$2; shift 2 ;;
    --no-watchdog) do_watchdog=0; shift ;;
    --root) need_value "$@"; root=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done

if [ -n "$tls_dir" ]; then
  [[ $tls_dir == /* ]] || usage_error "--tls-dir '$tls_dir': give an absolute path"
fi

case "$datapath" in
  system | netdev) ;;
  *) usage_error "--datapath '$datapath': use system (kernel module) or netdev (userspace)" ;;
esac
case "$domain_type" in
  auto | kvm | qemu) ;;
  *) usage_error "--domain-type '$domain_type': use auto, kvm or qemu" ;;
esac
[[ $watchdog_timeout =~ ^[0-9]{1,4}$ ]] && ((10#$watchdog_timeout >= 1 && 10#$watchdog_timeout <= 3600)) ||
  usage_error "--watchdog-timeout '$watchdog_timeout': give whole seconds from 1 to 3600 (the watchdog counts in seconds)"
watchdog_timeout=$((10#$watchdog_timeout))
[[ $bridge =~ $BRIDGE_RE ]] ||
  usage_error "--bridge '$bridge': 1-15 characters of A-Z a-z 0-9 _ -"
if [ -n "$controller" ] && ! [[ $controller =~ ^[^:[:space:]]+:[0-9]{1,5}$ || $controller =~ ^\[[0-9a-fA-F:.]+\]:[0-9]{1,5}$ ]]; then
  usage_error "--controller '$controller': give HOST:PORT, e.g. regen-ctl.example:7400"
fi
if [ -n "$ovs_db" ] && ! [[ $ovs_db =~ ^(unix:/|tcp:|ssl:) ]]; then
  usage_error "--ovs-db '$ovs_db': give unix:/path, tcp:ip:port or ssl:ip:port"
fi
if [ -n "$root" ]; then
  [[ $root == /* ]] || usage_error "--root '$root': give an absolute path"
  [ -d "$root" ] || usage_error "--root '$root': no such directory (create it first)"
  root=${root%/}
fi

if [ -z "$host_name" ]; then
  host_name=$(hostname -s 2>/dev/null || true)
  [[ $host_name =~ $NAME_RE ]] ||
    usage_error "this machine's name '$host_name' is not a Regen host name ([a-z][a-z0-9-]{0,62}): pass --host-name NAME"
fi
[[ $host_name =~ $NAME_RE ]] ||
  usage_error "--host-name '$host_name': use [a-z][a-z0-9-]{0,62} (lower case, digits, '-')"

route_src() {  # IPV4 -> the source address this host uses towards it ("" if no route)
  { ip -4 route get "$1" 2>/dev/null || true; } | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n1
}
address_from=""
if [ -z "$address" ] && [ -n "$controller" ]; then
  # The source address of the route to the controller: the network the hosts share.
  ctl_host=${controller%:*}
  ctl_host=${ctl_host#[}
  ctl_host=${ctl_host%]}
  if [[ $ctl_host =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]]; then
    ctl_ip=$ctl_host
  else
    ctl_ip=$(getent ahostsv4 "$ctl_host" 2>/dev/null | awk 'NR == 1 {print $1}' || true)
  fi
  if [ -n "$ctl_ip" ]; then
    address=$(route_src "$ctl_ip")
    [ -z "$address" ] || address_from="the route to the controller $ctl_host ($ctl_ip)"
  fi
fi
if [ -z "$address" ]; then
  # The source address of the default route: what other hosts most likely reach us at.
  address=$(route_src 192.0.2.1)
  [ -n "$address" ] ||
    usage_error "cannot find this host's address (no route to the controller, no IPv4 default route): pass --address IP"
  address_from="the default route"
fi
[[ $address =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] ||
  usage_error "--address '$address': give this host's IPv4 address, e.g. 192.0.2.17"

[ -z "$address_from" ] || say "address: $address, the source address of $address_from (--address to choose another)"

# The network rewiring needs the controller's topology and the bridge its flows go to.
use_network=0
network_off=""
if ((do_network == 0)); then
  network_off="--no-network"
elif ((do_bridge == 0)); then
  network_off="--no-bridge: no bridge for the flows"
elif [ -z "$controller" ]; then
  network_off="no --controller: the flows come from the controller's topology"
else
  use_network=1
  net_db=/var/run/openvswitch/db.sock
  net_run=/var/run/openvswitch
  case "$ovs_db" in
    unix:/*) net_db=${ovs_db#unix:}; net_run=$(dirname "$net_db") ;;
    "") ;;
    *) say "network: --ovs-db $ovs_db is not a unix socket: the flows use the local $net_db (and $net_run for ovs-ofctl)" ;;
  esac
  say "network: on in agent.yaml (bridge $bridge, VXLAN endpoint $address)"
  [ "$datapath" != netdev ] ||
    say "network: note: the userspace datapath (netdev) sends VXLAN only when $address is on an OVS bridge of its own (e.g. br-phy with the NIC as its port); the kernel datapath needs nothing more"
fi
[ -z "$network_off" ] || say "network: off in agent.yaml ($network_off)"

if ((dry_run == 0)) && [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
  die "run as root (or with sudo), or use --dry-run to see the steps"
fi

etc_dir="$root/etc/regen"
state_dir="$root/var/lib/regen"
config="$etc_dir/agent.yaml"

if ((dry_run)); then
  say "dry run: nothing is changed"
  run() { say "would run: $*"; }
else
  run() {
    say "run: $*"
    "$@" || die "'$*' failed (exit $?)"
  }
fi

# ---------------------------------------------------------------------------------------------
# 1. Open vSwitch bridge

vsctl=(ovs-vsctl --timeout=10)
[ -z "$ovs_db" ] || vsctl+=("--db=$ovs_db")

if ((do_bridge == 0)); then
  say "bridge: skipped (--no-bridge)"
elif ((dry_run)) && ! command -v ovs-vsctl >/dev/null; then
  say "bridge: would create $bridge (datapath_type=$datapath); ovs-vsctl is not installed yet (apt-get install openvswitch-switch)"
elif ((dry_run)) && ! "${vsctl[@]}" show >/dev/null 2>&1; then
  say "bridge: would create $bridge (datapath_type=$datapath); ovsdb-server${ovs_db:+ at $ovs_db} is not reachable now (start openvswitch-switch first)"
else
  command -v ovs-vsctl >/dev/null ||
    die "ovs-vsctl not found: install Open vSwitch (apt-get install openvswitch-switch), or pass --no-bridge"
  "${vsctl[@]}" show >/dev/null 2>&1 ||
    die "cannot reach ovsdb-server${ovs_db:+ at $ovs_db} with ovs-vsctl: is openvswitch-switch running? (systemctl start openvswitch-switch)"
  if "${vsctl[@]}" br-exists "$bridge"; then
    have=$("${vsctl[@]}" get bridge "$bridge" datapath_type | tr -d '"')
    [ -n "$have" ] || have=system   # empty means the default, the kernel datapath
    [ "$have" = "$datapath" ] ||
      die "bridge $bridge exists with datapath_type=$have, not $datapath: pass --datapath $have to keep it, or change it by hand (ovs-vsctl set bridge $bridge datapath_type=$datapath; its ports are re-created)"
    say "bridge: $bridge exists (datapath_type=$have): left as it is"
  else
    run "${vsctl[@]}" add-br "$bridge" -- set bridge "$bridge" "datapath_type=$datapath"
    ((dry_run)) || say "bridge: created $bridge (datapath_type=$datapath)"
  fi
fi

# ---------------------------------------------------------------------------------------------
# 2. Directories

for d in "$etc_dir" "$state_dir" "$state_dir/images"; do
  if [ -d "$d" ]; then
    say "directory: $d exists: left as it is"
  elif [ -e "$d" ]; then
    die "$d exists and is not a directory: move it away first"
  else
    run install -d -m 0755 "$d"
  fi
done

# ---------------------------------------------------------------------------------------------
# 3. Watchdog (only with a controller: a standalone agent never fences)

use_watchdog=0
if [ -z "$controller" ]; then
  say "watchdog: skipped (no --controller: a standalone agent does not fence)"
elif ((do_watchdog == 0)); then
  say "watchdog: skipped (--no-watchdog)"
else
  use_watchdog=1
  modules_conf="$root/etc/modules-load.d/regen-softdog.conf"
  modprobe_conf="$root/etc/modprobe.d/regen-softdog.conf"
  if [ -e "$root/dev/watchdog" ] && ! [ -e "$modules_conf" ]; then
    say "watchdog: $root/dev/watchdog exists (a watchdog driver is loaded): used as it is; the agent sets its timeout to ${watchdog_timeout}s"
  else
    for f in "$modules_conf" "$modprobe_conf"; do
      if [ -e "$f" ]; then
        say "watchdog: $f exists: left as it is"
      elif ((dry_run)); then
        say "would write: $f"
      else
        run install -d -m 0755 "$(dirname "$f")"
        if [ "$f" = "$modules_conf" ]; then
          printf '# Written by %s: the watchdog regen-agent pets (agent.yaml watchdog_device).\nsoftdog\n' "$PROG" >"$f"
        else
          printf '# Written by %s: resets the host %s s after regen-agent stops petting it.\noptions softdog soft_margin=%s\n' "$PROG" "$watchdog_timeout" "$watchdog_timeout" >"$f"
        fi || die "cannot write $f"
        say "watchdog: wrote $f"
      fi
    done
    if [ -n "$root" ]; then
      say "watchdog: not loading softdog under --root (it loads at the next boot of that system)"
    elif [ -e /dev/watchdog ]; then
      say "watchdog: /dev/watchdog exists: softdog (or another driver) is loaded already"
    else
      command -v modprobe >/dev/null || ((dry_run)) ||
        die "modprobe not found (apt-get install kmod), or pass --no-watchdog"
      run modprobe softdog "soft_margin=$watchdog_timeout"
    fi
  fi
fi

# ---------------------------------------------------------------------------------------------
# 4. agent.yaml

write_config() {  # FILE
  cat >"$1" <<EOF
# $config_path: regen-agent's configuration on $host_name, written by $PROG on $(date -u +%Y-%m-%d).
# It is never overwritten by $PROG. Every setting is explained in
# /usr/share/doc/regen-agent/examples/agent.yaml. Check it: regen-agent status --config FILE
# prints the first error with file:line:column.

host_name: $host_name
address: $address

# "" = standalone (the agent keeps desired_file's instances running, no controller).
controller_address: "$controller"

libvirt_uri: "$libvirt_uri"
domain_type: $domain_type
poll_interval: 1s
libvirt_events: true

ovs:
  bridge: $( ((do_bridge)) && echo "$bridge" || echo '""  # --no-bridge: instances get no NIC')
EOF
  if [ -n "$ovs_db" ]; then
    echo "  db_socket: $ovs_db" >>"$1"
  fi
  if ((use_network)); then
    cat >>"$1" <<EOF

# Network rewiring: the service networks' OpenFlow rules on $bridge from the controller's
# topology; instances reach their peers on other hosts through VXLAN to each host's tunnel_ip.
network:
  enabled: true
  bridge: $bridge
  tunnel_ip: $address
  db_socket: $net_db
  run_dir: $net_run
EOF
  else
    cat >>"$1" <<EOF

# Network rewiring off ($network_off): instances on two hosts cannot reach each other.
network:
  enabled: false
EOF
  fi
  cat >>"$1" <<EOF

# As the controller's fencing_lease (default 3s); shorter than its host_down_after minus its
# heartbeat_interval.
fencing_lease: 3s

EOF
  if ((use_watchdog)); then
    cat >>"$1" <<EOF
# The watchdog the agent pets while this host's domains are safe; it stops at the end of the
# fencing lease and the host resets watchdog_timeout later unless the fence was confirmed. The
# controller's host_down_after must exceed fencing_lease + watchdog_timeout + 250ms.
watchdog_device: /dev/watchdog
watchdog_timeout: ${watchdog_timeout}s
EOF
  fi
  cat >>"$1" <<EOF

state_dir: /var/lib/regen
control_socket: /run/regen/agent.sock
fault_injection: false
log_level: info
EOF
  [ -n "$controller" ] || return 0
  if [ -n "$tls_dir" ]; then
    cat >>"$1" <<EOF

# Mutual TLS to the controller: the controller refuses a certificate its CA did not sign or
# whose name (CN) is not this host_name.
tls:
  ca: $tls_dir/ca.crt
  cert: $tls_dir/$host_name.crt
  key: $tls_dir/$host_name.key
EOF
  else
    cat >>"$1" <<EOF

# Plaintext gRPC to the controller, no certificates (labs only; the agent warns at start).
# For a real cluster replace this line with tls: {ca, cert, key} (README.md, "Real deployment";
# $PROG --tls-dir writes it).
insecure: true
EOF
  fi
}

config_path=/etc/regen/agent.yaml
if [ -e "$config" ]; then
  say "config: $config exists: not overwritten"
elif ((dry_run)); then
  say "would write: $config (0640; host_name $host_name, address $address, controller ${controller:-none (standalone)})"
else
  tmp="$config.tmp.$$"
  write_config "$tmp" || die "cannot write $tmp"
  chmod 0640 "$tmp"
  mv -f "$tmp" "$config" || die "cannot move $tmp to $config"
  say "config: wrote $config (host_name $host_name, address $address, controller ${controller:-none (standalone)})"
fi

if [ -n "$controller" ]; then
  # host_down_after > fencing_lease + watchdog timeout + 250ms (the agent checks it too and logs
  # an error at each connection otherwise); whole seconds, rounded up.
  need_ms=$((fencing_lease_s * 1000 + (use_watchdog ? watchdog_timeout * 1000 : 0) + 250))
  say "controller: set host_down_after: $((need_ms / 1000 + 1))s (or more) in the controller's controller.yaml: it must exceed fencing_lease ${fencing_lease_s}s$( ((use_watchdog)) && echo " + watchdog_timeout ${watchdog_timeout}s") + 250ms"
fi
if ((dry_run)); then
  say "dry run done: run again without --dry-run to do these steps"
else
  say "done. Next: check $config, then: systemctl enable --now regen-agent"
fi

#!/usr/bin/env bash
# Provisions a Debian 12 machine as a Regen KVM host from the .deb packages: libvirt, QEMU, Open
# vSwitch and the regen-agent package installed, the host prepared with regen-install-host
# (bridge br-int, /etc/regen, /var/lib/regen, agent.yaml), libvirtd, OVS and regen-agent enabled
# and started. The Vagrant rig runs it on every kvm-N; it runs the same way on a real host.
#
#   provision-host.sh --name NAME --address IP --controller HOST:PORT --debs DIR
#                     [--datapath auto|system|netdev] [--domain-type auto|kvm|qemu] [--dry-run]
#
# Exit status: 0 done, 1 a step failed, 2 bad arguments.
set -euo pipefail

PROG=provision-host.sh
APT_PACKAGES=(libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils genisoimage
  openvswitch-switch tini knot-dnsutils jq)

usage() {
  cat <<EOF
Usage: $PROG --name NAME --address IP --controller HOST:PORT --debs DIR [OPTIONS]

Makes this Debian 12 machine a Regen KVM host (run as root):
  1. apt-get install ${APT_PACKAGES[*]}
  2. apt-get install DIR/regenctl_*.deb DIR/regen-agent_*.deb (apt adds their Depends)
  3. systemctl enable --now libvirtd openvswitch-switch
  4. regen-install-host --host-name NAME --address IP --controller HOST:PORT ...
     (bridge br-int, /etc/regen, /var/lib/regen, /etc/regen/agent.yaml if absent)
  5. systemctl enable --now regen-agent, and wait until it is active

Options:
  --name NAME             this host's Regen name ([a-z][a-z0-9-]{0,62})
  --address IP            its address on the hosts' network (tunnel endpoint)
  --controller HOST:PORT  regen-controller's address
  --debs DIR              directory with regenctl_*.deb and regen-agent_*.deb
  --datapath auto|system|netdev
                          OVS datapath of br-int: system needs the openvswitch kernel module,
                          netdev is the userspace one; auto (default) picks system when the
                          module is available, else netdev
  --domain-type auto|kvm|qemu  kvm needs a working /dev/kvm; auto (default) is written to
                          agent.yaml: the agent uses kvm when a test guest runs under KVM, else
                          qemu (TCG, slow but works without nested virtualisation)
  --dry-run               print the steps without doing anything
  -h, --help              this help
EOF
}

die() { echo "$PROG: error: $*" >&2; exit 1; }
usage_error() { echo "$PROG: $*" >&2; echo "Try '$PROG --help'." >&2; exit 2; }
say() { echo "$PROG: $*"; }

name="" address="" controller="" debs="" datapath=auto domain_type=auto dry_run=0
need_value() { (($# >= 2)) || usage_error "$1 needs a value"; }
while (($# > 0)); do
  case "$1" in
    --name) need_value "$@"; name=$2; shift 2 ;;
    --address) need_value "$@"; address=$2; shift 2 ;;
    --controller) need_value "$@"; controller=$2; shift 2 ;;
    --debs) need_value "$@"; debs=$2; shift 2 ;;
    --datapath) need_value "$@"; datapath=$2; shift 2 ;;
    --domain-type) need_value "$@"; domain_type=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done
[ -n "$name" ] || usage_error "--name is required"
[[ $name =~ ^[a-z][a-z0-9-]{0,62}$ ]] || usage_error "--name '$name': use [a-z][a-z0-9-]{0,62}"
[ -n "$address" ] || usage_error "--address is required"
[[ $address =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || usage_error "--address '$address': give an IPv4 address"
[ -n "$controller" ] || usage_error "--controller is required"
[[ $controller =~ ^[^:[:space:]]+:[0-9]{1,5}$ ]] || usage_error "--controller '$controller': give HOST:PORT"
[ -n "$debs" ] || usage_error "--debs is required"
case "$datapath" in auto | system | netdev) ;; *) usage_error "--datapath '$datapath': use auto, system or netdev" ;; esac
case "$domain_type" in auto | kvm | qemu) ;; *) usage_error "--domain-type '$domain_type': use auto, kvm or qemu" ;; esac

# The packages: the newest of each name in DIR.
find_deb() {  # NAME
  local f
  f=$(find "$debs" -maxdepth 1 -name "$1_*.deb" 2>/dev/null | sort -V | tail -n1)
  [ -n "$f" ] || die "no $1_*.deb in $debs: build the packages (cmake --build build --target package)"
  echo "$f"
}
[ -d "$debs" ] || die "--debs '$debs': no such directory"
deb_ctl=$(find_deb regenctl)
deb_agent=$(find_deb regen-agent)

# domain_type auto goes to agent.yaml as it is: the agent picks kvm only when a test guest really
# runs under KVM (a /dev/kvm that is there may still not run guests), and logs why.

if [ "$datapath" = auto ]; then
  if modinfo openvswitch >/dev/null 2>&1; then
    datapath=system
  else
    datapath=netdev
    say "warning: no openvswitch kernel module: br-int uses the userspace datapath (netdev)"
  fi
fi

if ((dry_run)); then
  say "dry run: nothing is changed"
  run() { say "would run: $*"; }
else
  [ "$(id -u)" -eq 0 ] || die "run as root (or with sudo), or use --dry-run to see the steps"
  run() {
    say "run: $*"
    "$@" || die "'$*' failed (exit $?)"
  }
fi

export DEBIAN_FRONTEND=noninteractive
say "1/5 Debian packages"
run apt-get update -q
run apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}"

say "2/5 Regen packages"
run apt-get install -y -q --no-install-recommends "$deb_ctl" "$deb_agent"

say "3/5 libvirt and Open vSwitch"
run systemctl enable --now libvirtd.service openvswitch-switch.service

say "4/5 host setup"
run regen-install-host --host-name "$name" --address "$address" --controller "$controller" \
  --datapath "$datapath" --domain-type "$domain_type"

say "5/5 regen-agent"
run systemctl enable --now regen-agent.service
if ((dry_run == 0)); then
  # Type=notify: `systemctl start` has returned once the agent serves its control socket.
  systemctl is-active --quiet regen-agent.service ||
    die "regen-agent is not active: journalctl -u regen-agent -n 50"
  regen-agent status || true
  say "done: $name ($address) runs regen-agent, controller $controller"
else
  say "dry run done"
fi

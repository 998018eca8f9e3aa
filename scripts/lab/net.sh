# shellcheck shell=bash
# `scripts/lab.sh up --network ovs`: each lab host in a network namespace of its own with its own
# Open vSwitch (ovsdb-server + ovs-vswitchd, userspace datapath, files in DIR/host-K/ovs), the
# hosts joined by an underlay and VXLAN. Sourced by scripts/lab.sh (needs DIR, PROG, die, say,
# now_ms, cmdline_of).
#
#   root namespace                 namespace regen-lab-TAG-ul            namespace regen-lab-TAG-hK
#   rlTAG 10.249.X.254/24 --veth-- ctl --+
#   (the controller listens here)        br0 (Linux bridge) -- hKc --veth-- ctl0 10.249.X.K/24
#                                        |                  -- hKu --veth-- ul0 (port of br-phy)
#                                                                           br-phy 192.168.77.K/24
#                                                                           br-int (the agent's)
# The agent of host K runs in its namespace with OVS_RUNDIR=DIR/host-K/ovs, so the ovs-vsctl that
# libvirt (qemu:///embed runs inside the agent) calls to plug a VM's tap reaches that host's OVS;
# its tunnel address is 192.168.77.K (on br-phy, as OVS's userspace tunnelling wants); it reaches
# the controller through ctl0. TAG (5 digits) and X come from a checksum of DIR, so two labs in
# two directories do not collide. Checksum offload is off on every veth (the userspace datapath
# does not complete checksums). Every namespace made is recorded in DIR/net/namespaces and every
# daemon in its pidfile before it starts: net_down removes all of it, also after a failed up.

NET_UNDERLAY_PREFIX=192.168.77
NET_MTU_NOTE="guests use MTU 1400 (VXLAN adds 50 bytes on the 1500-byte underlay)"

net_tag() { printf '%05d' $(($(printf '%s' "$DIR" | cksum | cut -d' ' -f1) % 100000)); }
net_x() { echo $((10#$(net_tag) % 250)); }
net_ns_ul() { echo "regen-lab-$(net_tag)-ul"; }
net_ns_host() { echo "regen-lab-$(net_tag)-h$1"; }
net_root_if() { echo "rl$(net_tag)"; }
net_controller_ip() { echo "10.249.$(net_x).254"; }
net_control_ip() { echo "10.249.$(net_x).$1"; }
net_tunnel_ip() { echo "$NET_UNDERLAY_PREFIX.$1"; }
net_ovs_dir() { echo "$DIR/host-$1/ovs"; }

net_require() {  # net_require HOSTS: what --network ovs needs, or die
  local p missing=()
  for p in ip ethtool ovsdb-tool ovsdb-server ovs-vswitchd ovs-vsctl ovs-ofctl; do
    command -v "$p" >/dev/null || missing+=("$p")
  done
  ((${#missing[@]} == 0)) ||
    die "--network ovs needs ${missing[*]} (apt-get install iproute2 ethtool openvswitch-switch)"
  [ -e /usr/share/openvswitch/vswitch.ovsschema ] ||
    die "--network ovs: /usr/share/openvswitch/vswitch.ovsschema missing (apt-get install openvswitch-common)"
  [ "$(id -u)" = 0 ] || die "--network ovs needs root (network namespaces, veths)"
  local sock
  sock="$(net_ovs_dir "$1")/ovs-vswitchd.ctl"
  ((${#sock} <= 107)) ||
    die "--network ovs: --dir $DIR is too long: the OVS control socket $sock would pass the kernel's limit of 107 bytes"
  # The root end of the control link must not shadow a network this machine already uses.
  local net
  net="10.249.$(net_x)."
  if ip -4 -o addr show | grep -v " $(net_root_if) " | grep -q " inet $net"; then
    die "--network ovs: ${net}0/24 is already used on this machine; use another --dir (the subnet follows from it)"
  fi
}

# net_record_ns NS: records NS for net_down, and deletes a namespace of that name that an earlier
# lab in this very directory left without a record; the name carries DIR's checksum.
net_record_ns() {
  mkdir -p "$DIR/net"
  grep -qx "$1" "$DIR/net/namespaces" 2>/dev/null || echo "$1" >>"$DIR/net/namespaces"
  if [ -e "/var/run/netns/$1" ]; then
    say "network: deleting the namespace $1 an earlier lab in $DIR left"
    ip netns del "$1"
  fi
}

net_veth_off() {  # net_veth_off NS IFNAME: checksum offload off, up
  ip netns exec "$1" ethtool -K "$2" tx off >/dev/null 2>&1 || die "ethtool -K $2 tx off in $1 failed"
  ip -n "$1" link set "$2" up
}

# net_up N: the underlay, N host namespaces with their OVS, the control link.
net_up() {
  local n=$1 ul k
  ul=$(net_ns_ul)
  say "network: underlay namespace $ul, hosts in $(net_ns_host 1)..$(net_ns_host "$n"); control link $(net_root_if) $(net_controller_ip)/24; $NET_MTU_NOTE"
  net_record_ns "$ul"
  ip netns add "$ul" || die "ip netns add $ul failed"
  ip -n "$ul" link set lo up
  ip -n "$ul" link add br0 type bridge
  ip -n "$ul" link set br0 up
  if ip link show "$(net_root_if)" >/dev/null 2>&1; then ip link del "$(net_root_if)"; fi
  ip link add "$(net_root_if)" type veth peer name ctl netns "$ul" ||
    die "cannot create the veth $(net_root_if)"
  net_root_if >"$DIR/net/root_if"
  ip -n "$ul" link set ctl master br0
  net_veth_off "$ul" ctl
  ethtool -K "$(net_root_if)" tx off >/dev/null 2>&1 || true
  ip addr add "$(net_controller_ip)/24" dev "$(net_root_if)"
  ip link set "$(net_root_if)" up
  for ((k = 1; k <= n; k++)); do net_host_up "$k"; done
}

net_host_up() {
  local k=$1 ns ul d
  ns=$(net_ns_host "$k")
  ul=$(net_ns_ul)
  d=$(net_ovs_dir "$k")
  net_record_ns "$ns"
  ip netns add "$ns" || die "ip netns add $ns failed"
  ip -n "$ns" link set lo up
  ip -n "$ul" link add "h${k}c" type veth peer name ctl0 netns "$ns"
  ip -n "$ul" link add "h${k}u" type veth peer name ul0 netns "$ns"
  ip -n "$ul" link set "h${k}c" master br0
  ip -n "$ul" link set "h${k}u" master br0
  net_veth_off "$ul" "h${k}c"
  net_veth_off "$ul" "h${k}u"
  net_veth_off "$ns" ctl0
  net_veth_off "$ns" ul0
  ip -n "$ns" addr add "$(net_control_ip "$k")/24" dev ctl0

  rm -rf "$d"
  mkdir -p "$d"
  ovsdb-tool create "$d/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  ip netns exec "$ns" ovsdb-server "$d/conf.db" --remote="punix:$d/db.sock" \
    --pidfile="$d/ovsdb-server.pid" --unixctl="$d/ovsdb-server.ctl" \
    --log-file="$d/ovsdb-server.log" -vconsole:off --detach --no-chdir ||
    die "host-$k: ovsdb-server did not start (log $d/ovsdb-server.log)"
  ovs-vsctl --db="unix:$d/db.sock" --timeout=5 --no-wait init
  OVS_RUNDIR=$d ip netns exec "$ns" ovs-vswitchd "unix:$d/db.sock" \
    --pidfile="$d/ovs-vswitchd.pid" --unixctl="$d/ovs-vswitchd.ctl" \
    --log-file="$d/ovs-vswitchd.log" -vconsole:off --detach --no-chdir ||
    die "host-$k: ovs-vswitchd did not start (log $d/ovs-vswitchd.log)"
  # Waits until ovs-vswitchd applied it: br-phy (plain L2 switch) with the underlay veth and the
  # tunnel address, br-int as the agent makes it (it programs its flows).
  ovs-vsctl --db="unix:$d/db.sock" --timeout=15 \
    -- add-br br-phy -- set bridge br-phy datapath_type=netdev -- add-port br-phy ul0 \
    -- add-br br-int -- set bridge br-int datapath_type=netdev fail_mode=secure ||
    die "host-$k: ovs-vswitchd did not create br-phy and br-int (log $d/ovs-vswitchd.log)"
  ip -n "$ns" addr add "$(net_tunnel_ip "$k")/24" dev br-phy
  ip -n "$ns" link set br-phy up
}

# net_agent_yaml K: the ovs:, network: and image_dirs: lines of host K's agent.yaml.
net_agent_yaml() {
  local k=$1 d
  d=$(net_ovs_dir "$k")
  mkdir -p "$DIR/templates"
  cat <<YAML
ovs:
  bridge: br-int          # the VMs' NICs (this host's own Open vSwitch, see scripts/lab/net.sh)
  db_socket: unix:$d/db.sock
network:
  enabled: true
  bridge: br-int
  tunnel_ip: $(net_tunnel_ip "$k")
  db_socket: $d/db.sock
  run_dir: $d
  resync_interval: 5s
# Domain templates of the lab's services go in $DIR/templates (besides the default places).
image_dirs: ["$DIR/templates", "$DIR/host-$k/state/images", /etc/regen/templates]
YAML
}

# net_pids: the PIDs of the lab's OVS daemons (from their pidfiles) still running a command that
# names DIR.
net_pids() {
  local f pid
  for f in "$DIR"/host-*/ovs/ovs-vswitchd.pid "$DIR"/host-*/ovs/ovsdb-server.pid; do
    [ -e "$f" ] || continue
    pid=$(tr -dc '0-9' <"$f")
    if [ -z "$pid" ] || [ ! -e "/proc/$pid" ]; then continue; fi
    [[ " $(cmdline_of "$pid")" == *"$DIR/"* ]] && echo "$pid"
  done
  return 0
}

# net_down: stops the OVS daemons (by pidfile), deletes the namespaces (their veths go with them)
# and the root end of the control link. Quiet when there is nothing.
net_down() {
  local pids ns n=0
  pids=$(net_pids)
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 50); do
      [ -n "$(net_pids)" ] || break
      sleep 0.1
    done
    pids=$(net_pids)
    # shellcheck disable=SC2086
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  fi
  if [ -f "$DIR/net/namespaces" ]; then
    while read -r ns; do
      [[ $ns =~ ^regen-lab-[0-9]{5}-(ul|h[0-9]+)$ ]] || continue
      if [ -e "/var/run/netns/$ns" ]; then
        ip netns del "$ns" && n=$((n + 1))
      fi
    done <"$DIR/net/namespaces"
    rm -f "$DIR/net/namespaces"
  fi
  if [ -f "$DIR/net/root_if" ]; then
    local rif
    rif=$(cat "$DIR/net/root_if")
    [[ $rif =~ ^rl[0-9]{5}$ ]] && ip link show "$rif" >/dev/null 2>&1 && ip link del "$rif"
    rm -f "$DIR/net/root_if"
  fi
  ((n == 0)) || say "network: removed $n namespace(s) and the lab's Open vSwitch daemons"
  return 0
}

# shellcheck shell=bash
# The HA part of scripts/lab.sh (`up --ha [--controllers N]`), sourced by it: a private 3-member
# etcd (Debian's etcd-server; data dirs DIR/etcd-K/data, loopback ports, pidfiles
# DIR/etcd-K/etcd.pid) and N regen-controllers with store: etcd (DIR/controller-K/, one active,
# the others standbys). Uses lab.sh's DIR, say, die, start_process, port_free, port_open.

HA_ETCD_MEMBERS=3
HA_FIRST_PORT=23790   # etcd's client and peer ports: the first free ones from here
HA_LAST_PORT=23899

# The etcd binary ("" when none).
find_etcd() {
  local e
  e=$(command -v etcd 2>/dev/null || true)
  for e in $e /usr/bin/etcd /usr/sbin/etcd; do
    if [ -x "$e" ]; then echo "$e" && return 0; fi
  done
  return 0
}

# free_ports COUNT FROM TO [EXCLUDED...]: COUNT free loopback ports in [FROM, TO], one a line.
free_ports() {
  local n=$1 from=$2 to=$3 k got=0
  shift 3
  for ((k = from; k <= to && got < n; k++)); do
    [[ " $* " != *" $k "* ]] || continue
    if port_free "$k"; then echo "$k" && got=$((got + 1)); fi
  done
  ((got == n))
}

# ha_start_etcd: starts the members (a new cluster: earlier data is removed) and waits for their
# client ports. Sets HA_ETCD_ENDPOINTS ("127.0.0.1:P" ...).
HA_ETCD_ENDPOINTS=()
ha_start_etcd() {
  local etcd ports=() k initial="" client peer mdir deadline
  etcd=$(find_etcd)
  [ -n "$etcd" ] || die "--ha needs etcd (apt-get install etcd-server)"
  mapfile -t ports < <(free_ports $((2 * HA_ETCD_MEMBERS)) "$HA_FIRST_PORT" "$HA_LAST_PORT") ||
    die "no $((2 * HA_ETCD_MEMBERS)) free TCP ports on 127.0.0.1 from $HA_FIRST_PORT to $HA_LAST_PORT for etcd"
  HA_ETCD_ENDPOINTS=()
  for ((k = 1; k <= HA_ETCD_MEMBERS; k++)); do
    initial+="${initial:+,}etcd-$k=http://127.0.0.1:${ports[2 * k - 1]}"
    HA_ETCD_ENDPOINTS+=("127.0.0.1:${ports[2 * k - 2]}")
  done
  for ((k = 1; k <= HA_ETCD_MEMBERS; k++)); do
    client=127.0.0.1:${ports[2 * k - 2]}
    peer=127.0.0.1:${ports[2 * k - 1]}
    mdir=$DIR/etcd-$k
    rm -rf "$mdir/data"
    mkdir -p "$mdir"
    if [ -e "$mdir/etcd.log" ]; then mv -f "$mdir/etcd.log" "$mdir/etcd.log.prev"; fi
    # Fast etcd timings (as tests/integration/etcd/etcd_harness.cc): its leases may then be as
    # short as 1 s.
    start_process "etcd-$k" "$mdir/etcd.log" "$etcd" --name "etcd-$k" --data-dir "$mdir/data" \
      --listen-client-urls "http://$client" --advertise-client-urls "http://$client" \
      --listen-peer-urls "http://$peer" --initial-advertise-peer-urls "http://$peer" \
      --initial-cluster "$initial" --initial-cluster-token "regen-lab-$$" \
      --initial-cluster-state new --heartbeat-interval 50 --election-timeout 500
  done
  deadline=$((SECONDS + 30))
  for ((k = 1; k <= HA_ETCD_MEMBERS; k++)); do
    until port_open "${ports[2 * k - 2]}"; do
      ((SECONDS < deadline)) || die "etcd-$k does not listen on 127.0.0.1:${ports[2 * k - 2]} after 30 s; see $DIR/etcd-$k/etcd.log"
      sleep 0.1
    done
  done
  say "etcd: ${HA_ETCD_MEMBERS} members, client endpoints ${HA_ETCD_ENDPOINTS[*]}"
}

# ha_endpoints_yaml: the members' client endpoints as a YAML flow list's items.
ha_endpoints_yaml() {
  local endpoints="" e
  for e in "${HA_ETCD_ENDPOINTS[@]}"; do endpoints+="${endpoints:+, }\"$e\""; done
  echo "$endpoints"
}

# ha_write_controller_config K ADDR: DIR/controller-K/controller.yaml.
ha_write_controller_config() {
  local k=$1 endpoints
  endpoints=$(ha_endpoints_yaml)
  mkdir -p "$DIR/controller-$k"
  cat >"$DIR/controller-$k/controller.yaml" <<YAML
# Written by scripts/lab.sh up --ha: controller $k of the lab's HA cluster (one is active, the
# others are standbys that refuse every call naming the active one).
listen_address: "$2"
store: etcd
etcd:
  endpoints: [$endpoints]
  prefix: /regen/
  election_ttl: 2s        # a dead active controller is replaced within ~2 s
# The agents keep their own leases in etcd (their agent.yaml etcd: block): a host is down when
# etcd deletes its alive key, and a failover costs no lease. These pace heartbeats and holds.
heartbeat_interval: 200ms
host_down_after: 2500ms
fencing_lease: 2s
restart_allowance: 800ms
log_level: debug
insecure: true            # plaintext gRPC on loopback (a warning at start)
allow_loopback_hosts: true  # every lab agent announces 127.0.0.1 (one machine, no OVS)
YAML
}

# ha_agent_etcd_block: the etcd: block of an agent.yaml (after ha_start_etcd): its lease and key
# <prefix>hosts/<host>/alive live in etcd, TTL 4 s (> fencing_lease 2s + backstop 1s + 0.5 s).
ha_agent_etcd_block() {
  local endpoints
  endpoints=$(ha_endpoints_yaml)
  cat <<YAML
etcd:                     # this host's lease lives in etcd (HA mode)
  endpoints: [$endpoints]
  prefix: /regen/
  lease_ttl: 4s
YAML
}

# ha_start_controllers N ADDR...: starts them and waits until each listens (standbys listen too).
ha_start_controllers() {
  local n=$1 k a deadline
  shift
  for ((k = 1; k <= n; k++)); do
    if [ -e "$DIR/controller-$k/controller.log" ]; then
      mv -f "$DIR/controller-$k/controller.log" "$DIR/controller-$k/controller.log.prev"
    fi
    start_process "controller-$k" "$DIR/controller-$k/controller.log" "$CONTROLLER" run \
      --config "$DIR/controller-$k/controller.yaml"
  done
  deadline=$((SECONDS + UP_TIMEOUT))
  k=0
  for a in "$@"; do
    k=$((k + 1))
    until port_open "${a##*:}"; do
      [ "$(proc_state "$(read_pid "$(pidfile_of "controller-$k")")")" = alive ] || {
        print_logs
        die "controller-$k exited before listening on $a"
      }
      ((SECONDS < deadline)) || die "controller-$k does not listen on $a after ${UP_TIMEOUT} s"
      sleep 0.1
    done
  done
  say "controllers listen on $*"
}

# active_controller ADDRS: the address (of the comma-separated ADDRS) whose controller is the
# active one (standbys answer reads too, but refuse `events`); fails when none is.
active_controller() {
  local a
  for a in ${1//,/ }; do
    if timeout 5 "$REGENCTL" --controller "$a" events >/dev/null 2>&1; then
      echo "$a" && return 0
    fi
  done
  return 1
}

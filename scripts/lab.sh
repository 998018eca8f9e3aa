#!/usr/bin/env bash
# A whole Regen cluster on one machine, on loopback: one regen-controller and N regen-agents
# (simulated hosts host-1..host-N), on libvirt's test driver (no VMs) or on real QEMU/TCG
# (qemu:///embed, one root per host). Every file of the lab (configs, logs, pidfiles, the
# controller's database, the hosts' state) lives in one directory. See scripts/lab/README.md.
#
#   scripts/lab.sh up     [--hosts N] [--driver test|qemu] [--network none|ovs]
#                         [--ha [--controllers N]] [--dir DIR]
#   scripts/lab.sh status [--dir DIR]
#   scripts/lab.sh down   [--purge] [--dir DIR]
#
# Processes are only ever stopped by their recorded PID (after checking that the PID still runs a
# command line naming the lab directory), and qemu processes only when their command line names
# the lab directory: never by name alone.
set -euo pipefail

PROG=lab.sh
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lab/lib.sh
. "$REPO/scripts/lab/lib.sh"   # pidfile_of, cmdline_of (they use $DIR, set below)
# shellcheck source=scripts/lab/ha.sh
. "$REPO/scripts/lab/ha.sh"    # up --ha: etcd and several controllers
# shellcheck source=scripts/lab/net.sh
. "$REPO/scripts/lab/net.sh"   # up --network ovs: namespaces, Open vSwitch, VXLAN
DEFAULT_DIR=/tmp/regen-lab
MAX_HOSTS=64
FIRST_PORT=7400
LAST_PORT=7499
UP_TIMEOUT=${REGEN_LAB_TIMEOUT:-60}   # seconds `up` waits for the controller and all hosts
STOP_GRACE=5                          # seconds between SIGTERM and SIGKILL

usage() {
  cat <<EOF
Usage: scripts/lab.sh COMMAND [OPTIONS]

A Regen cluster on this machine: one regen-controller and N regen-agents on 127.0.0.1.

Commands:
  up       write the configs, start the controller and the agents, wait until every host is
           "up" in \`regenctl host list\` (at most ${UP_TIMEOUT} s), print what to type next.
           With a lab already fully running in DIR it does nothing and says so.
  status   each recorded process (name, pid, alive/dead), then \`regenctl host list\` and
           \`regenctl instance list\`. Exit 0 if every process is alive, 1 otherwise.
  down     stop every recorded process (SIGTERM, SIGKILL after ${STOP_GRACE} s) and every qemu whose
           command line names DIR; keep configs, logs and the database.

Options:
  --hosts N              number of simulated hosts, 1-${MAX_HOSTS} (up only; default 3)
  --driver test|qemu     libvirt driver of the hosts (up only; default test):
                           test  libvirt's test driver, no real VMs, nothing needs root
                           qemu  real QEMU/TCG through qemu:///embed (needs the user libvirt-qemu)
  --network none|ovs     up only, with --driver qemu (default none): ovs puts every host in a
                         network namespace of its own with its own Open vSwitch (userspace
                         datapath), joined by an underlay bridge and VXLAN; VMs get a NIC on
                         their host's br-int, the agents program its flows (agent.yaml network:).
                         The controller listens on a veth of this lab (10.249.X.254), not on
                         127.0.0.1; domain templates go in DIR/templates (agent.yaml
                         image_dirs). Needs root, iproute2, ethtool and openvswitch-switch.
  --ha                   up only: a 3-member etcd (loopback ports, data in DIR/etcd-K) and
                         several controllers with store: etcd (one active, the others standbys);
                         agents get every controller's address ("a:1,b:2,c:3"). etcd's data is
                         started afresh at every up.
  --controllers N        with --ha: number of controllers, 2-9 (default 3)
  --dir DIR              the lab directory (default \$REGEN_LAB_DIR, else ${DEFAULT_DIR})
  --purge                down only: also remove DIR entirely
  -h, --help             this help

Environment:
  REGEN_BUILD_DIR    where the binaries are (default: the repository's build/)
  REGEN_LAB_DIR      default lab directory
  REGEN_LAB_TIMEOUT  seconds \`up\` waits (default 60)
EOF
}

die() {  # runtime failure: exit 1
  echo "$PROG: $*" >&2
  exit 1
}
usage_error() {  # bad command line: exit 2
  echo "$PROG: $*" >&2
  echo "Try 'scripts/lab.sh --help'." >&2
  exit 2
}
say() { echo "$PROG: $*"; }

# ---------------------------------------------------------------------------------------------
# Command line

cmd=""
hosts=3
driver="test"
dir=${REGEN_LAB_DIR:-$DEFAULT_DIR}
purge=0
hosts_given=0
driver_given=0
ha=0
network=none
network_given=0
controllers=3
controllers_given=0

while (($# > 0)); do
  arg=$1
  case $arg in
    -h | --help)
      usage
      exit 0
      ;;
    up | down | status)
      [ -z "$cmd" ] || usage_error "one command only: got \"$cmd\" and \"$arg\""
      cmd=$arg
      shift
      continue
      ;;
    --purge)
      purge=1
      shift
      continue
      ;;
    --ha)
      ha=1
      shift
      continue
      ;;
    --hosts=* | --driver=* | --dir=* | --controllers=* | --network=*)
      opt=${arg%%=*}
      val=${arg#*=}
      shift
      ;;
    --hosts | --driver | --dir | --controllers | --network)
      (($# >= 2)) || usage_error "option $arg needs a value"
      opt=$arg
      val=$2
      shift 2
      ;;
    -*) usage_error "unknown option \"$arg\" (options: --hosts, --driver, --network, --ha, --controllers, --dir, --purge, --help)" ;;
    *) usage_error "unknown command \"$arg\" (commands: up, down, status)" ;;
  esac
  case $opt in
    --hosts)
      if ! [[ $val =~ ^[0-9]{1,4}$ ]] || ((10#$val < 1 || 10#$val > MAX_HOSTS)); then
        usage_error "--hosts: invalid value \"$val\" (a whole number from 1 to $MAX_HOSTS)"
      fi
      hosts=$((10#$val))
      hosts_given=1
      ;;
    --driver)
      [[ $val == test || $val == qemu ]] ||
        usage_error "--driver: invalid value \"$val\" (test or qemu)"
      driver=$val
      driver_given=1
      ;;
    --network)
      [[ $val == none || $val == ovs ]] ||
        usage_error "--network: invalid value \"$val\" (none or ovs)"
      network=$val
      network_given=1
      ;;
    --dir)
      [ -n "$val" ] || usage_error "--dir: invalid value \"\" (a directory path)"
      dir=$val
      ;;
    --controllers)
      [[ $val =~ ^[2-9]$ ]] || usage_error "--controllers: invalid value \"$val\" (a whole number from 2 to 9)"
      controllers=$val
      controllers_given=1
      ;;
  esac
done

[ -n "$cmd" ] || usage_error "no command given (commands: up, down, status)"
if [ "$cmd" != up ]; then
  ((hosts_given == 0)) || usage_error "--hosts: only for up, not for $cmd"
  ((driver_given == 0)) || usage_error "--driver: only for up, not for $cmd"
fi
if [ "$cmd" != up ] && ((ha)); then usage_error "--ha: only for up, not for $cmd"; fi
if [ "$cmd" != up ] && ((network_given)); then usage_error "--network: only for up, not for $cmd"; fi
if [ "$network" = ovs ] && [ "$driver" != qemu ]; then
  usage_error "--network ovs: only with --driver qemu (the test driver has no NICs)"
fi
if [ "$network" = ovs ] && ((ha)); then usage_error "--network ovs: not with --ha (not wired yet)"; fi
if ((controllers_given)) && ((!ha)); then usage_error "--controllers: only with --ha"; fi
if [ "$cmd" != down ] && ((purge)); then usage_error "--purge: only for down, not for $cmd"; fi

# The lab directory: absolute, without trailing slashes, and plain enough to go unquoted into
# YAML and into a libvirt URI.
[[ $dir == /* ]] || dir=$PWD/$dir
while [[ $dir == */ && $dir != / ]]; do dir=${dir%/}; done
[[ $dir != / && ! $dir =~ (^|/)\.\.?(/|$) ]] ||
  usage_error "--dir: invalid value \"$dir\" (not /, no . or .. components)"
[[ $dir =~ ^/[A-Za-z0-9._+/-]+$ ]] ||
  usage_error "--dir: invalid value \"$dir\" (letters, digits and . _ + - / only: it goes into a libvirt URI)"
sock=$dir/host-$hosts/agent.sock
((${#sock} <= 107)) ||
  usage_error "--dir: invalid value \"$dir\" (too long: the agents' control socket $sock would pass the kernel's limit of 107 bytes)"
DIR=$dir                 # pidfiles: DIR/controller.pid, DIR/host-K/agent.pid (pidfile_of)
MARKER=$DIR/.regen-lab   # written by `up`: this directory is a lab (and --purge may remove it)
LABCONF=$DIR/lab.conf    # what `up` started: hosts=N driver=D controller=ADDR

BUILD=${REGEN_BUILD_DIR:-$REPO/build}
[[ $BUILD == /* ]] || BUILD=$PWD/$BUILD
AGENT=$BUILD/agent/regen-agent
CONTROLLER=$BUILD/controller/regen-controller
REGENCTL=$BUILD/ctl/regenctl

# ---------------------------------------------------------------------------------------------
# Processes

now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo "${t:0:-3}"; }

# proc_state PID: "alive" (runs a command naming the lab directory), "dead" (gone or a zombie),
# or "other" (the PID was reused by an unrelated process: never signal it).
proc_state() {
  local pid=$1 stat=""
  [[ $pid =~ ^[0-9]+$ ]] || { echo dead; return; }
  read -r stat 2>/dev/null <"/proc/$pid/stat" || true
  [ -n "$stat" ] || { echo dead; return; }
  stat=${stat##*) }
  [[ ${stat:0:1} != Z && ${stat:0:1} != X ]] || { echo dead; return; }
  if [[ " $(cmdline_of "$pid")" == *"$DIR/"* ]]; then echo alive; else echo other; fi
}

read_pid() { local p; p=$(cat "$1" 2>/dev/null || true); echo "${p//[^0-9]/}"; }

# The recorded process names (those with a pidfile, see pidfile_of), controller first, then the
# hosts in numeric order.
recorded_names() {
  local f name names=()
  for f in "$DIR"/etcd-[0-9]/etcd.pid "$DIR"/controller-[0-9]/controller.pid; do
    [ -e "$f" ] || continue
    name=${f%/*}
    echo "${name##*/}"
  done
  if [ -e "$(pidfile_of controller)" ]; then echo controller; fi
  for f in "$DIR"/host-*/agent.pid; do
    [ -e "$f" ] || continue
    name=${f%/agent.pid}
    name=${name##*/}
    [[ $name =~ ^host-[0-9]+$ ]] && names+=("$name")
  done
  ((${#names[@]})) || return 0
  printf '%s\n' "${names[@]}" | sort -t- -k2,2n
}

# remove_pidfiles: removes every pidfile of the lab (and any half-written one).
remove_pidfiles() {
  rm -f "$DIR"/controller.pid{,.tmp} "$DIR"/host-*/agent.pid{,.tmp} \
    "$DIR"/controller-[0-9]/controller.pid{,.tmp} "$DIR"/etcd-[0-9]/etcd.pid{,.tmp}
}

# The qemu processes of this lab: a qemu-system-* executable with the lab directory on its
# command line (qemu:///embed puts its root, under DIR, into every qemu's arguments).
# Not lib.sh's lab_qemu_pids, on purpose: this one also recognises a qemu by argv[0] and counts
# zombies (so `down` reports a qemu nobody reaped), and has no SUBDIR argument.
all_lab_qemu_pids() {
  local p comm argv0
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    comm="" argv0=""
    read -r comm 2>/dev/null <"/proc/$p/comm" || true
    IFS= read -r -d '' argv0 2>/dev/null <"/proc/$p/cmdline" || true
    [[ $comm == qemu-system* || ${argv0##*/} == qemu-system-* ]] || continue
    [[ " $(cmdline_of "$p")" == *"$DIR/"* ]] && echo "$p"
  done
  return 0
}

# start_process NAME LOG COMMAND...: runs COMMAND in its own session, detached from this script
# (stdin /dev/null, stdout and stderr to LOG), and records its PID in $(pidfile_of NAME).
start_process() {
  local name=$1 log=$2 pidfile pid i
  pidfile=$(pidfile_of "$1")
  shift 2
  mkdir -p "${pidfile%/*}"
  rm -f "$pidfile" "$pidfile.tmp"
  # The shell records its own PID and then becomes COMMAND (exec keeps the PID).
  # shellcheck disable=SC2016
  setsid -f bash -c 'echo $$ >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' "$pidfile" "$@" \
    </dev/null >"$log" 2>&1
  for i in $(seq 50); do
    pid=$(read_pid "$pidfile")
    [ -z "$pid" ] || break
    sleep 0.1
  done
  [ -n "$pid" ] || die "$name did not start (no pidfile $pidfile); see $log"
  say "started $name (pid $pid, log $log)"
}

# stop_all: SIGTERM to every recorded process that is alive, SIGKILL after STOP_GRACE seconds,
# then the same for the lab's qemu processes. Returns 1 if anything is still running after that.
# Sets `stopped` and `stopped_qemu` (counts).
stopped=0
stopped_qemu=0
stop_all() {
  local name pid st i left=() victims=() qemus
  for name in $(recorded_names); do
    pid=$(read_pid "$(pidfile_of "$name")")
    st=$(proc_state "$pid")
    case $st in
      alive)
        victims+=("$pid")
        kill -TERM "$pid" 2>/dev/null || true
        ;;
      other) echo "$PROG: $name: pid $pid now belongs to another process ($(cmdline_of "$pid" | cut -c1-80 | sed 's/ *$//')); not touching it" >&2 ;;
    esac
  done
  stopped=${#victims[@]}
  ((${#victims[@]} == 0)) || kill_and_wait "${victims[@]}"
  # The agents leave their domains running on SIGTERM; with qemu:///embed those are real
  # processes.
  qemus=$(all_lab_qemu_pids)
  if [ -n "$qemus" ]; then
    # shellcheck disable=SC2086
    stopped_qemu=$(echo $qemus | wc -w)
    # shellcheck disable=SC2086
    kill -TERM $qemus 2>/dev/null || true
    # shellcheck disable=SC2086
    kill_and_wait $qemus
  fi
  # Nothing may be left.
  for name in $(recorded_names); do
    pid=$(read_pid "$(pidfile_of "$name")")
    [ "$(proc_state "$pid")" != alive ] || left+=("$name (pid $pid)")
  done
  for pid in $(all_lab_qemu_pids); do left+=("qemu (pid $pid)"); done
  # The network of --network ovs (namespaces, veths, OVS daemons), after the VMs.
  net_down
  for pid in $(net_pids); do left+=("Open vSwitch daemon (pid $pid)"); done
  for i in "${left[@]}"; do echo "$PROG: still running after SIGKILL: $i" >&2; done
  ((${#left[@]} == 0))
}

# kill_and_wait PID...: waits up to STOP_GRACE s for the (already signalled) PIDs to end, then
# SIGKILLs the rest and waits up to 2 s more. Only PIDs still running a lab command are touched.
kill_and_wait() {
  local pid alive=() deadline
  deadline=$(($(now_ms) + STOP_GRACE * 1000))
  while :; do
    alive=()
    for pid in "$@"; do [ "$(proc_state "$pid")" != alive ] || alive+=("$pid"); done
    ((${#alive[@]})) || return 0
    (($(now_ms) < deadline)) || break
    sleep 0.1
  done
  for pid in "${alive[@]}"; do
    echo "$PROG: pid $pid did not stop within ${STOP_GRACE} s of SIGTERM: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  done
  deadline=$(($(now_ms) + 2000))
  while (($(now_ms) < deadline)); do
    alive=()
    for pid in "$@"; do [ "$(proc_state "$pid")" != alive ] || alive+=("$pid"); done
    ((${#alive[@]})) || return 0
    sleep 0.1
  done
  return 0
}

# ---------------------------------------------------------------------------------------------
# Controller queries

CTL_HOST=127.0.0.1   # where the controller listens (--network ovs: the lab's veth)
port_open() { (exec 3<>"/dev/tcp/$CTL_HOST/$1") 2>/dev/null; }

port_free() {
  if command -v ss >/dev/null; then
    [ -z "$(ss -Htln "sport = :$1" 2>/dev/null)" ] || return 1
  fi
  ! port_open "$1"
}

# up_host_names ADDR SINCE_MS: the names of the hosts regenctl lists in state "up", one a line.
# With jq, a host must also have sent a heartbeat since SINCE_MS (not an "up" left in the
# database by an earlier run).
up_host_names() {
  local json
  json=$(timeout 10 "$REGENCTL" --controller "$1" host list -o json 2>/dev/null) || return 1
  if command -v jq >/dev/null; then
    jq -r --argjson since "$2" '(if type == "array" then . else (.hosts // []) end) | .[]
           | select(((.state // "") | ascii_downcase) == "up")
           | select((.last_heartbeat_unix_ms // $since) >= $since) | .name' <<<"$json" 2>/dev/null
  else
    # Without jq: pair each "state" string with the "name" string before it.
    grep -oE '"(name|state)"[[:space:]]*:[[:space:]]*"[^"]*"' <<<"$json" |
      sed -E 's/^"([a-z]+)"[[:space:]]*:[[:space:]]*"([^"]*)"$/\1 \2/' |
      awk '$1 == "name" {n = $2} $1 == "state" && tolower($2) == "up" {print n}'
  fi
}

print_logs() {
  local name log
  for name in $(recorded_names); do
    log=$(log_of "$name")
    echo "---- last lines of $log ----" >&2
    tail -n 20 "$log" >&2 2>/dev/null || echo "(no log)" >&2
  done
}

log_of() {
  case $1 in
    controller) echo "$DIR/controller.log" ;;
    controller-*) echo "$DIR/$1/controller.log" ;;
    etcd-*) echo "$DIR/$1/etcd.log" ;;
    *) echo "$DIR/$1/agent.log" ;;
  esac
}

labconf_get() { [ -f "$LABCONF" ] || return 0; sed -n "s/^$1=//p" "$LABCONF" | head -n 1; }

# ---------------------------------------------------------------------------------------------
# up

write_controller_config() {
  cat >"$DIR/controller.yaml" <<YAML
# Written by scripts/lab.sh up: the lab's controller (fast failure detection for drills).
listen_address: "$1"
database: $DIR/controller.db
heartbeat_interval: 200ms
host_down_after: 2500ms   # > fencing_lease + heartbeat_interval (no watchdog here; with one: > fencing_lease + its timeout + 250ms)
fencing_lease: 2s         # as the agents' fencing_lease: covers a controller restart twice
restart_allowance: 800ms  # kill -9, restart after 0.5 s, agents back within 100 ms
log_level: debug
insecure: true            # plaintext gRPC on loopback (a warning at start); see README "Security"
allow_loopback_hosts: true  # every lab agent announces 127.0.0.1 (one machine, no OVS)
YAML
}

write_node_xml() {  # a small libvirt test-driver host matching the agent's capacity
  cat >"$1" <<'XML'
<node>
  <cpu>
    <nodes>1</nodes>
    <sockets>1</sockets>
    <cores>8</cores>
    <threads>1</threads>
    <active>8</active>
    <mhz>2000</mhz>
    <model>i686</model>
  </cpu>
  <memory>8388608</memory>
</node>
XML
}

write_agent_config() {  # write_agent_config NAME CONTROLLER_ADDR[,ADDR...]
  local name=$1 hdir=$DIR/$1 uri dtype
  mkdir -p "$hdir/state"
  if [ "$driver" = test ]; then
    write_node_xml "$hdir/node.xml"
    uri="test://$hdir/node.xml"
    dtype="test"
  else
    mkdir -p "$hdir/root/etc"
    chmod 0755 "$hdir" "$hdir/root"   # qemu runs as libvirt-qemu and must reach its files
    # qemu as root: as libvirt-qemu, with a root-only /dev/kvm, libvirt's capability cache is never
    # valid and every start probes again (tests/fakes/test_util.h kEmbedQemuConf).
    printf 'stdio_handler = "file"\nuser = "root"\ngroup = "root"\n' >"$hdir/root/etc/qemu.conf"
    uri="qemu:///embed?root=$hdir/root"
    dtype=auto   # kvm when a test guest runs under KVM here, else TCG (agent/domain_type.h)
  fi
  local address=127.0.0.1 ovs_block='ovs:
  bridge: ""              # no NICs in the lab'
  if [ "$network" = ovs ]; then
    address=$(net_tunnel_ip "${name#host-}")
    ovs_block=$(net_agent_yaml "${name#host-}")
  fi
  cat >"$hdir/agent.yaml" <<YAML
# Written by scripts/lab.sh up: simulated host $name of the lab in $DIR.
host_name: $name
address: $address
controller_address: "$2"
libvirt_uri: "$uri"
domain_type: $dtype
fault_injection: true     # regen-agent inject crash|hang, for drills
poll_interval: 200ms
fencing_lease: 2s
$ovs_block
state_dir: $hdir/state
control_socket: $hdir/agent.sock
capacity: {vcpus: 8, memory_mib: 8192, disk_gib: 100, bandwidth_mbps: 1000}
log_level: debug
insecure: true            # plaintext gRPC to the lab controller (a warning at start)
YAML
}

print_next_steps() {  # print_next_steps ADDR[,ADDR...]
  local dir_opt="" k a
  [ "$DIR" = "$DEFAULT_DIR" ] || dir_opt=" --dir $DIR"
  cat <<EOF

Lab directory: $DIR
EOF
  if [ "$(labconf_get ha)" = 1 ]; then
    k=0
    for a in ${1//,/ }; do
      k=$((k + 1))
      echo "  controller-$k $a  (config $DIR/controller-$k/controller.yaml, log $DIR/controller-$k/controller.log)"
    done
    for ((k = 1; k <= HA_ETCD_MEMBERS; k++)); do echo "  etcd-$k       log $DIR/etcd-$k/etcd.log"; done
  else
    echo "  controller  $1  (config $DIR/controller.yaml, log $DIR/controller.log)"
  fi
  for ((k = 1; k <= $(labconf_get hosts); k++)); do
    echo "  host-$k      config $DIR/host-$k/agent.yaml, log $DIR/host-$k/agent.log"
  done
  cat <<EOF

Next:
  export REGEN_CONTROLLER=$1
  export PATH="$BUILD/ctl:$BUILD/controller:$BUILD/agent:\$PATH"
  regenctl service apply -f $REPO/scripts/lab/web.yaml
  regenctl instance list
  regenctl host list
  regen-agent status --config $DIR/host-1/agent.yaml
EOF
  if "$AGENT" --help 2>/dev/null | grep -qw inject; then
    echo "  regen-agent inject crash web-0 --config $DIR/host-K/agent.yaml   # K: web-0's host"
  fi
  cat <<EOF
  $REPO/scripts/lab.sh status$dir_opt
  $REPO/scripts/lab.sh down$dir_opt          # add --purge to remove $DIR too
EOF
}

up_started=0
up_ok=0
on_up_exit() {
  if ((up_started && !up_ok)); then
    echo "$PROG: up failed; stopping what it started (logs kept in $DIR)" >&2
    stop_all >&2 || true
    remove_pidfiles
  fi
}

cmd_up() {
  local missing=() b name st pid alive=() dead=() other=() port addr k deadline want up_names n
  local started_ms

  for b in "$CONTROLLER" "$AGENT" "$REGENCTL"; do [ -x "$b" ] || missing+=("$b"); done
  ((${#missing[@]} == 0)) ||
    die "missing ${missing[*]} (run scripts/build.sh, or set REGEN_BUILD_DIR to a build directory)"
  command -v setsid >/dev/null || die "setsid not found (Debian package util-linux)"
  command -v timeout >/dev/null || die "timeout not found (Debian package coreutils)"
  if [ "$driver" = qemu ]; then
    getent passwd libvirt-qemu >/dev/null ||
      die "--driver qemu needs the user libvirt-qemu (apt-get install libvirt-daemon-system)"
    command -v qemu-system-x86_64 >/dev/null ||
      die "--driver qemu needs qemu-system-x86_64 (apt-get install qemu-system-x86)"
    [ "$network" != ovs ] || net_require "$hosts"
    # qemu runs as libvirt-qemu: every directory above DIR must let others through.
    local d=${DIR%/*}
    while [ -n "$d" ]; do
      [ "$(($(stat -c '0%a' "$d" 2>/dev/null || echo 0755) & 1))" = 1 ] ||
        die "--driver qemu: $d is not searchable by others (mode $(stat -c %a "$d")); qemu runs as libvirt-qemu and could not reach $DIR: use another --dir"
      d=${d%/*}
    done
  fi

  # A lab already recorded in DIR?
  for name in $(recorded_names); do
    pid=$(read_pid "$(pidfile_of "$name")")
    st=$(proc_state "$pid")
    case $st in
      alive) alive+=("$name") ;;
      dead) dead+=("$name") ;;
      other) other+=("$name") ;;
    esac
  done
  if ((${#alive[@]})); then
    if ((${#dead[@]} + ${#other[@]})); then
      dead+=("${other[@]}")
      die "a lab in $DIR is partly running (alive: ${alive[*]}; dead: ${dead[*]}); run scripts/lab.sh down --dir $DIR first"
    fi
    if { ((network_given)) && [ "$network" != "$(labconf_get network)" ]; } ||
      { ((hosts_given)) && [ "$hosts" != "$(labconf_get hosts)" ]; } ||
      { ((driver_given)) && [ "$driver" != "$(labconf_get driver)" ]; }; then
      die "a lab with $(labconf_get hosts) hosts on driver $(labconf_get driver) is running in $DIR; run scripts/lab.sh down --dir $DIR first to start one with $hosts hosts on driver $driver"
    fi
    say "a lab is already running in $DIR (${alive[*]}): nothing to do"
    print_next_steps "$(labconf_get controller)"
    return 0
  fi
  if ((${#dead[@]} + ${#other[@]})); then
    say "removing the pidfiles of a previous lab in $DIR (none of its processes runs)"
    remove_pidfiles
  fi

  # Never write into a directory that is not a lab.
  if [ -e "$DIR" ] && [ ! -e "$MARKER" ]; then
    [ -d "$DIR" ] || die "$DIR exists and is not a directory; choose another --dir"
    [ -z "$(ls -A "$DIR")" ] ||
      die "$DIR is not empty and not a lab directory (no $MARKER); choose another --dir"
  fi
  mkdir -p "$DIR"
  chmod 0755 "$DIR"   # qemu runs as libvirt-qemu and must reach its files
  echo "Regen lab directory written by scripts/lab.sh; 'scripts/lab.sh down --purge' removes it." >"$MARKER"

  local ports=()
  if ((ha)); then
    [ -n "$(find_etcd)" ] || die "--ha needs etcd (apt-get install etcd-server)"
    mapfile -t ports < <(free_ports "$controllers" "$FIRST_PORT" "$LAST_PORT") ||
      die "no $controllers free TCP ports on 127.0.0.1 from $FIRST_PORT to $LAST_PORT"
  else
    mapfile -t ports < <(free_ports 1 "$FIRST_PORT" "$LAST_PORT") ||
      die "no free TCP port on 127.0.0.1 from $FIRST_PORT to $LAST_PORT"
  fi
  port=${ports[0]}
  [ "$network" != ovs ] || CTL_HOST=$(net_controller_ip)
  addr=""
  for k in "${ports[@]}"; do addr+="${addr:+,}$CTL_HOST:$k"; done
  echo "$addr" >"$DIR/controller.addr"
  printf 'hosts=%s\ndriver=%s\ncontroller=%s\nha=%s\ncontrollers=%s\nnetwork=%s\n' "$hosts" \
    "$driver" "$addr" "$ha" "$( ((ha)) && echo "$controllers" || echo 1)" "$network" >"$LABCONF"
  ((ha)) || write_controller_config "$addr"
  for ((k = 1; k <= hosts; k++)); do write_agent_config "host-$k" "$addr"; done
  # Keep the previous run's logs once.
  for f in "$DIR/controller.log" "$DIR"/host-*/agent.log; do
    if [ -e "$f" ]; then mv -f "$f" "$f.prev"; fi
  done

  if ((ha)); then
    say "starting an HA lab in $DIR: 3 etcd members, $controllers controllers on $addr, $hosts hosts on driver $driver"
  else
    say "starting a lab in $DIR: controller on $addr, $hosts hosts on driver $driver, network $network"
  fi
  up_started=1
  trap on_up_exit EXIT
  trap 'exit 130' INT TERM
  net_down   # what a previous lab in DIR may have left
  [ "$network" != ovs ] || net_up "$hosts"
  deadline=$((SECONDS + UP_TIMEOUT))
  started_ms=$(now_ms)

  if ((ha)); then
    ha_start_etcd
    # The agents keep their leases in etcd (the members' ports are known only now).
    for ((k = 1; k <= hosts; k++)); do ha_agent_etcd_block >>"$DIR/host-$k/agent.yaml"; done
    for ((k = 1; k <= controllers; k++)); do
      ha_write_controller_config "$k" "127.0.0.1:${ports[k - 1]}"
    done
    # shellcheck disable=SC2086 # one argument per address
    ha_start_controllers "$controllers" ${addr//,/ }
  else
    start_process controller "$DIR/controller.log" "$CONTROLLER" run --config "$DIR/controller.yaml"
  fi
  until port_open "$port"; do
    [ "$(proc_state "$(read_pid "$(pidfile_of controller)")")" = alive ] || {
      print_logs
      die "regen-controller exited before listening on $addr"
    }
    ((SECONDS < deadline)) || {
      print_logs
      die "regen-controller does not accept connections on $addr after ${UP_TIMEOUT} s"
    }
    sleep 0.1
  done
  say "controller accepts connections on $addr"

  for ((k = 1; k <= hosts; k++)); do
    if [ "$network" = ovs ]; then
      # In its host's namespace; libvirt's ovs-vsctl finds that host's OVS through OVS_RUNDIR.
      start_process "host-$k" "$DIR/host-$k/agent.log" env "OVS_RUNDIR=$(net_ovs_dir "$k")" \
        ip netns exec "$(net_ns_host "$k")" "$AGENT" run --config "$DIR/host-$k/agent.yaml"
    else
      start_process "host-$k" "$DIR/host-$k/agent.log" "$AGENT" run --config "$DIR/host-$k/agent.yaml"
    fi
  done

  want=$hosts
  n=-1
  while :; do
    for name in $(recorded_names); do
      [ "$(proc_state "$(read_pid "$(pidfile_of "$name")")")" = alive ] || {
        print_logs
        die "$name exited during startup (log $(log_of "$name"))"
      }
    done
    local query=$addr
    if ((ha)); then query=$(active_controller "$addr") || query=${addr%%,*}; fi
    up_names=$(up_host_names "$query" "$started_ms" || true)
    local count=0
    for ((k = 1; k <= hosts; k++)); do
      if grep -qx "host-$k" <<<"$up_names"; then count=$((count + 1)); fi
    done
    if ((count != n)); then
      say "hosts up: $count/$want"
      n=$count
    fi
    ((count < want)) || break
    ((SECONDS < deadline)) || {
      echo "$PROG: regenctl host list:" >&2
      timeout 10 "$REGENCTL" --controller "$addr" host list >&2 || true
      print_logs
      die "only $count of $want hosts are up after ${UP_TIMEOUT} s"
    }
    sleep 0.2
  done
  up_ok=1
  local range=host-1
  ((hosts == 1)) || range="host-1..host-$hosts"
  say "lab is up: controller $addr, hosts $range (driver $driver, network $network)"
  print_next_steps "$addr"
}

# ---------------------------------------------------------------------------------------------
# down

cmd_down() {
  local names
  if [ ! -d "$DIR" ]; then
    say "no lab in $DIR: nothing to stop"
    return 0
  fi
  if ((purge)) && [ ! -e "$MARKER" ]; then
    die "--purge: $DIR is not a lab directory (no $MARKER); not removing it"
  fi
  names=$(recorded_names)
  stop_all || die "could not stop everything (see above); pidfiles kept ($DIR/controller.pid, $DIR/host-K/agent.pid)"
  remove_pidfiles
  if ((stopped + stopped_qemu == 0)); then
    say "nothing was running in $DIR${names:+ (stale pidfiles removed)}"
  else
    local extra=""
    ((stopped_qemu == 0)) || extra=" and $stopped_qemu qemu process(es)"
    say "stopped $stopped lab process(es)$extra in $DIR"
  fi
  if ((purge)); then
    rm -rf -- "$DIR"
    say "removed $DIR"
  else
    say "configs, logs and the database are kept in $DIR (--purge removes them)"
  fi
}

# ---------------------------------------------------------------------------------------------
# status

cmd_status() {
  local names name pid st all_alive=1 ctl_alive=0 addr qemus
  names=$(recorded_names)
  if [ -z "$names" ]; then
    say "no lab is recorded in $DIR (start one with scripts/lab.sh up)"
    return 1
  fi
  addr=$(labconf_get controller)
  echo "lab $DIR: $(labconf_get hosts) hosts, driver $(labconf_get driver), network $(labconf_get network), controller ${addr:-?}"
  printf '%-12s %-8s %s\n' NAME PID STATE
  for name in $names; do
    pid=$(read_pid "$(pidfile_of "$name")")
    st=$(proc_state "$pid")
    case $st in
      alive) [[ $name != controller* ]] || ctl_alive=1 ;;
      other) st="dead (pid reused by another process)" && all_alive=0 ;;
      *) all_alive=0 ;;
    esac
    printf '%-12s %-8s %s\n' "$name" "${pid:--}" "$st"
  done
  qemus=$(all_lab_qemu_pids)
  # shellcheck disable=SC2086
  [ -z "$qemus" ] || echo "qemu processes of the lab: $(echo $qemus | wc -w)"
  if ((ctl_alive)) && [ -n "$addr" ] && [ "$(labconf_get ha)" = 1 ]; then
    echo "controllers: $addr; active: $(active_controller "$addr" || echo none)"
    addr=$(active_controller "$addr") || addr=""
  fi
  if ((ctl_alive)) && [ -n "$addr" ]; then
    if [ -x "$REGENCTL" ]; then
      echo
      echo "\$ regenctl host list"
      timeout 10 "$REGENCTL" --controller "$addr" host list || echo "$PROG: regenctl host list failed" >&2
      echo
      echo "\$ regenctl instance list"
      timeout 10 "$REGENCTL" --controller "$addr" instance list || echo "$PROG: regenctl instance list failed" >&2
    else
      echo "$PROG: $REGENCTL not found: no host or instance list" >&2
    fi
  fi
  ((all_alive))
}

case $cmd in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
esac

#!/usr/bin/env bash
# Regen demo on one machine, no KVM needed: a lab cluster (scripts/lab.sh: one regen-controller
# and three regen-agents, i.e. three simulated hosts) runs the service "web" (6 VMs in 3 update
# domains, scripts/lab/web.yaml) on real QEMU/TCG (qemu:///embed), then
#   1. one VM's qemu is killed with kill -9: the controller re-creates it on another host with
#      the same IP and MAC and generation+1;
#   2. a whole host is lost (its agent and its qemus killed with -9): once its heartbeats stop,
#      every instance it ran is healed on the other hosts;
# and prints the instance tables, the figures (from the kill to running on the new host, taken
# from the controller's event timestamps) and a timeline of the run.
# The lab lives in a fresh temp dir and is always stopped and removed at the end (also on failure
# or Ctrl-C); the script checks that no qemu of that dir survives.
#
#   scripts/demo.sh [--driver qemu|test] [--ha]
#   scripts/demo.sh --network      (scripts/lab/demo-network.sh: traffic between guests across a
#                                   heal, on a lab with real networking; needs root and OVS)
#
# --ha runs the lab with 3 etcd members and 3 controllers (scripts/lab.sh up --ha) and kills the
# active controller with kill -9 right after the VM crash: a standby takes over and finishes the
# heal.
#
# --driver test runs the same on libvirt's test driver (no real VMs): the VM crash is
# `regen-agent inject crash`, the host loss a kill -9 of the agent (its VMs live inside it).
set -euo pipefail

PROG=demo.sh
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
# shellcheck source=scripts/lab/lib.sh
. "$REPO/scripts/lab/lib.sh"
# shellcheck source=scripts/lab/ha.sh
. "$REPO/scripts/lab/ha.sh"    # --ha: active_controller

usage() {
  cat <<EOF
Usage: scripts/demo.sh [--driver qemu|test] [--ha]
       scripts/demo.sh --network

Starts a 3-host Regen lab in a temp dir, deploys scripts/lab/web.yaml, kills one VM, then one
whole host, waits for the controller to heal each, prints tables, figures and a timeline, and
stops and removes the lab.

Options:
  --driver qemu|test   qemu (default): real QEMU/TCG VMs, the crash is kill -9 of a qemu;
                       test: libvirt's test driver, the crash is regen-agent inject crash
  --ha                 3 etcd members and 3 controllers; the active controller is killed with
                       kill -9 in the middle of the first heal and a standby finishes it
  --network            instead: traffic between guests across a heal, on a lab with real
                       networking: see scripts/lab/demo-network.sh
  -h, --help           this help

Environment:
  REGEN_BUILD_DIR        where the binaries are (default: the repository's build/)
  REGEN_DEMO_TIMEOUT     seconds to wait for the deployment (default 180); each heal waits 60 s
EOF
}

die() {
  echo "$PROG: $*" >&2
  exit 1
}

driver=qemu
ha=""
while (($# > 0)); do
  case $1 in
    --network)
      (($# == 1)) || {
        echo "$PROG: --network takes no other option" >&2
        exit 2
      }
      exec "$REPO/scripts/lab/demo-network.sh"
      ;;
    --ha)
      ha=--ha
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    --driver)
      (($# >= 2)) || {
        echo "$PROG: option --driver needs a value (qemu or test)" >&2
        exit 2
      }
      driver=$2
      shift 2
      ;;
    --driver=*)
      driver=${1#*=}
      shift
      ;;
    *)
      echo "$PROG: unknown argument \"$1\" (try --help)" >&2
      exit 2
      ;;
  esac
done
[[ $driver == qemu || $driver == test ]] || {
  echo "$PROG: --driver: invalid value \"$driver\" (qemu or test)" >&2
  exit 2
}

BUILD=${REGEN_BUILD_DIR:-$REPO/build}
[[ $BUILD == /* ]] || BUILD=$REPO/$BUILD
AGENT=$BUILD/agent/regen-agent
REGENCTL=$BUILD/ctl/regenctl
CONTROLLER=$BUILD/controller/regen-controller
if [ ! -x "$AGENT" ] || [ ! -x "$REGENCTL" ] || [ ! -x "$CONTROLLER" ]; then
  [ -z "${REGEN_BUILD_DIR:-}" ] || die "no regen binaries in $BUILD"
  scripts/build.sh
fi
command -v jq >/dev/null || die "jq not found (scripts/install-deps.sh installs it)"

DEPLOY_TIMEOUT=${REGEN_DEMO_TIMEOUT:-180}   # the first VM of a qemu root probes its capabilities
HEAL_TIMEOUT=60
SERVICE=web
COUNT=6

now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo "${t:0:-3}"; }
T0=$(now_ms)
say() {
  local ms=$(($(now_ms) - T0))
  printf '[%3d.%d s] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"
}

# ---------------------------------------------------------------------------------------------
# The lab directory and its cleanup

DIR=$(mktemp -d /tmp/regen-demo.XXXXXX)
chmod 0755 "$DIR"   # qemu runs as libvirt-qemu and must reach the lab's files
ADDR=""
TAB=$'\t'
MARKS=()            # our own actions for the timeline: "unix_ms<TAB>demo<TAB>text"



cleanup() {
  local rc=$? left
  trap - EXIT INT TERM
  echo
  if ((rc != 0)) && [ -d "$DIR" ]; then lab_keep_logs "$PROG" "failed (exit $rc)"; fi
  say "stopping the lab (scripts/lab.sh down --purge)"
  if [ -e "$DIR/.regen-lab" ]; then
    scripts/lab.sh down --purge --dir "$DIR" 2>&1 | sed 's/^/  /' || rc=1
  fi
  # Still here if `up` failed before marking the directory, or `down` failed.
  left=$(lab_qemu_pids)
  if [ -n "$left" ]; then
    echo "$PROG: qemu processes of $DIR survived lab.sh down: $left; killing them" >&2
    # shellcheck disable=SC2086
    kill -9 $left 2>/dev/null || true
    rc=1
  fi
  sleep 0.2
  if [ -n "$(lab_qemu_pids)" ]; then
    echo "$PROG: qemu processes of $DIR still running: $(lab_qemu_pids)" >&2
    rc=1
  fi
  rm -rf -- "$DIR"
  ((rc != 0)) || say "done: no process or qemu of $DIR is left"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Controller queries and waits

ctl() { timeout 10 "$REGENCTL" --controller "$ADDR" "$@"; }
instances() { ctl instance list --service "$SERVICE" -o json 2>/dev/null; }
last_seq() { ctl events -o json 2>/dev/null | tail -n 1 | jq -r '.sequence // 0' 2>/dev/null || echo 0; }
pid_of() { local p; p=$(cat "$(pidfile_of "$1")" 2>/dev/null || true); echo "${p//[^0-9]/}"; }

show_logs() {  # the last lines of every log of the lab, on stderr
  local f
  for f in "$DIR/controller.log" "$DIR"/controller-*/controller.log "$DIR"/host-*/agent.log; do
    [ -e "$f" ] || continue
    echo "---- last lines of ${f#"$DIR"/} ----" >&2
    tail -n 15 "$f" >&2
  done
}

# wait_for SECONDS WHAT CMD...: runs CMD every 50 ms until it succeeds; after SECONDS prints
# what it waited for, the instance table and the last log lines, and fails.
# The controller runs (HA: at least one of the lab's controllers).
controller_alive() {
  local pid name
  for name in controller controller-1 controller-2 controller-3; do
    pid=$(pid_of "$name")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && return 0
  done
  return 1
}

wait_for() {
  local secs=$1 what=$2 deadline
  shift 2
  deadline=$(($(now_ms) + secs * 1000))
  until "$@"; do
    if ! controller_alive; then
      show_logs
      die "the controller is not running any more (while waiting for $what)"
    fi
    if (($(now_ms) >= deadline)); then
      echo "$PROG: timed out after ${secs} s waiting for $what" >&2
      echo "$PROG: regenctl instance list:" >&2
      ctl instance list >&2 || true
      show_logs
      exit 1
    fi
    sleep 0.05
  done
}

all_running() {
  instances | jq -e --argjson n "$COUNT" 'length == $n and all(.[]; .state == "running")' >/dev/null 2>&1
}

# healed_elsewhere NAME OLD_HOST GEN IP MAC: NAME runs on a host other than OLD_HOST, with
# generation GEN+1 and the same IP and MAC.
healed_elsewhere() {
  instances | jq -e --arg n "$1" --arg h "$2" --argjson g "$3" --arg ip "$4" --arg mac "$5" '
    any(.[]; .name == $n and .state == "running" and .host != $h and .generation == $g + 1
             and .ip == $ip and .mac == $mac)' >/dev/null 2>&1
}

# host_healed HOST FILE: every instance listed in FILE (JSON: the instances HOST ran before it was
# lost) runs on another host with generation+1, same IP and MAC, and all COUNT instances run.
host_healed() {
  instances | jq -e --arg h "$1" --argjson n "$COUNT" --slurpfile before "$2" '
    . as $now | length == $n and all(.[]; .state == "running" and .host != $h)
    and all($before[0][]; . as $b | any($now[]; .name == $b.name and .generation == $b.generation + 1
                                        and .ip == $b.ip and .mac == $b.mac))' >/dev/null 2>&1
}

table() {
  echo
  ctl instance list --service "$SERVICE" | sed 's/^/  /'
  echo
}

# running_ms NAME HOST GEN AFTER_SEQ: unix_ms of the controller's "running" event of NAME on HOST
# at generation GEN (empty if none).
running_ms() {
  ctl events --after "$4" -o json 2>/dev/null | jq -rs --arg n "$1" --arg h "$2" --arg g "$3" '
    [.[] | select(.kind == "running" and .instance == $n and .host == $h
                  and (.message | test("generation " + $g + "\\b")))] | first | .unix_ms // empty'
}
# event_ms KIND AFTER_SEQ [INSTANCE] [MESSAGE_REGEX]: unix_ms of the first such event (or empty).
event_ms() {
  ctl events --after "$2" -o json 2>/dev/null | jq -rs --arg k "$1" --arg n "${3:-}" --arg re "${4:-}" '
    [.[] | select(.kind == $k and ($n == "" or .instance == $n) and ($re == "" or (.message | test($re))))]
    | first | .unix_ms // empty'
}

# ---------------------------------------------------------------------------------------------
# 0. The lab and the service

echo "Regen demo: 3 hosts on driver $driver${ha:+, 3 controllers on etcd}, lab in $DIR"
say "starting the lab (scripts/lab.sh up --hosts 3 --driver $driver $ha)"
# shellcheck disable=SC2086  # $ha is empty or --ha
if ! up_out=$(scripts/lab.sh up --hosts 3 --driver "$driver" $ha --dir "$DIR" 2>&1); then
  echo "$up_out" >&2
  die "scripts/lab.sh up failed"
fi
grep '^lab.sh:' <<<"$up_out" | sed 's/^/  /'
ADDR=$(cat "$DIR/controller.addr")

say "deploying scripts/lab/web.yaml"
MARKS+=("$(now_ms)${TAB}demo${TAB}regenctl service apply -f scripts/lab/web.yaml")
ctl service apply -f scripts/lab/web.yaml | sed 's/^/  /'
wait_for "$DEPLOY_TIMEOUT" "all $COUNT instances of $SERVICE running" all_running
say "all $COUNT instances of $SERVICE are running:"
table

# ---------------------------------------------------------------------------------------------
# 1. One VM crashes

VICTIM=$SERVICE-1
before=$(instances | jq -c --arg n "$VICTIM" '.[] | select(.name == $n)')
V_HOST=$(jq -r .host <<<"$before")
V_GEN=$(jq -r .generation <<<"$before")
V_IP=$(jq -r .ip <<<"$before")
V_MAC=$(jq -r .mac <<<"$before")
SEQ=$(last_seq)
if [ "$driver" = qemu ]; then
  qpid=""
  for p in $(lab_qemu_pids "$V_HOST"); do
    [[ " $(cmdline_of "$p")" == *"guest=$VICTIM,"* ]] && qpid=$p
  done
  [ -n "$qpid" ] || {
    show_logs
    die "no qemu process for $VICTIM under $DIR/$V_HOST/"
  }
  say "kill -9 of $VICTIM's qemu (pid $qpid) on $V_HOST (generation $V_GEN, ip $V_IP, mac $V_MAC)"
  KILL_MS=$(now_ms)
  kill -9 "$qpid"
  MARKS+=("$KILL_MS${TAB}demo${TAB}kill -9 qemu of $VICTIM (pid $qpid) on $V_HOST")
else
  say "regen-agent inject crash $VICTIM on $V_HOST (generation $V_GEN, ip $V_IP, mac $V_MAC)"
  KILL_MS=$(now_ms)
  "$AGENT" inject crash "$VICTIM" --config "$DIR/$V_HOST/agent.yaml" | sed 's/^/  /'
  MARKS+=("$KILL_MS${TAB}demo${TAB}regen-agent inject crash $VICTIM on $V_HOST")
fi
if [ -n "$ha" ]; then
  # The active controller dies in the middle of the heal: a standby must finish it.
  active=$(active_controller "$ADDR") || die "no active controller among $ADDR"
  k=0
  for a in ${ADDR//,/ }; do
    k=$((k + 1))
    [ "$a" = "$active" ] && break
  done
  cpid=$(pid_of "controller-$k")
  say "kill -9 of the active controller controller-$k ($active, pid $cpid) in the middle of the heal"
  CKILL_MS=$(now_ms)
  kill -9 "$cpid"
  MARKS+=("$CKILL_MS${TAB}demo${TAB}kill -9 of the active controller controller-$k ($active)")
  wait_for 30 "a standby controller serving" active_controller "$ADDR"
  CSERVE_MS=$(now_ms)
  say "$(active_controller "$ADDR") is the active controller now"
fi
wait_for "$HEAL_TIMEOUT" "$VICTIM running on a host other than $V_HOST with generation $((V_GEN + 1)), ip $V_IP, mac $V_MAC" \
  healed_elsewhere "$VICTIM" "$V_HOST" "$V_GEN" "$V_IP" "$V_MAC"
SEEN_MS=$(now_ms)
NEW_HOST=$(instances | jq -r --arg n "$VICTIM" '.[] | select(.name == $n) | .host')
RUN_MS=$(running_ms "$VICTIM" "$NEW_HOST" $((V_GEN + 1)) "$SEQ")
DET_MS=$(event_ms failure "$SEQ" "$VICTIM")
say "$VICTIM healed: running on $NEW_HOST, generation $((V_GEN + 1)), same ip $V_IP and mac $V_MAC"
table
echo "  figures for the VM crash ($VICTIM, $V_HOST -> $NEW_HOST):"
[ -z "$DET_MS" ] || printf '    %-50s %6d ms\n' "crash detected (controller's failure event)" $((DET_MS - KILL_MS))
if [ -n "$RUN_MS" ]; then
  printf '    %-50s %6d ms\n' "running on $NEW_HOST (controller's running event)" $((RUN_MS - KILL_MS))
else
  echo "    (no running event for $VICTIM generation $((V_GEN + 1)) in regenctl events)"
fi
printf '    %-50s %6d ms\n' "seen running by this script (polling)" $((SEEN_MS - KILL_MS))
if [ -n "$ha" ]; then
  printf '    %-50s %6d ms\n' "active controller killed (after the crash)" $((CKILL_MS - KILL_MS))
  printf '    %-50s %6d ms\n' "a standby serves (after the controller's kill)" $((CSERVE_MS - CKILL_MS))
fi
echo

# ---------------------------------------------------------------------------------------------
# 2. A whole host is lost

# The host with the most instances (the one that just received the healed VM, if any).
LOST=$(instances | jq -r 'group_by(.host) | max_by(length) | .[0].host')
BEFORE_FILE=$DIR/lost-instances.json
instances | jq -c --arg h "$LOST" '[.[] | select(.host == $h)]' >"$BEFORE_FILE"
LOST_NAMES=$(jq -r '[.[].name] | join(" ")' "$BEFORE_FILE")
APID=$(pid_of "$LOST")
if [ -z "$APID" ] || [[ " $(cmdline_of "$APID")" != *"$DIR/"* ]]; then
  die "no live agent recorded for $LOST"
fi
SEQ=$(last_seq)
if [ "$driver" = qemu ]; then
  QPIDS=$(lab_qemu_pids "$LOST" | tr '\n' ' ')
  say "host loss: kill -9 of $LOST's agent (pid $APID) and its qemus (pids ${QPIDS% }), which ran $LOST_NAMES"
  KILL_MS=$(now_ms)
  # shellcheck disable=SC2086
  kill -9 "$APID" $QPIDS
  MARKS+=("$KILL_MS${TAB}demo${TAB}kill -9 of $LOST: agent (pid $APID) and qemus (${QPIDS% })")
else
  say "host loss: kill -9 of $LOST's agent (pid $APID; its test-driver VMs die with it), which ran $LOST_NAMES"
  KILL_MS=$(now_ms)
  kill -9 "$APID"
  MARKS+=("$KILL_MS${TAB}demo${TAB}kill -9 of $LOST's agent (pid $APID)")
fi
wait_for "$HEAL_TIMEOUT" "every instance of $LOST ($LOST_NAMES) running on another host with generation+1" \
  host_healed "$LOST" "$BEFORE_FILE"
SEEN_MS=$(now_ms)
say "all instances of $LOST run elsewhere:"
table
echo "  figures for the loss of $LOST (from the kill):"
DOWN_MS=$(event_ms host_state "$SEQ" "" "-> down")
SUSPECT_MS=$(event_ms host_state "$SEQ" "" "-> suspect")
[ -z "$SUSPECT_MS" ] || printf '    %-50s %6d ms\n' "$LOST suspect (missed heartbeats)" $((SUSPECT_MS - KILL_MS))
[ -z "$DOWN_MS" ] || printf '    %-50s %6d ms\n' "$LOST down (host_down_after passed)" $((DOWN_MS - KILL_MS))
LAST=0
NOW_JSON=$(instances)
for name in $LOST_NAMES; do
  h=$(jq -r --arg n "$name" '.[] | select(.name == $n) | .host' <<<"$NOW_JSON")
  g=$(jq -r --arg n "$name" '.[] | select(.name == $n) | .generation' <<<"$NOW_JSON")
  t=$(running_ms "$name" "$h" "$g" "$SEQ")
  if [ -n "$t" ]; then
    printf '    %-50s %6d ms\n' "$name running on $h (generation $g)" $((t - KILL_MS))
    ((t <= LAST)) || LAST=$t
  else
    echo "    $name: no running event on $h generation $g in regenctl events"
  fi
done
((LAST == 0)) || printf '    %-50s %6d ms\n' "all of $LOST's instances healed" $((LAST - KILL_MS))
printf '    %-50s %6d ms\n' "seen healed by this script (polling)" $((SEEN_MS - KILL_MS))
echo

# ---------------------------------------------------------------------------------------------
# 3. The timeline: the controller's events and the demo's own actions, in time order

echo "Timeline (ms since the service was applied; [demo] = this script's actions):"
APPLY_MS=${MARKS[0]%%"$TAB"*}
{
  printf '%s\n' "${MARKS[@]}"
  ctl events -o json | jq -r '
    [ .unix_ms, .kind,
      ( if .kind == "placement" then
          "\(.instance) on \(.detail.new_host // .host), gen \(.detail.generation), ip \(.detail.ip), mac \(.detail.mac)"
        elif .kind == "reallocation" then
          "\(.instance) \(.detail.old_host) -> \(.detail.new_host), gen \(.detail.generation), ip \(.detail.ip), mac \(.detail.mac)"
        elif .kind == "host_state" then "\(.host): \(.message | sub(" capacity .*"; ""))"
        elif .instance != "" then "\(.instance): \(.message)"
        else .message end ) ] | @tsv'
} | sort -s -t "$TAB" -k1,1n | awk -F '\t' -v t0="$APPLY_MS" '{
    msg = $3
    if (length(msg) > 110) msg = substr(msg, 1, 107) "..."
    printf "  %+8d  %-12s %s\n", $1 - t0, ($2 == "demo" ? "[demo]" : $2), msg
  }'
echo
say "demo finished"

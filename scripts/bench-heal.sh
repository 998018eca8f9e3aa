#!/usr/bin/env bash
# shellcheck disable=SC2016  # the jq programs in single quotes use jq $variables
# Healing figures on a 3-host lab (scripts/lab.sh) running scripts/lab/web.yaml: prints them,
# never asserts them.
#   VM crash:  kill -9 of one VM's qemu (qemu driver) or `regen-agent inject crash` (test driver)
#              -> the instance running on another host (generation+1);        --runs N (10)
#   host loss: kill -9 of one host's agent and its qemus (qemu) or of its agent (test; its VMs
#              live inside it) -> every instance it ran running elsewhere;    --host-runs M (3)
#   baseline:  (qemu) a bare `virsh create` of a lab domain's own XML on its host's embed root,
#              N times: the floor without Regen, side by side with the crash figure.
# Each figure is the controller's own timestamp of the `running` event (read from a background
# `regenctl events --follow -o json`, field unix_ms) minus the time of the kill, so it does not
# depend on polling (a regenctl call costs ~0.1 s of CPU: polling would load the machine). For
# `inject crash` the start is the agent's log line of the injected crash (the CLI takes ~70 ms to
# start); the healed instance's IP, MAC, state and generation are then checked in
# `regenctl instance list`.
# After a host loss the killed host's agent is restarted the way lab.sh starts it (pid recorded in
# DIR/host-K/agent.pid, so `lab.sh down` stops it) and the next run starts from 3 live hosts.
# Each driver gets a fresh lab in a temp dir, always stopped and removed at the end.
#
#   scripts/bench-heal.sh [--runs N] [--host-runs M] [--driver qemu|test|both]
set -euo pipefail

PROG=bench-heal.sh
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
# shellcheck source=scripts/lab/lib.sh
. "$REPO/scripts/lab/lib.sh"

usage() {
  cat <<EOF
Usage: scripts/bench-heal.sh [--runs N] [--host-runs M] [--driver qemu|test|both]

Measures, on a fresh 3-host lab per driver, the time from a VM crash to the VM running on another
host (N runs) and from a host loss to all of its instances running elsewhere (M runs), and prints
median/min/max. Figures are printed, never asserted; the exit status is 1 only if something did
not heal at all (within ${HEAL_TIMEOUT:-60} s) or the lab could not start.

Options:
  --runs N               VM crashes per driver (default 10)
  --host-runs M          host losses per driver (default 3)
  --driver qemu|test|both  which lab driver(s) to measure (default both)
  -h, --help             this help

Environment:
  REGEN_BUILD_DIR        where the binaries are (default: the repository's build/)
EOF
}

usage_error() {
  echo "$PROG: $*" >&2
  echo "Try 'scripts/bench-heal.sh --help'." >&2
  exit 2
}

runs=10
host_runs=3
drivers="qemu test"
while (($# > 0)); do
  case $1 in
    -h | --help)
      usage
      exit 0
      ;;
    --runs | --host-runs | --driver)
      (($# >= 2)) || usage_error "option $1 needs a value"
      opt=$1 val=$2
      shift 2
      ;;
    --runs=* | --host-runs=* | --driver=*)
      opt=${1%%=*} val=${1#*=}
      shift
      ;;
    *) usage_error "unknown argument \"$1\"" ;;
  esac
  case $opt in
    --runs | --host-runs)
      if ! [[ $val =~ ^[0-9]{1,3}$ ]] || ((10#$val > 100)); then
        usage_error "$opt: invalid value \"$val\" (a whole number from 0 to 100)"
      fi
      if [ "$opt" = --runs ]; then runs=$((10#$val)); else host_runs=$((10#$val)); fi
      ;;
    --driver)
      case $val in
        qemu | test) drivers=$val ;;
        both) drivers="qemu test" ;;
        *) usage_error "--driver: invalid value \"$val\" (qemu, test or both)" ;;
      esac
      ;;
  esac
done

BUILD=${REGEN_BUILD_DIR:-$REPO/build}
[[ $BUILD == /* ]] || BUILD=$REPO/$BUILD
AGENT=$BUILD/agent/regen-agent
REGENCTL=$BUILD/ctl/regenctl
CONTROLLER=$BUILD/controller/regen-controller
for b in "$AGENT" "$REGENCTL" "$CONTROLLER"; do
  [ -x "$b" ] || { echo "$PROG: missing $b (run scripts/build.sh)" >&2; exit 1; }
done
command -v jq >/dev/null || { echo "$PROG: jq not found (scripts/install-deps.sh installs it)" >&2; exit 1; }

DEPLOY_TIMEOUT=180   # s; the first VMs of a fresh qemu root wait for its capability probe
HEAL_TIMEOUT=60      # s
SERVICE=web
COUNT=6
RESULTS=$(mktemp /tmp/regen-bench-results.XXXXXX)   # driver|scenario|total_ms|detect_ms
trap 'rm -f "$RESULTS"' EXIT

now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo "${t:0:-3}"; }
T0=$(now_ms)
say() {
  local ms=$(($(now_ms) - T0))
  printf '[%3d.%d s] %s\n' $((ms / 1000)) $((ms % 1000 / 100)) "$*"
}

# ---------------------------------------------------------------------------------------------
# One driver's lab (runs in a subshell with its own DIR and cleanup)

DIR=""
ADDR=""
DRIVER=""
FOLLOW_PID=""   # the background `regenctl events --follow`
EV_FD=""        # read end of its output file
EV_BUF=""       # a partial line read at the end of that file
EV_ACC=""       # the events read since the last drain, one JSON object a line


lab_cleanup() {
  local rc=$? left
  trap - EXIT INT TERM
  [ -n "$DIR" ] || exit "$rc"
  if [ -n "$FOLLOW_PID" ]; then
    kill "$FOLLOW_PID" 2>/dev/null || true
    wait "$FOLLOW_PID" 2>/dev/null || true
  fi
  if ((rc != 0)) && [ -d "$DIR" ]; then
    local keep
    keep=$(mktemp -d /tmp/regen-bench-logs.XXXXXX)
    (cd "$DIR" && find . -name '*.log*' -exec cp --parents {} "$keep" \;) 2>/dev/null || true
    echo "$PROG: $DRIVER lab failed (exit $rc); its logs are kept in $keep" >&2
  fi
  if [ -e "$DIR/.regen-lab" ]; then
    scripts/lab.sh down --purge --dir "$DIR" >/dev/null 2>&1 ||
      { echo "$PROG: lab.sh down --purge --dir $DIR failed" >&2; rc=1; }
  fi
  left=$(lab_qemu_pids)
  if [ -n "$left" ]; then
    echo "$PROG: qemu processes of $DIR survived lab.sh down ($left): killing them" >&2
    # shellcheck disable=SC2086
    kill -9 $left 2>/dev/null || true
    rc=1
  fi
  rm -rf -- "$DIR"
  exit "$rc"
}

ctl() { timeout 10 "$REGENCTL" --controller "$ADDR" "$@"; }
instances() { ctl instance list --service "$SERVICE" -o json 2>/dev/null; }
last_seq() { ctl events -o json 2>/dev/null | tail -n 1 | jq -r '.sequence // 0' 2>/dev/null || echo 0; }
pid_of() { local p; p=$(cat "$(pidfile_of "$1")" 2>/dev/null || true); echo "${p//[^0-9]/}"; }

show_logs() {
  local f
  for f in "$DIR/controller.log" "$DIR"/host-*/agent.log; do
    [ -e "$f" ] || continue
    echo "---- last lines of ${f#"$DIR"/} ----" >&2
    tail -n 15 "$f" >&2
  done
}

# wait_for SECONDS WHAT CMD...: runs CMD every ~0.1 s until it succeeds (only between measurements:
# each regenctl call costs CPU); on timeout prints what it waited for, the instance table and the
# last log lines, and exits (the subshell) with 1.
wait_for() {
  local secs=$1 what=$2 deadline
  shift 2
  deadline=$(($(now_ms) + secs * 1000))
  until "$@"; do
    if (($(now_ms) >= deadline)); then
      echo "$PROG: [$DRIVER] timed out after ${secs} s waiting for $what" >&2
      ctl instance list >&2 || true
      ctl host list >&2 || true
      show_logs
      exit 1
    fi
    sleep 0.1
  done
}

# The controller's events, followed in the background.
start_events() {
  local f=$DIR/events.jsonl
  : >"$f"
  "$REGENCTL" --controller "$ADDR" events --follow -o json >>"$f" 2>"$DIR/events.err" &
  FOLLOW_PID=$!
  exec {EV_FD}<"$f"
}
read_events() {  # appends every complete new line to EV_ACC
  local chunk
  while :; do
    chunk=""
    if IFS= read -r -u "$EV_FD" chunk; then
      EV_ACC+=$EV_BUF$chunk$'\n'
      EV_BUF=""
    else
      EV_BUF+=$chunk
      return 0
    fi
  done
}
drain_events() { read_events; EV_ACC=""; }

# wait_events SECONDS WHAT JQ_CONDITION [JQ ARGS...]: reads the followed events every ~10 ms until
# JQ_CONDITION (over the array of events read since the last drain) holds; on timeout prints the
# events, the tables and the logs and exits with 1.
wait_events() {
  local secs=$1 what=$2 cond=$3 deadline n=-1
  shift 3
  deadline=$(($(now_ms) + secs * 1000))
  while :; do
    read_events
    if ((${#EV_ACC} != n)); then
      n=${#EV_ACC}
      jq -se "$@" "$cond" >/dev/null 2>&1 <<<"$EV_ACC" && return 0
    fi
    if (($(now_ms) >= deadline)); then
      echo "$PROG: [$DRIVER] timed out after ${secs} s waiting for $what; events since the kill:" >&2
      jq -c '[.sequence, .unix_ms, .kind, .instance, .host, .message]' <<<"$EV_ACC" >&2 || true
      kill -0 "$FOLLOW_PID" 2>/dev/null || { echo "$PROG: regenctl events --follow exited:" >&2; cat "$DIR/events.err" >&2; }
      ctl instance list >&2 || true
      ctl host list >&2 || true
      show_logs
      exit 1
    fi
    sleep 0.01
  done
}
# acc_ms JQ_FILTER [JQ ARGS...]: unix_ms of the first event read since the drain that matches.
acc_ms() {
  local filter=$1
  shift
  jq -rs "$@" "[.[] | select($filter)] | first | .unix_ms // empty" <<<"$EV_ACC"
}

# inject_ms HOST NAME NOT_BEFORE_MS: the time of the agent's log line "fault injection: crashing
# domain NAME" (logged in local time with ms) if it is the latest such line and not older than
# NOT_BEFORE_MS; else empty.
inject_ms() {
  local line ts t
  line=$(grep -a "fault injection: crashing domain $2\$" "$DIR/$1/agent.log" | tail -n 1) || return 0
  ts=${line%% *}
  t=$(date -d "$ts" +%s%3N 2>/dev/null) || return 0
  ((t >= $3 - 5 && t <= $3 + 5000)) && echo "$t"
  return 0
}

all_running() {
  instances | jq -e --argjson n "$COUNT" 'length == $n and all(.[]; .state == "running")' >/dev/null 2>&1
}
healed_elsewhere() {  # NAME OLD_HOST GEN IP MAC
  instances | jq -e --arg n "$1" --arg h "$2" --argjson g "$3" --arg ip "$4" --arg mac "$5" '
    any(.[]; .name == $n and .state == "running" and .host != $h and .generation == $g + 1
             and .ip == $ip and .mac == $mac)' >/dev/null 2>&1
}
host_healed() {  # HOST FILE (the instances HOST ran, as JSON)
  instances | jq -e --arg h "$1" --argjson n "$COUNT" --slurpfile before "$2" '
    . as $now | length == $n and all(.[]; .state == "running" and .host != $h)
    and all($before[0][]; . as $b | any($now[]; .name == $b.name and .generation == $b.generation + 1
                                        and .ip == $b.ip and .mac == $b.mac))' >/dev/null 2>&1
}
host_up_since() {  # HOST SINCE_MS: up, with a heartbeat after SINCE_MS
  ctl host list -o json 2>/dev/null | jq -e --arg h "$1" --argjson t "$2" '
    any(.[]; .name == $h and .state == "up" and (.last_heartbeat_unix_ms // 0) >= $t)' >/dev/null 2>&1
}
agent_clean() {  # HOST: its agent is connected and runs no domain (the stale ones are gone)
  timeout 10 "$AGENT" status --config "$DIR/$1/agent.yaml" -o json 2>/dev/null |
    jq -e '.connected and ((.domains // []) | length == 0)' >/dev/null 2>&1
}

# event_ms KIND AFTER_SEQ INSTANCE HOST MESSAGE_REGEX: unix_ms of the first matching event (or
# empty); an empty INSTANCE, HOST or regex matches anything.
event_ms() {
  ctl events --after "$2" -o json 2>/dev/null | jq -rs --arg k "$1" --arg n "$3" --arg h "$4" --arg re "$5" '
    [.[] | select(.kind == $k and ($n == "" or .instance == $n) and ($h == "" or .host == $h)
                  and ($re == "" or (.message | test($re))))] | first | .unix_ms // empty'
}

# restart_agent HOST: starts HOST's agent as lab.sh does (own session, pid in DIR/HOST/agent.pid,
# output appended to its log).
restart_agent() {
  local name=$1 pidfile log=$DIR/$1/agent.log i pid=""
  pidfile=$(pidfile_of "$name")
  rm -f "$pidfile" "$pidfile.tmp"
  echo "---- restarted by $PROG at $(date -u +%FT%T.%3N) ----" >>"$log"
  # shellcheck disable=SC2016
  setsid -f bash -c 'echo $$ >"$0.tmp" && mv -f "$0.tmp" "$0" && exec "$@"' "$pidfile" \
    "$AGENT" run --config "$DIR/$name/agent.yaml" </dev/null >>"$log" 2>&1
  for i in $(seq 50); do
    pid=$(pid_of "$name")
    [ -z "$pid" ] || break
    sleep 0.1
  done
  [ -n "$pid" ] || { echo "$PROG: could not restart the agent of $name" >&2; exit 1; }
}

record() { echo "$DRIVER|$1|$2|$3" >>"$RESULTS"; }

crash_run() {  # crash_run I
  local i=$1 victim host gen ip mac qpid p kill_ms t new_host run_ms det_ms
  victim=$SERVICE-$(((i - 1) % COUNT))
  # (jq takes ~0.1 s to start on a small machine: one call for several fields)
  IFS=$'\t' read -r host gen ip mac < <(instances | jq -r --arg n "$victim" '
    .[] | select(.name == $n) | [.host, .generation, .ip, .mac] | @tsv')
  [ -n "$mac" ] || { echo "$PROG: $victim is not in regenctl instance list" >&2; exit 1; }
  if [ "$DRIVER" = qemu ]; then
    qpid=""
    for p in $(lab_qemu_pids "$host"); do
      [[ " $(cmdline_of "$p")" == *"guest=$victim,"* ]] && qpid=$p
    done
    [ -n "$qpid" ] || { show_logs; echo "$PROG: no qemu for $victim under $DIR/$host/" >&2; exit 1; }
    drain_events
    kill_ms=$(now_ms)
    kill -9 "$qpid"
  else
    drain_events
    kill_ms=$(now_ms)
    "$AGENT" inject crash "$victim" --config "$DIR/$host/agent.yaml" >/dev/null
    t=$(inject_ms "$host" "$victim" "$kill_ms")
    [ -z "$t" ] || kill_ms=$t
  fi
  local running_cond='.kind == "running" and .instance == $n and .host != $h
                      and (.message | test("generation \($g + 1)\\b"))'
  wait_events "$HEAL_TIMEOUT" "the running event of $victim (crashed on $host) elsewhere with generation $((gen + 1))" \
    "any(.[]; $running_cond)" --arg n "$victim" --arg h "$host" --argjson g "$gen"
  IFS=$'\t' read -r run_ms new_host det_ms < <(jq -rs --arg n "$victim" --arg h "$host" --argjson g "$gen" "
    ([.[] | select($running_cond)] | first) as \$r
    | ([.[] | select(.kind == \"failure\" and .instance == \$n)] | first) as \$f
    | [\$r.unix_ms, \$r.host, (\$f.unix_ms // \"\")] | @tsv" <<<"$EV_ACC")
  wait_for 10 "$victim on $new_host in regenctl instance list: running, generation $((gen + 1)), ip $ip, mac $mac" \
    healed_elsewhere "$victim" "$host" "$gen" "$ip" "$mac"
  record crash $((run_ms - kill_ms)) "$([ -z "$det_ms" ] || echo $((det_ms - kill_ms)))"
  printf '  crash %2d/%d  %-6s %s -> %s   detected %5s ms   running %5d ms\n' "$i" "$runs" "$victim" \
    "$host" "$new_host" "$([ -z "$det_ms" ] && echo - || echo $((det_ms - kill_ms)))" $((run_ms - kill_ms))
}

host_run() {  # host_run J
  local j=$1 lost file names apid qpids kill_ms down_ms last restart_ms
  lost=$(instances | jq -r 'group_by(.host) | max_by(length) | .[0].host')
  file=$DIR/lost-$j.json
  instances | jq -c --arg h "$lost" '[.[] | select(.host == $h)]' >"$file"
  names=$(jq -r '[.[].name] | join(" ")' "$file")
  apid=$(pid_of "$lost")
  [[ -n $apid && " $(cmdline_of "$apid")" == *"$DIR/"* ]] ||
    { echo "$PROG: no live agent recorded for $lost" >&2; exit 1; }
  qpids=""
  [ "$DRIVER" != qemu ] || qpids=$(lab_qemu_pids "$lost" | tr '\n' ' ')
  drain_events
  kill_ms=$(now_ms)
  # shellcheck disable=SC2086
  kill -9 "$apid" $qpids
  # Every instance of the lost host: a running event elsewhere at generation+1.
  local healed='. as $ev | all($before[0][]; . as $b | any($ev[]; .kind == "running"
                   and .instance == $b.name and .host != $h
                   and (.message | test("generation \($b.generation + 1)\\b"))))'
  wait_events "$HEAL_TIMEOUT" "running events of $lost's instances ($names) elsewhere" "$healed" \
    --arg h "$lost" --slurpfile before "$file"
  last=$(jq -rs --arg h "$lost" --slurpfile before "$file" '. as $ev | [$before[0][] | . as $b
           | [$ev[] | select(.kind == "running" and .instance == $b.name and .host != $h
                             and (.message | test("generation \($b.generation + 1)\\b")))]
           | first | .unix_ms] | max' <<<"$EV_ACC")
  down_ms=$(acc_ms '.kind == "host_state" and .host == $h and (.message | test("-> down"))' --arg h "$lost")
  wait_for 10 "$lost's instances in regenctl instance list: running elsewhere, generation+1, same ip and mac" \
    host_healed "$lost" "$file"
  record host $((last - kill_ms)) "$([ -z "$down_ms" ] || echo $((down_ms - kill_ms)))"
  printf '  host loss %d/%d  %s (%s)   down %5s ms   all running elsewhere %5d ms\n' "$j" "$host_runs" \
    "$lost" "$names" "$([ -z "$down_ms" ] && echo - || echo $((down_ms - kill_ms)))" $((last - kill_ms))
  # Back to 3 live hosts.
  restart_ms=$(now_ms)
  restart_agent "$lost"
  wait_for 60 "$lost's restarted agent to be up" host_up_since "$lost" "$restart_ms"
  wait_for 60 "$lost's restarted agent to run no stale domain" agent_clean "$lost"
  wait_for 60 "all $COUNT instances running" all_running
}

# The floor: a bare `virsh create` of a lab domain's own XML (dumped from its host's embed root,
# renamed) on that same root, N times, while nothing else starts: what libvirt and qemu cost
# without Regen. The host's agent and qemus are killed first (kill -9, as in a host loss) so
# that virsh may open the root; the lab is torn down after this.
baseline_run() {
  local host name uri xml apid qpids i t0 ms
  host=$(instances | jq -r 'group_by(.host) | max_by(length) | .[0].host')
  name=$(instances | jq -r --arg h "$host" '[.[] | select(.host == $h)][0].name')
  uri="qemu:///embed?root=$DIR/$host/root"
  apid=$(pid_of "$host")
  qpids=$(lab_qemu_pids "$host" | tr '\n' ' ')
  # shellcheck disable=SC2086
  kill -9 "$apid" $qpids
  wait_for "$HEAL_TIMEOUT" "all $COUNT instances running again after $host's loss" all_running
  xml=$DIR/baseline.xml
  virsh -q -c "$uri" dumpxml --inactive "$name" 2>/dev/null |
    sed -e "s|<name>$name</name>|<name>bench-virsh</name>|" -e '/<uuid>/d' \
      -e "s|/$name\\.sock|/bench-virsh.sock|g" >"$xml"
  grep -q "<name>bench-virsh</name>" "$xml" ||
    { echo "$PROG: virsh dumpxml of $name on $uri failed" >&2; exit 1; }
  for ((i = 1; i <= runs; i++)); do
    t0=$(now_ms)
    # (virsh prints libvirt's own info and taint lines on stderr: kept only for a failure)
    virsh -q -c "$uri" create "$xml" >/dev/null 2>"$DIR/virsh.err" ||
      { cat "$DIR/virsh.err" >&2; echo "$PROG: virsh create of $xml on $uri failed" >&2; exit 1; }
    ms=$(($(now_ms) - t0))
    record virsh "$ms" ""
    printf '  virsh create %2d/%d  %5d ms\n' "$i" "$runs" "$ms"
    virsh -q -c "$uri" destroy bench-virsh >/dev/null 2>&1 || true
  done
}

run_driver() {  # in a subshell
  local i out
  DRIVER=$1
  DIR=$(mktemp -d /tmp/regen-bench.XXXXXX)
  chmod 0755 "$DIR"
  trap lab_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  say "[$DRIVER] lab.sh up --hosts 3 --driver $DRIVER --dir $DIR"
  out=$(scripts/lab.sh up --hosts 3 --driver "$DRIVER" --dir "$DIR" 2>&1) ||
    { echo "$out" >&2; echo "$PROG: lab.sh up failed" >&2; exit 1; }
  ADDR=$(cat "$DIR/controller.addr")
  start_events
  ctl service apply -f scripts/lab/web.yaml >/dev/null
  wait_for "$DEPLOY_TIMEOUT" "all $COUNT instances running" all_running
  say "[$DRIVER] $COUNT instances running; $runs VM crashes"
  for ((i = 1; i <= runs; i++)); do
    crash_run "$i"
    sleep 0.3   # let the old host finish removing the dead domain
  done
  ((host_runs == 0)) || say "[$DRIVER] $host_runs host losses"
  for ((i = 1; i <= host_runs; i++)); do host_run "$i"; done
  if [ "$DRIVER" = qemu ] && ((runs > 0)); then
    say "[$DRIVER] $runs bare virsh creates of a lab domain's XML on its own embed root"
    baseline_run
  fi
  say "[$DRIVER] done; lab.sh down --purge"
}

# ---------------------------------------------------------------------------------------------

stats() {  # stats DRIVER SCENARIO FIELD: "n median min max" of FIELD (3 total, 4 detect)
  awk -F'|' -v d="$1" -v s="$2" -v f="$3" '$1 == d && $2 == s && $f != "" {print $f}' "$RESULTS" |
    sort -n | awk '{v[NR] = $1} END {
      if (NR == 0) { print "0 - - -"; exit }
      m = (NR % 2) ? v[(NR + 1) / 2] : int((v[NR / 2] + v[NR / 2 + 1]) / 2)
      print NR, m, v[1], v[NR] }'
}

failed=()
say "bench-heal: $runs VM crashes and $host_runs host losses per driver ($drivers), 3 hosts, $COUNT instances of $SERVICE"
for d in $drivers; do
  set +e
  (
    set -e
    run_driver "$d"
  )
  rc=$?
  set -e
  ((rc == 0)) || failed+=("$d")
  ((rc != 130 && rc != 143)) || exit "$rc"
done

echo
echo "Summary: ms from the kill (kill -9 / inject crash) to the controller's running event"
echo "(detect = to the failure event for a crash, to the host's 'down' event for a host loss)"
printf '%-6s %-44s %4s %7s %7s %7s %14s\n' driver scenario runs median min max "detect median"
for d in $drivers; do
  for s in crash host virsh; do
    [ "$s" != virsh ] || [ "$d" = qemu ] || continue
    read -r n med min max <<<"$(stats "$d" "$s" 3)"
    read -r _ dmed _ _ <<<"$(stats "$d" "$s" 4)"
    if [ "$s" = virsh ]; then
      what="bare virsh create, same XML and embed root"
    elif [ "$s" = crash ]; then
      if [ "$d" = qemu ]; then what="VM crash (kill -9 qemu) -> running elsewhere"; else what="VM crash (inject crash) -> running elsewhere"; fi
    else
      if [ "$d" = qemu ]; then what="host loss (agent+qemus -9) -> all healed"; else what="host loss (agent -9) -> all healed"; fi
    fi
    printf '%-6s %-44s %4s %7s %7s %7s %14s\n' "$d" "$what" "$n" "$med" "$min" "$max" "$dmed"
  done
done
say "bench-heal finished"
if ((${#failed[@]})); then
  echo "$PROG: did not complete on: ${failed[*]} (see above)" >&2
  exit 1
fi

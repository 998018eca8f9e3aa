# shellcheck shell=bash
# Shell helpers shared by scripts/lab.sh, scripts/demo.sh and scripts/bench-heal.sh (sourced;
# needs $DIR, the lab directory).

# pidfile_of NAME: the pidfile of the lab process NAME (controller, host-K; with lab.sh up --ha
# controller-K and etcd-K), as DESIGN.md lays out the lab directory: DIR/controller.pid,
# DIR/host-K/agent.pid, DIR/controller-K/controller.pid, DIR/etcd-K/etcd.pid (next to each
# process's log).
pidfile_of() {
  case $1 in
    controller) echo "$DIR/controller.pid" ;;
    controller-*) echo "$DIR/$1/controller.pid" ;;
    etcd-*) echo "$DIR/$1/etcd.pid" ;;
    *) echo "$DIR/$1/agent.pid" ;;
  esac
}

cmdline_of() { tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" || true; }

# lab_keep_logs PROG WHAT: copies every *.log under DIR to a new /tmp/regen-demo-logs.XXXXXX and
# says where, for a run that failed (WHAT: e.g. "failed (exit 3)").
lab_keep_logs() {
  local keep
  keep=$(mktemp -d /tmp/regen-demo-logs.XXXXXX)
  (cd "$DIR" && find . -name '*.log' -exec cp --parents {} "$keep" \;) 2>/dev/null || true
  echo "$1: $2; the lab's logs are kept in $keep" >&2
}

# lab_qemu_pids [SUBDIR]: the live qemu processes whose command line names DIR/ (or DIR/SUBDIR/).
lab_qemu_pids() {
  local want=$DIR/${1:+$1/} p comm stat
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    comm=""
    read -r comm 2>/dev/null <"/proc/$p/comm" || continue
    [[ $comm == qemu-system* ]] || continue
    stat=""
    read -r stat 2>/dev/null <"/proc/$p/stat" || continue
    stat=${stat##*) }
    [[ ${stat:0:1} != Z && ${stat:0:1} != X ]] || continue
    [[ " $(cmdline_of "$p")" == *"$want"* ]] && echo "$p"
  done
  return 0
}

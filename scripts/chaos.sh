#!/usr/bin/env bash
# The chaos runner: N runs, each a lab (3 hosts, a 6-instance service) hit by random faults for
# a while (kill -9 of the controller, agents and VMs; partitions both ways and one way; link
# flaps shorter than the lease; the controller's disk full; the SQLite lock held; an agent hung
# or stalled), then healed and checked against what really runs (qemu processes by guest= name,
# or libvirt's own listing on the test driver), sampled every 20 ms. Prints a table per run:
# faults, fences, watchdog resets, failures, moves, max time to converge, duplicates, IPs/MACs held
# twice, instances lost (the last four must be 0). Logs of a run with problems are kept under
# --logs DIR/run-N. Exit 0 only when every run is clean.
# --asan: the controller (and with --driver test the agents) from build-asan/; with --driver qemu
# the agents come from build/ (an ASan agent deadlocks in libvirt's fork children).
# Usage: scripts/chaos.sh [--runs N] [--seed S] [--driver qemu|test] [--seconds S] [--asan]
#                         [--logs DIR] [--faults KIND,...]   (kinds: kill-controller, kill-agent,
#   kill-vm, partition, partition-one-way, flap, disk-full, sqlite-lock, agent-hang, agent-stall)
set -euo pipefail
cd "$(dirname "$0")/.."
PROG=scripts/chaos.sh
runs=3 seed="" driver=qemu seconds=20 build=build logs="$PWD/chaos-logs"
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
need_int() {  # NAME VALUE
  [[ $2 =~ ^[0-9]+$ ]] || { echo "$PROG: $1 must be a whole number, not \"$2\"" >&2; exit 2; }
}
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) need_int --runs "${2:-}"; runs=$2; shift 2 ;;
    --seed) need_int --seed "${2:-}"; seed=$2; shift 2 ;;
    --seconds) need_int --seconds "${2:-}"; seconds=$2; shift 2 ;;
    --driver)
      case "${2:-}" in qemu|test) driver=$2 ;; *) echo "$PROG: --driver must be qemu or test, not \"${2:-}\"" >&2; exit 2 ;; esac
      shift 2 ;;
    --asan) build=build-asan; shift ;;
    --faults) [ -n "${2:-}" ] || { echo "$PROG: --faults needs a list of kinds" >&2; exit 2; }; export CHAOS_FAULTS=$2; shift 2 ;;
    --logs) [ -n "${2:-}" ] || { echo "$PROG: --logs needs a directory" >&2; exit 2; }; logs=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "$PROG: unknown argument \"$1\" (see --help)" >&2; exit 2 ;;
  esac
done
[ "$runs" -ge 1 ] || { echo "$PROG: --runs must be at least 1" >&2; exit 2; }
bin="$build/tests/chaos/chaos_test"
if [ ! -x "$bin" ]; then
  echo "$PROG: $bin is missing: build first (scripts/build.sh${build/build-asan/ --asan}; the --asan build for --asan)" >&2
  exit 1
fi
[ -n "$seed" ] || seed=$(( $(date +%s) % 1000000007 ))
export CHAOS_RUNS=$runs CHAOS_SEED=$seed CHAOS_DRIVER=$driver CHAOS_SECONDS=$seconds CHAOS_LOG_DIR=$logs
export CI="${CI:-1}" REGEN_SOURCE_DIR="$PWD" REGEN_BINARY_DIR="$PWD/$build"
if [ "$build" = build-asan ] && [ "$driver" = qemu ] && [ -z "${REGEN_AGENT_BIN:-}" ]; then
  # The agents run from the gcc build: an ASan agent deadlocks in libvirt's fork children (clang
  # 14's allocator is not fork-safe; tests/chaos/chaos_test.cc). The controller stays under ASan.
  if [ ! -x build/agent/regen-agent ]; then
    echo "$PROG: --asan with --driver qemu takes the agent of build/: build it first (scripts/build.sh)" >&2
    exit 1
  fi
  export REGEN_AGENT_BIN="$PWD/build/agent/regen-agent"
fi
echo "$PROG: $runs run(s), seed $seed, driver $driver, $seconds s of faults each, binaries from $build/"
start=$(date +%s)
status=0
"$bin" --gtest_brief=1 || status=$?
echo "$PROG: $runs run(s) in $(( $(date +%s) - start )) s; exit $status (replay a run with --seed <its seed> --runs 1)"
exit $status

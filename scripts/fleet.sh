#!/usr/bin/env bash
# The fleet benchmark at scale (issue 17): a real regen-controller process and N simulated agents
# on this machine; prints the figures of each size (tests/bench/fleet_bench.cc says what each
# line means). Long: minutes per size. Usage:
#   scripts/fleet.sh [--hosts 1000,5000,10000] [--instances-per-host 4] [fleet_bench options...]
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=1000,5000,10000
per_host=4
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --hosts) hosts="$2"; shift 2 ;;
    --instances-per-host) per_host="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
[ -x build/tests/bench/fleet_bench ] && [ -x build/controller/regen-controller ] || scripts/build.sh
# Each size in its own process: a failed size does not hide the others' figures.
ulimit -n 65536 2>/dev/null || true
rc=0
IFS=, read -ra sizes <<<"$hosts"
for n in "${sizes[@]}"; do
  build/tests/bench/fleet_bench --controller build/controller/regen-controller --hosts "$n" \
    --instances $((n * per_host)) "${args[@]}" || rc=1
done
exit $rc

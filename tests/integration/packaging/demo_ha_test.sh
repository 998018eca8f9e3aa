#!/bin/bash
# scripts/demo.sh --driver test --ha as a user runs it: 3 etcd members, 3 controllers, 3 agents
# keeping their leases in etcd; a VM crash healed, the active controller killed, a host lost and
# healed on its etcd lease's expiry. Fails unless the demo exits 0 and its event log shows each
# step (agents that never got their etcd lease, as once happened when they started while etcd
# was still starting, make `lab.sh up` fail here). Usage: demo_ha_test.sh SOURCE_DIR BINARY_DIR
set -u
src=$1
export REGEN_BUILD_DIR=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fail=0
check() {  # check DESCRIPTION PATTERN
  if grep -qE "$2" "$out"; then echo "ok: $1"; else echo "FAIL: $1"; fail=1; fi
}
command -v etcd >/dev/null || { echo "FAIL: etcd is not installed (scripts/install-deps.sh)"; exit 1; }
if timeout 300 "$src/scripts/demo.sh" --driver test --ha >"$out" 2>&1; then
  echo "ok: demo.sh --driver test --ha exited 0"
else
  echo "FAIL: demo.sh --driver test --ha failed:"
  tail -40 "$out"
  exit 1
fi
check "a crashed VM was healed" "running .*generation 2; healed"
check "the active controller was killed" "kill -9 of the active controller"
check "the agents said Hello to the new active controller" "host-[0-9]: agent connected"
check "the lost host went down on its etcd lease's expiry" "up -> down: its etcd lease expired"
check "nothing of the lab is left" "done: no process or qemu of"
[ "$fail" = 0 ] || tail -40 "$out"
exit "$fail"

#!/usr/bin/env bash
# Regen demo on one machine, no KVM needed: a standalone regen-agent runs three VMs of service
# "web" on real QEMU (TCG, qemu:///embed), one VM's qemu is killed with kill -9, and the agent
# detects the crash by libvirt event and re-creates the VM. Prints a timeline with the figures.
# Everything (agent, VMs, temp dir) is stopped by PID and removed at the end, even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/agent/regen-agent ] || scripts/build.sh
AGENT="$PWD/build/agent/regen-agent"
STATE=$(mktemp -d /tmp/regen-demo.XXXXXX)
AGENT_PID=""
now_ms() { date +%s%3N; }
T0=$(now_ms)
say() { printf '[%6d ms] %s\n' "$(( $(now_ms) - T0 ))" "$*"; }

cleanup() {
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null || true
  for pid in $(pgrep -f -- "$STATE/root" || true); do kill -9 "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do pgrep -f -- "$STATE/root" >/dev/null || break; sleep 0.1; done
  rm -rf "$STATE"
}
trap cleanup EXIT

mkdir -p "$STATE/root/etc"
chmod 0755 "$STATE" "$STATE/root"  # qemu runs as libvirt-qemu and must reach its files
echo 'stdio_handler = "file"' > "$STATE/root/etc/qemu.conf"
cat > "$STATE/agent.yaml" <<YAML
host_name: demo-host
libvirt_uri: "qemu:///embed?root=$STATE/root"
domain_type: qemu          # TCG: no KVM on this machine
poll_interval: 1s
ovs:
  bridge: ""               # no NIC in the standalone demo
state_dir: $STATE/state
control_socket: $STATE/agent.sock
desired_file: $STATE/desired.yaml
YAML
{
  echo "instances:"
  for i in 0 1 2; do
    cat <<YAML
  - name: web-$i
    service: web
    update_domain: $i
    version: v1
    generation: 1
    resources: {vcpus: 1, memory_mib: 64}
    ip: 10.10.0.$((i + 2))
    mac: "52:54:00:00:00:0$((i + 2))"
YAML
  done
} > "$STATE/desired.yaml"

status() { "$AGENT" status --socket "$STATE/agent.sock" "$@"; }
running_count() { status 2>/dev/null | awk '$2 == "running"' | wc -l; }
all_running() { [ "$(running_count)" = 3 ]; }  # evaluated at every try, not once
wait_for() {  # wait_for SECONDS CMD...
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "demo: timed out waiting for: $*" >&2; tail -20 "$STATE/agent.log" >&2; exit 1; }
    sleep 0.05
  done
}

say "starting regen-agent (standalone, qemu:///embed root $STATE/root)"
"$AGENT" run --config "$STATE/agent.yaml" > "$STATE/agent.log" 2>&1 &
AGENT_PID=$!
wait_for 120 all_running
say "3 VMs of service web running:"
status

VICTIM=$(pgrep -f -- "guest=web-1" | while read -r p; do grep -qa -- "$STATE/root" /proc/$p/cmdline && echo "$p"; done | head -1)
[ -n "$VICTIM" ] || { echo "demo: no qemu process for web-1" >&2; exit 1; }
KILL_MS=$(now_ms)
kill -9 "$VICTIM"
say "kill -9 qemu of web-1 (pid $VICTIM)"
failure_line() { status | awk '/^FAILED INSTANCE/ {f=1; next} f && $1 == "web-1"'; }
# FAILED INSTANCE GEN STATE BY DETECTED_MS RECREATED_AFTER REASON...
recreated() { [ -n "$(failure_line)" ] && [ "$(failure_line | awk '{print $6}')" != "-" ]; }
wait_for 60 recreated
wait_for 60 all_running
LINE=$(failure_line)
DETECTED_MS=$(echo "$LINE" | awk '{print $5}')
BY=$(echo "$LINE" | awk '{print $4}')
AFTER=$(echo "$LINE" | awk '{print $6}')
REASON=$(echo "$LINE" | awk '{for (i = 7; i <= NF; i++) printf "%s%s", $i, (i < NF ? " " : "")}')
say "web-1 healed: crash ($REASON) detected by $BY $(( DETECTED_MS - KILL_MS )) ms after the kill, re-created $AFTER ms later"
status
NEW=$(pgrep -f -- "guest=web-1" | while read -r p; do grep -qa -- "$STATE/root" /proc/$p/cmdline && echo "$p"; done | head -1)
echo
echo "timeline: kill -9 pid $VICTIM -> detected +$(( DETECTED_MS - KILL_MS )) ms ($BY) -> new qemu pid $NEW running +$(( DETECTED_MS - KILL_MS + AFTER )) ms"
echo "agent log (last lines):"
grep -E "failed|re-created|recreated" "$STATE/agent.log" | tail -5
say "demo done; stopping the agent and the VMs"

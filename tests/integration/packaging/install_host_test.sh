#!/usr/bin/env bash
# scripts/install-host.sh: argument errors, --dry-run (prints the steps, changes nothing), a real
# run under --root in a temporary directory (directories, the softdog files and watchdog settings,
# the printed host_down_after, agent.yaml accepted by regen-agent's config loader, never
# overwritten), and the bridge step against a private Open vSwitch
# (ovsdb-server + ovs-vswitchd, userspace datapath) in a network namespace of its own.
# Then a host set up that way runs the example service (agent, controller, OVS, libvirt's test
# driver).
# Usage: install_host_test.sh SOURCE_DIR REGEN_AGENT REGEN_CONTROLLER REGENCTL   (ctest passes
# them; needs root for the network namespace)
set -uo pipefail

src=${1:?source dir}
agent_bin=${2:?regen-agent binary}
controller_bin=${3:?regen-controller binary}
regenctl_bin=${4:?regenctl binary}
script="$src/scripts/install-host.sh"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
pass() { echo "ok:   $*"; }
check() {  # OK-MESSAGE FAIL-MESSAGE COMMAND...
  local ok=$1 bad=$2
  shift 2
  if "$@"; then pass "$ok"; else fail "$bad"; fi
}
need() { command -v "$1" >/dev/null || { echo "FAIL: $1 not found: install Debian package $2"; exit 1; }; }

need ovs-vsctl openvswitch-switch
need ovsdb-server openvswitch-switch
need ovs-vswitchd openvswitch-switch
need ovsdb-tool openvswitch-common
need unshare util-linux
for b in "$agent_bin" "$controller_bin" "$regenctl_bin"; do
  [ -x "$b" ] || { echo "FAIL: $b not built"; exit 1; }
done
need qemu-img qemu-utils
need python3 python3
[ -x "$script" ] || { echo "FAIL: $script missing or not executable"; exit 1; }

# The OVS part runs in a network namespace of its own, so the bridge it creates (a tap device
# named like the bridge) never meets the machine's interfaces. Re-enter this script there.
if [ "${REGEN_IN_NETNS:-}" != 1 ]; then
  REGEN_IN_NETNS=1 exec unshare --net -- "$0" "$@" ||
    { echo "FAIL: cannot create a network namespace (unshare --net): run as root"; exit 1; }
fi

work=$(mktemp -d /tmp/regen-install-host-test.XXXXXX)
agent_pid=""
controller_pid=""
cleanup() {
  for p in $agent_pid $controller_pid; do kill "$p" 2>/dev/null; done
  for f in "$work/ovs/ovs-vswitchd.pid" "$work/ovs/ovsdb-server.pid"; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
  done
  rm -rf "$work"
}
trap cleanup EXIT

# run_ih ARGS...: runs install-host.sh, output in $out, exit status in $rc
run_ih() {
  out=$("$script" "$@" 2>&1)
  rc=$?
}
expect_rc() {  # RC WHAT
  check "$2: exit $1" "$2: exit $rc, expected $1; output: $out" test "$rc" = "$1"
}
expect_out() {  # FIXED-STRING WHAT
  check "$2: prints '$1'" "$2: output lacks '$1': $out" grep -qF -- "$1" <<<"$out"
}

# --- command line -----------------------------------------------------------------------------
run_ih --help
expect_rc 0 "--help"
expect_out "--dry-run" "--help"
run_ih --bogus
expect_rc 2 "unknown argument"
expect_out "unknown argument '--bogus'" "unknown argument"
run_ih --datapath foo --dry-run
expect_rc 2 "--datapath foo"
expect_out "--datapath 'foo'" "--datapath foo"
run_ih --host-name Bad_Name --dry-run
expect_rc 2 "--host-name Bad_Name"
expect_out "[a-z][a-z0-9-]{0,62}" "--host-name Bad_Name"
run_ih --controller no-port --dry-run --host-name h1 --address 192.0.2.1
expect_rc 2 "--controller no-port"
expect_out "HOST:PORT" "--controller no-port"
run_ih --root relative/dir --dry-run --host-name h1 --address 192.0.2.1
expect_rc 2 "--root relative"
run_ih --root "$work/missing" --dry-run --host-name h1 --address 192.0.2.1
expect_rc 2 "--root missing"
expect_out "no such directory" "--root missing"
run_ih --address 300.1.2 --dry-run --host-name h1
expect_rc 2 "--address 300.1.2"
run_ih --bridge this-name-is-too-long --dry-run --host-name h1 --address 192.0.2.1
expect_rc 2 "--bridge too long"
for bad in 0 abc 3601 -5 1.5; do
  run_ih --watchdog-timeout "$bad" --dry-run --host-name h1 --address 192.0.2.1
  expect_rc 2 "--watchdog-timeout $bad"
  expect_out "--watchdog-timeout '$bad': give whole seconds from 1 to 3600" "--watchdog-timeout $bad"
done

# --- dry run: prints every step, changes nothing ----------------------------------------------
root1="$work/root1"
mkdir -p "$root1"
common=(--host-name kvm-07 --address 192.0.2.17 --controller regen-ctl.lab.example:7400)
run_ih "${common[@]}" --root "$root1" --no-bridge --dry-run
expect_rc 0 "dry run"
expect_out "dry run: nothing is changed" "dry run"
expect_out "bridge: skipped (--no-bridge)" "dry run"
expect_out "would run: install -d -m 0755 $root1/etc/regen" "dry run"
expect_out "would run: install -d -m 0755 $root1/var/lib/regen" "dry run"
expect_out "would run: install -d -m 0755 $root1/var/lib/regen/images" "dry run"
expect_out "would write: $root1/etc/regen/agent.yaml" "dry run"
expect_out "would write: $root1/etc/modules-load.d/regen-softdog.conf" "dry run"
expect_out "would write: $root1/etc/modprobe.d/regen-softdog.conf" "dry run"
expect_out "set host_down_after: 14s (or more)" "dry run"
check "dry run created nothing" "dry run created: $(find "$root1" -mindepth 1)" \
  test -z "$(find "$root1" -mindepth 1)"

# --- a real run under --root ------------------------------------------------------------------
run_ih "${common[@]}" --root "$root1" --no-bridge
expect_rc 0 "real run"
expect_out "config: wrote $root1/etc/regen/agent.yaml" "real run"
for d in etc/regen var/lib/regen var/lib/regen/images; do
  check "$d created, 0755" "$d: $(stat -c %a "$root1/$d" 2>&1)" test "$(stat -c %a "$root1/$d" 2>/dev/null)" = 755
done
cfg="$root1/etc/regen/agent.yaml"
check "agent.yaml is 0640" "agent.yaml mode $(stat -c %a "$cfg" 2>&1)" test "$(stat -c %a "$cfg" 2>/dev/null)" = 640
for line in "host_name: kvm-07" "address: 192.0.2.17" 'controller_address: "regen-ctl.lab.example:7400"' \
  'libvirt_uri: "qemu:///system"' "domain_type: auto" '  bridge: ""' "insecure: true" \
  "  enabled: false"; do
  check "agent.yaml has '$line'" "agent.yaml lacks '$line': $(cat "$cfg")" grep -qxF -- "$line" <(sed 's/ *#.*//' "$cfg")
done
check "no temporary file left" "left: $(ls "$root1/etc/regen")" test "$(ls "$root1/etc/regen")" = agent.yaml

# The watchdog: softdog at every boot with the timeout, agent.yaml names the device and timeout,
# and the host_down_after the controller needs is printed.
for line in "watchdog_device: /dev/watchdog" "watchdog_timeout: 10s"; do
  check "agent.yaml has '$line'" "agent.yaml lacks '$line': $(cat "$cfg")" grep -qxF -- "$line" <(sed 's/ *#.*//' "$cfg")
done
check "modules-load.d loads softdog" "modules-load.d: $(cat "$root1/etc/modules-load.d/regen-softdog.conf" 2>&1)" \
  grep -qx softdog "$root1/etc/modules-load.d/regen-softdog.conf"
check "modprobe.d sets soft_margin=10" "modprobe.d: $(cat "$root1/etc/modprobe.d/regen-softdog.conf" 2>&1)" \
  grep -qx "options softdog soft_margin=10" "$root1/etc/modprobe.d/regen-softdog.conf"
expect_out "set host_down_after: 14s (or more) in the controller's controller.yaml: it must exceed fencing_lease 3s + watchdog_timeout 10s + 250ms" "real run"
expect_out "not loading softdog under --root" "real run"

# regen-agent's own loader accepts the file: `status` loads it (exit 2 with file:line:column on
# a bad file) before it tries the control socket (exit 1: no agent runs).
validate() {  # FILE -> vout, vrc
  vout=$("$agent_bin" status --config "$1" 2>&1)
  vrc=$?
}
validate "$cfg"
check "regen-agent accepts the written agent.yaml" "regen-agent refused it (exit $vrc): $vout" \
  test "$vrc" != 2
bad="$work/bad.yaml"
{ cat "$cfg"; echo "no_such_key: 1"; } >"$bad"
validate "$bad"
check "regen-agent refuses a broken copy (the check can fail)" "broken copy: exit $vrc: $vout" \
  test "$vrc" = 2

# Run again: everything exists, nothing is overwritten.
echo "# edited by the admin" >>"$cfg"
sum=$(sha256sum <"$cfg")
run_ih --host-name other --address 192.0.2.99 --root "$root1" --no-bridge
expect_rc 0 "second run"
expect_out "config: $cfg exists: not overwritten" "second run"
expect_out "directory: $root1/etc/regen exists: left as it is" "second run"
check "second run left agent.yaml as it was" "agent.yaml changed" test "$(sha256sum <"$cfg")" = "$sum"
run_ih --host-name other --address 192.0.2.99 --root "$root1" --no-bridge --dry-run
expect_out "config: $cfg exists: not overwritten" "dry run with agent.yaml present"

# --tls-dir: the agent's tls block names the gen-certs.sh layout instead of insecure: true.
root4="$work/root4"
mkdir -p "$root4"
run_ih "${common[@]}" --root "$root4" --no-bridge --tls-dir /etc/regen/tls
expect_rc 0 "run with --tls-dir"
cfg4="$root4/etc/regen/agent.yaml"
for line in "tls:" "  ca: /etc/regen/tls/ca.crt" "  cert: /etc/regen/tls/kvm-07.crt" \
  "  key: /etc/regen/tls/kvm-07.key"; do
  check "--tls-dir: agent.yaml has '$line'" "--tls-dir: agent.yaml lacks '$line': $(cat "$cfg4")" \
    grep -qxF -- "$line" <(sed 's/ *#.*//' "$cfg4")
done
check "--tls-dir: no insecure: true" "--tls-dir: agent.yaml says insecure" \
  bash -c "! grep -q '^insecure:' '$cfg4'"
validate "$cfg4"
check "regen-agent accepts the agent.yaml with tls" "regen-agent refused it (exit $vrc): $vout" \
  test "$vrc" != 2
run_ih "${common[@]}" --root "$root4" --no-bridge --tls-dir etc/tls
expect_rc 2 "relative --tls-dir"
expect_out "--tls-dir 'etc/tls': give an absolute path" "relative --tls-dir"

# --watchdog-timeout 30: the module option, agent.yaml and the printed host_down_after follow.
root5="$work/root5"
mkdir -p "$root5"
run_ih "${common[@]}" --root "$root5" --no-bridge --watchdog-timeout 30
expect_rc 0 "run with --watchdog-timeout 30"
expect_out "set host_down_after: 34s (or more)" "run with --watchdog-timeout 30"
check "--watchdog-timeout 30: soft_margin=30" "modprobe.d: $(cat "$root5/etc/modprobe.d/regen-softdog.conf" 2>&1)" \
  grep -qx "options softdog soft_margin=30" "$root5/etc/modprobe.d/regen-softdog.conf"
check "--watchdog-timeout 30: agent.yaml says 30s" "agent.yaml: $(cat "$root5/etc/regen/agent.yaml")" \
  grep -qx "watchdog_timeout: 30s" "$root5/etc/regen/agent.yaml"
validate "$root5/etc/regen/agent.yaml"
check "regen-agent accepts the agent.yaml with a watchdog" "regen-agent refused it (exit $vrc): $vout" \
  test "$vrc" != 2
# --no-watchdog: nothing for softdog, no watchdog in agent.yaml; host_down_after without it.
root6="$work/root6"
mkdir -p "$root6"
run_ih "${common[@]}" --root "$root6" --no-bridge --no-watchdog
expect_rc 0 "run with --no-watchdog"
expect_out "watchdog: skipped (--no-watchdog)" "run with --no-watchdog"
expect_out "set host_down_after: 4s (or more)" "run with --no-watchdog"
check "--no-watchdog: no softdog files" "found: $(ls "$root6/etc")" \
  test ! -e "$root6/etc/modules-load.d" -a ! -e "$root6/etc/modprobe.d"
check "--no-watchdog: no watchdog in agent.yaml" "agent.yaml: $(cat "$root6/etc/regen/agent.yaml")" \
  bash -c "! grep -q '^watchdog' '$root6/etc/regen/agent.yaml'"
# A hardware watchdog already there (/dev/watchdog under the root): used, no softdog files.
root7="$work/root7"
mkdir -p "$root7/dev" && touch "$root7/dev/watchdog"
run_ih "${common[@]}" --root "$root7" --no-bridge
expect_rc 0 "run with /dev/watchdog present"
expect_out "watchdog: $root7/dev/watchdog exists (a watchdog driver is loaded): used as it is" "/dev/watchdog present"
check "/dev/watchdog present: no softdog files" "found: $(ls "$root7/etc")" test ! -e "$root7/etc/modprobe.d"
check "/dev/watchdog present: agent.yaml names it" "agent.yaml: $(cat "$root7/etc/regen/agent.yaml")" \
  grep -qx "watchdog_device: /dev/watchdog" "$root7/etc/regen/agent.yaml"
# Standalone (no --controller): no watchdog (nothing fences).
root8="$work/root8"
mkdir -p "$root8"
run_ih --host-name kvm-07 --address 192.0.2.17 --root "$root8" --no-bridge
expect_rc 0 "standalone run"
expect_out "watchdog: skipped (no --controller" "standalone run"
check "standalone: no watchdog in agent.yaml" "agent.yaml: $(cat "$root8/etc/regen/agent.yaml")" \
  bash -c "! grep -q '^watchdog' '$root8/etc/regen/agent.yaml'"

# A file where a directory belongs is an error naming it.
root2="$work/root2"
mkdir -p "$root2/etc" && touch "$root2/etc/regen"
run_ih "${common[@]}" --root "$root2" --no-bridge
expect_rc 1 "file in the way"
expect_out "$root2/etc/regen exists and is not a directory" "file in the way"

# --- the bridge, against a private Open vSwitch -------------------------------------------------
ovs="$work/ovs"
mkdir -p "$ovs"
db="unix:$ovs/db.sock"
run_ih "${common[@]}" --root "$root2" --ovs-db "$db"
expect_rc 1 "no ovsdb-server"
expect_out "cannot reach ovsdb-server at $db" "no ovsdb-server"
run_ih "${common[@]}" --root "$root1" --ovs-db "$db" --dry-run
expect_rc 0 "dry run, no ovsdb-server"
expect_out "bridge: would create br-int (datapath_type=system); ovsdb-server at $db is not reachable now" \
  "dry run, no ovsdb-server"

export OVS_RUNDIR="$ovs" OVS_LOGDIR="$ovs" OVS_DBDIR="$ovs"
ovsdb-tool create "$ovs/conf.db" /usr/share/openvswitch/vswitch.ovsschema || fail "ovsdb-tool create"
ovsdb-server "$ovs/conf.db" --remote="punix:$ovs/db.sock" --pidfile="$ovs/ovsdb-server.pid" \
  --unixctl="$ovs/ovsdb-server.ctl" --log-file="$ovs/ovsdb-server.log" -vconsole:off --detach --no-chdir ||
  fail "ovsdb-server did not start"
ovs-vsctl --db="$db" --no-wait init || fail "ovs-vsctl init"
ovs-vswitchd "$db" --pidfile="$ovs/ovs-vswitchd.pid" --unixctl="$ovs/ovs-vswitchd.ctl" \
  --log-file="$ovs/ovs-vswitchd.log" -vconsole:off --detach --no-chdir || fail "ovs-vswitchd did not start"

root3="$work/root3"
mkdir -p "$root3"
run_ih "${common[@]}" --root "$root3" --ovs-db "$db" --datapath netdev --bridge br-dry --dry-run
expect_rc 0 "dry run with OVS"
expect_out "would run: ovs-vsctl --timeout=10 --db=$db add-br br-dry -- set bridge br-dry datapath_type=netdev" \
  "dry run with OVS"
check "dry run created no bridge" "dry run created br-dry" \
  bash -c "! ovs-vsctl --db='$db' br-exists br-dry"

run_ih "${common[@]}" --root "$root3" --ovs-db "$db" --datapath netdev
expect_rc 0 "bridge run"
expect_out "bridge: created br-int (datapath_type=netdev)" "bridge run"
dp=$(ovs-vsctl --db="$db" get bridge br-int datapath_type 2>&1)
check "br-int exists with datapath_type netdev" "br-int datapath_type: $dp" test "$dp" = netdev
cfg3="$root3/etc/regen/agent.yaml"
check "agent.yaml names the bridge" "agent.yaml: $(cat "$cfg3")" grep -qx "  bridge: br-int" "$cfg3"
check "agent.yaml names the ovsdb socket" "agent.yaml: $(cat "$cfg3")" grep -qxF "  db_socket: $db" "$cfg3"
validate "$cfg3"
check "regen-agent accepts agent.yaml with a bridge" "refused (exit $vrc): $vout" test "$vrc" != 2

ovs-vsctl --db="$db" add-port br-int keep-me -- set interface keep-me type=internal ||
  fail "add-port keep-me"
run_ih "${common[@]}" --root "$root3" --ovs-db "$db" --datapath netdev
expect_rc 0 "bridge run again"
expect_out "bridge: br-int exists (datapath_type=netdev): left as it is" "bridge run again"
ports=$(ovs-vsctl --db="$db" list-ports br-int 2>&1)
check "existing bridge kept its ports" "ports now: $ports" test "$ports" = keep-me

run_ih "${common[@]}" --root "$root3" --ovs-db "$db" --datapath system
expect_rc 1 "bridge with another datapath"
expect_out "bridge br-int exists with datapath_type=netdev, not system" "bridge with another datapath"
dp=$(ovs-vsctl --db="$db" get bridge br-int datapath_type 2>&1)
check "the mismatch changed nothing" "datapath_type now $dp" test "$dp" = netdev

# --- a host set up as the README says runs the example service ------------------------------
# install-host with a controller and the bridge (network on, the address from the route to the
# controller, domain_type auto), regen-agent on the agent.yaml it wrote (only libvirt_uri set to
# the test driver, and state_dir and control_socket moved under this test's directory), a
# controller, and config/examples/service.yaml (its images under that state_dir): every
# instance places and runs, libvirt lists its domain, the host offers disk and bandwidth, and the
# agent programs br-int from the controller's topology.
# No route anywhere yet (this namespace's lo is down): the address cannot be guessed.
run_ih --host-name h1 --controller nosuch.invalid:7400 --dry-run
expect_rc 2 "no route to the controller"
expect_out "cannot find this host's address (no route to the controller, no IPv4 default route): pass --address IP" \
  "no route to the controller"
ip link set lo up || fail "ip link set lo up"
root9="$work/root9"
mkdir -p "$root9"
run_ih --host-name kvm-07 --controller 127.0.0.1:7400 --root "$root9" --ovs-db "$db" \
  --datapath netdev --no-watchdog
expect_rc 0 "install-host for the running host"
expect_out "address: 127.0.0.1, the source address of the route to the controller 127.0.0.1" \
  "install-host for the running host"
expect_out "network: on in agent.yaml (bridge br-int, VXLAN endpoint 127.0.0.1)" "install-host for the running host"
cfg9="$root9/etc/regen/agent.yaml"
for line in "domain_type: auto" "network:" "  enabled: true" "  tunnel_ip: 127.0.0.1" \
  "  db_socket: $ovs/db.sock" "  run_dir: $ovs"; do
  check "agent.yaml has '$line'" "agent.yaml lacks '$line': $(cat "$cfg9")" grep -qxF -- "$line" <(sed 's/ *#.*//' "$cfg9")
done
check "no capacity block (the agent measures it)" "agent.yaml: $(cat "$cfg9")" \
  bash -c "! grep -q '^capacity:' '$cfg9'"
run_ih --host-name kvm-08 --controller 127.0.0.1:7400 --root "$root9" --no-bridge --dry-run
expect_out "network: off in agent.yaml (--no-bridge: no bridge for the flows)" "--no-bridge turns the network off"
run_ih --host-name kvm-08 --root "$root9" --dry-run --address 192.0.2.8
expect_out "network: off in agent.yaml (no --controller" "standalone: network off"
run_ih --domain-type xen --dry-run --host-name h1 --address 192.0.2.1
expect_rc 2 "--domain-type xen"
expect_out "--domain-type 'xen': use auto, kvm or qemu" "--domain-type xen"

agent9="$work/agent9.yaml"
sed -e 's|^libvirt_uri: .*|libvirt_uri: "test:///default"|' \
  -e "s|^state_dir: .*|state_dir: $root9/var/lib/regen|" \
  -e "s|^control_socket: .*|control_socket: $work/agent9.sock|" "$cfg9" >"$agent9"
cat >"$work/controller.yaml" <<EOF
listen_address: "127.0.0.1:7400"
database: $work/controller.db
insecure: true
allow_loopback_hosts: true
EOF
images="$root9/var/lib/regen/images"
qemu-img create -q -f qcow2 "$images/web-v1.qcow2" 16M || fail "qemu-img create"
sed "s|/var/lib/regen/images/|$images/|" "$src/config/examples/service.yaml" >"$work/web.yaml"
"$controller_bin" run --config "$work/controller.yaml" >"$work/controller.log" 2>&1 &
controller_pid=$!
"$agent_bin" run --config "$agent9" >"$work/agent.log" 2>&1 &
agent_pid=$!
ctl=("$regenctl_bin" --controller 127.0.0.1:7400)
json_count() {  # PYTHON-EXPRESSION-ON-rows -> prints its value (0 on any error)
  python3 -c "import json,sys; rows=json.load(sys.stdin); print($1)" 2>/dev/null || echo 0
}
up=0
for _ in $(seq 100); do
  up=$("${ctl[@]}" host list -o json 2>/dev/null | json_count "sum(1 for h in rows if h['state'] == 'up')")
  [ "$up" = 1 ] && break
  sleep 0.1
done
check "the host joined" "no host up after 10 s; agent log: $(tail -5 "$work/agent.log")" test "$up" = 1
applied=$("${ctl[@]}" service apply -f "$work/web.yaml" 2>&1)
check "the example service applies" "service apply: $applied" test $? = 0
running=0
for _ in $(seq 150); do
  running=$("${ctl[@]}" instance list -o json 2>/dev/null |
    json_count "sum(1 for i in rows if i['state'] == 'running' and i['host'] == 'kvm-07')")
  [ "$running" = 6 ] && break
  sleep 0.2
done
check "the 6 instances of web run on kvm-07" \
  "$running of 6 running; $("${ctl[@]}" instance list 2>&1 | head -8)" test "$running" = 6
status=$("$agent_bin" status --config "$agent9" -o json 2>&1)
live=$(json_count "sum(1 for d in rows['domains'] if d['managed'] and d['state'] == 'running')" <<<"$status")
check "libvirt runs 6 managed domains on the host" "libvirt's listing: $status" test "$live" = 6
hosts=$("${ctl[@]}" host list -o json 2>&1)
check "the host offers disk and bandwidth" "host list: $hosts" test "$(json_count \
  "int(rows[0]['capacity']['disk_gib'] > 0 and rows[0]['capacity']['bandwidth_mbps'] > 0)" <<<"$hosts")" = 1
check "regenctl host list shows the domain type" "host list: $hosts" \
  test "$(json_count "rows[0]['domain_type']" <<<"$hosts")" = test
check "the topology reached the host" "host list: $hosts" \
  test "$(json_count "int(rows[0]['applied_topology_revision'] >= 1)" <<<"$hosts")" = 1
flows=$(ovs-ofctl dump-flows br-int 2>&1 | grep -c "cookie=0x[1-9a-f]")
check "br-int carries the project's flows" "br-int flows: $(ovs-ofctl dump-flows br-int 2>&1 | head -5)" \
  test "$flows" -gt 0
text=$("$agent_bin" status --config "$agent9" 2>&1)
check "regen-agent status says the domain type and why" "status: $text" \
  grep -qF "domain type test: auto: libvirt's test driver" <<<"$text"
disk=$("${ctl[@]}" instance list -o json 2>/dev/null | json_count "rows[0]['disk']")
check "instance list says what the disk is" "disk: $disk" test "$disk" = "overlay:$images/web-v1.qcow2"
kill "$agent_pid" "$controller_pid" 2>/dev/null
wait "$agent_pid" "$controller_pid" 2>/dev/null

echo
if ((fails)); then
  echo "install_host_test: $fails check(s) FAILED"
  exit 1
fi
echo "install_host_test: all checks passed"

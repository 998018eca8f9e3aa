#!/usr/bin/env bash
# scripts/install-host.sh: argument errors, --dry-run (prints the steps, changes nothing), a real
# run under --root in a temporary directory (directories, agent.yaml accepted by regen-agent's
# config loader, never overwritten), and the bridge step against a private Open vSwitch
# (ovsdb-server + ovs-vswitchd, userspace datapath) in a network namespace of its own.
# Usage: install_host_test.sh SOURCE_DIR REGEN_AGENT_BINARY   (ctest passes both; needs root for
# the network namespace)
set -uo pipefail

src=${1:?source dir}
agent_bin=${2:?regen-agent binary}
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
[ -x "$agent_bin" ] || { echo "FAIL: $agent_bin not built"; exit 1; }
[ -x "$script" ] || { echo "FAIL: $script missing or not executable"; exit 1; }

# The OVS part runs in a network namespace of its own, so the bridge it creates (a tap device
# named like the bridge) never meets the machine's interfaces. Re-enter this script there.
if [ "${REGEN_IN_NETNS:-}" != 1 ]; then
  REGEN_IN_NETNS=1 exec unshare --net -- "$0" "$@" ||
    { echo "FAIL: cannot create a network namespace (unshare --net): run as root"; exit 1; }
fi

work=$(mktemp -d /tmp/regen-install-host-test.XXXXXX)
cleanup() {
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
  'libvirt_uri: "qemu:///system"' "domain_type: kvm" '  bridge: ""' "insecure: true"; do
  check "agent.yaml has '$line'" "agent.yaml lacks '$line': $(cat "$cfg")" grep -qxF -- "$line" <(sed 's/ *#.*//' "$cfg")
done
check "no temporary file left" "left: $(ls "$root1/etc/regen")" test "$(ls "$root1/etc/regen")" = agent.yaml

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

echo
if ((fails)); then
  echo "install_host_test: $fails check(s) FAILED"
  exit 1
fi
echo "install_host_test: all checks passed"

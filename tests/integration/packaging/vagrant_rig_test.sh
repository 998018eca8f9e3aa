#!/usr/bin/env bash
# The Vagrant rig (scripts/vagrant/) cannot boot here (no KVM, no boxes), so this checks what can
# be checked without booting it:
#   - `ruby -c` and `vagrant validate` (with the vagrant-libvirt plugin, which validates the
#     libvirt settings too) on a copy of the rig, with stand-in packages; validate must refuse a
#     missing package and a bad REGEN_HOSTS; `vagrant status` lists the four machines.
#   - the provisioning scripts: argument errors and --dry-run (every step printed, in order).
#   - web.yaml is a service spec regenctl accepts.
#   - deploy-service.sh for real against a lab (scripts/lab.sh, libvirt test driver): it waits
#     for the hosts, deploys web.yaml and waits until it runs; then one host is killed (what
#     `vagrant halt` does to a rig host) and its instances run again elsewhere.
# Usage: vagrant_rig_test.sh SOURCE_DIR BUILD_DIR
set -uo pipefail

src=${1:?source dir}
build=${2:?build dir}
rig="$src/scripts/vagrant"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
pass() { echo "ok:   $*"; }
check() {  # OK-MESSAGE FAIL-MESSAGE COMMAND...
  local ok=$1 bad=$2
  shift 2
  if "$@"; then pass "$ok"; else fail "$bad"; fi
}
need() { command -v "$1" >/dev/null || { echo "FAIL: $1 not found: install Debian package $2"; exit 1; }; }
need vagrant vagrant
need ruby ruby
need jq jq
for b in ctl/regenctl controller/regen-controller agent/regen-agent; do
  [ -x "$build/$b" ] || { echo "FAIL: $build/$b not built"; exit 1; }
done

work=$(mktemp -d /tmp/regen-vagrant-test.XXXXXX)
lab="$work/lab"
cleanup() {
  if [ -f "$lab/.regen-lab" ]; then
    REGEN_BUILD_DIR="$build" "$src/scripts/lab.sh" down --dir "$lab" >/dev/null 2>&1
  fi
  rm -rf "$work"
}
trap cleanup EXIT
export VAGRANT_HOME="$work/vagrant.d" VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_NO_COLOR=1

# run CMD...: output in $out, status in $rc
run() {
  out=$("$@" 2>&1)
  rc=$?
}
expect_rc() { check "$2: exit $1" "$2: exit $rc, expected $1; output: $out" test "$rc" = "$1"; }
expect_out() { check "$2: prints '$1'" "$2: output lacks '$1': $out" grep -qF -- "$1" <<<"$out"; }

# --- Vagrantfile ------------------------------------------------------------------------------
run ruby -c "$rig/Vagrantfile"
expect_rc 0 "ruby -c Vagrantfile"
run vagrant plugin list
expect_out "vagrant-libvirt" "vagrant plugin list (Debian package vagrant-libvirt)"

cp -r "$rig" "$work/rig"   # vagrant writes .vagrant/ beside the Vagrantfile: not in the tree
rm -rf "$work/rig/.vagrant"
debs="$work/debs"
mkdir -p "$debs"
for p in regenctl regen-agent regen-controller; do : >"$debs/${p}_0.1.0-1_amd64.deb"; done

cd "$work/rig" || exit 1
run env REGEN_DEB_DIR="$debs" vagrant validate
expect_rc 0 "vagrant validate"
expect_out "validated successfully" "vagrant validate"
run env REGEN_DEB_DIR="$debs" REGEN_HOSTS=5 vagrant validate
expect_rc 0 "vagrant validate, REGEN_HOSTS=5"
run env REGEN_DEB_DIR="$debs" REGEN_HOSTS=0 vagrant validate
check "REGEN_HOSTS=0 refused" "REGEN_HOSTS=0: exit $rc: $out" test "$rc" != 0
expect_out "REGEN_HOSTS=0" "REGEN_HOSTS=0"
rm "$debs/regen-agent_0.1.0-1_amd64.deb"
run env REGEN_DEB_DIR="$debs" vagrant validate
check "validate without regen-agent.deb fails" "validate without regen-agent.deb: exit 0" test "$rc" != 0
expect_out "no regen-agent package in $debs" "validate without regen-agent.deb"
: >"$debs/regen-agent_0.1.0-1_amd64.deb"
# A setting vagrant-libvirt does not know is an error: validate really checks the provider part.
sed 's/lv.nested = true/lv.nested_typo = true/' "$rig/Vagrantfile" >Vagrantfile
run env REGEN_DEB_DIR="$debs" vagrant validate
check "validate refuses an unknown libvirt setting" "unknown libvirt setting accepted: $out" test "$rc" != 0
cp "$rig/Vagrantfile" Vagrantfile
run env REGEN_DEB_DIR="$debs" vagrant status
for m in kvm-1 kvm-2 kvm-3 controller; do
  check "vagrant status lists $m (libvirt)" "vagrant status: $out" grep -qE "^$m +not created \(libvirt\)" <<<"$out"
done
cd "$src" || exit 1

# --- provisioning scripts: arguments and --dry-run ----------------------------------------------
for s in provision-host.sh provision-controller.sh deploy-service.sh; do
  run "$rig/$s" --help
  expect_rc 0 "$s --help"
  run "$rig/$s" --bogus
  expect_rc 2 "$s --bogus"
  expect_out "unknown argument '--bogus'" "$s --bogus"
done
run "$rig/provision-host.sh" --address 10.77.0.11 --controller 10.77.0.10:7400 --debs "$debs" --dry-run
expect_rc 2 "provision-host.sh without --name"
expect_out "--name is required" "provision-host.sh without --name"
run "$rig/provision-host.sh" --name kvm-1 --address 10.77.0.11 --controller 10.77.0.10:7400 --debs "$work/none" --dry-run
expect_rc 1 "provision-host.sh, no package dir"
expect_out "--debs '$work/none': no such directory" "provision-host.sh, no package dir"

run "$rig/provision-host.sh" --name kvm-1 --address 10.77.0.11 --controller 10.77.0.10:7400 \
  --debs "$debs" --datapath system --domain-type kvm --dry-run
expect_rc 0 "provision-host.sh --dry-run"
steps=$(grep -E 'would run|^provision-host.sh: [0-9]/5' <<<"$out")
expected="provision-host.sh: 1/5 Debian packages
provision-host.sh: would run: apt-get update -q
provision-host.sh: would run: apt-get install -y -q --no-install-recommends libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils genisoimage openvswitch-switch tini knot-dnsutils jq
provision-host.sh: 2/5 Regen packages
provision-host.sh: would run: apt-get install -y -q --no-install-recommends $debs/regenctl_0.1.0-1_amd64.deb $debs/regen-agent_0.1.0-1_amd64.deb
provision-host.sh: 3/5 libvirt and Open vSwitch
provision-host.sh: would run: systemctl enable --now libvirtd.service openvswitch-switch.service
provision-host.sh: 4/5 host setup
provision-host.sh: would run: regen-install-host --host-name kvm-1 --address 10.77.0.11 --controller 10.77.0.10:7400 --datapath system --domain-type kvm
provision-host.sh: 5/5 regen-agent
provision-host.sh: would run: systemctl enable --now regen-agent.service"
check "provision-host.sh --dry-run prints the 5 steps in order" \
  "provision-host.sh --dry-run steps differ:
$(diff <(echo "$expected") <(echo "$steps"))" test "$steps" = "$expected"
# auto (the default) picks the kernel datapath only where it exists; domain type auto goes to
# agent.yaml as it is (the agent probes KVM at start).
want_dt=auto
want_dp=netdev
modinfo openvswitch >/dev/null 2>&1 && want_dp=system
run "$rig/provision-host.sh" --name kvm-1 --address 10.77.0.11 --controller 10.77.0.10:7400 \
  --debs "$debs" --dry-run
expect_out "regen-install-host --host-name kvm-1 --address 10.77.0.11 --controller 10.77.0.10:7400 --datapath $want_dp --domain-type $want_dt" \
  "provision-host.sh --dry-run, datapath and domain type auto"
# The arguments it passes to regen-install-host are ones install-host.sh takes.
run "$src/scripts/install-host.sh" --host-name kvm-1 --address 10.77.0.11 --controller 10.77.0.10:7400 \
  --datapath system --domain-type kvm --root "$work" --no-bridge --dry-run
expect_rc 0 "install-host.sh takes provision-host.sh's arguments"

run "$rig/provision-controller.sh" --address 10.77.0.10 --debs "$debs" --dry-run
expect_rc 0 "provision-controller.sh --dry-run"
for line in "would run: apt-get install -y -q --no-install-recommends knot knot-dnsutils jq" \
  "would write: /etc/knot/knot.conf (zone lab.example on 127.0.0.1@53 and 10.77.0.10@53, key regen-key may update)" \
  "would run: apt-get install -y -q --no-install-recommends $debs/regenctl_0.1.0-1_amd64.deb $debs/regen-controller_0.1.0-1_amd64.deb" \
  "would run: systemctl enable --now regen-controller.service"; do
  expect_out "$line" "provision-controller.sh --dry-run"
done
check "provision-controller.sh --dry-run names controller.yaml" "output: $out" \
  grep -qE "(would write|exists: not overwritten).*/etc/regen/controller.yaml|/etc/regen/controller.yaml.*(would write|exists)" <<<"$out"
run "$rig/provision-controller.sh" --address 10.77.0.10 --debs "$debs" --zone "Bad Zone" --dry-run
expect_rc 2 "provision-controller.sh --zone 'Bad Zone'"

# The controller's configuration files, written for real under a directory: knot's config is
# valid and a knotd running it takes an RFC 2136 update signed with the TSIG secret; the
# controller starts with the controller.yaml (its DNS block naming that key).
need knotc knot
need knotd knot
need knsupdate knot-dnsutils
need kdig knot-dnsutils
need ss iproute2
cfg="$work/configs"
mkdir -p "$cfg"
run "$rig/provision-controller.sh" --address 127.0.0.1 --configs-only "$cfg"
expect_rc 0 "provision-controller.sh --configs-only"
for f in etc/knot/knot.conf etc/regen/tsig.secret etc/regen/controller.yaml var/lib/knot/lab.example.zone; do
  check "--configs-only wrote $f" "--configs-only did not write $f: $out" test -s "$cfg/$f"
done
check "tsig.secret is 0600" "tsig.secret mode $(stat -c %a "$cfg/etc/regen/tsig.secret")" \
  test "$(stat -c %a "$cfg/etc/regen/tsig.secret")" = 600
run "$rig/provision-controller.sh" --address 127.0.0.1 --configs-only "$cfg"
expect_out "$cfg/etc/regen/controller.yaml exists: not overwritten" "provision-controller.sh again"
expect_out "$cfg/etc/knot/knot.conf already serves lab.example: kept" "provision-controller.sh again"
run knotc -c "$cfg/etc/knot/knot.conf" conf-check
expect_rc 0 "knotc conf-check on the written knot.conf"

free_port() {  # a port nothing listens on (TCP or UDP)
  local p
  for p in $(shuf -i 20000-29999 -n 50); do
    if [ -z "$(ss -Hltun "sport = :$p" 2>/dev/null)" ]; then
      echo "$p"
      return 0
    fi
  done
  return 1
}
dns_port=$(free_port)
# The written file with this test's port, directories and user (root: the knot user of the
# knot package need not exist here).
mkdir -p "$cfg/knot-run"
sed -e "s|listen: \[.*\]|listen: [ 127.0.0.1@$dns_port ]|" \
  -e "s|/var/lib/knot|$cfg/var/lib/knot|g; s|/run/knot|$cfg/knot-run|; /^ *user:/d" \
  "$cfg/etc/knot/knot.conf" >"$cfg/knot-test.conf"
knotd -c "$cfg/knot-test.conf" >"$cfg/knotd.log" 2>&1 &
knotd_pid=$!
answered=""
for _ in $(seq 50); do
  answered=$(kdig @127.0.0.1 -p "$dns_port" +short +timeout=1 ns.lab.example A 2>/dev/null)
  [ -n "$answered" ] && break
  sleep 0.1
done
check "knotd serves the written zone (ns.lab.example = 127.0.0.1)" \
  "knotd did not answer: '$answered' $(tail -5 "$cfg/knotd.log")" test "$answered" = 127.0.0.1
secret=$(cat "$cfg/etc/regen/tsig.secret")
nsupdate_script() {  # SECRET NAME
  printf 'server 127.0.0.1 %s\nkey hmac-sha256:regen-key %s\nzone lab.example.\n' "$dns_port" "$1"
  printf 'update add %s 30 A 10.10.0.2\nsend\n' "$2"
}
run knsupdate < <(nsupdate_script "$secret" web.lab.example.)
expect_rc 0 "knsupdate with the written TSIG secret"
answered=$(kdig @127.0.0.1 -p "$dns_port" +short web.lab.example A 2>&1)
check "the signed update is in the zone" "web.lab.example: $answered" test "$answered" = 10.10.0.2
run knsupdate < <(nsupdate_script "$(head -c 32 /dev/urandom | base64)" bad.lab.example.)
check "an update signed with another secret is refused" "wrong secret accepted: $out" test "$rc" != 0
kill "$knotd_pid" 2>/dev/null
wait "$knotd_pid" 2>/dev/null

ctl_port=$(free_port)
sed -e "s|0.0.0.0:7400|127.0.0.1:$ctl_port|; s|/var/lib/regen/controller.db|$cfg/controller.db|" \
  -e "s|/etc/regen/tsig.secret|$cfg/etc/regen/tsig.secret|" \
  "$cfg/etc/regen/controller.yaml" >"$cfg/controller-test.yaml"
"$build/controller/regen-controller" run --config "$cfg/controller-test.yaml" >"$cfg/controller.log" 2>&1 &
ctl_pid=$!
served=0
for _ in $(seq 100); do
  if "$build/ctl/regenctl" --controller "127.0.0.1:$ctl_port" --timeout 1 host list >/dev/null 2>&1; then
    served=1
    break
  fi
  kill -0 "$ctl_pid" 2>/dev/null || break
  sleep 0.1
done
check "regen-controller serves with the written controller.yaml" \
  "regen-controller did not serve: $(tail -5 "$cfg/controller.log")" test "$served" = 1
kill "$ctl_pid" 2>/dev/null
wait "$ctl_pid" 2>/dev/null

run "$rig/deploy-service.sh" --spec "$rig/web.yaml" --hosts 3 --dry-run
expect_rc 0 "deploy-service.sh --dry-run"
expect_out "would run: regenctl --controller 127.0.0.1:7400 service apply -f $rig/web.yaml" "deploy-service.sh --dry-run"
expect_out "every instance of web" "deploy-service.sh --dry-run"
run "$rig/deploy-service.sh" --spec "$work/none.yaml"
expect_rc 2 "deploy-service.sh, no spec file"

# --- web.yaml is a spec regenctl accepts --------------------------------------------------------
regenctl="$build/ctl/regenctl"
run "$regenctl" --controller 127.0.0.1:1 --timeout 2 service apply -f "$rig/web.yaml"
check "regenctl parses web.yaml (fails only to connect)" "regenctl on web.yaml: exit $rc: $out" \
  grep -q "cannot reach the controller" <<<"$out"
{ cat "$rig/web.yaml"; echo "bogus_key: 1"; } >"$work/bad.yaml"
run "$regenctl" --controller 127.0.0.1:1 --timeout 2 service apply -f "$work/bad.yaml"
expect_rc 2 "regenctl refuses a broken web.yaml (the check can fail)"

# --- deploy-service.sh against a lab, and a host failed by hand -------------------------------
export PATH="$build/ctl:$build/controller:$build/agent:$PATH"
run env REGEN_BUILD_DIR="$build" "$src/scripts/lab.sh" up --hosts 3 --driver test --dir "$lab"
expect_rc 0 "lab.sh up (3 hosts, test driver)"
addr=$(cat "$lab/controller.addr" 2>/dev/null)
start=$SECONDS
run "$rig/deploy-service.sh" --spec "$rig/web.yaml" --hosts 3 --controller "$addr" --timeout 60
expect_rc 0 "deploy-service.sh on the lab"
expect_out "3 hosts up" "deploy-service.sh on the lab"
expect_out "every instance of web running" "deploy-service.sh on the lab"
pass "deployed in $((SECONDS - start)) s"
json=$(regenctl --controller "$addr" instance list -o json 2>&1)
n=$(jq '[.[] | select(.service == "web" and .state == "running")] | length' <<<"$json" 2>/dev/null)
check "4 instances of web running" "instances: $json" test "${n:-0}" = 4

# `vagrant halt kvm-2` on the rig; here: SIGKILL host-K's agent (on the test driver its domains
# live in the agent process and die with it).
victim=$(jq -r '[.[] | select(.name == "web-0")][0].host' <<<"$json" 2>/dev/null)
moved=$(jq -r --arg h "$victim" '[.[] | select(.host == $h) | .name] | join(" ")' <<<"$json" 2>/dev/null)
pid=$(cat "$lab/$victim/agent.pid" 2>/dev/null)
if [ -n "$pid" ] && grep -q "$lab" "/proc/$pid/cmdline" 2>/dev/null; then
  kill -KILL "$pid"
  pass "killed $victim's agent (pid $pid), which ran: $moved"
  healed=0
  deadline=$((SECONDS + 30))
  while ((SECONDS < deadline)); do
    json=$(regenctl --controller "$addr" instance list -o json 2>/dev/null)
    if jq -e --arg h "$victim" '[.[] | select(.service == "web")] | length == 4 and
          all(.state == "running" and .host != $h)' <<<"$json" >/dev/null 2>&1; then
      healed=1
      break
    fi
    sleep 0.5
  done
  check "every instance of $victim runs on another host within 30 s" \
    "not healed: $(regenctl --controller "$addr" instance list 2>&1)" test "$healed" = 1
  gens=$(jq -r --arg m "$moved" '[.[] | select(.name as $n | ($m | split(" ")) | index($n)) | .generation] | map(tostring) | join(" ")' <<<"$json" 2>/dev/null)
  all_two() {  # GENERATIONS...: at least one, and all of them 2
    (($# > 0)) || return 1
    for g; do [ "$g" = 2 ] || return 1; done
  }
  # shellcheck disable=SC2086  # one generation a word
  check "the moved instances were re-instantiated (generation 2: $gens)" "generations: $gens" \
    all_two $gens
  hosts=$(regenctl --controller "$addr" host list -o json 2>/dev/null | jq -r --arg h "$victim" '.[] | select(.name == $h) | .state')
  check "$victim is down" "$victim state: $hosts" test "$hosts" = down
else
  fail "no live agent pid for $victim in $lab/$victim/agent.pid"
fi

echo
if ((fails)); then
  echo "vagrant_rig_test: $fails check(s) FAILED"
  exit 1
fi
echo "vagrant_rig_test: all checks passed"

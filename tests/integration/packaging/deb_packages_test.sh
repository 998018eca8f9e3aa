#!/usr/bin/env bash
# Builds the three Debian packages with CPack from the build directory (into a temporary
# directory) and checks them with dpkg-deb: files, control fields, library Depends against the
# binaries' DT_NEEDED, no file in two packages, maintainer scripts, and that apt could install
# all three together on this machine (simulated).
# Usage: deb_packages_test.sh SOURCE_DIR BUILD_DIR   (ctest passes both)
set -uo pipefail

src=${1:?source dir}
build=${2:?build dir}
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
pass() { echo "ok:   $*"; }
check() {  # OK-MESSAGE FAIL-MESSAGE COMMAND...: pass or fail by the command's exit status
  local ok=$1 bad=$2
  shift 2
  if "$@"; then pass "$ok"; else fail "$bad"; fi
}
need() { command -v "$1" >/dev/null || { echo "FAIL: $1 not found: install Debian package $2"; exit 1; }; }

need dpkg-deb dpkg
need dpkg-shlibdeps dpkg-dev
need cpack cmake
need readelf binutils

for b in agent/regen-agent controller/regen-controller ctl/regenctl; do
  [ -x "$build/$b" ] || { echo "FAIL: $build/$b not built: cmake --build $build first"; exit 1; }
done

work=$(mktemp -d /tmp/regen-deb-test.XXXXXX)
trap 'rm -rf "$work"' EXIT

version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")
[ -n "$version" ] || { echo "FAIL: no CPACK_PACKAGE_VERSION in $build/CPackConfig.cmake"; exit 1; }
debver="$version-1"
arch=$(dpkg --print-architecture)

start=$(date +%s)
if ! cpack --config "$build/CPackConfig.cmake" -G DEB -B "$work/out" >"$work/cpack.log" 2>&1; then
  cat "$work/cpack.log"
  echo "FAIL: cpack failed"
  exit 1
fi
pass "cpack built the packages in $(($(date +%s) - start)) s"

declare -A deb
for p in regen-agent regen-controller regenctl; do
  deb[$p]="$work/out/${p}_${debver}_${arch}.deb"
  if [ -f "${deb[$p]}" ]; then pass "$p: ${deb[$p]##*/}"; else fail "$p: no ${deb[$p]##*/} (got: $(ls "$work/out"))"; fi
done
((fails == 0)) || exit 1
n=$(find "$work/out" -maxdepth 1 -name '*.deb' | wc -l)
check "exactly 3 packages" "expected 3 .deb files, got $n" test "$n" = 3

# --- contents (dpkg-deb -c) -------------------------------------------------------------------
declare -A listing   # package -> dpkg-deb -c output, read once
for p in regen-agent regen-controller regenctl; do listing[$p]=$(dpkg-deb -c "${deb[$p]}"); done
contents() { awk '{print $1, $6}' <<<"${listing[$1]}"; }   # mode path
has_file() {  # PACKAGE PATH [MODE-PREFIX]
  local line
  line=$(contents "$1" | awk -v p="./$2" '$2 == p {print $1}')
  if [ -z "$line" ]; then
    fail "$1 lacks /$2"
  elif [ -n "${3:-}" ] && [[ $line != "$3"* ]]; then
    fail "$1: /$2 has mode $line, expected $3..."
  else
    pass "$1 has /$2 ($line)"
  fi
}
lacks_file() {
  if contents "$1" | awk '{print $2}' | grep -qx "./$2"; then fail "$1 must not hold /$2"; else pass "$1 does not hold /$2"; fi
}

has_file regen-agent usr/bin/regen-agent -rwxr-xr-x
has_file regen-agent usr/sbin/regen-install-host -rwxr-xr-x
has_file regen-agent lib/systemd/system/regen-agent.service -rw-r--r--
has_file regen-agent usr/share/doc/regen-agent/examples/agent.yaml
has_file regen-agent usr/share/doc/regen-agent/examples/agent-lab.yaml
has_file regen-agent usr/share/doc/regen-agent/examples/desired.yaml
lacks_file regen-agent usr/bin/regenctl
lacks_file regen-agent usr/bin/regen-controller
has_file regen-controller usr/bin/regen-controller -rwxr-xr-x
has_file regen-controller lib/systemd/system/regen-controller.service -rw-r--r--
has_file regen-controller usr/share/doc/regen-controller/examples/controller.yaml
has_file regen-controller usr/share/doc/regen-controller/examples/service.yaml
lacks_file regen-controller usr/bin/regenctl
lacks_file regen-controller usr/bin/regen-agent
has_file regenctl usr/bin/regenctl -rwxr-xr-x

# Nothing outside /usr and /lib/systemd (no /etc: configs are the admin's), all owned by root.
for p in regen-agent regen-controller regenctl; do
  bad=$(awk '$2 != "root/root" || ($6 !~ /^\.\/usr\// && $6 !~ /^\.\/lib\/systemd\// && $6 != "./lib/" && $6 != "./usr/")' <<<"${listing[$p]}")
  check "$p: only /usr and /lib/systemd, root-owned" "$p: unexpected entries: $bad" test -z "$bad"
done

# No regular file in two packages: all three install together without a conflict.
for p in regen-agent regen-controller regenctl; do
  awk '$1 !~ /^d/ {print $6}' <<<"${listing[$p]}" >"$work/$p.files"
done
dups=$(sort "$work"/*.files | uniq -d)
check "no file is in two packages" "files in two packages: $dups" test -z "$dups"

# --- what was packaged is what is in the tree -------------------------------------------------
for p in regen-agent regen-controller regenctl; do
  mkdir -p "$work/x/$p" && dpkg-deb -x "${deb[$p]}" "$work/x/$p"
done
same() {  # EXTRACTED SOURCE
  check "${1#"$work"/x/} = ${2#"$src"/}" "${1#"$work"/x/} differs from ${2#"$src"/}" cmp -s "$1" "$2"
}
same "$work/x/regen-agent/lib/systemd/system/regen-agent.service" "$src/systemd/regen-agent.service"
same "$work/x/regen-controller/lib/systemd/system/regen-controller.service" "$src/systemd/regen-controller.service"
same "$work/x/regen-agent/usr/share/doc/regen-agent/examples/agent.yaml" "$src/config/examples/agent.yaml"
same "$work/x/regen-controller/usr/share/doc/regen-controller/examples/controller.yaml" "$src/config/examples/controller.yaml"
same "$work/x/regen-agent/usr/sbin/regen-install-host" "$src/scripts/install-host.sh"

# The packaged binaries are stripped and run (their libraries resolve here).
for pb in regen-agent/usr/bin/regen-agent regen-controller/usr/bin/regen-controller regenctl/usr/bin/regenctl; do
  f="$work/x/$pb"
  if readelf -S "$f" | grep -q '\.debug_info'; then fail "$pb is not stripped"; else pass "$pb is stripped"; fi
  if out=$("$f" --help 2>&1) && grep -q "${pb##*/}" <<<"$out"; then pass "$pb --help runs"; else fail "$pb --help: $out"; fi
done
out=$("$work/x/regen-agent/usr/sbin/regen-install-host" --help 2>&1)
check "regen-install-host --help runs" "regen-install-host --help: $out" grep -q -- '--dry-run' <<<"$out"

# --- control fields (dpkg-deb -I / -f) --------------------------------------------------------
field() { dpkg-deb -f "${deb[$1]}" "$2"; }
expect_field() {  # PACKAGE FIELD EXTENDED-REGEX
  local v
  v=$(field "$1" "$2")
  if grep -Eq -- "$3" <<<"$v"; then pass "$1 $2 matches /$3/"; else fail "$1 $2: '$v' does not match /$3/"; fi
}
for p in regen-agent regen-controller regenctl; do
  expect_field "$p" Package "^$p\$"
  expect_field "$p" Version "^${debver//./\\.}\$"
  expect_field "$p" Architecture "^$arch\$"
  expect_field "$p" Maintainer '.+ <.+@.+>'
  expect_field "$p" Section '^admin$'
  expect_field "$p" Depends 'libc6 \(>= '
  expect_field "$p" Depends 'libgrpc\+\+1\.[0-9]+'
  expect_field "$p" Depends 'libprotobuf[0-9]+'
  expect_field "$p" Depends 'libyaml-cpp0\.[0-9]+'
  expect_field "$p" Description '.'
done
expect_field regen-agent Depends "(^|, )regenctl \(= ${debver//./\\.}\)"
expect_field regen-controller Depends "(^|, )regenctl \(= ${debver//./\\.}\)"
expect_field regen-agent Depends '(^|, )libvirt0( |,|$)'
expect_field regen-agent Depends '(^|, )libsystemd0( |,|$)'
expect_field regen-controller Depends '(^|, )libsqlite3-0( |,|$)'
expect_field regen-controller Depends '(^|, )libsystemd0( |,|$)'
expect_field regen-agent Recommends '(^|, )libvirt-daemon-system(,|$)'
expect_field regen-agent Recommends '(^|, )openvswitch-switch(,|$)'
expect_field regen-agent Recommends '(^|, )qemu-utils(,|$)'
if field regen-controller Depends | grep -q libvirt; then fail "regen-controller must not depend on libvirt"; else pass "regen-controller does not depend on libvirt"; fi
if field regenctl Depends | grep -q regen-; then fail "regenctl must not depend on a daemon package"; else pass "regenctl depends on no daemon"; fi

# Every library a binary needs (DT_NEEDED) belongs to a package in its Depends.
ldcache=$(PATH=$PATH:/sbin ldconfig -p)
# "package provided1 provided2..." for every installed package.
installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package} ${Provides}\n' |
            awk '$1 == "ii" {$1 = ""; print}' | sed 's/([^)]*)//g; s/,/ /g; s/^ *//')
names_provided_by() { awk -v p="$1" '$1 == p {for (i = 2; i <= NF; i++) print $i}' <<<"$installed"; }
installed_or_provided() { awk -v d="$1" '{for (i = 1; i <= NF; i++) if ($i == d) f = 1} END {exit !f}' <<<"$installed"; }
binaries=(regen-agent/usr/bin/regen-agent regen-controller/usr/bin/regen-controller regenctl/usr/bin/regenctl)
needed() { readelf -d "$work/x/$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
lib_path() { awk -v s="$1" '$1 == s {print $NF; exit}' <<<"$ldcache"; }
spellings() {  # PATH: dpkg knows a library under /lib or /usr/lib (merged /usr)
  printf '%s\n' "$1" "$(readlink -f "$1")" "/usr$1" "${1#/usr}"
}
# One dpkg -S for every library of the three binaries (each call reads all of dpkg's file lists).
declare -A owner_of
while IFS= read -r line; do
  owner_of[${line#*: }]=${line%%[:,]*}
done < <(for pb in "${binaries[@]}"; do
           for so in $(needed "$pb"); do
             path=$(lib_path "$so")
             [ -z "$path" ] || spellings "$path"
           done
         done | sort -u | xargs dpkg -S 2>/dev/null)
for pb in "${binaries[@]}"; do
  p=${pb%%/*}
  deps=$(field "$p" Depends | tr ',' '\n' | sed 's/^ *//; s/[ (].*//')
  missing=""
  for so in $(needed "$pb"); do
    path=$(lib_path "$so")
    [ -n "$path" ] || { missing+=" $so(not found)"; continue; }
    owner=""
    for sp in $(spellings "$path"); do
      [ -n "$owner" ] || owner=${owner_of[$sp]:-}
    done
    # The owner, or a virtual package it provides (libspdlog1.10 provides libspdlog1.10-fmt9,
    # the name its shlibs file gives), must be in Depends.
    names=$(printf '%s\n' "$owner"; names_provided_by "$owner")
    grep -qxFf <(printf '%s\n' "$deps") <<<"$names" || missing+=" $so($owner)"
  done
  check "$p Depends covers every DT_NEEDED library" "$p Depends lacks:$missing" test -z "$missing"
  # Every Depends name is a real package (installed here, as the build linked against it).
  for d in $deps; do
    [ "$d" = regenctl ] && continue
    installed_or_provided "$d" || fail "$p Depends on $d, which no package installed here is or provides"
  done
done

# --- maintainer scripts -----------------------------------------------------------------------
for p in regen-agent regen-controller; do
  mkdir -p "$work/ctl/$p" && dpkg-deb -e "${deb[$p]}" "$work/ctl/$p"
  for s in postinst prerm postrm; do
    f="$work/ctl/$p/$s"
    if [ -x "$f" ] && sh -n "$f" && grep -q "$p.service" "$f"; then pass "$p $s: executable, valid sh, names $p.service"; else fail "$p $s"; fi
  done
done
ctl_scripts=$(dpkg-deb -I "${deb[regenctl]}" | grep -cE ' (postinst|prerm|postrm) ')
check "regenctl has no maintainer scripts" "regenctl has maintainer scripts" test "$ctl_scripts" = 0

# --- apt would install the three together (dependencies resolve, no conflict) --------------
if out=$(apt-get install -s -q "${deb[regenctl]}" "${deb[regen-agent]}" "${deb[regen-controller]}" 2>&1) &&
  grep -q '^Inst regen-agent ' <<<"$out" && grep -q '^Inst regen-controller ' <<<"$out" && grep -q '^Inst regenctl ' <<<"$out"; then
  pass "apt-get install -s of the three packages resolves"
else
  echo "$out" | tail -20
  fail "apt-get install -s of the three packages"
fi
# ...and regen-agent alone pulls regenctl in (a host without the controller).
if out=$(apt-get install -s -q "${deb[regen-agent]}" 2>&1); then
  fail "regen-agent without regenctl available must not resolve (Depends: regenctl): $out"
else
  check "regen-agent alone: apt asks for regenctl" "regen-agent alone: $out" grep -q 'regenctl' <<<"$out"
fi

echo
if ((fails)); then
  echo "deb_packages_test: $fails check(s) FAILED"
  exit 1
fi
echo "deb_packages_test: all checks passed"

#!/usr/bin/env bash
# scripts/gen-certs.sh: every certificate chains to the CA (openssl verify), names what it should
# (controller SANs, host CN and DNS SAN, client CNs), has the right key usage, keys and tokens are
# mode 0600, a second run reuses the CA and keeps what exists (adding a host), and bad arguments
# are refused; --revoke/--crl write a CRL that revokes what they name. Prints one "ok:"/"FAIL:"
# line per check; fails on any FAIL.
# Usage: gen_certs_test.sh SOURCE_DIR
set -uo pipefail

src=${1:?source dir}
script="$src/scripts/gen-certs.sh"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
pass() { echo "ok:   $*"; }
check() {  # OK-MESSAGE FAIL-MESSAGE COMMAND...
  local ok=$1 bad=$2
  shift 2
  if "$@"; then pass "$ok"; else fail "$bad"; fi
}
command -v openssl >/dev/null || { echo "FAIL: openssl not found: install Debian package openssl"; exit 1; }
[ -x "$script" ] || { echo "FAIL: $script missing or not executable"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/regen-gen-certs-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
out=$work/certs

if "$script" "$out" regen-ctl.lab.example host-1 host-2 >"$work/log" 2>&1; then
  pass "gen-certs.sh made a lab CA and certificates"
else
  fail "gen-certs.sh failed: $(cat "$work/log")"
fi

for c in controller host-1 host-2 admin readonly; do
  check "$c.crt verifies against ca.crt" "$c.crt does not verify: $(openssl verify -CAfile "$out/ca.crt" "$out/$c.crt" 2>&1)" \
    openssl verify -CAfile "$out/ca.crt" "$out/$c.crt"
  check "$c.key matches $c.crt" "$c.key does not match $c.crt" \
    test "$(openssl pkey -in "$out/$c.key" -pubout 2>/dev/null)" = "$(openssl x509 -in "$out/$c.crt" -noout -pubkey 2>/dev/null)"
  check "$c.key is mode 0600" "$c.key is mode $(stat -c %a "$out/$c.key")" test "$(stat -c %a "$out/$c.key")" = 600
done

san() { openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null | tail -n +2 | tr -d ' '; }
subject() { openssl x509 -in "$1" -noout -subject -nameopt RFC2253 2>/dev/null; }
eku() { openssl x509 -in "$1" -noout -ext extendedKeyUsage 2>/dev/null | tail -n +2; }

check "controller SAN names regen-ctl.lab.example, localhost and 127.0.0.1" \
  "controller SAN is '$(san "$out/controller.crt")'" \
  test "$(san "$out/controller.crt")" = "DNS:regen-ctl.lab.example,DNS:localhost,IPAddress:127.0.0.1"
check "controller certificate is for TLS servers" "controller EKU: $(eku "$out/controller.crt")" \
  grep -q "TLS Web Server Authentication" <(eku "$out/controller.crt")
for h in host-1 host-2; do
  check "$h certificate has CN=$h" "$h subject: $(subject "$out/$h.crt")" grep -q "CN=$h," <(subject "$out/$h.crt")
  check "$h certificate has SAN DNS:$h" "$h SAN: '$(san "$out/$h.crt")'" test "$(san "$out/$h.crt")" = "DNS:$h"
  check "$h certificate is for TLS clients" "$h EKU: $(eku "$out/$h.crt")" \
    grep -q "TLS Web Client Authentication" <(eku "$out/$h.crt")
done
check "admin certificate has CN=admin@regenctl" "admin subject: $(subject "$out/admin.crt")" \
  grep -q "CN=admin@regenctl," <(subject "$out/admin.crt")
check "readonly certificate has CN=readonly@regenctl" "readonly subject: $(subject "$out/readonly.crt")" \
  grep -q "CN=readonly@regenctl," <(subject "$out/readonly.crt")
check "the CA is a CA" "ca.crt lacks CA:TRUE" grep -q "CA:TRUE" <(openssl x509 -in "$out/ca.crt" -noout -ext basicConstraints 2>/dev/null)
check "a host certificate is not a CA" "host-1.crt may sign" grep -q "CA:FALSE" <(openssl x509 -in "$out/host-1.crt" -noout -ext basicConstraints 2>/dev/null)
for t in admin readonly; do
  check "$t.token holds 64 hex digits" "$t.token: '$(cat "$out/$t.token")'" grep -qxE '[0-9a-f]{64}' "$out/$t.token"
  check "$t.token is mode 0600" "$t.token is mode $(stat -c %a "$out/$t.token")" test "$(stat -c %a "$out/$t.token")" = 600
done
check "the two tokens differ" "admin.token = readonly.token" test "$(cat "$out/admin.token")" != "$(cat "$out/readonly.token")"
serials=$(for c in controller host-1 host-2 admin readonly; do openssl x509 -in "$out/$c.crt" -noout -serial; done | sort -u | wc -l)
check "every certificate has its own serial" "only $serials distinct serials" test "$serials" = 5

# A second run adds host-3 with the same CA and keeps the rest.
ca_before=$(openssl x509 -in "$out/ca.crt" -noout -fingerprint)
h1_before=$(openssl x509 -in "$out/host-1.crt" -noout -fingerprint)
tok_before=$(cat "$out/admin.token")
if "$script" "$out" regen-ctl.lab.example host-1 host-3 >"$work/log2" 2>&1; then
  pass "a second run succeeded"
else
  fail "second run failed: $(cat "$work/log2")"
fi
check "the CA is reused" "the CA changed" test "$(openssl x509 -in "$out/ca.crt" -noout -fingerprint)" = "$ca_before"
check "host-1.crt is kept" "host-1.crt changed" test "$(openssl x509 -in "$out/host-1.crt" -noout -fingerprint)" = "$h1_before"
check "admin.token is kept" "admin.token changed" test "$(cat "$out/admin.token")" = "$tok_before"
check "host-3.crt verifies against the same CA" "host-3.crt does not verify" \
  openssl verify -CAfile "$out/ca.crt" "$out/host-3.crt"

# A certificate of another CA does not verify against this one.
"$script" "$work/other" regen-ctl.lab.example host-1 >/dev/null 2>&1
check "another run's CA is another CA" "other/host-1.crt verifies against the first CA" \
  bash -c "! openssl verify -CAfile '$out/ca.crt' '$work/other/host-1.crt' >/dev/null 2>&1"

# IP address as the controller name.
"$script" "$work/ip" 192.0.2.10 host-1 >/dev/null 2>&1
check "an IP controller name becomes an IP SAN" "controller SAN: '$(san "$work/ip/controller.crt")'" \
  test "$(san "$work/ip/controller.crt")" = "IPAddress:192.0.2.10,DNS:localhost,IPAddress:127.0.0.1"

# Revocation: --revoke lists a certificate in crl.pem (openssl verify -crl_check refuses it, the
# others still verify), a second --revoke of it is a no-op, --crl rewrites the same list, and the
# certificates of the first run are untouched.
h2_before=$(openssl x509 -in "$out/host-2.crt" -noout -fingerprint)
if "$script" --revoke "$out" host-2 >"$work/log3" 2>&1; then
  pass "--revoke host-2 succeeded"
else
  fail "--revoke host-2 failed: $(cat "$work/log3")"
fi
crl_verify() { openssl verify -crl_check -CAfile "$out/ca.crt" -CRLfile "$out/crl.pem" "$1" >/dev/null 2>&1; }
revoked() { ! crl_verify "$1"; }
check "crl.pem is a CRL of the CA" "crl.pem does not verify against ca.crt" \
  openssl crl -in "$out/crl.pem" -CAfile "$out/ca.crt" -noout -out /dev/null 2>/dev/null
check "host-2.crt is revoked by crl.pem" "host-2.crt still verifies with the CRL" revoked "$out/host-2.crt"
check "host-1.crt still verifies with the CRL" "host-1.crt is refused with the CRL" crl_verify "$out/host-1.crt"
check "host-2.crt itself is kept" "host-2.crt changed" \
  test "$(openssl x509 -in "$out/host-2.crt" -noout -fingerprint)" = "$h2_before"
"$script" --revoke "$out" host-2 >"$work/log4" 2>&1
check "a second --revoke says already revoked" "second --revoke: $(cat "$work/log4")" grep -q "already revoked" "$work/log4"
"$script" --crl "$out" >/dev/null 2>&1
check "--crl keeps the revocation" "host-2.crt verifies after --crl" revoked "$out/host-2.crt"
check "--revoke of a missing certificate fails" "--revoke nosuch succeeded" \
  bash -c "! '$script' --revoke '$out' nosuch >/dev/null 2>&1"

# Bad arguments.
refuses() {  # MESSAGE-FRAGMENT ARGS...: exit code 2 and a message naming the problem
  local want=$1
  shift
  local msg
  msg=$("$script" "$@" 2>&1 >/dev/null)
  local rc=$?
  [ "$rc" = 2 ] && [[ $msg == *"$want"* ]] || { echo "  (exit $rc: $msg)"; return 1; }
}
check "no HOST is refused" "no HOST accepted" refuses "at least one HOST" "$work/x" ctl
check "a bad host name is refused" "host Bad_Host accepted" refuses "HOST 'Bad_Host' is not a Regen host name" "$work/x" ctl Bad_Host
check "host 'admin' is refused" "host admin accepted" refuses "would overwrite the admin certificate" "$work/x" ctl admin
check "a bad controller name is refused" "controller 'Ctl Lab' accepted" refuses "CONTROLLER_NAME 'Ctl Lab'" "$work/x" "Ctl Lab" host-1
check "nothing is written for bad arguments" "$work/x was created" test ! -e "$work/x"

if [ "$fails" -gt 0 ]; then
  echo "$fails check(s) failed"
  exit 1
fi
echo "all checks passed"

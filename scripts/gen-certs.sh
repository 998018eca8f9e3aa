#!/usr/bin/env bash
# Makes a lab certificate authority and every certificate a Regen cluster needs for mutual TLS,
# with openssl:
#   ca.crt ca.key                  the CA (ca.key signs everything below; keep it off the hosts)
#   controller.crt controller.key  the controller (CN and SAN = CONTROLLER_NAME, plus
#                                  DNS:localhost and IP:127.0.0.1)
#   HOST.crt HOST.key              one per agent host (CN and DNS SAN = HOST: the controller
#                                  refuses an agent whose certificate names another host)
#   admin.crt admin.key            regenctl, CN admin@regenctl      (auth.certs role admin)
#   readonly.crt readonly.key      regenctl, CN readonly@regenctl   (auth.certs role read-only)
#   admin.token readonly.token     random bearer tokens for auth.tokens / regenctl --token-file
#
#   scripts/gen-certs.sh OUTDIR CONTROLLER_NAME HOST [HOST...]
#   scripts/gen-certs.sh --revoke OUTDIR NAME [NAME...]   revoke OUTDIR/NAME.crt, write crl.pem
#   scripts/gen-certs.sh --crl OUTDIR                     write crl.pem anew (same revocations)
#
# Revocation keeps an openssl ca database next to the CA (ca.index, ca.crlnumber) and writes
# crl.pem, the certificate revocation list for tls.crl (controller.yaml and agent.yaml), valid
# for $REGEN_CRL_DAYS days (default 365): write it anew before then (--crl), as an expired CRL
# fails every handshake. To replace a revoked certificate, delete NAME.crt and NAME.key and run
# the first form again (a new serial); copy crl.pem wherever tls.crl points.
#
# An existing ca.crt/ca.key in OUTDIR is reused, so hosts can be added later; existing
# certificates and tokens are kept (delete a file to make it again). Keys and tokens are written
# mode 0600. CONTROLLER_NAME is the DNS name (or IPv4 address) agents and regenctl dial.
set -euo pipefail

PROG=gen-certs.sh
DAYS=${REGEN_CERT_DAYS:-825}
CRL_DAYS=${REGEN_CRL_DAYS:-365}

usage() {
  cat <<EOF
Usage: scripts/$PROG OUTDIR CONTROLLER_NAME HOST [HOST...]
       scripts/$PROG --revoke OUTDIR NAME [NAME...]
       scripts/$PROG --crl OUTDIR

Makes a lab CA (or reuses OUTDIR/ca.crt and ca.key), the controller's certificate (CN and SAN
CONTROLLER_NAME, plus localhost and 127.0.0.1), one certificate per HOST (CN = the agent's
host_name), admin and read-only client certificates for regenctl, and two bearer tokens.
Certificates are valid for \$REGEN_CERT_DAYS days (default 825).

--revoke adds OUTDIR/NAME.crt (e.g. host-2, admin) to the CA's revocation list and writes
OUTDIR/crl.pem; --crl writes crl.pem again (e.g. before it expires: \$REGEN_CRL_DAYS days,
default 365). Point tls.crl of controller.yaml and agent.yaml at crl.pem; the controller re-reads
it every tls.reload_interval, agents at their next connection.
EOF
}
die() { echo "$PROG: $*" >&2; exit 1; }
usage_error() { echo "$PROG: $*" >&2; echo "(see scripts/$PROG --help)" >&2; exit 2; }

# The CA's openssl ca database (ca.index) and crl.pem: --revoke and --crl.
crl_mode() {  # MODE OUTDIR [NAME...]
  local mode=$1 out=$2
  shift 2
  [ -f "$out/ca.crt" ] && [ -f "$out/ca.key" ] ||
    die "$out has no ca.crt and ca.key: run $PROG OUTDIR CONTROLLER_NAME HOST first"
  umask 077
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/regen-gen-certs.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  [ -f "$out/ca.index" ] || : >"$out/ca.index"
  [ -f "$out/ca.crlnumber" ] || echo 01 >"$out/ca.crlnumber"
  cat >"$tmp/ca.cnf" <<EOF
[ ca ]
default_ca = regen
[ regen ]
database = $out/ca.index
crlnumber = $out/ca.crlnumber
default_md = sha256
default_crl_days = $CRL_DAYS
unique_subject = no
EOF
  local ca=(-config "$tmp/ca.cnf" -cert "$out/ca.crt" -keyfile "$out/ca.key")
  if [ "$mode" = revoke ]; then
    local name serial
    for name in "$@"; do
      [ -f "$out/$name.crt" ] || die "no certificate $out/$name.crt to revoke"
      serial=$(openssl x509 -in "$out/$name.crt" -noout -serial | cut -d= -f2)
      if grep -q "^R.*[[:space:]]$serial[[:space:]]" "$out/ca.index"; then
        echo "$name: already revoked (serial $serial)"
        continue
      fi
      openssl ca "${ca[@]}" -revoke "$out/$name.crt" >"$tmp/log" 2>&1 ||
        die "openssl cannot revoke $out/$name.crt: $(cat "$tmp/log")"
      echo "$name: revoked serial $serial"
    done
  fi
  openssl ca "${ca[@]}" -gencrl -out "$tmp/crl.pem" >"$tmp/log" 2>&1 ||
    die "openssl cannot write the CRL: $(cat "$tmp/log")"
  chmod 0644 "$tmp/crl.pem"
  mv "$tmp/crl.pem" "$out/crl.pem"
  echo "crl: wrote $out/crl.pem ($(grep -c '^R' "$out/ca.index" || true) revoked, valid $CRL_DAYS days)"
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  --revoke)
    [ $# -ge 3 ] || usage_error "--revoke takes OUTDIR and at least one NAME (e.g. host-2)"
    command -v openssl >/dev/null || die "openssl not found: install the openssl package"
    crl_mode revoke "${@:2}"
    exit 0 ;;
  --crl)
    [ $# -eq 2 ] || usage_error "--crl takes OUTDIR only"
    command -v openssl >/dev/null || die "openssl not found: install the openssl package"
    crl_mode crl "$2"
    exit 0 ;;
  -*) usage_error "unknown option '$1'" ;;
esac
[ $# -ge 3 ] || usage_error "give OUTDIR, CONTROLLER_NAME and at least one HOST"
command -v openssl >/dev/null || die "openssl not found: install the openssl package"

out=$1 controller=$2
shift 2
hosts=("$@")
is_ip() { [[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]]; }
dns_re='^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$'
if ! is_ip "$controller" && ! [[ $controller =~ $dns_re ]]; then
  usage_error "CONTROLLER_NAME '$controller' is neither a lower-case DNS name nor an IPv4 address"
fi
for h in "${hosts[@]}"; do
  [[ $h =~ ^[a-z][a-z0-9-]{0,62}$ ]] ||
    usage_error "HOST '$h' is not a Regen host name ([a-z][a-z0-9-]{0,62}, the agent's host_name)"
  case "$h" in ca | controller | admin | readonly)
    usage_error "HOST '$h' would overwrite the $h certificate: rename the host" ;;
  esac
done

mkdir -p "$out"
umask 077
tmp=$(mktemp -d "${TMPDIR:-/tmp}/regen-gen-certs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

newkey() {  # FILE: an EC P-256 private key, mode 0600
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>"$tmp/err" ||
    die "openssl cannot make a key in $1: $(cat "$tmp/err")"
  chmod 0600 "$1"
}

if [ -f "$out/ca.crt" ] && [ -f "$out/ca.key" ]; then
  echo "ca: reusing $out/ca.crt"
else
  [ ! -e "$out/ca.crt" ] && [ ! -e "$out/ca.key" ] ||
    die "$out holds ca.crt or ca.key but not both: move it away or restore the other"
  newkey "$out/ca.key"
  openssl req -x509 -new -key "$out/ca.key" -sha256 -days "$DAYS" -subj "/O=Regen/CN=Regen lab CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$out/ca.crt" 2>"$tmp/err" || die "openssl cannot make the CA: $(cat "$tmp/err")"
  chmod 0644 "$out/ca.crt"
  echo "ca: made $out/ca.crt"
fi

issue() {  # NAME CN SAN EKU: NAME.crt and NAME.key signed by the CA
  local name=$1 cn=$2 san=$3 eku=$4
  if [ -f "$out/$name.crt" ] && [ -f "$out/$name.key" ]; then
    echo "$name: kept $out/$name.crt"
    return
  fi
  newkey "$out/$name.key"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -z "$san" ] || echo "subjectAltName=$san"
  } >"$tmp/$name.ext"
  openssl req -new -key "$out/$name.key" -subj "/O=Regen/CN=$cn" -out "$tmp/$name.csr" \
    2>"$tmp/err" || die "openssl cannot make the request for $name: $(cat "$tmp/err")"
  openssl x509 -req -in "$tmp/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -CAserial "$tmp/ca.srl" -sha256 -days "$DAYS" -extfile "$tmp/$name.ext" \
    -out "$out/$name.crt" 2>"$tmp/err" ||
    die "openssl cannot sign the certificate of $name: $(cat "$tmp/err")"
  chmod 0644 "$out/$name.crt"
  echo "$name: made $out/$name.crt (CN=$cn${san:+, $san})"
}

if is_ip "$controller"; then
  controller_san="IP:$controller,DNS:localhost,IP:127.0.0.1"
else
  controller_san="DNS:$controller,DNS:localhost,IP:127.0.0.1"
fi
issue controller "$controller" "$controller_san" "serverAuth,clientAuth"
for h in "${hosts[@]}"; do issue "$h" "$h" "DNS:$h" "clientAuth,serverAuth"; done
issue admin "admin@regenctl" "" clientAuth
issue readonly "readonly@regenctl" "" clientAuth

for t in admin readonly; do
  if [ -f "$out/$t.token" ]; then
    echo "$t token: kept $out/$t.token"
  else
    openssl rand -hex 32 >"$out/$t.token"
    chmod 0600 "$out/$t.token"
    echo "$t token: made $out/$t.token"
  fi
done

cat <<EOF
done: copy ca.crt and controller.{crt,key} to the controller, ca.crt and HOST.{crt,key} to each
host (e.g. /etc/regen/tls/, keys mode 0600 owned by the daemon's user); keep ca.key elsewhere.
EOF

#!/usr/bin/env bash
# Provisions a Debian 12 machine as Regen's controller from the .deb packages: knot (the DNS
# server of the services' zone, updated by the controller with RFC 2136 + TSIG), the
# regen-controller package, /etc/regen/controller.yaml (only if absent), and both daemons enabled
# and started. The Vagrant rig runs it on "controller"; it runs the same way on a real machine.
#
#   provision-controller.sh --address IP --debs DIR [--port N] [--zone ZONE] [--dry-run]
#   provision-controller.sh --address IP --configs-only DIR   (only the config files, under DIR)
#
# Exit status: 0 done, 1 a step failed, 2 bad arguments.
set -euo pipefail

PROG=provision-controller.sh
APT_PACKAGES=(knot knot-dnsutils jq)
TSIG_KEY=regen-key

usage() {
  cat <<EOF
Usage: $PROG --address IP --debs DIR [OPTIONS]

Makes this Debian 12 machine the Regen controller (run as root):
  1. apt-get install ${APT_PACKAGES[*]}
  2. knot: TSIG key $TSIG_KEY (secret in /etc/regen/tsig.secret), zone ZONE answered on
     127.0.0.1:53 and IP:53, dynamic updates allowed with the key (files written only if absent)
  3. apt-get install DIR/regenctl_*.deb DIR/regen-controller_*.deb
  4. /etc/regen/controller.yaml (if absent): listen on 0.0.0.0:PORT, DNS updates to knot
  5. systemctl enable --now knot regen-controller, and wait until the controller answers

Options:
  --address IP   this machine's address on the hosts' network (knot listens there too)
  --debs DIR     directory with regenctl_*.deb and regen-controller_*.deb
  --port N       the controller's port (default 7400)
  --zone ZONE    the services' DNS zone (default lab.example)
  --configs-only DIR
                 write only the configuration files (knot.conf, the zone, the TSIG secret,
                 controller.yaml) under DIR as if it were /, and nothing else: no packages,
                 no services (to review them, or to test them)
  --dry-run      print the steps without doing anything
  -h, --help     this help
EOF
}

die() { echo "$PROG: error: $*" >&2; exit 1; }
usage_error() { echo "$PROG: $*" >&2; echo "Try '$PROG --help'." >&2; exit 2; }
say() { echo "$PROG: $*"; }

address="" debs="" port=7400 zone=lab.example dry_run=0 root=""
need_value() { (($# >= 2)) || usage_error "$1 needs a value"; }
while (($# > 0)); do
  case "$1" in
    --address) need_value "$@"; address=$2; shift 2 ;;
    --debs) need_value "$@"; debs=$2; shift 2 ;;
    --port) need_value "$@"; port=$2; shift 2 ;;
    --zone) need_value "$@"; zone=$2; shift 2 ;;
    --configs-only) need_value "$@"; root=${2%/}; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done
[ -n "$address" ] || usage_error "--address is required"
[[ $address =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || usage_error "--address '$address': give an IPv4 address"
[ -n "$debs" ] || [ -n "$root" ] || usage_error "--debs is required"
if [ -n "$root" ]; then
  if [[ $root != /* ]] || [ ! -d "$root" ]; then
    usage_error "--configs-only '$root': give an existing absolute directory"
  fi
fi
if ! [[ $port =~ ^[0-9]{1,5}$ ]] || ((port < 1 || port > 65535)); then usage_error "--port '$port': give 1-65535"; fi
zone=${zone%.}
[[ $zone =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$ ]] ||
  usage_error "--zone '$zone': give a lower-case domain such as lab.example"

find_deb() {  # NAME
  local f
  f=$(find "$debs" -maxdepth 1 -name "$1_*.deb" 2>/dev/null | sort -V | tail -n1)
  [ -n "$f" ] || die "no $1_*.deb in $debs: build the packages (cmake --build build --target package)"
  echo "$f"
}
deb_ctl="" deb_controller=""
if [ -z "$root" ]; then
  [ -d "$debs" ] || die "--debs '$debs': no such directory"
  deb_ctl=$(find_deb regenctl)
  deb_controller=$(find_deb regen-controller)
fi

if ((dry_run)); then
  say "dry run: nothing is changed"
  run() { say "would run: $*"; }
  write_new() {  # PATH MODE < content: only if PATH is absent
    if [ -e "$1" ]; then say "$1 exists: not overwritten"; else say "would write: $1 ($2)"; fi
    cat >/dev/null
  }
else
  [ -n "$root" ] || [ "$(id -u)" -eq 0 ] || die "run as root (or with sudo), or use --dry-run to see the steps"
  run() {
    say "run: $*"
    "$@" || die "'$*' failed (exit $?)"
  }
  write_new() {
    if [ -e "$1" ]; then
      say "$1 exists: not overwritten"
      cat >/dev/null
      return
    fi
    install -d -m 0755 "$(dirname "$1")"
    if ! { cat >"$1.tmp.$$" && chmod "$2" "$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"; }; then
      die "cannot write $1"
    fi
    say "wrote $1 ($2)"
  }
fi

if [ -n "$root" ]; then
  say "configs only, under $root: no packages installed, no services started"
  run() { say "skipped (--configs-only): $*"; }
  chown() { :; }
  chgrp() { :; }
fi

export DEBIAN_FRONTEND=noninteractive
say "1/5 Debian packages"
run apt-get update -q
run apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}"

say "2/5 knot: zone $zone with dynamic updates"
secret_file=/etc/regen/tsig.secret   # as controller.yaml names it; written at $root$secret_file
if [ -s "$root$secret_file" ]; then
  secret=$(cat "$root$secret_file")
  say "$root$secret_file exists: kept"
else
  secret=$(head -c 32 /dev/urandom | base64)
  printf '%s\n' "$secret" | write_new "$root$secret_file" 0600
fi
# The controller's DNS updater needs the key's name, algorithm and secret; knot the same key.
# knot.conf is replaced only if it is still the Debian default (it names no zone).
knot_conf=$root/etc/knot/knot.conf
if [ -f "$knot_conf" ] && grep -q "domain: $zone" "$knot_conf"; then
  say "$knot_conf already serves $zone: kept"
else
  [ ! -f "$knot_conf" ] || ((dry_run)) || cp -n "$knot_conf" "$knot_conf.orig"
  if ((dry_run)); then
    say "would write: $knot_conf (zone $zone on 127.0.0.1@53 and $address@53, key $TSIG_KEY may update)"
  else
    install -d -m 0755 "$(dirname "$knot_conf")"
    cat >"$knot_conf" <<EOF || die "cannot write $knot_conf"
# Written by $PROG: the Regen services' zone, updated by regen-controller (RFC 2136, TSIG).
server:
    rundir: "/run/knot"
    user: knot:knot
    listen: [ 127.0.0.1@53, $address@53 ]

log:
  - target: syslog
    any: info

database:
    storage: "/var/lib/knot"

key:
  - id: $TSIG_KEY
    algorithm: hmac-sha256
    secret: $secret

acl:
  - id: regen-update
    key: $TSIG_KEY
    action: update

template:
  - id: default
    storage: "/var/lib/knot"
    file: "%s.zone"

zone:
  - domain: $zone
    acl: regen-update
EOF
    chmod 0640 "$knot_conf" && chgrp knot "$knot_conf"
    say "wrote $knot_conf"
  fi
fi
write_new "$root/var/lib/knot/$zone.zone" 0644 <<EOF
\$ORIGIN $zone.
\$TTL 300
@   SOA ns.$zone. hostmaster.$zone. 1 3600 600 86400 30
@   NS  ns
ns  A   $address
EOF
((dry_run)) || chown knot:knot "$root/var/lib/knot/$zone.zone"

say "3/5 Regen packages"
run apt-get install -y -q --no-install-recommends "$deb_ctl" "$deb_controller"

say "4/5 controller.yaml"
write_new "$root/etc/regen/controller.yaml" 0640 <<EOF
# /etc/regen/controller.yaml, written by $PROG; never overwritten by it. Every setting is
# explained in /usr/share/doc/regen-controller/examples/controller.yaml.
listen_address: "0.0.0.0:$port"
database: /var/lib/regen/controller.db
heartbeat_interval: 500ms
host_down_after: 4500ms
fencing_lease: 3s   # the agents' fencing_lease (regen-install-host writes 3s)
dns:
  server: "127.0.0.1:53"
  zone: $zone.
  tsig:
    key_name: $TSIG_KEY.
    algorithm: hmac-sha256
    secret_file: $secret_file
  ttl: 30
upgrade:
  manual_policy: block
  auto_rollback: false
  max_failed: 3
log_level: info
# The rig's private network only: plaintext gRPC, no certificates (a warning at start). A real
# cluster uses tls: {ca, cert, key} and auth: (README.md, "Real deployment").
insecure: true
EOF

say "5/5 knot and regen-controller"
run systemctl enable --now knot.service
run systemctl restart knot.service   # picks up a knot.conf written above
run systemctl enable --now regen-controller.service
if [ -n "$root" ]; then
  say "configs written under $root"
elif ((dry_run == 0)); then
  systemctl is-active --quiet regen-controller.service ||
    die "regen-controller is not active: journalctl -u regen-controller -n 50"
  regenctl --controller "127.0.0.1:$port" host list ||
    die "regen-controller does not answer on 127.0.0.1:$port: journalctl -u regen-controller -n 50"
  kdig +short @127.0.0.1 "ns.$zone" A || true
  say "done: regen-controller on $address:$port, zone $zone on knot"
else
  say "dry run done"
fi

#!/usr/bin/env bash
# Deploys a service on a Regen cluster once enough hosts are up: waits (bounded) until
# `regenctl host list` shows N hosts "up", applies the spec, and waits until every instance of
# it runs. The Vagrant rig runs it on the controller after provision-controller.sh.
#
#   deploy-service.sh --spec FILE [--hosts N] [--controller HOST:PORT] [--timeout S] [--dry-run]
#
# Exit status: 0 deployed, 1 a step failed or timed out, 2 bad arguments.
set -euo pipefail

PROG=deploy-service.sh

usage() {
  cat <<EOF
Usage: $PROG --spec FILE [OPTIONS]

  1. wait until N hosts are "up" in \`regenctl host list\` (at most S seconds)
  2. regenctl service apply -f FILE
  3. wait until every instance of the service is "running" (at most S seconds)
  4. print \`regenctl instance list\`

Options:
  --spec FILE             the service spec (see /usr/share/doc/regen-controller/examples)
  --hosts N               hosts to wait for (default 3)
  --controller HOST:PORT  the controller (default \$REGEN_CONTROLLER, else 127.0.0.1:7400)
  --timeout S             seconds each wait may take (default 600)
  --dry-run               print the steps without doing anything
  -h, --help              this help
EOF
}

die() { echo "$PROG: error: $*" >&2; exit 1; }
usage_error() { echo "$PROG: $*" >&2; echo "Try '$PROG --help'." >&2; exit 2; }
say() { echo "$PROG: $*"; }

spec="" hosts=3 controller=${REGEN_CONTROLLER:-127.0.0.1:7400} timeout=600 dry_run=0
need_value() { (($# >= 2)) || usage_error "$1 needs a value"; }
while (($# > 0)); do
  case "$1" in
    --spec) need_value "$@"; spec=$2; shift 2 ;;
    --hosts) need_value "$@"; hosts=$2; shift 2 ;;
    --controller) need_value "$@"; controller=$2; shift 2 ;;
    --timeout) need_value "$@"; timeout=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done
[ -n "$spec" ] || usage_error "--spec is required"
[ -f "$spec" ] || usage_error "--spec '$spec': no such file"
if ! [[ $hosts =~ ^[0-9]+$ ]] || ((hosts < 1)); then usage_error "--hosts '$hosts': give a number >= 1"; fi
if ! [[ $timeout =~ ^[0-9]+$ ]] || ((timeout < 1)); then usage_error "--timeout '$timeout': give seconds >= 1"; fi
[[ $controller =~ ^[^:[:space:]]+:[0-9]{1,5}$ ]] || usage_error "--controller '$controller': give HOST:PORT"
service=$(sed -n 's/^name:[[:space:]]*\([a-z][a-z0-9-]*\)[[:space:]]*\(#.*\)\{0,1\}$/\1/p' "$spec" | head -n1)
[ -n "$service" ] || usage_error "--spec '$spec': no top-level 'name:' found"

ctl=(regenctl --controller "$controller")
if ((dry_run)); then
  say "dry run: nothing is changed"
  say "would wait up to ${timeout}s for $hosts hosts up: ${ctl[*]} host list -o json"
  say "would run: ${ctl[*]} service apply -f $spec"
  say "would wait up to ${timeout}s for every instance of $service to run: ${ctl[*]} instance list -o json"
  exit 0
fi
command -v regenctl >/dev/null || die "regenctl not found: install the regenctl package"
command -v jq >/dev/null || die "jq not found: apt-get install jq"

# rows CMD...: the JSON list a regenctl ... -o json prints (a list, or an object with one).
rows() { "${ctl[@]}" "$@" -o json 2>/dev/null | jq -c 'if type == "array" then . else ([.[] | arrays] | add // []) end'; }

wait_for() {  # WHAT CONDITION-FUNCTION
  local deadline=$((SECONDS + timeout))
  until "$2"; do
    ((SECONDS < deadline)) || return 1
    sleep 2
  done
  say "$1 after $((SECONDS - deadline + timeout)) s"
}

hosts_up() {
  up=$(rows host list | jq '[.[] | select((.state // "" | ascii_downcase) == "up")] | length' 2>/dev/null || echo 0)
  ((up >= hosts))
}
say "waiting up to ${timeout}s for $hosts hosts up"
wait_for "$hosts hosts up" hosts_up || {
  "${ctl[@]}" host list >&2 || true
  die "only ${up:-0} of $hosts hosts up after ${timeout}s: check regen-agent on the hosts (journalctl -u regen-agent)"
}

say "run: ${ctl[*]} service apply -f $spec"
"${ctl[@]}" service apply -f "$spec" || die "service apply failed"

all_running() {
  counts=$(rows instance list |
    jq -r --arg s "$service" '[.[] | select(.service == $s)] | "\(length) \([.[] | select((.state // "" | ascii_downcase) == "running")] | length)"' 2>/dev/null || echo "0 0")
  read -r total running <<<"$counts"
  ((total > 0 && running == total))
}
say "waiting up to ${timeout}s for the instances of $service to run"
wait_for "every instance of $service running" all_running || {
  "${ctl[@]}" instance list >&2 || true
  die "${running:-0} of ${total:-?} instances of $service running after ${timeout}s"
}
"${ctl[@]}" instance list

#!/usr/bin/env bash
# Runs the libFuzzer targets of the clang build (build-asan/, scripts/build.sh --asan; sources and
# seed corpora in tests/fuzz) one after the other, each on a fresh temporary copy of its seed corpus
# (the tree is not modified; new crashes are kept in the run's directory, printed at the end).
# Usage: scripts/fuzz.sh [--time SECONDS] [--keep DIR] [target...]
#   --time   seconds per target (default 600)
#   --keep   keep the run directories (corpus/, crashes/, log) under DIR instead of a temp dir
#   target   default: every target in tests/fuzz/corpus/
# A target's own libFuzzer flags, if any, are in tests/fuzz/<target>.options (one or more per
# line; # starts a comment).
# Prints per target: execs/s, coverage (cov: edges, ft: features), corpus size, crashes.
# Exit status 1 if any target crashed (the crashing inputs are listed).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=600
keep=""
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --time) seconds="$2"; shift 2 ;;
    --keep) keep="$2"; shift 2 ;;
    -h|--help) sed -n 2,12p "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  for d in tests/fuzz/corpus/*/; do targets+=("$(basename "$d")"); done
fi
bin=build-asan/tests/fuzz
root="${keep:-$(mktemp -d /tmp/regen-fuzz.XXXXXX)}"
mkdir -p "$root"
[ -n "$keep" ] || trap 'rm -rf "$root"' EXIT
failed=0
printf '%-22s %8s %8s %8s %7s %8s %s\n' target seconds execs/s cov ft corpus crashes
for t in "${targets[@]}"; do
  if [ ! -x "$bin/$t" ]; then
    echo "fuzz.sh: $bin/$t is missing: run scripts/build.sh --asan" >&2
    exit 2
  fi
  dir="$root/$t"
  rm -rf "$dir"
  mkdir -p "$dir/corpus" "$dir/crashes"
  cp tests/fuzz/corpus/"$t"/* "$dir/corpus/" 2>/dev/null || true
  extra=()
  if [ -f "tests/fuzz/$t.options" ]; then
    read -r -a extra <<<"$(sed 's/#.*//' "tests/fuzz/$t.options" | tr '\n' ' ')"
  fi
  # -rss_limit_mb/-malloc_limit_mb: a huge allocation is a finding too; -timeout: so is a hang.
  rc=0
  started=$(date +%s)
  (cd "$dir" && ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" "$OLDPWD/$bin/$t" \
      -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len=65536 \
      -timeout=25 -print_final_stats=1 -artifact_prefix=crashes/ "${extra[@]}" corpus >log 2>&1) || rc=$?
  elapsed=$(( $(date +%s) - started ))
  last=$(grep -E '^#[0-9]+' "$dir/log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  execs=$(sed -n 's/.* exec\/s: \([0-9]*\).*/\1/p' <<<"$last")
  size=$(find "$dir/corpus" -type f | wc -l)
  crashes=$(find "$dir/crashes" -type f | wc -l)
  printf '%-22s %8s %8s %8s %7s %8s %s\n' "$t" "$elapsed" "${execs:-?}" "${cov:-?}" "${ft:-?}" \
    "$size" "$crashes"
  if [ "$rc" != 0 ] || [ "$crashes" != 0 ]; then
    failed=1
    echo "fuzz.sh: $t FAILED (exit $rc); inputs:" >&2
    find "$dir/crashes" -type f >&2
    grep -E 'ERROR|invariant|SUMMARY' "$dir/log" | head -5 >&2 || true
    [ -n "$keep" ] || { mkdir -p /tmp/regen-fuzz-crashes; cp -r "$dir" /tmp/regen-fuzz-crashes/;
                        echo "fuzz.sh: kept in /tmp/regen-fuzz-crashes/$t" >&2; }
  fi
done
exit "$failed"

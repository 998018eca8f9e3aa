#!/usr/bin/env bash
# The ThreadSanitizer pass: scripts/build.sh --tsan (build-tsan/: clang -fsanitize=thread, the
# daemons and the unit and integration tests only), then those tests under TSan. Every report of
# every process (the tests and the daemons they start) goes to build-tsan/tsan-reports/; any
# report fails the run (halt_on_error: the process stops at its first race). The three QEMU tests
# (real guests under TCG, tens of seconds each without TSan) are left to build/ and build-asan/:
# their threads are the same agent code the test-driver tests run.
# gRPC's headers are compiled uninstrumented (tests/tsan/ignorelist.txt, like the Debian library
# they belong to); runtime suppressions (gRPC-internal frames only): tests/tsan/suppressions.txt.
# tsan_canary_*_test (tests/tsan) pass only if TSan reports their deliberate races: our code is
# still checked, also on gRPC's threads.
# The tests with tight timing (1 s election leases, several etcd members and controllers) run after
# the others, one at a time: under TSan on a loaded 2-core machine they miss their deadlines when
# they share the cores (seen: a controller deposed 0.8 s after its election).
# Usage: scripts/tsan.sh [ctest args...]   (e.g. -R fencing_test)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh --tsan
reports="$PWD/build-tsan/tsan-reports"
rm -rf "$reports"
mkdir -p "$reports"
# ignore_noninstrumented_modules: see tests/tsan/suppressions.txt (uninstrumented gRPC, absl ...).
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ignore_noninstrumented_modules=1 log_path=$reports/tsan suppressions=$PWD/tests/tsan/suppressions.txt"
rc=0
excluded='agent_qemu_crash_test|agent_qemu_fence_test|libvirt_embed_test'
serial='ha_controllers_test'
start=$SECONDS
if [ $# -gt 0 ]; then   # a chosen set (ctest args): one pass
  (cd build-tsan && ctest --output-on-failure --no-tests=error -j 2 --timeout 600 \
    -E "^($excluded)\$" "$@") || rc=$?
else
  (cd build-tsan && ctest --output-on-failure --no-tests=error -j 2 --timeout 600 \
    -E "^($excluded|$serial)\$") || rc=$?
  (cd build-tsan && ctest --output-on-failure --no-tests=error -j 1 --timeout 600 \
    -R "^($serial)\$") || rc=$?
fi
echo "scripts/tsan.sh: tests ran in $((SECONDS - start)) s"
if compgen -G "$reports/tsan.*" >/dev/null; then
  echo "scripts/tsan.sh: ThreadSanitizer reports:"
  for f in "$reports"/tsan.*; do
    echo "--- $f"
    head -80 "$f"
  done
  exit 1
fi
exit "$rc"

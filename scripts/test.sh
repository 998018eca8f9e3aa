#!/usr/bin/env bash
# Builds Regen and runs every test: unit, integration (real libvirt test driver, real QEMU/TCG
# through qemu:///embed), then the clang build (scripts/build.sh --asan: thread-safety analysis as
# errors, so building it is the check) with the unit tests and the cheap integration tests again
# under ASan+UBSan, end-to-end tests with the daemons under ASan+UBSan (heal, failover and drain,
# upgrade, security, controller restarts), each libFuzzer target (tests/fuzz) for 20 s, a short
# chaos pass (tests/chaos: 3 runs, its daemons under ASan), then the benchmarks once (figures
# printed). A component that cannot run fails the run (CI=1 is set here): nothing passes by
# skipping. ThreadSanitizer is a pass of its own (scripts/tsan.sh: one more build, ~12 min).
# Usage: scripts/test.sh [--quick]   (--quick: no ASan pass, no benchmarks)
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-1}"
quick=0
[ "${1:-}" = "--quick" ] && quick=1

start=$(date +%s)
# A stage's header, with the minutes since the start (what CI's time goes to).
stage() { echo "== [$(( ($(date +%s) - start) / 60 )) min] $*"; }
# The code's shape (STYLE.md rule 11): no production file over 600 lines, no function over 80.
scripts/check-shape.py
stage "gcc build"
scripts/build.sh
scripts/guest-image.sh build/guest  # at once when install-deps made it already
stage "gcc build: every test but the chaos runner"
# Everything but the chaos runner, which runs below with the daemons under ASan.
(cd build && ctest --output-on-failure --no-tests=error -j 2 --timeout 300 -LE chaos)

if [ "$quick" = 0 ]; then
  stage "clang build: thread-safety analysis + ASan+UBSan; the unit tests again"
  scripts/build.sh --asan
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure --no-tests=error -j 2 \
    -L unit)
  stage "e2e and integration tests with the daemons under ASan+UBSan (label asan): heal, failover/drain, upgrade, security, restarts"
  # The integration tests without QEMU (each a few seconds): the daemons' threads against real
  # libvirt (test driver), Knot, SQLite, OVS and sd_notify; then the e2e tests: build-asan's e2e
  # tests start build-asan's regen-controller and regen-agent, and the lab harness fails a test
  # whose daemons' logs hold a sanitizer report (Lab::SanitizerReports). Which tests: those
  # marked ASAN in their CMakeLists.txt (the others are not even built in build-asan/).
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure --no-tests=error -j 2 \
    -L '^asan$')
  stage "fuzz targets: 20 s each from their seed corpora (tests/fuzz; long runs: scripts/fuzz.sh)"
  scripts/fuzz.sh --time 20
  stage "chaos: 3 runs of random faults, controller under ASan+UBSan, duplicates counted from qemu"
  # The agents are the gcc build's: an ASan agent deadlocks in libvirt's fork children (clang 14's
  # allocator is not fork-safe; tests/chaos/chaos_test.cc).
  # Random seed per run of the test command (printed; replay: scripts/chaos.sh --asan --seed S).
  # Every fault kind, the controller's full disk included (it must stop no VM).
  (cd build-asan && REGEN_AGENT_BIN="$PWD/../build/agent/regen-agent" CHAOS_RUNS=3 CHAOS_DRIVER=qemu CHAOS_SECONDS=20 CHAOS_LOG_DIR="$PWD/chaos-logs" \
    ctest --output-on-failure --no-tests=error -L chaos --timeout 1200)
  stage "benchmarks"
  scripts/bench.sh
fi
echo "scripts/test.sh: all tests passed in $(( $(date +%s) - start )) s"

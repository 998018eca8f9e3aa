#!/usr/bin/env bash
# Runs Regen's benchmarks once and prints their figures (never asserted as wall-clock in tests).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/tests/bench/agent_bench ] && [ -x build/tests/bench/allocator_bench ] && [ -x build/tests/e2e/upgrade_bench ] && [ -x build/tests/bench/blast_bench ] && [ -x build/tests/e2e/notify_bench ] || scripts/build.sh
build/tests/bench/agent_bench --benchmark_min_time=0.2 "$@"
build/tests/bench/allocator_bench --benchmark_min_time=0.2 "$@"
# The rolling-upgrade benchmark on a test-driver lab (100 instances, 5 UDs, 3 crashes).
build/tests/e2e/upgrade_bench
# Topology blast: a heal's new revision acked by every one of 20 and 1,000 simulated agents.
build/tests/bench/blast_bench --agents 20,1000 --rounds 5
# Heal -> every instance notified (100 instances) and heal -> new IP visible in knotd.
build/tests/e2e/notify_bench

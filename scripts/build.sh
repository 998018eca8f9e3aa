#!/usr/bin/env bash
# Configures and builds Regen. Usage: scripts/build.sh [--asan|--tsan] [extra cmake args...]
#   default: build/       (RelWithDebInfo)
#   --asan:  build-asan/  (clang: thread-safety analysis as errors + AddressSanitizer +
#                          UndefinedBehaviorSanitizer + libFuzzer targets (tests/fuzz), Debug;
#                          one build for all these checks)
#   --tsan:  build-tsan/  (clang, ThreadSanitizer (gRPC headers left out: tests/tsan/ignorelist.txt),
#                          -O1 -g: the daemons and the unit and
#                          integration tests only; no e2e, chaos, benchmarks, fuzz targets)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ "${1:-}" = "--asan" ]; then
  shift
  dir=build-asan
  # clang, not gcc: -Wthread-safety and libFuzzer exist only in clang. The libraries it links
  # (gRPC, protobuf, ...) are Debian's gcc builds: fine for ASan (and not coverage-instrumented).
  args=(-DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
        -DREGEN_SANITIZE=ON -DREGEN_THREAD_SAFETY=ON -DREGEN_FUZZ=ON)
  # A build-asan/ configured before it was a clang build (gcc) cannot switch compilers in place.
  if [ -f "$dir/CMakeCache.txt" ] && ! grep -q '^REGEN_THREAD_SAFETY:BOOL=ON$' "$dir/CMakeCache.txt"; then
    echo "build.sh: $dir/ is an old gcc sanitizer build; configuring it anew with clang"
    rm -rf "$dir"
  fi
  # One configured before the fuzz targets joined it: switch them on in place.
  if [ -f "$dir/CMakeCache.txt" ] && ! grep -q '^REGEN_FUZZ:BOOL=ON$' "$dir/CMakeCache.txt"; then
    cmake "$dir" -DREGEN_FUZZ=ON >/dev/null
  fi
elif [ "${1:-}" = "--tsan" ]; then
  shift
  dir=build-tsan
  # -O1: TSan's advice (fast enough, stacks still exact); asserts stay on (no NDEBUG).
  args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
        "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g" "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g"
        -DREGEN_TSAN=ON)
fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# Configure when there is no finished configuration (a failed configure leaves
# a CMakeCache.txt but no build file behind).
if [ ! -f "$dir/CMakeCache.txt" ] || { [ ! -f "$dir/build.ninja" ] && [ ! -f "$dir/Makefile" ]; }; then
  cmake -S . -B "$dir" "${generator[@]}" "${args[@]}" "$@"
fi
cmake --build "$dir" -j "$(nproc)"

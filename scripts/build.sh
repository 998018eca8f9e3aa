#!/usr/bin/env bash
# Configures and builds Regen. Usage: scripts/build.sh [--asan] [extra cmake args...]
#   default: build/       (RelWithDebInfo)
#   --asan:  build-asan/  (AddressSanitizer + UndefinedBehaviorSanitizer, Debug)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build
args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ "${1:-}" = "--asan" ]; then
  shift
  dir=build-asan
  args=(-DCMAKE_BUILD_TYPE=Debug -DREGEN_SANITIZE=ON)
fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# Configure when there is no finished configuration (a failed configure leaves
# a CMakeCache.txt but no build file behind).
if [ ! -f "$dir/CMakeCache.txt" ] || { [ ! -f "$dir/build.ninja" ] && [ ! -f "$dir/Makefile" ]; }; then
  cmake -S . -B "$dir" "${generator[@]}" "${args[@]}" "$@"
fi
cmake --build "$dir" -j "$(nproc)"

#!/usr/bin/env bash
# Installs every Debian package Regen needs (build, tests, lab) and builds the project.
# Idempotent: packages already present are skipped by apt; the build is incremental.
# Usage: scripts/install-deps.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build pkg-config git ca-certificates clang-format
  clang libclang-rt-14-dev lld
  libvirt-dev libvirt-daemon libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils
  genisoimage
  libyaml-cpp-dev libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libc-ares-dev libldns-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libsqlite3-dev sqlite3 libgtest-dev libgmock-dev libbenchmark-dev libsystemd-dev
  openvswitch-switch knot knot-dnsutils tini iproute2 ethtool procps jq cpio
  prometheus-cpp-dev vagrant vagrant-libvirt
  etcd-server
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  # Services shipped by these packages are not started here: tests run their own private instances.
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all ${#PACKAGES[@]} packages present"
fi

# etcd's gRPC .proto files (the HA mode's etcd client; etcd/CMakeLists.txt needs them to configure):
# fetched with apt-get download and unpacked, the golang packages are not installed.
scripts/etcd-protos.sh build/etcd-protos

if [ "${1:-}" != "--no-build" ]; then
  scripts/build.sh
  # The test guest the qemu end-to-end tests boot (fetched with apt-get download, nothing installed).
  scripts/guest-image.sh build/guest
fi

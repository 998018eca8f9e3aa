#!/usr/bin/env bash
# Fetches etcd 3.4's gRPC API definitions (the .proto files Debian ships in golang-etcd-server-dev)
# and the two packages of .proto files they import (gogo.proto; google/api/annotations.proto and
# http.proto), for the etcd client the controller's HA mode uses (etcd/CMakeLists.txt compiles
# them). Nothing is installed on this machine (the three packages would pull 137 Go source
# packages): the .deb files are fetched with `apt-get download`, unpacked with `dpkg-deb -x`, and
# only the seven .proto files are kept, under one include root:
#   OUTDIR/etcd/etcdserver/etcdserverpb/rpc.proto, OUTDIR/etcd/mvcc/mvccpb/kv.proto, ...
#   OUTDIR/gogoproto/gogo.proto, OUTDIR/google/api/{annotations,http}.proto
# A second run with a complete OUTDIR does nothing.
# Usage: scripts/etcd-protos.sh OUTDIR      (install-deps.sh uses build/etcd-protos)
set -euo pipefail
out="${1:?usage: scripts/etcd-protos.sh OUTDIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
if [ -s "$out/COMPLETE" ]; then
  echo "etcd-protos: $out already has etcd's .proto files ($(head -1 "$out/COMPLETE"))"
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
packages=(golang-etcd-server-dev golang-github-gogo-protobuf-dev golang-github-gogo-googleapis-dev)
# apt-get download warns when _apt cannot write here (root): the download still happens.
apt-get download -q "${packages[@]}" 2> >(grep -v "unsandboxed" >&2)
for deb in ./*.deb; do dpkg-deb -x "$deb" tree; done

g="$work/tree/usr/share/gocode/src"
# include path (as the .proto files import each other) -> where the package puts it
files=(
  "etcd/etcdserver/etcdserverpb/rpc.proto=$g/go.etcd.io/etcd/etcdserver/etcdserverpb/rpc.proto"
  "etcd/mvcc/mvccpb/kv.proto=$g/go.etcd.io/etcd/mvcc/mvccpb/kv.proto"
  "etcd/auth/authpb/auth.proto=$g/go.etcd.io/etcd/auth/authpb/auth.proto"
  "etcd/etcdserver/api/v3election/v3electionpb/v3election.proto=$g/go.etcd.io/etcd/etcdserver/api/v3election/v3electionpb/v3election.proto"
  "gogoproto/gogo.proto=$g/github.com/gogo/protobuf/gogoproto/gogo.proto"
  "google/api/annotations.proto=$g/github.com/gogo/googleapis/google/api/annotations.proto"
  "google/api/http.proto=$g/github.com/gogo/googleapis/google/api/http.proto"
)
staged="$work/staged"
for entry in "${files[@]}"; do
  rel="${entry%%=*}"
  src="${entry#*=}"
  [ -s "$src" ] || { echo "etcd-protos: ${src#"$work/tree"} is not in ${packages[*]}" >&2; exit 1; }
  mkdir -p "$staged/$(dirname "$rel")"
  cp "$src" "$staged/$rel"
done
versions=""
for deb in ./*.deb; do versions+="$(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version); "; done
echo "$versions" > "$staged/COMPLETE"
# The tree appears whole or not at all: COMPLETE is written last.
rm -rf "$out/etcd" "$out/gogoproto" "$out/google"
cp -r "$staged/etcd" "$staged/gogoproto" "$staged/google" "$out/"
cp "$staged/COMPLETE" "$out/COMPLETE"
echo "etcd-protos: $out ($versions)"

// What the controller checks in an agent's Hello before anything of it is stored (issue 15,
// finding 3: a Hello with a negative capacity was stored, and the controller then refused to
// start from its own database; a loopback or duplicate tunnel address made every agent running
// the network reject every topology): the tunnel address and the capacity. Pure; any thread.
#pragma once

#include <map>
#include <set>
#include <string>

#include "common/proto/regen.pb.h"
#include "common/status.h"

namespace regen {

// The largest capacity a host may claim (a typo or a hostile Hello, not a machine).
inline constexpr int64_t kMaxHostVcpus = 4096;
inline constexpr int64_t kMaxHostMemoryMib = int64_t{64} << 20;  // 64 TiB
inline constexpr int64_t kMaxHostDiskGib = int64_t{1} << 20;     // 1 PiB
inline constexpr int64_t kMaxHostBandwidthMbps = 10'000'000;     // 10 Tbps

// INVALID_ARGUMENT naming the field and the value ("hello.capacity.vcpus: must be between 0 and
// 4096, got -4"; "hello.address: not an IPv4 address: \"x\"") or OK. The host name is checked
// apart (ValidateName).
Status CheckHello(const v1::Hello& hello);

// The hosts the controller knows: name -> tunnel address, and which of them run the network
// (their agent's Hello said so on a connected session).
struct KnownAddresses {
  std::map<std::string, std::string> address_of;
  std::set<std::string> network_hosts;
};

// The tunnel address in `hello` (already an IPv4 literal: CheckHello) against the kind of address
// and the other hosts: unspecified (0.0.0.0/8), multicast, broadcast and reserved (240/4) addresses
// are refused; a loopback address (127/8) is refused unless `allow_loopback_hosts`
// (controller.yaml, labs on one machine); an address another host already has is refused naming
// both hosts, except a loopback one shared under `allow_loopback_hosts` by agents that do not run
// the network (OVS tunnels need one address per host: ovs/flows.cc refuses such a topology).
Status CheckHelloAddress(const v1::Hello& hello, const KnownAddresses& known,
                         bool allow_loopback_hosts);

}  // namespace regen

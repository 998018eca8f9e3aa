// The gRPC message sizes Regen sets explicitly on every server and channel (issue 15, finding 4:
// gRPC's 4 MiB default receive limit broke every agent stream once the whole-cluster topology
// outgrew it, and the fleet fenced). Constants only; any thread.
#pragma once

#include <cstddef>

namespace regen {

// Controller -> agent: the topology revision (every placed instance), desired sets.
inline constexpr int kMaxTopologyMessageBytes = 64 << 20;
// Everything else a server receives: agent reports and Hellos, regenctl requests (a service spec
// is at most 4 MiB of YAML: config/yaml_tree.h).
inline constexpr int kMaxRequestMessageBytes = 16 << 20;
// The topology the controller agrees to build: the message limit less room for the envelope. A
// service spec that would push it past this is refused (controller/topology_limit.h).
inline constexpr size_t kMaxTopologyBytes = size_t{kMaxTopologyMessageBytes} - (size_t{1} << 20);

}  // namespace regen

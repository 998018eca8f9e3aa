// How large the network topology (sent whole to every agent) would be once a service spec is
// applied, and the refusal of a spec that would push it past what an agent can receive (issue 15,
// finding 4; common/grpc_limits.h). Pure functions; any thread.
#pragma once

#include <cstddef>
#include <map>
#include <string>

#include "common/grpc_limits.h"
#include "common/status.h"
#include "config/service_spec.h"
#include "controller/store.h"

namespace regen {

// An upper estimate of the serialized TopologyRevision once `spec` is applied: the instances of
// the other services as they are, `spec.instances` entries for this service as long as they can
// get (the longest host name, a full IPv4 address and MAC, the largest generation), and every
// known host with its address.
size_t EstimateTopologyBytes(const ServiceSpec& spec,
                             const std::map<std::string, InstanceRecord>& instances,
                             const std::map<std::string, HostRecord>& hosts);

// INVALID_ARGUMENT naming the service, its instance count and both figures when the estimate
// exceeds `limit`; OK otherwise.
Status CheckTopologyFits(const ServiceSpec& spec,
                         const std::map<std::string, InstanceRecord>& instances,
                         const std::map<std::string, HostRecord>& hosts,
                         size_t limit = kMaxTopologyBytes);

}  // namespace regen

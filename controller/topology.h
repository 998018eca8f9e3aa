// The one "what changed" check of the controller: after a step wrote instances or hosts, the
// network topology (every placed instance's host, IP, MAC and generation, and the tunnel address
// of each host holding one) and the instances' locations are compared with what was last
// published. The topology's revision goes up when its content differs (DESIGN.md "Healing" step
// 5); the services whose locations changed go to DNS and notifications. Pure functions and a small
// value type; any thread.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "common/proto/regen.pb.h"
#include "controller/controller_core.h"
#include "controller/store.h"

namespace regen {

// The topology without its revision: placed instances occupying their host (creating, running,
// or moving: a moving instance's location is already the new host), in name order, and their
// hosts with tunnel addresses.
v1::TopologyRevision BuildTopology(const std::map<std::string, InstanceRecord>& instances,
                                   const std::map<std::string, HostRecord>& hosts);
// FNV-1a 64 of the serialized topology as hex: stable across builds (stored in the store's meta).
std::string TopologyDigest(const v1::TopologyRevision& topology);
// Where each instance is now (host "" while pending).
std::map<std::string, InstanceLocation> LocationsOf(
    const std::map<std::string, InstanceRecord>& instances);

// Whether writing `after` over `before` (nullptr: a new record) can change what BuildTopology or
// LocationsOf make of the state: an instance's presence in the topology, its entry there (service,
// host, IP, MAC, generation) or its location; a host's tunnel address. A step that wrote nothing
// else (an instance going from creating to running, a host's heartbeat or Hello with the same
// address) leaves both as they were, and the O(instances) comparison is skipped.
bool ChangesTopology(const InstanceRecord* before, const InstanceRecord& after);
bool ChangesTopology(const HostRecord* before, const HostRecord& after);

// What a step changed, as TopologyTracker::Observe finds it.
struct TopologyDelta {
  bool revision_changed = false;   // `topology` differs from the last revision's content
  v1::TopologyRevision topology;   // the current content (revision not set)
  std::string digest;              // of `topology`
  std::set<std::string> services;  // whose instances' locations changed
};

// Remembers what was last published and finds what changed since.
class TopologyTracker {
 public:
  // `digest`: the stored digest of the last revision ("" when none was ever stored).
  void Reset(const std::string& digest);
  // Compares the state with what was last published (the revision's digest and every instance's
  // location) and remembers the new locations. The caller stores a new revision with `Accept`
  // once it committed it. O(instances): call it only when instances or hosts were written.
  TopologyDelta Observe(const std::map<std::string, InstanceRecord>& instances,
                        const std::map<std::string, HostRecord>& hosts);
  void Accept(const std::string& digest) { digest_ = digest; }

 private:
  std::string digest_;
  std::map<std::string, InstanceLocation> published_;
};

}  // namespace regen

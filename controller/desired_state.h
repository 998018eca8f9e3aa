// Desired state and topology: what each host should run (its desired set and the images it should
// stage), each host's slice of the network topology, and how instances look to operators
// (InstanceInfo). Desired sets are level-triggered: every change sends a host its whole set. The
// topology goes first: whenever it changed (TopologyTracker) its revision goes up by one and is
// stored; then every connected agent whose slice changed gets the difference (a delta on what it
// was last sent; its whole slice after its Hello or when it asks), at once, before any desired
// set, while a new domain is still being created; each agent session has its own writer, so no
// agent waits for another (common/topology_slices.h). Main loop thread only.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/topology_slices.h"
#include "controller/controller_core.h"
#include "controller/topology.h"

namespace regen {

class DesiredState {
 public:
  explicit DesiredState(ControllerCore& core) : core_(core) {}

  // After a load: the stored revision and digest are the last published ones.
  void Reset();

  // The desired set the controller would send `host` now.
  std::vector<v1::InstanceSpec> DesiredFor(const std::string& host) const;
  // The images to stage on `host`: for every service with an instance there whose upgrade goes
  // forward (not rolling back or failed), the target version's image, if it has one. A host that
  // receives a healed instance of such a service gets it too (the DESIGN table's "staged on the
  // new host").
  std::vector<v1::StagedImage> StageFor(const std::string& host) const;
  // The service's upgrade target when it must be staged before instances are re-created ("" if
  // none), and whether `host` reports it staged.
  std::string StagingTarget(const std::string& service) const;
  bool StagedOn(const std::string& host, const std::string& service,
                const std::string& version) const;

  // Sends the host its desired set (when it has a session).
  void PushDesired(const std::string& host);
  // Pushes the topology first when it changed (SyncTopology), then each host's desired set.
  void PushDesired(const std::set<std::string>& hosts);
  // When the topology differs from the last one: bumps and stores the revision (with a
  // "topology" event) and sends each connected agent whose slice changed its delta. True when it
  // changed.
  bool SyncTopology();
  // Sends one host its whole slice of the latest revision, unless its session has it already.
  void SendTopology(const std::string& host);
  // The host's next topology message is its whole slice (a new session; an agent that asked).
  void ForgetSent(const std::string& host) { sent_.erase(host); }
  // Sends `message` on the host's agent session; false when the host has none.
  bool SendToHost(const std::string& host, const v1::ControllerMessage& message) const;
  // The latest revision, whole (every host's slice is cut from it).
  const v1::TopologyRevision& Topology() const { return current_.topology(); }
  // Services whose locations changed since the last call (the step's), and clears them.
  std::set<std::string> TakeChangedServices();

  v1::InstanceSpec SpecOf(const InstanceRecord& inst) const;
  v1::InstanceInfo InfoOf(const InstanceRecord& inst) const;
  // True when `inst` needs no probe (no health check, or no IP to probe) or its host reported a
  // passed probe of its current generation.
  bool HealthPassed(const InstanceRecord& inst) const;
  // "none", or the health its host last reported: "unknown", "passing", "failing".
  std::string HealthWord(const InstanceRecord& inst) const;

 private:
  // The instances `host` should run (allocated there, active, not moving away), in name order.
  std::vector<const InstanceRecord*> DesiredOn(const std::string& host) const;
  const v1::DomainStatus* ReportedDomain(const InstanceRecord& inst) const;

  // Sends each connected host whose slice differs between `before` and current_ its delta (its
  // whole slice when its session has none yet).
  void SendSlices(const TopologyIndex& before);
  // Sends the host's whole slice of current_ on `sink` and records it as sent; its bytes.
  uint64_t SendWhole(const std::string& host, AgentSink* sink);

  // What a host's session was last sent: the revision its deltas build on.
  struct SentSlice {
    const AgentSink* sink = nullptr;
    int64_t revision = 0;
  };

  ControllerCore& core_;
  TopologyTracker tracker_;
  TopologyIndex current_;  // the latest revision, whole
  std::map<std::string, SentSlice> sent_;
  bool whole_to_all_ = false;  // after a Reset: the next revision goes whole to every agent
  std::set<std::string> changed_services_;
  uint64_t desired_sequence_ = 0;
};

}  // namespace regen

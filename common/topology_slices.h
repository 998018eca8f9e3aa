// Each host's slice of the network topology (issue 17): a host receives only what its flows need,
// the instances of every service it runs one of (its own and their peers) and those instances'
// hosts, and after a change only the difference (a delta) from what it was last sent. The bytes of
// one heal are then proportional to the hosts that run the healed service, not to the cluster.
// Pure functions over one whole-cluster topology (BuildTopology); any thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/proto/regen.pb.h"

namespace regen {

// Lookups over one whole-cluster topology. It keeps the topology alive (the pointers are into it).
class TopologyIndex {
 public:
  TopologyIndex() : TopologyIndex(std::make_shared<const v1::TopologyRevision>()) {}
  explicit TopologyIndex(std::shared_ptr<const v1::TopologyRevision> topology);

  const v1::TopologyRevision& topology() const { return *topology_; }
  int64_t revision() const { return topology_->revision(); }
  const v1::TopologyInstance* instance(const std::string& name) const;
  // The service's instances, in name order (empty for an unknown service).
  const std::vector<const v1::TopologyInstance*>& of_service(const std::string& service) const;
  // The services with an instance on `host` (empty for an unknown host).
  const std::set<std::string>& services_on(const std::string& host) const;
  std::string address_of(const std::string& host) const;

  // `host`'s whole slice at this revision (base_revision 0).
  v1::TopologyRevision SliceFor(const std::string& host) const;

 private:
  std::shared_ptr<const v1::TopologyRevision> topology_;
  std::map<std::string, const v1::TopologyInstance*> by_name_;
  std::map<std::string, std::vector<const v1::TopologyInstance*>> by_service_;
  std::map<std::string, std::set<std::string>> services_on_host_;
  std::map<std::string, std::string> address_of_;
};

// What changed for each host between two revisions: for every host whose slice differs, the
// delta that turns its `before` slice into its `after` one (revision `after.revision()`,
// base_revision `before.revision()`: the caller sets the base it really sent the host). Hosts
// whose slice did not change are absent. Work: the instances of the services that changed, not
// the cluster (plus one pass over both topologies to find what changed).
std::map<std::string, v1::TopologyRevision> SliceDeltas(const TopologyIndex& before,
                                                        const TopologyIndex& after);

// The agent's side: `delta` applied to `base` (both of one host). The result is a snapshot
// (base_revision 0) at the delta's revision, instances and hosts in name order; hosts no instance
// names are dropped. `delta` must be a delta on top of `base` (base.revision() ==
// delta.base_revision()): the caller checks.
v1::TopologyRevision ApplyTopologyDelta(const v1::TopologyRevision& base,
                                        const v1::TopologyRevision& delta);

}  // namespace regen
